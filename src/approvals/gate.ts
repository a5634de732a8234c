/**
 * The require-approval path (I/O around the pure functions in request.ts / fingerprint.ts):
 * find the ApprovalRequest for this exact action, consume an approval exactly once with a
 * conditional update, or create the request (deterministic name, AlreadyExists = success),
 * emit an Event, and tell the agent what to do next. The allow path never comes here.
 *
 * Reads come from the ApprovalRequest informer (open-requests.ts) when it has the request, and
 * from the API server when it does not: a pending retry makes no API call. A stale cache can
 * only delay an admission, never grant one: an approval is used only by a conditional write
 * on the resourceVersion read, and when that write fails the request is read from the API
 * server again.
 *
 * Before an approval is used, the approvers it counts are re-checked: each must still hold
 * RBAC verb approve on the request (SubjectAccessReview as the recorded approver, cached for
 * a few seconds by RbacChecker); if too few still do, nothing is consumed.
 */
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { isAlreadyExists } from "../kube/errors.js";
import { emitEvent, eventTargetOf } from "../kube/events.js";
import type { Logger } from "../logging/logger.js";
import { approvalRequestsCapped } from "../metrics/metrics.js";
import type { CompiledApproval } from "../policy/compile.js";
import type { RuleRef } from "../policy/evaluate.js";
import type { AdmissionRequest } from "../resources/admission.js";
import { type ApprovalRequest, DecisionKind } from "../resources/approval-request.js";
import { type ApprovalRequestClient, CountersignClient } from "../resources/client.js";
import { EventReason } from "../resources/event-reasons.js";
import { Verb } from "./decisions.js";
import {
  actionIdentity,
  type FingerprintKey,
  fingerprintOf,
  type Transition,
  transitionOf,
} from "./fingerprint.js";
import { pendingProgress } from "./follow-ups.js";
import {
  approvalsSuffice,
  breakGlassLapse,
  consumedStatus,
  gateStep,
  holdStep,
  isBreakGlass,
  tally,
} from "./lifecycle.js";
import { cappedMessage, type OpenRequestIndex } from "./open-requests.js";
import type { RbacChecker } from "./rbac-checker.js";
import { approvalRequestName, buildApprovalRequest } from "./request.js";

/** Attempts (earlier finished requests for one fingerprint) looked at before giving up. */
const MAX_ATTEMPTS = 50;
const MAX_CONSUME_RETRIES = 5;
const HOLD_POLL_MS = 250;
/**
 * How long after this webhook admitted a write to an ApprovalRequest (a decision, the
 * controller's status) its reads skip the informer cache, which may not have the change yet:
 * an agent retrying right after an approval is not told "pending" by a cache a few ms behind.
 */
export const RECENT_WRITE_MS = 5000;
const MAX_RECENT_WRITES = 10_000;

export interface GateOutcome {
  allowed: boolean;
  message: string;
  approvalRequest?: { namespace: string; name: string };
  /** Short machine-readable state for audit annotations and metrics. */
  state: "consumed" | "pending" | "created" | "denied" | "dry-run" | "capped" | "error";
}

export interface GateOptions {
  kubeConfig: KubeConfig;
  /** Where requests for cluster-scoped targets go. */
  installNamespace: string;
  /** This replica's name, recorded when it consumes an approval. */
  replica: string;
  logger: Logger;
  /** Re-checks the approvers' RBAC before an approval is used (skipped when absent). */
  rbac?: RbacChecker;
  /** Open requests per requester (informer-backed) for the flood cap; no cap when absent. */
  openRequests?: OpenRequestIndex;
  /**
   * The per-install key Secret values are HMAC'd with before hashing (fingerprint-key.ts);
   * without it a random per-process key is used, so fingerprints would differ between replicas.
   */
  fingerprintKey?: FingerprintKey;
  now?: () => Date;
}

export class ApprovalGate {
  private readonly requests: ApprovalRequestClient;
  private readonly core: CoreV1Api;
  private readonly now: () => Date;
  /** ApprovalRequests this webhook admitted a write to recently: namespace/name → until (ms). */
  private readonly recentWrites = new Map<string, number>();

