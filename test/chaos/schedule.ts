/**
 * Randomized schedules (fast-check model-based commands) against a ChaosCluster: agents
 * retrying the same and different ConfigMap writes in parallel, approvers approving, denying
 * and revoking, short TTLs running out, webhook and controller replicas killed and restarted,
 * and sometimes the API server restarted. Every schedule gets its own namespace and policy,
 * then is healed and checked (invariants.ts) on the recorded history.
 *
 * A schedule is replayed by its seed and path (`npm run test:chaos -- --seed S --path P`):
 * the same commands, parameters and pauses; the operating system's interleaving differs.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import fc from "fast-check";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { auditVerify, decide, revoke } from "../../src/plugin/commands.js";
import { AGENTS_NAMESPACE, APPROVER_GROUP, type ChaosCluster, type Role } from "./cluster.js";
import {
  type AgentAttempt,
  type ApiAuditEvent,
  checkSchedule,
  type ScheduleFindings,
  type SeenRecord,
  type SeenRequest,
  TERMINAL_PHASES,
} from "./invariants.js";

const G = { group: "countersign.io", version: "v1alpha1" };
const NAMES = ["cm-0", "cm-1", "cm-2"];
const VALUES = ["red", "green"];
/** A request must be terminal this long after max(its expiry or decision, the heal). */
export const TERMINAL_BOUND_MS = 15_000;
const POLL_MS = 250;
/** How long an agent's call may take before the harness stops waiting for it. */
const CALL_TIMEOUT_MS = 30_000;

interface Fault {
  what: string;
  at: number;
  ms?: number;
  /** A replica's API calls stalled or refused from `at` for `ms`. */
  api?: boolean;
}

interface Model {
  up: Record<string, boolean>;
  apiRestarts: number;
}

/** The real side of one schedule: where it runs and what it recorded. */
interface Real {
  cluster: ChaosCluster;
  namespace: string;
  attempts: AgentAttempt[];
  decisions: { approver: string; kind: string; target?: string; ok: boolean; message: string }[];
  faults: Fault[];
  inflight: Set<Promise<unknown>>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The harness's own reads and writes, retried while the API server is restarting or its
 * storage re-initializing (connection refused, 429, 5xx) for up to 60 s: the harness is the
 * observer, it must not give up where Countersign is expected to recover.
 */
export async function persist<T>(fn: () => Promise<T>, what: string): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const status = kubeStatusOf(err);
      const code = status?.code;
      // Countersign's own "right now" refusals (e.g. a policy change it cannot record while its
      // API access is faulted) are transient too.
      const transient =
        code === undefined || code === 429 || code >= 500 || /right now|retry/i.test(status?.message ?? "");
      if (!transient || Date.now() > deadline)
        throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      await sleep(500);
    }
  }
}

function background(real: Real, p: Promise<unknown>): void {
  const tracked = p.catch(() => {}).finally(() => real.inflight.delete(tracked));
  real.inflight.add(tracked);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * An agent doing one write the way agents do: it tries, and while the answer is "needs
 * approval" or "pending" it retries every retryMs, up to `tries` times (`parallel` copies of
 * it at once: the same action retried concurrently, the double-use race).
 */
