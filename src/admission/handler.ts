/**
 * The admission handler chain: Countersign's own resources first (policies are validated
 * at apply time), then the gate (pure decision → allow | deny | require approval).
 */
import { guardWrite, isGuardedResource } from "../approvals/decision-guard.js";
import { refusalMessage } from "../approvals/decision-messages.js";
import { DecisionCode } from "../approvals/decisions.js";
import { isNoOpUpdate, MAX_NESTING_DEPTH, nestingDepth, type Transition } from "../approvals/fingerprint.js";
import type { ApprovalGate, GateOutcome } from "../approvals/gate.js";
import type { RbacChecker } from "../approvals/rbac-checker.js";
import type { ArchiveState } from "../audit/archive.js";
import { type ConfigAuditor, policyChange } from "../audit/config-audit.js";
import { describeKubeError } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";
import { admissionDecisions, admissionDuration, admissionShed, noOpUpdates } from "../metrics/metrics.js";
import { compilePolicy, formatCompileErrors } from "../policy/compile.js";
import { decide, subjectMatches } from "../policy/evaluate.js";
import type { PolicyCache } from "../policy/policy-cache.js";
import { coverageLostBy, isServiceAccountWrite } from "../policy/subject-relabel.js";
import type { AdmissionRequest, UserInfo } from "../resources/admission.js";
import type { ApprovalPolicy } from "../resources/approval-policy.js";
import { API_GROUP, APPROVAL_REQUEST_PLURAL, POLICY_PLURAL } from "../resources/group.js";
import { type InFlightLimit, overloadedMessage } from "./load-shed.js";
import { type ReviewResponse, reviewResponse } from "./review.js";

/** Keys of the auditAnnotations every response carries (the API server prefixes the webhook name). */
export const AuditAnnotation = {
  Decision: "decision",
  Policy: "policy",
  Rule: "rule",
  ApprovalRequest: "approval-request",
  Fingerprint: "fingerprint",
} as const;

export const DecisionValue = {
  Allowed: "allowed",
  Denied: "denied",
  ApprovalRequired: "approval-required",
  ApprovalConsumed: "approval-consumed",
  ApprovalCapped: "approval-capped",
  /** An UPDATE a rule would gate that changes nothing the fingerprint binds: allowed, no request. */
  NoOp: "no-op",
  PolicyRejected: "policy-rejected",
  PolicyWriteRefused: "policy-write-refused",
  /** A covered subject's ServiceAccount write that would take an account out of a policy. */
  SubjectChangeRefused: "subject-change-refused",
  GuardRejected: "guard-rejected",
  /** A gated action refused at once because the replica was at its in-flight cap (load-shed.ts). */
  Overloaded: "overloaded",
  Error: "error",
} as const;

/** Objects nesting deeper than this are refused before any policy sees them (issue 12's fuzzing: 10,000 levels overflowed the stack in the CEL conversion). */
export const MAX_EVALUATION_DEPTH = 1000;

/** Per-request evaluation budget; past it the gate fails closed with a clear message. */
export const EVALUATION_DEADLINE_MS = 200;

export interface HandlerDeps {
  policies: PolicyCache;
  gate: ApprovalGate;
  logger: Logger;
  rbac: RbacChecker;
  /** Usernames Countersign itself runs as (its webhook and controller). */
  countersignUsers: ReadonlySet<string>;
  /** Records every ApprovalPolicy change in the install namespace's audit chain. */
  configAudit?: ConfigAuditor;
  /** Whether a namespace is Terminating with its audit chain archived (see audit/archive.ts). */
  archiveState?: (namespace: string) => Promise<ArchiveState>;
  /**
   * Namespaces whose Namespace object a selected subject may never update or delete (the system
   * namespaces and Countersign's own; red team 9 finding 7), whatever the policies say.
   */
  protectedNamespaces?: ReadonlySet<string>;
  /** Caps the gated reviews in flight; past it they are shed, fail closed (load-shed.ts). */
  inFlight?: InFlightLimit;
}

/** Metric children by label values (prom-client hashes the labels on every call otherwise). */
const MAX_METRIC_CHILDREN = 10_000;
const durationByDecision = new Map<string, { observe(v: number): void }>();
const decisionsByLabels = new Map<string, { inc(): void }>();

