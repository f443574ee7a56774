/**
 * Turns a `script` typescript of a command run in a terminal into the text screen a person saw at a moment:
 * `npx tsx test/cli/term-capture.ts TYPESCRIPT COLUMNS PATTERN` prints the screen at the end of the first
 * redraw whose text contains PATTERN (a regular expression), or at the end of the recording without one.
 * The docs/captures/*.txt files are made with it.
 */
import { readFileSync } from 'node:fs';
import { applyTerminal } from './term.js';

const [file, cols, pattern] = process.argv.slice(2);
let text = readFileSync(file, 'utf8');
// script's own header and footer lines
text = text.replace(/^Script started[^\n]*\n/, '').replace(/\n?Script done[^\n]*\n?$/, '');
// the terminal line discipline turns \n into \r\n
text = text.replace(/\r\n/g, '\n');
let end = text.length;
if (pattern) {
  const re = new RegExp(pattern);
  // ink's redraws are bracketed by synchronized-output marks; cut after the first frame that matches
  const frames = text.split('\u001B[?2026l');
  let at = 0;
  for (const f of frames) {
    at += f.length + '\u001B[?2026l'.length;
    if (re.test(f)) {
      end = Math.min(at, text.length);
      break;
    }
  }
}
const screen = applyTerminal(text.slice(0, end), Number(cols));
process.stdout.write(`${screen.lines.join('\n')}\n`);
