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
  type DecisionKind,
  LABEL_FINGERPRINT,
  LABEL_MANAGED_BY,
  LABEL_POLICY,
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
      ...(approval.remindAfter ? { remindAfter: approval.remindAfter } : {}),
      ...(approval.escalateAfter ? { escalateAfter: approval.escalateAfter } : {}),
      ...(approval.escalateTo ? { escalateTo: approval.escalateTo } : {}),
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
