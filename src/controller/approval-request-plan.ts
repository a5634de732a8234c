/**
 * What the ApprovalRequest reconciler should do for one request, pure (no I/O, no clock: `now`
 * is a parameter): the plan of one reconcile (audit records to ensure and who did what when,
 * whether to announce a transition, the status, the metric), the notification its phase
 * announces, and the next look (execution check, expiry, retention, collection). The
 * reconciler (reconciler.ts) gathers, asks, applies.
 */

import { followUpsDue } from "../approvals/follow-ups.js";
import {
  computePhase,
  EXECUTION_CHECK_DELAY_MS,
  finishedAt,
  nextStatus,
  type PhaseDecision,
  tally,
} from "../approvals/lifecycle.js";
import type { AuditDetails } from "../audit/writer.js";
import { kubeTime } from "../kube/time.js";
import type { NotifyEvent } from "../notify/messages.js";
import { type ApprovalRequest, type ApprovalRequestStatus, Phase } from "../resources/approval-request.js";
import { type AuditActor, AuditEvent } from "../resources/audit-record.js";

/** The audit events a request in `phase` must have, in order. Pure. */
export function expectedAuditEvents(ar: ApprovalRequest, phase: Phase): AuditEvent[] {
  const events: AuditEvent[] = [AuditEvent.Requested];
  const { reached, deniedBy, revokedBy } = tally(ar.spec);
  if (
    phase === Phase.Approved ||
    phase === Phase.Consumed ||
    (phase === Phase.Revoked && reached) ||
    (phase === Phase.Expired && reached && ar.status?.decidedAt)
  ) {
    events.push(AuditEvent.Approved);
  }
  if (phase === Phase.Denied || (deniedBy && phase === Phase.Expired && ar.status?.phase === Phase.Denied))
    events.push(AuditEvent.Denied);
  if (phase === Phase.Expired) events.push(AuditEvent.Expired);
  if (phase === Phase.Revoked && revokedBy) events.push(AuditEvent.Revoked);
  if (phase === Phase.Consumed) events.push(AuditEvent.Consumed);
  const result = ar.status?.execution?.result;
  if (phase === Phase.Consumed && result === "Executed") events.push(AuditEvent.Executed);
  if (phase === Phase.Consumed && result === "NotExecuted") events.push(AuditEvent.NotExecuted);
  return events;
}

/** Who did it and when, for one audit event. Pure. */
export function auditDetails(ar: ApprovalRequest, event: AuditEvent, now: Date, self: string): AuditDetails {
  const s = ar.spec;
  const decisions = s.decisions ?? [];
  const actorOf = (d: { approver: string; uid?: string; groups?: string[]; via?: string }): AuditActor => ({
    username: d.approver,
    ...(d.uid ? { uid: d.uid } : {}),
    ...(d.groups ? { groups: d.groups } : {}),
    ...(d.via ? { via: d.via } : {}),
  });
  switch (event) {
    case AuditEvent.Requested:
      return {
        time: ar.metadata.creationTimestamp
          ? kubeTime(new Date(ar.metadata.creationTimestamp))
          : kubeTime(now),
        actor: {
          username: s.requester.username,
          ...(s.requester.uid ? { uid: s.requester.uid } : {}),
          groups: s.requester.groups ?? [],
        },
        reason: s.agentContext?.reason ?? s.action.summary,
      };
    case AuditEvent.Approved: {
      const { approvals, breakGlass } = tally(s);
      // A break-glass approval approved on its own: its approver is the actor.
      const last = breakGlass ?? approvals[Math.min(approvals.length, s.approval.requiredApprovals) - 1];
      return {
        time: ar.status?.decidedAt ?? last?.time ?? kubeTime(now),
        ...(last ? { actor: actorOf(last) } : {}),
        reason: approvals.map((d) => `${d.approver}${d.reason ? `: ${d.reason}` : ""}`).join("; "),
        ...(breakGlass ? { breakGlass: true } : {}),
      };
    }
    case AuditEvent.Denied: {
      const d = decisions.find((x) => x.decision === "Deny");
      return {
        time: ar.status?.decidedAt ?? d?.time ?? kubeTime(now),
        ...(d ? { actor: actorOf(d) } : {}),
        ...(d?.reason ? { reason: d.reason } : {}),
      };
    }
    case AuditEvent.Revoked: {
      const d = decisions.find((x) => x.decision === "Revoke");
      return {
        time: d?.time ?? kubeTime(now),
        ...(d ? { actor: actorOf(d) } : {}),
        ...(d?.reason ? { reason: d.reason } : {}),
      };
    }
    case AuditEvent.Expired:
      return {
        time: s.approval.expiresAt,
        actor: { username: self, via: "controller" },
        reason: `no usable decision before ${s.approval.expiresAt}`,
      };
    case AuditEvent.Consumed:
      return {
        time: ar.status?.consumed?.time ?? kubeTime(now),
        actor: { username: s.requester.username },
        reason: `approved action admitted (admission uid ${ar.status?.consumed?.admissionUID ?? "unknown"}, replica ${ar.status?.consumed?.replica ?? "unknown"})`,
      };
    case AuditEvent.Executed:
    case AuditEvent.NotExecuted:
      return {
        time: ar.status?.execution?.checkedAt ?? kubeTime(now),
        actor: { username: self, via: "controller" },
        reason: ar.status?.execution?.message ?? "",
      };
    default:
      return { time: kubeTime(now) };
  }
}

