/**
 * What the gate re-checks when an approval is about to be used, as attacks through a real
 * kube-apiserver (red team 11 F6b and F4):
 *   - a break-glass approval whose group the policy no longer names is not used (the approver's
 *     membership is the authenticator's claim at decision time; the policy is what Countersign
 *     can check now), and it is used again once the group is back;
 *   - a server-side dry run of an approved request that was just revoked says "revoked" even
 *     when the webhook's informer cache still holds the Approved copy (the cache is made stale
 *     on purpose; the API server, the guard and the decisions are real).
 */
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalGate } from "../../src/approvals/gate.js";
import type { OpenRequestIndex } from "../../src/approvals/open-requests.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { componentLogger } from "../../src/logging/logger.js";
import { decide, revoke } from "../../src/plugin/commands.js";
import type { CompiledApproval } from "../../src/policy/compile.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalPolicy } from "../../src/resources/approval-policy.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  countersignIdentity,
  eventually,
  grantServiceAccount,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import { applyPolicies, approvalRequestsIn, rejection, untilRequestCreated } from "../support/scenario.js";

const agentsNs = uniqueName("rc-agents");
const ns = uniqueName("rc-prod");
const installNamespace = uniqueName("rc-cs");
const oncall = uniqueName("rc-oncall");
const policyName = uniqueName("rc-policy");
const olgaName = `${uniqueName("olga")}@example.com`;
const aliceName = `${uniqueName("alice")}@example.com`;
const REASON = "checkout is down; this rollback cannot wait for two people";
let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let olga: KubeConfig; // on call (break-glass group), not an ordinary approver
let alice: KubeConfig; // an ordinary approver
let requests: ReturnType<typeof approvalRequestsIn>;

function policy(breakGlassGroups: string[]): ApprovalPolicy {
  return {
    apiVersion: "countersign.io/v1alpha1" as const,
    kind: "ApprovalPolicy" as const,
    metadata: { name: policyName },
    spec: {
      subjects: { serviceAccounts: [{ namespace: agentsNs }] },
      match: [
        { operations: ["DELETE" as const], apiGroups: [""], resources: ["configmaps"], namespaces: [ns] },
      ],
      rules: [
        {
          name: "deletes",
          action: "RequireApproval" as const,
          approval: {
            approvers: { groups: ["rc-approvers"] },
            requiredApprovals: 2,
            breakGlass: { groups: breakGlassGroups },
          },
        },
      ],
    },
  };
}

/** Applies the policy and waits until the webhook serves exactly these break-glass groups. */
async function breakGlassGroups(groups: string[]): Promise<void> {
  await applyPolicies(cp, cs, [policy(groups)]);
  await eventually(
    async () =>
      JSON.stringify(
        cs.replicas[0]!.policies.list().find((p) => p.name === policyName)?.rules[0]?.approval?.breakGlass
          ?.groups,
      ) === JSON.stringify(groups),
    10_000,
    "policy served",
  );
}

const agentDelete = (name: string) =>
  agent.makeApiClient(CoreV1Api).deleteNamespacedConfigMap({ name, namespace: ns });

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  agent = (await cp.serviceAccountIdentity(agentsNs, "bot")).kubeConfig;
  await grantServiceAccount(cp, ns, { namespace: agentsNs, name: "bot" }, ["configmaps"], ["get", "delete"]);
  olga = await approverIdentity(cp, olgaName, [oncall]);
  alice = await approverIdentity(cp, aliceName, ["rc-approvers"]);
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace,
    webhookName: "countersign-consume-recheck-test",
  });
  requests = approvalRequestsIn(cp, ns);
  await breakGlassGroups([oncall]);
});

afterAll(async () => {
  await cs?.stop();
});

describe("re-checks when an approval is used", () => {
  it("a break-glass approval whose group the policy no longer names is not used; with the group back it is, once", async () => {
    await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name: "checkout" }, data: { v: "2" } },
      });
    const name = await untilRequestCreated(() => agentDelete("checkout"));
    expect(await decide(olga, ns, name, "Approve", REASON, new Date(), true)).toMatch(/break-glass approved/);
    await eventually(async () => (await requests.phase(name)) === "Approved", 15_000, "Approved");

    // The on-call group is taken off the policy (olga left on-call) before the agent retries.
    await breakGlassGroups(["someone-else-oncall"]);
    const refused = await rejection(agentDelete("checkout"));
    expect(refused).toContain(
      `cannot be used: the break-glass approval by ${olgaName} no longer stands: the policy's rule no longer names a break-glass group ${olgaName} was in when deciding (it names someone-else-oncall), so 0 of 2 required approvals stand. Nothing was used.`,
    );
    expect((await requests.get(name)).status?.consumed).toBeUndefined();

    // Back on the policy: the same approval is used, once.
    await breakGlassGroups([oncall]);
    await agentDelete("checkout");
    await eventually(async () => (await requests.phase(name)) === "Consumed", 15_000, "Consumed");
  });

  it("a dry run of a just-revoked approval says revoked, though the webhook's cache still holds it Approved", async () => {
    // A gate like the webhook's, acting as Countersign, whose informer cache is stuck before the revoke.
    let stale: ApprovalRequest | undefined;
    let cacheReads = 0;
    const staleIndex = {
      isSynced: () => true,
      get: (_ns: string, _name: string) => {
        cacheReads++;
        return stale;
      },
      note: () => {},
      open: () => [],
    } as unknown as OpenRequestIndex;
    const gate = new ApprovalGate({
      kubeConfig: await countersignIdentity(cp, installNamespace),
      installNamespace,
      replica: "rc-stale-replica",
      logger: componentLogger("gate"),
      openRequests: staleIndex,
    });
    const req: AdmissionRequest = {
      uid: "f4-1",
      kind: { group: "", version: "v1", kind: "ConfigMap" },
      resource: { group: "", version: "v1", resource: "configmaps" },
      namespace: ns,
      name: "feature-flags",
      operation: "DELETE",
      userInfo: { username: `system:serviceaccount:${agentsNs}:bot`, groups: ["system:serviceaccounts"] },
      oldObject: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "feature-flags", namespace: ns } },
    };
    const rule = { policy: policyName, rule: "deletes", generation: 1 };
    const approval: CompiledApproval = {
      approvers: { users: [aliceName], groups: [] },
      requiredApprovals: 1,
      ttl: "30m",
      ttlSeconds: 1800,
      holdSeconds: 0,
      notify: [],
      maxOpenRequests: 10,
    };
    const log = componentLogger("gate");
    const created = await gate.handle(req, rule, approval, undefined, log);
    expect(created.state).toBe("created");
    const name = created.approvalRequest!.name;
    await decide(alice, ns, name, "Approve", "fine by me");
    await eventually(async () => (await requests.phase(name)) === "Approved", 15_000, "Approved");
    stale = await requests.get(name);
    const before = await gate.handle({ ...req, uid: "f4-2", dryRun: true }, rule, approval, undefined, log);
    expect(before).toMatchObject({ allowed: true, state: "dry-run" });
    expect(before.message).toContain("as the API server has it now");

    await revoke(alice, ns, name, "wrong cluster");
    const reads = cacheReads;
    const after = await gate.handle({ ...req, uid: "f4-3", dryRun: true }, rule, approval, undefined, log);
    expect(cacheReads).toBeGreaterThan(reads); // the stale Approved copy was what the cache answered
    expect(after.allowed).toBe(false);
    expect(after.message).toMatch(/the approval for this action was revoked by .*wrong cluster/);
    expect((await requests.get(name)).status?.consumed).toBeUndefined();
  });
});