class AgentWrite implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly agent: number,
    readonly verb: "create" | "update" | "delete",
    readonly name: string,
    readonly value: string,
    readonly parallel: number,
    readonly tries: number,
    readonly retryMs: number,
    readonly pauseMs: number,
  ) {}
  check = () => true;
  async run(_m: Model, real: Real): Promise<void> {
    const a = real.cluster.agents[this.agent % real.cluster.agents.length]!;
    const core = a.kc.makeApiClient(CoreV1Api);
    const ns = real.namespace;
    const once = async (): Promise<AgentAttempt> => {
      const start = Date.now();
      const attempt: AgentAttempt = {
        agent: a.name,
        username: a.username,
        verb: this.verb,
        name: this.name,
        start,
        end: start,
        ok: false,
      };
      if (this.verb !== "delete") attempt.value = this.value;
      try {
        const body = { metadata: { name: this.name }, data: { v: this.value } };
        const call =
          this.verb === "create"
            ? core.createNamespacedConfigMap({ namespace: ns, body })
            : this.verb === "update"
              ? core.replaceNamespacedConfigMap({ namespace: ns, name: this.name, body })
              : core.deleteNamespacedConfigMap({ namespace: ns, name: this.name });
        await withTimeout(call, CALL_TIMEOUT_MS, `${this.verb} ${this.name}`);
        attempt.ok = true;
      } catch (err) {
        const s = kubeStatusOf(err);
        attempt.code = s?.code;
        attempt.message = s?.message ?? (err instanceof Error ? err.message : String(err));
      }
      attempt.end = Date.now();
      real.attempts.push(attempt);
      return attempt;
    };
    for (let i = 0; i < this.parallel; i++) {
      background(
        real,
        (async () => {
          for (let t = 0; t < this.tries; t++) {
            const r = await once();
            if (r.ok || !/needs approval|is pending|was created|ApprovalRequest/.test(r.message ?? "")) {
              // Admitted, or refused for good (denied, revoked, not found, already exists): a
              // real agent would move on; this one tries once more after a while at most.
              if (r.ok || t > 0) return;
            }
            await sleep(this.retryMs);
          }
        })(),
      );
    }
    await sleep(this.pauseMs);
  }
  toString(): string {
    return `agent-${this.agent} ${this.verb} ${this.name}${this.verb === "delete" ? "" : `=${this.value}`} ×${this.parallel} (≤${this.tries} tries every ${this.retryMs} ms), pause ${this.pauseMs}`;
  }
}

async function requestsIn(real: Real): Promise<SeenRequest[]> {
  const custom = real.cluster.cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
  const list = (await persist(
    () => custom.listNamespacedCustomObject({ ...G, namespace: real.namespace, plural: "approvalrequests" }),
    "list approval requests",
  )) as { items: SeenRequest[] };
  return list.items;
}

class Decide implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly approver: number,
    readonly kind: "Approve" | "Deny" | "Revoke",
    readonly pick: number,
    readonly pauseMs: number,
  ) {}
  check = () => true;
  async run(_m: Model, real: Real): Promise<void> {
    const who = real.cluster.approvers[this.approver % real.cluster.approvers.length]!;
    background(
      real,
      (async () => {
        let target: string | undefined;
        try {
          const want = this.kind === "Revoke" ? "Approved" : "Pending";
          // An approver looks for a little while (the request may not be there yet).
          let candidates: SeenRequest[] = [];
          for (let look = 0; look < 5 && candidates.length === 0; look++) {
            if (look > 0) await sleep(300);
            candidates = (await requestsIn(real).catch(() => []))
              .filter((r) => (r.status?.phase ?? "Pending") === want)
              .sort((x, y) => x.metadata.name.localeCompare(y.metadata.name));
          }
          if (candidates.length === 0) {
            real.decisions.push({
              approver: who.username,
              kind: this.kind,
              ok: false,
              message: "nothing to decide",
            });
            return;
          }
          target = candidates[this.pick % candidates.length]!.metadata.name;
          const message =
            this.kind === "Revoke"
              ? await revoke(who.kc, real.namespace, target, "chaos: changed my mind")
              : await decide(who.kc, real.namespace, target, this.kind, "chaos");
          real.decisions.push({ approver: who.username, kind: this.kind, target, ok: true, message });
        } catch (err) {
          const message = kubeStatusOf(err)?.message ?? (err instanceof Error ? err.message : String(err));
          real.decisions.push({
            approver: who.username,
            kind: this.kind,
            ...(target ? { target } : {}),
            ok: false,
            message,
          });
        }
      })(),
    );
    await sleep(this.pauseMs);
  }
  toString(): string {
    return `approver-${this.approver} ${this.kind} #${this.pick}, pause ${this.pauseMs}`;
  }
}

