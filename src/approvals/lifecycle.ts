/**
 * The ApprovalRequest lifecycle, pure (no I/O, no clock, no logger: `now` is a parameter).
 * Every rule about what a request's decisions and status mean lives here: the tally, the
 * phase at a moment, whether an approval may be used, the status the controller writes, the
 * status the gate writes when it uses an approval, whether the used action took effect, and
 * what the gate does with the request it finds for an action.
 *
 *   Pending ──(N distinct approvals)──▶ Approved ──(webhook admits the action)──▶ Consumed
 *      │ └──(any Deny)──▶ Denied              └──(an approver revokes)──▶ Revoked
 *      └──(expiresAt passes)──▶ Expired  ◀──(expiresAt passes)── Approved
 *
 * One valid break-glass approval (isBreakGlass) counts as N on its own.
 *
 * Revoke and consume race on the resourceVersion: the gate's Consumed write is conditional,
 * and the Revoke decision is a spec write the guard admits only while the request it sees is
 * Approved and unconsumed, so exactly one of them lands.
 * Consumed is written only by the webhook (conditional update, consumedStatus); everything else
 * by the reconciler from nextStatus. lastTransitionTime moves only when a condition changes.
 */
import { createHash } from "node:crypto";
import type { KubernetesObject } from "@kubernetes/client-node";
import { kubeTime } from "../kube/time.js";
import {
  type ApprovalRequest,
  type ApprovalRequestSpec,
  type ApprovalRequestStatus,
  type Decision,
  DecisionKind,
  Phase,
} from "../resources/approval-request.js";
import { ConditionType, RequestReason, setCondition } from "../resources/conditions.js";
import { contentHash, type FingerprintKey } from "./fingerprint.js";

/** What a request's decisions add up to. */
export interface Tally {
  /** The Approve decisions that count: the first per approver, the requester's own never. */
  approvals: Decision[];
  /** Their approvers, in decision order. */
  approvers: string[];
  required: number;
  /** Whether the counted approvals approve the request (approvalsSuffice). */
  reached: boolean;
  /** The valid break-glass approval among them, if any (it approves on its own). */
  breakGlass?: Decision;
  /** The first Deny, if any. */
  deniedBy?: Decision;
  /** The first Revoke, if any. */
  revokedBy?: Decision;
}

/** The one count of a request's decisions (every other place asks this function). */
export function tally(spec: ApprovalRequestSpec): Tally {
  const seen = new Set<string>();
  const approvals: Decision[] = [];
  let deniedBy: Decision | undefined;
  let revokedBy: Decision | undefined;
  for (const d of spec.decisions ?? []) {
    if (d.decision === DecisionKind.Deny) deniedBy ??= d;
    else if (d.decision === DecisionKind.Revoke) revokedBy ??= d;
    else if (d.decision === DecisionKind.Approve && d.approver !== spec.requester.username) {
      if (seen.has(d.approver)) continue;
      seen.add(d.approver);
      approvals.push(d);
    }
  }
  const required = spec.approval.requiredApprovals;
  const breakGlass = approvals.find((d) => isBreakGlass(spec, d));
  return {
    approvals,
    approvers: approvals.map((d) => d.approver),
    required,
    reached: approvalsSuffice(spec, approvals),
    ...(breakGlass ? { breakGlass } : {}),
    ...(deniedBy ? { deniedBy } : {}),
    ...(revokedBy ? { revokedBy } : {}),
  };
}

/** A break-glass reason has at least this many visible characters: someone must say why it could not wait. */
export const BREAK_GLASS_MIN_REASON = 20;

// A character nobody sees: controls (Cc), format characters (Cf: zero-width spaces and joiners,
// bidi marks, U+FEFF, ...), unassigned/private/surrogate code points, combining marks on their
// own, whitespace and separators (Z), and the letters and symbols that render blank (Hangul
// fillers, the braille blank).
const BLANK = /^[\p{Cc}\p{Cf}\p{Cn}\p{Co}\p{Cs}\p{M}\p{Z}\s\u115F\u1160\u2800\u3164\uFFA0]*$/u;
const SPACE = /[\p{Z}\s]/u;
const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/**
 * How many characters of `text` a reader sees: user-perceived characters (grapheme clusters),
 * not counting invisible ones, with each run of whitespace between visible characters counted
 * once and none at either end. Twenty zero-width spaces count 0; "a  b" counts 3.
 */
export function visibleLength(text: string): number {
  let n = 0;
  let gap = false;
  for (const { segment } of graphemes.segment(text)) {
    if (BLANK.test(segment)) {
      if (SPACE.test(segment)) gap = true;
      continue;
    }
    if (gap && n > 0) n++;
    gap = false;
    n++;
  }
  return n;
}

