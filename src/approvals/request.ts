/**
 * ApprovalRequest: types (following crds/approvalrequests.countersign.io.yaml), the
 * deterministic name, the object the webhook creates, and the pure state function that
 * says whether a request can be used. No I/O, no clock (callers pass `now`).
 */

import { kubeTime } from "../kube/time.js";
import type { CompiledApproval } from "../policy/compile.js";
import type { RuleRef } from "../policy/evaluate.js";
import type { AdmissionRequest } from "../resources/admission.js";
import { serviceAccountOf } from "../resources/admission.js";
import {
  type ActionIdentity,
  type ApprovalRequest,
  type ApprovalRequestSpec,
  type Decision,
  DecisionKind,
  LABEL_FINGERPRINT,
  LABEL_MANAGED_BY,
  LABEL_POLICY,
  Phase,
} from "../resources/approval-request.js";
import { API_GROUP_VERSION } from "../resources/group.js";
import {
  actionSummary,
  agentContext,
  renderActionDiff,
  type Transition,
  tooLargeMessage,
  transitionOf,
} from "./fingerprint.js";
import { gitopsOrigin } from "./gitops.js";

const DNS_LABEL_MAX = 63;

/**
 * Deterministic name from the fingerprint (and attempt), readable in `kubectl get`:
 * `<operation>-<resource>-<name>-<hash12>[-<attempt>]`, at most 63 characters. A CREATE
 * whose name the server generates is named after its generateName.
 */
