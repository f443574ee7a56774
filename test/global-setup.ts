import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import path from 'node:path';

/** The newest modification time of any file under `dir` (0 when it does not exist). */
function newest(dir: string): number {
  if (!existsSync(dir)) return 0;
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * CLI tests run the real binary, which runs the compiled code: build it when it is missing or older than any
 * source file (or the tsconfig), so a test never runs a stale build after an edit.
 */
export default function setup(): void {
  const built = existsSync('dist/commands/convert.js') ? statSync('dist/commands/convert.js').mtimeMs : 0;
  const sources = Math.max(newest('src'), statSync('tsconfig.build.json').mtimeMs, statSync('tsconfig.json').mtimeMs);
  if (built === 0 || sources > built) {
    // From scratch, as the Makefile builds: a removed source must not leave its old command behind.
    rmSync('dist', { recursive: true, force: true });
    execFileSync('npm', ['run', 'build'], { stdio: 'inherit' });
    const now = new Date();
    utimesSync('dist/commands/convert.js', now, now);
  }
}
