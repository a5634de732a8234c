// Load generator for bench/gate.ts, run in a worker thread (its own event loop, so it
// does not share one with the server under test). Plain JS so it needs no loader.
import { Agent, request } from "node:https";
import { parentPort, workerData } from "node:worker_threads";

const { port, path, bodies, mode, rate, concurrency, durationMs, clientTls } = workerData;
// clientTls: the API server's webhook client certificate, presented like kube-apiserver does.
const agent = new Agent({
  keepAlive: true,
  maxSockets: concurrency,
  rejectUnauthorized: false,
  ...(clientTls ?? {}),
});
const payloads = bodies.map((b) => Buffer.from(b));
let next = 0;

function send() {
  const body = payloads[next++ % payloads.length];
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": body.length },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode === 200));
      },
    );
    req.on("error", () => resolve(false));
    req.end(body);
  });
}

const latencies = [];
const warmupMs = Math.min(1000, durationMs / 5); // connections and JIT warm up; not recorded
let errors = 0;
const start = performance.now();

if (mode === "closed") {
  // As fast as the server answers, `concurrency` requests in flight.
  const loop = async () => {
    while (performance.now() - start < durationMs) {
      const t0 = performance.now();
      const ok = await send();
      if (t0 - start >= warmupMs) latencies.push(performance.now() - t0);
      if (!ok) errors++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
} else {
  // Open loop at `rate` requests/s: requests are sent on schedule whether or not earlier ones
  // have been answered (a timer tick sends every request that is due), so a slow server cannot
  // slow the offered load down. Latency is measured from each request's actual send.
  const total = Math.floor((rate * durationMs) / 1000);
  const interval = 1000 / rate;
  const pending = [];
  let i = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        i++;
        const t0 = performance.now();
        pending.push(
          send().then((ok) => {
            if (t0 - start >= warmupMs) latencies.push(performance.now() - t0);
            if (!ok) errors++;
          }),
        );
      }
      if (i < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  await Promise.all(pending);
}
const elapsed = performance.now() - start;
agent.destroy();
latencies.sort((a, b) => a - b);
const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
parentPort.postMessage({
  count: latencies.length,
  errors,
  seconds: (elapsed - warmupMs) / 1000,
  p50: q(0.5),
  p99: q(0.99),
  max: latencies.at(-1),
});
