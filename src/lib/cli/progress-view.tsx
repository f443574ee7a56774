/** The ink view behind progress.ts; loaded only when a terminal will show it (ink takes ~0.5 s to import). */
import React from 'react';
import { Box, Static, Text, render, useStderr, type Instance } from 'ink';
import { baseline, timing, viewLines, type Baseline, type ProgressState } from './progress-format.js';
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
  /** Also take over this stream's writes (stdout, when it is the same terminal): data lines go above the view. */
  alsoCapture?: NodeJS.WritableStream;
  initial?: Partial<ProgressState>;
}

/** Hands out ink's write-above-the-view function (it erases the view, writes, draws the view again). */
function Writer({ take }: { take: (write: (data: string) => void) => void }): null {
  take(useStderr().write);
  return null;
}

type Writable = NodeJS.WritableStream & { write: (...a: unknown[]) => boolean };

/** Replaces `stream`'s write: whole lines go to `above`, a partial line waits for its end; returns the undo. */
function capture(stream: Writable, above: (lines: string) => void): () => void {
  const own = stream.write;
  let partial = '';
  stream.write = (d: unknown, ...rest: unknown[]) => {
    const text = partial + (typeof d === 'string' ? d : Buffer.from(d as Uint8Array).toString('utf8'));
    const cut = text.lastIndexOf('\n') + 1;
    partial = text.slice(cut);
    if (cut) above(text.slice(0, cut));
    const cb = rest.find((x) => typeof x === 'function') as (() => void) | undefined;
    if (cb) process.nextTick(cb);
    return true;
  };
  return () => {
    stream.write = own;
    if (partial) own.call(stream, partial);
  };
}

/**
 * Renders the view on the stream (stderr); redraws at most 10 times a second, and each second for the clock.
 * While it is live, whatever else the process writes to the stream (a command's note, a warning; with
 * `alsoCapture`, data on a stdout that is the same terminal) is written above the view: written around ink, it
 * would leave the view's old lines on the screen.
 */
export function renderProgress(label: string, o: ViewOptions): Progress {
  const start = o.now();
  const stream = o.stream as Writable;
  const own = stream.write;
  const write = (d: string) => own.call(stream, d);
  // ink's own stream: the real write, everything else (columns, resize events) the stream's
  const inkOut = new Proxy(stream, { get: (t, k) => (k === 'write' ? (d: unknown, ...rest: unknown[]) => own.call(t, d, ...rest) : typeof Reflect.get(t, k) === 'function' ? (Reflect.get(t, k) as (...a: unknown[]) => unknown).bind(t) : Reflect.get(t, k)) });
  let above: (data: string) => void = write;
  let state: ProgressState = { label, records: 0, ...o.initial };
  let base: Baseline | undefined;
  const events: string[] = [];
  let last = 0;
  let stopped = false;
  const columns = () => o.stream.columns || 80;
  const el = (done = false) => (
    <>
      <Writer take={(w) => (above = w)} />
      <ProgressView s={state} events={[...events]} start={start} base={base} now={o.now()} columns={columns()} color={o.color} done={done} />
    </>
  );
  const ink: Instance = render(el(), { stdout: inkOut as unknown as NodeJS.WriteStream, stderr: inkOut as unknown as NodeJS.WriteStream, patchConsole: false, exitOnCtrlC: false, maxFps: 10 });
  const undo = [capture(stream, (d) => above(d)), ...(o.alsoCapture ? [capture(o.alsoCapture as Writable, (d) => above(d))] : [])];
  const draw = () => {
    last = o.now();
    ink.rerender(el());
  };
  const clock = setInterval(draw, 1000);
  clock.unref();
  // a resized terminal: the lines are fitted to the new width at once
  stream.on('resize', draw);
  // a hard exit (a second Ctrl-C) skips stop(): give the cursor back all the same
  const onExit = () => {
    if (!stopped) write('\u001B[?25h');
  };
  process.once('exit', onExit);
  return {
    update(s) {
      if (stopped) return;
      base ??= baseline(s, o.now());
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
      stream.off('resize', draw);
      process.off('exit', onExit);
      ink.rerender(el(true));
      ink.clear();
      ink.unmount();
      for (const u of undo) u();
    },
  };
}
