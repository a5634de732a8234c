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
import { componentLogger } from "../logging/logger.js";

export const DEFAULT_HEALTH_PORT = 8081;
/** How often the main loop writes its heartbeat. */
export const HEARTBEAT_MS = 500;
/** A main loop silent this long is not alive: /healthz and /readyz answer 503. */
export const STALL_MS = 10_000;
/**
 * Connections the probe thread holds at once. Each costs its small heap (16 MiB) a few KiB:
 * about 5000 idle connections from one pod exhausted it, and the thread died, so the kubelet
 * restarted a healthy webhook (red team 14).
 */
export const MAX_CONNECTIONS = 1000;
/** A probe connection that has not sent a whole request by then, or is idle that long, is closed. */
export const CONNECTION_DEADLINE_MS = 2000;
/** Wait before starting the probe thread again after it ended on its own. */
const RESTART_DELAY_MS = 200;

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
// Every connection costs heap, and anyone who reaches the pod reaches this port: at most
// MAX_CONNECTIONS at once (the excess is dropped on accept), and each one closed within
// CONNECTION_DEADLINE_MS unless it has sent a whole request.
const server = createServer({
  headersTimeout: ${CONNECTION_DEADLINE_MS},
  requestTimeout: ${CONNECTION_DEADLINE_MS},
  connectionsCheckingInterval: ${CONNECTION_DEADLINE_MS / 2},
  keepAliveTimeout: 1000,
}, (req, res) => {
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
server.maxConnections = ${MAX_CONNECTIONS};
server.timeout = ${CONNECTION_DEADLINE_MS};
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
  const log = componentLogger("health");
  const host = opts.host ?? "0.0.0.0";
  let stopped = false;
  let worker = await spawnProbeThread(shared, opts.port, host);
  const port = worker.port;
  // The thread serves probes only; if it ends on its own (it should not), the main loop is still
  // fine: start it again on the same port rather than let the kubelet restart the webhook.
  const supervise = (w: RunningThread) => {
    w.thread.once("exit", (code) => {
      if (stopped) return;
      log.error("the health probe thread ended; starting it again", {
        exitCode: code,
        ...(w.lastError ? { error: w.lastError } : {}),
      });
      const again = () => {
        if (stopped) return;
        spawnProbeThread(shared, port, host).then(
          (next) => {
            if (stopped) {
              void next.thread.terminate();
              return;
            }
            worker = next;
            supervise(next);
          },
          (err: unknown) => {
            log.error("could not start the health probe thread again; retrying", {
              error: err instanceof Error ? err.message : String(err),
            });
            setTimeout(again, 1000).unref();
          },
        );
      };
      setTimeout(again, RESTART_DELAY_MS).unref();
    });
  };
  supervise(worker);
  const timer = setInterval(beat, HEARTBEAT_MS);
  timer.unref();
  return {
    port,
    async stop() {
      stopped = true;
      clearInterval(timer);
      const w = worker.thread;
      const exited = new Promise<void>((r) => w.once("exit", () => r()));
      w.postMessage("stop");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      await w.terminate();
    },
  };
}

interface RunningThread {
  thread: Worker;
  port: number;
  /** The error that ended it, if one did (e.g. its heap ran out). */
  lastError?: string;
}

/** Starts the probe thread listening on `port`; resolves once it listens. */
async function spawnProbeThread(
  shared: SharedArrayBuffer,
  port: number,
  host: string,
): Promise<RunningThread> {
  const worker = new Worker(THREAD, {
    eval: true,
    workerData: { shared, port, host },
    // Small: the thread holds one HTTP server and nothing else.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
  });
  const running: RunningThread = { thread: worker, port };
  // Kept for the whole life of the thread: an 'error' without a listener would throw here.
  worker.on("error", (err) => {
    running.lastError = err.message;
  });
  running.port = await new Promise<number>((resolve, reject) => {
    worker.once("message", (m: { port?: number; error?: string }) => {
      if (m.port) resolve(m.port);
      else
        reject(
          new Error(
            m.error === "EADDRINUSE"
              ? `health port ${port} is already in use; pick another with --health-port`
              : `health port ${port}: ${m.error}`,
          ),
        );
    });
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`the health thread exited (${code}) before listening`)));
  }).catch(async (err: unknown) => {
    await worker.terminate();
    throw err;
  });
  worker.unref();
  return running;
}