function recordMetrics(decision: string, policy: string, seconds: number): void {
  let duration = durationByDecision.get(decision);
  if (!duration) {
    duration = admissionDuration.labels({ decision });
    if (durationByDecision.size < MAX_METRIC_CHILDREN) durationByDecision.set(decision, duration);
  }
  duration.observe(seconds);
  const key = `${policy}\u0000${decision}`;
  let counter = decisionsByLabels.get(key);
  if (!counter) {
    counter = admissionDecisions.labels({ policy, outcome: decision });
    if (decisionsByLabels.size < MAX_METRIC_CHILDREN) decisionsByLabels.set(key, counter);
  }
  counter.inc();
}

/** Answers one AdmissionReview and records its latency and outcome. */
export async function handleAdmission(
  req: AdmissionRequest,
  deps: HandlerDeps,
  /** When the API server stops waiting (epoch ms); the gate uses no approval after it. */
  answerBy?: number,
): Promise<ReviewResponse> {
  const started = performance.now();
  const response = await answerAdmission(req, deps, answerBy);
  const annotations = response.response.auditAnnotations ?? {};
  const decision =
    annotations[AuditAnnotation.Decision] ?? (response.response.allowed ? "allowed" : "denied");
  recordMetrics(decision, annotations[AuditAnnotation.Policy] ?? "", (performance.now() - started) / 1000);
  return response;
}

/**
 * The request's child logger (admission uid, object, user, operation on every line), made on
 * its first line: the allow path logs nothing and should not pay for building one.
 */
function requestLogger(req: AdmissionRequest, deps: HandlerDeps): Logger {
  let child: Logger | undefined;
  const get = (): Logger =>
    (child ??= deps.logger.child({
      admissionUID: req.uid,
      object: `${req.resource.resource}${req.subResource ? `/${req.subResource}` : ""} ${req.namespace ? `${req.namespace}/` : ""}${req.name ?? ""}`,
      user: req.userInfo.username,
      operation: req.operation,
    }));
  const line =
    (level: "info" | "warn" | "error" | "debug") =>
    (message: string, meta?: object): Logger =>
      meta === undefined ? get()[level](message) : get()[level](message, meta);
  return {
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
    debug: line("debug"),
    child: (meta: object) => get().child(meta),
  } as unknown as Logger;
}