/**
 * Whether `d` is a valid break-glass approval of this request: an Approve marked break-glass,
 * not by the requester, whose recorded groups include one of the request's break-glass groups,
 * with a reason of at least BREAK_GLASS_MIN_REASON visible characters. (The guard admitted it
 * only then; checked again wherever approvals are counted.)
 */
export function isBreakGlass(spec: ApprovalRequestSpec, d: Decision): boolean {
  const groups = spec.approval.breakGlass?.groups ?? [];
  return (
    d.decision === DecisionKind.Approve &&
    d.breakGlass === true &&
    d.approver !== spec.requester.username &&
    (d.groups ?? []).some((g) => groups.includes(g)) &&
    visibleLength(d.reason ?? "") >= BREAK_GLASS_MIN_REASON
  );
}

/**
 * Whether these counted Approve decisions approve the request: the policy's count of distinct
 * approvers, or one valid break-glass approval among them.
 */
export function approvalsSuffice(spec: ApprovalRequestSpec, approvals: readonly Decision[]): boolean {
  return approvals.length >= spec.approval.requiredApprovals || approvals.some((d) => isBreakGlass(spec, d));
}

/** The break-glass approval that approved this request, if one did. */
export function breakGlassApproval(spec: ApprovalRequestSpec): Decision | undefined {
  return tally(spec).breakGlass;
}

/**
 * A break-glass approval is used within this long of being given, or not at all. Group
 * membership is the authenticator's claim at the moment of the decision (Kubernetes has no API
 * that says whether a user is still in a group), so an unused break-glass approval must not
 * outlive that moment by much.
 */
export const BREAK_GLASS_USE_SECONDS = 15 * 60;

/**
 * Why a counted break-glass approval no longer stands when the approval is about to be used
 * (red team 11 F6b), or undefined when it stands: the policy's rule as it is now (`groups`:
 * its break-glass groups, undefined when it offers none) must still name a group the approver
 * was in when deciding, and the approval must be younger than BREAK_GLASS_USE_SECONDS.
 * Removing a group from the policy therefore withdraws its unused break-glass approvals at
 * once; removing a person from a group in the identity provider cannot be seen (see above).
 */
export function breakGlassLapse(
  d: Decision,
  groups: readonly string[] | undefined,
  now: Date,
  /**
   * status.decidedAt: when the controller recorded the request Approved (its clock, never before
   * the decision). A decider writes its own `time`, up to DECISION_CLOCK_SKEW_SECONDS ahead; the
   * window counts from the earlier of the two, so a future-dated time does not stretch it.
   */
  approvedAt?: string,
): string | undefined {
  if (!groups?.length) return "the policy's rule no longer offers break-glass";
  const had = (d.groups ?? []).filter((g) => groups.includes(g));
  if (had.length === 0)
    return `the policy's rule no longer names a break-glass group ${d.approver} was in when deciding (it names ${groups.join(", ")})`;
  const recorded = Date.parse(approvedAt ?? "");
  const at = Math.min(Date.parse(d.time ?? ""), Number.isNaN(recorded) ? Number.POSITIVE_INFINITY : recorded);
  if (Number.isNaN(at) || now.getTime() - at >= BREAK_GLASS_USE_SECONDS * 1000)
    return `it was given at ${d.time ?? "an unknown time"}, and a break-glass approval is usable for ${BREAK_GLASS_USE_SECONDS / 60} minutes only (group membership is checked only when it is given)`;
  return undefined;
}

/** Whether the request's TTL has passed at `now`. */
export function isPastExpiry(ar: ApprovalRequest, now: Date): boolean {
  return now.getTime() >= Date.parse(ar.spec.approval.expiresAt);
}

/**
 * The phase a request is effectively in at `now`: the recorded phase, except that a request
 * with a Revoke decision is Revoked, and a Pending or Approved request past its expiry is
 * Expired, even before the controller has written that down.
 */
export function effectivePhase(ar: ApprovalRequest, now: Date): Phase {
  const phase = ar.status?.phase ?? Phase.Pending;
  if (
    phase === Phase.Consumed ||
    phase === Phase.Denied ||
    phase === Phase.Expired ||
    phase === Phase.Revoked
  )
    return phase;
  if ((ar.spec.decisions ?? []).some((d) => d.decision === DecisionKind.Revoke)) return Phase.Revoked;
  if (isPastExpiry(ar, now)) return Phase.Expired;
  return phase;
}

