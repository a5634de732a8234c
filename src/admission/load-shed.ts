/**
 * Load shedding for the admission gate (issue 12, overload). Only reviews a RequireApproval
 * rule matched do work beyond memory (hashing the transition, reading and writing
 * ApprovalRequests, SubjectAccessReviews, holds of up to a few seconds); those are counted while
 * in flight, and past the cap the excess is refused at once, fail closed, with a message that
 * says exactly that. Everything answered from memory (allowed, denied by policy, Countersign's
 * own and approvers' writes) is never shed: it is as cheap as a refusal, and refusing it would
 * turn an agent flood into an outage for work nobody gates. Pure: no I/O, clock or logger.
 */

/** Gated reviews one webhook replica works on at once (--max-in-flight-reviews). */
export const DEFAULT_MAX_IN_FLIGHT_REVIEWS = 128;

/** At most one log line per this interval while shedding (the metric counts every one). */
export const SHED_REPORT_INTERVAL_MS = 10_000;

/**
 * A counter with a ceiling: tryAcquire() before the gate's work, release() after it. Given a
 * requester, one requester holds at most `share` of the slots (a quarter is kept for the
 * others: 96 of 128), so one
 * agent flooding gated actions (each held up to a policy's holdSeconds) cannot take every slot
 * and get everyone else's gated actions, approved retries included, shed (red team 14).
 */
export class InFlightLimit {
  private current = 0;
  private readonly byRequester = new Map<string, number>();
  private shedSinceReport = 0;
  private lastReport = Number.NEGATIVE_INFINITY;
  /** The most slots one requester holds at once. */
  readonly share: number;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1)
      throw new Error(`the in-flight limit must be a whole number of at least 1, not ${max}`);
    this.share = Math.max(1, max - Math.floor(max / 4));
  }

  /**
   * Takes a slot; false (and nothing taken) when all `max` are in use, or `requester` already
   * holds its share.
   */
  tryAcquire(requester?: string): boolean {
    if (this.current >= this.max) return false;
    if (requester !== undefined) {
      const held = this.byRequester.get(requester) ?? 0;
      if (held >= this.share) return false;
      this.byRequester.set(requester, held + 1);
    }
    this.current++;
    return true;
  }

  /** Gives back a slot taken by tryAcquire (exactly once per successful tryAcquire, same requester). */
  release(requester?: string): void {
    if (this.current === 0) throw new Error("InFlightLimit.release() without a matching tryAcquire()");
    if (requester !== undefined) {
      const held = this.byRequester.get(requester) ?? 0;
      if (held === 0) throw new Error("InFlightLimit.release() without a matching tryAcquire()");
      if (held === 1) this.byRequester.delete(requester);
      else this.byRequester.set(requester, held - 1);
    }
    this.current--;
  }

  get inFlight(): number {
    return this.current;
  }

  /**
   * Counts one shed review; returns how many were shed since the last report when one is due
   * (the first shed, then at most one per SHED_REPORT_INTERVAL_MS), else undefined. Logging
   * every shed would add work exactly when there is too much.
   */
  noteShed(nowMs: number): number | undefined {
    this.shedSinceReport++;
    if (nowMs - this.lastReport < SHED_REPORT_INTERVAL_MS) return undefined;
    const count = this.shedSinceReport;
    this.shedSinceReport = 0;
    this.lastReport = nowMs;
    return count;
  }
}

/**
 * What an agent reads when its gated action was shed: `mine` when it was its own share that was
 * full (the replica as a whole still had room).
 */
export function overloadedMessage(max: number, mine?: number): string {
  const why =
    mine !== undefined
      ? `it is already working on ${mine} of your actions that need approval, the most one requester gets at once`
      : `it is already working on ${max} actions that need approval`;
  return `Countersign is overloaded: ${why}, so this one was refused at once without being looked at. Nothing was changed, no ApprovalRequest was opened and no approval was used. Retry in a few seconds, and back off if this repeats.`;
}
