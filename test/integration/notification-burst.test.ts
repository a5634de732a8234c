/**
 * Approval fatigue is an attack (issue 10): a burst of requests from one agent reaches the
 * approvers' channel as one message for the first and one summary for the rest, not one
 * message per request. A local HTTPS receiver counts what arrives; a real API server.
 */
import { CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { deleteGuard, requireApproval } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import { eventually, startTestCountersign, type TestCountersign } from "../support/countersign.js";
import {
  agentIdentity,
  applyPolicies,
  approvalRequestsIn,
  type Receiver,
  receiverTls,
  startReceiver,
} from "../support/scenario.js";

const agentsNs = uniqueName("burst-agents");
const ns = uniqueName("burst-prod");
let cp: ControlPlane;
let cs: TestCountersign;
let receiver: Receiver | undefined;
const received = () =>
  (receiver?.received ?? []).map((c) => ({
    event: (JSON.parse(c.body) as { event: string }).event,
    body: c.body,
  }));
const mine = () => received().filter((m) => m.body.includes(ns));
// Wide enough that the five sequential deletes fall in one window on a busy CI machine (a 3 s
// window once caught only 3 of the 4 followers at load 10 on 2 cores).
const BURST_WINDOW_SECONDS = 8;

async function agentDelete(kc: import("@kubernetes/client-node").KubeConfig, name: string): Promise<string> {
  try {
    await kc.makeApiClient(CoreV1Api).deleteNamespacedConfigMap({ name, namespace: ns });
    return "allowed";
  } catch (err) {
    return kubeStatusOf(err)?.message ?? String(err);
  }
}

const requests = () => approvalRequestsIn(cp, ns).list();

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  receiver = await startReceiver(await receiverTls("burst-receiver"));
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: uniqueName("cs-burst"),
    webhookName: uniqueName("countersign-burst"),
    notifications: {
      routes: [{ name: "hook", type: "webhook", url: `${receiver.base}/hook`, caPem: receiver.caPem }],
      defaultRoutes: ["hook"],
      burstWindowSeconds: BURST_WINDOW_SECONDS,
    },
  });
  await applyPolicies(cp, cs, [
    deleteGuard(uniqueName("burst-policy"), {
      agents: agentsNs,
      resource: "configmaps",
      namespace: ns,
      rules: [requireApproval("deletes", { users: ["ops@example.com"] })],
    }),
  ]);
});

afterAll(async () => {
  await cs?.stop();
  await receiver?.close();
});

describe("notification bursts", () => {
  it("announces 5 requests opened in a burst with 2 messages (the first, then one summary of 4), each recorded Sent once", async () => {
    const agent = await agentIdentity(cp, agentsNs, "flooder", {
      target: ns,
      resources: ["configmaps"],
      verbs: ["get", "delete"],
    });
    const admin = cp.adminKubeConfig().makeApiClient(CoreV1Api);
    const names = ["c1", "c2", "c3", "c4", "c5"];
    for (const name of names)
      await admin.createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name }, data: { k: name } },
      });
    // Wait for the webhook to gate (the first refusal opens the first request), then the rest.
    await eventually(
      async () => /needs a human approval/.test(await agentDelete(agent.kubeConfig, "c1")),
      15_000,
      "gated",
    );
    for (const name of names.slice(1))
      expect(await agentDelete(agent.kubeConfig, name)).toMatch(/needs a human approval/);
    expect(await requests()).toHaveLength(5);

    await eventually(
      async () => mine().some((m) => m.event === "RequestedSummary"),
      BURST_WINDOW_SECONDS * 1000 + 20_000,
      "the burst summary",
    );
    const single = mine().filter((m) => m.event === "Requested");
    const summaries = mine().filter((m) => m.event === "RequestedSummary");
    expect(single).toHaveLength(1);
    expect(summaries).toHaveLength(1);
    const summary = JSON.parse(summaries[0]!.body) as { count: number; approvalRequests: { name: string }[] };
    expect(summary.count).toBe(4);
    const firstName = (JSON.parse(single[0]!.body) as { approvalRequest: { name: string } }).approvalRequest
      .name;
    expect(new Set([firstName, ...summary.approvalRequests.map((a) => a.name)])).toEqual(
      new Set((await requests()).map((a) => a.metadata.name)),
    );
    await eventually(
      async () =>
        (await requests()).every((ar) =>
          ar.status?.notifications?.some(
            (n) => n.route === "hook" && n.event === "Requested" && n.state === "Sent",
          ),
        ),
      10_000,
      "every request's notification recorded Sent",
    );
    // Nothing more arrives once the window has passed.
    await new Promise((r) => setTimeout(r, BURST_WINDOW_SECONDS * 1000 + 1000));
    expect(mine()).toHaveLength(2);
  }, 90_000);
});
