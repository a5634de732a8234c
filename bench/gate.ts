/**
 * Gate benchmark: AdmissionReviews over HTTPS to the real Countersign admission listener
 * (presenting the API server's webhook client certificate, verified by the listener), with
 * 50 policies / 200 rules loaded through a real API server, beside a no-op HTTPS handler
 * measured in the same run. Prints p50/p99 latency and throughput for:
 *   - the no-op handler (the ceiling on this machine),
 *   - the allow path (a covered agent doing something no rule gates),
 *   - the require-approval path (a pending ApprovalRequest, read from the webhook's informer),
 *   - the cost of a TLS handshake on the admission port with and without the client certificate.
 *
 * Run: npm run bench:gate   (options: --seconds N, --rate R for the open-loop allow run)
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { connect } from "node:tls";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { startCountersign } from "../src/app.js";
import { ControlPlane } from "../src/controlplane/control-plane.js";
import { createCertificateAuthority, issueCertificate } from "../src/pki/certificates.js";
import { benchPolicies, review } from "./policies.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    rate: { type: "string", default: "1000" },
    covering: { type: "string", default: "10" },
  },
});
const seconds = Number(values.seconds);
const rate = Number(values.rate);
/** How many of the 50 policies cover the benchmark's agent (each adds 6 CEL evaluations). */
const covering = Number(values.covering);

interface LoadResult {
  count: number;
  errors: number;
  seconds: number;
  p50: number;
  p99: number;
  max: number;
}

function load(
  port: number,
  path: string,
  bodies: string[],
  mode: "closed" | "open",
  opts: { rate?: number; concurrency: number; clientTls?: { cert: string; key: string } },
): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL("./load-worker.mjs", import.meta.url), {
      workerData: {
        port,
        path,
        bodies,
        mode,
        rate: opts.rate ?? 0,
        concurrency: opts.concurrency,
        durationMs: seconds * 1000,
        clientTls: opts.clientTls,
      },
    });
    w.once("message", resolve);
    w.once("error", reject);
  });
}

const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "n/a");
const row = (name: string, r: LoadResult) => ({
  scenario: name,
  requests: r.count,
  errors: r.errors,
  "req/s": Math.round(r.count / r.seconds),
  "p50 ms": fmt(r.p50),
  "p99 ms": fmt(r.p99),
  "max ms": fmt(r.max),
});

/** Median and p99 of `n` sequential full TLS handshakes (no session reuse), in ms. */
async function handshakes(
  port: number,
  n: number,
  clientTls: { cert: string; key: string } | undefined,
): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...(clientTls ?? {}) }, () => {
        times.push(performance.now() - t0);
        s.destroy();
        resolve();
      });
      s.on("error", reject);
    });
  }
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(n / 2)]!, p99: times[Math.floor(n * 0.99)]! };
}

