// Load generator for bench/e2e.ts, run in a worker thread: an agent (a service-account
// token) PATCHes ConfigMaps through the API server at a fixed rate (open loop: requests go
// out on schedule whether or not earlier ones have been answered). Posts "warm" when the
// warm-up is over, then the result. Plain JS so it needs no loader.
import { Agent, request } from "node:https";
import { parentPort, workerData } from "node:worker_threads";

const { host, port, ca, token, namespace, objects, rate, durationMs, warmupMs } = workerData;
const agent = new Agent({ keepAlive: true, maxSockets: 128, ca });
let counter = 0;

function patch() {
  const name = `bench-${counter % objects}`;
  const body = Buffer.from(JSON.stringify({ data: { n: String(counter++) } }));
  return new Promise((resolve) => {
    const req = request(
      {
        host,
        port,
        path: `/api/v1/namespaces/${namespace}/configmaps/${name}`,
        method: "PATCH",
        agent,
        timeout: 30_000,
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json",
          "content-type": "application/merge-patch+json",
          "content-length": body.length,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode === 200));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(false));
    req.end(body);
  });
}

const latencies = [];
let errors = 0;
// Not sent because more than 2 s of requests were already unanswered: the server is saturated
// (an open loop would otherwise pile up minutes of backlog and spill into the next phase).
let shed = 0;
let inflight = 0;
const maxInflight = Math.max(32, rate * 2);
const start = performance.now();
const total = Math.floor((rate * (durationMs + warmupMs)) / 1000);
const interval = 1000 / rate;
const pending = [];
let i = 0;
let warm = false;
await new Promise((resolve) => {
  const tick = () => {
    const now = performance.now();
    if (!warm && now - start >= warmupMs) {
      warm = true;
      parentPort.postMessage({ warm: true });
    }
    while (i < total && start + i * interval <= now) {
      i++;
      if (inflight >= maxInflight) {
        if (now - start >= warmupMs) shed++;
        continue;
      }
      inflight++;
      const t0 = performance.now();
      pending.push(
        patch().then((ok) => {
          inflight--;
          if (t0 - start >= warmupMs) {
            latencies.push(performance.now() - t0);
            if (!ok) errors++;
          }
        }),
      );
    }
    if (i < total) setTimeout(tick, 1);
    else resolve();
  };
  tick();
});
await Promise.all(pending);
const elapsed = performance.now() - start;
agent.destroy();
latencies.sort((a, b) => a - b);
const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
parentPort.postMessage({
  done: true,
  count: latencies.length,
  errors,
  shed,
  seconds: (elapsed - warmupMs) / 1000,
  p50: q(0.5),
  p99: q(0.99),
  max: latencies.at(-1),
});
