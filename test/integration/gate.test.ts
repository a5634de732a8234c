/**
 * The admission gate end to end, through a real kube-apiserver: policies, the webhook,
 * ApprovalRequest creation, one-time approvals, dry runs, bad input, audit annotations.
 */
import { readFileSync } from "node:fs";
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { decide as decideRequest } from "../../src/plugin/commands.js";
import { gvr, POLICY_PLURAL } from "../../src/resources/group.js";
import {
  APPROVERS_GROUP,
  agentsIn,
  approvalPolicy,
  matching,
  requireApproval,
} from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  asApiServer,
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import { agentIdentity, applyPolicies, approvalRequestsIn, httpsCall } from "../support/scenario.js";

let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let approver: KubeConfig;
let agentUser: string;
const agentsNs = uniqueName("agents");
const prod = uniqueName("prod");
const policyName = uniqueName("prod-guard");

/** POSTs to /validate as the API server (presenting its webhook client certificate). */
const post = (port: number, body: string, contentType = "application/json") =>
  httpsCall(port, {
    path: "/validate",
    body,
    headers: { "content-type": contentType },
    tls: asApiServer(cp),
  });

const listRequests = () => approvalRequestsIn(cp, prod).list();

async function approve(name: string): Promise<void> {
  // The real flow: an approver appends a decision (guarded by the webhook); the reconciler
  // moves the request to Approved.
  await decideRequest(approver, prod, name, "Approve", "looks fine");
  await eventually(
    async () => (await approvalRequestsIn(cp, prod).phase(name)) === "Approved",
    10_000,
    `${name} Approved`,
  );
}

const secretApi = () => agent.makeApiClient(CoreV1Api);

async function agentDeleteSecret(name: string, dryRun?: boolean): Promise<{ ok: boolean; message: string }> {
  try {
    await secretApi().deleteNamespacedSecret({ name, namespace: prod, ...(dryRun ? { dryRun: "All" } : {}) });
    return { ok: true, message: "" };
  } catch (err) {
    const s = kubeStatusOf(err);
    if (!s) throw err;
    return { ok: false, message: s.message ?? "" };
  }
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(prod);
  const id = await agentIdentity(cp, agentsNs, "ops-bot", {
    target: prod,
    resources: ["secrets", "configmaps"],
    verbs: ["get", "list", "create", "update", "patch", "delete"],
  });
  agent = id.kubeConfig;
  agentUser = id.username;
  approver = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);
  cs = await startTestCountersign(cp, { subjects: { serviceAccountNamespaces: [agentsNs] }, replicas: 2 });
  await applyPolicies(cp, cs, [
    approvalPolicy(policyName, {
      subjects: agentsIn(agentsNs),
      match: [matching(["DELETE", "UPDATE"], ["secrets", "configmaps"], [prod])],
      rules: [
        {
          ...requireApproval("changes-in-prod", {
            groups: [APPROVERS_GROUP],
            requiredApprovals: 1,
            ttl: "1h",
          }),
          message: "production data changes need a human",
        },
      ],
    }),
  ]);
  const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
  for (const name of ["db-creds", "other-creds", "canary"]) {
    await core.createNamespacedSecret({
      namespace: prod,
      body: { metadata: { name }, stringData: { password: "hunter2-super-secret" } },
    });
  }
  // The API server picks up a new webhook configuration asynchronously: wait until it gates.
  await eventually(async () => !(await agentDeleteSecret("canary", true)).ok, 15_000, "webhook active");
});

afterAll(async () => {
  await cs?.stop();
});

