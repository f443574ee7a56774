import { afterEach, describe, expect, it, vi } from 'vitest';
import { ReplyQueue } from '../../src/lib/util/reply-queue.js';

/** Where each promise stands, without waiting on the pending ones. */
async function states<T>(ps: Promise<T>[]): Promise<string[]> {
  const out = ps.map(() => 'pending');
  ps.forEach((p, i) =>
    p.then(
      (v) => (out[i] = `ok:${String(v)}`),
      (e: Error) => (out[i] = `err:${e.message}`),
    ),
  );
  await new Promise((r) => setImmediate(r));
  return out;
}

describe('ReplyQueue', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('settles waiting requests in the order they were made', async () => {
    const q = new ReplyQueue<string>();
    const ps = [q.wait(), q.wait(), q.wait()];
    expect(q.size).toBe(3);
    expect(q.resolve('a')).toBe(true);
    expect(q.resolve('b')).toBe(true);
    expect(await states(ps)).toEqual(['ok:a', 'ok:b', 'pending']);
    expect(q.resolve('c')).toBe(true);
    expect(await states(ps)).toEqual(['ok:a', 'ok:b', 'ok:c']);
    expect(q.size).toBe(0);
    expect(q.resolve('unasked')).toBe(false); // a reply nobody waits for is dropped
    const later = q.wait();
    q.resolve('d');
    await expect(later).resolves.toBe('d');
  });

  it('rejects the oldest request with a reported error and keeps serving the rest', async () => {
    const q = new ReplyQueue<string>();
    const ps = [q.wait(), q.wait()];
    expect(q.reject(new Error('bad request'))).toBe(true);
    q.resolve('fine');
    expect(await states(ps)).toEqual(['err:bad request', 'ok:fine']);
    expect(q.failure).toBeUndefined();
    expect(q.reject(new Error('nobody'))).toBe(false);
  });

  it('on failure (the channel closed) rejects every waiting and every later request with the first error', async () => {
    const q = new ReplyQueue<string>();
    const ps = [q.wait(), q.wait()];
    q.fail(new Error('closed'));
    q.fail(new Error('second error'));
    expect(await states(ps)).toEqual(['err:closed', 'err:closed']);
    expect(q.failure?.message).toBe('closed');
    expect(q.size).toBe(0);
    await expect(q.wait()).rejects.toThrow('closed');
    expect(q.resolve('late')).toBe(false);
  });

  it('fails the whole queue when a request gets no reply in time, then runs the after hook', async () => {
    vi.useFakeTimers();
    const after = vi.fn();
    const q = new ReplyQueue<string>({ timeout: { ms: 1000, error: () => new Error('no answer'), after } });
    const first = q.wait();
    const second = q.wait();
    first.catch(() => undefined);
    second.catch(() => undefined);
    vi.advanceTimersByTime(999);
    expect(after).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(after).toHaveBeenCalledTimes(1);
    await expect(first).rejects.toThrow('no answer');
    await expect(second).rejects.toThrow('no answer');
    await expect(q.wait()).rejects.toThrow('no answer');
  });

  it('a reply stops its request timer', async () => {
    vi.useFakeTimers();
    const after = vi.fn();
    const q = new ReplyQueue<string>({ timeout: { ms: 1000, error: () => new Error('no answer'), after } });
    const p = q.wait();
    q.resolve('quick');
    await expect(p).resolves.toBe('quick');
    vi.advanceTimersByTime(5000);
    expect(after).not.toHaveBeenCalled();
    expect(q.failure).toBeUndefined();
  });

  it('rejects a request over the capacity without failing the queue', async () => {
    const q = new ReplyQueue<string>({ capacity: { max: 1, error: () => new Error('one at a time') } });
    const p = q.wait();
    await expect(q.wait()).rejects.toThrow('one at a time');
    expect(q.failure).toBeUndefined();
    q.resolve('x');
    await expect(p).resolves.toBe('x');
    const next = q.wait();
    q.resolve('y');
    await expect(next).resolves.toBe('y');
  });
});
