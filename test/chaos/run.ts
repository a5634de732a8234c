/**
 * Runs chaos schedules with fast-check and sums them up. Each schedule is printed with the
 * seed and path that replay it; violations are collected (not thrown) so one run of many
 * schedules reports every one of them.
 */
import { appendFileSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import fc from "fast-check";
import { ChaosCluster } from "./cluster.js";
import { DEGRADED_MARK } from "./invariants.js";
import { runSchedule, type ScheduleResult, scheduleArbitrary } from "./schedule.js";

export interface ChaosOptions {
  runs: number;
  /** Default: random (printed). */
  seed?: number;
  /** Replay one schedule: its path (with its seed). */
  path?: string;
  maxCommands?: number;
  /** API server restarts per 100 other commands (default 2; at most one per schedule). */
  apiRestartWeight?: number;
  /** Schedules run at once, each in its own namespace (the faults are shared). Default 1. */
  parallel?: number;
  log?: (m: string) => void;
  /** The first schedule restarts the API server (SIGKILL) halfway, whatever it drew. */
  forceApiRestart?: boolean;
  /** Start no schedule after this many minutes (the rest of --runs is skipped, and reported). */
  minutes?: number;
  /** Use this cluster instead of starting one. */
  cluster?: ChaosCluster;
  /** Only policy TTLs up to this many seconds (shorter schedules; CI). */
  maxTtlSeconds?: number;
  /**
   * Appends one JSON line per schedule to this file as it completes (and one for the run's
   * start), so a long run's results survive when it is stopped: summarizeRecords() reads it.
   */
  records?: string;
  /** Copies the replicas' logs here when the run ends (for looking into a violation). */
  keepLogs?: string;
}

/** One line of a records file (see ChaosOptions.records). */
export type ChaosRecord =
  | {
      kind: "run";
      at: string;
      seed: number;
      parallel: number;
      runs: number;
      maxTtlSeconds?: number;
      machine: string;
      node: string;
    }
  | {
      kind: "schedule";
      at: string;
      label: string;
      ok: boolean;
      violations: string[];
      commands: string;
      durationMs: number;
      attempts: number;
      decisions: number;
      faults: string[];
      admitted: number;
      requests: number;
      consumedNotAdmitted: number;
      byPhase: Record<string, number>;
      maxTerminalLagMs: number;
      answers: Record<string, number>;
      recoveryMs: number[];
      loadAverage: number[];
    }
  | { kind: "error"; at: string; label: string; error: string }
  | { kind: "end"; at: string; apiServerRestarts: number[]; etcdRestarts: number[]; wallMs: number };

/** Liveness (a request terminal too late) vs everything else (safety, records, verify). */
export function isLivenessViolation(v: string): boolean {
  return / more than \d+ ms after /.test(v) || / is still \w+ \(expired at /.test(v);
}

export interface ChaosSummary {
  schedules: number;
  violations: { label: string; violations: string[]; commands: string }[];
  /** Schedules the harness itself could not finish (not invariant violations; reported, never hidden). */
  errors: { label: string; error: string }[];
  admitted: number;
  requests: number;
  consumedNotAdmitted: number;
  attempts: number;
  decisions: number;
  faults: number;
  apiServerRestarts: number[];
  etcdRestarts: number[];
  answers: Record<string, number>;
  recoveryMs: number[];
  maxTerminalLagMs: number;
  byPhase: Record<string, number>;
  wallMs: number;
  scheduleMs: number[];
}

function emptySummary(): ChaosSummary {
  return {
    schedules: 0,
    violations: [],
    errors: [],
    admitted: 0,
    requests: 0,
    consumedNotAdmitted: 0,
    attempts: 0,
    decisions: 0,
    faults: 0,
    apiServerRestarts: [],
    etcdRestarts: [],
    answers: {},
    recoveryMs: [],
    maxTerminalLagMs: 0,
    byPhase: {},
    wallMs: 0,
    scheduleMs: [],
  };
}

function recordOf(label: string, r: ScheduleResult): ChaosRecord & { kind: "schedule" } {
  return {
    kind: "schedule",
    at: new Date().toISOString(),
    label,
    ok: r.findings.violations.length === 0,
    violations: r.findings.violations,
    commands: r.commands,
    durationMs: r.durationMs,
    attempts: r.attempts,
    decisions: r.decisions,
    faults: r.faults,
    admitted: r.findings.stats.admitted,
    requests: r.findings.stats.requests,
    consumedNotAdmitted: r.findings.stats.consumedNotAdmitted,
    byPhase: r.findings.stats.byPhase,
    maxTerminalLagMs: r.findings.stats.maxTerminalLagMs,
    answers: r.refusals,
    recoveryMs: r.recoveryMs,
    loadAverage: loadavg(),
  };
}

function loadavg(): number[] {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
  } catch {
    return [];
  }
}

/** Adds one schedule's record to a summary (a run's own, or one rebuilt from a records file). */
function addRecord(summary: ChaosSummary, r: ChaosRecord & { kind: "schedule" }): void {
  summary.schedules++;
  summary.admitted += r.admitted;
  summary.requests += r.requests;
  summary.consumedNotAdmitted += r.consumedNotAdmitted;
  summary.attempts += r.attempts;
  summary.decisions += r.decisions;
  summary.faults += r.faults.length;
  summary.maxTerminalLagMs = Math.max(summary.maxTerminalLagMs, r.maxTerminalLagMs);
  summary.scheduleMs.push(r.durationMs);
  for (const [k, n] of Object.entries(r.answers)) summary.answers[k] = (summary.answers[k] ?? 0) + n;
  summary.recoveryMs.push(...r.recoveryMs);
  for (const [p, n] of Object.entries(r.byPhase)) summary.byPhase[p] = (summary.byPhase[p] ?? 0) + n;
  if (r.violations.length > 0)
    summary.violations.push({ label: r.label, violations: r.violations, commands: r.commands });
}

/** Rebuilds a summary from a records file (ChaosOptions.records), e.g. of a run still going or stopped. */
export function summarizeRecords(text: string): ChaosSummary {
  const summary = emptySummary();
  let first: number | undefined;
  let last: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let r: ChaosRecord;
    try {
      r = JSON.parse(line) as ChaosRecord;
    } catch {
      continue; // a line cut by a stop mid-write
    }
    const at = Date.parse(r.at);
    first ??= at;
    last = at;
    if (r.kind === "schedule") addRecord(summary, r);
    else if (r.kind === "error") summary.errors.push({ label: r.label, error: r.error });
    else if (r.kind === "end") {
      summary.apiServerRestarts.push(...r.apiServerRestarts);
      summary.etcdRestarts.push(...r.etcdRestarts);
    }
  }
  summary.wallMs = first !== undefined && last !== undefined ? last - first : 0;
  return summary;
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosSummary> {
  const log = opts.log ?? ((m: string) => console.log(m));
  const t0 = Date.now();
  const cluster = opts.cluster ?? (await ChaosCluster.start({ log }));
  const summary = emptySummary();
  const record = (r: ChaosRecord) => {
    if (opts.records) appendFileSync(opts.records, `${JSON.stringify(r)}\n`);
  };
  const replayFlags = opts.maxTtlSeconds !== undefined ? ` --max-ttl ${opts.maxTtlSeconds}` : "";
  const add = (label: string, r: ScheduleResult) => {
    const rec = recordOf(label, r);
    record(rec);
    addRecord(summary, rec);
    const v = r.findings.violations;
    log(
      `${label}: ${v.length === 0 ? "ok" : `${v.length} VIOLATION(S)`} in ${r.durationMs} ms; ${r.attempts} writes (${r.findings.stats.admitted} admitted), ${r.findings.stats.requests} requests ${JSON.stringify(r.findings.stats.byPhase)}, decisions ${JSON.stringify(r.decisionsOk)}${r.decisionFailures.length ? ` (not landed: ${r.decisionFailures.join(" | ")})` : ""}, faults: ${r.faults.join(", ") || "none"}`,
    );
    if (v.length > 0) {
      log(
        `  replay: npm run test:chaos -- ${label.replace(/seed=(\S+) path=(\S+)/, "--seed $1 --path $2")}${replayFlags}`,
      );
      log(`  commands: ${r.commands}`);
      for (const x of v) log(`  - ${x}`);
    }
  };
  try {
    const parallel = Math.max(1, Math.min(opts.parallel ?? 1, opts.runs));
    const stopAt = opts.minutes !== undefined ? Date.now() + opts.minutes * 60_000 : undefined;
    const baseSeed = opts.seed ?? (Math.random() * 0x7fffffff) | 0;
    log(
      `chaos: ${opts.runs} schedule(s), seed ${baseSeed}${parallel > 1 ? ` (+0..${parallel - 1} per lane)` : ""}, ${parallel} at a time`,
    );
    record({
      kind: "run",
      at: new Date().toISOString(),
      seed: baseSeed,
      parallel,
      runs: opts.runs,
      ...(opts.maxTtlSeconds !== undefined ? { maxTtlSeconds: opts.maxTtlSeconds } : {}),
      machine: `${cpus()[0]?.model ?? "?"}, ${cpus().length} cores`,
      node: process.version,
    });
    const lanes = Array.from({ length: parallel }, async (_, lane) => {
      const seed = baseSeed + lane;
      const numRuns =
        opts.path !== undefined
          ? 1
          : Math.floor(opts.runs / parallel) + (lane < opts.runs % parallel ? 1 : 0);
      let index = opts.path !== undefined ? Number(opts.path) : 0;
      const details = await fc.check(
        fc.asyncProperty(
          scheduleArbitrary(opts.maxCommands ?? 16, opts.apiRestartWeight ?? 2, opts.maxTtlSeconds),
          async (input) => {
            const label = `seed=${seed} path=${index++}`;
            if (stopAt !== undefined && Date.now() > stopAt) return true;
            const first = summary.schedules + summary.errors.length === 0;
            try {
              add(
                label,
                await runSchedule(cluster, input, label, {
                  forceApiRestart: !!opts.forceApiRestart && first,
                }),
              );
            } catch (err) {
              const error = err instanceof Error ? (err.stack ?? err.message) : String(err);
              summary.errors.push({ label, error });
              record({ kind: "error", at: new Date().toISOString(), label, error });
              log(`${label}: HARNESS ERROR ${error}`);
            }
            return true;
          },
        ),
        { numRuns, seed, ...(opts.path !== undefined ? { path: opts.path } : {}), endOnFailure: true },
      );
      if (details.failed)
        throw details.errorInstance ?? new Error(`fast-check failed: ${String(details.counterexample)}`);
    });
    const results = await Promise.allSettled(lanes);
    for (const r of results) if (r.status === "rejected") throw r.reason;
    summary.apiServerRestarts = [...cluster.apiServerRestarts];
    summary.etcdRestarts = [...cluster.etcdRestarts];
  } finally {
    if (opts.keepLogs) {
      try {
        cluster.keepLogs(opts.keepLogs);
      } catch (err) {
        log(`could not keep the replicas' logs: ${String(err)}`);
      }
    }
    if (!opts.cluster) await cluster.stop();
  }
  summary.wallMs = Date.now() - t0;
  record({
    kind: "end",
    at: new Date().toISOString(),
    apiServerRestarts: summary.apiServerRestarts,
    etcdRestarts: summary.etcdRestarts,
    wallMs: summary.wallMs,
  });
  return summary;
}

export function formatSummary(s: ChaosSummary): string {
  const all = s.violations.flatMap((v) => v.violations);
  const sorted = [...s.scheduleMs].sort((a, b) => a - b);
  const restarts = [...s.apiServerRestarts].sort((a, b) => a - b);
  return [
    `schedules: ${s.schedules}${s.errors.length ? ` (+${s.errors.length} the harness could not finish)` : ""}, violations: ${s.violations.reduce((n, v) => n + v.violations.length, 0)} (in ${s.violations.length} schedule(s)): ${all.filter((v) => !isLivenessViolation(v)).length} safety/records, ${all.filter(isLivenessViolation).length} liveness (terminal too late; ${all.filter((v) => isLivenessViolation(v) && v.includes(DEGRADED_MARK)).length} of them while another schedule's faults were on)`,
    `agent writes: ${s.attempts}, admitted (API server audit log): ${s.admitted}, approval requests: ${s.requests} ${JSON.stringify(s.byPhase)}`,
    `consumed but not persisted (approval spent, nothing ran): ${s.consumedNotAdmitted}; approver actions: ${s.decisions}; faults injected: ${s.faults}`,
    `API server restarts: ${restarts.length}${restarts.length ? ` (ready again in ${restarts[0]}..${restarts[restarts.length - 1]} ms)` : ""}`,
    `etcd restarts: ${s.etcdRestarts.length}${s.etcdRestarts.length ? ` (${Math.min(...s.etcdRestarts)}..${Math.max(...s.etcdRestarts)} ms)` : ""}`,
    `agents' answers: ${JSON.stringify(s.answers)}`,
    `recovery after a replica's API access came back (next normal gate answer): ${s.recoveryMs.length ? `median ${[...s.recoveryMs].sort((a, b) => a - b)[Math.floor(s.recoveryMs.length / 2)]} ms, max ${Math.max(...s.recoveryMs)} ms over ${s.recoveryMs.length} faults` : "n/a"}`,
    `slowest terminal transition after max(expiry or decision, heal): ${s.maxTerminalLagMs} ms`,
    `schedule duration median ${sorted[Math.floor(sorted.length / 2)] ?? 0} ms, max ${sorted[sorted.length - 1] ?? 0} ms; wall ${Math.round(s.wallMs / 1000)} s`,
  ].join("\n");
}
