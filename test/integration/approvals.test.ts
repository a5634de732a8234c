/**
 * Approvals that can be trusted, through a real kube-apiserver: attacks on the decision
 * path and the audit trail, multi-approver policies, the kubectl plugin, and the trail.
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decisionEntry } from "../../src/approvals/request.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { runCli } from "../../src/plugin/cli.js";
import { auditFor, auditVerify, decide, listAuditRecords, whoAmI } from "../../src/plugin/commands.js";
import type { ApprovalRequest, Decision } from "../../src/resources/approval-request.js";
import type { AuditRecord } from "../../src/resources/audit-record.js";
import { CountersignClient, isDecisionRace } from "../../src/resources/client.js";
import { APPROVAL_REQUEST_PLURAL, AUDIT_PLURAL, gvr } from "../../src/resources/group.js";
import { APPROVERS_GROUP, deleteGuard, requireApproval } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import {
  agentIdentity,
  applyPolicies,
  approvalRequestsIn,
  bindApproverRole,
  deniedRequest,
  rejection,
  untilRefused,
} from "../support/scenario.js";

const agentsNs = uniqueName("agents");
const ns = uniqueName("vault");
const policyName = uniqueName("vault-guard");
let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let agentUser: string;
let alice: KubeConfig;
let bob: KubeConfig;
let carol: KubeConfig; // RBAC ok, not in the approvers
let dave: KubeConfig; // in the approvers group, lacks RBAC approve

const custom = () => cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
const getAr = (name: string) => approvalRequestsIn(cp, ns).get(name);
const phaseOf = (name: string) => approvalRequestsIn(cp, ns).phase(name);

/**
 * A raw decision patch, bypassing the plugin's own checks: what an attacker would send. The
 * metadata the guard requires (uid, groups, time, via) is filled in correctly for the caller
 * unless `d` sets it, so each attack below is refused for the rule it names.
 */
async function rawDecision(kc: KubeConfig, name: string, d: Decision): Promise<string | undefined> {
  const ar = await getAr(name);
  const me = await whoAmI(kc);
  d = { ...decisionEntry(me, d.decision, undefined, "kubectl", new Date()), ...d };
  try {
    await new CountersignClient(kc.makeApiClient(CustomObjectsApi)).approvalRequests.appendDecision(ar, d);
    return undefined;
  } catch (err) {
    return kubeStatusOf(err)?.message ?? String(err);
  }
}

const agentDelete = (name: string, dryRun = false) =>
  agent
    .makeApiClient(CoreV1Api)
    .deleteNamespacedSecret({ name, namespace: ns, ...(dryRun ? { dryRun: "All" } : {}) });

/** The agent tries to delete a secret; returns the ApprovalRequest name from the denial. */
const requestDelete = (secret: string) => deniedRequest(cp, ns, () => agentDelete(secret));

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const id = await agentIdentity(cp, agentsNs, "ops-bot", {
    target: ns,
    resources: ["secrets"],
    verbs: ["get", "list", "create", "delete"],
  });
  agent = id.kubeConfig;
  agentUser = id.username;
  // The agent's service account also holds the approver role: only Countersign's rule stops it.
  await bindApproverRole(cp, ns, { namespace: agentsNs, name: "ops-bot" }, "agent-can-approve");
  alice = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);
  bob = await approverIdentity(cp, "bob@example.com", [APPROVERS_GROUP]);
  carol = await approverIdentity(cp, "carol@example.com", ["finance"]);
  dave = await approverIdentity(cp, "dave@example.com", [APPROVERS_GROUP], false);
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: uniqueName("cs-system"),
    webhookName: "countersign-approvals-test",
  });
  const approvers = [APPROVERS_GROUP];
  await applyPolicies(cp, cs, [
    deleteGuard(policyName, {
      agents: agentsNs,
      namespace: ns,
      rules: [
        requireApproval(
          "two-person",
          { groups: approvers, requiredApprovals: 2, ttl: "1h" },
          "request.name.startsWith('crown-')",
        ),
        requireApproval("short-ttl", { groups: approvers, ttl: "3s" }, "request.name.startsWith('brief-')"),
        requireApproval(
          "deletes",
          { groups: approvers, users: [agentUser], ttl: "1h" },
          "!request.name.startsWith('crown-') && !request.name.startsWith('brief-')",
        ),
      ],
    }),
  ]);
  const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
  for (const name of ["s1", "s2", "s3", "s4", "crown-jewels", "brief-1", "canary"]) {
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: {
          name,
          annotations: {
            "countersign.io/reason": `rotating ${name}`,
            "countersign.io/prompt": "clean up old credentials",
          },
        },
        stringData: { password: "p4ssw0rd-never-logged" },
      },
    });
  }
  await untilRefused(() => agentDelete("canary", true));
});

