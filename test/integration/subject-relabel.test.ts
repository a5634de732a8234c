/**
 * Attack (red team 10, finding 1): an agent covered through `serviceAccountSelector` removes
 * the label from its own ServiceAccount (the built-in `edit` role allows it) to leave every
 * policy. Through the real API server: the covered agent's relabel and delete are refused and
 * it stays under approval; harmless label changes still pass; an admin's relabel is allowed.
 */
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { APPROVERS_GROUP, approvalPolicy, requireApproval } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  eventually,
  grantServiceAccount,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import { applyPolicies } from "../support/scenario.js";

const GATED = "agents.example.com/gated";
const agentsNs = uniqueName("relabel-agents");
const work = uniqueName("relabel-work");
const installNamespace = uniqueName("relabel-cs");
const policy = uniqueName("relabel-selector");
let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;

const attempt = (p: Promise<unknown>) =>
  p.then(
    () => "allowed",
    (err: unknown) => kubeStatusOf(err)?.message ?? String(err),
  );

const createConfigMap = (name: string) =>
  agent
    .makeApiClient(CoreV1Api)
    .createNamespacedConfigMap({ namespace: work, body: { metadata: { name }, data: { a: "b" } } });

const removeLabel = (kc: KubeConfig) =>
  kc.makeApiClient(CoreV1Api).patchNamespacedServiceAccount({
    name: "bot",
    namespace: agentsNs,
    body: [{ op: "remove", path: `/metadata/labels/${GATED.replace("/", "~1")}` }],
  });

const labelsNow = async () =>
  (
    await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedServiceAccount({ name: "bot", namespace: agentsNs })
  ).metadata?.labels ?? {};

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(work);
  agent = (await cp.serviceAccountIdentity(agentsNs, "bot", { labels: { [GATED]: "true" } })).kubeConfig;
  await grantServiceAccount(
    cp,
    work,
    { namespace: agentsNs, name: "bot" },
    ["configmaps"],
    ["get", "create"],
  );
  // What the built-in `edit` role gives on its own namespace's service accounts.
  await grantServiceAccount(
    cp,
    agentsNs,
    { namespace: agentsNs, name: "bot" },
    ["serviceaccounts"],
    ["get", "update", "patch", "delete"],
  );
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace,
    webhookName: uniqueName("relabel-webhook"),
  });
  await applyPolicies(cp, cs, [
    approvalPolicy(policy, {
      subjects: { serviceAccountSelector: { matchLabels: { [GATED]: "true" } } },
      // Scoped to the work namespace: the policy itself does not look at serviceaccounts.
      matchConditions: [{ name: "work-ns", expression: `request.namespace == '${work}'` }],
      rules: [requireApproval("all", { groups: [APPROVERS_GROUP], ttl: "1h" })],
    }),
  ]);
  await eventually(
    async () =>
      (await attempt(createConfigMap(uniqueName("probe")))).includes("ApprovalRequest") || undefined,
    15_000,
    "the selector policy gates the agent",
  );
}, 120_000);

afterAll(async () => {
  await cs?.stop();
});

describe("a covered subject cannot change the labels that select it", () => {
  it("the agent removing its own selected label is refused, names the policy, and it stays under approval", async () => {
    const refused = await attempt(removeLabel(agent));
    expect(refused).toContain(`covered by ApprovalPolicy ${policy}`);
    expect(refused).toContain(`ServiceAccount ${agentsNs}/bot`);
    expect(refused).toContain("Ask a cluster admin");
    expect(await labelsNow()).toMatchObject({ [GATED]: "true" });
    expect(await attempt(createConfigMap(uniqueName("after-refused")))).toMatch(/ApprovalRequest/);
  });

  it("changing the label's value, or deleting the account, is refused too", async () => {
    const core = agent.makeApiClient(CoreV1Api);
    const flip = await attempt(
      core.patchNamespacedServiceAccount({
        name: "bot",
        namespace: agentsNs,
        body: [{ op: "replace", path: `/metadata/labels/${GATED.replace("/", "~1")}`, value: "false" }],
      }),
    );
    expect(flip).toContain(`no longer selects it`);
    const del = await attempt(core.deleteNamespacedServiceAccount({ name: "bot", namespace: agentsNs }));
    expect(del).toContain(`may not delete ServiceAccount ${agentsNs}/bot`);
    expect(await labelsNow()).toMatchObject({ [GATED]: "true" });
  });

  it("a label change that keeps the account selected is allowed", async () => {
    const add = await attempt(
      agent.makeApiClient(CoreV1Api).patchNamespacedServiceAccount({
        name: "bot",
        namespace: agentsNs,
        body: [{ op: "add", path: "/metadata/labels/note", value: "harmless" }],
      }),
    );
    expect(add).toBe("allowed");
    expect(await labelsNow()).toMatchObject({ [GATED]: "true", note: "harmless" });
  });

  it("an admin may remove the label; the agent then leaves the policy", async () => {
    expect(await attempt(removeLabel(cp.adminKubeConfig()))).toBe("allowed");
    expect(await labelsNow()).not.toHaveProperty(GATED);
    await eventually(
      async () =>
        (await attempt(createConfigMap(uniqueName("after-admin")))) === "allowed" ? true : undefined,
      15_000,
      "the agent is no longer covered once the admin removed its label",
    );
  });
});
