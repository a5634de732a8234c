/**
 * Regression test for chaos seed 1091860728 path 5 (issue 12, batch 2): an approval checked
 * before its expiry was consumed 83 ms after it. The gate checked expiry, then re-checked the
 * approvers' RBAC (SubjectAccessReviews: API calls, slow under load), then wrote Consumed with
 * the time of the write. Here the gate's clock is injected and the RBAC re-check is what moves
 * it past the expiry, so the interleaving is exact, not a matter of load. Everything else is
 * real: the request is created by the gate, approved through the guard by an approver, moved to
 * Approved by the controller, and the Consumed write would go to the API server.
 */
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadFingerprintKey } from "../../src/approvals/fingerprint-key.js";
import { ApprovalGate } from "../../src/approvals/gate.js";
import type { RbacChecker } from "../../src/approvals/rbac-checker.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { componentLogger } from "../../src/logging/logger.js";
import { decide as decideRequest } from "../../src/plugin/commands.js";
import { compilePolicy } from "../../src/policy/compile.js";
import { decide } from "../../src/policy/evaluate.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  countersignIdentity,
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";

const G = { group: "countersign.io", version: "v1alpha1", plural: "approvalrequests" };
const INSTALL = "countersign-system";
let cp: ControlPlane;
let cs: TestCountersign;
let approver: KubeConfig;
const agentsNs = uniqueName("agents");
const prod = uniqueName("prod");
const policy = compilePolicy({
  apiVersion: "countersign.io/v1alpha1",
  kind: "ApprovalPolicy",
  metadata: { name: uniqueName("expiry-race"), generation: 1 },
  spec: {
    subjects: { serviceAccounts: [{ namespace: agentsNs }] },
    match: [{ operations: ["CREATE"], apiGroups: [""], resources: ["configmaps"], namespaces: [prod] }],
    rules: [
      {
        name: "prod",
        action: "RequireApproval",
        approval: { approvers: { groups: ["countersign:approvers"] }, requiredApprovals: 1, ttl: "10m" },
      },
    ],
  },
});

/** The agent's CREATE, as the API server would send it (the gate is called directly). */
const review: AdmissionRequest = {
  uid: "3f0c2a6e-0000-4000-8000-000000000001",
  kind: { group: "", version: "v1", kind: "ConfigMap" },
  resource: { group: "", version: "v1", resource: "configmaps" },
  namespace: prod,
  name: "flags",
  operation: "CREATE",
  userInfo: {
    username: `system:serviceaccount:${agentsNs}:bot`,
    groups: ["system:serviceaccounts", `system:serviceaccounts:${agentsNs}`, "system:authenticated"],
  },
  object: {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "flags", namespace: prod },
    data: { mode: "fast" },
  },
  dryRun: false,
} as AdmissionRequest;

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(prod);
  approver = await approverIdentity(cp, "erin@example.com", ["countersign:approvers"]);
  // The guard (approvers' decisions) and the controller (Pending -> Approved) run for real.
  cs = await startTestCountersign(cp, { subjects: { serviceAccountNamespaces: [agentsNs] } });
});

afterAll(async () => {
  await cs?.stop();
});

describe("the gate's expiry check and the approver RBAC re-check", () => {
  it("does not use an approval whose expiry passes while the approvers' RBAC is re-checked (chaos seed 1091860728 path 5)", async () => {
    if (!policy.ok) throw new Error(JSON.stringify(policy.errors));
    const decision = decide(review, [policy.policy]);
    if (decision.kind !== "require-approval")
      throw new Error(`expected require-approval, got ${decision.kind}`);

    const kc = await countersignIdentity(cp, INSTALL);
    let clock = Date.now();
    let rbacChecks = 0;
    let expiresAt = Number.NaN;
    // The SubjectAccessReviews take 183 ms: long enough to cross the expiry 100 ms away.
    const slowRbac = {
      allowed: async () => {
        rbacChecks++;
        clock += 183;
        return { allowed: true, reason: "" };
      },
    } as unknown as RbacChecker;
    const gate = new ApprovalGate({
      kubeConfig: kc,
      installNamespace: INSTALL,
      replica: "expiry-race",
      logger: componentLogger("gate"),
      rbac: slowRbac,
      fingerprintKey: await loadFingerprintKey(kc, INSTALL, componentLogger("fingerprint-key")),
      now: () => new Date(clock),
    });
    const handle = () =>
      gate.handle(review, decision.rule, decision.approval, decision.message, componentLogger("gate"));

    const created = await handle();
    expect(created.allowed).toBe(false);
    const { name } = created.approvalRequest!;
    await decideRequest(approver, prod, name, "Approve", "fine, once");
    const custom = cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    const read = async () =>
      (await custom.getNamespacedCustomObject({ ...G, namespace: prod, name })) as ApprovalRequest;
    await eventually(async () => (await read()).status?.phase === "Approved", 15_000, `${name} Approved`);
    expiresAt = Date.parse((await read()).spec.approval.expiresAt);

    // 100 ms before the expiry the approval is usable; the RBAC re-check ends 83 ms after it.
    clock = expiresAt - 100;
    const outcome = await handle();
    expect(rbacChecks).toBe(1); // one approver, re-checked once
    expect(clock).toBe(expiresAt + 83);
    expect(outcome.allowed).toBe(false);
    expect(outcome.state).not.toBe("consumed");
    const after = await read();
    expect(after.status?.consumed).toBeUndefined();
    expect(after.status?.phase).not.toBe("Consumed");
  });
});
