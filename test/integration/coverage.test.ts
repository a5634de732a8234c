/**
 * Issue 10 "No silent bypass", through a real kube-apiserver: what a policy covers.
 * A policy without `match` covers every mutation, subresources and CONNECT included, so the
 * agent's side doors (a token for another identity, scale, eviction, ephemeral containers)
 * are gated; `resources` entries match like Kubernetes webhook rules (`pods` is the main
 * resource only, `pods/*` adds its subresources).
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { decide as decideRequest } from "../../src/plugin/commands.js";
import type { ApprovalPolicySpec } from "../../src/resources/approval-policy.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
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
import { applyPolicies, approvalRequestsIn } from "../support/scenario.js";

const run = promisify(execFile);
const _G = { group: "countersign.io", version: "v1alpha1" };
const work = uniqueName("work");
/** One agent namespace per policy shape, so the three policies are live at once. */
const agents = {
  everything: uniqueName("agents-all"),
  podsOnly: uniqueName("agents-pods"),
  podsAndSubresources: uniqueName("agents-podsub"),
  costly: uniqueName("agents-costly"),
  bystander: uniqueName("agents-bystander"),
};
const approvers = { groups: [APPROVERS_GROUP], ttl: "1h" };
let cp: ControlPlane;
let cs: TestCountersign;
let approver: KubeConfig;
const agent: Record<keyof typeof agents, { kubeConfig: KubeConfig; kubeconfigPath: string }> = {} as never;

/** The RBAC each side door needs, so only Countersign stands in the way. */
async function grantSideDoors(saNamespace: string): Promise<void> {
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  const name = `side-doors-${saNamespace}`;
  await rbac.createNamespacedRole({
    namespace: work,
    body: {
      metadata: { name },
      rules: [
        { apiGroups: [""], resources: ["serviceaccounts/token"], verbs: ["create"] },
        { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "create", "delete"] },
        { apiGroups: [""], resources: ["pods/eviction"], verbs: ["create"] },
        { apiGroups: [""], resources: ["pods/ephemeralcontainers"], verbs: ["get", "update", "patch"] },
        { apiGroups: ["apps"], resources: ["deployments"], verbs: ["get", "list"] },
        { apiGroups: ["apps"], resources: ["deployments/scale"], verbs: ["get", "update", "patch"] },
        { apiGroups: [""], resources: ["configmaps"], verbs: ["get", "create"] },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: work,
    body: {
      metadata: { name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name: "bot", namespace: saNamespace }],
    },
  });
}