/**
 * Both approvers approve each pending request `latencyMs` after it was created, until `done`:
 * the commands have ended and every agent has stopped retrying (an approver who leaves while
 * agents still retry would leave their late requests to expire, and fewer approvals are used).
 */
async function onCall(real: Real, latencyMs: number, done: () => boolean): Promise<void> {
  const decided = new Set<string>();
  while (!done()) {
    const now = Date.now();
    const pending = (await requestsIn(real).catch(() => [] as SeenRequest[])).filter(
      (r) =>
        (r.status?.phase ?? "Pending") === "Pending" &&
        now - new Date(r.metadata.creationTimestamp ?? now).getTime() >= latencyMs,
    );
    for (const r of pending) {
      for (const who of real.cluster.approvers) {
        const k = `${r.metadata.name}/${who.username}`;
        if (decided.has(k)) continue;
        decided.add(k);
        try {
          const message = await decide(who.kc, real.namespace, r.metadata.name, "Approve", "on call");
          real.decisions.push({
            approver: who.username,
            kind: "Approve",
            target: r.metadata.name,
            ok: true,
            message,
          });
        } catch (err) {
          const message = kubeStatusOf(err)?.message ?? (err instanceof Error ? err.message : String(err));
          real.decisions.push({
            approver: who.username,
            kind: "Approve",
            target: r.metadata.name,
            ok: false,
            message,
          });
        }
      }
    }
    await sleep(250);
  }
}

const key = (role: Role, index: number) => `${role}-${index}`;

class Kill implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly role: Role,
    readonly index: number,
    readonly signal: "SIGKILL" | "SIGTERM",
  ) {}
  check = (m: Readonly<Model>) => m.up[key(this.role, this.index)] === true;
  async run(m: Model, real: Real): Promise<void> {
    m.up[key(this.role, this.index)] = false;
    real.faults.push({ what: `kill ${key(this.role, this.index)} ${this.signal}`, at: Date.now() });
    await real.cluster.killReplica(this.role, this.index, this.signal);
  }
  toString(): string {
    return `kill ${key(this.role, this.index)} (${this.signal})`;
  }
}

class Start implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly role: Role,
    readonly index: number,
  ) {}
  check = (m: Readonly<Model>) => m.up[key(this.role, this.index)] === false;
  async run(m: Model, real: Real): Promise<void> {
    m.up[key(this.role, this.index)] = true;
    real.faults.push({ what: `start ${key(this.role, this.index)}`, at: Date.now() });
    // In the background: the schedule goes on while the replica boots (and may kill it again).
    background(real, real.cluster.startReplica(this.role, this.index));
  }
  toString(): string {
    return `start ${key(this.role, this.index)}`;
  }
}

class RestartApiServer implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly signal: "SIGKILL" | "SIGTERM",
    /** The restart a run asks for (forceApiRestart): it happens even after an etcd restart. */
    readonly forced = false,
  ) {}
  check = (m: Readonly<Model>) => this.forced || m.apiRestarts === 0;
  async run(m: Model, real: Real): Promise<void> {
    m.apiRestarts++;
    const at = Date.now();
    const fault: { what: string; at: number; ms?: number } = {
      what: `restart kube-apiserver ${this.signal}`,
      at,
    };
    real.faults.push(fault);
    background(
      real,
      real.cluster.restartApiServer(this.signal).then((ms) => {
        fault.ms = ms;
      }),
    );
  }
  toString(): string {
    return `restart kube-apiserver (${this.signal})`;
  }
}

