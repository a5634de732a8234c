/**
 * The approval HTTP API through the real API server: bearer tokens checked with TokenReview,
 * every call authorized as the caller, decisions under the same rules as kubectl approve.
 */
import { request } from "node:https";
import { CoreV1Api, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  APPROVER_CLUSTER_ROLE,
  approverIdentity,
  eventually,
  grantServiceAccount,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";

const agentsNs = uniqueName("api-agents");
const humans = uniqueName("api-humans");
const ns = uniqueName("api-prod");
let cp: ControlPlane;
let cs: TestCountersign;
let agentToken: string;
let frankToken: string; // approver with RBAC
let graceToken: string; // in the approvers' namespace, lacks RBAC approve
let arName: string;

function call(
  method: string,
  path: string,
  token?: string,
  body?: string,
): Promise<{
  status: number;
  json: { error?: { message: string; reason?: string } } & Record<string, unknown>;
}> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: cs.replicas[0]!.apiPort,
        path: `/api/v1${path}`,
        method,
        rejectUnauthorized: false,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
      },
      (res) => {
        let d = "";
        res.on("data", (c) => (d += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, json: d ? JSON.parse(d) : {} }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const agent = await cp.serviceAccountIdentity(agentsNs, "bot");
  agentToken = agent.token;
  frankToken = (await cp.serviceAccountIdentity(humans, "frank")).token;
  graceToken = (await cp.serviceAccountIdentity(humans, "grace")).token;
  await approverIdentity(cp, "placeholder@example.com", []); // ensures the approver ClusterRole exists
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: uniqueName("api-frank") },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: APPROVER_CLUSTER_ROLE },
      subjects: [{ kind: "ServiceAccount", name: "frank", namespace: humans }],
    },
  });
  await grantServiceAccount(cp, ns, { namespace: agentsNs, name: "bot" }, ["configmaps"], ["get", "delete"]);
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: uniqueName("cs-api"),
    webhookName: "countersign-api-test",
  });
  const policy = uniqueName("api-policy");
  await cp.apply([
    {
      apiVersion: "countersign.io/v1alpha1",
      kind: "ApprovalPolicy",
      metadata: { name: policy },
      spec: {
        subjects: { serviceAccounts: [{ namespace: agentsNs }] },
        match: [{ operations: ["DELETE"], apiGroups: [""], resources: ["configmaps"], namespaces: [ns] }],
        // The agent itself is listed as an approver too: only the self-approval rule stops it.
        rules: [
          {
            name: "deletes",
            action: "RequireApproval",
            approval: {
              approvers: { groups: [`system:serviceaccounts:${humans}`], users: [agent.username] },
            },
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
  await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "cfg" }, data: { a: "b" } } });
  const message = await eventually(
    async () => {
      try {
        await agent.kubeConfig
          .makeApiClient(CoreV1Api)
          .deleteNamespacedConfigMap({ name: "cfg", namespace: ns });
        return undefined;
      } catch (err) {
        const m = kubeStatusOf(err)?.message ?? "";
        return /needs a human approval/.test(m) ? m : undefined;
      }
    },
    15_000,
    "gated",
  );
  arName = /kubectl approve (\S+) -n/.exec(message)![1]!;
  await eventually(
    async () =>
      (await call("GET", `/namespaces/${ns}/approvalrequests/${arName}`, frankToken)).json.phase ===
      "Pending",
    10_000,
    "Pending",
  );
});

afterAll(async () => {
  await cs?.stop();
});

