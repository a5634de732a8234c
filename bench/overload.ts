/**
 * Overload benchmark (issue 12): the webhook as its own process behind the real admission
 * listener (client certificate verified), fed a mix of allow-path and require-approval
 * (pending: one GET to the API server) reviews.
 *   1. saturation: closed loop, 32 in flight, --saturation-seconds (default 10);
 *   2. overload: open loop at 3× that throughput for --seconds (default 30); each request is
 *      abandoned at the API server's webhook timeout (12 s), as kube-apiserver does;
 *   3. after: open loop at half the saturation for 10 s.
 * Throughout, /healthz is probed every 500 ms with the kubelet's default 1 s timeout, and the
 * webhook's RSS is sampled. Prints throughput, p50/p99, timeouts, failed probes, peak RSS and
 * how long the webhook took to answer at its pre-overload latency again.
 *
 * Run: npm run bench:overload   (options: --seconds N, --factor F)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
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
              approval: { approvers: { groups: ["sre"] }, ttl: "1h" },
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
    };
    const bundle = await bundleWorker();
    const proc = spawn(process.execPath, [bundle], {
      env: { ...process.env, CHAOS_WORKER: JSON.stringify(cfg), COUNTERSIGN_LOG_LEVEL: "error" },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    child = proc;
    const port = await new Promise<number>((resolve, reject) => {
      proc.on("message", (m: { ready?: boolean; admissionPort?: number }) => {
        if (m.ready && m.admissionPort) resolve(m.admissionPort);
      });
      proc.once("exit", (code) => reject(new Error(`webhook exited (${code})`)));
    });
    await new Promise((r) => setTimeout(r, 2000)); // the policy reaches the informer
    const clientTls = { cert: cp.webhookClient.client.certPem, key: cp.webhookClient.client.keyPem };
    // Half allow path (dev: no rule), half the pending require-approval path (prod: one GET).
    const bodies = Array.from({ length: 64 }, (_, i) =>
      i % 2 ? review(`a-${i}`, "dev", `cm-${i}`) : review(`p-${i}`, "prod", "pending-one"),
    );

    let peakRss = rssMiB(proc.pid!);
    const probes: { at: number; ms: number; ok: boolean }[] = [];
    const t0 = performance.now();
    const probeTimer = setInterval(() => {
      peakRss = Math.max(peakRss, rssMiB(proc.pid!));
      const started = performance.now();
      const req = request(
        { host: "127.0.0.1", port, path: "/healthz", rejectUnauthorized: false, timeout: 1000 },
        (res) => {
          res.resume();
          res.on("end", () =>
            probes.push({ at: started - t0, ms: performance.now() - started, ok: res.statusCode === 200 }),
          );
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", () => probes.push({ at: started - t0, ms: performance.now() - started, ok: false }));
      req.end();
    }, 500);

    const phase = (name: string) => {
      const from = performance.now() - t0;
      return () => {
        const to = performance.now() - t0;
        const ps = probes.filter((p) => p.at >= from && p.at < to);
        return {
          name,
          probes: ps.length,
          failedProbes: ps.filter((p) => !p.ok).length,
          maxProbeMs: Math.max(0, ...ps.map((p) => p.ms)),
        };
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
      `saturation (closed loop, 32 in flight): ${Math.round(satRate)} reviews/s, p50 ${fmt(saturation.p50)} ms, p99 ${fmt(saturation.p99)} ms, errors ${saturation.errors}`,
    );

    const endOver = phase("overload");
    const overload = await runWorker<OpenResult>("./overload-worker.mjs", {
      port,
      path: "/validate?timeout=12s",
      bodies,
      rate: Math.round(satRate * factor),
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
      `${name}: offered ${r.offered} (${Math.round(r.offered / r.seconds)}/s), answered ${r.answered} (${Math.round(r.answered / r.seconds)}/s; ${r.allowed} allowed, ${r.denied} refused), timed out at ${WEBHOOK_TIMEOUT_SECONDS} s: ${r.timeouts}, errors: ${r.errors}; answered p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, max ${fmt(r.max)} ms`;
    console.log(line(`overload (${factor}× saturation for ${overloadSeconds} s)`, overload));
    console.log(
      `  per second (answered/timeouts/errors): ${overload.perSecond.map((b) => (b ? `${b.answered}/${b.timeouts}/${b.errors}` : "0/0/0")).join(" ")}`,
    );
    console.log(line("after (½ saturation for 10 s)", after));
    console.log(
      `  recovered (first clean second after the overload): ${firstClean < 0 ? "not within 10 s" : `${firstClean}-${firstClean + 1} s`} (${Math.round(performance.now() - afterT0)} ms measured)`,
    );
    for (const p of [satProbes, overProbes, afterProbes])
      console.log(
        `  /healthz during ${p.name}: ${p.probes} probes, ${p.failedProbes} failed (1 s timeout), slowest ${fmt(p.maxProbeMs)} ms`,
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
