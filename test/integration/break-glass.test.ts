/**
 * Break-glass (issue 14, item 2) as attacks through a real kube-apiserver: a policy names a
 * break-glass group; one approval by a member with a reason of 20+ characters approves a
 * request that needs two, raising a Warning Event, notifying every route and marking the
 * AuditRecord. The requester (even in that group), a covered subject, a non-member and a short
 * reason are refused, and a covered subject cannot add itself to the policy.
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decisionEntry } from "../../src/approvals/request.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { decide, listAuditRecords, whoAmI } from "../../src/plugin/commands.js";
import type { Decision } from "../../src/resources/approval-request.js";
import type { AuditRecord } from "../../src/resources/audit-record.js";
import { CountersignClient } from "../../src/resources/client.js";
import { gvr, POLICY_PLURAL } from "../../src/resources/group.js";
import {
  APPROVERS_GROUP,
  agentsIn,
  approvalPolicy,
  deletesOf,
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
  approvalApi,
  approvalRequestsIn,
  bindApproverRole,
  deniedRequest,
  type Receiver,
  receiverTls,
  rejection,
  startReceiver,
} from "../support/scenario.js";

const agentsNs = uniqueName("bg-agents");
const humansNs = uniqueName("bg-humans");
const ns = uniqueName("bg-prod");
const policyName = uniqueName("bg-policy");
const oncallGroup = uniqueName("sre-oncall");
const danName = `${uniqueName("dan")}@example.com`; // a covered user who is also on call
const REASON = "payments are down; rolling back the bad secret now";
let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let dan: KubeConfig;
let olga: KubeConfig; // on call: the break-glass group
let frank: KubeConfig; // an ordinary approver, not on call
let patToken: string; // a service-account approver (token, for the HTTP API)
let receiver: Receiver | undefined;
/** The notifications received, by path, bodies parsed. */
const received = () =>
  (receiver?.received ?? []).map((c) => ({
    path: c.path,
    body: JSON.parse(c.body) as { event?: string; breakGlass?: boolean; approvalRequest?: { name: string } },
  }));

const custom = () => cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
const core = () => cp.adminKubeConfig().makeApiClient(CoreV1Api);
const getAr = (name: string) => approvalRequestsIn(cp, ns).get(name);

/** A raw break-glass decision patch with the caller's own, correct metadata. */
async function rawBreakGlass(kc: KubeConfig, name: string, reason: string): Promise<string> {
  const d: Decision = decisionEntry(await whoAmI(kc), "Approve", reason, "kubectl", new Date(), true);
  return rejection(
    new CountersignClient(kc.makeApiClient(CustomObjectsApi)).approvalRequests.appendDecision(
      await getAr(name),
      d,
    ),
  );
}

/** `who` tries to delete a secret; returns the ApprovalRequest name from the denial. */
async function requestDelete(who: KubeConfig, secretName: string): Promise<string> {
  await core().createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name: secretName }, stringData: { password: "never-logged" } },
  });
  return deniedRequest(cp, ns, () =>
    who.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: secretName, namespace: ns }),
  );
}

const api = (path: string, token: string, body: object) =>
  approvalApi(cs.replicas[0]!.apiPort, path, token, body);

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const bot = await agentIdentity(cp, agentsNs, "ops-bot", {
    target: ns,
    resources: ["secrets"],
    verbs: ["get", "delete"],
  });
  agent = bot.kubeConfig;
  olga = await approverIdentity(cp, `${uniqueName("olga")}@example.com`, [oncallGroup]);
  frank = await approverIdentity(cp, `${uniqueName("frank")}@example.com`, [APPROVERS_GROUP]);
  // dan: covered by the policy, on call, holds the approver role and may delete secrets and edit policies.
  dan = await approverIdentity(cp, danName, [oncallGroup]);
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  await rbac.createClusterRole({
    body: {
      metadata: { name: `${ns}-policy-editor` },
      rules: [
        { apiGroups: ["countersign.io"], resources: ["approvalpolicies"], verbs: ["get", "update", "patch"] },
        { apiGroups: [""], resources: ["secrets"], verbs: ["get", "delete"] },
      ],
    },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: `${ns}-dan-edits` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `${ns}-policy-editor` },
      subjects: [{ kind: "User", name: danName, apiGroup: "rbac.authorization.k8s.io" }],
    },
  });
  const pat = await cp.serviceAccountIdentity(humansNs, "pat");
  patToken = pat.token;
  await bindApproverRole(cp, ns, { namespace: humansNs, name: "pat" }, "pat-approves");

  // Two notification routes; the rule names only the first, for Requested only.
  receiver = await startReceiver(await receiverTls("bg-receiver"));
  const { base, caPem } = receiver;
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs], users: [danName] },
    installNamespace: uniqueName("bg-cs"),
    webhookName: "countersign-break-glass-test",
    notifications: {
      routes: [
        { name: "approvers", type: "webhook", url: `${base}/approvers`, caPem, events: ["Requested"] },
        { name: "security", type: "webhook", url: `${base}/security`, caPem, events: ["Denied"] },
      ],
      defaultRoutes: [],
    },
  });
  await applyPolicies(cp, cs, [
    approvalPolicy(policyName, {
      subjects: { ...agentsIn(agentsNs), users: [danName] },
      match: [deletesOf("secrets", ns)],
      rules: [
        requireApproval("deletes", {
          groups: [APPROVERS_GROUP, `system:serviceaccounts:${humansNs}`],
          requiredApprovals: 2,
          notify: ["approvers"],
          breakGlass: { groups: [oncallGroup] },
        }),
      ],
    }),
  ]);
});

