/**
 * Overload benchmark (issue 12): the webhook as its own process behind the real admission
 * listener (client certificate verified), fed a mix of allow-path and require-approval
 * (pending: one GET to the API server) reviews.
 *   1. saturation: closed loop, 32 in flight, --saturation-seconds (default 10);
 *   2. overload: open loop at 3× that throughput for --seconds (default 30); each request is
 *      abandoned at the API server's webhook timeout (12 s), as kube-apiserver does;
 *   3. after: open loop at half the saturation for 10 s.
 * Throughout, /healthz is probed every 500 ms with the kubelet's default 1 s timeout on both the
 * admission port (HTTPS) and the plain-HTTP health port the chart's probes use, and the
 * webhook's RSS is sampled. Prints throughput, p50/p99, timeouts, failed probes, peak RSS and
 * how long the webhook took to answer at its pre-overload latency again.
 *
 * Run: npm run bench:overload   (options: --seconds N, --factor F, --hold S: the gated rule
 * holds each review up to S s for a decision, so gated reviews stay in flight as they do with a
 * slow API server; --rate R: offer R reviews/s in the overload phase instead of factor ×
 * saturation — with a hold, the closed loop measures its 32 slots, not the webhook;
 * --max-in-flight N: the webhook's --max-in-flight-reviews)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request } from "node:https";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { WEBHOOK_TIMEOUT_SECONDS } from "../src/admission/registration.js";
import { ControlPlane } from "../src/controlplane/control-plane.js";
import { createCertificateAuthority, issueCertificate } from "../src/pki/certificates.js";
import { bundleWorker } from "../test/chaos/cluster.js";
import type { WorkerConfig } from "../test/chaos/worker.js";
import { countersignIdentity } from "../test/support/countersign.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "30" },
    "saturation-seconds": { type: "string", default: "10" },
    factor: { type: "string", default: "3" },
    hold: { type: "string", default: "0" },
    rate: { type: "string" },
    "max-in-flight": { type: "string" },
  },
});
const overloadSeconds = Number(values.seconds);
const factor = Number(values.factor);
const INSTALL = "countersign-system";
const AGENTS = "ai-agents";

interface OpenResult {
  offered: number;
  answered: number;
  allowed: number;
  denied: number;
  /** Refused at once because the webhook was at its in-flight cap (decision "overloaded"). */
  shed: number;
  timeouts: number;
  errors: number;
  seconds: number;
  p50: number;
  p99: number;
  max: number;
  perSecond: { answered: number; timeouts: number; errors: number }[];
}

function runWorker<T>(file: string, data: Record<string, unknown>): Promise<T> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(file, import.meta.url), { workerData: data });
    w.once("message", resolve);
    w.once("error", reject);
  });
}

