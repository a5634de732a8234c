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

/** A counter with a ceiling: tryAcquire() before the gate's work, release() after it. */
export class InFlightLimit {
  private current = 0;
  private shedSinceReport = 0;
  private lastReport = Number.NEGATIVE_INFINITY;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1)
      throw new Error(`the in-flight limit must be a whole number of at least 1, not ${max}`);
  }

  /** Takes a slot; false (and nothing taken) when all `max` are in use. */
  tryAcquire(): boolean {
    if (this.current >= this.max) return false;
    this.current++;
    return true;
  }

  /** Gives back a slot taken by tryAcquire (exactly once per successful tryAcquire). */
  release(): void {
    if (this.current === 0) throw new Error("InFlightLimit.release() without a matching tryAcquire()");
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

/** What an agent reads when its gated action was shed. */
export function overloadedMessage(max: number): string {
  return `Countersign is overloaded: it is already working on ${max} actions that need approval, so this one was refused at once without being looked at. Nothing was changed, no ApprovalRequest was opened and no approval was used. Retry in a few seconds, and back off if this repeats.`;
}
