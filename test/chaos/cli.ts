/**
 * npm run test:chaos -- [--runs N] [--seed S] [--path P] [--parallel K] [--max-commands M]
 *                       [--api-restart-weight W] [--minutes M] [--max-ttl SECONDS]
 *                       [--json FILE] [--records FILE.jsonl] [--keep-logs DIR]
 * Starts its own control plane and Countersign replicas, runs N randomized schedules, prints
 * each with its replay seed, and exits 1 if any invariant was violated. --records appends one
 * JSON line per schedule as it completes (results survive a stop);
 *
 * npm run test:chaos -- --summarize FILE.jsonl
 * prints the summary of a records file (of a run finished, stopped or still going) and every
 * violation with its replay command; starts nothing.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ChaosCluster } from "./cluster.js";
import { type ChaosSummary, formatSummary, isLivenessViolation, runChaos, summarizeRecords } from "./run.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "20" },
    seed: { type: "string" },
    path: { type: "string" },
    parallel: { type: "string", default: "1" },
    "max-commands": { type: "string", default: "16" },
    "api-restart-weight": { type: "string", default: "2" },
    "max-ttl": { type: "string" },
    json: { type: "string" },
    records: { type: "string" },
    "keep-logs": { type: "string" },
    minutes: { type: "string" },
    summarize: { type: "string" },
  },
});

function details(summary: ChaosSummary, maxTtl?: string): string {
  const lines: string[] = [];
  for (const v of summary.violations) {
    lines.push(
      `${v.label}: replay with npm run test:chaos -- ${v.label.replace(/seed=(\S+) path=(\S+)/, "--seed $1 --path $2")}${maxTtl ? ` --max-ttl ${maxTtl}` : ""}`,
    );
    for (const x of v.violations) lines.push(`  - [${isLivenessViolation(x) ? "liveness" : "SAFETY"}] ${x}`);
    lines.push(`  commands: ${v.commands}`);
  }
  for (const e of summary.errors)
    lines.push(`${e.label}: harness could not finish: ${e.error.split("\n")[0]}`);
  return lines.join("\n");
}

if (values.summarize) {
  const text = readFileSync(values.summarize, "utf8");
  const summary = summarizeRecords(text);
  const run = text
    .split("\n")
    .map((l) => {
      try {
        return JSON.parse(l) as { kind?: string; maxTtlSeconds?: number; machine?: string; node?: string };
      } catch {
        return undefined;
      }
    })
    .find((r) => r?.kind === "run");
  if (run)
    console.log(
      `run: ${run.machine}, node ${run.node}${run.maxTtlSeconds ? `, max TTL ${run.maxTtlSeconds} s` : ""}`,
    );
  console.log(formatSummary(summary));
  const more = details(summary, run?.maxTtlSeconds ? String(run.maxTtlSeconds) : undefined);
  if (more) console.log(more);
  process.exit(0);
}

// Started here (not inside runChaos) so that a stop (SIGINT, SIGTERM) can take it down cleanly:
// the records file already holds every finished schedule.
const cluster = await ChaosCluster.start({ log: (m) => console.log(m) });
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping; the records file has every schedule that finished`);
    if (values["keep-logs"]) cluster.keepLogs(values["keep-logs"]);
    void cluster.stop().finally(() => process.exit(130));
  });

const summary = await runChaos({
  cluster,
  runs: Number(values.runs),
  ...(values.seed !== undefined ? { seed: Number(values.seed) } : {}),
  ...(values.path !== undefined ? { path: values.path } : {}),
  parallel: Number(values.parallel),
  ...(values.minutes !== undefined ? { minutes: Number(values.minutes) } : {}),
  ...(values["max-ttl"] !== undefined ? { maxTtlSeconds: Number(values["max-ttl"]) } : {}),
  ...(values.records !== undefined ? { records: values.records } : {}),
  ...(values["keep-logs"] !== undefined ? { keepLogs: values["keep-logs"] } : {}),
  maxCommands: Number(values["max-commands"]),
  apiRestartWeight: Number(values["api-restart-weight"]),
});
await cluster.stop();
console.log(formatSummary(summary));
const more = details(summary, values["max-ttl"]);
if (more) console.log(more);
if (values.json) writeFileSync(values.json, JSON.stringify(summary, null, 2));
process.exit(summary.violations.length > 0 || summary.errors.length > 0 ? 1 : 0);