  constructor(private readonly opts: GateOptions) {
    this.requests = CountersignClient.fromKubeConfig(opts.kubeConfig).approvalRequests;
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.now = opts.now ?? (() => new Date());
  }

  /** The transition this gate binds (hashed with the install's fingerprint key). Pure. */
  transitionOf(req: AdmissionRequest): Transition {
    return transitionOf(req, this.opts.fingerprintKey);
  }

  async handle(
    req: AdmissionRequest,
    rule: RuleRef,
    approval: CompiledApproval,
    ruleMessage: string | undefined,
    log: Logger,
    transition: Transition = this.transitionOf(req),
    /** When the API server stops waiting for this review (epoch ms): no approval is used after it. */
    answerBy?: number,
  ): Promise<GateOutcome> {
    const action = actionIdentity(req, transition, this.opts.fingerprintKey);
    const fingerprint = fingerprintOf(action, rule);
    const namespace = req.namespace || this.opts.installNamespace;

    const ctx = { fingerprint, rule, dryRun: req.dryRun === true, holdSeconds: approval.holdSeconds };

    attempts: for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const name = approvalRequestName(action, fingerprint, attempt);
      let existing = await this.read(namespace, name);
      let confirmed = false;
      for (let retry = 0; retry < MAX_CONSUME_RETRIES; retry++) {
        const next = gateStep(existing, { ...ctx, now: this.now() });
        switch (next.step) {
          case "next-attempt":
            continue attempts;
          case "dry-run-none":
            return {
              allowed: false,
              state: "dry-run",
              message: `Countersign: this action needs approval (ApprovalPolicy ${rule.policy}, rule ${rule.rule}). Dry run: no ApprovalRequest was created. Run it without --dry-run to request approval.`,
            };
          case "create": {
            // Rendered only now, when a request is created: a retry of an existing one pays only
            // for the fingerprint.
            const candidate = buildApprovalRequest({
              req,
              action,
              fingerprint,
              attempt,
              namespace,
              rule,
              ...(ruleMessage ? { ruleMessage } : {}),
              approval,
              now: this.now(),
              transition,
            });
            const capped = this.capped(candidate, approval, rule, log);
            if (capped) return capped;
            const created = await this.create(candidate, log);
            this.opts.openRequests?.note(created);
            if (next.hold) {
              const held = await this.hold(created, fingerprint, approval, req, log, answerBy);
              if (held) return held;
            }
            return this.pendingOutcome(created, "created");
          }
          case "denied":
            return this.deniedOutcome(existing!);
          case "revoked":
            return this.revokedOutcome(existing!);
          case "pending": {
            if (next.hold) {
              const held = await this.hold(existing!, fingerprint, approval, req, log, answerBy);
              if (held) return held;
            }
            return this.pendingOutcome(existing!, "pending");
          }
          case "unusable":
            return {
              allowed: false,
              state: "denied",
              approvalRequest: { namespace, name },
              message: `Countersign: ApprovalRequest ${namespace}/${name} cannot be used: ${next.why}.`,
            };
          case "use": {
            if (next.dryRun && !confirmed) {
              // A dry run writes nothing, so no conditional write would catch a stale cache (a
              // revoke the informer has not seen yet): it answers only from the API server's copy
              // (red team 11 F4).
              confirmed = true;
              const fresh = await this.get(namespace, name);
              if (!fresh) continue attempts;
              if (fresh.metadata.resourceVersion !== existing!.metadata.resourceVersion) {
                existing = fresh;
                continue;
              }
            }
            const lapsed = await this.approversLapsed(existing!, log, approval);
            if (lapsed) return lapsed;
            if (next.dryRun) {
              return {
                allowed: true,
                state: "dry-run",
                approvalRequest: { namespace, name },
                message:
                  `approved by ApprovalRequest ${namespace}/${name}, as the API server has it now ` +
                  `(dry run: approval not used; a revoke, expiry or another use before the real request still refuses it)`,
              };
            }
            if ((await this.consume(existing!, req, log, answerBy)) === "ok") {
              return {
                allowed: true,
                state: "consumed",
                approvalRequest: { namespace, name },
                message: `approved by ApprovalRequest ${namespace}/${name}; this approval is now used`,
              };
            }
            // Someone else changed it (a parallel retry consumed it, or a decision arrived): re-read.
            existing = await this.get(namespace, name);
            if (!existing) continue attempts;
          }
        }
      }
    }
    return {
      allowed: false,
      state: "error",
      message: `Countersign: could not settle an ApprovalRequest for this action (too many earlier requests or concurrent changes). Nothing was changed; retry shortly.`,
    };
  }

  /** The flood cap: refuse to open one more request past the requester's limit (in memory). */
  private capped(
    candidate: ApprovalRequest,
    approval: CompiledApproval,
    rule: RuleRef,
    log: Logger,
  ): GateOutcome | undefined {
    const index = this.opts.openRequests;
    if (!index) return undefined;
    const { namespace } = candidate.metadata;
    const username = candidate.spec.requester.username;
    const open = index.open(namespace, username, this.now());
    if (open.length < approval.maxOpenRequests) return undefined;
    approvalRequestsCapped.inc({ policy: rule.policy });
    log.warn("approval request cap reached; nothing created", {
      open: open.length,
      limit: approval.maxOpenRequests,
    });
    return {
      allowed: false,
      state: "capped",
      message: cappedMessage({
        username,
        namespace,
        open,
        limit: approval.maxOpenRequests,
        policy: rule.policy,
        rule: rule.rule,
      }),
    };
  }

  /** From the API server (after a failed conditional write, or when the cache does not have it). */
  private get(namespace: string, name: string): Promise<ApprovalRequest | undefined> {
    return this.requests.get(namespace, name);
  }

  /** Called when this webhook admits a write to an ApprovalRequest: its next reads go to the API server. */
  noteWrite(namespace: string, name: string): void {
    if (this.recentWrites.size >= MAX_RECENT_WRITES) {
      const now = Date.now();
      for (const [k, until] of this.recentWrites) if (until <= now) this.recentWrites.delete(k);
      if (this.recentWrites.size >= MAX_RECENT_WRITES) this.recentWrites.clear(); // reads fall back to the cache: still safe
    }
    this.recentWrites.set(`${namespace}/${name}`, Date.now() + RECENT_WRITE_MS);
  }

  /**
   * From the informer cache when it has the request (possibly stale: see the file comment) and
   * this webhook did not just admit a write to it; else from the API server.
   */
  private async read(namespace: string, name: string): Promise<ApprovalRequest | undefined> {
    const index = this.opts.openRequests;
    if (!index?.isSynced()) return this.get(namespace, name);
    if (this.recentWrites.size > 0) {
      const k = `${namespace}/${name}`;
      const until = this.recentWrites.get(k);
      if (until !== undefined) {
        if (until > Date.now()) return this.get(namespace, name);
        this.recentWrites.delete(k);
      }
    }
    return index.get(namespace, name) ?? this.get(namespace, name);
  }

  private async create(ar: ApprovalRequest, log: Logger): Promise<ApprovalRequest> {
    const { namespace, name } = ar.metadata;
    try {
      const created = await this.requests.create(ar);
      log.info("approval request created", {
        approvalRequest: `${namespace}/${name}`,
        policy: ar.spec.policy.name,
      });
      await this.event(
        created,
        EventReason.ApprovalRequested,
        `${ar.spec.action.summary} Approve: kubectl approve ${name} -n ${namespace}`,
        log,
      );
      return created;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      // Another replica or a parallel retry created it first: that one is ours too.
      return (await this.get(namespace, name)) ?? ar;
    }
  }

  /** Marks the request Consumed with a conditional update: of parallel callers exactly one wins. */
  private async consume(
    ar: ApprovalRequest,
    req: AdmissionRequest,
    log: Logger,
    answerBy?: number,
  ): Promise<"ok" | "conflict"> {
    // Past the API server's timeout the action will not run: using the approval now would
    // spend it on nothing (chaos schedules with a stalled API server, issue 12).
    if (answerBy !== undefined && Date.now() >= answerBy)
      throw new Error("the API server has stopped waiting for this review; the approval was not used");
    // Expiry is checked again here, not only before the approver RBAC re-check: that check
    // makes API calls, and an approval checked at 13.9 s was consumed at 14.08 s, after its
    // 14 s expiry (chaos seed 1091860728 path 5). "conflict" makes the caller re-read: Expired.
    const at = this.now();
    if (at.getTime() >= Date.parse(ar.spec.approval.expiresAt)) return "conflict";
    const written = await this.requests.replaceStatus(
      ar,
      consumedStatus(ar, { admissionUID: req.uid, replica: this.opts.replica }, at),
    );
    if (written === "conflict") return "conflict";
    log.info("approval consumed", { approvalRequest: `${ar.metadata.namespace}/${ar.metadata.name}` });
    await this.event(ar, EventReason.Consumed, `Approved action admitted (admission uid ${req.uid}).`, log);
    return "ok";
  }

  /** Waits up to holdSeconds for a decision on a pending request; consumes it if approved. */
  private async hold(
    ar: ApprovalRequest,
    fingerprint: string,
    approval: CompiledApproval,
    req: AdmissionRequest,
    log: Logger,
    answerBy?: number,
  ): Promise<GateOutcome | undefined> {
    const deadline = Math.min(
      this.now().getTime() + approval.holdSeconds * 1000,
      answerBy ?? Number.POSITIVE_INFINITY,
    );
    const { namespace, name } = ar.metadata;
    while (this.now().getTime() < deadline) {
      await new Promise((r) => setTimeout(r, HOLD_POLL_MS));
      const current = await this.read(namespace, name);
      if (!current) return undefined;
      const next = holdStep(current, fingerprint, this.now());
      if (next.step === "denied") return this.deniedOutcome(current!);
      if (next.step === "revoked") return this.revokedOutcome(current!);
      if (next.step === "use") {
        const lapsed = await this.approversLapsed(current!, log, approval);
        if (lapsed) return lapsed;
        if ((await this.consume(current!, req, log, answerBy)) === "ok") {
          return {
            allowed: true,
            state: "consumed",
            approvalRequest: { namespace, name },
            message: `approved by ApprovalRequest ${namespace}/${name} while held; this approval is now used`,
          };
        }
        return undefined;
      }
      if (next.step === "stop") return undefined;
    }
    return undefined;
  }

  /**
   * Whether the counted approvals no longer suffice when the approval is about to be used: a
   * break-glass approval must still be offered to its approver's recorded groups by the rule as
   * it is now (`approval`, the current policy's) and be recent (lifecycle.breakGlassLapse), and
   * each counted approver must still hold RBAC verb approve on this request (their recorded
   * username, uid and groups, as at decision time). The refusal, or undefined when the approval
   * still stands. Fails closed when the RBAC check itself fails.
   */
  private async approversLapsed(
    ar: ApprovalRequest,
    log: Logger,
    approval: CompiledApproval,
  ): Promise<GateOutcome | undefined> {
    const { namespace, name } = ar.metadata;
    const now = this.now();
    const lapsed: string[] = [];
    const why: string[] = [];
    const counted = tally(ar.spec).approvals.filter((d) => {
      if (!isBreakGlass(ar.spec, d)) return true;
      const lapse = breakGlassLapse(d, approval.breakGlass?.groups, now, ar.status?.decidedAt);
      if (!lapse) return true;
      lapsed.push(d.approver);
      why.push(`the break-glass approval by ${d.approver} no longer stands: ${lapse}`);
      return false;
    });
    if (this.opts.rbac) {
      const rbac = this.opts.rbac;
      try {
        const results = await Promise.all(
          counted.map((d) =>
            rbac.allowed(
              { username: d.approver, ...(d.uid ? { uid: d.uid } : {}), groups: d.groups ?? [] },
              Verb.Approve,
              namespace,
              name,
            ),
          ),
        );
        results.forEach((r, i) => {
          if (r.allowed) return;
          lapsed.push(counted[i]!.approver);
          why.push(`${counted[i]!.approver} no longer holds RBAC verb approve on it`);
        });
      } catch (err) {
        log.error("could not re-check the approvers' RBAC", {
          approvalRequest: `${namespace}/${name}`,
          error: err instanceof Error ? err.message : String(err),
        });
        return {
          allowed: false,
          state: "error",
          approvalRequest: { namespace, name },
          message: `Countersign: could not re-check that the approvers of ApprovalRequest ${namespace}/${name} still hold their rights; nothing was changed, retry shortly.`,
        };
      }
    }
    if (lapsed.length === 0) return undefined;
    const standing = counted.filter((d) => !lapsed.includes(d.approver));
    if (approvalsSuffice(ar.spec, standing)) return undefined;
    const required = ar.spec.approval.requiredApprovals;
    log.warn("approval not used: approvals lapsed", { approvalRequest: `${namespace}/${name}`, lapsed });
    return {
      allowed: false,
      state: "denied",
      approvalRequest: { namespace, name },
      message:
        `Countersign: ApprovalRequest ${namespace}/${name} cannot be used: ${why.join("; ")}, ` +
        `so ${standing.length} of ${required} required approvals stand. ` +
        `Nothing was used. If their rights are restored, retry this exact request; otherwise it expires at ` +
        `${ar.spec.approval.expiresAt} and a retry after that opens a new request.`,
    };
  }

  private pendingOutcome(ar: ApprovalRequest, state: "created" | "pending"): GateOutcome {
    const { namespace, name } = ar.metadata;
    const a = ar.spec.approval;
    const who = [
      ...(a.approvers.users ?? []).map((u) => `user ${u}`),
      ...(a.approvers.groups ?? []).map((g) => `group ${g}`),
    ].join(", ");
    return {
      allowed: false,
      state,
      approvalRequest: { namespace, name },
      message:
        `Countersign: this action needs a human approval (ApprovalPolicy ${ar.spec.policy.name}, rule ${ar.spec.policy.rule})` +
        `${ar.spec.policy.message ? `: ${ar.spec.policy.message.replace(/[.\s]+$/, "")}` : ""}. ` +
        `ApprovalRequest ${namespace}/${name} ${state === "created" ? "was created" : "is pending"} ` +
        `(${pendingProgress(ar, this.now(), who)}; expires ${a.expiresAt}). ` +
        `Ask an approver to run: kubectl approve ${name} -n ${namespace} — then retry this exact request unchanged; ` +
        `it will be allowed once. Watch it: kubectl get approvalrequest ${name} -n ${namespace} -w`,
    };
  }

  private deniedOutcome(ar: ApprovalRequest): GateOutcome {
    const { namespace, name } = ar.metadata;
    const d = (ar.spec.decisions ?? []).find((x) => x.decision === "Deny");
    return {
      allowed: false,
      state: "denied",
      approvalRequest: { namespace, name },
      message:
        `Countersign: this action was denied${d ? ` by ${d.approver}${d.reason ? `: ${d.reason}` : ""}` : ""} ` +
        `(ApprovalRequest ${namespace}/${name}). Do not retry it unchanged before ${ar.spec.approval.expiresAt}; ` +
        `change the plan or talk to the approver.`,
    };
  }

  private revokedOutcome(ar: ApprovalRequest): GateOutcome {
    const { namespace, name } = ar.metadata;
    const d = (ar.spec.decisions ?? []).find((x) => x.decision === DecisionKind.Revoke);
    return {
      allowed: false,
      state: "denied",
      approvalRequest: { namespace, name },
      message:
        `Countersign: the approval for this action was revoked${d ? ` by ${d.approver}${d.reason ? `: ${d.reason}` : ""}` : ""} ` +
        `(ApprovalRequest ${namespace}/${name}); it was not used. Do not retry it unchanged before ${ar.spec.approval.expiresAt}; ` +
        `talk to ${d ? d.approver : "the approver"} or change the plan. A retry after that opens a new request.`,
    };
  }

  private event(ar: ApprovalRequest, reason: string, message: string, log: Logger): Promise<void> {
    return emitEvent(
      this.core,
      {
        target: eventTargetOf(ar),
        reason,
        message,
        type: "Normal",
        component: "webhook",
        instance: this.opts.replica,
        now: this.now(),
      },
      log,
    );
  }
}
