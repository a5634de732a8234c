// Open-loop load generator for bench/overload.ts, in a worker thread: sends `rate` requests/s
// for durationMs whatever the server does, abandons a request timeoutMs after it was sent
// (what the API server does at its webhook timeout), and reports per-second answers, timeouts and errors.
import { Agent, request } from "node:https";
import { parentPort, workerData } from "node:worker_threads";

const { port, path, bodies, rate, durationMs, timeoutMs, clientTls, concurrency } = workerData;
const agent = new Agent({
  keepAlive: true,
  maxSockets: concurrency,
  rejectUnauthorized: false,
  ...clientTls,
});
const payloads = bodies.map((b) => Buffer.from(b));
let next = 0;
const latencies = [];
const perSecond = [];
let timeouts = 0;
let errors = 0;
let denied = 0;
let allowed = 0;
let shed = 0;
const start = performance.now();

function bucket(t) {
  const i = Math.floor((t - start) / 1000);
  perSecond[i] ??= { answered: 0, timeouts: 0, errors: 0 };
  return perSecond[i];
}

function send() {
  const body = payloads[next++ % payloads.length];
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (kind) => {
      if (done) return;
      done = true;
      const b = bucket(performance.now());
      if (kind === "ok") {
        latencies.push(performance.now() - t0);
        b.answered++;
      } else if (kind === "timeout") {
        timeouts++;
        b.timeouts++;
      } else {
        errors++;
        b.errors++;
      }
      resolve();
    };
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
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode !== 200) return finish("error");
          try {
            const r = JSON.parse(Buffer.concat(chunks).toString()).response;
            if (r.allowed) allowed++;
            else denied++;
            if (r.auditAnnotations?.decision === "overloaded") shed++;
          } catch {
            return finish("error");
          }
          finish("ok");
        });
      },
    );
    // A total deadline from send, as the API server's webhook timeout is (a socket-idle
    // timer would not bound a request still queued for a socket).
    const deadline = setTimeout(() => {
      finish("timeout");
      req.destroy();
    }, timeoutMs);
    req.on("close", () => clearTimeout(deadline));
    req.on("error", () => finish("error"));
    req.end(body);
  });
}

const total = Math.floor((rate * durationMs) / 1000);
const interval = 1000 / rate;
const pending = [];
let i = 0;
await new Promise((resolve) => {
  const tick = () => {
    const now = performance.now();
    while (i < total && start + i * interval <= now) {
      i++;
      pending.push(send());
    }
    if (i < total) setTimeout(tick, 1);
    else resolve();
  };
  tick();
});
await Promise.all(pending);
agent.destroy();
latencies.sort((a, b) => a - b);
const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
parentPort.postMessage({
  offered: total,
  answered: latencies.length,
  allowed,
  denied,
  shed,
  timeouts,
  errors,
  seconds: durationMs / 1000,
  p50: q(0.5),
  p99: q(0.99),
  max: latencies.at(-1) ?? Number.NaN,
  perSecond,
});
