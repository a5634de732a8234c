/**
 * Burst aggregation for "approval needed" notifications (issue 10: approval fatigue is an
 * attack). Per (route, namespace, requester): the first request of a window is announced on
 * its own; the ones that follow within the window are held (their status entry is Batched)
 * and announced together in one summary message when the window closes. While a requester
 * keeps opening requests, each window yields one summary. Pure state: the caller passes the
 * time and runs the timers.
 */
import type { ApprovalRequest } from "../resources/approval-request.js";
import type { Route } from "./messages.js";

export const DEFAULT_BURST_WINDOW_SECONDS = 30;

export function burstKey(route: Route, ar: ApprovalRequest): string {
  return `${route.name}\u0000${ar.metadata.namespace}\u0000${ar.spec.requester.username}`;
}

interface Burst {
  openedAt: number;
  members: Set<string>;
}

export class BurstTracker {
  private readonly bursts = new Map<string, Burst>();

  constructor(readonly windowMs: number) {}

  /**
   * Where a new Requested notification goes: "send" (announce it alone; a window opens, to be
   * flushed at `flushAt`) or "batch" (held for the window's summary).
   */
  place(key: string, member: string, now: number): { kind: "send"; flushAt: number } | { kind: "batch" } {
    const b = this.bursts.get(key);
    if (this.windowMs > 0 && b && now - b.openedAt < this.windowMs) {
      b.members.add(member);
      return { kind: "batch" };
    }
    this.bursts.set(key, { openedAt: now, members: new Set() });
    return { kind: "send", flushAt: now + this.windowMs };
  }

  /** Takes back a Batched entry no window holds (after a restart): returns a flush time if a window opened. */
  adopt(key: string, member: string, now: number): number | undefined {
    const b = this.bursts.get(key);
    if (b) {
      b.members.add(member);
      return undefined;
    }
    this.bursts.set(key, { openedAt: now, members: new Set([member]) });
    return now + this.windowMs;
  }

  holds(key: string, member: string): boolean {
    return this.bursts.get(key)?.members.has(member) ?? false;
  }

  /**
   * Closes the window: returns the held members. When there were some, a new window opens
   * now (flush again at the returned time), so a continuing flood gives one summary per window.
   */
  flush(key: string, now: number): { members: string[]; nextFlushAt?: number } {
    const b = this.bursts.get(key);
    if (!b) return { members: [] };
    const members = [...b.members];
    if (members.length === 0) {
      this.bursts.delete(key);
      return { members };
    }
    this.bursts.set(key, { openedAt: now, members: new Set() });
    return { members, nextFlushAt: now + this.windowMs };
  }

  clear(): void {
    this.bursts.clear();
  }
}
