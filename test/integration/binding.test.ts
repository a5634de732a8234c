/**
 * Red team 9, as attacks through a real kube-apiserver:
 * - finding 3: an UPDATE that only rewrites managedFields changes what a later trusted
 *   server-side apply removes, so it needs approval; a GitOps re-apply that changes nothing is
 *   still a no-op;
 * - finding 8: a second covered agent in the approver group cannot approve the first's request;
 * - finding 7: a covered agent with delete on namespaces cannot delete Countersign's own
 *   (excluded) namespace without approval.
 */
import {
  CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { decide } from "../../src/plugin/commands.js";
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
import {
  agentIdentity,
  applyPolicies,
  approvalRequestsIn,
  attempt,
  requestNameIn,
} from "../support/scenario.js";

let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let approver: KubeConfig;
let agent2: KubeConfig;
const agentsNs = uniqueName("agents");
const prod = uniqueName("prod");
const policyName = uniqueName("ownership");
const installNs = uniqueName("cs-ownership");

const listRequests = () => approvalRequestsIn(cp, prod).list();

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(prod);
  agent = (
    await agentIdentity(cp, agentsNs, "ops-bot", {
      target: prod,
      resources: ["configmaps"],
      verbs: ["get", "update", "patch"],
    })
  ).kubeConfig;
  approver = await approverIdentity(cp, "olga@example.com", [APPROVERS_GROUP]);
  // A second agent service account that is also in the approver group and holds the RBAC verbs.
  agent2 = (await cp.serviceAccountIdentity(agentsNs, "helper-bot")).kubeConfig;
  await cp
    .adminKubeConfig()
    .makeApiClient(RbacAuthorizationV1Api)
    .createClusterRoleBinding({
      body: {
        metadata: { name: `${agentsNs}-helper-approves` },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
        subjects: [{ kind: "ServiceAccount", name: "helper-bot", namespace: agentsNs }],
      },
    });
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: installNs,
    webhookName: uniqueName("cs-ownership"),
  });
  await applyPolicies(cp, cs, [
    approvalPolicy(policyName, {
      subjects: agentsIn(agentsNs),
      match: [
        matching(["UPDATE", "CREATE"], ["configmaps"], [prod]),
        matching(["UPDATE", "DELETE"], ["namespaces"]),
      ],
      rules: [
        requireApproval("all", {
          groups: [APPROVERS_GROUP, `system:serviceaccounts:${agentsNs}`],
          requiredApprovals: 1,
          ttl: "1h",
        }),
      ],
    }),
  ]);
}, 120_000);

afterAll(async () => {
  await cs?.stop();
});

const applyAs = (kc: KubeConfig, manager: string, data: Record<string, string>) =>
  kc.makeApiClient(CoreV1Api).patchNamespacedConfigMap(
    {
      name: "mf",
      namespace: prod,
      fieldManager: manager,
      force: true,
      body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "mf", namespace: prod }, data },
    },
    setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
  );

it("a managedFields-only UPDATE needs approval, shows the ownership change, and the trusted re-apply keeps the field", async () => {
  const admin = cp.adminKubeConfig().makeApiClient(CoreV1Api);
  await applyAs(cp.adminKubeConfig(), "gitops", { mode: "safe" });
  const cur = await admin.readNamespacedConfigMap({ name: "mf", namespace: prod });
  await admin.replaceNamespacedConfigMap({
    name: "mf",
    namespace: prod,
    fieldManager: "human-kubectl",
    body: { ...cur, data: { ...cur.data, safety: "on" } },
  });
  const ag = agent.makeApiClient(CoreV1Api);
  // The gate is active for the agent.
  const c1 = await ag.readNamespacedConfigMap({ name: "mf", namespace: prod });
  await eventually(
    async () =>
      /needs a human approval/.test(
        await attempt(() =>
          ag.replaceNamespacedConfigMap({
            name: "mf",
            namespace: prod,
            body: { ...c1, data: { ...c1.data, safety: "off" } },
          }),
        ),
      ),
    10_000,
    "gate active",
  );
  const before = (await listRequests()).length;

  // Attack: hand ownership of data.safety to "gitops" alone; the content is unchanged.
  const c2 = await ag.readNamespacedConfigMap({ name: "mf", namespace: prod });
  const forged = [
    {
      manager: "gitops",
      operation: "Apply",
      apiVersion: "v1",
      fieldsType: "FieldsV1",
      fieldsV1: { "f:data": { "f:mode": {}, "f:safety": {} } },
    },
  ];
  const message = await attempt(() =>
    ag.replaceNamespacedConfigMap({
      name: "mf",
      namespace: prod,
      body: { ...c2, metadata: { ...c2.metadata, managedFields: forged as never } },
    }),
  );
  expect(message).toMatch(/needs a human approval/);
  const requests = await listRequests();
  expect(requests.length).toBe(before + 1);
  const ar = requests.find((r) => r.metadata.name === requestNameIn(message))!;
  expect(ar.spec.diff).toMatch(/\(field ownership\) "gitops" \(Apply, v1\): now owns data\.safety/);
  expect(ar.spec.diff).toMatch(
    /\(field ownership\) "human-kubectl" \(Update, v1\): no longer owns data\.safety/,
  );

  // GitOps re-applies its unchanged config: the human's safety setting survives.
  await applyAs(cp.adminKubeConfig(), "gitops", { mode: "safe" });
  const final = await admin.readNamespacedConfigMap({ name: "mf", namespace: prod });
  expect(final.data).toEqual({ mode: "safe", safety: "on" });
}, 60_000);