afterAll(async () => {
  await cs?.stop();
  await receiver?.close();
});

describe("break-glass attacks", () => {
  it("the requester cannot break the glass on its own request, though it is in the break-glass group", async () => {
    const name = await requestDelete(dan, uniqueName("dan-secret"));
    expect(await rawBreakGlass(dan, name, REASON)).toMatch(/nobody decides their own request/);
    expect(await rejection(decide(dan, ns, name, "Approve", REASON, new Date(), true))).toMatch(
      /cannot decide your own request/,
    );
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);
    expect((await getAr(name)).status?.phase).toBe("Pending");
  });

  it("a covered subject in the break-glass group cannot break the glass on another agent's request", async () => {
    const name = await requestDelete(agent, uniqueName("bot-secret"));
    expect(await rawBreakGlass(dan, name, REASON)).toMatch(
      new RegExp(`${danName} is covered by ApprovalPolicy ${policyName}`),
    );
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);
  });

  it("a short reason is refused, and so is a non-member, through kubectl and the HTTP API", async () => {
    const name = await requestDelete(agent, uniqueName("short"));
    expect(await rawBreakGlass(olga, name, "urgent, trust me")).toMatch(/a reason of at least 20 characters/);
    expect(await rejection(decide(olga, ns, name, "Approve", "   urgent   ", new Date(), true))).toMatch(
      /at least 20 characters/,
    );
    expect(await rawBreakGlass(frank, name, REASON)).toMatch(
      /is in none of this request's break-glass groups/,
    );
    const viaApi = await api(`/namespaces/${ns}/approvalrequests/${name}/approve`, patToken, {
      breakGlass: true,
      reason: REASON,
    });
    expect(viaApi).toMatchObject({ status: 403, reason: "break-glass-not-member" });
    const deny = await api(`/namespaces/${ns}/approvalrequests/${name}/deny`, patToken, { breakGlass: true });
    expect(deny).toMatchObject({ status: 400 });
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);
    expect((await getAr(name)).status?.phase).toBe("Pending");
  });

  it("a covered subject cannot add itself to the break-glass groups; nobody can name a service-account group", async () => {
    const policy = (await CountersignClient.fromKubeConfig(cp.adminKubeConfig()).approvalPolicies.get(
      policyName,
    )) as unknown as { spec: { rules: { approval: { breakGlass: { groups: string[] } } }[] } };
    const withGroup = (g: string) => {
      const next = structuredClone(policy);
      next.spec.rules[0]!.approval.breakGlass.groups.push(g);
      return next;
    };
    expect(
      await rejection(
        dan.makeApiClient(CustomObjectsApi).replaceClusterCustomObject({
          ...gvr(POLICY_PLURAL),
          name: policyName,
          body: withGroup("dans-friends"),
        }),
      ),
    ).toMatch(/is covered by ApprovalPolicy .*cannot change the rules that gate them/);
    expect(
      await rejection(
        custom().replaceClusterCustomObject({
          ...gvr(POLICY_PLURAL),
          name: policyName,
          body: withGroup(`system:serviceaccounts:${agentsNs}`),
        }),
      ),
    ).toMatch(/break-glass groups must be groups of people/);
  });

  it("one on-call approval with a reason approves a two-approver request: Warning Event, every route, audit marked; used once", async () => {
    const secretName = uniqueName("rollback");
    const name = await requestDelete(agent, secretName);
    expect(await decide(olga, ns, name, "Approve", REASON, new Date(), true)).toMatch(/break-glass approved/);
    await eventually(async () => (await getAr(name)).status?.phase === "Approved", 15_000, "Approved");
    const ar = await getAr(name);
    expect(ar.spec.decisions?.[0]).toMatchObject({ breakGlass: true, reason: REASON });
    // A Warning Event on the request.
    const events = await eventually(
      async () => {
        const list = await core().listNamespacedEvent({ namespace: ns });
        const found = list.items.filter(
          (e) => e.involvedObject.name === name && e.reason === "BreakGlassApproval",
        );
        return found.length > 0 ? found : undefined;
      },
      15_000,
      "BreakGlassApproval Event",
    );
    expect(events[0]!.type).toBe("Warning");
    expect(events[0]!.message).toMatch(/break-glass approval by .*payments are down/);
    // Every route, including one the rule does not name and whose events exclude Approved.
    const paths = await eventually(
      async () => {
        const got = received()
          .filter((r) => r.body.approvalRequest?.name === name && r.body.event === "Approved")
          .map((r) => r.path)
          .sort();
        return got.length === 2 ? got : undefined;
      },
      15_000,
      "Approved notifications on both routes",
    );
    expect(paths).toEqual(["/approvers", "/security"]);
    expect(
      received().find((r) => r.body.approvalRequest?.name === name && r.body.event === "Approved")?.body,
    ).toMatchObject({
      breakGlass: true,
    });
    // The audit trail marks it.
    const approvedRecord = await eventually(
      async () =>
        (await listAuditRecords(cp.adminKubeConfig(), ns)).find(
          (r: AuditRecord) => r.spec.approvalRequest.name === name && r.spec.event === "Approved",
        ),
      15_000,
      "Approved AuditRecord",
    );
    expect(approvedRecord.spec.breakGlass).toBe(true);
    // The agent's retry passes once.
    await agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: secretName, namespace: ns });
    await eventually(async () => (await getAr(name)).status?.phase === "Consumed", 15_000, "Consumed");
  });
});
