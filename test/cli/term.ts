/**
 * A minimal terminal for tests: applies what a program wrote (text, newlines, and the cursor/erase sequences ink's
 * log-update uses) to a screen of `columns`, wrapping as a terminal does, and counts the wraps. An escape it does
 * not know fails the test rather than being ignored.
 */
import { EventEmitter } from 'node:events';

export interface Screen {
  lines: string[];
  /** Lines the terminal wrapped because they were longer than the width: garbage on the next redraw. */
  wraps: number;
}

export function applyTerminal(out: string, columns: number): Screen {
  const rows: string[][] = [[]];
  let row = 0;
  let col = 0;
  let wraps = 0;
  const at = (r: number) => (rows[r] ??= []);
  for (let i = 0; i < out.length; ) {
    const ch = out[i];
    if (ch === '\u001B') {
      const m = /^\u001B\[(\??)([0-9;]*)([A-Za-z])/.exec(out.slice(i));
      if (!m) throw new Error(`unknown escape at ${i}: ${JSON.stringify(out.slice(i, i + 8))}`);
      i += m[0].length;
      const n = m[2] === '' ? 1 : Number(m[2].split(';')[0]);
      if (m[1] === '?') continue; // modes: cursor visibility, synchronized output
      switch (m[3]) {
        case 'm':
          break; // colours
        case 'K':
          rows[row] = m[2] === '2' ? [] : at(row).slice(0, col);
          break;
        case 'A':
          row = Math.max(0, row - n);
          break;
        case 'G':
          col = n - 1;
          break;
        case 'J':
          rows.length = row + 1;
          rows[row] = at(row).slice(0, col);
          break;
        default:
          throw new Error(`unhandled escape ${JSON.stringify(m[0])}`);
      }
      continue;
    }
    i++;
    if (ch === '\n') {
      row++;
      col = 0;
      at(row);
    } else if (ch === '\r') col = 0;
    else {
      if (col >= columns) {
        wraps++;
        row++;
        col = 0;
      }
      at(row)[col++] = ch;
    }
  }
  const lines = rows.map((r) => Array.from(r, (c) => c ?? ' ').join('').trimEnd());
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return { lines, wraps };
}

/** A stream that says it is a terminal of `columns`, keeping what is written. */
export class FakeTty extends EventEmitter {
  isTTY = true;
  rows = 30;
  written = '';
  constructor(public columns: number) {
    super();
  }
  write(s: string | Uint8Array): boolean {
    this.written += typeof s === 'string' ? s : Buffer.from(s).toString('utf8');
    return true;
  }
  screen(): Screen {
    return applyTerminal(this.written, this.columns);
  }
}
