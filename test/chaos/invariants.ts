/**
 * The chaos schedules' invariants, checked on a recorded history, pure. The ground truth for
 * "what was admitted" is the API server's own audit log (its JSON lines), never Countersign's
 * word; ApprovalRequests and AuditRecords are what Countersign left behind, read back through
 * the API server at the end of a schedule. Types here are the few fields the checks read.
 */

/** One line of the kube-apiserver audit log (audit.k8s.io/v1 Event), the fields used here. */
export interface ApiAuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  user?: { username?: string };
  objectRef?: { resource?: string; namespace?: string; name?: string; apiGroup?: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp?: string;
  stageTimestamp?: string;
  annotations?: Record<string, string>;
}

export interface SeenDecision {
  approver: string;
  decision: string;
  time?: string;
}

export interface SeenRequest {
  metadata: { name: string; namespace: string; creationTimestamp?: string | Date };
  spec: {
    requester: { username: string };
    action: { operation: string; namespace: string; name: string; resource: string };
    approval: { requiredApprovals: number; expiresAt: string };
    decisions?: SeenDecision[];
  };
  status?: {
    phase?: string;
    consumed?: { admissionUID: string; time: string; replica?: string };
    conditions?: { type: string; status: string; lastTransitionTime?: string }[];
  };
}

export interface SeenRecord {
  metadata: { name: string };
  spec: { event: string; approvalRequest: { name: string }; sequence: number };
}

/** What an agent saw for one attempt (the client side of the history). */
export interface AgentAttempt {
  agent: string;
  username: string;
  verb: "create" | "update" | "delete";
  name: string;
  value?: string;
  start: number;
  end: number;
  ok: boolean;
  code?: number;
  message?: string;
}

export interface ScheduleEvidence {
  namespace: string;
  agentUsernames: readonly string[];
  /** The API server's audit events (any; filtered here). */
  auditEvents: readonly ApiAuditEvent[];
  requests: readonly SeenRequest[];
  records: readonly SeenRecord[];
  attempts: readonly AgentAttempt[];
  /** When a request was first seen in a terminal phase by the harness's polling (ms). */
  firstSeenTerminal: ReadonlyMap<string, number>;
  /** When the schedule's faults ended (every replica up again), ms. */
  healedAt: number;
  /** How long after max(expiry, heal) a request may take to be terminal. */
  terminalBoundMs: number;
  /**
   * Faults on the shared cluster (any schedule's) between two times: named on a late request,
   * so a miss while another lane had replicas down is told from one on a healthy cluster.
   */
  faultsDuring?: (from: number, to: number) => string[];
  verify: { ok: boolean; report: string };
}

export interface ScheduleFindings {
  violations: string[];
  stats: {
    admitted: number;
    requests: number;
    consumed: number;
    /** Consumed requests whose action the API server did not persist (approval spent, nothing ran). */
    consumedNotAdmitted: number;
    byPhase: Record<string, number>;
    /** The slowest terminal transition past max(expiresAt or decision, heal), ms. */
    maxTerminalLagMs: number;
  };
}

/** How a late request's violation says whether the shared cluster had faults on meanwhile. */
export const DEGRADED_MARK = "while the shared cluster had faults on";
export const HEALTHY_MARK = "no fault on the shared cluster meanwhile";

export const TERMINAL_PHASES = new Set(["Consumed", "Denied", "Expired", "Revoked"]);
const OPERATION_OF_VERB: Record<string, string> = {
  create: "CREATE",
  update: "UPDATE",
  patch: "UPDATE",
  delete: "DELETE",
};
/** Timestamps on conditions are whole seconds; the clocks are this machine's. */
const CLOCK_SLACK_MS = 1000;

const ms = (t: string | Date | undefined): number => (t === undefined ? Number.NaN : new Date(t).getTime());

/**
 * Countersign's audit annotations come back prefixed with its webhook's name
 * (`gate.countersign.io/decision`); the API server adds its own, e.g.
 * `authorization.k8s.io/decision: allow`, which must not be mistaken for Countersign's.
 */
export function annotation(ev: ApiAuditEvent, key: string): string | undefined {
  for (const [k, v] of Object.entries(ev.annotations ?? {}))
    if (k.endsWith(`.countersign.io/${key}`)) return v;
  return undefined;
}

