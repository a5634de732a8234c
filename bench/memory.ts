/**
 * Memory of the webhook with many pending ApprovalRequests in its informer (issue 13: 10,000
 * pending, goal < 150 MiB RSS). Creates N realistic pending requests (built by the gate's own
 * code: summary, diff, fingerprint) in a real API server, then starts the webhook (admission
 * listener, policy cache, ApprovalRequest informer) in a fresh child process twice, with 0 and
 * with N requests present, and reports each child's RSS and heap after its informers synced
 * and a full GC. Prints the ratio to the goal.
 *
 * The child runs the compiled build (bench/memory-child.mjs, no tsx: tsx alone adds ~76 MiB).
 * Run: npm run bench:memory   (options: --count N, default 10000; --builds dist,OTHER to compare
 * builds, e.g. `git worktree` of an older commit built with `tsc -p tsconfig.build.json --outDir`)
 */
import { fork } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { actionIdentity, fingerprintOf, transitionOf } from "../src/approvals/fingerprint.js";
import { approvalRequestName, buildApprovalRequest } from "../src/approvals/request.js";
import { ControlPlane } from "../src/controlplane/control-plane.js";
import type { AdmissionRequest } from "../src/resources/admission.js";
import { API_GROUP, API_VERSION, APPROVAL_REQUEST_PLURAL } from "../src/resources/group.js";
import { benchPolicies } from "./policies.js";

const GOAL_MIB = 150;
const { values } = parseArgs({
  options: {
    count: { type: "string", default: "10000" },
    /** Compiled builds to compare, comma-separated directories (e.g. one built from an older commit). */
    builds: { type: "string", default: "dist" },
  },
});

interface Sample {
  rssMiB: number;
  heapUsedMiB: number;
  requests: number;
  syncSeconds: number;
}

/** A fresh webhook process from `build` (compiled JavaScript, as production runs it): its memory once synced. */
function measureChild(build: string, kubeconfigPath: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const p = fork(new URL("./memory-child.mjs", import.meta.url).pathname, [build, kubeconfigPath], {
      execArgv: ["--expose-gc"],
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
  const count = Number(values.count);
  const cp = await ControlPlane.start();
  try {
    await cp.ensureNamespace("countersign-system");
    await cp.ensureNamespace("prod");
    await cp.apply(benchPolicies(10) as never);
    const kcPath = join(tmpdir(), `countersign-bench-memory-${process.pid}.kubeconfig`);
    writeFileSync(kcPath, cp.adminKubeConfig().exportConfig(), { mode: 0o600 });
    const builds = values.builds.split(",");
    const empty = new Map<string, Sample>();
    for (const b of builds) empty.set(b, await measureChild(b, kcPath));
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
    const row = (build: string, s: Sample) => ({
      build,
      "ApprovalRequests in the cluster": s.requests,
      "RSS MiB": s.rssMiB.toFixed(1),
      "heap used MiB": s.heapUsedMiB.toFixed(1),
      "start + informer sync s": s.syncSeconds.toFixed(1),
    });
    const rows = [];
    for (const b of builds) {
      const full = await measureChild(b, kcPath);
      const e = empty.get(b)!;
      rows.push(row(b, e), row(b, full));
      console.log(
        `${b}: webhook RSS with ${full.requests} pending requests: ${full.rssMiB.toFixed(1)} MiB = ${((100 * full.rssMiB) / GOAL_MIB).toFixed(0)}% of the ${GOAL_MIB} MiB goal; ` +
          `${(((full.rssMiB - e.rssMiB) * 1024) / Math.max(1, full.requests - e.requests)).toFixed(1)} KiB RSS and ` +
          `${(((full.heapUsedMiB - e.heapUsedMiB) * 1024) / Math.max(1, full.requests - e.requests)).toFixed(1)} KiB heap per request over the empty cluster's ${e.rssMiB.toFixed(1)} MiB`,
      );
    }
    console.table(rows);
    console.log(
      `machine: ${readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, node ${process.version}; load average at the end ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")} (the machine is shared: compare runs at similar loads)`,
    );
  } finally {
    await cp.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