/** One replica's API calls stall (a slow API server) or are refused (unreachable) for `ms`. */
class ApiFaultCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly role: Role,
    readonly index: number,
    readonly mode: "stall" | "refuse",
    readonly ms: number,
  ) {}
  check = () => true;
  async run(_m: Model, real: Real): Promise<void> {
    const fault: Fault = {
      what: `${key(this.role, this.index)} → API server ${this.mode}`,
      at: Date.now(),
      ms: this.ms,
      api: true,
    };
    real.faults.push(fault);
    real.cluster.apiFault(this.role, this.index, this.mode);
    background(
      real,
      sleep(this.ms).then(() => real.cluster.apiFault(this.role, this.index, "pass")),
    );
  }
  toString(): string {
    return `${key(this.role, this.index)} → API server ${this.mode} for ${this.ms} ms`;
  }
}

class RestartEtcd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly signal: "SIGKILL" | "SIGTERM") {}
  check = (m: Readonly<Model>) => m.apiRestarts === 0;
  async run(m: Model, real: Real): Promise<void> {
    m.apiRestarts++;
    const fault: Fault = { what: `restart etcd ${this.signal}`, at: Date.now() };
    real.faults.push(fault);
    background(
      real,
      real.cluster.restartEtcd(this.signal).then((ms) => {
        fault.ms = ms;
      }),
    );
  }
  toString(): string {
    return `restart etcd (${this.signal})`;
  }
}

class Pause implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(): Promise<void> {
    await sleep(this.ms);
  }
  toString(): string {
    return `pause ${this.ms}`;
  }
}

const pause = fc.integer({ min: 0, max: 400 });
const agentWrite = fc
  .tuple(
    fc.nat(2),
    fc.constantFrom("create" as const, "create" as const, "update" as const, "delete" as const),
    fc.constantFrom(...NAMES),
    fc.constantFrom(...VALUES),
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 20 }),
    fc.integer({ min: 150, max: 700 }),
    pause,
  )
  .map(([a, v, n, val, p, tries, retry, ms]) => new AgentWrite(a, v, n, val, p, tries, retry, ms));
const decision = fc
  .tuple(
    fc.nat(1),
    fc.constantFrom("Approve" as const, "Approve" as const, "Deny" as const, "Revoke" as const),
    fc.nat(4),
    pause,
  )
  .map(([a, k, p, ms]) => new Decide(a, k, p, ms));
const role = fc.constantFrom<Role>("webhook", "controller");
const kill = fc
  .tuple(role, fc.nat(1), fc.constantFrom("SIGKILL" as const, "SIGKILL" as const, "SIGTERM" as const))
  .map(([r, i, s]) => new Kill(r, i, s));
const start = fc.tuple(role, fc.nat(1)).map(([r, i]) => new Start(r, i));

export interface ScheduleInput {
  ttlSeconds: number;
  requiredApprovals: number;
  /** An approver on call: approves every pending request this long after it appears (undefined: none). */
  onCallMs?: number | undefined;
  commands: fc.AsyncCommand<Model, Real>[];
}

/**
 * A schedule: its policy's TTL and required approvals, and up to maxCommands commands.
 * apiRestartWeight: how often a command is an API server restart (per 100 other commands;
 * at most one per schedule).
 */
/** The TTLs a schedule's policy draws from (seconds). */
export const TTL_CHOICES = [3, 6, 10] as const;

