/**
 * Issue 10 "No silent bypass", as attacks through a real kube-apiserver:
 *  - a flood of changes cannot open unbounded ApprovalRequests (the per-requester cap);
 *  - a covered agent with RBAC on ApprovalPolicies cannot change or delete them, and every
 *    policy change by anyone leaves an AuditRecord in the install namespace.
 */
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfUsername } from "../../src/app.js";
import { verifyChain } from "../../src/audit/chain.js";
import { bypassRisks } from "../../src/bypass/scanner.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { approvalRequestsCapped } from "../../src/metrics/metrics.js";
import { decide as decideRequest, listAuditRecords } from "../../src/plugin/commands.js";
import { doctor } from "../../src/plugin/doctor.js";
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
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import { agentIdentity, applyPolicies, approvalRequestsIn } from "../support/scenario.js";

let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let agentUser: string;
let approver: KubeConfig;
const agentsNs = uniqueName("flood-agents");
const target = uniqueName("flood-target");
const installNs = uniqueName("cs-guard");
const policyName = uniqueName("flood-cap");

const custom = () => cp.adminKubeConfig().makeApiClient(CustomObjectsApi);

const openRequests = () => approvalRequestsIn(cp, target).list();

/** The agent sets one label on the ConfigMap; returns the refusal message, or "" when allowed. */
async function agentLabel(value: string): Promise<string> {
  const core = agent.makeApiClient(CoreV1Api);
  const cm = await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .readNamespacedConfigMap({ name: "settings", namespace: target });
  cm.metadata!.labels = { ...(cm.metadata!.labels ?? {}), tier: value };
  try {
    await core.replaceNamespacedConfigMap({ name: "settings", namespace: target, body: cm });
    return "";
  } catch (err) {
    const s = kubeStatusOf(err);
    if (!s) throw err;
    return s.message ?? "refused";
  }
}

async function cappedCount(): Promise<number> {
  const m = await approvalRequestsCapped.get();
  return m.values.find((v) => v.labels.policy === policyName)?.value ?? 0;
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(target);
  const id = await agentIdentity(cp, agentsNs, "flood-bot", {
    target,
    resources: ["configmaps"],
    verbs: ["get", "update"],
  });
  agent = id.kubeConfig;
  agentUser = id.username;
  approver = await approverIdentity(cp, "carol@example.com", [APPROVERS_GROUP]);
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: installNs,
    webhookName: uniqueName("countersign-guardrails"),
    bypassScanIntervalMs: 2000,
  });
  await applyPolicies(cp, cs, [
    approvalPolicy(policyName, {
      subjects: agentsIn(agentsNs),
      match: [matching(["UPDATE"], ["configmaps"], [target])],
      rules: [
        requireApproval("config-changes", { groups: [APPROVERS_GROUP], ttl: "1h", maxOpenRequests: 3 }),
      ],
    }),
  ]);
  await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedConfigMap({
      namespace: target,
      body: { metadata: { name: "settings" }, data: { a: "1" } },
    });
  // The API server picks up a new webhook configuration asynchronously: wait until it gates.
  let probe = 0;
  await eventually(async () => (await agentLabel(`probe-${probe++}`)) !== "", 15_000, "webhook active");
});

afterAll(async () => {
  await cs?.stop();
});

describe("request floods", () => {
  it("caps open requests per requester: 5 label changes with a cap of 3 open 3 requests and refuse 2, naming them; a decision frees a slot", async () => {
    // The probe in beforeAll opened the first request.
    const cappedBefore = await cappedCount();
    const messages: string[] = [];
    for (const v of ["blue", "green", "red", "teal"]) messages.push(await agentLabel(v));
    const open = await openRequests();
    expect(open).toHaveLength(3);
    expect(messages.slice(0, 2).every((m) => /needs a human approval/.test(m))).toBe(true);
    for (const m of messages.slice(2)) {
      expect(m).toMatch(/already has 3 open ApprovalRequests in namespace/);
      expect(m).toMatch(/the limit is 3/);
      expect(m).toMatch(/Nothing was created/);
      for (const ar of open) expect(m).toContain(ar.metadata.name);
    }
    expect(await cappedCount()).toBe(cappedBefore + 2);
    expect(await openRequests()).toHaveLength(3); // nothing was created for the refused ones

    // An approver denies one: its slot frees, and the next change opens a request again.
    const first = open[0]!;
    await decideRequest(approver, target, first.metadata.name, "Deny", "not now");
    const next = await eventually(
      async () => {
        const m = await agentLabel("violet");
        return /needs a human approval/.test(m) ? m : undefined;
      },
      15_000,
      "a slot freed by the denial",
    );
    expect(next).toMatch(/was created/);
    expect(await openRequests()).toHaveLength(4); // 3 open + the denied one
  });
});

