/**
 * Guards writes to Countersign's own resources (pure). For a decision that passes, the caller
 * still asks RBAC (rbac-checker.ts: one SubjectAccessReview as the decider, cached briefly).
 *
 *  - ApprovalRequest create, delete and status writes, and every AuditRecord and
 *    AuditCheckpoint write, are Countersign's alone (its own identity, learned at start-up),
 *    except that the namespace controller may delete them in a Terminating namespace once
 *    Countersign has archived that namespace's chain (checked by the caller: "needs-archive").
 *  - A decision is appended by its decider, whose identity is the admission userInfo: the
 *    recorded approver, uid and groups must equal the caller's (all present; kubectl approve
 *    fills them in from a SelfSubjectReview), `time` must be within DECISION_CLOCK_SKEW_SECONDS
 *    of the server's clock and `via` must be kubectl; slack/teams/api decisions are written
 *    only by Countersign's own identity (DecisionService), naming a decider it authenticated.
 *    The requester (any token of the same service account) can never decide; the decider must
 *    match the request's approver rules and hold RBAC verb approve / deny / revoke on
 *    approvalrequests; decisions are append-only, one per write. Approve and Deny need a
 *    Pending, unexpired request; Revoke needs an Approved, unexpired, unconsumed one and a reason.
 *    These decision rules are decisions.ts's checkDecision, shared with the HTTP API, Slack and
 *    the kubectl plugin; the words are decision-messages.ts's.
 */
import type { AdmissionRequest, UserInfo } from "../resources/admission.js";
import type { ApprovalRequest, Decision } from "../resources/approval-request.js";
import { canonicalJson } from "../resources/canonical-json.js";
import {
  API_GROUP,
  APPROVAL_REQUEST_PLURAL,
  AUDIT_CHECKPOINT_PLURAL,
  AUDIT_PLURAL,
} from "../resources/group.js";
import { GuardMessage, refusalMessage } from "./decision-messages.js";
import { checkDecision, type DecisionRefusal, type DecisionVerb } from "./decisions.js";

/**
 * Who empties a deleted namespace: the namespace controller (its own service account with
 * --use-service-account-credentials, else the controller-manager's identity).
 */
export const NAMESPACE_DELETERS: ReadonlySet<string> = new Set([
  "system:serviceaccount:kube-system:namespace-controller",
  "system:kube-controller-manager",
]);

export type GuardResult =
  | { allowed: true; message?: string }
  /** `refusal`: a decision the shared rules refused (decisions.ts); absent for other writes. */
  | { allowed: false; message: string; refusal?: DecisionRefusal }
  | { allowed: "needs-rbac"; verb: DecisionVerb; namespace: string; name: string; decision: Decision }
  /** The namespace controller deleting: allowed once the namespace is Terminating and its chain archived. */
  | { allowed: "needs-archive"; namespace: string };

function who(user: UserInfo): string {
  return user.username ?? "(anonymous)";
}

export function isGuardedResource(req: AdmissionRequest): boolean {
  return (
    req.resource.group === API_GROUP &&
    (req.resource.resource === APPROVAL_REQUEST_PLURAL ||
      req.resource.resource === AUDIT_PLURAL ||
      req.resource.resource === AUDIT_CHECKPOINT_PLURAL)
  );
}

export function guardWrite(
  req: AdmissionRequest,
  countersignUsers: ReadonlySet<string>,
  now: Date,
  /** The ApprovalPolicies that cover a subject (in memory); such a subject may not decide. */
  coveringPolicies: (user: UserInfo) => readonly string[] = () => [],
): GuardResult {
  const user = req.userInfo;
  const self = countersignUsers.has(user.username ?? "");
  const op = req.operation.toLowerCase();
  if (!self && req.operation === "DELETE" && req.namespace && NAMESPACE_DELETERS.has(user.username ?? ""))
    return { allowed: "needs-archive", namespace: req.namespace };
  if (req.resource.resource === AUDIT_CHECKPOINT_PLURAL) {
    if (self) return { allowed: true };
    return { allowed: false, message: GuardMessage.checkpoint(who(user), op) };
  }
  const kind = req.resource.resource === AUDIT_PLURAL ? "AuditRecord" : "ApprovalRequest";
  const specWrite = kind === "ApprovalRequest" && req.operation === "UPDATE" && req.subResource !== "status";
  if (self && !specWrite) return { allowed: true };
  if (kind === "AuditRecord") return { allowed: false, message: GuardMessage.auditRecord(who(user), op) };
  if (req.subResource === "status") return { allowed: false, message: GuardMessage.status };
  if (req.operation === "CREATE") return { allowed: false, message: GuardMessage.create };
  if (req.operation === "DELETE")
    return { allowed: false, message: GuardMessage.delete(req.name, req.namespace) };
  if (req.operation !== "UPDATE") return { allowed: true };
  const oldAr = req.oldObject as ApprovalRequest | undefined;
  const newAr = req.object as ApprovalRequest | undefined;
  if (!oldAr?.spec || !newAr?.spec) return { allowed: false, message: GuardMessage.malformed };
  const lifecycle = (o: ApprovalRequest) => {
    const m = o.metadata as { finalizers?: unknown; ownerReferences?: unknown };
    return canonicalJson([m.finalizers ?? [], m.ownerReferences ?? []]);
  };
  if (!self && lifecycle(oldAr) !== lifecycle(newAr))
    return { allowed: false, message: GuardMessage.lifecycle };
  const { decisions: oldDecisions = [], ...oldSpec } = oldAr.spec;
  const { decisions: newDecisions = [], ...newSpec } = newAr.spec;
  if (canonicalJson(oldSpec) !== canonicalJson(newSpec))
    return { allowed: false, message: GuardMessage.immutable };
  for (const d of oldDecisions) {
    if (!newDecisions.some((n) => canonicalJson(n) === canonicalJson(d)))
      return { allowed: false, message: GuardMessage.appendOnly(d.approver) };
  }
  const added = newDecisions.filter((n) => !oldDecisions.some((d) => canonicalJson(d) === canonicalJson(n)));
  if (added.length === 0) return { allowed: true };
  if (added.length > 1) return { allowed: false, message: GuardMessage.onePerWrite };
  const d = added[0]!;
  // A decision Countersign relays (HTTP API, Slack) names the decider it authenticated;
  // DecisionService already checked RBAC for it, so only the pure rules run again here.
  const decider: UserInfo = self
    ? { username: d.approver, ...(d.uid ? { uid: d.uid } : {}), groups: d.groups ?? [] }
    : user;
  const check = checkDecision({
    request: oldAr,
    decider,
    decision: d,
    now,
    writtenBy: self ? "relayed" : "decider",
    coveredBy: coveringPolicies(decider),
  });
  if (!check.ok) return { allowed: false, message: refusalMessage(check.refusal), refusal: check.refusal };
  if (self) return { allowed: true };
  return {
    allowed: "needs-rbac",
    verb: check.verb,
    namespace: check.request.namespace,
    name: check.request.name,
    decision: d,
  };
}
