/** Tiny training examples shared by the model, export and inference tests: a red and a blue block, one val example. */
import sharp from 'sharp';
import type { TrainingExample } from '../../src/lib/actions/index.js';

export async function png(r: number, g: number, b: number): Promise<{ mime: string; b64: string }> {
  const buf = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r, g, b } } }).png().toBuffer();
  return { mime: 'image/png', b64: buf.toString('base64') };
}

export function ex(id: string, img: { mime: string; b64: string }, prompt: string, reasoning: string, action: string, split = 'train'): TrainingExample {
  const target = reasoning ? `${reasoning}\n${action}` : action;
  const spans = reasoning
    ? [
        { kind: 'reasoning' as const, start: 0, end: reasoning.length },
        { kind: 'action' as const, start: reasoning.length + 1, end: target.length },
      ]
    : [{ kind: 'action' as const, start: 0, end: action.length }];
  return {
    id,
    images: [img],
    messages: [
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: prompt }] },
      { role: 'assistant', content: [{ type: 'text', text: target }] },
    ],
    spans,
    meta: { episode_id: id, steps: [0, 0], stage: 'actions', method: 'refinevla', representation: 'text', split },
  };
}

/** Two training examples (reasoning + action) and one val example (action only). */
export async function toyExamples(): Promise<TrainingExample[]> {
  const red = await png(220, 30, 30);
  const blue = await png(30, 30, 220);
  return [
    ex('a', red, 'Subtask: grasp the red block', 'the red block is ahead', '[[0.012, -0.004, 0.000, 1]]'),
    ex('b', blue, 'Subtask: grasp the blue block', 'the blue block is left', '[[-0.010, 0.020, -0.005, 0]]'),
    ex('c', red, 'Subtask: lift the red block', '', '[[0.000, 0.000, 0.015, 0]]', 'val'),
  ];
}