describe("Countersign's own configuration", () => {
  it("refuses a covered agent's update, status write and delete of an ApprovalPolicy, even with RBAC for them", async () => {
    const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    const role = uniqueName("policy-editor");
    await rbac.createClusterRole({
      body: {
        metadata: { name: role },
        rules: [
          {
            apiGroups: ["countersign.io"],
            resources: ["approvalpolicies", "approvalpolicies/status"],
            verbs: ["get", "list", "update", "patch", "delete"],
          },
        ],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: role },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
        subjects: [{ kind: "ServiceAccount", name: "flood-bot", namespace: agentsNs }],
      },
    });
    const api = agent.makeApiClient(CustomObjectsApi);
    type Policy = { spec: { rules: { approval: { approvers: { groups: string[] } } }[] } };
    const readPolicy = async () =>
      (await api.getClusterCustomObject({ ...gvr(POLICY_PLURAL), name: policyName })) as Policy;
    // What the API server answered the agent's write. The controller writes the policy's status
    // meanwhile, so a write carrying the resourceVersion just read can meet a 409 Conflict before
    // admission runs: that is no answer from Countersign, so re-read and write again.
    const refusal = async (write: (policy: Policy) => Promise<unknown>) =>
      eventually(
        async () => {
          const policy = await readPolicy();
          policy.spec.rules[0]!.approval.approvers.groups = ["system:serviceaccounts"]; // approve itself
          try {
            await write(policy);
            return "allowed";
          } catch (err) {
            const status = kubeStatusOf(err);
            if (status?.code === 409) return undefined;
            return status?.message ?? String(err);
          }
        },
        20_000,
        "an answer other than a resourceVersion conflict",
      );
    // RBAC is in place (the agent can read), so only Countersign stands between it and the policy.
    await eventually(readPolicy, 5000, "RBAC for the agent");
    const update = await refusal((body) =>
      api.replaceClusterCustomObject({ ...gvr(POLICY_PLURAL), name: policyName, body }),
    );
    expect(update).toMatch(new RegExp(`${agentUser} is covered by ApprovalPolicy ${policyName}`));
    expect(update).toMatch(/may not update ApprovalPolicies/);
    const status = await refusal((body) =>
      api.replaceClusterCustomObjectStatus({ ...gvr(POLICY_PLURAL), name: policyName, body }),
    );
    expect(status).toMatch(/may not update the status of ApprovalPolicies/);
    const del = await refusal(() =>
      api.deleteClusterCustomObject({ ...gvr(POLICY_PLURAL), name: policyName }),
    );
    expect(del).toMatch(/may not delete ApprovalPolicies/);
    const still = (await custom().getClusterCustomObject({
      ...gvr(POLICY_PLURAL),
      name: policyName,
    })) as {
      spec: { rules: { approval: { approvers: { groups: string[] } } }[] };
    };
    expect(still.spec.rules[0]!.approval.approvers.groups).toEqual(["countersign:approvers"]);
  });

  it("records every policy change and deletion by anyone in the install namespace's audit chain", async () => {
    const admin = await selfUsername(cp.adminKubeConfig());
    const name = uniqueName("audited-policy");
    const body = approvalPolicy(name, {
      subjects: { users: ["nobody@example.com"] },
      rules: [{ name: "deny-all", action: "Deny", message: "no" }],
    });
    await custom().createClusterCustomObject({ ...gvr(POLICY_PLURAL), body });
    // Read-modify-write (the controller writes status meanwhile; a conflict means re-read).
    await eventually(
      async () => {
        const current = (await custom().getClusterCustomObject({
          ...gvr(POLICY_PLURAL),
          name,
        })) as typeof body;
        current.spec.rules[0]!.message = "still no";
        await custom().replaceClusterCustomObject({ ...gvr(POLICY_PLURAL), name, body: current });
        return true;
      },
      10_000,
      "policy updated",
    );
    await custom().deleteClusterCustomObject({ ...gvr(POLICY_PLURAL), name });

    const records = (await listAuditRecords(cp.adminKubeConfig(), installNs)).filter(
      (r) => (r.spec.action as { name?: string } | undefined)?.name === name,
    );
    expect(records.map((r) => r.spec.event).sort()).toEqual([
      "PolicyCreated",
      "PolicyDeleted",
      "PolicyUpdated",
    ]);
    for (const r of records) {
      expect(r.spec.actor?.username).toBe(admin);
      expect(r.spec.actor?.via).toBe("admission");
    }
    const deleted = records.find((r) => r.spec.event === "PolicyDeleted")!;
    expect(deleted.spec.reason).toMatch(/no longer gates anything/);
    expect(verifyChain(await listAuditRecords(cp.adminKubeConfig(), installNs))).toEqual([]);
  });
});

interface PolicyStatus {
  status?: {
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    bypassRisks?: { subject: string; verb: string; resource: string; namespace?: string }[];
  };
}

async function bypassCondition() {
  const p = (await custom().getClusterCustomObject({
    ...gvr(POLICY_PLURAL),
    name: policyName,
  })) as PolicyStatus;
  return {
    condition: p.status?.conditions?.find((c) => c.type === "BypassRisk"),
    risks: p.status?.bypassRisks ?? [],
  };
}

