/**
 * Every word a person reads when a decision, or a write to Countersign's own resources, is
 * refused: the webhook guard (through the API server), the HTTP API and Slack, and the kubectl
 * plugin's precheck. Each message says what happened and what to do next. Pure.
 */

import { DecisionKind, Phase } from "../resources/approval-request.js";
import { DECISION_CLOCK_SKEW_SECONDS, type DecisionRefusal, RELAYED_VIA } from "./decisions.js";
import { BREAK_GLASS_MIN_REASON } from "./lifecycle.js";

const PREFIX = "Countersign: ";

const names = (list: readonly string[]) =>
  `${list.slice(0, 3).join(", ")}${list.length > 3 ? ` and ${list.length - 3} more` : ""}`;

/**
 * The refusal as the guard and the HTTP API word it (prefixed "Countersign: ", since through
 * the API server it follows the webhook's name).
 */
export function refusalMessage(r: DecisionRefusal): string {
  return PREFIX + refusalText(r);
}

function refusalText(r: DecisionRefusal): string {
  switch (r.code) {
    case "covered-subject":
      return `${r.decider} is covered by ApprovalPolicy ${names(r.policies)}, so it may not ${r.decision.toLowerCase()} ApprovalRequests: subjects under approval never decide requests, not even another agent's. Nothing was recorded. Ask a human approver: kubectl approvals show ${r.request.name} -n ${r.request.namespace}`;
    case "forged-metadata":
      switch (r.field) {
        case "approver":
          return `the decision names "${r.claimed}" but you are authenticated as "${r.caller}"; a decision must name its decider (kubectl approve fills this in)`;
        case "uid":
          return `the decision's uid "${r.claimed}" does not match your authenticated uid "${r.caller}"`;
        case "groups":
          return `the decision's groups do not match your authenticated groups (${r.callerGroups.join(", ") || "none"})`;
        case "via":
          return `a decision via ${r.via} is recorded only by Countersign itself, for a decider it authenticated; decide in ${r.via === "api" ? "the approval API" : r.via} or with kubectl (via kubectl)`;
      }
      break;
    case "incomplete-metadata":
      return r.relayed
        ? "a relayed decision must name its decider, their groups and its time"
        : `the decision lacks ${r.missing.join(", ")}. A decision records its decider's uid and groups exactly as the API server knows them, when it was made and how; kubectl approve / deny / approvals revoke fill these in from a SelfSubjectReview`;
    case "invalid-via":
      return r.relayed
        ? `a decision Countersign records for someone must say how it was made (via ${RELAYED_VIA.join(", ")}), not ${r.via ?? "nothing"}`
        : `the decision's via must be "kubectl"`;
    case "bad-time": {
      if (r.offsetSeconds === undefined) return `the decision's time "${r.time}" is not a timestamp`;
      const off = r.offsetSeconds;
      return `the decision's time ${r.time} is ${Math.abs(off)}s ${off < 0 ? "behind" : "ahead of"} the server's clock (${DECISION_CLOCK_SKEW_SECONDS}s allowed); a decision is stamped when it is made. Check your clock and run kubectl approve/deny again`;
    }
    case "already":
      return `${r.decider} has already decided this request`;
    case "self":
      return r.decision === DecisionKind.Revoke
        ? "the requester cannot revoke its own request; only its approvers can. To give up the action, simply do not retry it"
        : "nobody decides their own request; ask one of its approvers";
    case "too-large":
      return `ApprovalRequest ${r.request.namespace}/${r.request.name} cannot be approved: the change is too large to show in full. Deny it; the requester must split the change, or an admin adds an Allow rule for it`;
    case "expired":
      return `ApprovalRequest ${r.request.namespace}/${r.request.name} is expired at ${r.expiresAt}; ${
        r.decision === DecisionKind.Revoke
          ? "it can no longer be used, so there is nothing to revoke"
          : "the requester must retry the action to open a new request"
      }`;
    case "not-pending":
      return `ApprovalRequest ${r.request.namespace}/${r.request.name} is already ${r.phase}`;
    case "not-approver": {
      const list = [
        ...(r.approvers.users ?? []).map((u) => `user ${u}`),
        ...(r.approvers.groups ?? []).map((g) => `group ${g}`),
      ];
      return `${r.decider} is not an approver for this request (approvers: ${list.join(", ")})`;
    }
    case "reason-required":
      return "a revocation needs a reason (--reason): the requester and the audit trail are told why";
    case "revoke-not-approved":
      return r.phase === Phase.Pending
        ? `ApprovalRequest ${r.request.namespace}/${r.request.name} is Pending: there is no approval to revoke yet. Deny it instead: kubectl deny ${r.request.name} -n ${r.request.namespace}`
        : `ApprovalRequest ${r.request.namespace}/${r.request.name} is already ${r.phase}`;
    case "already-used":
      return `ApprovalRequest ${r.request.namespace}/${r.request.name} is already used${r.consumed ? ` (admitted at ${r.consumed.time}, admission uid ${r.consumed.admissionUID})` : ""}; a used approval cannot be revoked`;
    case "already-revoked":
      return `ApprovalRequest ${r.request.namespace}/${r.request.name} is already revoked${r.by ? ` by ${r.by}` : ""}`;
    case "needs-rbac":
      return `${r.decider} matches this request's approver rules but lacks RBAC verb "${r.verb}" on approvalrequests.countersign.io in namespace ${r.namespace}${r.reason ? ` (${r.reason})` : ""}. Ask a cluster admin to bind the countersign-approver ClusterRole.`;
    case "rbac-unavailable":
      return "could not check your RBAC permission right now; nothing was changed, retry shortly";
    case "break-glass-not-offered":
      return `ApprovalRequest ${r.request.namespace}/${r.request.name} offers no break-glass approval (its policy names no break-glass group); approve it normally or ask its approvers`;
    case "break-glass-not-member":
      return `${r.decider} is in none of this request's break-glass groups (${r.groups.join(", ")}), so it may not break the glass; nothing was recorded`;
    case "break-glass-reason":
      return `a break-glass approval needs a reason of at least ${BREAK_GLASS_MIN_REASON} characters saying why it cannot wait (got ${r.length}); it is sent to every notification route and kept in the audit trail`;
    case "break-glass-approve-only":
      return `only an Approve can be break-glass, not a ${r.decision}`;
  }
  return "the decision was refused";
}

