import {
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { isNotFound } from "../../src/kube/errors.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import { eventually } from "../support/countersign.js";

describe("control plane harness (real etcd + kube-apiserver)", () => {
  it("creates a namespace and a Countersign custom object through the API server", async () => {
    const cp = await attachControlPlane();
    const kc = cp.adminKubeConfig();
    const ns = uniqueName("harness");
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    const read = await kc.makeApiClient(CoreV1Api).readNamespace({ name: ns });
    expect(read.metadata?.name).toBe(ns);

    const custom = kc.makeApiClient(CustomObjectsApi);
    const policy = {
      apiVersion: "countersign.io/v1alpha1",
      kind: "ApprovalPolicy",
      metadata: { name: `${ns}-policy` },
      spec: {
        subjects: { serviceAccounts: [{ namespace: "ai-agents", name: "ops-bot" }] },
        rules: [{ name: "deny-all", action: "Deny", message: "harness test" }],
      },
    };
    await custom.createClusterCustomObject({
      group: "countersign.io",
      version: "v1alpha1",
      plural: "approvalpolicies",
      body: policy,
    });
    const got = (await custom.getClusterCustomObject({
      group: "countersign.io",
      version: "v1alpha1",
      plural: "approvalpolicies",
      name: `${ns}-policy`,
    })) as typeof policy;
    expect(got.spec.rules[0]?.action).toBe("Deny");
    await custom.deleteClusterCustomObject({
      group: "countersign.io",
      version: "v1alpha1",
      plural: "approvalpolicies",
      name: `${ns}-policy`,
    });
    await expect(
      custom.getClusterCustomObject({
        group: "countersign.io",
        version: "v1alpha1",
        plural: "approvalpolicies",
        name: `${ns}-policy`,
      }),
    ).rejects.toSatisfy(isNotFound);
  });

  it("rejects an ApprovalPolicy the CRD schema forbids, naming the field", async () => {
    const cp = await attachControlPlane();
    const custom = cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    const bad = {
      apiVersion: "countersign.io/v1alpha1",
      kind: "ApprovalPolicy",
      metadata: { name: uniqueName("bad-policy") },
      spec: { subjects: { users: ["bot"] }, rules: [{ name: "needs-approval", action: "RequireApproval" }] },
    };
    await expect(
      custom.createClusterCustomObject({
        group: "countersign.io",
        version: "v1alpha1",
        plural: "approvalpolicies",
        body: bad,
      }),
    ).rejects.toThrow(/spec\.rules\[0\].*RequireApproval rule needs an approval block/);
  });

  it("a service-account token identity (the AI agent) is seen by the API server as that service account", async () => {
    const cp = await attachControlPlane();
    const agent = await cp.serviceAccountIdentity("ai-agents", "ops-bot");
    const review = await agent.kubeConfig.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
    });
    expect(review.status?.userInfo?.username).toBe("system:serviceaccount:ai-agents:ops-bot");
    expect(review.status?.userInfo?.groups).toContain("system:serviceaccounts:ai-agents");
  });

  it("a client-certificate identity (the approver) carries its groups, and RBAC applies to it", async () => {
    const cp = await attachControlPlane();
    const approver = await cp.userIdentity("alice@example.com", ["countersign:approvers"]);
    const review = await approver.kubeConfig.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
    });
    expect(review.status?.userInfo?.username).toBe("alice@example.com");
    expect(review.status?.userInfo?.groups).toContain("countersign:approvers");
    // RBAC is on: a user with no bindings cannot list namespaces.
    await expect(approver.kubeConfig.makeApiClient(CoreV1Api).listNamespace()).rejects.toSatisfy(
      (e: unknown) => (e as { code?: number }).code === 403,
    );
  });

  it("runs kube-controller-manager: default service accounts, the aggregated built-in roles, namespace deletion", async () => {
    const cp = await attachControlPlane();
    const kc = cp.adminKubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const ns = uniqueName("kcm");
    await cp.ensureNamespace(ns);
    await eventually(
      async () =>
        (await core.readNamespacedServiceAccount({ name: "default", namespace: ns })).metadata?.name,
      10_000,
      "default service account (serviceaccount controller)",
    );
    const edit = await kc.makeApiClient(RbacAuthorizationV1Api).readClusterRole({ name: "edit" });
    expect(edit.rules?.some((r) => r.resources?.includes("deployments") && r.verbs.includes("delete"))).toBe(
      true,
    );
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "x" } } });
    await core.deleteNamespace({ name: ns });
    await eventually(
      async () => core.readNamespace({ name: ns }).then(() => false, isNotFound),
      30_000,
      "namespace deleted (namespace controller)",
    );
  });
});