async function answerAdmission(
  req: AdmissionRequest,
  deps: HandlerDeps,
  answerBy?: number,
): Promise<ReviewResponse> {
  const log = requestLogger(req, deps);

  // Before the first LIST of ApprovalPolicies an empty cache would mean "allow everything": the
  // readiness probe keeps a Service's traffic away, but nothing else routes by readiness, so the
  // handler itself fails closed (red-team 11 F7). Countersign's own writes go on.
  if (!deps.policies.isSynced() && !deps.countersignUsers.has(req.userInfo.username ?? "")) {
    log.warn("admission before the policy cache synced; denied");
    return reviewResponse(
      req.uid,
      false,
      "Countersign is starting: its ApprovalPolicies are not loaded yet, so this request cannot be judged and is denied. Nothing was changed. Retry in a few seconds.",
      { [AuditAnnotation.Decision]: DecisionValue.Error },
    );
  }

  if (req.resource.group === API_GROUP && req.resource.resource === POLICY_PLURAL) {
    return guardPolicyWrite(req, deps, log);
  }
  if (isGuardedResource(req)) return guardCountersignWrite(req, deps, log);
  if (
    req.resource.group === "" &&
    req.resource.resource === "namespaces" &&
    (req.operation === "UPDATE" || req.operation === "DELETE") &&
    deps.protectedNamespaces?.has(req.name ?? "") &&
    !deps.countersignUsers.has(req.userInfo.username ?? "")
  ) {
    log.warn("refused a selected subject's write to a protected namespace");
    return reviewResponse(
      req.uid,
      false,
      `Countersign: namespace ${req.name} is a system namespace or Countersign's own, which Countersign does not gate inside; a subject Countersign selects may not ${req.operation.toLowerCase()} it${req.subResource ? ` (${req.subResource})` : ""}. Nothing was changed. Ask a cluster admin.`,
      { [AuditAnnotation.Decision]: DecisionValue.GuardRejected },
    );
  }
  if (isServiceAccountWrite(req)) {
    const refused = guardServiceAccountWrite(req, deps, log);
    if (refused) return refused;
  }

  // Policies see the objects as CEL values, converted recursively: ~10,000 levels (the API
  // server accepts that many) exhaust the stack, which read as the policy's own failure
  // ("could not be evaluated ... fix the policy"). Refuse such objects first, naming why.
  if (
    nestingDepth(req.object, MAX_EVALUATION_DEPTH) > MAX_EVALUATION_DEPTH ||
    nestingDepth(req.oldObject, MAX_EVALUATION_DEPTH) > MAX_EVALUATION_DEPTH
  ) {
    log.warn("object nests too deeply to evaluate policies on; denied", { limit: MAX_EVALUATION_DEPTH });
    return reviewResponse(
      req.uid,
      false,
      `Countersign: this object nests deeper than ${MAX_EVALUATION_DEPTH} levels, too deep to evaluate policies on (and to show to an approver), so it is denied. Nothing was changed. Flatten the object (at most ${MAX_NESTING_DEPTH} levels of nesting for an action that needs approval) and retry.`,
      { [AuditAnnotation.Decision]: DecisionValue.Denied },
    );
  }

  const started = performance.now();
  const decision = decide(req, deps.policies.policySet(), {
    ...deps.policies.inputs,
    deadlineExceeded: () => performance.now() - started > EVALUATION_DEADLINE_MS,
  });
  switch (decision.kind) {
    case "allow": {
      const first = decision.matched[0];
      return reviewResponse(req.uid, true, undefined, {
        [AuditAnnotation.Decision]: DecisionValue.Allowed,
        ...(first ? { [AuditAnnotation.Policy]: first.policy, [AuditAnnotation.Rule]: first.rule } : {}),
      });
    }
    case "deny":
      log.info("denied by policy", { policy: decision.rule.policy, rule: decision.rule.rule });
      return reviewResponse(
        req.uid,
        false,
        `Countersign: denied by ApprovalPolicy ${decision.rule.policy}, rule ${decision.rule.rule}: ${decision.message}`,
        {
          [AuditAnnotation.Decision]: DecisionValue.Denied,
          [AuditAnnotation.Policy]: decision.rule.policy,
          [AuditAnnotation.Rule]: decision.rule.rule,
        },
      );
    case "error":
      log.warn("policy evaluation failed; failing closed", {
        policy: decision.policy,
        error: decision.message,
      });
      return reviewResponse(
        req.uid,
        false,
        `Countersign: ApprovalPolicy ${decision.policy} could not be evaluated for this request (${decision.message}), so it is denied. Nothing was changed. Ask a cluster admin to fix the policy.`,
        { [AuditAnnotation.Decision]: DecisionValue.Error, [AuditAnnotation.Policy]: decision.policy },
      );
    case "require-approval": {
      if (nestingDepth(req.object) > MAX_NESTING_DEPTH || nestingDepth(req.oldObject) > MAX_NESTING_DEPTH) {
        // Fail closed with a clear reason: such an object can be neither hashed safely nor shown.
        log.warn("object nests too deeply to review; denied", { limit: MAX_NESTING_DEPTH });
        return reviewResponse(
          req.uid,
          false,
          `Countersign: this action needs approval, but the object nests deeper than ${MAX_NESTING_DEPTH} levels, too deep to show to an approver, so it is denied. Nothing was changed. Flatten the object (at most ${MAX_NESTING_DEPTH} levels of nesting) and retry.`,
          {
            [AuditAnnotation.Decision]: DecisionValue.Denied,
            [AuditAnnotation.Policy]: decision.rule.policy,
            [AuditAnnotation.Rule]: decision.rule.rule,
          },
        );
      }
      // Past the in-flight cap the excess is refused before any work (hashing a large object
      // alone can take hundreds of ms); only this path is shed, everything from memory is not.
      // One requester gets at most its share of the slots (load-shed.ts).
      const limit = deps.inFlight;
      const requester = req.userInfo.username ?? "";
      if (limit && !limit.tryAcquire(requester)) {
        admissionShed.inc({ policy: decision.rule.policy });
        const shed = limit.noteShed(Date.now());
        if (shed !== undefined)
          log.warn("overloaded: gated reviews shed", { shedSinceLastLine: shed, max: limit.max });
        const full = limit.inFlight >= limit.max;
        return reviewResponse(req.uid, false, overloadedMessage(limit.max, full ? undefined : limit.share), {
          [AuditAnnotation.Decision]: DecisionValue.Overloaded,
          [AuditAnnotation.Policy]: decision.rule.policy,
          [AuditAnnotation.Rule]: decision.rule.rule,
        });
      }
      try {
        return await gateAction(req, deps, log, decision, answerBy);
      } finally {
        limit?.release(requester);
      }
    }
  }
}