afterAll(async () => {
  await cs?.stop();
});

describe("attacks on the decision path", () => {
  it("self-approval is refused, also through a second token of the same service account", async () => {
    const name = await requestDelete("s1");
    const second = await cp.serviceAccountIdentity(agentsNs, "ops-bot"); // a fresh TokenRequest
    const err = await rawDecision(second.kubeConfig, name, { approver: agentUser, decision: "Approve" });
    expect(err).toMatch(/nobody decides their own request/);
    const cli = await decide(second.kubeConfig, ns, name, "Approve", undefined).catch(
      (e: Error) => e.message,
    );
    expect(cli).toMatch(/cannot decide your own request/);
    await eventually(async () => (await phaseOf(name)) === "Pending", 10_000, "Pending");
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);
  });

  it("a decision naming someone else, or claiming other groups, is refused", async () => {
    const name = await requestDelete("s2");
    expect(await rawDecision(alice, name, { approver: "bob@example.com", decision: "Approve" })).toMatch(
      /names "bob@example.com" but you are authenticated as "alice@example.com"/,
    );
    expect(
      await rawDecision(alice, name, {
        approver: "alice@example.com",
        groups: ["countersign:approvers", "system:masters"],
        decision: "Approve",
      }),
    ).toMatch(/groups do not match/);
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);
  });

  it("an approver outside the policy, and one without RBAC verb approve, are refused", async () => {
    const name = await requestDelete("s3");
    expect(await rawDecision(carol, name, { approver: "carol@example.com", decision: "Approve" })).toMatch(
      /carol@example.com is not an approver for this request/,
    );
    expect(await rawDecision(dave, name, { approver: "dave@example.com", decision: "Approve" })).toMatch(
      /lacks RBAC verb "approve" on approvalrequests/,
    );
    await eventually(async () => (await phaseOf(name)) === "Pending", 10_000, "Pending");
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);
  });

  it("nobody — not even a cluster admin — forges an ApprovalRequest, its status, or edits an approved one", async () => {
    const name = await requestDelete("s4");
    expect(await decide(alice, ns, name, "Approve", "ok")).toMatch(/approved/);
    await eventually(async () => (await phaseOf(name)) === "Approved", 10_000, "Approved");
    const ar = await getAr(name);

    // Edit what was approved: the CRD's immutability rule and the guard both refuse. (Patches,
    // not read-modify-write: a stale resourceVersion would be refused for the wrong reason.)
    const jsonPatch = (name: string, body: object[]) =>
      custom().patchNamespacedCustomObject(
        { ...gvr(APPROVAL_REQUEST_PLURAL), namespace: ns, name, body },
        setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
      );
    expect(
      await rejection(jsonPatch(name, [{ op: "replace", path: "/spec/action/name", value: "crown-jewels" }])),
    ).toMatch(/immutable/);
    // Rewrite an existing decision.
    expect(
      await rejection(
        jsonPatch(name, [{ op: "replace", path: "/spec/decisions/0/reason", value: "I never said that" }]),
      ),
    ).toMatch(/append-only/);
    // What a decider's first append that lost a race gets (its `add /spec/decisions` replaced
    // the list another decision created): the CRD's 422 with a cause on spec.decisions, which
    // isDecisionRace reads to re-read and append again, by code and cause, not by words.
    const replaced = await jsonPatch(name, [{ op: "add", path: "/spec/decisions", value: [] }]).then(
      () => undefined,
      (err: unknown) => kubeStatusOf(err),
    );
    expect(replaced).toMatchObject({
      code: 422,
      reason: "Invalid",
      causes: [expect.objectContaining({ reason: "FieldValueInvalid", field: "spec.decisions" })],
    });
    expect(isDecisionRace(replaced)).toBe(true);
    // Forge a whole request, or its status.
    const forged = structuredClone(ar) as ApprovalRequest & { metadata: Record<string, unknown> };
    forged.metadata = { name: "forged", namespace: ns };
    delete forged.status;
    expect(
      await rejection(
        custom().createNamespacedCustomObject({
          ...gvr(APPROVAL_REQUEST_PLURAL),
          namespace: ns,
          body: forged,
        }),
      ),
    ).toMatch(/created only by Countersign/);
    const other = await requestDelete("crown-jewels");
    await eventually(async () => (await phaseOf(other)) === "Pending", 10_000, "Pending"); // let the reconciler settle it
    const forgedStatus = { ...(await getAr(other)), status: { phase: "Approved" as const } };
    expect(
      await rejection(
        custom().replaceNamespacedCustomObjectStatus({
          ...gvr(APPROVAL_REQUEST_PLURAL),
          namespace: ns,
          name: other,
          body: forgedStatus,
        }),
      ),
    ).toMatch(/only Countersign sets an ApprovalRequest's status/);
    expect(
      await rejection(
        custom().deleteNamespacedCustomObject({
          ...gvr(APPROVAL_REQUEST_PLURAL),
          namespace: ns,
          name: other,
        }),
      ),
    ).toMatch(/part of the audit trail/);
  });

  it("replaying an approval for a different object does not work", async () => {
    const approved = (await getAr((await listNames()).find((n) => n.includes("-s4-"))!)).metadata.name;
    expect(await phaseOf(approved)).toBe("Approved");
    // s4's approval exists; deleting s1 is a different action and stays gated.
    const message = await rejection(
      agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: "s1", namespace: ns }),
    );
    expect(message).toMatch(/needs a human approval/);
    expect(await phaseOf(approved)).toBe("Approved");
  });
});

