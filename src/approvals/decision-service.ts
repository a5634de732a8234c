/**
 * Records a decision on behalf of a decider whose identity Countersign has already
 * established (a Kubernetes bearer token through TokenReview for the HTTP API; an explicit
 * user mapping for Slack). The same rules as `kubectl approve` through the webhook guard:
 * checkDecision (not the requester, approver rules, Pending — or Approved and unconsumed for a
 * revocation —, once per person) and RBAC verb approve/deny/revoke for the decider
 * (SubjectAccessReview). Countersign then appends the decision under its own identity, naming
 * the decider; the webhook guard checks that relayed decision's metadata again.
 */
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { kubeStatusOf } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";
import type { UserInfo } from "../policy/evaluate.js";
import { checkDecision, type RbacChecker, RefusalCode } from "./decision-guard.js";
import { type ApprovalRequest, type Decision, type DecisionKind, decisionEntry } from "./request.js";
import { appendDecision, getApprovalRequest, isDecisionRace } from "./store.js";

export type DecisionOutcome =
  | { ok: true; message: string; approvalRequest: ApprovalRequest }
  | { ok: false; status: 400 | 403 | 404 | 409 | 503; message: string };

const DONE: Record<DecisionKind, string> = { Approve: "approved", Deny: "denied", Revoke: "revoked" };

export class DecisionService {
  private readonly api: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    private readonly rbac: RbacChecker,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  get(namespace: string, name: string): Promise<ApprovalRequest | undefined> {
    return getApprovalRequest(this.api, namespace, name);
  }

  async decide(
    namespace: string,
    name: string,
    decider: UserInfo,
    decision: DecisionKind,
    reason: string | undefined,
    via: Decision["via"],
  ): Promise<DecisionOutcome> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const ar = await this.get(namespace, name);
      if (!ar) return { ok: false, status: 404, message: `ApprovalRequest ${namespace}/${name} not found` };
      const now = this.now();
      const entry = decisionEntry(decider, decision, reason, via, now);
      const check = checkDecision(ar, decider, entry, now);
      if (check.allowed === false) {
        const status =
          check.code === RefusalCode.Conflict ? 409 : check.code === RefusalCode.Invalid ? 400 : 403;
        return { ok: false, status, message: check.message };
      }
      if (check.allowed === "needs-rbac") {
        const rbac = await this.rbac.allowed(decider, check.verb, namespace, name);
        if (!rbac.allowed) {
          return {
            ok: false,
            status: 403,
            message: `Countersign: ${decider.username} lacks RBAC verb "${check.verb}" on approvalrequests.countersign.io in namespace ${namespace}${rbac.reason ? ` (${rbac.reason})` : ""}`,
          };
        }
      }
      try {
        const updated = await appendDecision(this.api, ar, entry);
        this.log.info("decision recorded", {
          approvalRequest: `${namespace}/${name}`,
          decision,
          decider: decider.username,
          via,
        });
        return {
          ok: true,
          approvalRequest: updated,
          message: `${DONE[decision]} ${namespace}/${name}`,
        };
      } catch (err) {
        if (isDecisionRace(kubeStatusOf(err))) continue;
        throw err;
      }
    }
    return {
      ok: false,
      status: 409,
      message: `ApprovalRequest ${namespace}/${name} kept changing; try again`,
    };
  }
}
