// A 7-D env over the exec: protocol: takes only [dx, dy, dz, droll, dpitch, dyaw, gripper], integrates the pose
// and appends every action it receives to the log file named by argv[2]. Done after argv[3] steps (default 3).
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const log = process.argv[2];
const limit = Number(process.argv[3] ?? 3);
// a 4x4 grey PNG
const png = 'iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAADklEQVQImWNoQAIMxHEAcFIYAXSG8E8AAAAASUVORK5CYII=';
let pose = [0.4, 0, 0.2, 0, 0, 0, 1];
let steps = 0;
const obs = () => ({ image_0: { mime: 'image/png', b64: png }, state: pose });
const answer = (m) => process.stdout.write(`${JSON.stringify(m)}\n`);
createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.op === 'reset') {
    pose = [0.4, 0, 0.2, 0, 0, 0, 1];
    steps = 0;
    answer({ observation: obs(), instruction: 'put the carrot 1 on the plate', info: {} });
  } else if (m.op === 'step') {
    if (m.action.length !== 7) return answer({ error: `expected 7 numbers, got ${m.action.length}` });
    appendFileSync(log, `${JSON.stringify(m.action)}\n`);
    pose = pose.map((v, k) => (k === 6 ? m.action[6] : v + m.action[k]));
    steps += 1;
    answer({ observation: obs(), reward: 0, done: steps >= limit, info: {} });
  } else answer({ ok: true });
});
