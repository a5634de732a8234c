/**
 * Deleting a namespace completes (the harness runs kube-controller-manager's namespace
 * controller), after Countersign archived the namespace's audit chain into its install
 * namespace; the guard still refuses everyone else, and the namespace controller itself in a
 * live namespace.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SIEM_MESSAGE } from "../../src/audit/writer.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { isNotFound, kubeStatusOf } from "../../src/kube/errors.js";
import { runCli } from "../../src/plugin/cli.js";
import { decide, listAuditRecords } from "../../src/plugin/commands.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import type { AuditCheckpoint, AuditRecord } from "../../src/resources/audit-record.js";
import {
  APPROVAL_REQUEST_PLURAL,
  AUDIT_CHECKPOINT_PLURAL,
  AUDIT_PLURAL,
  gvr,
} from "../../src/resources/group.js";
import { APPROVERS_GROUP, deleteGuard } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  countersignIdentity,
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import { applyPolicies, untilRequestCreated } from "../support/scenario.js";

const agentsNs = uniqueName("agents");
const installNamespace = uniqueName("cs-nsdel");
const doomed = uniqueName("doomed");
const live = uniqueName("live");
let cp: ControlPlane;
let cs: TestCountersign;
let self: KubeConfig;
let agent: KubeConfig;
let alice: KubeConfig;
let auditor: string;

/** Lets the agent delete secrets and every Countersign resource in ns (RBAC is not what stops it). */
async function grantAgent(ns: string): Promise<void> {
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({
    namespace: ns,
    body: {
      metadata: { name: "agent" },
      rules: [
        { apiGroups: [""], resources: ["secrets"], verbs: ["get", "delete"] },
        {
          apiGroups: ["countersign.io"],
          resources: ["approvalrequests", "auditrecords", "auditcheckpoints"],
          verbs: ["get", "list", "delete", "deletecollection"],
        },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: ns,
    body: {
      metadata: { name: "agent" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "agent" },
      subjects: [{ kind: "ServiceAccount", name: "bot", namespace: agentsNs }],
    },
  });
}

/** An approved request (two records) in ns. */
async function approvedRequest(ns: string, secret: string): Promise<string> {
  await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedSecret({ namespace: ns, body: { metadata: { name: secret }, stringData: { k: "v" } } });
  const name = await untilRequestCreated(() =>
    agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: secret, namespace: ns }),
  );
  await decide(alice, ns, name, "Approve", `go ${secret}`);
  await eventually(
    async () => {
      const ar = (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
        ...gvr(APPROVAL_REQUEST_PLURAL),
        namespace: ns,
        name,
      })) as ApprovalRequest;
      return ar.status?.phase === "Approved" && ar.status.auditRecords?.length === 2;
    },
    15_000,
    "Approved with its records",
  );
  return name;
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => "allowed",
    (err: unknown) => kubeStatusOf(err)?.message ?? String(err),
  );

beforeAll(async () => {
  cp = await attachControlPlane();
  self = await countersignIdentity(cp, installNamespace);
  agent = (await cp.serviceAccountIdentity(agentsNs, "bot")).kubeConfig;
  alice = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);
  auditor = (await cp.userIdentity("alice@example.com", [APPROVERS_GROUP])).kubeconfigPath;
  for (const ns of [doomed, live]) {
    await cp.ensureNamespace(ns);
    await grantAgent(ns);
  }
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace,
    webhookName: uniqueName("countersign-nsdel"),
  });
  await applyPolicies(cp, cs, [
    deleteGuard(uniqueName("nsdel-policy"), { agents: agentsNs, namespace: [doomed, live] }),
  ]);
});

afterAll(async () => {
  await cs?.stop();
});

