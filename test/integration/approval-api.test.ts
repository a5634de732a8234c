/**
 * The approval HTTP API through the real API server: bearer tokens checked with TokenReview,
 * every call authorized as the caller, decisions under the same rules as kubectl approve.
 */
import { CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { deleteGuard, requireApproval } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import { agentIdentity, applyPolicies, bindApproverRole, httpsCall } from "../support/scenario.js";

const agentsNs = uniqueName("api-agents");
const humans = uniqueName("api-humans");
const ns = uniqueName("api-prod");
let cp: ControlPlane;
let cs: TestCountersign;
let agentToken: string;
let frankToken: string; // approver with RBAC
let graceToken: string; // in the approvers' namespace, lacks RBAC approve
let arName: string;

async function call(
  method: string,
  path: string,
  token?: string,
  body?: string,
): Promise<{
  status: number;
  json: { error?: { message: string; reason?: string } } & Record<string, unknown>;
}> {
  const res = await httpsCall(cs.replicas[0]!.apiPort, {
    path: `/api/v1${path}`,
    method,
    body,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
  });
  return { status: res.status, json: res.body ? JSON.parse(res.body) : {} };
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const agent = await agentIdentity(cp, agentsNs, "bot", {
    target: ns,
    resources: ["configmaps"],
    verbs: ["get", "delete"],
  });
  agentToken = agent.token;
  frankToken = (await cp.serviceAccountIdentity(humans, "frank")).token;
  graceToken = (await cp.serviceAccountIdentity(humans, "grace")).token;
  await approverIdentity(cp, "placeholder@example.com", []); // ensures the approver ClusterRole exists
  await bindApproverRole(cp, undefined, { namespace: humans, name: "frank" }, uniqueName("api-frank"));
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: uniqueName("cs-api"),
    webhookName: "countersign-api-test",
  });
  await applyPolicies(cp, cs, [
    deleteGuard(uniqueName("api-policy"), {
      agents: agentsNs,
      resource: "configmaps",
      namespace: ns,
      // The agent itself is listed as an approver too: only the self-approval rule stops it.
      rules: [
        requireApproval("deletes", { groups: [`system:serviceaccounts:${humans}`], users: [agent.username] }),
      ],
    }),
  ]);
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
    await bindApproverRole(cp, undefined, { namespace: agentsNs, name: "helper" }, uniqueName("api-helper"));
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