describe("paths around admission", () => {
  it("reports a covered agent granted impersonate and serviceaccounts/token: condition, Event, metric, doctor; removing the bindings clears it", async () => {
    const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    const impersonator = uniqueName("impersonator");
    const tokens = uniqueName("token-minter");
    await rbac.createClusterRole({
      body: {
        metadata: { name: impersonator },
        rules: [{ apiGroups: [""], resources: ["users"], verbs: ["impersonate"] }],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: impersonator },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: impersonator },
        subjects: [{ kind: "ServiceAccount", name: "flood-bot", namespace: agentsNs }],
      },
    });
    await rbac.createNamespacedRole({
      namespace: target,
      body: {
        metadata: { name: tokens },
        rules: [{ apiGroups: [""], resources: ["serviceaccounts/token"], verbs: ["create"] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: target,
      body: {
        metadata: { name: tokens },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: tokens },
        subjects: [{ kind: "ServiceAccount", name: "flood-bot", namespace: agentsNs }],
      },
    });
    const subject = `ServiceAccount ${agentsNs}/flood-bot`;
    const found = await eventually(
      async () => {
        const b = await bypassCondition();
        const both =
          b.risks.some((r) => r.subject === subject && r.verb === "impersonate" && r.resource === "users") &&
          b.risks.some(
            (r) => r.subject === subject && r.resource === "serviceaccounts/token" && r.namespace === target,
          );
        return b.condition?.status === "True" && both ? b : undefined;
      },
      20_000,
      "BypassRisk True listing both rights",
    );
    expect(found.condition?.reason).toBe("BypassRisksFound");
    expect(found.condition?.message).toContain(`${subject} can impersonate users`);
    expect(found.condition?.message).toMatch(/kubectl approvals doctor/);

    // A Warning Event on the policy (cluster-scoped: in "default").
    await eventually(
      async () =>
        (
          await cp.adminKubeConfig().makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: "default" })
        ).items.some(
          (e) =>
            e.involvedObject.kind === "ApprovalPolicy" &&
            e.involvedObject.name === policyName &&
            e.reason === "BypassRisk" &&
            e.type === "Warning",
        ),
      10_000,
      "BypassRisk Warning Event",
    );
    const gauge = (await bypassRisks.get()).values.find((v) => v.labels.policy === policyName);
    expect(gauge?.value).toBeGreaterThanOrEqual(2);

    // doctor names the bindings and the fix, and exits non-zero.
    const report = await doctor(cp.adminKubeConfig());
    expect(report.ok).toBe(false);
    expect(report.report).toContain(
      `granted by: ClusterRoleBinding ${impersonator} (ClusterRole ${impersonator})`,
    );
    expect(report.report).toContain(`fix: kubectl delete clusterrolebinding ${impersonator}`);
    expect(report.report).toContain(`granted by: RoleBinding ${target}/${tokens} (Role ${tokens})`);
    expect(report.report).toContain(`fix: kubectl delete rolebinding ${tokens} -n ${target}`);

    // Remove the bindings: the condition clears (the next periodic scan).
    await rbac.deleteClusterRoleBinding({ name: impersonator });
    await rbac.deleteNamespacedRoleBinding({ name: tokens, namespace: target });
    await eventually(
      async () => {
        const b = await bypassCondition();
        return !b.risks.some(
          (r) =>
            r.subject === subject && (r.verb === "impersonate" || r.resource === "serviceaccounts/token"),
        );
      },
      20_000,
      "risks cleared after the bindings are removed",
    );
  });

  it("records the deletion of a Countersign webhook configuration (which no webhook can refuse) and warns", async () => {
    const admission = cp.adminKubeConfig().makeApiClient(AdmissionregistrationV1Api);
    const name = uniqueName("countersign-extra");
    await admission.createValidatingWebhookConfiguration({
      body: { metadata: { name, labels: { "app.kubernetes.io/part-of": "countersign" } }, webhooks: [] },
    });
    // Let the controller see it first (its baseline), then delete it.
    await new Promise((r) => setTimeout(r, 1500));
    await admission.deleteValidatingWebhookConfiguration({ name });
    const record = await eventually(
      async () =>
        (await listAuditRecords(cp.adminKubeConfig(), installNs)).find(
          (r) =>
            r.spec.event === "WebhookConfigurationDeleted" &&
            (r.spec.action as { name?: string })?.name === name,
        ),
      10_000,
      "WebhookConfigurationDeleted record",
    );
    expect(record.spec.reason).toMatch(/no longer sees any request/);
    await eventually(
      async () =>
        (
          await cp.adminKubeConfig().makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: "default" })
        ).items.some((e) => e.involvedObject.name === name && e.reason === "WebhookConfigurationDeleted"),
      10_000,
      "Warning Event",
    );
    expect(verifyChain(await listAuditRecords(cp.adminKubeConfig(), installNs))).toEqual([]);
  });
});
