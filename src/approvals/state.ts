/**
 * The ApprovalRequest state machine, pure: (request, now) → the status it should have.
 *
 *   Pending ──(N distinct approvals)──▶ Approved ──(webhook admits the action)──▶ Consumed
 *      │ └──(any Deny)──▶ Denied              └──(an approver revokes)──▶ Revoked
 *      └──(expiresAt passes)──▶ Expired  ◀──(expiresAt passes)── Approved
 *
 * Revoke and consume race on the resourceVersion: the gate's Consumed write is conditional,
 * and the Revoke decision is a spec write the guard admits only while the request it sees is
 * Approved and unconsumed, so exactly one of them lands.
 * Consumed is written only by the webhook (conditional update); everything else by the
 * reconciler from this function. lastTransitionTime moves only when a condition changes.
 */

import { kubeTime } from "../kube/time.js";
import type { Condition } from "../policy/types.js";
import { type ApprovalRequest, type ApprovalRequestStatus, Phase, tallyDecisions } from "./request.js";

export const ConditionType = {
  Approved: "Approved",
  Denied: "Denied",
  Expired: "Expired",
  Consumed: "Consumed",
  Revoked: "Revoked",
  Ready: "Ready",
} as const;

export const Reason = {
  AwaitingApproval: "AwaitingApproval",
  ApprovalsReceived: "ApprovalsReceived",
  DeniedByApprover: "DeniedByApprover",
  TTLExceeded: "TTLExceeded",
  ActionAdmitted: "ActionAdmitted",
  RevokedByApprover: "RevokedByApprover",
} as const;

export interface PhaseDecision {
  phase: Phase;
  reason: string;
  message: string;
  approvals: number;
}

/** The phase the request should be in at `now`, and why. */
export function computePhase(ar: ApprovalRequest, now: Date): PhaseDecision {
  const current = ar.status?.phase ?? Phase.Pending;
  const { approvers, deniedBy, revokedBy } = tallyDecisions(ar.spec);
  const required = ar.spec.approval.requiredApprovals;
  const approvals = approvers.length;
  if (current === Phase.Consumed) {
    return {
      phase: Phase.Consumed,
      reason: Reason.ActionAdmitted,
      message: "the approved action was admitted; this approval is used",
      approvals,
    };
  }
  if (current === Phase.Denied || current === Phase.Expired || current === Phase.Revoked) {
    return {
      phase: current,
      reason:
        current === Phase.Denied
          ? Reason.DeniedByApprover
          : current === Phase.Revoked
            ? Reason.RevokedByApprover
            : Reason.TTLExceeded,
      message: ar.status?.conditions?.find((c) => c.type === current)?.message ?? current,
      approvals,
    };
  }
  if (revokedBy) {
    return {
      phase: Phase.Revoked,
      reason: Reason.RevokedByApprover,
      message: `approval revoked by ${revokedBy.approver}${revokedBy.reason ? `: ${revokedBy.reason}` : ""}`,
      approvals,
    };
  }
  const expired = now.getTime() >= Date.parse(ar.spec.approval.expiresAt);
  if (deniedBy && !expired) {
    return {
      phase: Phase.Denied,
      reason: Reason.DeniedByApprover,
      message: `denied by ${deniedBy.approver}${deniedBy.reason ? `: ${deniedBy.reason}` : ""}`,
      approvals,
    };
  }
  if (expired) {
    return {
      phase: Phase.Expired,
      reason: Reason.TTLExceeded,
      message: `expired at ${ar.spec.approval.expiresAt} ${current === Phase.Approved ? "before the approved action was retried" : `with ${approvals}/${required} approvals`}`,
      approvals,
    };
  }
  if (approvals >= required) {
    return {
      phase: Phase.Approved,
      reason: Reason.ApprovalsReceived,
      message: `approved by ${approvers.join(", ")}`,
      approvals,
    };
  }
  return {
    phase: Phase.Pending,
    reason: Reason.AwaitingApproval,
    message: `${approvals}/${required} approvals; expires ${ar.spec.approval.expiresAt}`,
    approvals,
  };
}

function setCondition(conditions: Condition[], next: Condition): Condition[] {
  const old = conditions.find((c) => c.type === next.type);
  const merged =
    old && old.status === next.status && old.reason === next.reason
      ? { ...next, lastTransitionTime: old.lastTransitionTime ?? next.lastTransitionTime }
      : next;
  return [...conditions.filter((c) => c.type !== next.type), merged].sort((a, b) =>
    a.type.localeCompare(b.type),
  );
}

/** The full status the reconciler should write (undefined when nothing changes). */
export function nextStatus(ar: ApprovalRequest, now: Date): ApprovalRequestStatus | undefined {
  const d = computePhase(ar, now);
  const generation = ar.metadata.generation ?? 0;
  const t = kubeTime(now);
  let conditions = ar.status?.conditions ?? [];
  const cond = (type: string, on: boolean, reason: string, message: string): Condition => ({
    type,
    status: on ? "True" : "False",
    reason,
    message,
    observedGeneration: generation,
    lastTransitionTime: t,
  });
  conditions = setCondition(
    conditions,
    cond(ConditionType.Ready, d.phase !== Phase.Pending, d.reason, d.message),
  );
  conditions = setCondition(
    conditions,
    cond(
      ConditionType.Approved,
      d.phase === Phase.Approved || d.phase === Phase.Consumed,
      d.reason,
      d.message,
    ),
  );
  if (d.phase === Phase.Denied)
    conditions = setCondition(conditions, cond(ConditionType.Denied, true, d.reason, d.message));
  if (d.phase === Phase.Expired)
    conditions = setCondition(conditions, cond(ConditionType.Expired, true, d.reason, d.message));
  if (d.phase === Phase.Consumed)
    conditions = setCondition(conditions, cond(ConditionType.Consumed, true, d.reason, d.message));
  if (d.phase === Phase.Revoked)
    conditions = setCondition(conditions, cond(ConditionType.Revoked, true, d.reason, d.message));
  const status: ApprovalRequestStatus = {
    ...ar.status,
    phase: d.phase,
    observedGeneration: generation,
    approvals: d.approvals,
    conditions,
  };
  if ((d.phase === Phase.Approved || d.phase === Phase.Denied) && !ar.status?.decidedAt) status.decidedAt = t;
  const same =
    JSON.stringify({ ...ar.status, conditions: ar.status?.conditions ?? [] }) === JSON.stringify(status);
  return same ? undefined : status;
}

/** When the reconciler must look at this request again without any event (its expiry), or undefined. */
export function nextWakeup(ar: ApprovalRequest): Date | undefined {
  const phase = ar.status?.phase ?? Phase.Pending;
  if (phase === Phase.Pending || phase === Phase.Approved)
    return new Date(Date.parse(ar.spec.approval.expiresAt));
  return undefined;
}

export function isFinished(ar: ApprovalRequest): boolean {
  const p = ar.status?.phase;
  return p === Phase.Consumed || p === Phase.Denied || p === Phase.Expired || p === Phase.Revoked;
}