/** A RequireApproval rule matched: the no-op check, then the approval gate (I/O). */
async function gateAction(
  req: AdmissionRequest,
  deps: HandlerDeps,
  log: Logger,
  decision: Extract<ReturnType<typeof decide>, { kind: "require-approval" }>,
  answerBy: number | undefined,
): Promise<ReviewResponse> {
  // One transition for the no-op check and the gate: canonicalizing a large object twice
  // per retry was measurable (red team 9, finding 6).
  let transition: Transition;
  let noOp: boolean;
  try {
    transition = deps.gate.transitionOf(req);
    noOp = isNoOpUpdate(req, undefined, transition);
  } catch (err) {
    log.error("no-op check failed; failing closed", {
      error: err instanceof Error ? err.message : String(err),
    });
    return reviewResponse(
      req.uid,
      false,
      "Countersign: this action needs approval, but the object could not be compared with its current state, so it is denied. Nothing was changed. Ask a cluster admin to check Countersign's logs.",
      { [AuditAnnotation.Decision]: DecisionValue.Error, [AuditAnnotation.Policy]: decision.rule.policy },
    );
  }
  if (noOp) {
    // Re-asserting the current state (a GitOps sync, a retried apply) risks nothing: the
    // canonical old and new objects are identical, so there is nothing to countersign.
    noOpUpdates.inc({ policy: decision.rule.policy });
    log.info("no-op update allowed without approval", { policy: decision.rule.policy });
    return reviewResponse(req.uid, true, undefined, {
      [AuditAnnotation.Decision]: DecisionValue.NoOp,
      [AuditAnnotation.Policy]: decision.rule.policy,
      [AuditAnnotation.Rule]: decision.rule.rule,
    });
  }
  let outcome: GateOutcome;
  try {
    outcome = await deps.gate.handle(
      req,
      decision.rule,
      decision.approval,
      decision.message,
      log,
      transition,
      answerBy,
    );
  } catch (err) {
    log.error("approval gate failed", { error: err instanceof Error ? err.message : String(err) });
    return reviewResponse(
      req.uid,
      false,
      "Countersign: this action needs approval, but the approval state could not be read or written right now. Nothing was changed; retry in a few seconds.",
      { [AuditAnnotation.Decision]: DecisionValue.Error, [AuditAnnotation.Policy]: decision.rule.policy },
    );
  }
  log.info("approval gate", {
    state: outcome.state,
    allowed: outcome.allowed,
    approvalRequest: outcome.approvalRequest
      ? `${outcome.approvalRequest.namespace}/${outcome.approvalRequest.name}`
      : undefined,
  });
  return reviewResponse(req.uid, outcome.allowed, outcome.message, {
    [AuditAnnotation.Decision]:
      outcome.state === "consumed"
        ? DecisionValue.ApprovalConsumed
        : outcome.state === "capped"
          ? DecisionValue.ApprovalCapped
          : outcome.allowed
            ? DecisionValue.Allowed
            : DecisionValue.ApprovalRequired,
    [AuditAnnotation.Policy]: decision.rule.policy,
    [AuditAnnotation.Rule]: decision.rule.rule,
    ...(outcome.approvalRequest
      ? {
          [AuditAnnotation.ApprovalRequest]: `${outcome.approvalRequest.namespace}/${outcome.approvalRequest.name}`,
        }
      : {}),
  });
}

/** The policies whose subjects cover this user (what the gate would apply to them). */
export function coveringPolicies(policies: PolicyCache, user: UserInfo): string[] {
  return policies
    .policySet()
    .candidates(user)
    .filter((p) => subjectMatches(p.subjects, user, policies.inputs))
    .map((p) => p.name);
}

/**
 * Any ApprovalPolicy write (create, update, delete, status): a subject a policy covers is
 * refused (an agent must not be able to switch off its own gate); a new spec must compile;
 * and every admitted create, spec change or delete is an AuditRecord naming who made it,
 * written before the change is admitted (if it cannot be written, the change is refused).
 */
