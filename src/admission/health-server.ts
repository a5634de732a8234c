/**
 * The probe listener (--health-port): plain HTTP, GET /healthz and GET /readyz, served by its
 * own worker thread. Under 3x overload the main event loop is busy with admission work for
 * a second or more per turn, and probes answered there (on any port) missed the kubelet's 1 s
 * timeout; a liveness probe would have restarted a webhook that was only busy, making the
 * overload worse. Here the answer does not queue behind admission work, and it still means
 * something: the main loop writes a heartbeat (and whether it is ready) to shared memory every
 * HEARTBEAT_MS, and the thread answers
 *   /healthz  200 while the main loop's last heartbeat is under STALL_MS old, else 503 (a hung
 *             or blocked main loop still gets the pod restarted);
 *   /readyz   200 when, in addition, the policy cache has synced, else 503 naming why.
 * The admission port keeps answering /healthz and /readyz too (from the main loop).
 */
import { Worker } from "node:worker_threads";

export const DEFAULT_HEALTH_PORT = 8081;
/** How often the main loop writes its heartbeat. */
export const HEARTBEAT_MS = 500;
/** A main loop silent this long is not alive: /healthz and /readyz answer 503. */
export const STALL_MS = 10_000;

export interface RunningHealthServer {
  port: number;
  stop(): Promise<void>;
}

/** Shared memory: [0] the main loop's last heartbeat (epoch ms), [1] ready (1) or not (0). */
const BEAT = 0;
const READY = 1;

/** What a probe reads, from the shared heartbeat and ready flag. Pure. */
export function probeAnswer(
  path: string,
  state: { nowMs: number; lastBeatMs: number; ready: boolean },
): { status: number; body: string } {
  const silentMs = state.nowMs - state.lastBeatMs;
  const stalled =
    silentMs >= STALL_MS ? `the main event loop has not run for ${Math.round(silentMs / 1000)} s` : undefined;
  if (path === "/healthz") return stalled ? { status: 503, body: stalled } : { status: 200, body: "ok" };
  if (path === "/readyz") {
    if (stalled) return { status: 503, body: stalled };
    return state.ready ? { status: 200, body: "ok" } : { status: 503, body: "policy cache not synced yet" };
  }
  return { status: 404, body: "not found; this port serves GET /healthz and GET /readyz" };
}

// The thread's whole program (CommonJS, no imports from this package): one read, one write.
const THREAD = `
const { parentPort, workerData } = require("node:worker_threads");
const { createServer } = require("node:http");
const shared = new BigInt64Array(workerData.shared);
const answer = ${probeAnswer.toString().replace(/STALL_MS/g, String(STALL_MS))};
const server = createServer((req, res) => {
  req.resume();
  const path = req.method === "GET" ? (req.url || "").split("?", 1)[0] : "";
  const a = answer(path, {
    nowMs: Date.now(),
    lastBeatMs: Number(Atomics.load(shared, ${BEAT})),
    ready: Atomics.load(shared, ${READY}) === 1n,
  });
  res.writeHead(a.status, { "content-type": "text/plain", "content-length": Buffer.byteLength(a.body) });
  res.end(a.body);
});
server.keepAliveTimeout = 1000;
server.headersTimeout = 5000;
server.requestTimeout = 5000;
server.once("error", (err) => parentPort.postMessage({ error: err.code || String(err.message) }));
server.listen(workerData.port, workerData.host, () => parentPort.postMessage({ port: server.address().port }));
parentPort.on("message", (m) => { if (m === "stop") server.close(() => process.exit(0)); server.closeAllConnections(); });
`;

export async function startHealthServer(opts: {
  port: number;
  host?: string;
  isReady: () => boolean;
}): Promise<RunningHealthServer> {
  const shared = new SharedArrayBuffer(16);
  const view = new BigInt64Array(shared);
  const beat = () => {
    Atomics.store(view, BEAT, BigInt(Date.now()));
    Atomics.store(view, READY, opts.isReady() ? 1n : 0n);
  };
  beat();
  const worker = new Worker(THREAD, {
    eval: true,
    workerData: { shared, port: opts.port, host: opts.host ?? "0.0.0.0" },
    // Small: the thread holds one HTTP server and nothing else.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
  });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once("message", (m: { port?: number; error?: string }) => {
      if (m.port) resolve(m.port);
      else
        reject(
          new Error(
            m.error === "EADDRINUSE"
              ? `health port ${opts.port} is already in use; pick another with --health-port`
              : `health port ${opts.port}: ${m.error}`,
          ),
        );
    });
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`the health thread exited (${code}) before listening`)));
  }).catch(async (err: unknown) => {
    await worker.terminate();
    throw err;
  });
  const timer = setInterval(beat, HEARTBEAT_MS);
  timer.unref();
  worker.unref();
  return {
    port,
    async stop() {
      clearInterval(timer);
      const exited = new Promise<void>((r) => worker.once("exit", () => r()));
      worker.postMessage("stop");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      await worker.terminate();
    },
  };
}