export function scheduleArbitrary(
  maxCommands: number,
  apiRestartWeight: number,
  /** Only TTLs up to this (at least the shortest): shorter schedules, e.g. for CI. */
  maxTtlSeconds?: number,
): fc.Arbitrary<ScheduleInput> {
  const ttls = TTL_CHOICES.filter((t) => maxTtlSeconds === undefined || t <= maxTtlSeconds);
  const weighted: fc.WeightedArbitrary<fc.AsyncCommand<Model, Real>>[] = [
    { arbitrary: agentWrite, weight: 40 },
    { arbitrary: decision, weight: 30 },
    { arbitrary: kill, weight: 10 },
    { arbitrary: start, weight: 10 },
    { arbitrary: fc.integer({ min: 200, max: 1500 }).map((ms) => new Pause(ms)), weight: 10 },
  ];
  if (apiRestartWeight > 0) {
    weighted.push({
      arbitrary: fc.constantFrom("SIGKILL" as const, "SIGTERM" as const).map((s) => new RestartApiServer(s)),
      weight: apiRestartWeight,
    });
    weighted.push({
      arbitrary: fc.constantFrom("SIGKILL" as const, "SIGTERM" as const).map((s) => new RestartEtcd(s)),
      weight: apiRestartWeight,
    });
  }
  weighted.push({
    arbitrary: fc
      .tuple(
        role,
        fc.nat(1),
        fc.constantFrom("stall" as const, "refuse" as const),
        fc.integer({ min: 500, max: 8000 }),
      )
      .map(([r, i, mode, ms]) => new ApiFaultCmd(r, i, mode, ms)),
    weight: 8,
  });
  return fc.record({
    ttlSeconds: fc.constantFrom(...(ttls.length > 0 ? ttls : [TTL_CHOICES[0]])),
    requiredApprovals: fc.constantFrom(1, 1, 2),
    // Most schedules have an approver on call (random approvals alone rarely meet a retry in time).
    onCallMs: fc.oneof(
      { arbitrary: fc.integer({ min: 200, max: 3000 }), weight: 3 },
      { arbitrary: fc.constant(undefined), weight: 1 },
    ),
    commands: fc.array(fc.oneof(...weighted), {
      minLength: Math.ceil(maxCommands / 2),
      maxLength: maxCommands,
    }),
  });
}