async function kubectl(who: keyof typeof agents, ...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await run(cp.binaries.kubectl, [
      "--kubeconfig",
      agent[who].kubeconfigPath,
      "-n",
      work,
      ...args,
    ]);
    return { ok: true, out: r.stdout };
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    return { ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/** What `kubectl drain` does for each pod: POST an Eviction to pods/NAME/eviction. */
async function evict(who: keyof typeof agents, pod: string): Promise<{ ok: boolean; out: string }> {
  try {
    await agent[who].kubeConfig.makeApiClient(CoreV1Api).createNamespacedPodEviction({
      name: pod,
      namespace: work,
      body: { metadata: { name: pod, namespace: work } },
    });
    return { ok: true, out: "" };
  } catch (err) {
    const s = kubeStatusOf(err);
    if (!s) throw err;
    return { ok: false, out: s.message ?? "" };
  }
}

async function createPod(name: string): Promise<void> {
  // Unscheduled (no kubelet in the test control plane): an eviction of a pending pod deletes it.
  await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedPod({
      namespace: work,
      body: {
        metadata: { name },
        spec: { containers: [{ name: "app", image: "registry.k8s.io/pause:3.10" }] },
      },
    });
}

async function podExists(name: string): Promise<boolean> {
  try {
    await cp.adminKubeConfig().makeApiClient(CoreV1Api).readNamespacedPod({ name, namespace: work });
    return true;
  } catch (err) {
    if (kubeStatusOf(err)?.code === 404) return false;
    throw err;
  }
}

async function approvalRequestFor(
  resource: string,
  subResource: string,
  name: string,
): Promise<ApprovalRequest> {
  return eventually(
    async () =>
      (await approvalRequestsIn(cp, work).list()).find(
        (ar) =>
          ar.spec.action.resource === resource &&
          ar.spec.action.subResource === subResource &&
          ar.spec.action.name === name,
      ),
    10_000,
    `ApprovalRequest for ${resource}/${subResource} ${name}`,
  );
}

const readRequest = (name: string) => approvalRequestsIn(cp, work).get(name);

const policy = (name: string, namespace: string, spec: Omit<ApprovalPolicySpec, "subjects">) =>
  approvalPolicy(name, { subjects: agentsIn(namespace), ...spec });

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(work);
  for (const key of Object.keys(agents) as (keyof typeof agents)[]) {
    const id = await cp.serviceAccountIdentity(agents[key], "bot");
    agent[key] = { kubeConfig: id.kubeConfig, kubeconfigPath: id.kubeconfigPath };
    await grantSideDoors(agents[key]);
  }
  const admin = cp.adminKubeConfig();
  await admin
    .makeApiClient(CoreV1Api)
    .createNamespacedServiceAccount({ namespace: work, body: { metadata: { name: "deployer" } } });
  // No controller-manager runs: the Deployment exists without pods, which is all `scale` needs.
  await admin.makeApiClient(AppsV1Api).createNamespacedDeployment({
    namespace: work,
    body: {
      metadata: { name: "web" },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: { containers: [{ name: "web", image: "registry.k8s.io/pause:3.10" }] },
        },
      },
    },
  });
  for (const pod of ["victim", "victim-pods-only", "victim-pods-sub"]) await createPod(pod);
  approver = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);

  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: Object.values(agents) },
    webhookName: "countersign-coverage-test",
  });
  const names = {
    everything: uniqueName("no-match"),
    podsOnly: uniqueName("pods-only"),
    podsAndSubresources: uniqueName("pods-sub"),
    costly: uniqueName("costly"),
    bystander: uniqueName("bystander"),
  };
  await applyPolicies(cp, cs, [
    policy(names.everything, agents.everything, {
      rules: [requireApproval("everything", approvers)],
    }),
    policy(names.podsOnly, agents.podsOnly, {
      match: [matching(["*"], ["pods"])],
      rules: [{ name: "pods", action: "Deny", message: "pods are off limits" }],
    }),
    policy(names.podsAndSubresources, agents.podsAndSubresources, {
      match: [matching(["*"], ["pods/*"])],
      rules: [
        {
          name: "pods-and-subresources",
          action: "Deny",
          message: "pods and their subresources are off limits",
        },
      ],
    }),
    // Quadratic by accident: the split runs once per listed dependency, over the whole list.
    policy(names.costly, agents.costly, {
      match: [matching(["CREATE"], ["configmaps"])],
      rules: [
        {
          name: "declared-dependencies",
          action: "Deny",
          message: "every dependency must be declared",
          condition:
            "has(object.data) && 'deps' in object.data && !object.data.deps.split(',').all(d, d in object.data.declared.split(','))",
        },
      ],
    }),
    policy(names.bystander, agents.bystander, {
      match: [matching(["CREATE"], ["configmaps"])],
      rules: [
        {
          name: "no-forbidden",
          action: "Deny",
          condition: "object.metadata.name.startsWith('forbidden-')",
        },
      ],
    }),
  ]);
  // The API server picks up a new webhook configuration asynchronously: wait until it gates.
  await eventually(
    async () => !(await kubectl("podsOnly", "delete", "pod", "victim", "--dry-run=server")).ok,
    15_000,
    "webhook active",
  );
});

afterAll(async () => {
  await cs?.stop();
});

describe("a policy without match covers every mutation, subresources included", () => {
  it("gates `kubectl create token` for another service account (serviceaccounts/token CREATE)", async () => {
    const r = await kubectl("everything", "create", "token", "deployer");
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/needs a human approval/);
    expect(r.out).not.toMatch(/eyJ/); // no token was issued
    const ar = await approvalRequestFor("serviceaccounts", "token", "deployer");
    expect(ar.spec.action.operation).toBe("CREATE");
  });

  it("gates `kubectl scale` (deployments/scale UPDATE); the replica count is unchanged", async () => {
    const r = await kubectl("everything", "scale", "deployment/web", "--replicas=5");
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/needs a human approval/);
    await approvalRequestFor("deployments", "scale", "web");
    const d = await cp
      .adminKubeConfig()
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: "web", namespace: work });
    expect(d.spec?.replicas).toBe(1);
  });

  it("gates an eviction, what `kubectl drain` sends (pods/eviction CREATE); the pod stays", async () => {
    const r = await evict("everything", "victim");
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/needs a human approval/);
    await approvalRequestFor("pods", "eviction", "victim");
    expect(await podExists("victim")).toBe(true);
  });

  it("gates `kubectl debug` (pods/ephemeralcontainers); no ephemeral container is added", async () => {
    const r = await kubectl("everything", "debug", "victim", "--image=busybox", "--container=shell");
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/needs a human approval/);
    await approvalRequestFor("pods", "ephemeralcontainers", "victim");
    const pod = await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedPod({ name: "victim", namespace: work });
    expect(pod.spec?.ephemeralContainers ?? []).toEqual([]);
  });
});