async function listNames(): Promise<string[]> {
  return (await approvalRequestsIn(cp, ns).list()).map((i) => i.metadata.name);
}

describe("decisions", () => {
  it("a two-person rule needs two distinct approvers; a decision on a finished request is refused", async () => {
    const name = (await listNames()).find((n) => n.includes("crown-jewels"))!;
    expect(await decide(alice, ns, name, "Approve", "first")).toMatch(/1\/2 approvals/);
    await eventually(async () => (await getAr(name)).status?.approvals === 1, 10_000, "1 approval");
    expect(await phaseOf(name)).toBe("Pending");
    expect(await decide(alice, ns, name, "Approve", "again").catch((e: Error) => e.message)).toMatch(
      /already decided/,
    );
    expect(
      await rawDecision(alice, name, { approver: "alice@example.com", decision: "Approve", reason: "dup" }),
    ).toBeTruthy();
    expect(await decide(bob, ns, name, "Approve", "second")).toMatch(/2\/2 approvals/);
    await eventually(async () => (await phaseOf(name)) === "Approved", 10_000, "Approved");
    // Used once by the agent...
    await agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: "crown-jewels", namespace: ns });
    await eventually(async () => (await phaseOf(name)) === "Consumed", 10_000, "Consumed");
    // ...and then nobody can decide it any more.
    expect(await rawDecision(dave, name, { approver: "dave@example.com", decision: "Deny" })).toMatch(
      /already Consumed/,
    );
  });

  it("any denial ends the request, and the agent is told who denied it and why", async () => {
    const name = (await listNames()).find((n) => n.includes("-s3-"))!;
    expect(await decide(bob, ns, name, "Deny", "not during the freeze")).toMatch(/denied/);
    await eventually(async () => (await phaseOf(name)) === "Denied", 10_000, "Denied");
    const message = await rejection(
      agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: "s3", namespace: ns }),
    );
    expect(message).toMatch(/denied by bob@example.com: not during the freeze/);
  });

  it("expires a request at its TTL, within a few seconds of the deadline", async () => {
    const name = await requestDelete("brief-1");
    const expiresAt = Date.parse((await getAr(name)).spec.approval.expiresAt);
    await eventually(async () => (await phaseOf(name)) === "Expired", 15_000, "Expired");
    const observedAt = Date.now();
    expect(observedAt - expiresAt).toBeLessThan(3000);
    expect(await decide(alice, ns, name, "Approve", "too late").catch((e: Error) => e.message)).toMatch(
      /expired/,
    );
  });

  it("the kubectl plugin lists, shows and explains", async () => {
    const kubeconfig = (await cp.userIdentity("alice@example.com", ["countersign:approvers"])).kubeconfigPath;
    const list = await runCli(["list", "-n", ns, "--kubeconfig", kubeconfig], "kubectl-approvals");
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/NAMESPACE\s+NAME\s+PHASE\s+REQUESTER/);
    expect(list.out).toContain("rotating s1");
    const name = (await listNames()).find((n) => n.includes("-s1-"))!;
    const show = await runCli(["show", name, "-n", ns, "--kubeconfig", kubeconfig], "kubectl-approvals");
    expect(show.out).toContain("prompt: clean up old credentials");
    expect(show.out).toContain(`Requester:   ${agentUser}`);
    expect(show.out).not.toContain("p4ssw0rd");
    const missing = await runCli(["does-not-exist", "-n", ns, "--kubeconfig", kubeconfig], "kubectl-approve");
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/not found\. Pending requests: kubectl approvals list -n/);
    const usage = await runCli([], "kubectl-deny");
    expect(usage.code).toBe(2);
  });
});

