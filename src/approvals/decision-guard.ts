/**
 * Guards writes to Countersign's own resources. Pure checks first, then (for a decision)
 * one SubjectAccessReview as the caller, cached for a few seconds.
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
 */
import { AuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";
import type { AdmissionRequest, UserInfo } from "../policy/evaluate.js";
import { serviceAccountOf } from "../policy/evaluate.js";
import { API_GROUP } from "../policy/types.js";
import { canonicalJson } from "./fingerprint.js";
import {
  APPROVAL_REQUEST_PLURAL,
  type ApprovalRequest,
  type Decision,
  DecisionKind,
  effectivePhase,
  Phase,
} from "./request.js";

export const AUDIT_RECORD_PLURAL = "auditrecords";
export const AUDIT_CHECKPOINT_PLURAL = "auditcheckpoints";
/**
 * Who empties a deleted namespace: the namespace controller (its own service account with
 * --use-service-account-credentials, else the controller-manager's identity).
 */
export const NAMESPACE_DELETERS: ReadonlySet<string> = new Set([
  "system:serviceaccount:kube-system:namespace-controller",
  "system:kube-controller-manager",
]);
export const Verb = { Approve: "approve", Deny: "deny", Revoke: "revoke" } as const;
export type DecisionVerb = (typeof Verb)[keyof typeof Verb];
export const VERB_OF: Record<DecisionKind, DecisionVerb> = {
  Approve: Verb.Approve,
  Deny: Verb.Deny,
  Revoke: Verb.Revoke,
};

/** How far a decision's `time` may be from the server's clock (either way). */
export const DECISION_CLOCK_SKEW_SECONDS = 120;

/** The only `via` a person writes themselves; the others are Countersign relaying a decider. */
export const KUBECTL_VIA = "kubectl";
const RELAYED_VIA: readonly string[] = ["slack", "teams", "api"];

/** Why a decision was refused, for callers that map it to a status (the HTTP API). */
export const RefusalCode = {
  /** The request is not in a state that takes this decision (already decided, used, expired...). */
  Conflict: "Conflict",
  /** Not this caller: identity, approver rules, requester. */
  Forbidden: "Forbidden",
  /** The decision itself is malformed (missing reason, bad time...). */
  Invalid: "Invalid",
} as const;
export type RefusalCode = (typeof RefusalCode)[keyof typeof RefusalCode];

export type GuardResult =
  | { allowed: true; message?: string }
  | { allowed: false; message: string; code?: RefusalCode }
  | { allowed: "needs-rbac"; verb: DecisionVerb; namespace: string; name: string; decision: Decision }
  /** The namespace controller deleting: allowed once the namespace is Terminating and its chain archived. */
  | { allowed: "needs-archive"; namespace: string };

const refuse = (message: string, code: RefusalCode = RefusalCode.Forbidden): GuardResult => ({
  allowed: false,
  message: `Countersign: ${message}`,
  code,
});

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");

function who(user: UserInfo): string {
  return user.username ?? "(anonymous)";
}

export function isGuardedResource(req: AdmissionRequest): boolean {
  return (
    req.resource.group === API_GROUP &&
    (req.resource.resource === APPROVAL_REQUEST_PLURAL ||
      req.resource.resource === AUDIT_RECORD_PLURAL ||
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
  if (!self && req.operation === "DELETE" && req.namespace && NAMESPACE_DELETERS.has(user.username ?? ""))
    return { allowed: "needs-archive", namespace: req.namespace };
  if (req.resource.resource === AUDIT_CHECKPOINT_PLURAL) {
    if (self) return { allowed: true };
    return {
      allowed: false,
      message: `Countersign: AuditCheckpoints anchor the audit trail and are written only by Countersign; ${who(user)} may not ${req.operation.toLowerCase()} them.`,
    };
  }
  const kind = req.resource.resource === AUDIT_RECORD_PLURAL ? "AuditRecord" : "ApprovalRequest";
  const specWrite = kind === "ApprovalRequest" && req.operation === "UPDATE" && req.subResource !== "status";
  if (self && !specWrite) return { allowed: true };
  if (kind === "AuditRecord") {
    return {
      allowed: false,
      message: `Countersign: AuditRecords are written and retired only by Countersign; ${who(user)} may not ${req.operation.toLowerCase()} them. The audit trail is immutable.`,
    };
  }
  if (req.subResource === "status") {
    return {
      allowed: false,
      message: `Countersign: only Countersign sets an ApprovalRequest's status. Record a decision with kubectl approve/deny instead.`,
    };
  }
  if (req.operation === "CREATE") {
    return {
      allowed: false,
      message: `Countersign: ApprovalRequests are created only by Countersign's webhook, when a covered action is attempted. Perform the action to request approval.`,
    };
  }
  if (req.operation === "DELETE") {
    return {
      allowed: false,
      message: `Countersign: ApprovalRequests are part of the audit trail; Countersign removes finished ones after their retention. Deny it instead: kubectl deny ${req.name} -n ${req.namespace}`,
    };
  }
  if (req.operation !== "UPDATE") return { allowed: true };
  const oldAr = req.oldObject as ApprovalRequest | undefined;
  const newAr = req.object as ApprovalRequest | undefined;
  if (!oldAr?.spec || !newAr?.spec)
    return { allowed: false, message: "Countersign: malformed ApprovalRequest update" };
  const lifecycle = (o: ApprovalRequest) => {
    const m = o.metadata as { finalizers?: unknown; ownerReferences?: unknown };
    return canonicalJson([m.finalizers ?? [], m.ownerReferences ?? []]);
  };
  if (!self && lifecycle(oldAr) !== lifecycle(newAr)) {
    return {
      allowed: false,
      message:
        "Countersign: only Countersign sets an ApprovalRequest's finalizers and owner references (a finalizer would keep its namespace from being deleted; an owner reference would hand its removal to the garbage collector)",
    };
  }
  const { decisions: oldDecisions = [], ...oldSpec } = oldAr.spec;
  const { decisions: newDecisions = [], ...newSpec } = newAr.spec;
  if (canonicalJson(oldSpec) !== canonicalJson(newSpec)) {
    return {
      allowed: false,
      message: "Countersign: the action being approved is immutable; only a decision may be added",
    };
  }
  for (const d of oldDecisions) {
    if (!newDecisions.some((n) => canonicalJson(n) === canonicalJson(d))) {
      return {
        allowed: false,
        message: `Countersign: decisions are append-only; the decision by ${d.approver} cannot be changed or removed`,
      };
    }
  }
  const added = newDecisions.filter((n) => !oldDecisions.some((d) => canonicalJson(d) === canonicalJson(n)));
  if (added.length === 0) return { allowed: true };
  if (added.length > 1)
    return { allowed: false, message: "Countersign: add one decision per write: your own" };
  const d = added[0]!;
  const decider: UserInfo = self ? { username: d.approver, groups: d.groups ?? [] } : user;
  // The requester is refused by checkDecision with its own, more specific message.
  const covering = isRequester(oldAr, decider) ? [] : coveringPolicies(decider);
  if (covering.length > 0) {
    return {
      allowed: false,
      message: `Countersign: ${who(decider)} is covered by ApprovalPolicy ${covering.slice(0, 3).join(", ")}${covering.length > 3 ? ` and ${covering.length - 3} more` : ""}, so it may not ${d.decision.toLowerCase()} ApprovalRequests: subjects under approval never decide requests, not even another agent's. Nothing was recorded. Ask a human approver: kubectl approvals show ${oldAr.metadata.name} -n ${oldAr.metadata.namespace}`,
    };
  }
  if (self) return checkRelayedDecision(oldAr, d, now);
  const metadata = checkDecisionMetadata(d, user, now);
  if (metadata) return metadata;
  return checkDecision(oldAr, user, d, now);
}

/** Whether a decision's time is within DECISION_CLOCK_SKEW_SECONDS of `now`; a refusal if not. */
function checkDecisionTime(d: Decision, now: Date): GuardResult | undefined {
  const t = Date.parse(d.time ?? "");
  if (Number.isNaN(t))
    return refuse(`the decision's time "${d.time}" is not a timestamp`, RefusalCode.Invalid);
  const off = Math.round((t - now.getTime()) / 1000);
  if (Math.abs(off) > DECISION_CLOCK_SKEW_SECONDS) {
    return refuse(
      `the decision's time ${d.time} is ${Math.abs(off)}s ${off < 0 ? "behind" : "ahead of"} the server's clock (${DECISION_CLOCK_SKEW_SECONDS}s allowed); a decision is stamped when it is made. Check your clock and run kubectl approve/deny again`,
      RefusalCode.Invalid,
    );
  }
  return undefined;
}

/**
 * The metadata of a decision a person writes themselves (kubectl): it names the caller
 * exactly as the API server authenticated them (username, uid, groups — all present, and an
 * empty uid only for callers that have none, such as client-certificate users), it is stamped
 * now, and it came through kubectl. Pure; undefined when it is in order.
 */
export function checkDecisionMetadata(d: Decision, caller: UserInfo, now: Date): GuardResult | undefined {
  if (d.approver !== caller.username) {
    return refuse(
      `the decision names "${d.approver}" but you are authenticated as "${who(caller)}"; a decision must name its decider (kubectl approve fills this in)`,
    );
  }
  const missing = [
    ...(d.uid === undefined && caller.uid ? ["uid"] : []),
    ...(d.groups === undefined ? ["groups"] : []),
    ...(d.time === undefined ? ["time"] : []),
    ...(d.via === undefined ? ["via"] : []),
  ];
  if (missing.length > 0) {
    return refuse(
      `the decision lacks ${missing.join(", ")}. A decision records its decider's uid and groups exactly as the API server knows them, when it was made and how; kubectl approve / deny / approvals revoke fill these in from a SelfSubjectReview`,
      RefusalCode.Invalid,
    );
  }
  if ((d.uid ?? "") !== (caller.uid ?? "")) {
    return refuse(
      `the decision's uid "${d.uid}" does not match your authenticated uid "${caller.uid ?? ""}"`,
    );
  }
  if (!sameSet(d.groups ?? [], caller.groups ?? [])) {
    return refuse(
      `the decision's groups do not match your authenticated groups (${(caller.groups ?? []).join(", ") || "none"})`,
    );
  }
  if (d.via !== KUBECTL_VIA) {
    return RELAYED_VIA.includes(d.via ?? "")
      ? refuse(
          `a decision via ${d.via} is recorded only by Countersign itself, for a decider it authenticated; decide in ${d.via === "api" ? "the approval API" : d.via} or with kubectl (via kubectl)`,
        )
      : refuse(`the decision's via must be "kubectl"`, RefusalCode.Invalid);
  }
  return checkDecisionTime(d, now);
}

/**
 * A decision Countersign's own identity appends for a decider it authenticated (the approval
 * API, Slack): DecisionService already applied checkDecision and RBAC; here the same pure rules
 * are checked again against the named decider, and the metadata must be sane.
 */
export function checkRelayedDecision(oldAr: ApprovalRequest, d: Decision, now: Date): GuardResult {
  if (!RELAYED_VIA.includes(d.via ?? "")) {
    return refuse(
      `a decision Countersign records for someone must say how it was made (via ${RELAYED_VIA.join(", ")}), not ${d.via ?? "nothing"}`,
      RefusalCode.Invalid,
    );
  }
  if (!d.approver || d.groups === undefined || d.time === undefined) {
    return refuse("a relayed decision must name its decider, their groups and its time", RefusalCode.Invalid);
  }
  const time = checkDecisionTime(d, now);
  if (time) return time;
  const check = checkDecision(
    oldAr,
    { username: d.approver, ...(d.uid ? { uid: d.uid } : {}), groups: d.groups },
    d,
    now,
  );
  return check.allowed === "needs-rbac" ? { allowed: true } : check;
}

function isRequester(oldAr: ApprovalRequest, user: UserInfo): boolean {
  const requester = oldAr.spec.requester;
  const callerSa = serviceAccountOf(user.username);
  const requesterSa = requester.serviceAccount ?? serviceAccountOf(requester.username);
  return (
    user.username === requester.username ||
    (callerSa !== undefined &&
      requesterSa !== undefined &&
      callerSa.namespace === requesterSa.namespace &&
      callerSa.name === requesterSa.name)
  );
}

function approverRuleRefusal(oldAr: ApprovalRequest, user: UserInfo): GuardResult | undefined {
  const approvers = oldAr.spec.approval.approvers;
  const byUser = approvers.users?.includes(user.username ?? "") ?? false;
  const byGroup = (user.groups ?? []).some((g) => approvers.groups?.includes(g));
  if (byUser || byGroup) return undefined;
  const list = [
    ...(approvers.users ?? []).map((u) => `user ${u}`),
    ...(approvers.groups ?? []).map((g) => `group ${g}`),
  ];
  return refuse(`${who(user)} is not an approver for this request (approvers: ${list.join(", ")})`);
}

/**
 * The decision rules every path shares (kubectl through the webhook, the HTTP API, Slack):
 * not already decided by this person, not the requester, the request Pending and unexpired,
 * the decider matching the approver rules; for a Revoke see checkRevoke. RBAC (a
 * SubjectAccessReview) comes after.
 */
export function checkDecision(oldAr: ApprovalRequest, user: UserInfo, d: Decision, now: Date): GuardResult {
  if (d.decision === DecisionKind.Revoke) return checkRevoke(oldAr, user, d, now);
  const oldDecisions = oldAr.spec.decisions ?? [];
  if (oldDecisions.some((x) => x.approver === d.approver && x.decision !== DecisionKind.Revoke)) {
    return refuse(`${d.approver} has already decided this request`, RefusalCode.Conflict);
  }
  if (isRequester(oldAr, user)) return refuse("nobody decides their own request; ask one of its approvers");
  if (d.decision === DecisionKind.Approve && oldAr.spec.diffTruncated) {
    // Nobody can have seen the whole change, so nobody may approve it; Deny stays possible.
    return refuse(
      `ApprovalRequest ${oldAr.metadata.namespace}/${oldAr.metadata.name} cannot be approved: the change is too large to show in full. Deny it; the requester must split the change, or an admin adds an Allow rule for it`,
    );
  }
  const phase = effectivePhase(oldAr, now);
  if (phase !== Phase.Pending) {
    const what =
      phase === Phase.Expired
        ? `expired at ${oldAr.spec.approval.expiresAt}; the requester must retry the action to open a new request`
        : `already ${phase}`;
    return refuse(
      `ApprovalRequest ${oldAr.metadata.namespace}/${oldAr.metadata.name} is ${what}`,
      RefusalCode.Conflict,
    );
  }
  const rules = approverRuleRefusal(oldAr, user);
  if (rules) return rules;
  return {
    allowed: "needs-rbac",
    verb: VERB_OF[d.decision],
    namespace: oldAr.metadata.namespace,
    name: oldAr.metadata.name,
    decision: d,
  };
}

/**
 * Revoking withdraws an approval before it is used: any eligible approver (the approver rules
 * and RBAC verb revoke; never the requester) may revoke a request that is Approved, unexpired
 * and unconsumed, giving a reason. Pure.
 */
export function checkRevoke(oldAr: ApprovalRequest, user: UserInfo, d: Decision, now: Date): GuardResult {
  const { namespace, name } = oldAr.metadata;
  if (isRequester(oldAr, user)) {
    return refuse(
      "the requester cannot revoke its own request; only its approvers can. To give up the action, simply do not retry it",
    );
  }
  if (!d.reason?.trim()) {
    return refuse(
      "a revocation needs a reason (--reason): the requester and the audit trail are told why",
      RefusalCode.Invalid,
    );
  }
  const phase = effectivePhase(oldAr, now);
  if (phase !== Phase.Approved) {
    const revoked = (oldAr.spec.decisions ?? []).find((x) => x.decision === DecisionKind.Revoke);
    const consumed = oldAr.status?.consumed;
    const what =
      phase === Phase.Revoked
        ? `already revoked${revoked ? ` by ${revoked.approver}` : ""}`
        : phase === Phase.Consumed
          ? `already used${consumed ? ` (admitted at ${consumed.time}, admission uid ${consumed.admissionUID})` : ""}; a used approval cannot be revoked`
          : phase === Phase.Pending
            ? `Pending: there is no approval to revoke yet. Deny it instead: kubectl deny ${name} -n ${namespace}`
            : phase === Phase.Expired
              ? `expired at ${oldAr.spec.approval.expiresAt}; it can no longer be used, so there is nothing to revoke`
              : `already ${phase}`;
    return refuse(`ApprovalRequest ${namespace}/${name} is ${what}`, RefusalCode.Conflict);
  }
  if (oldAr.status?.consumed) {
    return refuse(
      `ApprovalRequest ${namespace}/${name} is already used; a used approval cannot be revoked`,
      RefusalCode.Conflict,
    );
  }
  const rules = approverRuleRefusal(oldAr, user);
  if (rules) return rules;
  return { allowed: "needs-rbac", verb: Verb.Revoke, namespace, name, decision: d };
}

const SAR_CACHE_MS = 5000;

/** SubjectAccessReview as the caller, cached briefly: may this user approve/deny/revoke here? */
export class RbacChecker {
  private readonly api: AuthorizationV1Api;
  private readonly cache = new Map<string, { at: number; allowed: boolean; reason: string }>();

  constructor(
    kc: KubeConfig,
    private readonly now: () => number = Date.now,
  ) {
    this.api = kc.makeApiClient(AuthorizationV1Api);
  }

  async allowed(
    user: UserInfo,
    verb: string,
    namespace: string,
    name: string,
  ): Promise<{ allowed: boolean; reason: string }> {
    const key = canonicalJson([
      user.username,
      user.uid,
      user.groups ?? [],
      user.extra ?? {},
      verb,
      namespace,
      name,
    ]);
    const hit = this.cache.get(key);
    if (hit && this.now() - hit.at < SAR_CACHE_MS) return hit;
    const review = await this.api.createSubjectAccessReview({
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: user.username ?? "",
          ...(user.uid ? { uid: user.uid } : {}),
          groups: user.groups ?? [],
          ...(user.extra ? { extra: user.extra } : {}),
          resourceAttributes: { group: API_GROUP, resource: APPROVAL_REQUEST_PLURAL, verb, namespace, name },
        },
      },
    });
    const result = {
      at: this.now(),
      allowed: review.status?.allowed === true,
      reason: review.status?.reason ?? "",
    };
    if (this.cache.size > 1000) this.cache.clear();
    this.cache.set(key, result);
    return result;
  }
}