/**
 * The refusal as `kubectl approve / deny / approvals revoke` words it before writing anything
 * (addressed to the person at the keyboard); the guard's wording where there is no other.
 */
export function precheckMessage(r: DecisionRefusal): string {
  switch (r.code) {
    case "self":
      return r.decision === DecisionKind.Revoke
        ? refusalText(r)
        : "you cannot decide your own request; ask one of its approvers";
    case "already":
      return `you (${r.decider}) have already decided ${r.request.namespace}/${r.request.name}`;
    case "already-used":
      return `ApprovalRequest ${r.request.namespace}/${r.request.name} is already used${r.consumed ? ` (admitted at ${r.consumed.time})` : ""}; a used approval cannot be revoked`;
    case "already-revoked":
      return `ApprovalRequest ${r.request.namespace}/${r.request.name} is already ${Phase.Revoked}`;
    case "reason-required":
      return "--reason is required: the requester and the audit trail are told why";
    default:
      return refusalText(r);
  }
}

/** Refusals of writes to Countersign's resources that are not decisions (the guard's own). */
export const GuardMessage = {
  checkpoint: (who: string, op: string) =>
    `${PREFIX}AuditCheckpoints anchor the audit trail and are written only by Countersign; ${who} may not ${op} them.`,
  auditRecord: (who: string, op: string) =>
    `${PREFIX}AuditRecords are written and retired only by Countersign; ${who} may not ${op} them. The audit trail is immutable.`,
  status: `${PREFIX}only Countersign sets an ApprovalRequest's status. Record a decision with kubectl approve/deny instead.`,
  create: `${PREFIX}ApprovalRequests are created only by Countersign's webhook, when a covered action is attempted. Perform the action to request approval.`,
  delete: (name: string | undefined, namespace: string | undefined) =>
    `${PREFIX}ApprovalRequests are part of the audit trail; Countersign removes finished ones after their retention. Deny it instead: kubectl deny ${name} -n ${namespace}`,
  malformed: `${PREFIX}malformed ApprovalRequest update`,
  lifecycle: `${PREFIX}only Countersign sets an ApprovalRequest's finalizers and owner references (a finalizer would keep its namespace from being deleted; an owner reference would hand its removal to the garbage collector)`,
  immutable: `${PREFIX}the action being approved is immutable; only a decision may be added`,
  appendOnly: (approver: string) =>
    `${PREFIX}decisions are append-only; the decision by ${approver} cannot be changed or removed`,
  onePerWrite: `${PREFIX}add one decision per write: your own`,
} as const;

/** Outcomes of a recorded decision, as the HTTP API and the plugin report them. */
export const DecisionDone: Record<DecisionKind, string> = {
  Approve: "approved",
  Deny: "denied",
  Revoke: "revoked",
};

export const kubeRaceMessage = (namespace: string, name: string) =>
  `ApprovalRequest ${namespace}/${name} kept changing; try again`;
