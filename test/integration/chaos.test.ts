/**
 * A few randomized chaos schedules (test/chaos/) on every run: agents retrying in parallel,
 * approvers approving, denying and revoking, short TTLs, two webhook and two controller
 * processes killed and restarted, and an API server restart in the first schedule. This file
 * starts its own control plane (the shared one cannot be restarted). Each schedule prints the
 * seed and path that replay it: `npm run test:chaos -- --seed S --path P`. Large runs:
 * `npm run test:chaos -- --runs 1000` (README, Robustness).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChaosCluster } from "../chaos/cluster.js";
import { formatSummary, runChaos } from "../chaos/run.js";

const RUNS = Number(process.env.CHAOS_RUNS ?? 3);
let cluster: ChaosCluster;

beforeAll(async () => {
  cluster = await ChaosCluster.start({ log: (m) => console.log(`[chaos] ${m}`) });
}, 180_000);

afterAll(async () => {
  await cluster?.stop();
}, 60_000);

describe("chaos schedules against the real API server", () => {
  it(`${RUNS} random schedules: nothing admitted without a matching unexpired approval, no approval used twice (API server audit log), every request terminal within TTL + bound, audit chain complete and verified`, async () => {
    const summary = await runChaos({
      runs: RUNS,
      ...(process.env.CHAOS_SEED ? { seed: Number(process.env.CHAOS_SEED) } : {}),
      maxCommands: 10,
      // TTLs of 3 or 6 s (not 10): the suite's time; large runs use all of them.
      maxTtlSeconds: 6,
      forceApiRestart: true,
      cluster,
      log: (m) => console.log(`[chaos] ${m}`),
    });
    console.log(formatSummary(summary));
    expect(summary.errors).toEqual([]);
    expect(summary.violations).toEqual([]);
    expect(summary.schedules).toBe(RUNS);
    expect(summary.apiServerRestarts.length).toBeGreaterThanOrEqual(1);
  }, 240_000);
});
