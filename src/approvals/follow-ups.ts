/**
 * Follow-ups of a request left pending (issue 14 item 3), pure (no I/O, no clock: `now` is a
 * parameter). A policy rule may set `remindAfter` (its routes hear of the request once more)
 * and `escalateAfter` + `escalateTo` (those routes hear of it, once); both count from the
 * request's creation and only while it is pending. The controller's notification step sends
 * what `followUpsDue` names and records `status.remindedAt` / `status.escalatedAt` in the same
 * conditional write as the notification entries, so neither goes out twice (a restart, a
 * second controller). The requester's denial reads `pendingProgress`.
 */
import { parseDurationSeconds } from "../policy/compile.js";
import { type ApprovalRequest, Phase } from "../resources/approval-request.js";
import { computePhase, effectivePhase, tally } from "./lifecycle.js";

export const FollowUp = { Reminder: "Reminder", Escalated: "Escalated" } as const;
export type FollowUp = (typeof FollowUp)[keyof typeof FollowUp];

/** When the request was created (ms), or undefined when the server has not said. */
function createdAt(ar: ApprovalRequest): number | undefined {
  const t = ar.metadata.creationTimestamp;
  if (t === undefined) return undefined;
  const ms = new Date(t).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/** When each follow-up the request's policy asks for falls due (ms), whether or not it was sent. */
export function followUpTimes(ar: ApprovalRequest): { event: FollowUp; at: number }[] {
  const created = createdAt(ar);
  if (created === undefined) return [];
  const a = ar.spec.approval;
  const out: { event: FollowUp; at: number }[] = [];
  const remind = a.remindAfter ? parseDurationSeconds(a.remindAfter) : undefined;
  if (remind) out.push({ event: FollowUp.Reminder, at: created + remind * 1000 });
  const escalate =
    a.escalateAfter && a.escalateTo?.length ? parseDurationSeconds(a.escalateAfter) : undefined;
  if (escalate) out.push({ event: FollowUp.Escalated, at: created + escalate * 1000 });
  return out;
}

const sentAt = (ar: ApprovalRequest, event: FollowUp) =>
  event === FollowUp.Reminder ? ar.status?.remindedAt : ar.status?.escalatedAt;

/**
 * The follow-ups to send now (due, not sent, the request still pending and unexpired), and
 * when the next unsent one falls due (before expiry), for the reconciler's wake-up.
 */
export function followUpsDue(ar: ApprovalRequest, now: Date): { due: FollowUp[]; nextAt?: Date } {
  // Pending as recorded and from the decisions: a Deny the reconciler has not written yet
  // already ends the follow-ups.
  if (effectivePhase(ar, now) !== Phase.Pending || computePhase(ar, now).phase !== Phase.Pending)
    return { due: [] };
  const expires = Date.parse(ar.spec.approval.expiresAt);
  // A request still held for a burst summary (notify/bursts.ts) has not been announced yet: its
  // reminder waits for the summary (whose status write brings the request back to the controller).
  const held = (ar.status?.notifications ?? []).some((n) => n.event === "Requested" && n.state === "Batched");
  const due: FollowUp[] = [];
  let next: number | undefined;
  for (const f of followUpTimes(ar)) {
    if (sentAt(ar, f.event) || f.at >= expires) continue;
    if (held && f.event === FollowUp.Reminder) continue;
    if (f.at <= now.getTime()) due.push(f.event);
    else next = next === undefined ? f.at : Math.min(next, f.at);
  }
  return { due, ...(next !== undefined ? { nextAt: new Date(next) } : {}) };
}

/** "45 s", "10 min", "2 h 5 min": how long ago, for people. */
export function ago(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  return `${h} h${m % 60 ? ` ${m % 60} min` : ""} ago`;
}

/**
 * Where a pending request stands, for the requester's denial: "1/2 approvals, reminded 10 min
 * ago, escalated 2 min ago". Read from the request as cached (no API call).
 */
export function pendingProgress(ar: ApprovalRequest, now: Date, from?: string): string {
  const parts = [
    `${tally(ar.spec).approvals.length}/${ar.spec.approval.requiredApprovals} approvals${from ? ` from ${from}` : ""}`,
  ];
  // Said only when a route was actually notified (the follow-up's entries), never from the time alone.
  const routes = (event: FollowUp) =>
    (ar.status?.notifications ?? []).filter((n) => n.event === event).map((n) => n.route);
  const reminded = ar.status?.remindedAt;
  if (reminded && routes(FollowUp.Reminder).length > 0)
    parts.push(`reminded ${ago(now.getTime() - Date.parse(reminded))}`);
  const escalated = ar.status?.escalatedAt;
  const escalatedTo = routes(FollowUp.Escalated);
  if (escalated && escalatedTo.length > 0)
    parts.push(`escalated to ${escalatedTo.join(", ")} ${ago(now.getTime() - Date.parse(escalated))}`);
  return parts.join(", ");
}

/**
 * The request's follow-ups for people (`kubectl approvals show`, the console): "remind after 10m
 * (sent 2026-…), escalate to pager after 30m (not yet)"; undefined when its rule sets none.
 */
export function followUpSummary(ar: ApprovalRequest): string | undefined {
  const a = ar.spec.approval;
  const parts: string[] = [];
  if (a.remindAfter)
    parts.push(
      `remind after ${a.remindAfter} (${ar.status?.remindedAt ? `sent ${ar.status.remindedAt}` : "not yet"})`,
    );
  if (a.escalateAfter && a.escalateTo?.length)
    parts.push(
      `escalate to ${a.escalateTo.join(", ")} after ${a.escalateAfter} (${ar.status?.escalatedAt ? `sent ${ar.status.escalatedAt}` : "not yet"})`,
    );
  return parts.length ? parts.join(", ") : undefined;
}