describe("an approved subresource action", () => {
  async function approveAndWait(ar: ApprovalRequest): Promise<void> {
    await decideRequest(approver, work, ar.metadata.name, "Approve", "checked");
    await eventually(
      async () => (await readRequest(ar.metadata.name)).status?.phase === "Approved",
      10_000,
      "Approved",
    );
  }

  it("goes through once (eviction); the execution check says it cannot check a subresource, not 'refused'", async () => {
    const ar = await approvalRequestFor("pods", "eviction", "victim");
    await approveAndWait(ar);
    expect(await evict("everything", "victim")).toEqual({ ok: true, out: "" });
    await eventually(async () => !(await podExists("victim")), 10_000, "evicted pod deleted");
    const checked = await eventually(
      async () => (await readRequest(ar.metadata.name)).status?.execution,
      15_000,
      "execution checked",
    );
    expect(checked).toMatchObject({ result: "Unknown", message: expect.stringMatching(/subresource/) }); // never "refused"
  });

  it("issues exactly one token for an approved `kubectl create token`", async () => {
    const ar = await approvalRequestFor("serviceaccounts", "token", "deployer");
    await approveAndWait(ar);
    const first = await kubectl("everything", "create", "token", "deployer");
    expect(first.ok).toBe(true);
    expect(first.out).toMatch(/^eyJ/);
    const again = await kubectl("everything", "create", "token", "deployer");
    expect(again.ok).toBe(false);
    expect(again.out).toMatch(/needs a human approval/);
    const checked = await eventually(
      async () => (await readRequest(ar.metadata.name)).status?.execution,
      15_000,
      "execution checked",
    );
    expect(checked).toMatchObject({ result: "Unknown", message: expect.stringMatching(/subresource/) }); // never "refused"
  });
});

describe("resources entries match like Kubernetes webhook rules", () => {
  it("`pods` is the main resource only: the pod cannot be deleted, but an eviction is not matched (by design)", async () => {
    const del = await kubectl("podsOnly", "delete", "pod", "victim-pods-only");
    expect(del.ok).toBe(false);
    expect(del.out).toMatch(/pods are off limits/);
    expect(await evict("podsOnly", "victim-pods-only")).toEqual({ ok: true, out: "" });
    await eventually(async () => !(await podExists("victim-pods-only")), 10_000, "evicted pod deleted");
  });

  it("`pods/*` covers pods and their subresources: the eviction is denied", async () => {
    const r = await evict("podsAndSubresources", "victim-pods-sub");
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/pods and their subresources are off limits/);
    expect(await podExists("victim-pods-sub")).toBe(true);
    const del = await kubectl("podsAndSubresources", "delete", "pod", "victim-pods-sub");
    expect(del.out).toMatch(/pods and their subresources are off limits/);
  });
});

async function createConfigMap(
  who: keyof typeof agents,
  name: string,
  data: Record<string, string>,
): Promise<{ ok: boolean; out: string; ms: number }> {
  const started = performance.now();
  try {
    await agent[who].kubeConfig
      .makeApiClient(CoreV1Api)
      .createNamespacedConfigMap({ namespace: work, body: { metadata: { name }, data } });
    return { ok: true, out: "", ms: performance.now() - started };
  } catch (err) {
    const s = kubeStatusOf(err);
    if (!s) throw err;
    return { ok: false, out: s.message ?? "", ms: performance.now() - started };
  }
}

describe("one expensive expression cannot stall admission", () => {
  it("rejects at apply time a policy whose cost is quadratic in the request, naming the field", async () => {
    const custom = cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    let message = "";
    try {
      await custom.createClusterCustomObject({
        ...gvr(POLICY_PLURAL),
        body: policy(uniqueName("quadratic"), agents.costly, {
          rules: [
            {
              name: "unique-values",
              action: "Deny",
              condition:
                "object.data.exists(k, object.data.exists(j, j != k && object.data[j] == object.data[k]))",
            },
          ],
        }),
      });
    } catch (err) {
      message = kubeStatusOf(err)?.message ?? String(err);
    }
    expect(message).toMatch(/spec\.rules\[0\]\.condition: cost grows with the square of the request/);
  });

  it("fails a ~1 MiB quadratic evaluation closed within its budget while another agent's requests are answered promptly", async () => {
    const deps = Array.from({ length: 28_000 }, (_, i) => `dependency-${i}`).join(","); // ×2 ≈ 0.95 MiB (ConfigMaps cap at 1 MiB)
    expect(deps.length * 2).toBeGreaterThan(900_000);
    // Sanity: the bystander's policy is live and cheap.
    expect((await createConfigMap("bystander", "forbidden-0", {})).ok).toBe(false);

    const expensive = createConfigMap("costly", "deps", { deps, declared: deps });
    const bystander: { ok: boolean; out: string; ms: number }[] = [];
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 50));
      bystander.push(await createConfigMap("bystander", `ok-${i}`, { note: "small" }));
    }
    const costly = await expensive;

    expect(costly.ok).toBe(false);
    expect(costly.out).toMatch(/could not be evaluated for this request/);
    expect(costly.out).toMatch(
      /spec\.rules\[0\]\.condition: the expression exceeded its evaluation cost budget/,
    );
    expect(costly.ms).toBeLessThan(2000);
    for (const b of bystander) expect(b).toMatchObject({ ok: true });
    const slowest = Math.max(...bystander.map((b) => b.ms));
    expect(slowest).toBeLessThan(1500);
    console.log(
      `cost budget: covered 1 MiB request denied in ${costly.ms.toFixed(0)} ms; ` +
        `concurrent bystander creates ${bystander.map((b) => b.ms.toFixed(0)).join("/")} ms`,
    );
  });
});
