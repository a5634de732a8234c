/**
 * A work queue of keys in client-go's shape, for the ApprovalRequest reconciler:
 *
 *  - several workers take keys at once (bounded concurrency), and a key is never processed by
 *    two workers at once: a key added while it is being processed runs again once, afterwards;
 *  - changes come before the backlog (the keys found when a replica takes the lead), so a
 *    fresh decision is not queued behind thousands of old requests;
 *  - one processing of a key may take at most `deadlineMs`: past it the worker moves on and the
 *    key is retried (the late run may still finish; the reconciler's writes are conditional or
 *    idempotent), so a call that never answers cannot stall the queue;
 *  - a key that fails is retried after a per-key exponential backoff (base, 2·base, 4·base, …
 *    up to maxMs), reset by its next success, so one failing key neither spins nor delays others
 *    (a new change to it is still processed at once: events are never held back);
 *  - addAfter keeps one timer per key (a later call replaces it): expiry, execution check,
 *    garbage collection.
 *
 * No Kubernetes here; the clock is setTimeout's.
 */

export interface WorkQueueOptions {
  /** Keys processed at once. */
  workers: number;
  /** How long one processing of a key may take before the worker moves on. */
  deadlineMs: number;
  /** Retry delay after the first failure of a key, doubled per further failure up to maxMs. */
  backoff: { baseMs: number; maxMs: number };
  process: (key: string) => Promise<void>;
  /** Told of each failure and when the key runs again. */
  onError?: (key: string, err: unknown, retryInMs: number) => void;
  /** While false, nothing is added or taken (e.g. this replica does not lead). Default: always. */
  active?: () => boolean;
}

/** setTimeout's limit (~24.8 days); longer waits are cut to it and re-armed by the next event. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class DeadlineExceeded extends Error {}

export class WorkQueue {
  private readonly changes = new Set<string>();
  private readonly backlog = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly again = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private workers = 0;
  private stopped = false;

  constructor(private readonly opts: WorkQueueOptions) {}

  private isActive(): boolean {
    return !this.stopped && (this.opts.active?.() ?? true);
  }

  /** Queues `key` now (as part of the backlog: after every change). */
  add(key: string, opts: { backlog?: boolean } = {}): void {
    if (!this.isActive()) return;
    if (this.processing.has(key)) {
      this.again.add(key);
      return;
    }
    if (opts.backlog) {
      if (!this.changes.has(key)) this.backlog.add(key);
    } else {
      this.backlog.delete(key);
      this.changes.add(key);
    }
    while (this.workers < this.opts.workers && this.changes.size + this.backlog.size > 0) {
      this.workers++;
      void this.work(); // takes its first key synchronously, so each pass shrinks the queue
    }
  }

  /** Queues `key` after `delayMs` (replacing an earlier timer for it). */
  addAfter(key: string, delayMs: number): void {
    this.clearTimer(key);
    if (!this.isActive()) return;
    this.timers.set(
      key,
      setTimeout(
        () => {
          this.timers.delete(key);
          this.add(key);
        },
        Math.min(Math.max(0, delayMs), MAX_TIMER_MS),
      ),
    );
  }

  /** Forgets `key`: its timer and its failure count (the object is gone). */
  forget(key: string): void {
    this.clearTimer(key);
    this.failures.delete(key);
  }

  /** Drops every queued key and timer (this replica stopped leading). Running keys finish. */
  clear(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.changes.clear();
    this.backlog.clear();
    this.again.clear();
    this.failures.clear();
  }

  stop(): void {
    this.stopped = true;
    this.clear();
  }

  /** Keys waiting (not running, not timed). */
  get length(): number {
    return this.changes.size + this.backlog.size;
  }

  /** The delay before the next retry of a key that has failed `n` times in a row. */
  backoffMs(n: number): number {
    return Math.min(this.opts.backoff.maxMs, this.opts.backoff.baseMs * 2 ** Math.max(0, n - 1));
  }

  private clearTimer(key: string): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
  }

  private async work(): Promise<void> {
    try {
      while (this.changes.size + this.backlog.size > 0 && this.isActive()) {
        const from = this.changes.size > 0 ? this.changes : this.backlog;
        const key = from.values().next().value as string;
        from.delete(key);
        this.processing.add(key);
        try {
          await withDeadline(this.opts.process(key), this.opts.deadlineMs, key);
          this.failures.delete(key);
        } catch (err) {
          const n = (this.failures.get(key) ?? 0) + 1;
          this.failures.set(key, n);
          const delay = this.backoffMs(n);
          this.opts.onError?.(key, err, delay);
          this.processing.delete(key);
          // A change that came in meanwhile runs now (it may be what was missing); else back off.
          if (this.again.delete(key)) this.changes.add(key);
          else this.addAfter(key, delay);
          continue;
        }
        this.processing.delete(key);
        if (this.again.delete(key)) this.changes.add(key);
      }
    } finally {
      this.workers--;
    }
  }
}

function withDeadline<T>(work: Promise<T>, ms: number, key: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(`processing ${key} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
