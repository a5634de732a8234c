/**
 * Decision → usable, inside Countersign (issue 13): an agent's Secret DELETE is denied and an
 * ApprovalRequest opened; an approver records Approve (the JSON patch `kubectl approve` sends,
 * through the real API server and Countersign's guard); then
 *   - decision → Approved: from the patch's response to the controller's Approved status, seen
 *     on a watch;
 *   - decision → admitted: from the patch's response to the first admitted retry of the agent,
 *     which retries every 5 ms (what an agent sees end to end, through the webhook's cache).
 * Prints p50 / p99 / max over N requests and the ratio to the 100 ms goal.
 *
 * Run: npm run bench:decision   (options: --count N, default 40)
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  Watch,
} from "@kubernetes/client-node";
import { decisionEntry } from "../src/approvals/request.js";
import { ControlPlane } from "../src/controlplane/control-plane.js";
import { type ApprovalRequest, DecisionKind } from "../src/resources/approval-request.js";
import { CountersignClient } from "../src/resources/client.js";
import { API_GROUP, API_VERSION, APPROVAL_REQUEST_PLURAL } from "../src/resources/group.js";
import {
  approverIdentity,
  eventually,
  grantServiceAccount,
  startTestCountersign,
} from "../test/support/countersign.js";

const GOAL_MS = 100;
const { values } = parseArgs({ options: { count: { type: "string", default: "40" } } });
const count = Number(values.count);
const ns = "prod";

function quantiles(xs: number[]): { p50: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
  return { p50: q(0.5), p99: q(0.99), max: s.at(-1) ?? Number.NaN };
}

async function deleteSecret(
  agent: KubeConfig,
  name: string,
): Promise<{ admitted: boolean; message: string }> {
  try {
    await agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name, namespace: ns });
    return { admitted: true, message: "" };
  } catch (err) {
    const body = (err as { body?: string }).body ?? String(err);
    return { admitted: false, message: typeof body === "string" ? body : JSON.stringify(body) };
  }
}

async function main(): Promise<void> {
  const cp = await ControlPlane.start();
  try {
    await cp.ensureNamespace(ns);
    await cp.ensureNamespace("ai-agents");
    const agentId = await cp.serviceAccountIdentity("ai-agents", "ops-bot");
    await grantServiceAccount(
      cp,
      ns,
      { namespace: "ai-agents", name: "ops-bot" },
      ["secrets"],
      ["get", "delete"],
    );
    const alice = await approverIdentity(cp, "alice@example.com", ["sre"]);
    await cp.apply([
      {
        apiVersion: "countersign.io/v1alpha1",
        kind: "ApprovalPolicy",
        metadata: { name: "secret-deletes" },
        spec: {
          subjects: { serviceAccounts: [{ namespace: "ai-agents" }] },
          match: [{ operations: ["DELETE"], apiGroups: [""], resources: ["secrets"] }],
          rules: [
            {
              name: "approve-deletes",
              action: "RequireApproval",
              approval: { approvers: { users: ["alice@example.com"] }, maxOpenRequests: 1000 },
            },
          ],
        },
      } as never,
    ]);
    const cs = await startTestCountersign(cp, {
      subjects: { serviceAccountNamespaces: ["ai-agents"] },
    });
    const me = (
      await alice.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
        body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
      })
    ).status!.userInfo!;
    const custom = alice.makeApiClient(CustomObjectsApi);
    const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);

    // First time each request is seen Approved on a watch.
    const approvedAt = new Map<string, number>();
    const watch = await new Watch(cp.adminKubeConfig()).watch(
      `/apis/${API_GROUP}/${API_VERSION}/namespaces/${ns}/${APPROVAL_REQUEST_PLURAL}`,
      {},
      (_type, ar: ApprovalRequest) => {
        if (ar.status?.phase === "Approved" && !approvedAt.has(ar.metadata.name))
          approvedAt.set(ar.metadata.name, performance.now());
      },
      () => {},
    );

    const toApproved: number[] = [];
    const toAdmitted: number[] = [];
    for (let i = 0; i < count; i++) {
      const secret = `bench-${i}`;
      await core.createNamespacedSecret({
        namespace: ns,
        body: { metadata: { name: secret }, stringData: { k: "v" } },
      });
      const first = await deleteSecret(agentId.kubeConfig, secret);
      const name = first.message.match(/ApprovalRequest prod\/([a-z0-9.-]+)/)?.[1];
      if (first.admitted || !name)
        throw new Error(`expected a pending request, got ${first.message.slice(0, 300)}`);
      const pending = await eventually(
        async () => {
          const ar = await new CountersignClient(custom).approvalRequests.get(ns, name);
          return ar?.status?.phase === "Pending" ? ar : undefined;
        },
        20_000,
        "Pending",
      );
      await new CountersignClient(custom).approvalRequests.appendDecision(
        pending,
        decisionEntry(me, DecisionKind.Approve, "bench", "kubectl", new Date()),
      );
      const decided = performance.now();
      let admitted = false;
      while (!admitted && performance.now() - decided < 20_000) {
        admitted = (await deleteSecret(agentId.kubeConfig, secret)).admitted;
        if (!admitted) await new Promise((r) => setTimeout(r, 5));
      }
      if (!admitted) throw new Error(`${name} was not admitted within 20 s of the decision`);
      toAdmitted.push(performance.now() - decided);
      await eventually(async () => approvedAt.has(name), 20_000, "seen Approved");
      toApproved.push(approvedAt.get(name)! - decided);
    }
    watch.abort();
    const a = quantiles(toApproved);
    const b = quantiles(toAdmitted);
    const fmt = (n: number) => n.toFixed(1);
    console.table({
      "decision → Approved (controller status, on a watch)": {
        n: count,
        "p50 ms": fmt(a.p50),
        "p99 ms": fmt(a.p99),
        "max ms": fmt(a.max),
      },
      "decision → agent's retry admitted (every 5 ms)": {
        n: count,
        "p50 ms": fmt(b.p50),
        "p99 ms": fmt(b.p99),
        "max ms": fmt(b.max),
      },
    });
    console.log(
      `decision → Approved p99 ${fmt(a.p99)} ms = ${((100 * a.p99) / GOAL_MS).toFixed(0)}% of the ${GOAL_MS} ms goal; decision → admitted p99 ${fmt(b.p99)} ms`,
    );
    console.log(
      `machine: ${readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, node ${process.version}; load average at the end ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")} (the machine is shared: compare runs at similar loads)`,
    );
    await cs.stop();
  } finally {
    await cp.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
