/**
 * Records a decision on behalf of a decider whose identity Countersign has already
 * established (a Kubernetes bearer token through TokenReview for the HTTP API; an explicit
 * user mapping for Slack). The same rules as `kubectl approve` through the webhook guard:
 * checkDecision (not the requester, approver rules, Pending, once per person) and RBAC verb
 * approve/deny for the decider (SubjectAccessReview). Countersign then appends the decision
 * under its own identity, naming the decider.
 */
import { CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { kubeStatusOf } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";
import type { UserInfo } from "../policy/evaluate.js";
import { API_GROUP, API_VERSION } from "../policy/types.js";
import { checkDecision, type RbacChecker } from "./decision-guard.js";
import { APPROVAL_REQUEST_PLURAL, type ApprovalRequest, type Decision } from "./request.js";
import { getApprovalRequest } from "./store.js";

export type DecisionOutcome =
  | { ok: true; message: string; approvalRequest: ApprovalRequest }
  | { ok: false; status: 403 | 404 | 409 | 503; message: string };

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
    decision: "Approve" | "Deny",
    reason: string | undefined,
    via: Decision["via"],
  ): Promise<DecisionOutcome> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const ar = await this.get(namespace, name);
      if (!ar) return { ok: false, status: 404, message: `ApprovalRequest ${namespace}/${name} not found` };
      const now = this.now();
      const entry: Decision = {
        approver: decider.username ?? "",
        ...(decider.uid ? { uid: decider.uid } : {}),
        groups: decider.groups ?? [],
        decision,
        ...(reason ? { reason: reason.slice(0, 1024) } : {}),
        ...(via ? { via } : {}),
        time: now.toISOString().replace(/\.\d{3}Z$/, "Z"),
      };
      const check = checkDecision(ar, decider, entry, now);
      if (check.allowed === false) {
        const status = /already|expired/.test(check.message) ? 409 : 403;
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
      const patch = ar.spec.decisions
        ? [{ op: "add", path: "/spec/decisions/-", value: entry }]
        : [{ op: "add", path: "/spec/decisions", value: [entry] }];
      try {
        const updated = (await this.api.patchNamespacedCustomObject(
          {
            group: API_GROUP,
            version: API_VERSION,
            namespace,
            plural: APPROVAL_REQUEST_PLURAL,
            name,
            body: patch,
          },
          setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
        )) as ApprovalRequest;
        this.log.info("decision recorded", {
          approvalRequest: `${namespace}/${name}`,
          decision,
          decider: decider.username,
          via,
        });
        return {
          ok: true,
          approvalRequest: updated,
          message: `${decision === "Approve" ? "approved" : "denied"} ${namespace}/${name}`,
        };
      } catch (err) {
        const s = kubeStatusOf(err);
        if (s && (s.code === 409 || /append-only/.test(s.message ?? ""))) continue;
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