export function approvalRequestName(action: ActionIdentity, fingerprint: string, attempt: number): string {
  const suffix = `-${fingerprint.slice(0, 12)}${attempt > 0 ? `-${attempt + 1}` : ""}`;
  const res = action.subResource ? `${action.resource}-${action.subResource}` : action.resource;
  const stem = `${action.operation}-${res}-${action.name || action.generateName || "new"}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-|-$/g, "");
  return `${stem.slice(0, DNS_LABEL_MAX - suffix.length).replace(/-$/, "")}${suffix}`;
}

export function buildApprovalRequest(args: {
  req: AdmissionRequest;
  action: ActionIdentity;
  fingerprint: string;
  attempt: number;
  namespace: string;
  rule: RuleRef;
  ruleMessage?: string;
  approval: CompiledApproval;
  now: Date;
  /** The transition `action` was hashed from; summary and diff are rendered from it. */
  transition?: Transition;
}): ApprovalRequest {
  const { req, action, fingerprint, attempt, approval } = args;
  const transition = args.transition ?? transitionOf(req);
  const { username: _u, ...actionRest } = action;
  const sa = serviceAccountOf(req.userInfo.username);
  const spec: ApprovalRequestSpec = {
    fingerprint,
    attempt,
    requester: {
      username: req.userInfo.username ?? "",
      ...(req.userInfo.uid ? { uid: req.userInfo.uid } : {}),
      groups: req.userInfo.groups ?? [],
      ...(sa ? { serviceAccount: sa } : {}),
    },
    action: { ...actionRest, kind: req.kind.kind, summary: actionSummary(req, transition) },
    admissionUID: req.uid,
    policy: {
      name: args.rule.policy,
      rule: args.rule.rule,
      generation: args.rule.generation,
      ...(args.ruleMessage ? { message: args.ruleMessage } : {}),
    },
    approval: {
      approvers: approval.approvers,
      requiredApprovals: approval.requiredApprovals,
      ttl: approval.ttl,
      expiresAt: kubeTime(new Date(args.now.getTime() + approval.ttlSeconds * 1000)),
      holdSeconds: approval.holdSeconds,
      notify: approval.notify,
      ...(approval.breakGlass ? { breakGlass: { groups: approval.breakGlass.groups } } : {}),
    },
  };
  const diff = renderActionDiff(req, transition);
  spec.diff = diff.text;
  if (diff.truncated) {
    // Loud, first, and enforced: the decision guard refuses an Approve of such a request.
    spec.diffTruncated = true;
    spec.action.summary = `${tooLargeMessage(diff.fields)} ${spec.action.summary}`;
  }
  const ctx = agentContext(req);
  if (ctx) spec.agentContext = ctx;
  const gitops = gitopsOrigin(req.object ?? req.oldObject);
  if (gitops) spec.gitops = gitops;
  return {
    apiVersion: API_GROUP_VERSION,
    kind: "ApprovalRequest",
    metadata: {
      name: approvalRequestName(action, fingerprint, attempt),
      namespace: args.namespace,
      labels: {
        [LABEL_FINGERPRINT]: fingerprint.slice(0, 63),
        [LABEL_POLICY]: args.rule.policy.slice(0, 63),
        [LABEL_MANAGED_BY]: "countersign",
      },
    },
    spec,
  };
}

/** A decision naming its decider exactly as the API server knows them. Pure. */
export function decisionEntry(
  decider: { username?: string; uid?: string; groups?: string[] },
  decision: DecisionKind,
  reason: string | undefined,
  via: Decision["via"],
  now: Date,
  breakGlass = false,
): Decision {
  return {
    approver: decider.username ?? "",
    ...(decider.uid ? { uid: decider.uid } : {}),
    groups: decider.groups ?? [],
    decision,
    ...(reason ? { reason: reason.slice(0, 1024) } : {}),
    ...(via ? { via } : {}),
    time: kubeTime(now),
    ...(breakGlass ? { breakGlass: true } : {}),
  };
}

/**
 * The Approve decisions that count: distinct approvers, the requester's own never (first
 * decision per approver).
 */
export function countedApprovals(spec: ApprovalRequestSpec): Decision[] {
  const seen = new Set<string>();
  const out: Decision[] = [];
  for (const d of spec.decisions ?? []) {
    if (d.decision !== DecisionKind.Approve || d.approver === spec.requester.username) continue;
    if (seen.has(d.approver)) continue;
    seen.add(d.approver);
    out.push(d);
  }
  return out;
}

/** A break-glass reason is at least this long (trimmed): someone must say why it could not wait. */
export const BREAK_GLASS_MIN_REASON = 20;

/**
 * Whether `d` is a valid break-glass approval of this request: an Approve marked break-glass,
 * not by the requester, whose recorded groups include one of the request's break-glass groups,
 * with a reason of at least BREAK_GLASS_MIN_REASON characters. (The guard admitted it only
 * then; checked again wherever approvals are counted.)
 */
export function isBreakGlass(spec: ApprovalRequestSpec, d: Decision): boolean {
  const groups = spec.approval.breakGlass?.groups ?? [];
  return (
    d.decision === DecisionKind.Approve &&
    d.breakGlass === true &&
    d.approver !== spec.requester.username &&
    (d.groups ?? []).some((g) => groups.includes(g)) &&
    (d.reason ?? "").trim().length >= BREAK_GLASS_MIN_REASON
  );
}

/**
 * Whether these Approve decisions approve the request: the policy's count of distinct
 * approvers, or one valid break-glass approval among them.
 */
export function approvalsSuffice(spec: ApprovalRequestSpec, approvals: readonly Decision[]): boolean {
  return approvals.length >= spec.approval.requiredApprovals || approvals.some((d) => isBreakGlass(spec, d));
}

/** The break-glass approval that approved this request, if one did. */
export function breakGlassApproval(spec: ApprovalRequestSpec): Decision | undefined {
  return countedApprovals(spec).find((d) => isBreakGlass(spec, d));
}

/** Distinct approvers with an Approve decision, whether anyone denied, and whether anyone revoked. */
export function tallyDecisions(spec: ApprovalRequestSpec): {
  approvers: string[];
  deniedBy?: Decision;
  revokedBy?: Decision;
} {
  const decisions = spec.decisions ?? [];
  const deniedBy = decisions.find((d) => d.decision === DecisionKind.Deny);
  const revokedBy = decisions.find((d) => d.decision === DecisionKind.Revoke);
  return {
    approvers: countedApprovals(spec).map((d) => d.approver),
    ...(deniedBy ? { deniedBy } : {}),
    ...(revokedBy ? { revokedBy } : {}),
  };
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
  if (now.getTime() >= Date.parse(ar.spec.approval.expiresAt)) return Phase.Expired;
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
  const { approvers, deniedBy, revokedBy } = tallyDecisions(ar.spec);
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
  if (!approvalsSuffice(ar.spec, countedApprovals(ar.spec))) {
    return {
      usable: false,
      why: `it has ${approvers.length} of ${ar.spec.approval.requiredApprovals} required approvals`,
    };
  }
  return { usable: true };
}
