/**
 * npm run test:chaos -- [--runs N] [--seed S] [--path P] [--parallel K] [--max-commands M]
 *                       [--api-restart-weight W] [--minutes M] [--json FILE]
 * Starts its own control plane and Countersign replicas, runs N randomized schedules, prints
 * each with its replay seed, and exits 1 if any invariant was violated.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { formatSummary, runChaos } from "./run.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "20" },
    seed: { type: "string" },
    path: { type: "string" },
    parallel: { type: "string", default: "1" },
    "max-commands": { type: "string", default: "16" },
    "api-restart-weight": { type: "string", default: "2" },
    json: { type: "string" },
    minutes: { type: "string" },
  },
});

const summary = await runChaos({
  runs: Number(values.runs),
  ...(values.seed !== undefined ? { seed: Number(values.seed) } : {}),
  ...(values.path !== undefined ? { path: values.path } : {}),
  parallel: Number(values.parallel),
  ...(values.minutes !== undefined ? { minutes: Number(values.minutes) } : {}),
  maxCommands: Number(values["max-commands"]),
  apiRestartWeight: Number(values["api-restart-weight"]),
});
console.log(formatSummary(summary));
if (values.json) writeFileSync(values.json, JSON.stringify(summary, null, 2));
process.exit(summary.violations.length > 0 || summary.errors.length > 0 ? 1 : 0);
