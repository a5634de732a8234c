/**
 * Guards writes to Countersign's own resources. Pure checks first, then (for a decision)
 * one SubjectAccessReview as the caller, cached for a few seconds.
 *
 *  - ApprovalRequest create, delete and status writes, and every AuditRecord write, are
 *    Countersign's alone (its own identity, learned at start-up).
 *  - A decision is appended by its decider, whose identity is the admission userInfo: the
 *    recorded approver / uid / groups must equal the caller's; the requester (any token of
 *    the same service account) can never decide; the caller must match the request's
 *    approver rules and hold RBAC verb approve (or deny) on approvalrequests; decisions
 *    are append-only, one per write; only a Pending, unexpired request can be decided.
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
  effectivePhase,
  Phase,
} from "./request.js";

export const AUDIT_RECORD_PLURAL = "auditrecords";
export const Verb = { Approve: "approve", Deny: "deny" } as const;

export type GuardResult =
  | { allowed: true; message?: string }
  | { allowed: false; message: string }
  | { allowed: "needs-rbac"; verb: "approve" | "deny"; namespace: string; name: string; decision: Decision };

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");

function who(user: UserInfo): string {
  return user.username ?? "(anonymous)";
}

export function isGuardedResource(req: AdmissionRequest): boolean {
  return (
    req.resource.group === API_GROUP &&
    (req.resource.resource === APPROVAL_REQUEST_PLURAL || req.resource.resource === AUDIT_RECORD_PLURAL)
  );
}

export function guardWrite(
  req: AdmissionRequest,
  countersignUsers: ReadonlySet<string>,
  now: Date,
): GuardResult {
  const user = req.userInfo;
  if (countersignUsers.has(user.username ?? "")) return { allowed: true };
  const kind = req.resource.resource === AUDIT_RECORD_PLURAL ? "AuditRecord" : "ApprovalRequest";
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
  if (d.approver !== user.username) {
    return {
      allowed: false,
      message: `Countersign: the decision names "${d.approver}" but you are authenticated as "${who(user)}"; a decision must name its decider (kubectl approve fills this in)`,
    };
  }
  if (d.uid !== undefined && d.uid !== (user.uid ?? "")) {
    return {
      allowed: false,
      message: `Countersign: the decision's uid does not match your authenticated uid`,
    };
  }
  if (d.groups !== undefined && !sameSet(d.groups, user.groups ?? [])) {
    return {
      allowed: false,
      message: `Countersign: the decision's groups do not match your authenticated groups`,
    };
  }
  return checkDecision(oldAr, user, d, now);
}

/**
 * The decision rules every path shares (kubectl through the webhook, the HTTP API, Slack):
 * not already decided by this person, not the requester, the request Pending and unexpired,
 * the decider matching the approver rules. RBAC (a SubjectAccessReview) comes after.
 */
export function checkDecision(oldAr: ApprovalRequest, user: UserInfo, d: Decision, now: Date): GuardResult {
  const oldDecisions = oldAr.spec.decisions ?? [];
  if (oldDecisions.some((x) => x.approver === d.approver)) {
    return { allowed: false, message: `Countersign: ${d.approver} has already decided this request` };
  }
  const requester = oldAr.spec.requester;
  const callerSa = serviceAccountOf(user.username);
  const requesterSa = requester.serviceAccount ?? serviceAccountOf(requester.username);
  if (
    user.username === requester.username ||
    (callerSa &&
      requesterSa &&
      callerSa.namespace === requesterSa.namespace &&
      callerSa.name === requesterSa.name)
  ) {
    return {
      allowed: false,
      message: "Countersign: nobody decides their own request; ask one of its approvers",
    };
  }
  const phase = effectivePhase(oldAr, now);
  if (phase !== Phase.Pending) {
    const what =
      phase === Phase.Expired
        ? `expired at ${oldAr.spec.approval.expiresAt}; the requester must retry the action to open a new request`
        : `already ${phase}`;
    return {
      allowed: false,
      message: `Countersign: ApprovalRequest ${oldAr.metadata.namespace}/${oldAr.metadata.name} is ${what}`,
    };
  }
  const approvers = oldAr.spec.approval.approvers;
  const byUser = approvers.users?.includes(user.username ?? "") ?? false;
  const byGroup = (user.groups ?? []).some((g) => approvers.groups?.includes(g));
  if (!byUser && !byGroup) {
    const list = [
      ...(approvers.users ?? []).map((u) => `user ${u}`),
      ...(approvers.groups ?? []).map((g) => `group ${g}`),
    ];
    return {
      allowed: false,
      message: `Countersign: ${who(user)} is not an approver for this request (approvers: ${list.join(", ")})`,
    };
  }
  return {
    allowed: "needs-rbac",
    verb: d.decision === "Approve" ? Verb.Approve : Verb.Deny,
    namespace: oldAr.metadata.namespace,
    name: oldAr.metadata.name,
    decision: d,
  };
}

const SAR_CACHE_MS = 5000;

/** SubjectAccessReview as the caller, cached briefly: may this user approve/deny here? */
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