/**
 * Whether the request may be consumed now: nobody revoked it (a Revoke in spec counts at once,
 * before the controller records Revoked), the controller recorded it Approved, it has not
 * expired or been used, the decisions really hold enough distinct approvals (the requester's
 * own never counts) and nobody denied, and it names exactly this action. Whether the
 * approvers still hold their RBAC rights is checked by the gate (I/O) after this.
 */
export function usableApproval(
  ar: ApprovalRequest,
  fingerprint: string,
  now: Date,
  /** The policy and rule deciding the action now: an approval counts only under the same one. */
  rule?: { policy: string; rule: string },
): { usable: true } | { usable: false; why: string } {
  if (ar.spec.fingerprint !== fingerprint) return { usable: false, why: "it approves a different action" };
  if (rule && (ar.spec.policy.name !== rule.policy || ar.spec.policy.rule !== rule.rule)) {
    return {
      usable: false,
      why: `it was approved under ApprovalPolicy ${ar.spec.policy.name} rule ${ar.spec.policy.rule}, but ApprovalPolicy ${rule.policy} rule ${rule.rule} decides this action now`,
    };
  }
  if (ar.spec.diffTruncated)
    return { usable: false, why: "the change is too large to show in full, so it cannot be approved" };
  const { approvers, deniedBy, revokedBy, reached } = tally(ar.spec);
  if (revokedBy && !ar.status?.consumed) {
    return {
      usable: false,
      why: `its approval was revoked by ${revokedBy.approver}${revokedBy.reason ? `: ${revokedBy.reason}` : ""}`,
    };
  }
  const phase = effectivePhase(ar, now);
  if (phase !== Phase.Approved) return { usable: false, why: `it is ${phase}` };
  if (ar.status?.consumed) return { usable: false, why: "its approval was already used" };
  if (deniedBy) return { usable: false, why: `it was denied by ${deniedBy.approver}` };
  if (!reached) {
    return {
      usable: false,
      why: `it has ${approvers.length} of ${ar.spec.approval.requiredApprovals} required approvals`,
    };
  }
  return { usable: true };
}

export interface PhaseDecision {
  phase: Phase;
  reason: string;
  message: string;
  approvals: number;
}

