/**
 * The benchmark workload shared by bench/gate.ts and bench/decide.ts: an agent's Deployment
 * UPDATE as an AdmissionReview, and 50 ApprovalPolicies of which `covering` cover the agent.
 */
export function review(uid: string, over: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid,
      kind: { group: "apps", version: "v1", kind: "Deployment" },
      resource: { group: "apps", version: "v1", resource: "deployments" },
      namespace: "prod",
      name: "payments-api",
      operation: "UPDATE",
      userInfo: {
        username: "system:serviceaccount:ai-agents:ops-bot",
        uid: "b81fa587",
        groups: ["system:serviceaccounts", "system:serviceaccounts:ai-agents", "system:authenticated"],
      },
      object: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "payments-api", namespace: "prod", labels: { app: "payments-api", tier: "web" } },
        spec: {
          replicas: 3,
          template: {
            spec: { containers: [{ name: "api", image: "registry.example.com/payments/api:1.42.0" }] },
          },
        },
      },
      oldObject: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "payments-api", namespace: "prod", labels: { app: "payments-api", tier: "web" } },
        spec: {
          replicas: 2,
          template: {
            spec: { containers: [{ name: "api", image: "registry.example.com/payments/api:1.42.0" }] },
          },
        },
      },
      dryRun: false,
      ...over,
    },
  });
}

/**
 * 50 policies, 4 rules each (200 rules): 10 cover the benchmark's agent and match its request,
 * 40 cover other teams' bots. Every policy's expressions differ (its own namespaces, label
 * values, registries and thresholds), so nothing is shared between policies.
 */
export function benchPolicies(covering: number): object[] {
  return Array.from({ length: 50 }, (_, i) => ({
    apiVersion: "countersign.io/v1alpha1",
    kind: "ApprovalPolicy",
    metadata: { name: `bench-${String(i).padStart(2, "0")}` },
    spec: {
      subjects:
        i < covering
          ? { serviceAccounts: [{ namespace: "ai-agents" }] }
          : { serviceAccounts: [{ namespace: `team-${i}` }] },
      match: [
        {
          operations: ["CREATE", "UPDATE", "DELETE"],
          apiGroups: ["apps", ""],
          resources: ["deployments", "secrets", "configmaps"],
        },
      ],
      matchConditions: [{ name: "prod-only", expression: `request.namespace in ["prod", "prod-${i}"]` }],
      variables: [
        {
          name: "critical",
          expression: `has(object.metadata.labels) && object.metadata.labels["tier"] in ["critical", "critical-${i}"]`,
        },
      ],
      rules: [
        {
          name: "no-kube-images",
          action: "Deny",
          message: "images must come from the registry",
          condition: `object != null && has(object.spec) && has(object.spec.template) && !object.spec.template.spec.containers.all(c, c.image.startsWith("registry.example.com/") || c.image.startsWith("mirror-${i}.example.com/"))`,
        },
        {
          name: "critical-changes",
          action: "RequireApproval",
          condition: "variables.critical",
          approval: { approvers: { groups: ["sre"] } },
        },
        {
          name: "secret-deletes",
          action: "RequireApproval",
          condition: `request.operation == "DELETE" && request.resource.resource == "secrets" && request.name != "scratch-${i}"`,
          approval: { approvers: { groups: ["sre"] } },
        },
        {
          name: "big-scale-ups",
          action: "RequireApproval",
          condition: `request.operation == "UPDATE" && has(object.spec.replicas) && object.spec.replicas > ${20 + i}`,
          approval: { approvers: { groups: ["sre"] } },
        },
      ],
    },
  }));
}
