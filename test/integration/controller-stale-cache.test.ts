/**
 * Liveness with a stale informer (issue 12, chaos seed 1091860729 path 11): after an etcd
 * restart the controller's watch delivered changes ~17 s late. A request's expiry timer fired,
 * the reconciler planned from its stale copy, its conditional status write conflicted, and it
 * waited for the informer to bring the newer version — which did not come in time, while the
 * timer had already fired. Here the controller's cache keeps an old copy of the request (as a
 * quiet watch would) and the request is changed behind its back; at the expiry the request
 * must still become Expired, read from the API server.
 */
import { CustomObjectsApi } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadFingerprintKey } from "../../src/approvals/fingerprint-key.js";
import { ApprovalGate } from "../../src/approvals/gate.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { componentLogger } from "../../src/logging/logger.js";
import { compilePolicy } from "../../src/policy/compile.js";
import { decide } from "../../src/policy/evaluate.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  countersignIdentity,
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";

const G = { group: "countersign.io", version: "v1alpha1", plural: "approvalrequests" };
const INSTALL = "countersign-system";
let cp: ControlPlane;
let cs: TestCountersign;
const agentsNs = uniqueName("agents");
const prod = uniqueName("prod");
const TTL_SECONDS = 4;
const policy = compilePolicy({
  apiVersion: "countersign.io/v1alpha1",
  kind: "ApprovalPolicy",
  metadata: { name: uniqueName("stale-cache"), generation: 1 },
  spec: {
    subjects: { serviceAccounts: [{ namespace: agentsNs }] },
    match: [{ operations: ["CREATE"], apiGroups: [""], resources: ["configmaps"], namespaces: [prod] }],
    rules: [
      {
        name: "prod",
        action: "RequireApproval",
        approval: { approvers: { groups: ["countersign:approvers"] }, ttl: `${TTL_SECONDS}s` },
      },
    ],
  },
});

const review: AdmissionRequest = {
  uid: "3f0c2a6e-0000-4000-8000-000000000002",
  kind: { group: "", version: "v1", kind: "ConfigMap" },
  resource: { group: "", version: "v1", resource: "configmaps" },
  namespace: prod,
  name: "flags",
  operation: "CREATE",
  userInfo: { username: `system:serviceaccount:${agentsNs}:bot`, groups: ["system:serviceaccounts"] },
  object: {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "flags", namespace: prod },
    data: { a: "b" },
  },
  dryRun: false,
} as AdmissionRequest;

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(prod);
  cs = await startTestCountersign(cp, { subjects: { serviceAccountNamespaces: [agentsNs] } });
});

afterAll(async () => {
  await cs?.stop();
});

describe("the reconciler with a stale informer cache", () => {
  it("still expires a request on time when its cached copy is stale and no newer version arrives (chaos seed 1091860729 path 11)", async () => {
    if (!policy.ok) throw new Error(JSON.stringify(policy.errors));
    const decision = decide(review, [policy.policy]);
    if (decision.kind !== "require-approval")
      throw new Error(`expected require-approval, got ${decision.kind}`);
    const kc = await countersignIdentity(cp, INSTALL);
    const gate = new ApprovalGate({
      kubeConfig: kc,
      installNamespace: INSTALL,
      replica: "stale-cache",
      logger: componentLogger("gate"),
      fingerprintKey: await loadFingerprintKey(kc, INSTALL, componentLogger("fingerprint-key")),
    });
    const created = await gate.handle(
      review,
      decision.rule,
      decision.approval,
      decision.message,
      componentLogger("gate"),
    );
    const { name } = created.approvalRequest!;
    const custom = kc.makeApiClient(CustomObjectsApi);
    const read = async () =>
      (await custom.getNamespacedCustomObject({ ...G, namespace: prod, name })) as ApprovalRequest;
    await eventually(async () => (await read()).status?.phase === "Pending", 10_000, `${name} Pending`);

    // From here the controller's cache keeps this copy of the request, as a watch that has gone
    // quiet would (stopping the informer does not do it: its error handler restarts it).
    type Cache = { get(name: string, namespace?: string): ApprovalRequest | undefined };
    const cache = (cs.replicas[0]!.controller as unknown as { informer: Cache }).informer;
    await eventually(
      async () => cache.get(name, prod)?.status?.phase === "Pending",
      10_000,
      "cached Pending",
    );
    const stale = cache.get(name, prod)!;
    const get = cache.get.bind(cache);
    cache.get = (n, ns) => (n === name && ns === prod ? stale : get(n, ns));
    // A change it does not see: its copy is now stale, so its status write at expiry conflicts.
    const current = await read();
    await custom.replaceNamespacedCustomObject({
      ...G,
      namespace: prod,
      name,
      body: { ...current, metadata: { ...current.metadata, labels: { "chaos.test/touched": "yes" } } },
    });

    const expiresAt = Date.parse(current.spec.approval.expiresAt);
    const expired = await eventually(
      async () => {
        const ar = await read();
        return ar.status?.phase === "Expired" ? ar : undefined;
      },
      Math.max(0, expiresAt - Date.now()) + 10_000,
      `${name} Expired although the controller's cache is stale`,
    );
    expect(expired.metadata.labels?.["chaos.test/touched"]).toBe("yes");
    const at = Date.parse(
      expired.status?.conditions?.find((c) => c.type === "Expired")?.lastTransitionTime ?? "",
    );
    expect(at - expiresAt).toBeLessThan(5_000);
  });
});
