/**
 * Approval fatigue is an attack (issue 10): a burst of requests from one agent reaches the
 * approvers' channel as one message for the first and one summary for the rest, not one
 * message per request. A local HTTPS receiver counts what arrives; a real API server.
 */
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { createCertificateAuthority, issueCertificate } from "../../src/pki/certificates.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  eventually,
  grantServiceAccount,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";

const agentsNs = uniqueName("burst-agents");
const ns = uniqueName("burst-prod");
let cp: ControlPlane;
let cs: TestCountersign;
let server: ReturnType<typeof createServer>;
const received: { event: string; body: string }[] = [];
const mine = () => received.filter((m) => m.body.includes(ns));

async function agentDelete(kc: import("@kubernetes/client-node").KubeConfig, name: string): Promise<string> {
  try {
    await kc.makeApiClient(CoreV1Api).deleteNamespacedConfigMap({ name, namespace: ns });
    return "allowed";
  } catch (err) {
    return kubeStatusOf(err)?.message ?? String(err);
  }
}

async function requests(): Promise<ApprovalRequest[]> {
  return (
    (await cp.adminKubeConfig().makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
      group: "countersign.io",
      version: "v1alpha1",
      namespace: ns,
      plural: "approvalrequests",
    })) as { items: ApprovalRequest[] }
  ).items;
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const ca = await createCertificateAuthority("burst-receiver");
  const tls = await issueCertificate(ca, {
    commonName: "receiver",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      received.push({ event: (JSON.parse(body) as { event: string }).event, body });
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: uniqueName("cs-burst"),
    webhookName: uniqueName("countersign-burst"),
    notifications: {
      routes: [{ name: "hook", type: "webhook", url, caPem: ca.certPem }],
      defaultRoutes: ["hook"],
      burstWindowSeconds: 3,
    },
  });
  const policy = uniqueName("burst-policy");
  await cp.apply([
    {
      apiVersion: "countersign.io/v1alpha1",
      kind: "ApprovalPolicy",
      metadata: { name: policy },
      spec: {
        subjects: { serviceAccounts: [{ namespace: agentsNs }] },
        match: [{ operations: ["DELETE"], apiGroups: [""], resources: ["configmaps"], namespaces: [ns] }],
        rules: [
          {
            name: "deletes",
            action: "RequireApproval",
            approval: { approvers: { users: ["ops@example.com"] } },
          },
        ],
      },
    } as never,
  ]);
  await eventually(
    async () => cs.replicas[0]!.policies.list().some((p) => p.name === policy),
    10_000,
    "policy",
  );
});

afterAll(async () => {
  await cs?.stop();
  server?.close();
});

describe("notification bursts", () => {
  it("announces 5 requests opened in a burst with 2 messages (the first, then one summary of 4), each recorded Sent once", async () => {
    const agent = await cp.serviceAccountIdentity(agentsNs, "flooder");
    await grantServiceAccount(
      cp,
      ns,
      { namespace: agentsNs, name: "flooder" },
      ["configmaps"],
      ["get", "delete"],
    );
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
      15_000,
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
    await new Promise((r) => setTimeout(r, 4000));
    expect(mine()).toHaveLength(2);
  });
});
