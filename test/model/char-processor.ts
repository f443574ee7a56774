import type { Processor } from '../../src/lib/model/processor/index.js';

/**
 * A processor for a text model without tokenizer files: characters as ids (code mod `modulus`, from 3), `<s>` (1)
 * first, `</s>` (2) ends a turn; the chat is the turns' texts one per line, then `suffix`.
 */
export function charProcessor(modulus: number, suffix = ''): Processor {
  const encodeText = (t: string) => [...t].map((c) => 3 + (c.charCodeAt(0) % modulus));
  return {
    modelType: 'llama',
    special: { bos: 1, eos: [2], pad: 0 },
    hasTokenizer: true,
    encodeText,
    decode: (ids) => ids.map((i) => String.fromCharCode(i - 3)).join(''),
    renderChat: (messages) => messages.map((m) => (typeof m.content === 'string' ? m.content : m.content.map((p) => (p.type === 'text' ? p.text : '')).join(''))).join('\n') + suffix,
    turnEnd: [2],
    encode: async (prompt) => ({ ids: [1, ...encodeText(prompt)], pixels: new Float32Array(0), tiles: 0, grids: [], imagePositions: [] }),
  };
}