async function guardPolicyWrite(
  req: AdmissionRequest,
  deps: HandlerDeps,
  log: Logger,
): Promise<ReviewResponse> {
  const allowed = () =>
    reviewResponse(req.uid, true, undefined, { [AuditAnnotation.Decision]: DecisionValue.Allowed });
  const username = req.userInfo.username ?? "";
  if (!deps.countersignUsers.has(username)) {
    const covering = coveringPolicies(deps.policies, req.userInfo);
    if (covering.length > 0) {
      log.warn("refused a covered subject's write to an ApprovalPolicy", { covering });
      const what = req.subResource
        ? `${req.operation.toLowerCase()} the ${req.subResource} of`
        : req.operation.toLowerCase();
      return reviewResponse(
        req.uid,
        false,
        `Countersign: ${username} is covered by ApprovalPolicy ${covering.slice(0, 3).join(", ")}${covering.length > 3 ? ` and ${covering.length - 3} more` : ""}, so it may not ${what} ApprovalPolicies: subjects under approval cannot change the rules that gate them. Nothing was changed. Ask a cluster admin to make the policy change.`,
        {
          [AuditAnnotation.Decision]: DecisionValue.PolicyWriteRefused,
          [AuditAnnotation.Policy]: covering[0]!,
        },
      );
    }
  }
  if (req.subResource) return allowed(); // status: Countersign's controller writes conditions
  if (req.operation === "CREATE" || req.operation === "UPDATE") {
    const policy = req.object as ApprovalPolicy | undefined;
    const result = policy
      ? compilePolicy(policy)
      : { ok: false as const, errors: [{ path: "", message: "no object" }] };
    if (!result.ok) {
      const message = formatCompileErrors(policy?.metadata?.name ?? req.name ?? "(unnamed)", result.errors);
      log.info("rejected invalid policy", { error: message });
      return reviewResponse(req.uid, false, message, {
        [AuditAnnotation.Decision]: DecisionValue.PolicyRejected,
      });
    }
  }
  const change = req.dryRun || !deps.configAudit ? undefined : policyChange(req, new Date());
  if (change) {
    try {
      await deps.configAudit!.record(change);
    } catch (err) {
      log.error("could not record the policy change in the audit trail; refusing it", {
        error: describeKubeError(err),
      });
      return reviewResponse(
        req.uid,
        false,
        "Countersign: this ApprovalPolicy change could not be recorded in the audit trail right now, so it was refused. Nothing was changed; retry in a few seconds.",
        { [AuditAnnotation.Decision]: DecisionValue.Error },
      );
    }
    log.info("policy change recorded", { event: change.content.event, auditRecord: change.name });
  }
  return allowed();
}

/**
 * A ServiceAccount UPDATE or DELETE that would take the account out of a policy selecting it by
 * label (`serviceAccountSelector`), by a subject a policy covers: refused, so an agent cannot
 * remove the label that puts it (or another agent) under approval. Returns undefined when the
 * write may go on to the gate. In memory: the labels come from the request's old and new object.
 */
function guardServiceAccountWrite(
  req: AdmissionRequest,
  deps: HandlerDeps,
  log: Logger,
): ReviewResponse | undefined {
  const username = req.userInfo.username ?? "";
  if (deps.countersignUsers.has(username)) return undefined;
  const lost = coverageLostBy(req, deps.policies.policySet());
  if (lost.length === 0) return undefined;
  const covering = coveringPolicies(deps.policies, req.userInfo);
  if (covering.length === 0) return undefined;
  log.warn("refused a covered subject's ServiceAccount write that leaves a policy", { covering, lost });
  const names = (list: string[]) =>
    `${list.slice(0, 3).join(", ")}${list.length > 3 ? ` and ${list.length - 3} more` : ""}`;
  const target = `ServiceAccount ${req.namespace}/${req.name}`;
  const what =
    req.operation === "DELETE"
      ? `delete ${target}`
      : `change the labels of ${target} so that ApprovalPolicy ${names(lost)} no longer selects it`;
  return reviewResponse(
    req.uid,
    false,
    `Countersign: ${username} is covered by ApprovalPolicy ${names(covering)}, so it may not ${what} (${lost.length === 1 ? "that policy selects" : "those policies select"} service accounts by label: serviceAccountSelector). Subjects under approval cannot change the labels that put a subject under approval. Nothing was changed. Ask a cluster admin to make this change.`,
    {
      [AuditAnnotation.Decision]: DecisionValue.SubjectChangeRefused,
      [AuditAnnotation.Policy]: lost[0]!,
    },
  );
}