describe("the audit trail", () => {
  it("answers who authorized a change, and the chain verifies", async () => {
    const trail = await auditFor(alice, "secret/crown-jewels", ns);
    expect(trail).toMatch(/Requested\s+system:serviceaccount:/);
    expect(trail).toMatch(/Approved\s+(alice|bob)@example.com via kubectl/);
    expect(trail).toMatch(/Consumed/);
    expect(trail).toContain("agent reason: rotating crown-jewels");
    expect(trail).toContain("agent prompt: clean up old credentials");
    const verify = await auditVerify(alice, ns);
    expect(verify.ok).toBe(true);
    const records = await listAuditRecords(alice, ns);
    expect(JSON.stringify(records)).not.toContain("p4ssw0rd");
    const names = records.map((r) => r.metadata.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it("nobody but Countersign deletes or edits an AuditRecord", async () => {
    const [record] = await listAuditRecords(cp.adminKubeConfig(), ns);
    expect(record).toBeDefined();
    const r = record as AuditRecord;
    expect(
      await rejection(
        custom().deleteNamespacedCustomObject({
          ...gvr(AUDIT_PLURAL),
          namespace: ns,
          name: r.metadata.name,
        }),
      ),
    ).toMatch(/AuditRecords are written and retired only by Countersign/);
    const edited = structuredClone(r);
    edited.spec.reason = "nothing to see here";
    expect(
      await rejection(
        custom().replaceNamespacedCustomObject({
          ...gvr(AUDIT_PLURAL),
          namespace: ns,
          name: r.metadata.name,
          body: edited,
        }),
      ),
    ).toMatch(/immutable|only by Countersign/);
  });

  it("kubectl approvals audit verify detects a record changed directly in etcd", async () => {
    const records = await listAuditRecords(cp.adminKubeConfig(), ns);
    const victim = records.find((r) => r.spec.event === "Approved")!;
    const key = `/registry/countersign.io/auditrecords/${ns}/${victim.metadata.name}`;
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const range = (await (
      await fetch(`${cp.etcdUrl}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: b64(key) }) })
    ).json()) as {
      kvs: { value: string }[];
    };
    const stored = JSON.parse(Buffer.from(range.kvs[0]!.value, "base64").toString("utf8"));
    stored.spec.reason = "approved by the CEO (forged)";
    await fetch(`${cp.etcdUrl}/v3/kv/put`, {
      method: "POST",
      body: JSON.stringify({ key: b64(key), value: b64(JSON.stringify(stored)) }),
    });
    const kubeconfig = (await cp.userIdentity("alice@example.com", ["countersign:approvers"])).kubeconfigPath;
    const out = await eventually(
      async () => {
        const r = await runCli(
          ["audit", "verify", "-n", ns, "--kubeconfig", kubeconfig],
          "kubectl-approvals",
        );
        return r.code === 1 ? r : undefined;
      },
      10_000,
      "tamper detected",
    );
    expect(out.out).toMatch(/TAMPERED/);
    expect(out.out).toContain(victim.metadata.name);
    expect(out.out).toMatch(/content does not match its hash/);
  });
});