describe("the approval gate", () => {
  it("denies a covered agent's Secret delete, creating exactly one ApprovalRequest across 20 parallel retries on 2 replicas", async () => {
    const first = await agentDeleteSecret("db-creds");
    expect(first.ok).toBe(false);
    expect(first.message).toMatch(/needs a human approval/);
    expect(first.message).toMatch(/kubectl approve delete-secrets-db-creds-[0-9a-f]{12} -n /);

    // 10 retries through the API server (replica 0) and 10 AdmissionReviews straight to replica 1.
    const secret = await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedSecret({ name: "db-creds", namespace: prod });
    const review = (uid: string) =>
      JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: {
          uid,
          kind: { group: "", version: "v1", kind: "Secret" },
          resource: { group: "", version: "v1", resource: "secrets" },
          name: "db-creds",
          namespace: prod,
          operation: "DELETE",
          userInfo: {
            username: agentUser,
            groups: ["system:serviceaccounts", `system:serviceaccounts:${agentsNs}`],
          },
          oldObject: secret,
          dryRun: false,
        },
      });
    const results = await Promise.all([
      ...Array.from({ length: 10 }, () => agentDeleteSecret("db-creds")),
      ...Array.from({ length: 10 }, (_, i) => post(cs.replicas[1]!.admissionPort, review(`direct-${i}`))),
    ]);
    for (const r of results) {
      if ("ok" in r) expect(r.ok).toBe(false);
      else expect(JSON.parse(r.body).response.allowed).toBe(false);
    }
    const requests = (await listRequests()).filter((r) => r.spec.action.name === "db-creds");
    expect(requests).toHaveLength(1);
    const ar = requests[0]!;
    expect(ar.spec.requester.username).toBe(agentUser);
    expect(ar.spec.requester.serviceAccount).toEqual({ namespace: agentsNs, name: "ops-bot" });
    expect(ar.spec.action.summary).toContain("DELETE");
    expect(JSON.stringify(ar)).not.toContain("hunter2");
    expect(JSON.stringify(ar)).not.toContain(Buffer.from("hunter2-super-secret").toString("base64"));

    // An Event names the request.
    const events = await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .listNamespacedEvent({ namespace: prod });
    expect(
      events.items.some(
        (e) => e.involvedObject.name === ar.metadata.name && e.reason === "ApprovalRequested",
      ),
    ).toBe(true);
  });

  it("after approval, exactly one of 20 parallel retries (2 replicas) goes through; a further retry is denied again", async () => {
    const ar = (await listRequests()).find((r) => r.spec.action.name === "db-creds")!;
    await approve(ar.metadata.name);
    const secret = await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedSecret({ name: "db-creds", namespace: prod });
    const review = (uid: string) =>
      JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: {
          uid,
          kind: { group: "", version: "v1", kind: "Secret" },
          resource: { group: "", version: "v1", resource: "secrets" },
          name: "db-creds",
          namespace: prod,
          operation: "DELETE",
          userInfo: { username: agentUser },
          oldObject: secret,
        },
      });
    const results = await Promise.all([
      ...Array.from({ length: 10 }, () => agentDeleteSecret("db-creds")),
      ...Array.from({ length: 10 }, (_, i) => post(cs.replicas[1]!.admissionPort, review(`consume-${i}`))),
    ]);
    const allowed = results.filter((r) => ("ok" in r ? r.ok : JSON.parse(r.body).response.allowed === true));
    expect(allowed).toHaveLength(1);
    const consumed = (await listRequests()).find((r) => r.metadata.name === ar.metadata.name)!;
    expect(consumed.status?.phase).toBe("Consumed");
    expect(consumed.status?.consumed?.admissionUID).toBeTruthy();

    // Whoever won, the approval is spent: the next attempt creates a new request and is denied.
    const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
    const stillThere = await core.readNamespacedSecret({ name: "db-creds", namespace: prod }).then(
      () => true,
      () => false,
    );
    if (stillThere) {
      const again = await agentDeleteSecret("db-creds");
      expect(again.ok).toBe(false);
      expect(again.message).toMatch(/needs a human approval/);
    }
  });

  it("an approval never covers a different object or a changed manifest", async () => {
    const other = await agentDeleteSecret("other-creds");
    expect(other.ok).toBe(false);
    const core = agent.makeApiClient(CoreV1Api);
    const admin = cp.adminKubeConfig().makeApiClient(CoreV1Api);
    await admin.createNamespacedConfigMap({
      namespace: prod,
      body: { metadata: { name: "flags" }, data: { mode: "safe" } },
    });
    const update = async (mode: string) => {
      const cm = await admin.readNamespacedConfigMap({ name: "flags", namespace: prod });
      cm.data = { mode };
      try {
        await core.replaceNamespacedConfigMap({ name: "flags", namespace: prod, body: cm });
        return true;
      } catch {
        return false;
      }
    };
    expect(await update("fast")).toBe(false);
    const ar = (await listRequests()).find((r) => r.spec.action.name === "flags")!;
    expect(ar.spec.diff).toContain('data.mode: "safe" → "fast"');
    await approve(ar.metadata.name);
    expect(await update("reckless")).toBe(false); // changed manifest: not what was approved
    expect(await update("fast")).toBe(true); // exactly what was approved: once
    // Issue 9 item 8 changed this: writing "fast" again now changes nothing (a no-op), so it is
    // allowed without a request...
    expect(await update("fast")).toBe(true);
    // ...but the approval is spent: the same transition (safe → fast) again needs a new approval.
    const current = await admin.readNamespacedConfigMap({ name: "flags", namespace: prod });
    await admin.replaceNamespacedConfigMap({
      name: "flags",
      namespace: prod,
      body: { ...current, data: { mode: "safe" } },
    });
    expect(await update("fast")).toBe(false);
  });

  it("never delays or blocks a user no policy covers, and a dry run creates nothing", async () => {
    const before = (await listRequests()).length;
    const dry = await agentDeleteSecret("canary", true);
    expect(dry.ok).toBe(false);
    expect(dry.message).toMatch(/Dry run: no ApprovalRequest was created/);
    expect((await listRequests()).length).toBe(before);
    const admin = cp.adminKubeConfig().makeApiClient(CoreV1Api);
    const t0 = Date.now();
    await admin.deleteNamespacedSecret({ name: "canary", namespace: prod });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect((await listRequests()).length).toBe(before);
  });

  it("writes auditAnnotations that link the API server's audit log to the ApprovalRequest", async () => {
    const line = await eventually(
      async () =>
        readFileSync(cp.auditLogPath, "utf8")
          .split("\n")
          .find((l) => l.includes('"gate.countersign.io/approval-request"') && l.includes(prod)),
      10_000,
      "audit annotation",
    );
    const event = JSON.parse(line) as { annotations: Record<string, string> };
    expect(event.annotations["gate.countersign.io/policy"]).toBe(policyName);
    expect(event.annotations["gate.countersign.io/approval-request"]).toMatch(new RegExp(`^${prod}/`));
  });

  it("rejects an ApprovalPolicy with invalid CEL at apply time, naming the field", async () => {
    const custom = cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    const bad = approvalPolicy(uniqueName("bad-cel"), {
      subjects: { users: ["bot"] },
      rules: [{ name: "r", action: "Deny", condition: "request.operaton == 'DELETE'" }],
    });
    const err = await custom.createClusterCustomObject({ ...gvr(POLICY_PLURAL), body: bad }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(kubeStatusOf(err)?.message).toMatch(
      /spec\.rules\[0\]\.condition: request has no field 'operaton'/,
    );
    const syntax = {
      ...bad,
      metadata: { name: uniqueName("bad-syntax") },
      spec: { ...bad.spec, rules: [{ name: "r", action: "Deny", condition: "request.operation ==" }] },
    };
    const err2 = await custom.createClusterCustomObject({ ...gvr(POLICY_PLURAL), body: syntax }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(kubeStatusOf(err2)?.message).toMatch(/spec\.rules\[0\]\.condition: invalid CEL syntax/);
  });

  it("answers bad input with a clear 4xx and keeps serving", async () => {
    const port = cs.replicas[0]!.admissionPort;
    expect((await post(port, "{}", "text/plain")).status).toBe(415);
    const malformed = await post(port, "{not json");
    expect(malformed.status).toBe(400);
    expect(malformed.body).toMatch(/not valid JSON/);
    const wrong = await post(
      port,
      JSON.stringify({ apiVersion: "admission.k8s.io/v1beta1", kind: "AdmissionReview", request: {} }),
    );
    expect(wrong.status).toBe(400);
    expect(wrong.body).toMatch(/expected apiVersion admission.k8s.io\/v1/);
    const huge = await post(port, JSON.stringify({ pad: "x".repeat(8 * 1024 * 1024) }));
    expect(huge.status).toBe(413);
    const noUid = await post(
      port,
      JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: { operation: "DELETE" },
      }),
    );
    expect(noUid.status).toBe(400);
    expect(noUid.body).toMatch(/request.uid/);
    const health = await httpsCall(port, { path: "/readyz", method: "GET" });
    expect(health.status).toBe(200);
    // The real path still works after all that.
    const s: V1Secret = { metadata: { name: uniqueName("after-bad") }, stringData: { a: "b" } };
    await cp.adminKubeConfig().makeApiClient(CoreV1Api).createNamespacedSecret({ namespace: prod, body: s });
    expect((await agentDeleteSecret(s.metadata!.name!)).ok).toBe(false);
  });
});
