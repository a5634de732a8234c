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
import { type ApprovalRequest, type ApprovalRequestStatus, Phase } from "../resources/approval-request.js";
import { ConditionType, RequestReason, setCondition } from "../resources/conditions.js";
import { approvalsSuffice, countedApprovals, isBreakGlass, tallyDecisions } from "./request.js";

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
      reason: RequestReason.ActionAdmitted,
      message: "the approved action was admitted; this approval is used",
      approvals,
    };
  }
  if (current === Phase.Denied || current === Phase.Expired || current === Phase.Revoked) {
    return {
      phase: current,
      reason:
        current === Phase.Denied
          ? RequestReason.DeniedByApprover
          : current === Phase.Revoked
            ? RequestReason.RevokedByApprover
            : RequestReason.TTLExceeded,
      message: ar.status?.conditions?.find((c) => c.type === current)?.message ?? current,
      approvals,
    };
  }
  if (revokedBy) {
    return {
      phase: Phase.Revoked,
      reason: RequestReason.RevokedByApprover,
      message: `approval revoked by ${revokedBy.approver}${revokedBy.reason ? `: ${revokedBy.reason}` : ""}`,
      approvals,
    };
  }
  const expired = now.getTime() >= Date.parse(ar.spec.approval.expiresAt);
  if (deniedBy && !expired) {
    return {
      phase: Phase.Denied,
      reason: RequestReason.DeniedByApprover,
      message: `denied by ${deniedBy.approver}${deniedBy.reason ? `: ${deniedBy.reason}` : ""}`,
      approvals,
    };
  }
  if (expired) {
    return {
      phase: Phase.Expired,
      reason: RequestReason.TTLExceeded,
      message: `expired at ${ar.spec.approval.expiresAt} ${current === Phase.Approved ? "before the approved action was retried" : `with ${approvals}/${required} approvals`}`,
      approvals,
    };
  }
  const counted = countedApprovals(ar.spec);
  if (approvalsSuffice(ar.spec, counted)) {
    const breakGlass = counted.find((d) => isBreakGlass(ar.spec, d));
    return {
      phase: Phase.Approved,
      reason: breakGlass ? RequestReason.BreakGlass : RequestReason.ApprovalsReceived,
      message: breakGlass
        ? `break-glass approval by ${breakGlass.approver}: ${breakGlass.reason?.trim()}`
        : `approved by ${approvers.join(", ")}`,
      approvals,
    };
  }
  return {
    phase: Phase.Pending,
    reason: RequestReason.AwaitingApproval,
    message: `${approvals}/${required} approvals; expires ${ar.spec.approval.expiresAt}`,
    approvals,
  };
}

/** The full status the reconciler should write (undefined when nothing changes). */
export function nextStatus(ar: ApprovalRequest, now: Date): ApprovalRequestStatus | undefined {
  const d = computePhase(ar, now);
  const generation = ar.metadata.generation ?? 0;
  const t = kubeTime(now);
  const clock = () => now;
  let conditions = ar.status?.conditions ?? [];
  const set = (type: ConditionType, on: boolean) => {
    conditions = setCondition(
      conditions,
      {
        type,
        status: on ? "True" : "False",
        reason: d.reason,
        message: d.message,
        observedGeneration: generation,
      },
      clock,
    );
  };
  set(ConditionType.Ready, d.phase !== Phase.Pending);
  set(ConditionType.Approved, d.phase === Phase.Approved || d.phase === Phase.Consumed);
  if (d.phase === Phase.Denied) set(ConditionType.Denied, true);
  if (d.phase === Phase.Expired) set(ConditionType.Expired, true);
  if (d.phase === Phase.Consumed) set(ConditionType.Consumed, true);
  if (d.phase === Phase.Revoked) set(ConditionType.Revoked, true);
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