describe("the approval HTTP API", () => {
  it("serves its OpenAPI document", async () => {
    const r = await call("GET", "/openapi.json");
    expect(r.status).toBe(200);
    expect(Object.keys(r.json.paths as object)).toContain(
      "/namespaces/{namespace}/approvalrequests/{name}/approve",
    );
  });

  it("refuses requests without a valid Kubernetes token", async () => {
    const none = await call("GET", "/approvalrequests");
    expect(none.status).toBe(401);
    expect(none.json.error?.message).toMatch(/Authorization: Bearer/);
    expect((await call("GET", "/approvalrequests", "not-a-token")).status).toBe(401);
  });

  it("lists and reads as the caller, with RBAC", async () => {
    const list = await call("GET", `/approvalrequests?namespace=${ns}&phase=Pending`, frankToken);
    expect(list.status).toBe(200);
    expect((list.json.items as { name: string }[]).map((i) => i.name)).toContain(arName);
    const agentList = await call("GET", `/approvalrequests?namespace=${ns}`, agentToken);
    expect(agentList.status).toBe(403);
    expect(agentList.json.error?.message).toMatch(/may not list approvalrequests/);
  });

  it("a token without RBAC approve gets 403 with the reason; the requester's own token cannot approve", async () => {
    const grace = await call(
      "POST",
      `/namespaces/${ns}/approvalrequests/${arName}/approve`,
      graceToken,
      "{}",
    );
    expect(grace.status).toBe(403);
    expect(grace.json.error?.message).toMatch(/lacks RBAC verb "approve"/);
    expect(grace.json.error?.reason).toBe("needs-rbac");
    const self = await call(
      "POST",
      `/namespaces/${ns}/approvalrequests/${arName}/approve`,
      agentToken,
      JSON.stringify({ reason: "trust me" }),
    );
    expect(self.status).toBe(403);
    expect(self.json.error?.message).toMatch(/nobody decides their own request/);
    expect(self.json.error?.reason).toBe("self");
    const bad = await call(
      "POST",
      `/namespaces/${ns}/approvalrequests/${arName}/approve`,
      frankToken,
      "{oops",
    );
    expect(bad.status).toBe(400);
  });

  it("another agent under the same policy cannot approve through the API, even with RBAC approve", async () => {
    const helper = await cp.serviceAccountIdentity(agentsNs, "helper");
    await cp
      .adminKubeConfig()
      .makeApiClient(RbacAuthorizationV1Api)
      .createClusterRoleBinding({
        body: {
          metadata: { name: uniqueName("api-helper") },
          roleRef: {
            apiGroup: "rbac.authorization.k8s.io",
            kind: "ClusterRole",
            name: APPROVER_CLUSTER_ROLE,
          },
          subjects: [{ kind: "ServiceAccount", name: "helper", namespace: agentsNs }],
        },
      });
    const covered = await call(
      "POST",
      `/namespaces/${ns}/approvalrequests/${arName}/approve`,
      helper.token,
      JSON.stringify({ reason: "looks fine to me" }),
    );
    expect(covered.status).toBe(403);
    expect(covered.json.error?.reason).toBe("covered-subject");
    expect(covered.json.error?.message).toMatch(
      /is covered by ApprovalPolicy .*subjects under approval never decide/,
    );
  });

  it("a valid approver can approve, the decision names them, and the action then goes through once", async () => {
    const ok = await call(
      "POST",
      `/namespaces/${ns}/approvalrequests/${arName}/approve`,
      frankToken,
      JSON.stringify({ reason: "ticket 7" }),
    );
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    const decisions = (
      ok.json.approvalRequest as { decisions: { approver: string; via: string; reason: string }[] }
    ).decisions;
    expect(decisions).toEqual([
      expect.objectContaining({
        approver: `system:serviceaccount:${humans}:frank`,
        via: "api",
        reason: "ticket 7",
      }),
    ]);
    const again = await call("POST", `/namespaces/${ns}/approvalrequests/${arName}/deny`, frankToken, "{}");
    expect(again.status).toBe(409);
    await eventually(
      async () =>
        (await call("GET", `/namespaces/${ns}/approvalrequests/${arName}`, frankToken)).json.phase ===
        "Approved",
      10_000,
      "Approved",
    );
    const agentKc = (await cp.serviceAccountIdentity(agentsNs, "bot")).kubeConfig;
    await agentKc.makeApiClient(CoreV1Api).deleteNamespacedConfigMap({ name: "cfg", namespace: ns });
  });
});

describe("metrics", () => {
  it("exports admission latency by decision, decisions by policy, pending requests and time to decision", async () => {
    const { startMetricsServer } = await import("../../src/metrics/metrics.js");
    const { server, port } = await startMetricsServer(0, "127.0.0.1");
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toMatch(
        /countersign_admission_duration_seconds_bucket\{le="0.005",decision="approval-required"\} \d+/,
      );
      expect(text).toMatch(/countersign_admission_duration_seconds_count\{decision="approval-consumed"\} 1/);
      expect(text).toMatch(
        /countersign_admission_decisions_total\{policy="api-policy-\w+",outcome="approval-required"\} \d+/,
      );
      expect(text).toMatch(/countersign_approval_requests_pending \d+/);
      expect(text).toMatch(/countersign_approval_time_to_decision_seconds_count\{outcome="Approved"\} 1/);
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    } finally {
      server.close();
    }
  });
});