/** Writes to ApprovalRequests and AuditRecords: see approvals/decision-guard.ts. */
async function guardCountersignWrite(
  req: AdmissionRequest,
  deps: HandlerDeps,
  log: Logger,
): Promise<ReviewResponse> {
  const result = guardWrite(req, deps.countersignUsers, new Date(), (user) =>
    coveringPolicies(deps.policies, user),
  );
  // The gate's informer cache may lag this write by a few ms: its next reads of this request
  // go to the API server (gate.ts RECENT_WRITE_MS).
  if (
    result.allowed !== false &&
    req.resource.resource === APPROVAL_REQUEST_PLURAL &&
    req.name &&
    req.namespace
  )
    deps.gate.noteWrite?.(req.namespace, req.name);
  if (result.allowed === true) {
    return reviewResponse(req.uid, true, undefined, { [AuditAnnotation.Decision]: DecisionValue.Allowed });
  }
  if (result.allowed === false) {
    log.warn("rejected write to a Countersign resource", {
      reason: result.message,
      ...(result.refusal ? { code: result.refusal.code } : {}),
    });
    return reviewResponse(req.uid, false, result.message, {
      [AuditAnnotation.Decision]: DecisionValue.GuardRejected,
    });
  }
  if (result.allowed === "needs-archive") return guardNamespaceCleanup(req, result.namespace, deps, log);
  let rbac: { allowed: boolean; reason: string };
  try {
    rbac = await deps.rbac.allowed(req.userInfo, result.verb, result.namespace, result.name);
  } catch (err) {
    log.error("SubjectAccessReview failed", { error: err instanceof Error ? err.message : String(err) });
    return reviewResponse(req.uid, false, refusalMessage({ code: DecisionCode.RbacUnavailable }), {
      [AuditAnnotation.Decision]: DecisionValue.Error,
    });
  }
  if (!rbac.allowed) {
    const message = refusalMessage({
      code: DecisionCode.NeedsRbac,
      decider: req.userInfo.username ?? "(anonymous)",
      verb: result.verb,
      namespace: result.namespace,
      reason: rbac.reason,
    });
    log.warn("decision refused by RBAC", {
      verb: result.verb,
      approvalRequest: `${result.namespace}/${result.name}`,
    });
    return reviewResponse(req.uid, false, message, {
      [AuditAnnotation.Decision]: DecisionValue.GuardRejected,
    });
  }
  log.info("decision accepted", {
    decision: result.decision.decision,
    approvalRequest: `${result.namespace}/${result.name}`,
  });
  return reviewResponse(req.uid, true, undefined, {
    [AuditAnnotation.Decision]: `${result.verb}-recorded`,
    [AuditAnnotation.ApprovalRequest]: `${result.namespace}/${result.name}`,
  });
}

/** The namespace controller emptying a deleted namespace: allowed once its chain is archived. */
async function guardNamespaceCleanup(
  req: AdmissionRequest,
  namespace: string,
  deps: HandlerDeps,
  log: Logger,
): Promise<ReviewResponse> {
  let state: ArchiveState;
  try {
    state = deps.archiveState
      ? await deps.archiveState(namespace)
      : { archived: false, reason: "Countersign: this webhook cannot check namespace archives" };
  } catch (err) {
    log.warn("could not check the namespace's audit archive", {
      error: err instanceof Error ? err.message : String(err),
    });
    state = {
      archived: false,
      reason: `Countersign could not check whether namespace ${namespace}'s audit chain is archived; retry shortly`,
    };
  }
  if (!state.archived) {
    log.info("namespace cleanup waits for the audit archive", { reason: state.reason });
    return reviewResponse(req.uid, false, state.reason, {
      [AuditAnnotation.Decision]: DecisionValue.GuardRejected,
    });
  }
  return reviewResponse(req.uid, true, undefined, {
    [AuditAnnotation.Decision]: DecisionValue.Allowed,
  });
}
