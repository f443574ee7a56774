/**
 * Requests waiting for replies over one ordered channel (a websocket, a worker thread): the replies settle the
 * waiting requests in the order they were made; a failure of the channel rejects every waiting request, and every
 * later one, with its first error.
 */

export interface ReplyQueueOptions {
  /** Per request: with no reply within `ms`, the queue fails with `error()`, then `after()` runs (close the channel). */
  timeout?: { ms: number; error: () => Error; after?: () => void };
  /** At most `max` requests waiting at once: one more is rejected with `error()` (the queue stays usable). */
  capacity?: { max: number; error: () => Error };
}

interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (err: Error) => void;
  timer?: NodeJS.Timeout;
}

export class ReplyQueue<T> {
  private readonly waiting: Waiter<T>[] = [];
  private firstError: Error | undefined;

  constructor(private readonly o: ReplyQueueOptions = {}) {}

  /** The error the queue failed with (undefined while it works). */
  get failure(): Error | undefined {
    return this.firstError;
  }

  /** Requests waiting for a reply. */
  get size(): number {
    return this.waiting.length;
  }

  /** The reply to the next request, in order; rejected at once when the queue has failed or is full. */
  wait(): Promise<T> {
    if (this.firstError) return Promise.reject(this.firstError);
    const cap = this.o.capacity;
    if (cap && this.waiting.length >= cap.max) return Promise.reject(cap.error());
    return new Promise<T>((resolve, reject) => {
      const w: Waiter<T> = { resolve, reject };
      const t = this.o.timeout;
      if (t) {
        w.timer = setTimeout(() => {
          this.fail(t.error());
          t.after?.();
        }, t.ms);
      }
      this.waiting.push(w);
    });
  }

  /** Resolves the oldest waiting request with `value`; false when none waits (the reply is dropped). */
  resolve(value: T): boolean {
    const w = this.oldest();
    w?.resolve(value);
    return w !== undefined;
  }

  /** Rejects the oldest waiting request with `err` (a reply that reports an error); false when none waits. */
  reject(err: Error): boolean {
    const w = this.oldest();
    w?.reject(err);
    return w !== undefined;
  }

  /** The oldest waiting request, taken off the queue with its timer stopped. */
  private oldest(): Waiter<T> | undefined {
    const w = this.waiting.shift();
    if (w) clearTimeout(w.timer);
    return w;
  }

  /** Fails the queue: every waiting request, and every later one, is rejected with the first error given. */
  fail(err: Error): void {
    this.firstError ??= err;
    for (const w of this.waiting.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.firstError);
    }
  }
}