it("a server-side re-apply by the agent that changes nothing is a no-op; its first apply (new ownership) needed approval", async () => {
  const first = await attempt(() => applyAs(agent, "agent-gitops", { mode: "safe" }));
  expect(first).toMatch(/needs a human approval/);
  const name = requestNameIn(first);
  await decide(approver, prod, name, "Approve", "co-owning mode is fine");
  await eventually(
    async () => (await listRequests()).find((r) => r.metadata.name === name)?.status?.phase === "Approved",
    10_000,
    "approved",
  );
  expect(await attempt(() => applyAs(agent, "agent-gitops", { mode: "safe" }))).toBe("");
  const count = (await listRequests()).length;
  // The same apply again: same content, same ownership → allowed without a request.
  expect(await attempt(() => applyAs(agent, "agent-gitops", { mode: "safe" }))).toBe("");
  expect(await attempt(() => applyAs(agent, "agent-gitops", { mode: "safe" }))).toBe("");
  expect((await listRequests()).length).toBe(count);
}, 60_000);

it("a second covered agent in the approver group (with RBAC approve) cannot approve the first agent's request", async () => {
  const ag = agent.makeApiClient(CoreV1Api);
  const cur = await ag.readNamespacedConfigMap({ name: "mf", namespace: prod });
  const message = await attempt(() =>
    ag.replaceNamespacedConfigMap({
      name: "mf",
      namespace: prod,
      body: { ...cur, data: { ...cur.data, mode: "unsafe" } },
    }),
  );
  expect(message).toMatch(/needs a human approval/);
  const name = requestNameIn(message);
  const refused = await decide(agent2, prod, name, "Approve", "looks fine to me, fellow bot").then(
    () => "",
    (err: unknown) => (err instanceof Error ? err.message : String(err)),
  );
  expect(refused).toMatch(
    /helper-bot.*is covered by ApprovalPolicy .*, so it may not approve ApprovalRequests/,
  );
  const ar = (await listRequests()).find((r) => r.metadata.name === name)!;
  expect(ar.spec.decisions ?? []).toEqual([]);
  // The agent's retry is still not allowed.
  expect(
    await attempt(() =>
      ag.replaceNamespacedConfigMap({
        name: "mf",
        namespace: prod,
        body: { ...cur, data: { ...cur.data, mode: "unsafe" } },
      }),
    ),
  ).toMatch(/needs a human approval|pending/i);
}, 60_000);

it("a covered agent with delete on namespaces cannot delete Countersign's (excluded) install namespace", async () => {
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  await rbac.createClusterRole({
    body: {
      metadata: { name: `${agentsNs}-ns-deleter` },
      rules: [{ apiGroups: [""], resources: ["namespaces"], verbs: ["get", "delete", "update", "patch"] }],
    },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: `${agentsNs}-ns-deleter` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `${agentsNs}-ns-deleter` },
      subjects: [{ kind: "ServiceAccount", name: "ops-bot", namespace: agentsNs }],
    },
  });
  const ag = agent.makeApiClient(CoreV1Api);
  const message = await attempt(() => ag.deleteNamespace({ name: installNs }));
  expect(message).toMatch(/namespace .* is a system namespace or Countersign's own.*may not delete it/);
  const ns = await cp.adminKubeConfig().makeApiClient(CoreV1Api).readNamespace({ name: installNs });
  expect(ns.metadata?.deletionTimestamp).toBeUndefined();
  // Relabelling it is gated too.
  const relabel = await attempt(() =>
    ag.patchNamespace(
      {
        name: installNs,
        body: { metadata: { labels: { "pod-security.kubernetes.io/enforce": "privileged" } } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
    ),
  );
  expect(relabel).toMatch(/may not update it/);
}, 60_000);
