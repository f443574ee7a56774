/** The ink view behind progress.ts; loaded only when a terminal will show it (ink takes ~0.5 s to import). */
import React from 'react';
import { Box, Static, Text, render, type Instance } from 'ink';
import { timing, viewLines, type Baseline, type ProgressState } from './progress-format.js';
import type { Progress } from './progress.js';

export interface ViewProps {
  s: ProgressState;
  /** Lines of their own (evaluations), kept above the live part. */
  events: string[];
  start: number;
  base?: Baseline;
  now: number;
  columns: number;
  color: boolean;
  /** Ended: only the events stay, the live part is erased. */
  done?: boolean;
}

export function ProgressView({ s, events, start, base, now, columns, color, done }: ViewProps): React.ReactElement {
  const lines = done ? [] : viewLines(s, timing(s, start, base, now), columns);
  return (
    <>
      <Static items={events.map((e, i) => ({ e, i }))}>{({ e, i }) => <Text key={i}>{e}</Text>}</Static>
      <Box flexDirection="column">
        {lines.map((l, i) =>
          l.bar ? (
            <Text key={i} wrap="truncate-end">
              <Text bold={color}>{l.bar.head}</Text>
              <Text color={color ? 'cyan' : undefined}>{l.bar.filled}</Text>
              <Text dimColor={color}>{l.bar.empty}</Text>
              {l.bar.tail}
            </Text>
          ) : (
            <Text key={i} wrap="truncate-end" dimColor={color && l.dim}>
              {l.text}
            </Text>
          ),
        )}
      </Box>
    </>
  );
}

export interface ViewOptions {
  stream: NodeJS.WritableStream & { columns?: number };
  color: boolean;
  now: () => number;
}

/**
 * Renders the view on the stream (stderr); redraws at most 10 times a second, and each second for the clock.
 * While it is live, whatever else the process writes to the stream (a command's note, a warning) becomes a line
 * above the view: written around ink, it would leave the view's old lines on the screen.
 */
export function renderProgress(label: string, o: ViewOptions): Progress {
  const start = o.now();
  const stream = o.stream as NodeJS.WritableStream & { write: (...a: unknown[]) => boolean };
  const own = stream.write;
  const write = (d: string) => own.call(stream, d);
  // ink's own stream: the real write, everything else (columns, resize events) the stream's
  const inkOut = new Proxy(stream, { get: (t, k) => (k === 'write' ? (d: unknown, ...rest: unknown[]) => own.call(t, d, ...rest) : typeof Reflect.get(t, k) === 'function' ? (Reflect.get(t, k) as (...a: unknown[]) => unknown).bind(t) : Reflect.get(t, k)) });
  let partial = '';
  let state: ProgressState = { label, records: 0 };
  let base: Baseline | undefined;
  const events: string[] = [];
  let last = 0;
  let stopped = false;
  const columns = () => o.stream.columns || 80;
  const el = (done = false) => <ProgressView s={state} events={[...events]} start={start} base={base} now={o.now()} columns={columns()} color={o.color} done={done} />;
  const ink: Instance = render(el(), { stdout: inkOut as unknown as NodeJS.WriteStream, patchConsole: false, exitOnCtrlC: false, maxFps: 10 });
  const draw = () => {
    last = o.now();
    ink.rerender(el());
  };
  stream.write = (d: unknown, ...rest: unknown[]) => {
    const text = partial + (typeof d === 'string' ? d : Buffer.from(d as Uint8Array).toString('utf8'));
    const lines = text.split('\n');
    partial = lines.pop()!;
    if (lines.length) {
      events.push(...lines);
      draw();
    }
    const cb = rest.find((x) => typeof x === 'function') as (() => void) | undefined;
    if (cb) process.nextTick(cb);
    return true;
  };
  const clock = setInterval(draw, 1000);
  clock.unref();
  // a hard exit (a second Ctrl-C) skips stop(): give the cursor back all the same
  const onExit = () => {
    if (!stopped) write('\u001B[?25h');
  };
  process.once('exit', onExit);
  return {
    update(s) {
      if (stopped) return;
      if (!base && s.records !== undefined) base = { records: s.records, at: o.now() };
      state = { ...state, ...s };
      if (o.now() - last >= 100) draw();
    },
    event(line) {
      if (stopped) return;
      events.push(line);
      draw();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(clock);
      process.off('exit', onExit);
      ink.rerender(el(true));
      ink.clear();
      ink.unmount();
      stream.write = own;
      if (partial) write(partial);
    },
  };
}
