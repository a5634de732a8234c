/**
 * The probe listener (issue 12, overload): its answers from the main loop's heartbeat, and the
 * thread serving them end to end.
 */
import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import {
  HEARTBEAT_MS,
  probeAnswer,
  type RunningHealthServer,
  STALL_MS,
  startHealthServer,
} from "../../src/admission/health-server.js";

describe("probeAnswer", () => {
  const at = (silentMs: number, ready: boolean) => ({
    nowMs: 100_000,
    lastBeatMs: 100_000 - silentMs,
    ready,
  });

  it("is alive while the main loop's heartbeat is fresh, ready once the policies are loaded", () => {
    expect(probeAnswer("/healthz", at(0, false))).toEqual({ status: 200, body: "ok" });
    expect(probeAnswer("/healthz", at(STALL_MS - 1, true))).toEqual({ status: 200, body: "ok" });
    expect(probeAnswer("/readyz", at(0, false))).toEqual({
      status: 503,
      body: "policy cache not synced yet",
    });
    expect(probeAnswer("/readyz", at(0, true))).toEqual({ status: 200, body: "ok" });
  });

  it("is neither alive nor ready when the main loop has stalled, saying for how long", () => {
    const stalled = { status: 503, body: "the main event loop has not run for 12 s" };
    expect(probeAnswer("/healthz", at(12_000, true))).toEqual(stalled);
    expect(probeAnswer("/readyz", at(12_000, true))).toEqual(stalled);
  });

  it("serves nothing else", () => {
    expect(probeAnswer("/validate", at(0, true)).status).toBe(404);
    expect(probeAnswer("", at(0, true)).status).toBe(404);
  });
});

describe("the health thread", () => {
  let running: RunningHealthServer | undefined;
  afterEach(async () => {
    await running?.stop();
    running = undefined;
  });

  const get = (port: number, path: string, method = "GET") =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, method, agent: false }, (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });

  it("answers probes from its own thread, and readiness follows the main loop's state", async () => {
    let ready = false;
    running = await startHealthServer({ port: 0, host: "127.0.0.1", isReady: () => ready });
    expect(await get(running.port, "/healthz")).toEqual({ status: 200, body: "ok" });
    expect(await get(running.port, "/readyz")).toEqual({ status: 503, body: "policy cache not synced yet" });
    expect((await get(running.port, "/healthz", "POST")).status).toBe(404);
    ready = true;
    await new Promise((r) => setTimeout(r, HEARTBEAT_MS * 3));
    expect(await get(running.port, "/readyz")).toEqual({ status: 200, body: "ok" });
  });

  it("answers while the main loop is blocked", async () => {
    running = await startHealthServer({ port: 0, host: "127.0.0.1", isReady: () => true });
    // A probe from another thread, sent while this (main) thread spins for 1.5 s.
    const { Worker } = await import("node:worker_threads");
    const prober = new Worker(
      `const { parentPort } = require("node:worker_threads");
       parentPort.postMessage("ready");
       parentPort.once("message", () => require("node:http").get(
         { host: "127.0.0.1", port: ${running.port}, path: "/healthz", agent: false },
         (r) => { r.resume(); r.on("end", () => parentPort.postMessage({ status: r.statusCode, at: Date.now() })); }));`,
      { eval: true },
    );
    await new Promise((r) => prober.once("message", r));
    const answered = new Promise<{ status: number; at: number }>((r) => prober.once("message", r));
    prober.postMessage("go");
    const spinEnd = Date.now() + 1500;
    while (Date.now() < spinEnd) {
      /* the main loop is busy */
    }
    const probe = await answered;
    await prober.terminate();
    expect(probe.status).toBe(200);
    expect(probe.at).toBeLessThan(spinEnd);
  });
});
