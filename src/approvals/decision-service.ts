/**
 * Records a decision on behalf of a decider whose identity Countersign has already
 * established (a Kubernetes bearer token through TokenReview for the HTTP API; an explicit
 * user mapping for Slack). The same rules as `kubectl approve` through the webhook guard:
 * decisions.ts's checkDecision, then RBAC verb approve/deny/revoke for the decider
 * (SubjectAccessReview). Countersign then appends the decision under its own identity, naming
 * the decider; the webhook guard checks that relayed decision again. A refusal carries its
 * typed code and the HTTP status of that code (HTTP_STATUS): no message is ever matched.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { kubeStatusOf } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";
import type { UserInfo } from "../resources/admission.js";
import type { ApprovalRequest, Decision, DecisionKind } from "../resources/approval-request.js";
import { type ApprovalRequestClient, CountersignClient, isDecisionRace } from "../resources/client.js";
import { DecisionDone, kubeRaceMessage, refusalMessage } from "./decision-messages.js";
import { checkDecision, type DecisionCode, type DecisionRefusal, HTTP_STATUS } from "./decisions.js";
import type { RbacChecker } from "./rbac-checker.js";
import { decisionEntry } from "./request.js";

export type DecisionOutcome =
  | { ok: true; message: string; approvalRequest: ApprovalRequest }
  | { ok: false; status: 400 | 403 | 404 | 409 | 503; message: string; code?: DecisionCode };

export interface DecisionServiceOptions {
  /** The ApprovalPolicies covering a subject (from the policy cache); such a subject never decides. */
  coveredBy?: (user: UserInfo) => readonly string[];
  now?: () => Date;
}

export class DecisionService {
  private readonly requests: ApprovalRequestClient;
  private readonly coveredBy: (user: UserInfo) => readonly string[];
  private readonly now: () => Date;

  constructor(
    kc: KubeConfig,
    private readonly rbac: RbacChecker,
    private readonly log: Logger,
    opts: DecisionServiceOptions = {},
  ) {
    this.requests = CountersignClient.fromKubeConfig(kc).approvalRequests;
    this.coveredBy = opts.coveredBy ?? (() => []);
    this.now = opts.now ?? (() => new Date());
  }

  get(namespace: string, name: string): Promise<ApprovalRequest | undefined> {
    return this.requests.get(namespace, name);
  }

  async decide(
    namespace: string,
    name: string,
    decider: UserInfo,
    decision: DecisionKind,
    reason: string | undefined,
    via: Decision["via"],
    /** An emergency Approve by a member of the request's break-glass groups. */
    breakGlass = false,
  ): Promise<DecisionOutcome> {
    const refused = (refusal: DecisionRefusal): DecisionOutcome => ({
      ok: false,
      status: HTTP_STATUS[refusal.code],
      message: refusalMessage(refusal),
      code: refusal.code,
    });
    for (let attempt = 0; attempt < 3; attempt++) {
      const ar = await this.get(namespace, name);
      if (!ar) return { ok: false, status: 404, message: `ApprovalRequest ${namespace}/${name} not found` };
      const now = this.now();
      const entry = decisionEntry(decider, decision, reason, via, now, breakGlass);
      const check = checkDecision({
        request: ar,
        decider,
        decision: entry,
        now,
        writtenBy: "relayed",
        coveredBy: this.coveredBy(decider),
      });
      if (!check.ok) return refused(check.refusal);
      let rbac: { allowed: boolean; reason: string };
      try {
        rbac = await this.rbac.allowed(decider, check.verb, namespace, name);
      } catch (err) {
        this.log.error("SubjectAccessReview failed", {
          error: err instanceof Error ? err.message : String(err),
        });
        return refused({ code: "rbac-unavailable" });
      }
      if (!rbac.allowed) {
        return refused({
          code: "needs-rbac",
          decider: decider.username ?? "(anonymous)",
          verb: check.verb,
          namespace,
          reason: rbac.reason,
        });
      }
      try {
        const updated = await this.requests.appendDecision(ar, entry);
        this.log.info("decision recorded", {
          approvalRequest: `${namespace}/${name}`,
          decision,
          decider: decider.username,
          via,
        });
        return {
          ok: true,
          approvalRequest: updated,
          message: `${DecisionDone[decision]} ${namespace}/${name}`,
        };
      } catch (err) {
        if (isDecisionRace(kubeStatusOf(err))) continue;
        throw err;
      }
    }
    return { ok: false, status: 409, message: kubeRaceMessage(namespace, name) };
  }
}
