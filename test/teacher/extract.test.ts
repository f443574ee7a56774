import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { extractJson, parseReasoning } from '../../src/lib/teacher/prompts.js';

// JSON objects as a service returns them (keys never "__proto__", numbers as JSON round-trips them)
const obj = fc
  .dictionary(fc.string().filter((k) => k !== '__proto__'), fc.jsonValue(), { minKeys: 1, maxKeys: 5 })
  .map((o) => JSON.parse(JSON.stringify(o)) as Record<string, unknown>);
// prose that holds no JSON object (braces allowed, but not a parsable object)
const prose = fc.oneof(
  fc.string().map((s) => s.replace(/[{`<]/g, '')),
  fc.constantFrom('Note: {see above}', 'the set {a, b}', 'here is the answer:', '}', 'done }}'),
);
const fenceLang = fc.constantFrom('json', 'JSON', 'Json', '', 'jsonc');
const thinking = fc.string().map((s) => `<think>${s.replace(/<\/think>/gi, '')} {"draft": true}</think>`);

describe('extractJson', () => {
  it('finds the object in any wrapping: think blocks, prose before and after (braces included), fences in any case', () => {
    fc.assert(
      fc.property(obj, fc.option(thinking), prose, fc.option(fenceLang), prose, fc.boolean(), (o, think, before, lang, after, pretty) => {
        const json = JSON.stringify(o, null, pretty ? 2 : undefined);
        const body = lang === null ? json : `\`\`\`${lang}\n${json}\n\`\`\``;
        const answer = `${think ?? ''}${before}\n${body}\n${after}`;
        expect(extractJson(answer)).toEqual(o);
      }),
      { numRuns: 300 },
    );
  });

  it('several fences: the first one that holds an object wins, a non-JSON fence before it is skipped', () => {
    fc.assert(
      fc.property(obj, obj, (o, later) => {
        const answer = `Plan:\n\`\`\`python\nprint("{not json}")\n\`\`\`\nResult:\n\`\`\`JSON\n${JSON.stringify(o)}\n\`\`\`\nAlso:\n\`\`\`json\n${JSON.stringify(later)}\n\`\`\``;
        expect(extractJson(answer)).toEqual(o);
      }),
      { numRuns: 100 },
    );
  });

  it('the cases of issue 24, item 6', () => {
    expect(extractJson('```JSON\n{"a": 1}\n```')).toEqual({ a: 1 });
    expect(extractJson('```text\nsee below\n```\n```json\n{"a": 2}\n```')).toEqual({ a: 2 });
    expect(extractJson('<think>The user wants {"a": 0} maybe.</think>\n{"a": 3}')).toEqual({ a: 3 });
    // the opening tag was in the chat template (Qwen3 / R1 on vLLM without a reasoning parser)
    expect(extractJson('Let me think about {x}...\n</think>\n\n{"a": 4}')).toEqual({ a: 4 });
    expect(extractJson('{"a": 5}\nNote: I assumed the gripper is at {0, 0} }')).toEqual({ a: 5 });
    expect(extractJson('Answer: {"a": "brace } inside a string \\" and quote"} trailing }')).toEqual({ a: 'brace } inside a string " and quote' });
  });

  it('refuses what holds no object, and an answer cut off inside its object', () => {
    expect(() => extractJson('the plan is: first grasp')).toThrow(/not valid JSON \(no JSON object in it\)/);
    expect(() => extractJson('{"subtasks": [{"step_description": "move", ')).toThrow(/never closes/);
    expect(() => extractJson('<think>{"a": 1}')).toThrow(/not valid JSON/);
    expect(() => extractJson('[1, 2]')).toThrow(/not valid JSON/);
  });

  it('a reasoning answer wrapped the way models wrap it parses', () => {
    const r = { observation: 'o', situation_analysis: 's', spatial_reasoning: 'p', task_planning: 't', logical_steps: ['1'], sub_action: 'x' };
    expect(parseReasoning(`<think>hmm</think>\nSure! Here it is:\n\`\`\`JSON\n${JSON.stringify(r)}\n\`\`\`\nHope this helps {:}`)).toEqual(r);
  });
});