/** The phase the request should be in at `now`, and why. */
export function computePhase(ar: ApprovalRequest, now: Date): PhaseDecision {
  const current = ar.status?.phase ?? Phase.Pending;
  const { approvers, deniedBy, revokedBy, reached, breakGlass } = tally(ar.spec);
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
  const expired = isPastExpiry(ar, now);
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
  if (reached) {
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

/** When a finished request may be deleted. Pure. */
export function finishedAt(ar: ApprovalRequest): Date | undefined {
  if (!isFinished(ar)) return undefined;
  const revoked =
    ar.status?.phase === Phase.Revoked
      ? ar.spec.decisions?.find((d) => d.decision === "Revoke")?.time
      : undefined;
  const t = ar.status?.consumed?.time ?? revoked ?? ar.status?.decidedAt ?? ar.spec.approval.expiresAt;
  return new Date(Date.parse(t));
}

/** How long after admission the controller checks whether the approved action took effect. */
export const EXECUTION_CHECK_DELAY_MS = 3000;

export type ExecutionResult = { result: "Executed" | "NotExecuted" | "Unknown"; message: string };

/**
 * Whether the consumed action is visible in the cluster. Pure: given the target as read now
 * (undefined when it does not exist).
 */
export function judgeExecution(
  ar: ApprovalRequest,
  target: KubernetesObject | undefined,
  key?: FingerprintKey,
): ExecutionResult {
  const a = ar.spec.action;
  const sha = (s: string) => createHash("sha256").update(s).digest("hex");
  // An eviction, a TokenRequest, a scale or an ephemeral container is not an object that can
  // be read back under the request's own kind and name.
  if (a.subResource) {
    return {
      result: "Unknown",
      message: `${a.resource}/${a.subResource} is a subresource: no object of its own to check`,
    };
  }
  switch (a.operation) {
    case "DELETE":
      if (!target) return { result: "Executed", message: "the object is gone" };
      if (target.metadata?.deletionTimestamp)
        return { result: "Executed", message: "the object is being deleted (finalizers pending)" };
      if (a.objectHash && target.metadata?.uid && sha(`uid:${target.metadata.uid}`) !== a.objectHash) {
        return {
          result: "Executed",
          message: "the approved object is gone; a new object with the same name exists",
        };
      }
      return {
        result: "NotExecuted",
        message: "the object still exists: the delete was refused after Countersign admitted it",
      };
    case "CREATE":
      if (!a.name) return { result: "Unknown", message: "created with generateName: no name to check" };
      return target
        ? { result: "Executed", message: "the object exists" }
        : {
            result: "NotExecuted",
            message: "the object does not exist: the create was refused after Countersign admitted it",
          };
    case "UPDATE": {
      if (!target) return { result: "NotExecuted", message: "the object no longer exists" };
      const hash = contentHash(target, a.group === "" && a.resource === "secrets", key);
      return hash === a.objectHash
        ? { result: "Executed", message: "the object matches the approved version" }
        : {
            result: "NotExecuted",
            message:
              "the object differs from the approved version: the update was refused after admission, or changed since",
          };
    }
    default:
      return { result: "Unknown", message: `${a.operation} leaves no object to check` };
  }
}

/**
 * The status the gate writes when it uses an approval (a conditional update on the request as
 * read, so of parallel retries exactly one wins).
 */
export function consumedStatus(
  ar: ApprovalRequest,
  use: { admissionUID: string; replica: string },
  now: Date,
): ApprovalRequestStatus {
  return {
    ...ar.status,
    phase: Phase.Consumed,
    consumed: { admissionUID: use.admissionUID, time: now.toISOString(), replica: use.replica },
  };
}

/** What the gate knows about the action it is deciding. */
export interface GateContext {
  /** The action's fingerprint (the request's name was derived from it). */
  fingerprint: string;
  /** The policy and rule deciding the action now. */
  rule: { policy: string; rule: string };
  now: Date;
  dryRun: boolean;
  /** The rule's holdSeconds: how long a fresh or pending request holds the agent's call. */
  holdSeconds: number;
}

/**
 * What the gate does with the request it found under one attempt's name:
 *  - next-attempt: that name is taken by another action, or its request is used up (Consumed,
 *    Expired, or Denied/Revoked past its TTL): look at the next attempt's name;
 *  - create: none exists: open one (then hold the call if `hold`);
 *  - dry-run-none: none exists and this is a dry run: create nothing, say so;
 *  - denied / revoked: refuse, telling the agent who decided;
 *  - pending: refuse with how to get it approved (after holding the call if `hold`);
 *  - unusable: approved but not for this (rule changed, too large to show, revoked, ...);
 *  - use: approved and usable: re-check the approvers' RBAC, then consume it (a dry run only
 *    reports that it would be allowed).
 */
export type GateStep =
  | { step: "next-attempt" }
  | { step: "create"; hold: boolean }
  | { step: "dry-run-none" }
  | { step: "denied" }
  | { step: "revoked" }
  | { step: "pending"; hold: boolean }
  | { step: "unusable"; why: string }
  | { step: "use"; dryRun: boolean };

/** The gate's table: (the request found, the action) → what to do. */
export function gateStep(existing: ApprovalRequest | undefined, ctx: GateContext): GateStep {
  if (!existing) return ctx.dryRun ? { step: "dry-run-none" } : { step: "create", hold: ctx.holdSeconds > 0 };
  if (existing.spec.fingerprint !== ctx.fingerprint) return { step: "next-attempt" }; // name collision
  const phase = effectivePhase(existing, ctx.now);
  switch (phase) {
    case Phase.Consumed:
    case Phase.Expired:
      return { step: "next-attempt" };
    case Phase.Denied:
    case Phase.Revoked:
      // A decision binds until the TTL: after it, a retry opens a new request.
      if (isPastExpiry(existing, ctx.now)) return { step: "next-attempt" };
      return { step: phase === Phase.Denied ? "denied" : "revoked" };
    case Phase.Pending:
      return { step: "pending", hold: ctx.holdSeconds > 0 && !ctx.dryRun };
    default: {
      const check = usableApproval(existing, ctx.fingerprint, ctx.now, ctx.rule);
      return check.usable ? { step: "use", dryRun: ctx.dryRun } : { step: "unusable", why: check.why };
    }
  }
}

/**
 * While the gate holds an agent's call on a pending request (holdSeconds), each re-read of it
 * → what to do: refuse (denied / revoked), use it (approved and usable), keep waiting
 * (still pending), or stop holding and answer as pending (gone, expired, or unusable).
 */
export type HoldStep =
  | { step: "denied" }
  | { step: "revoked" }
  | { step: "use" }
  | { step: "wait" }
  | { step: "stop" };

export function holdStep(current: ApprovalRequest | undefined, fingerprint: string, now: Date): HoldStep {
  if (!current) return { step: "stop" };
  const phase = effectivePhase(current, now);
  if (phase === Phase.Denied) return { step: "denied" };
  if (phase === Phase.Revoked) return { step: "revoked" };
  if (phase === Phase.Approved)
    return usableApproval(current, fingerprint, now).usable ? { step: "use" } : { step: "stop" };
  return phase === Phase.Pending ? { step: "wait" } : { step: "stop" };
}
