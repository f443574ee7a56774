/** Which of a list of object names a text mentions (grounding targets, the action head's named keypoints). */

/** The objects `text` names (whole words, case-insensitive), in the order of first mention; a longer name wins an overlap. */
export function namedObjects<O extends { name: string }>(text: string, objects: O[]): O[] {
  const lower = text.toLowerCase();
  const hits: { at: number; end: number; o: O }[] = [];
  for (const o of objects) {
    const name = o.name.toLowerCase();
    if (!name) continue;
    const re = new RegExp(`(^|[^a-z0-9])${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![a-z0-9])`, 'g');
    for (const m of lower.matchAll(re)) {
      const at = m.index + m[1].length;
      hits.push({ at, end: at + name.length, o });
      break; // the first mention
    }
  }
  // longer names first, so that "red cup" claims its span before "cup" does
  hits.sort((a, b) => b.end - b.at - (a.end - a.at) || a.at - b.at);
  const kept: typeof hits = [];
  for (const h of hits) if (!kept.some((k) => h.at < k.end && k.at < h.end)) kept.push(h);
  return kept.sort((a, b) => a.at - b.at).map((h) => h.o);
}