/** The notification event a phase announces (none for Consumed). Pure. */
export function notifyEventFor(phase: Phase | undefined): NotifyEvent | undefined {
  switch (phase) {
    case Phase.Pending:
      return "Requested";
    case Phase.Approved:
    case Phase.Denied:
    case Phase.Expired:
    case Phase.Revoked:
      return phase;
    default:
      return undefined;
  }
}

/** What one reconcile of a request should write, decided from the request as cached and `now`. */
export interface ReconcilePlan {
  /** The phase it should be in, why, and the phase it is recorded in now. */
  target: PhaseDecision;
  before: Phase | undefined;
  /** Audit events to write (the ones its status does not list yet), in order. */
  audit: AuditEvent[];
  /** Emit a transition Event (the webhook itself announces creation and consumption). */
  announce: boolean;
  /** The status from the lifecycle (undefined when unchanged); audit refs are added on apply. */
  status: ApprovalRequestStatus | undefined;
  /** Observe time-to-decision for this transition (a decision, or expiry without approval). */
  observeDecision: boolean;
}

export function planReconcile(ar: ApprovalRequest, now: Date): ReconcilePlan {
  const target = computePhase(ar, now);
  const before = ar.status?.phase;
  const listed = new Set((ar.status?.auditRecords ?? []).map((r) => r.event));
  const changed = target.phase !== before;
  return {
    target,
    before,
    audit: expectedAuditEvents(ar, target.phase).filter((e) => !listed.has(e)),
    announce: changed && target.phase !== Phase.Pending && target.phase !== Phase.Consumed,
    status: nextStatus(ar, now),
    observeDecision:
      changed &&
      (target.phase === Phase.Approved ||
        target.phase === Phase.Denied ||
        (target.phase === Phase.Expired && before !== Phase.Approved)),
  };
}

/**
 * After the status is written, the next thing to do for a request: check whether its consumed
 * action took effect (now, or at `at`), wake for its next reminder or escalation, wake at its
 * expiry, wake at the end of its retention, or collect it.
 */
export type NextLook =
  | { kind: "check-execution" }
  | { kind: "wake"; at: Date; why: "execution-check" | "expiry" | "follow-up" | "retention" }
  | { kind: "collect" };

export function nextLook(ar: ApprovalRequest, now: Date, retentionMs: number): NextLook {
  if (ar.status?.phase === Phase.Consumed && !ar.status.execution) {
    const consumedAt = Date.parse(ar.status.consumed?.time ?? "") || now.getTime();
    const due = consumedAt + EXECUTION_CHECK_DELAY_MS;
    return now.getTime() < due
      ? { kind: "wake", at: new Date(due), why: "execution-check" }
      : { kind: "check-execution" };
  }
  const finished = finishedAt(ar);
  if (!finished) {
    // A reminder or escalation due before expiry wakes it first (followUpsDue only names those).
    const followUp = followUpsDue(ar, now).nextAt;
    if (followUp) return { kind: "wake", at: followUp, why: "follow-up" };
    return { kind: "wake", at: new Date(Date.parse(ar.spec.approval.expiresAt)), why: "expiry" };
  }
  const gcAt = new Date(finished.getTime() + retentionMs);
  return now < gcAt ? { kind: "wake", at: gcAt, why: "retention" } : { kind: "collect" };
}