describe("namespace deletion", () => {
  it("in a live namespace, the agent and even the namespace controller's identity are refused deleting the audit trail, and nobody pins a request with a finalizer", async () => {
    await approvedRequest(live, "keep");
    const [record] = await listAuditRecords(self, live);
    const custom = agent.makeApiClient(CustomObjectsApi);
    for (const [plural, name] of [
      [AUDIT_PLURAL, record!.metadata.name],
      [AUDIT_CHECKPOINT_PLURAL, "audit-chain"],
      [APPROVAL_REQUEST_PLURAL, record!.spec.approvalRequest.name],
    ] as const) {
      expect(
        await refusal(custom.deleteNamespacedCustomObject({ ...gvr(plural), namespace: live, name })),
      ).toMatch(/Countersign: .*(only by Countersign|part of the audit trail|anchor the audit trail)/);
    }
    expect(
      await refusal(custom.deleteCollectionNamespacedCustomObject({ ...gvr(AUDIT_PLURAL), namespace: live })),
    ).toMatch(/AuditRecords are written and retired only by Countersign/);
    // The namespace controller's real identity (kube-controller-manager runs it with its own
    // service account): only in a namespace being deleted, and only once it is archived.
    const nsController = (await cp.serviceAccountIdentity("kube-system", "namespace-controller")).kubeConfig;
    expect(
      await refusal(
        nsController.makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({
          ...gvr(AUDIT_PLURAL),
          namespace: live,
          name: record!.metadata.name,
        }),
      ),
    ).toMatch(new RegExp(`namespace ${live} is not being deleted`));
    // An approver (who may patch requests) cannot pin one with a finalizer to hold the namespace.
    expect(
      await refusal(
        alice.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject({
          ...gvr(APPROVAL_REQUEST_PLURAL),
          namespace: live,
          name: record!.spec.approvalRequest.name,
          body: [{ op: "add", path: "/metadata/finalizers", value: ["example.com/hold"] }],
        }),
      ),
    ).toMatch(/only Countersign sets an ApprovalRequest's finalizers/);
    expect(
      (await runCli(["audit", "verify", "-n", live, "--kubeconfig", auditor], "kubectl-approvals")).code,
    ).toBe(0);
  });

  it("kubectl delete namespace completes: the chain is archived into the install namespace first, and verify covers the archive", async () => {
    await approvedRequest(doomed, "s1");
    await approvedRequest(doomed, "s2");
    const before = (await listAuditRecords(self, doomed)).sort((a, b) => a.spec.sequence - b.spec.sequence);
    expect(before).toHaveLength(4);
    const chainId = (
      (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
        ...gvr(AUDIT_CHECKPOINT_PLURAL),
        namespace: doomed,
        name: "audit-chain",
      })) as AuditCheckpoint
    ).spec.chain;
    const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
    const uid = (await core.readNamespace({ name: doomed })).metadata!.uid!;

    const t0 = Date.now();
    await core.deleteNamespace({ name: doomed });
    await eventually(
      async () => {
        try {
          await core.readNamespace({ name: doomed });
          return false;
        } catch (err) {
          return isNotFound(err);
        }
      },
      60_000,
      "namespace gone",
    );
    console.log(`[countersign] namespace with Countersign objects deleted in ${Date.now() - t0} ms`);

    const archive = (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      ...gvr(AUDIT_CHECKPOINT_PLURAL),
      namespace: installNamespace,
      name: `archive.${doomed}.${uid}`,
    })) as AuditCheckpoint;
    expect(archive.spec.archive).toMatchObject({ namespace: doomed, uid, records: 4 });
    expect(archive.spec.chain).toBe(chainId);
    expect(archive.spec.head.sequence).toBe(3);
    const archived = (
      (await self.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
        ...gvr(AUDIT_PLURAL),
        namespace: installNamespace,
        labelSelector: `countersign.io/archive-uid=${uid}`,
      })) as { items: AuditRecord[] }
    ).items.sort((a, b) => a.spec.sequence - b.spec.sequence);
    expect(archived.map((r) => r.spec)).toEqual(before.map((r) => r.spec));

    // The exported log of the deleted namespace's records still matches the archive.
    const exported = join(cp.dir, `${doomed}.jsonl`);
    writeFileSync(
      exported,
      before
        .map((r) =>
          JSON.stringify({
            message: SIEM_MESSAGE,
            auditRecord: `${doomed}/${r.metadata.name}`,
            namespace: doomed,
            chain: chainId,
            sequence: r.spec.sequence,
            event: r.spec.event,
            spec: r.spec,
          }),
        )
        .join("\n"),
    );
    const out = await runCli(
      ["audit", "verify", "-n", installNamespace, "--kubeconfig", auditor, "--against", exported],
      "kubectl-approvals",
    );
    expect(out.code, out.out).toBe(0);
    expect(out.out).toContain(
      `archive of ${doomed} (deleted; uid ${uid}) in ${installNamespace}: OK, 4 records`,
    );
    expect(out.out).toMatch(/checkpoint head 3, exported log 4 lines/);
  });
});