async function main(): Promise<void> {
  const cp = await ControlPlane.start();
  try {
    await cp.ensureNamespace("countersign-system");
    await cp.ensureNamespace("prod");
    await cp.apply(benchPolicies(covering) as never);
    const ca = await createCertificateAuthority("bench");
    const tls = await issueCertificate(ca, {
      commonName: "bench",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    const apiServer = { cert: cp.webhookClient.client.certPem, key: cp.webhookClient.client.keyPem };
    // The webhook role alone: the gate's hot path, no controller.
    const cs = await startCountersign({
      kubeConfig: cp.adminKubeConfig(),
      installNamespace: "countersign-system",
      replica: "bench",
      webhook: {
        tls,
        admissionPort: 0,
        admissionAuth: { mode: "client-cert", clientCaPem: cp.webhookClient.ca.certPem },
        host: "127.0.0.1",
      },
    });
    const deadline = Date.now() + 15_000;
    while (cs.policies.list().length < 50 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    console.log(
      `policies compiled: ${cs.policies.list().length}, rules: ${cs.policies.list().reduce((n, p) => n + p.rules.length, 0)}, covering the agent: ${covering} (${covering * 6} CEL evaluations per allowed request)`,
    );

    // The no-op handler: reads the body, answers a fixed AdmissionReview.
    const noop = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
      req.resume();
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        res.end(
          '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"x","allowed":true}}',
        );
      });
    });
    await new Promise<void>((r) => noop.listen(0, "127.0.0.1", () => r()));
    const noopPort = (noop.address() as AddressInfo).port;

    const allowBodies = Array.from({ length: 64 }, (_, i) => review(`allow-${i}`, {}));
    // tier=critical → RequireApproval on every covering policy; the same action every time, so
    // after the first request this is the "pending: deny, naming the request" path.
    const critical = JSON.parse(allowBodies[0]!).request.object;
    critical.metadata.labels.tier = "critical";
    const approvalBodies = Array.from({ length: 64 }, (_, i) => review(`approve-${i}`, { object: critical }));
    // Sanity: the paths really are what they claim.
    const check = async (body: string) => {
      const { request } = await import("node:https");
      return new Promise<string>((resolve) => {
        const req = request(
          {
            host: "127.0.0.1",
            port: cs.webhook!.admissionPort,
            path: "/validate",
            method: "POST",
            rejectUnauthorized: false,
            ...apiServer,
            headers: { "content-type": "application/json" },
          },
          (res) => {
            let d = "";
            res.on("data", (c) => (d += c));
            res.on("end", () => resolve(d));
          },
        );
        req.end(body);
      });
    };
    const allowOut = JSON.parse(await check(allowBodies[0]!)).response;
    const approvalOut = JSON.parse(await check(approvalBodies[0]!)).response;
    if (allowOut.allowed !== true) throw new Error(`allow path not allowed: ${JSON.stringify(allowOut)}`);
    if (approvalOut.allowed !== false || !/needs a human approval/.test(approvalOut.status?.message)) {
      throw new Error(`approval path unexpected: ${JSON.stringify(approvalOut)}`);
    }

    const results = [];
    const noopMax = await load(noopPort, "/", allowBodies, "closed", { concurrency: 16 });
    results.push(row("no-op HTTPS handler, max throughput", noopMax));
    const port = cs.webhook!.admissionPort;
    const allowMax = await load(port, "/validate", allowBodies, "closed", {
      concurrency: 16,
      clientTls: apiServer,
    });
    results.push(row("allow path, max throughput", allowMax));
    const allowOpen = await load(port, "/validate", allowBodies, "open", {
      rate,
      concurrency: 64,
      clientTls: apiServer,
    });
    results.push(row(`allow path, open loop at ${rate}/s`, allowOpen));
    const noopOpen = await load(noopPort, "/", allowBodies, "open", { rate, concurrency: 64 });
    results.push(row(`no-op handler, open loop at ${rate}/s`, noopOpen));
    const approvalMax = await load(port, "/validate", approvalBodies, "closed", {
      concurrency: 16,
      clientTls: apiServer,
    });
    results.push(row("require-approval path (pending), max throughput", approvalMax));
    const approvalOpen = await load(port, "/validate", approvalBodies, "open", {
      rate: 200,
      concurrency: 64,
      clientTls: apiServer,
    });
    results.push(row("require-approval path, open loop at 200/s", approvalOpen));
    console.table(results);
    // The API server keeps connections to webhooks alive, so a handshake is paid per
    // connection, not per review; this is what verifying its client certificate adds to one.
    const withCert = await handshakes(port, 200, apiServer);
    const withoutCert = await handshakes(port, 200, undefined);
    console.log(
      `TLS handshake on the admission port: with the API server's client certificate p50 ${fmt(withCert.p50)} ms / p99 ${fmt(withCert.p99)} ms; without one p50 ${fmt(withoutCert.p50)} ms / p99 ${fmt(withoutCert.p99)} ms`,
    );
    const ratio = allowMax.count / allowMax.seconds / (noopMax.count / noopMax.seconds);
    console.log(`allow-path throughput = ${(100 * ratio).toFixed(1)}% of the no-op handler's (target ≥ 50%)`);
    console.log(
      `allow-path p99 at ${rate}/s = ${fmt(allowOpen.p99)} ms (goal < 1 ms; no-op handler ${fmt(noopOpen.p99)} ms, ratio ${(allowOpen.p99 / noopOpen.p99).toFixed(2)})`,
    );
    const approvalRate = approvalMax.count / approvalMax.seconds;
    console.log(
      `require-approval (pending) saturation = ${Math.round(approvalRate)} req/s = ${(100 * (approvalRate / 2000)).toFixed(0)}% of the 2,000 req/s goal, ${(100 * (approvalRate / (noopMax.count / noopMax.seconds))).toFixed(1)}% of the no-op handler's`,
    );
    console.log(
      `require-approval p99 at 200/s = ${fmt(approvalOpen.p99)} ms (goal < 5 ms, ratio ${(approvalOpen.p99 / 5).toFixed(2)})`,
    );
    console.log(
      `load average while measuring (other processes on the machine): ${(await import("node:os"))
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}`,
    );
    console.log(
      `machine: ${readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, ${(await import("node:os")).cpus().length} cores, node ${process.version}`,
    );
    noop.close();
    await cs.stop();
  } finally {
    await cp.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
