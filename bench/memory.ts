/**
 * Memory of the webhook with many pending ApprovalRequests in its informer (issue 13: 10,000
 * pending, goal < 150 MiB RSS). Creates N realistic pending requests (built by the gate's own
 * code: summary, diff, fingerprint) in a real API server, then starts the webhook (admission
 * listener, policy cache, ApprovalRequest informer) in a fresh child process twice, with 0 and
 * with N requests present, and reports each child's RSS and heap after its informers synced
 * and a full GC. Prints the ratio to the goal.
 *
 * Run: npm run bench:memory   (options: --count N, default 10000)
 */
import { fork } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { actionIdentity, fingerprintOf, transitionOf } from "../src/approvals/fingerprint.js";
import { approvalRequestName, buildApprovalRequest } from "../src/approvals/request.js";
import { ControlPlane } from "../src/controlplane/control-plane.js";
import type { AdmissionRequest } from "../src/resources/admission.js";
import { API_GROUP, API_VERSION, APPROVAL_REQUEST_PLURAL } from "../src/resources/group.js";
import { benchPolicies } from "./policies.js";

const GOAL_MIB = 150;
const { values } = parseArgs({
  options: { count: { type: "string", default: "10000" }, child: { type: "string" } },
});

interface Sample {
  rssMiB: number;
  heapUsedMiB: number;
  requests: number;
  syncSeconds: number;
}

/** The child: start the webhook against the given cluster, wait for its informers, report memory. */
async function child(kubeconfigPath: string): Promise<void> {
  const { startCountersign } = await import("../src/app.js");
  const { createCertificateAuthority, issueCertificate } = await import("../src/pki/certificates.js");
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const ca = await createCertificateAuthority("bench-memory");
  const tls = await issueCertificate(ca, {
    commonName: "bench",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  const started = performance.now();
  const cs = await startCountersign({
    kubeConfig: kc,
    installNamespace: "countersign-system",
    replica: "bench-memory",
    webhook: { tls, admissionPort: 0, admissionAuth: { mode: "network" }, host: "127.0.0.1" },
  });
  const syncSeconds = (performance.now() - started) / 1000;
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 200));
  }
  const m = process.memoryUsage();
  const list = await kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({
    group: API_GROUP,
    version: API_VERSION,
    plural: APPROVAL_REQUEST_PLURAL,
    limit: 1,
  });
  const remaining = Number(
    (list as { metadata?: { remainingItemCount?: number } }).metadata?.remainingItemCount ?? 0,
  );
  const sample: Sample = {
    rssMiB: m.rss / 2 ** 20,
    heapUsedMiB: m.heapUsed / 2 ** 20,
    requests: remaining + ((list as { items: unknown[] }).items.length ?? 0),
    syncSeconds,
  };
  process.send?.(sample);
  await cs.stop();
  process.exit(0);
}

function measureChild(kubeconfigPath: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const p = fork(new URL(import.meta.url).pathname, ["--child", kubeconfigPath], {
      execArgv: ["--import", "tsx", "--expose-gc"],
      env: { ...process.env, COUNTERSIGN_LOG_LEVEL: "warn" },
    });
    p.once("message", (m) => resolve(m as Sample));
    p.once("exit", (code) => (code ? reject(new Error(`child exited ${code}`)) : undefined));
  });
}

/** A distinct pending request per index: agent bot-(i % 100) scaling its own Deployment. */
function pendingRequest(i: number) {
  const name = `app-${i}`;
  const object = (replicas: number) => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: "prod", labels: { app: name, tier: "critical" } },
    spec: {
      replicas,
      template: {
        spec: { containers: [{ name: "api", image: `registry.example.com/team/${name}:1.${i}.0` }] },
      },
    },
  });
  const req: AdmissionRequest = {
    uid: `memory-${i}`,
    kind: { group: "apps", version: "v1", kind: "Deployment" },
    resource: { group: "apps", version: "v1", resource: "deployments" },
    namespace: "prod",
    name,
    operation: "UPDATE",
    userInfo: {
      username: `system:serviceaccount:ai-agents:bot-${i % 100}`,
      uid: `uid-${i % 100}`,
      groups: ["system:serviceaccounts", "system:serviceaccounts:ai-agents", "system:authenticated"],
    },
    object: object(5),
    oldObject: object(2),
  };
  const transition = transitionOf(req);
  const action = actionIdentity(req, transition);
  const rule = { policy: "bench-00", rule: "critical-changes", generation: 1 };
  const fingerprint = fingerprintOf(action, rule);
  const ar = buildApprovalRequest({
    req,
    action,
    fingerprint,
    attempt: 0,
    namespace: "prod",
    rule,
    approval: {
      approvers: { users: [], groups: ["sre"] },
      requiredApprovals: 1,
      ttl: "168h",
      ttlSeconds: 7 * 24 * 3600,
      holdSeconds: 0,
      notify: [],
      maxOpenRequests: 1000,
    },
    now: new Date(),
    transition,
  });
  ar.metadata.name = approvalRequestName(action, fingerprint, 0);
  return ar;
}

async function main(): Promise<void> {
  if (values.child) return child(values.child);
  const count = Number(values.count);
  const cp = await ControlPlane.start();
  try {
    await cp.ensureNamespace("countersign-system");
    await cp.ensureNamespace("prod");
    await cp.apply(benchPolicies(10) as never);
    const kcPath = join(tmpdir(), `countersign-bench-memory-${process.pid}.kubeconfig`);
    writeFileSync(kcPath, cp.adminKubeConfig().exportConfig(), { mode: 0o600 });
    const empty = await measureChild(kcPath);
    const custom = cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        await custom.createNamespacedCustomObject({
          group: API_GROUP,
          version: API_VERSION,
          namespace: "prod",
          plural: APPROVAL_REQUEST_PLURAL,
          body: pendingRequest(i),
        });
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const sample = pendingRequest(0);
    console.log(
      `created ${count} pending ApprovalRequests in ${((performance.now() - t0) / 1000).toFixed(1)} s (${JSON.stringify(sample).length} bytes of JSON each)`,
    );
    const full = await measureChild(kcPath);
    const row = (s: Sample) => ({
      "ApprovalRequests in the cluster": s.requests,
      "RSS MiB": s.rssMiB.toFixed(1),
      "heap used MiB": s.heapUsedMiB.toFixed(1),
      "start + informer sync s": s.syncSeconds.toFixed(1),
    });
    console.table([row(empty), row(full)]);
    console.log(
      `webhook RSS with ${full.requests} pending requests: ${full.rssMiB.toFixed(1)} MiB = ${((100 * full.rssMiB) / GOAL_MIB).toFixed(0)}% of the ${GOAL_MIB} MiB goal; ` +
        `${(((full.rssMiB - empty.rssMiB) * 1024) / Math.max(1, full.requests - empty.requests)).toFixed(1)} KiB per request over the empty cluster's ${empty.rssMiB.toFixed(1)} MiB`,
    );
    console.log(
      `machine: ${readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, node ${process.version}`,
    );
  } finally {
    await cp.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
