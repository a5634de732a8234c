/**
 * The chaos run's records file (one JSON line per schedule, written as each completes): a run
 * stopped at any point, even mid-line, still sums up; liveness misses are told from the rest.
 */
import { describe, expect, it } from "vitest";
import { formatSummary, isLivenessViolation, summarizeRecords } from "../chaos/run.js";

const schedule = (label: string, violations: string[] = []) =>
  JSON.stringify({
    kind: "schedule",
    at: "2026-11-25T20:00:00.000Z",
    label,
    ok: violations.length === 0,
    violations,
    commands: `${label} ttl=3s: pause 10`,
    durationMs: 12_000,
    attempts: 10,
    decisions: 2,
    faults: ["kill webhook-0 SIGKILL"],
    admitted: 1,
    requests: 2,
    consumedNotAdmitted: 0,
    byPhase: { Consumed: 1, Expired: 1 },
    maxTerminalLagMs: 300,
    answers: { gate: 9, admitted: 1 },
    recoveryMs: [500],
    loadAverage: [3, 3, 3],
  });

describe("chaos records", () => {
  it("sums up the schedules of a stopped run, skipping a line cut short", () => {
    const late =
      "ns/a became Expired at 2026-11-25T20:00:20.000Z, more than 15000 ms after 2026-11-25T20:00:01.000Z (while the shared cluster had faults on: webhook-1 down (SIGKILL) 20:00:02.000–20:00:15.000)";
    const text = [
      JSON.stringify({ kind: "run", at: "2026-11-25T19:59:00.000Z", seed: 1, parallel: 2, runs: 1000 }),
      schedule("seed=1 path=0"),
      schedule("seed=2 path=0", [late, "ns/b was admitted without an approval (decision=none)"]),
      JSON.stringify({
        kind: "error",
        at: "2026-11-25T20:00:01.000Z",
        label: "seed=1 path=1",
        error: "boom",
      }),
      schedule("seed=1 path=2").slice(0, 40),
    ].join("\n");
    const s = summarizeRecords(text);
    expect(s.schedules).toBe(2);
    expect(s.admitted).toBe(2);
    expect(s.byPhase).toEqual({ Consumed: 2, Expired: 2 });
    expect(s.errors).toEqual([{ label: "seed=1 path=1", error: "boom" }]);
    expect(s.violations).toHaveLength(1);
    expect(formatSummary(s)).toMatch(
      /violations: 2 \(in 1 schedule\(s\)\): 1 safety\/records, 1 liveness \(terminal too late; 1 of them while another schedule's faults were on\)/,
    );
    expect(isLivenessViolation(late)).toBe(true);
    expect(isLivenessViolation("ns/c is still Pending (expired at 2026-11-25T20:00:00Z)")).toBe(true);
    expect(isLivenessViolation("ns/b was admitted without an approval (decision=none)")).toBe(false);
  });
});