function review(uid: string, namespace: string, name: string): string {
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid,
      kind: { group: "", version: "v1", kind: "ConfigMap" },
      resource: { group: "", version: "v1", resource: "configmaps" },
      namespace,
      name,
      operation: "CREATE",
      userInfo: {
        username: `system:serviceaccount:${AGENTS}:ops-bot`,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${AGENTS}`, "system:authenticated"],
      },
      object: { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data: { k: "v" } },
      oldObject: null,
      dryRun: false,
    },
  });
}

function rssMiB(pid: number): number {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    return kb / 1024;
  } catch {
    return 0;
  }
}

const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "n/a");

async function main(): Promise<void> {
  const cp = await ControlPlane.start({ controllerManager: false });
  let child: ChildProcess | undefined;
  try {
    await cp.ensureNamespace(INSTALL);
    await cp.ensureNamespace("prod");
    await cp.ensureNamespace("dev");
    await countersignIdentity(cp, INSTALL);
    await cp.apply([
      {
        apiVersion: "countersign.io/v1alpha1",
        kind: "ApprovalPolicy",
        metadata: { name: "overload" },
        spec: {
          subjects: { serviceAccounts: [{ namespace: AGENTS }] },
          match: [
            {
              operations: ["CREATE", "UPDATE", "DELETE"],
              apiGroups: [""],
              resources: ["configmaps"],
              namespaces: ["prod"],
            },
          ],
          rules: [
            {
              name: "prod",
              action: "RequireApproval",
              approval: {
                approvers: { groups: ["sre"] },
                ttl: "1h",
                ...(Number(values.hold) > 0 ? { holdSeconds: Number(values.hold) } : {}),
              },
            },
          ],
        },
      } as never,
    ]);
    const ca = await createCertificateAuthority("overload");
    const tls = await issueCertificate(ca, {
      commonName: "overload",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    const files = {
      cert: join(cp.dir, "tls.crt"),
      key: join(cp.dir, "tls.key"),
      clientCa: join(cp.dir, "client-ca.crt"),
    };
    writeFileSync(files.cert, tls.certPem);
    writeFileSync(files.key, tls.keyPem);
    writeFileSync(files.clientCa, cp.webhookClient.ca.certPem);
    const cfg: WorkerConfig = {
      role: "webhook",
      replica: "overload",
      kubeconfigPath: join(cp.dir, "identities", `sa-${INSTALL}-countersign.kubeconfig`),
      installNamespace: INSTALL,
      tlsCertFile: files.cert,
      tlsKeyFile: files.key,
      clientCaFile: files.clientCa,
      ...(values["max-in-flight"] ? { maxInFlightReviews: Number(values["max-in-flight"]) } : {}),
    };
    const bundle = await bundleWorker();
    const proc = spawn(process.execPath, [bundle], {
      env: { ...process.env, CHAOS_WORKER: JSON.stringify(cfg), COUNTERSIGN_LOG_LEVEL: "error" },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    child = proc;
    const { port, healthPort } = await new Promise<{ port: number; healthPort: number }>(
      (resolve, reject) => {
        proc.on("message", (m: { ready?: boolean; admissionPort?: number; healthPort?: number }) => {
          if (m.ready && m.admissionPort && m.healthPort)
            resolve({ port: m.admissionPort, healthPort: m.healthPort });
        });
        proc.once("exit", (code) => reject(new Error(`webhook exited (${code})`)));
      },
    );
    await new Promise((r) => setTimeout(r, 2000)); // the policy reaches the informer
    const clientTls = { cert: cp.webhookClient.client.certPem, key: cp.webhookClient.client.keyPem };
    // Half allow path (dev: no rule), half the pending require-approval path (prod: one GET).
    const bodies = Array.from({ length: 64 }, (_, i) =>
      i % 2 ? review(`a-${i}`, "dev", `cm-${i}`) : review(`p-${i}`, "prod", "pending-one"),
    );

    let peakRss = rssMiB(proc.pid!);
    type Probe = { at: number; ms: number; ok: boolean };
    const probes: Record<"admission" | "health", Probe[]> = { admission: [], health: [] };
    const t0 = performance.now();
    // The kubelet's probe: a new connection each time, a 1 s deadline from the start.
    const probe = (into: Probe[], send: typeof request, p: number) => {
      const started = performance.now();
      let done = false;
      const record = (ok: boolean) => {
        if (done) return;
        done = true;
        into.push({ at: started - t0, ms: performance.now() - started, ok });
      };
      const req = send(
        { host: "127.0.0.1", port: p, path: "/healthz", rejectUnauthorized: false, agent: false },
        (res) => {
          res.resume();
          res.on("end", () => record(res.statusCode === 200));
        },
      );
      const deadline = setTimeout(() => {
        record(false);
        req.destroy();
      }, 1000);
      req.on("close", () => clearTimeout(deadline));
      req.on("error", () => record(false));
      req.end();
    };
    const probeTimer = setInterval(() => {
      peakRss = Math.max(peakRss, rssMiB(proc.pid!));
      probe(probes.admission, request, port);
      probe(probes.health, httpRequest as typeof request, healthPort);
    }, 500);

    const phase = (name: string) => {
      const from = performance.now() - t0;
      return () => {
        const to = performance.now() - t0;
        const of = (list: Probe[]) => {
          const ps = list.filter((p) => p.at >= from && p.at < to);
          return {
            probes: ps.length,
            failedProbes: ps.filter((p) => !p.ok).length,
            maxProbeMs: Math.max(0, ...ps.map((p) => p.ms)),
          };
        };
        return { name, admission: of(probes.admission), health: of(probes.health) };
      };
    };

    const endSat = phase("saturation");
    const saturation = await runWorker<{
      count: number;
      errors: number;
      seconds: number;
      p50: number;
      p99: number;
    }>("./load-worker.mjs", {
      port,
      path: "/validate?timeout=12s",
      bodies,
      mode: "closed",
      rate: 0,
      concurrency: 32,
      durationMs: Number(values["saturation-seconds"]) * 1000,
      clientTls,
    });
    const satProbes = endSat();
    const satRate = saturation.count / saturation.seconds;
    console.log(
      `gated rule hold: ${Number(values.hold)} s; webhook --max-in-flight-reviews: ${values["max-in-flight"] ?? "default"}`,
    );
    console.log(
      `saturation (closed loop, 32 in flight): ${Math.round(satRate)} reviews/s, p50 ${fmt(saturation.p50)} ms, p99 ${fmt(saturation.p99)} ms, errors ${saturation.errors}`,
    );

    const overloadRate = values.rate ? Number(values.rate) : Math.round(satRate * factor);
    const endOver = phase("overload");
    const overload = await runWorker<OpenResult>("./overload-worker.mjs", {
      port,
      path: "/validate?timeout=12s",
      bodies,
      rate: overloadRate,
      durationMs: overloadSeconds * 1000,
      timeoutMs: WEBHOOK_TIMEOUT_SECONDS * 1000,
      clientTls,
      concurrency: 512,
    });
    const overProbes = endOver();
    const endAfter = phase("after");
    const afterT0 = performance.now();
    const after = await runWorker<OpenResult>("./overload-worker.mjs", {
      port,
      path: "/validate?timeout=12s",
      bodies,
      rate: Math.round(satRate / 2),
      durationMs: 10_000,
      timeoutMs: WEBHOOK_TIMEOUT_SECONDS * 1000,
      clientTls,
      concurrency: 64,
    });
    const afterProbes = endAfter();
    clearInterval(probeTimer);
    // Recovery: the first second after the overload with every request answered and no timeouts.
    const firstClean = after.perSecond.findIndex(
      (b) => b && b.timeouts === 0 && b.errors === 0 && b.answered > 0,
    );
    const line = (name: string, r: OpenResult) =>
      `${name}: offered ${r.offered} (${Math.round(r.offered / r.seconds)}/s), answered ${r.answered} (${Math.round(r.answered / r.seconds)}/s; ${r.allowed} allowed, ${r.denied} refused of which ${r.shed} shed), timed out at ${WEBHOOK_TIMEOUT_SECONDS} s: ${r.timeouts}, errors: ${r.errors}; answered p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, max ${fmt(r.max)} ms`;
    console.log(
      line(
        `overload (${values.rate ? `${overloadRate}/s` : `${factor}× saturation`} for ${overloadSeconds} s)`,
        overload,
      ),
    );
    console.log(
      `  per second (answered/timeouts/errors): ${overload.perSecond.map((b) => (b ? `${b.answered}/${b.timeouts}/${b.errors}` : "0/0/0")).join(" ")}`,
    );
    console.log(line("after (½ saturation for 10 s)", after));
    console.log(
      `  recovered (first clean second after the overload): ${firstClean < 0 ? "not within 10 s" : `${firstClean}-${firstClean + 1} s`} (${Math.round(performance.now() - afterT0)} ms measured)`,
    );
    for (const p of [satProbes, overProbes, afterProbes])
      for (const [where, r] of [
        ["admission port (HTTPS)", p.admission],
        ["health port (HTTP)", p.health],
      ] as const)
        console.log(
          `  /healthz on the ${where} during ${p.name}: ${r.probes} probes, ${r.failedProbes} failed (1 s timeout), slowest ${fmt(r.maxProbeMs)} ms`,
        );
    console.log(`webhook peak RSS ${Math.round(peakRss)} MiB; process still up: ${proc.exitCode === null}`);
    console.log(
      `machine: ${readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, ${cpus().length} cores, node ${process.version}`,
    );
  } finally {
    child?.kill("SIGTERM");
    await cp.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