/** Reads the API server's audit log from `offset` (bytes): events mentioning `namespace`. */
export function readAuditLog(path: string, offset: number, namespace: string): ApiAuditEvent[] {
  const size = statSync(path).size;
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(Math.max(0, size - offset));
    readSync(fd, buf, 0, buf.length, offset);
    const needle = `"namespace":"${namespace}"`;
    const out: ApiAuditEvent[] = [];
    for (const line of buf.toString("utf8").split("\n")) {
      if (!line.includes(needle)) continue;
      try {
        out.push(JSON.parse(line) as ApiAuditEvent);
      } catch {
        // a line cut by an API server crash
      }
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

export interface ScheduleResult {
  namespace: string;
  findings: ScheduleFindings;
  durationMs: number;
  commands: string;
  attempts: number;
  decisions: number;
  faults: string[];
  /** Refusals while something was down: Countersign's own fail-closed message vs the API server's webhook error. */
  refusals: Record<string, number>;
  /** Approver actions that landed, by kind, and the distinct reasons the others did not. */
  decisionsOk: Record<string, number>;
  decisionFailures: string[];
  /** Per fault on a replica's API access: ms from its end until an agent next got a normal gate answer. */
  recoveryMs: number[];
}

/** What kind of answer an agent got (the fail-closed ones name what was down). */
export function answerKind(a: AgentAttempt): string {
  if (a.ok) return "admitted";
  const m = a.message ?? "";
  if (/could not be read or written right now|could not decide this request/.test(m))
    return "countersign-unavailable";
  if (/Countersign is overloaded/.test(m)) return "countersign-overloaded";
  if (/failed calling webhook/.test(m)) return "webhook-unreachable";
  if (/ApprovalRequest|needs (a human )?approval/.test(m)) return "gate";
  if (a.code === 404 || a.code === 409) return "not-found-or-exists";
  if (a.code === undefined) return "api-server-unreachable";
  return `other-${a.code}`;
}

let scheduleCounter = 0;

/** Runs one schedule: its own namespace and policy, the commands, the heal, the checks. */
export async function runSchedule(
  cluster: ChaosCluster,
  input: ScheduleInput,
  label: string,
  opts: { forceApiRestart?: boolean } = {},
): Promise<ScheduleResult> {
  const t0 = Date.now();
  const namespace = `chaos-${process.pid}-${++scheduleCounter}-${Math.random().toString(36).slice(2, 6)}`;
  await cluster.heal();
  await persist(() => cluster.tenantNamespace(namespace), "tenant namespace");
  const policy = `chaos-${namespace}`;
  await persist(
    () =>
      cluster.cp.apply([
        {
          apiVersion: "countersign.io/v1alpha1",
          kind: "ApprovalPolicy",
          metadata: { name: policy },
          spec: {
            subjects: { serviceAccounts: [{ namespace: AGENTS_NAMESPACE }] },
            match: [
              {
                operations: ["CREATE", "UPDATE", "DELETE"],
                apiGroups: [""],
                resources: ["configmaps"],
                namespaces: [namespace],
              },
            ],
            rules: [
              {
                name: "every-write",
                action: "RequireApproval",
                approval: {
                  approvers: { groups: [APPROVER_GROUP] },
                  requiredApprovals: input.requiredApprovals,
                  ttl: `${input.ttlSeconds}s`,
                },
              },
            ],
          },
        } as never,
      ]),
    "apply policy",
  );
  // Every webhook replica has the policy when a dry-run write is refused for approval.
  const probe = cluster.agents[0]!.kc.makeApiClient(CoreV1Api);
  const probeDeadline = Date.now() + 30_000;
  for (let seen = 0; seen < 6; ) {
    try {
      await probe.createNamespacedConfigMap({
        namespace,
        dryRun: "All",
        body: { metadata: { name: "probe" } },
      });
      seen = 0;
    } catch (err) {
      seen = /needs approval/.test(kubeStatusOf(err)?.message ?? "") ? seen + 1 : 0;
    }
    if (Date.now() > probeDeadline) throw new Error(`policy ${policy} was not in force within 30 s`);
    if (seen < 6) await sleep(100);
  }
  const auditOffset = statSync(cluster.cp.auditLogPath).size;

  const real: Real = { cluster, namespace, attempts: [], decisions: [], faults: [], inflight: new Set() };
  const model: Model = {
    up: Object.fromEntries(
      cluster.replicas.map((r) => [key(r.role, r.index), cluster.isUp(r.role, r.index)]),
    ),
    apiRestarts: 0,
  };
  // A forced API server restart replaces any drawn one, and runs even after an etcd restart
  // (both draw on one restart per schedule; a drawn etcd restart first skipped the forced one).
  const commands = opts.forceApiRestart
    ? input.commands.filter((c) => !(c instanceof RestartApiServer))
    : [...input.commands];
  if (opts.forceApiRestart)
    commands.splice(Math.floor(commands.length / 2), 0, new RestartApiServer("SIGKILL", true));
  // The model run: each command whose precondition holds on the model (e.g. kill only a
  // replica that is up) runs in order; agents and approvers keep going in the background.
  const ran: string[] = [];
  let agentsDone = false;
  // Not in real.inflight: it runs until everything there (agents, decisions, faults) is done.
  const approverOnCall =
    input.onCallMs !== undefined ? onCall(real, input.onCallMs, () => agentsDone) : undefined;
  try {
    for (const c of commands) {
      if (!c.check(model)) continue;
      ran.push(String(c));
      await c.run(model, real);
    }
    while (real.inflight.size > 0) await Promise.all([...real.inflight]);
  } finally {
    agentsDone = true;
    await approverOnCall?.catch(() => {});
  }
  await cluster.heal();
  const healedAt = Date.now();

  // Poll until every request is terminal (or past its bound), noting when each first was.
  const firstSeenTerminal = new Map<string, number>();
  let requests: SeenRequest[] = [];
  for (;;) {
    try {
      requests = await requestsIn(real);
    } catch {
      await sleep(POLL_MS);
      continue;
    }
    const now = Date.now();
    for (const r of requests)
      if (TERMINAL_PHASES.has(r.status?.phase ?? "") && !firstSeenTerminal.has(r.metadata.name))
        firstSeenTerminal.set(r.metadata.name, now);
    const open = requests.filter((r) => !TERMINAL_PHASES.has(r.status?.phase ?? ""));
    const latest = Math.max(healedAt, ...open.map((r) => new Date(r.spec.approval.expiresAt).getTime()));
    if (open.length === 0 || now > latest + TERMINAL_BOUND_MS + 2000) break;
    await sleep(POLL_MS);
  }
  // The reconciler writes the audit records after the phase: wait for them (bounded).
  const custom = cluster.cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
  let records: SeenRecord[] = [];
  const recordsDeadline = Date.now() + TERMINAL_BOUND_MS;
  for (;;) {
    records = (
      (await persist(
        () => custom.listNamespacedCustomObject({ ...G, namespace, plural: "auditrecords" }),
        "list audit records",
      )) as { items: SeenRecord[] }
    ).items;
    const have = new Set(records.map((r) => `${r.spec.approvalRequest.name}/${r.spec.event}`));
    const complete = requests.every(
      (r) =>
        have.has(`${r.metadata.name}/Requested`) &&
        (!TERMINAL_PHASES.has(r.status?.phase ?? "") || have.has(`${r.metadata.name}/${r.status?.phase}`)),
    );
    if (complete || Date.now() > recordsDeadline) break;
    await sleep(POLL_MS);
    requests = await requestsIn(real);
  }
  const verify = await persist(() => auditVerify(cluster.cp.adminKubeConfig(), namespace), "audit verify");
  const findings = checkSchedule({
    namespace,
    agentUsernames: cluster.agents.map((a) => a.username),
    auditEvents: readAuditLog(cluster.cp.auditLogPath, auditOffset, namespace),
    requests,
    records,
    attempts: real.attempts,
    firstSeenTerminal,
    healedAt,
    terminalBoundMs: TERMINAL_BOUND_MS,
    faultsDuring: (from, to) => cluster.faultsDuring(from, to),
    verify,
  });
  await cluster.cp
    .adminKubeConfig()
    .makeApiClient(CustomObjectsApi)
    .deleteClusterCustomObject({ ...G, plural: "approvalpolicies", name: policy })
    .catch(() => {});
  return {
    namespace,
    findings,
    durationMs: Date.now() - t0,
    commands: `${label} ttl=${input.ttlSeconds}s approvals=${input.requiredApprovals}${input.onCallMs !== undefined ? ` on-call=${input.onCallMs}ms` : ""}: ${ran.join("; ")}`,
    attempts: real.attempts.length,
    decisions: real.decisions.length,
    faults: real.faults.map((f) => `${f.what}${f.ms ? ` (${f.ms} ms)` : ""}`),
    decisionsOk: real.decisions
      .filter((d) => d.ok)
      .reduce<Record<string, number>>((acc, d) => {
        acc[d.kind] = (acc[d.kind] ?? 0) + 1;
        return acc;
      }, {}),
    decisionFailures: [
      ...new Set(
        real.decisions
          .filter((d) => !d.ok)
          .map((d) => d.message.replace(/\S+\/\S+-[0-9a-f]{6,}/g, "<request>").slice(0, 160)),
      ),
    ],
    refusals: real.attempts.reduce<Record<string, number>>((acc, a) => {
      const k = answerKind(a);
      acc[k] = (acc[k] ?? 0) + 1;
      return acc;
    }, {}),
    recoveryMs: real.faults
      .filter((f) => f.api && f.ms !== undefined)
      .flatMap((f) => {
        const end = f.at + f.ms!;
        const next = real.attempts
          .filter((a) => a.start >= end && ["admitted", "gate"].includes(answerKind(a)))
          .sort((x, y) => x.end - y.end)[0];
        return next ? [next.end - end] : [];
      }),
  };
}
