/**
 * The reconciler's work queue (src/controller/work-queue.ts): bounded concurrency, one worker
 * per key, changes before the backlog, a per-key deadline and exponential backoff, timers.
 */
import { describe, expect, it } from "vitest";
import { WorkQueue, type WorkQueueOptions } from "../../src/controller/work-queue.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(5);
  }
}

function queue(process: (key: string) => Promise<void>, over: Partial<WorkQueueOptions> = {}): WorkQueue {
  return new WorkQueue({
    workers: 2,
    deadlineMs: 1000,
    backoff: { baseMs: 20, maxMs: 200 },
    process,
    ...over,
  });
}

describe("work queue", () => {
  it("never runs one key twice at once; a key added while it runs runs once more afterwards", async () => {
    let running = 0;
    let maxRunning = 0;
    const runs: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const q = queue(async (key) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs.push(key);
      if (runs.length === 1) await gate;
      running--;
    });
    q.add("a");
    q.add("a");
    q.add("a");
    await sleep(20);
    expect(runs).toEqual(["a"]);
    release();
    await until(() => runs.length === 2 && running === 0);
    await sleep(30);
    expect(runs).toEqual(["a", "a"]);
    expect(maxRunning).toBe(1);
    q.stop();
  });

  it("a key that never answers does not stall the others: they run while it waits out its deadline", async () => {
    const done: string[] = [];
    const errors: string[] = [];
    const q = queue(
      async (key) => {
        if (key === "stuck") return new Promise<void>(() => {});
        done.push(key);
      },
      { workers: 1, deadlineMs: 50, onError: (key) => errors.push(key) },
    );
    q.add("stuck");
    for (const k of ["b", "c", "d"]) q.add(k);
    await until(() => done.length === 3, 1000);
    expect(done).toEqual(["b", "c", "d"]);
    expect(errors[0]).toBe("stuck");
    q.stop();
  });

  it("retries a failing key with per-key exponential backoff, and a success resets it", async () => {
    const times: number[] = [];
    let fail = 4;
    const delays: number[] = [];
    const q = queue(
      async () => {
        times.push(Date.now());
        if (fail-- > 0) throw new Error("API unavailable");
      },
      { backoff: { baseMs: 20, maxMs: 60 }, onError: (_k, _e, ms) => delays.push(ms) },
    );
    expect(q.backoffMs(1)).toBe(20);
    expect(q.backoffMs(2)).toBe(40);
    expect(q.backoffMs(3)).toBe(60); // capped
    q.add("k");
    await until(() => times.length === 5, 2000);
    expect(delays).toEqual([20, 40, 60, 60]);
    for (let i = 1; i < times.length; i++)
      expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(delays[i - 1]! - 5);
    // succeeded: the next failure starts from the base again
    fail = 1;
    q.add("k");
    await until(() => delays.length === 5);
    expect(delays[4]).toBe(20);
    q.stop();
  });

  it("a change to a failing key runs at once, not after its backoff", async () => {
    const runs: number[] = [];
    const q = queue(
      async () => {
        runs.push(Date.now());
        if (runs.length === 1) {
          q.add("k"); // a new version arrives while the first attempt fails
          throw new Error("conflict");
        }
      },
      { backoff: { baseMs: 10_000, maxMs: 10_000 } },
    );
    q.add("k");
    await until(() => runs.length === 2, 500);
    q.stop();
  });

  it("takes changes before the backlog", async () => {
    const order: string[] = [];
    const q = queue(
      async (key) => {
        order.push(key);
        await sleep(5);
      },
      { workers: 1 },
    );
    q.add("old-1", { backlog: true }); // taken at once by the one worker
    q.add("old-2", { backlog: true });
    q.add("old-3", { backlog: true });
    q.add("fresh");
    await until(() => order.length === 4);
    expect(order).toEqual(["old-1", "fresh", "old-2", "old-3"]);
    q.stop();
  });

  it("keeps one timer per key; forget and clear drop timers; nothing is added while inactive", async () => {
    const runs: string[] = [];
    let active = true;
    const q = queue(
      async (key) => {
        runs.push(key);
      },
      { active: () => active },
    );
    q.addAfter("a", 30);
    q.addAfter("a", 10); // replaces the first
    q.addAfter("b", 10);
    q.forget("b");
    await sleep(60);
    expect(runs).toEqual(["a"]);
    q.addAfter("c", 10);
    q.clear();
    active = false;
    q.add("d");
    await sleep(30);
    expect(runs).toEqual(["a"]);
    expect(q.length).toBe(0);
    q.stop();
  });
});