/** The agents' successful ConfigMap writes in `namespace`, as the API server recorded them. */
export function admittedWrites(
  events: readonly ApiAuditEvent[],
  namespace: string,
  agents: ReadonlySet<string>,
): ApiAuditEvent[] {
  return events.filter(
    (e) =>
      e.stage === "ResponseComplete" &&
      OPERATION_OF_VERB[e.verb] !== undefined &&
      e.objectRef?.resource === "configmaps" &&
      e.objectRef.namespace === namespace &&
      agents.has(e.user?.username ?? "") &&
      (e.responseStatus?.code ?? 500) < 300,
  );
}

/** Checks one schedule's evidence against every invariant; pure. */
export function checkSchedule(ev: ScheduleEvidence): ScheduleFindings {
  const violations: string[] = [];
  const agents = new Set(ev.agentUsernames);
  const admitted = admittedWrites(ev.auditEvents, ev.namespace, agents);
  const byName = new Map(ev.requests.map((r) => [r.metadata.name, r]));
  const usesOf = new Map<string, ApiAuditEvent[]>();

  // 1. Admitted only with a matching Approved, unexpired request, consumed during that admission.
  for (const e of admitted) {
    const what = `${e.verb} configmaps/${e.objectRef?.name} by ${e.user?.username} (audit ${e.auditID})`;
    const arName = annotation(e, "approval-request");
    const decision = annotation(e, "decision");
    if (!arName || decision !== "approval-consumed") {
      violations.push(`${what} was admitted without an approval (decision=${decision ?? "none"})`);
      continue;
    }
    const key = arName.includes("/") ? arName.split("/")[1]! : arName;
    usesOf.set(key, [...(usesOf.get(key) ?? []), e]);
    const ar = byName.get(key);
    if (!ar) {
      violations.push(`${what} names ApprovalRequest ${arName}, which does not exist`);
      continue;
    }
    const a = ar.spec.action;
    if (
      a.operation !== OPERATION_OF_VERB[e.verb] ||
      a.name !== e.objectRef?.name ||
      a.namespace !== e.objectRef?.namespace ||
      a.resource !== "configmaps" ||
      ar.spec.requester.username !== e.user?.username
    ) {
      violations.push(
        `${what} used ${key}, which names ${a.operation} ${a.resource} ${a.namespace}/${a.name} by ${ar.spec.requester.username}`,
      );
    }
    const consumed = ar.status?.consumed;
    if (ar.status?.phase !== "Consumed" || !consumed) {
      violations.push(`${what} used ${key}, whose phase is ${ar.status?.phase ?? "none"}, not Consumed`);
      continue;
    }
    const at = ms(consumed.time);
    const received = ms(e.requestReceivedTimestamp);
    const completed = ms(e.stageTimestamp);
    if (!(at >= received - CLOCK_SLACK_MS && at <= completed + CLOCK_SLACK_MS)) {
      violations.push(
        `${what} used ${key}, consumed at ${consumed.time}, outside that admission (${e.requestReceivedTimestamp} .. ${e.stageTimestamp})`,
      );
    }
    const decisions = ar.spec.decisions ?? [];
    const approvers = new Set(
      decisions
        .filter(
          (d) => d.decision === "Approve" && d.approver !== ar.spec.requester.username && ms(d.time) <= at,
        )
        .map((d) => d.approver),
    );
    if (approvers.size < ar.spec.approval.requiredApprovals) {
      violations.push(
        `${what} used ${key} with ${approvers.size}/${ar.spec.approval.requiredApprovals} approvals before its consumption`,
      );
    }
    const against = decisions.find((d) => d.decision !== "Approve" && ms(d.time) <= at);
    if (against) violations.push(`${what} used ${key} after a ${against.decision} by ${against.approver}`);
    if (at >= ms(ar.spec.approval.expiresAt)) {
      violations.push(
        `${what} used ${key} at ${consumed.time}, after it expired at ${ar.spec.approval.expiresAt}`,
      );
    }
  }

  // 2. Each approval admitted at most once (counted from the API server's audit log).
  for (const [key, uses] of usesOf) {
    if (uses.length > 1) {
      violations.push(
        `ApprovalRequest ${key} was used ${uses.length} times: ${uses.map((u) => `${u.verb} ${u.objectRef?.name} (audit ${u.auditID})`).join(", ")}`,
      );
    }
  }

  // What the agents saw agrees with the API server: every success they saw is in the audit log.
  for (const a of ev.attempts.filter((x) => x.ok)) {
    const seen = admitted.some(
      (e) =>
        e.verb === a.verb &&
        e.objectRef?.name === a.name &&
        e.user?.username === a.username &&
        ms(e.requestReceivedTimestamp) >= a.start - CLOCK_SLACK_MS &&
        ms(e.stageTimestamp) <= a.end + CLOCK_SLACK_MS,
    );
    if (!seen)
      violations.push(
        `${a.agent}'s ${a.verb} of ${a.name} succeeded but the API server's audit log has no such write`,
      );
  }

  // 3. Every request reaches a terminal phase within TTL (or its decision) + the bound.
  let maxLag = 0;
  const byPhase: Record<string, number> = {};
  for (const ar of ev.requests) {
    const phase = ar.status?.phase ?? "Pending";
    byPhase[phase] = (byPhase[phase] ?? 0) + 1;
    const name = `${ar.metadata.namespace}/${ar.metadata.name}`;
    if (!TERMINAL_PHASES.has(phase)) {
      violations.push(`${name} is still ${phase} (expired at ${ar.spec.approval.expiresAt})`);
      continue;
    }
    const cond = ar.status?.conditions?.find((c) => c.type === phase && c.status === "True");
    const terminalAt =
      ev.firstSeenTerminal.get(ar.metadata.name) ??
      (phase === "Consumed" ? ms(ar.status?.consumed?.time) : ms(cond?.lastTransitionTime));
    const decided = (ar.spec.decisions ?? []).find(
      (d) => d.decision === (phase === "Denied" ? "Deny" : "Revoke"),
    );
    const due = Math.max(
      phase === "Expired" || !decided
        ? ms(ar.spec.approval.expiresAt)
        : Math.min(ms(decided.time), ms(ar.spec.approval.expiresAt)),
      phase === "Consumed" ? 0 : ev.healedAt,
    );
    if (phase === "Consumed") continue; // consumed during an admission: checked above
    const lag = terminalAt - due;
    if (Number.isFinite(lag)) maxLag = Math.max(maxLag, lag);
    if (!(terminalAt <= due + ev.terminalBoundMs + CLOCK_SLACK_MS)) {
      const faults = ev.faultsDuring?.(due, terminalAt) ?? [];
      violations.push(
        `${name} became ${phase} at ${new Date(terminalAt).toISOString()}, more than ${ev.terminalBoundMs} ms after ${new Date(due).toISOString()}${faults.length ? ` (${DEGRADED_MARK}: ${faults.join(", ")})` : ` (${HEALTHY_MARK})`}`,
      );
    }
  }

  // 4. The audit chain is complete and verifies; every consumed approval has its Consumed record.
  if (!ev.verify.ok) violations.push(`audit verify failed:\n${ev.verify.report}`);
  const recordsOf = new Map<string, Set<string>>();
  for (const r of ev.records) {
    const set = recordsOf.get(r.spec.approvalRequest.name) ?? new Set<string>();
    set.add(r.spec.event);
    recordsOf.set(r.spec.approvalRequest.name, set);
  }
  let consumedNotAdmitted = 0;
  for (const ar of ev.requests) {
    const events = recordsOf.get(ar.metadata.name) ?? new Set<string>();
    const phase = ar.status?.phase ?? "Pending";
    if (!events.has("Requested")) violations.push(`${ar.metadata.name} has no Requested audit record`);
    if (TERMINAL_PHASES.has(phase) && !events.has(phase))
      violations.push(`${ar.metadata.name} is ${phase} but has no ${phase} audit record`);
    if (phase === "Consumed" && !usesOf.has(ar.metadata.name)) consumedNotAdmitted++;
  }
  for (const key of usesOf.keys()) {
    if (!recordsOf.get(key)?.has("Consumed"))
      violations.push(`${key} was admitted but has no Consumed audit record`);
  }

  return {
    violations,
    stats: {
      admitted: admitted.length,
      requests: ev.requests.length,
      consumed: byPhase.Consumed ?? 0,
      consumedNotAdmitted,
      byPhase,
      maxTerminalLagMs: maxLag,
    },
  };
}
