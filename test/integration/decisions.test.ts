/**
 * Decisions that cannot be forged or outlive consent, through a real kube-apiserver
 * (issue 9, items 5 and 7): a decision's metadata must be the caller's own and current;
 * an approval can be revoked until it is used, and revoke races the agent's retry safely;
 * an approval whose approver lost their rights is not used.
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
import { kubeTime } from "../../src/kube/time.js";
import { runCli } from "../../src/plugin/cli.js";
import { decide, listAuditRecords, revoke, whoAmI } from "../../src/plugin/commands.js";
import type { Decision } from "../../src/resources/approval-request.js";
import type { AuditRecord } from "../../src/resources/audit-record.js";
import { CountersignClient } from "../../src/resources/client.js";
import { APPROVERS_GROUP, deleteGuard, requireApproval } from "../fixtures/approval-policy.js";
import { serviceAccountUser } from "../fixtures/identity.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  APPROVER_CLUSTER_ROLE,
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
  outcome,
  type Receiver,
  receiverTls,
  rejection,
  startReceiver,
  untilRefused,
} from "../support/scenario.js";

const agentsNs = uniqueName("dec-agents");
const humansNs = uniqueName("dec-humans");
const ns = uniqueName("dec-prod");
const policyName = uniqueName("dec-guard");
const erinName = `${uniqueName("erin")}@example.com`;
const erinGroup = uniqueName("lapse-approvers"); // bound to nothing, so only erin's own binding counts
const RACE_ITERATIONS = 10;
let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let agentUser: string;
let alice: KubeConfig;
let bob: KubeConfig;
let bobKubeconfigPath: string;
let carol: KubeConfig; // RBAC ok, not in the approvers
let dave: KubeConfig; // in the approvers group, lacks the RBAC verbs
let erin: KubeConfig; // an approver whose rights are taken away
let reviewer: KubeConfig; // a service-account approver: has a uid
let reviewerToken: string;
let agentToken: string;
let receiver: Receiver | undefined;
/** The Revoked notifications' bodies, as received. */
const received = () => receiver?.received.map((c) => c.body) ?? [];

const core = () => cp.adminKubeConfig().makeApiClient(CoreV1Api);
const getAr = (name: string) => approvalRequestsIn(cp, ns).get(name);

/** What an attacker sends: a raw decision patch, metadata as given (the caller's own unless overridden). */
async function forged(kc: KubeConfig, name: string, over: Partial<Decision>, drop: (keyof Decision)[] = []) {
  const d: Record<string, unknown> = {
    ...decisionEntry(await whoAmI(kc), "Approve", "forged", "kubectl", new Date()),
    ...over,
  };
  for (const k of drop) delete d[k];
  return rejection(
    new CountersignClient(kc.makeApiClient(CustomObjectsApi)).approvalRequests.appendDecision(
      await getAr(name),
      d as unknown as Decision,
    ),
  );
}

async function secret(name: string): Promise<void> {
  await core().createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name }, stringData: { password: "never-logged" } },
  });
}

const agentDelete = (name: string, dryRun = false) =>
  agent
    .makeApiClient(CoreV1Api)
    .deleteNamespacedSecret({ name, namespace: ns, ...(dryRun ? { dryRun: "All" } : {}) });

/** The agent tries to delete a secret; returns the ApprovalRequest name from the denial. */
const requestDelete = (secretName: string) => deniedRequest(cp, ns, () => agentDelete(secretName));

async function approved(name: string, by: KubeConfig = alice): Promise<void> {
  expect(await decide(by, ns, name, "Approve", "fine")).toMatch(/approved/);
  await eventually(async () => (await getAr(name)).status?.phase === "Approved", 10_000, "Approved");
}

/** A call to the approval HTTP API as the bearer of `token`. */
const api = (path: string, token: string, body?: object) =>
  approvalApi(cs.replicas[0]!.apiPort, path, token, body);

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const id = await agentIdentity(cp, agentsNs, "ops-bot", {
    target: ns,
    resources: ["secrets"],
    verbs: ["get", "list", "create", "delete"],
  });
  agent = id.kubeConfig;
  agentUser = id.username;
  agentToken = id.token;
  // The agent also holds the approver role here: only Countersign's rules stop it revoking.
  await bindApproverRole(cp, ns, { namespace: agentsNs, name: "ops-bot" }, "agent-can-approve");
  alice = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);
  bob = await approverIdentity(cp, "bob@example.com", [APPROVERS_GROUP]);
  bobKubeconfigPath = (await cp.userIdentity("bob@example.com", [APPROVERS_GROUP])).kubeconfigPath;
  carol = await approverIdentity(cp, "carol@example.com", ["finance"]);
  dave = await approverIdentity(cp, "dave@example.com", [APPROVERS_GROUP], false);
  erin = await approverIdentity(cp, erinName, [erinGroup]);
  const rev = await cp.serviceAccountIdentity(humansNs, "reviewer");
  reviewer = rev.kubeConfig;
  reviewerToken = rev.token;
  await bindApproverRole(cp, ns, { namespace: humansNs, name: "reviewer" }, "reviewer-approves");

  // A webhook receiver for Revoked notifications.
  receiver = await startReceiver(await receiverTls("dec-receiver"));
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: uniqueName("dec-cs"),
    webhookName: "countersign-decisions-test",
    notifications: {
      routes: [
        {
          name: "revocations",
          type: "webhook",
          url: `${receiver.base}/hook`,
          caPem: receiver.caPem,
          hmacSecret: "h",
          events: ["Revoked"],
        },
      ],
      defaultRoutes: ["revocations"],
    },
  });
  await applyPolicies(cp, cs, [
    deleteGuard(policyName, {
      agents: agentsNs,
      namespace: ns,
      rules: [
        requireApproval("deletes", {
          groups: [APPROVERS_GROUP, erinGroup],
          users: [agentUser, serviceAccountUser(humansNs, "reviewer")],
          ttl: "1h",
        }),
      ],
    }),
  ]);
  await secret("canary");
  await untilRefused(() => agentDelete("canary", true));
});

afterAll(async () => {
  await cs?.stop();
  await receiver?.close();
});

describe("decision metadata comes from the API server, not the client (9.5)", () => {
  it("forged uid or groups, missing fields, a stale or future time, and via=slack from a human are refused; the request stays Pending", async () => {
    await secret("meta");
    const name = await requestDelete("meta");
    // alice is a client-certificate user: her uid is empty, so claiming any uid is a forgery.
    expect(await forged(alice, name, { uid: "0b9c-forged" })).toMatch(
      /the decision's uid "0b9c-forged" does not match your authenticated uid ""/,
    );
    expect(await forged(alice, name, { groups: ["countersign:approvers", "system:masters"] })).toMatch(
      /groups do not match your authenticated groups/,
    );
    expect(await forged(alice, name, { groups: ["countersign:approvers"] })).toMatch(/groups do not match/);
    expect(await forged(alice, name, {}, ["groups"])).toMatch(
      /the decision lacks groups\. .*kubectl approve .* fill these in from a SelfSubjectReview/,
    );
    expect(await forged(alice, name, {}, ["time", "via"])).toMatch(/the decision lacks time, via/);
    expect(await forged(alice, name, { time: kubeTime(new Date(Date.now() - 3_600_000)) })).toMatch(
      /is 3\d{3}s behind the server's clock \(120s allowed\)/,
    );
    expect(await forged(alice, name, { time: kubeTime(new Date(Date.now() + 86_400_000)) })).toMatch(
      /is \d+s ahead of the server's clock/,
    );
    expect(await forged(alice, name, { via: "slack" })).toMatch(
      /a decision via slack is recorded only by Countersign itself/,
    );
    expect(await forged(alice, name, { via: "api" })).toMatch(/recorded only by Countersign itself/);
    // A service account has a uid: omitting or replacing it is refused.
    expect(await forged(reviewer, name, {}, ["uid"])).toMatch(/the decision lacks uid/);
    expect(await forged(reviewer, name, { uid: "00000000-0000-0000-0000-000000000000" })).toMatch(
      /the decision's uid "00000000-0000-0000-0000-000000000000" does not match your authenticated uid "[0-9a-f-]{36}"/,
    );
    await eventually(async () => (await getAr(name)).status?.phase === "Pending", 10_000, "Pending");
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);

    // The real clients still work: kubectl approve fills everything in (here for a service account).
    expect(await decide(reviewer, ns, name, "Approve", "checked")).toMatch(/approved/);
    const [d] = (await getAr(name)).spec.decisions!;
    expect(d).toMatchObject({ approver: `system:serviceaccount:${humansNs}:reviewer`, via: "kubectl" });
    expect(d!.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(d!.groups).toContain("system:serviceaccounts");
    expect(Math.abs(Date.parse(d!.time!) - Date.now())).toBeLessThan(60_000);
  });
});

describe("revocation (9.7)", () => {
  it("a revoked approval is refused at once, naming who revoked it and what to do next; audited, evented, notified", async () => {
    await secret("rev-1");
    const name = await requestDelete("rev-1");
    await approved(name);
    const out = await runCli(
      ["revoke", name, "-n", ns, "--reason", "wrong cluster", "--kubeconfig", bobKubeconfigPath],
      "kubectl-approvals",
    );
    expect(out).toMatchObject({
      code: 0,
      out: expect.stringMatching(/revoked .*: the approval can no longer be used/),
    });
    // Refused immediately, whether or not the controller has recorded Revoked yet.
    const message = await rejection(agentDelete("rev-1"));
    expect(message).toMatch(
      /the approval for this action was revoked by bob@example.com: wrong cluster .*it was not used\. Do not retry it unchanged before .*; talk to bob@example.com or change the plan/,
    );
    await eventually(async () => (await getAr(name)).status?.phase === "Revoked", 10_000, "Revoked");
    const ar = await getAr(name);
    expect(ar.status?.conditions?.find((c) => c.type === "Revoked")).toMatchObject({
      status: "True",
      reason: "RevokedByApprover",
    });
    expect(ar.status?.consumed).toBeUndefined();
    await core().readNamespacedSecret({ name: "rev-1", namespace: ns }); // still there
    const record = await eventually(
      async () =>
        (await listAuditRecords(cp.adminKubeConfig(), ns)).find(
          (r: AuditRecord) => r.metadata.name === `${name}.revoked`,
        ),
      10_000,
      "Revoked AuditRecord",
    );
    expect(record.spec).toMatchObject({
      event: "Revoked",
      actor: { username: "bob@example.com", via: "kubectl" },
      reason: "wrong cluster",
    });
    const events = await eventually(
      async () => {
        const list = await core().listNamespacedEvent({ namespace: ns });
        const mine = list.items.filter(
          (e) => e.reason === "ApprovalRevoked" && e.involvedObject.name === name,
        );
        return mine.length > 0 ? mine : undefined;
      },
      10_000,
      "ApprovalRevoked Event",
    );
    expect(events[0]!.type).toBe("Warning");
    expect(events[0]!.message).toMatch(/approval revoked by bob@example.com: wrong cluster/);
    const note = await eventually(
      async () =>
        received()
          .map((b) => JSON.parse(b))
          .find((b) => b.approvalRequest?.name === name),
      10_000,
      "Revoked notification",
    );
    expect(note).toMatchObject({ event: "Revoked", decidedBy: "bob@example.com: wrong cluster" });
    // Nothing more happens to it.
    expect(await revoke(alice, ns, name, "again").catch((e: Error) => e.message)).toMatch(/already Revoked/);
    expect(await forged(alice, name, { decision: "Revoke", reason: "me too" })).toMatch(
      /already revoked by bob@example.com/,
    );
    // One decision of a kind per approver: the CRD's list-map key (approver, decision) refuses it.
    expect(await forged(bob, name, { decision: "Revoke", reason: "twice" })).toMatch(/Duplicate value/);
    expect(await forged(dave, name, { decision: "Approve" })).toMatch(/already Revoked/);
  });

  it("only an eligible approver with RBAC verb revoke may revoke, with a reason, and only while Approved", async () => {
    await secret("rev-2");
    const name = await requestDelete("rev-2");
    expect(await revoke(bob, ns, name, "too early").catch((e: Error) => e.message)).toMatch(
      /is Pending: there is no approval to revoke yet\. Deny it instead: kubectl deny/,
    );
    expect(await forged(bob, name, { decision: "Revoke", reason: "too early" })).toMatch(/is Pending/);
    await approved(name);
    expect(await forged(agent, name, { decision: "Revoke", reason: "never mind" })).toMatch(
      /the requester cannot revoke its own request; only its approvers can/,
    );
    expect(await forged(carol, name, { decision: "Revoke", reason: "x" })).toMatch(
      /carol@example.com is not an approver for this request/,
    );
    expect(await forged(dave, name, { decision: "Revoke", reason: "x" })).toMatch(
      /lacks RBAC verb "revoke" on approvalrequests/,
    );
    expect(await forged(bob, name, { decision: "Revoke" }, ["reason"])).toMatch(
      /a revocation needs a reason/,
    );
    const noReason = await runCli(
      ["revoke", name, "-n", ns, "--kubeconfig", bobKubeconfigPath],
      "kubectl-approvals",
    );
    expect(noReason).toMatchObject({ code: 2, err: expect.stringMatching(/needs --reason/) });
    expect((await getAr(name)).spec.decisions).toHaveLength(1);
    // Still usable by the agent, once.
    await agentDelete("rev-2");
    await eventually(async () => (await getAr(name)).status?.phase === "Consumed", 10_000, "Consumed");
    expect(await revoke(bob, ns, name, "too late").catch((e: Error) => e.message)).toMatch(
      /already used .*; a used approval cannot be revoked/,
    );
  });

  it("the approval API revokes under the same rules: reason required, approvers only, 409 once finished", async () => {
    await secret("rev-api");
    const name = await requestDelete("rev-api");
    const path = `/namespaces/${ns}/approvalrequests/${name}`;
    expect((await api(`${path}/revoke`, reviewerToken, { reason: "early" })).status).toBe(409);
    const approve = await api(`${path}/approve`, reviewerToken, { reason: "ok" });
    expect(approve.status, approve.message).toBe(200);
    await eventually(async () => (await getAr(name)).status?.phase === "Approved", 10_000, "Approved");
    expect(await api(`${path}/revoke`, reviewerToken, {})).toMatchObject({
      status: 400,
      message: expect.stringMatching(/reason is required to revoke/),
    });
    expect(await api(`${path}/revoke`, agentToken, { reason: "mine" })).toMatchObject({
      status: 403,
      message: expect.stringMatching(/the requester cannot revoke its own request/),
    });
    const ok = await api(`${path}/revoke`, reviewerToken, { reason: "ticket withdrawn" });
    expect(ok.status, ok.message).toBe(200);
    expect(ok.json.approvalRequest?.decisions.at(-1)).toMatchObject({
      approver: `system:serviceaccount:${humansNs}:reviewer`,
      decision: "Revoke",
      via: "api",
      reason: "ticket withdrawn",
    });
    expect((await api(`${path}/revoke`, reviewerToken, { reason: "again" })).status).toBe(409);
    expect(await rejection(agentDelete("rev-api"))).toMatch(
      new RegExp(`revoked by system:serviceaccount:${humansNs}:reviewer: ticket withdrawn`),
    );
  });

  it(`revoke and the agent's retry race: exactly one wins, ${RACE_ITERATIONS} times over`, async () => {
    const tally = { consumed: 0, revoked: 0 };
    for (let i = 0; i < RACE_ITERATIONS; i++) {
      const s = `race-${i}`;
      await secret(s);
      const name = await requestDelete(s);
      await approved(name);
      const [rev, del] = await Promise.all([
        outcome(revoke(bob, ns, name, `race ${i}`)),
        outcome(agentDelete(s)),
      ]);
      expect(
        rev.ok !== del.ok,
        `iteration ${i}: revoke ${JSON.stringify(rev)}, retry ${JSON.stringify(del)}`,
      ).toBe(true);
      if (rev.ok) {
        tally.revoked++;
        expect(del.ok ? "" : del.error).toMatch(/revoked by bob@example.com/);
        await core().readNamespacedSecret({ name: s, namespace: ns });
        await eventually(async () => (await getAr(name)).status?.phase === "Revoked", 10_000, "Revoked");
        expect((await getAr(name)).status?.consumed).toBeUndefined();
      } else {
        tally.consumed++;
        expect(rev.error).toMatch(/already used/);
        expect(await rejection(core().readNamespacedSecret({ name: s, namespace: ns }))).toMatch(/not found/);
        await eventually(async () => (await getAr(name)).status?.phase === "Consumed", 10_000, "Consumed");
        expect((await getAr(name)).spec.decisions?.some((d) => d.decision === "Revoke")).toBe(false);
      }
    }
    console.log(`[decisions] revoke/retry race over ${RACE_ITERATIONS} iterations: ${JSON.stringify(tally)}`);
    expect(tally.consumed + tally.revoked).toBe(RACE_ITERATIONS);
  });
});

describe("approvers' rights are re-checked when an approval is used (9.7)", () => {
  it("an approval whose approver lost RBAC verb approve is not used; restoring the rights lets it through once", async () => {
    await secret("lapse");
    const name = await requestDelete("lapse");
    await approved(name, erin);
    const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    const bindingName = `${APPROVER_CLUSTER_ROLE}-${erinName.replace(/[^a-z0-9.-]/gi, "-").toLowerCase()}`;
    const binding = await rbac.readClusterRoleBinding({ name: bindingName });
    await rbac.deleteClusterRoleBinding({ name: bindingName });
    // Dry runs are checked the same way and use nothing: poll with them until RBAC (and the
    // 5 s decision cache) reflect the change.
    const lapsed = new RegExp(
      `cannot be used: ${erinName.replace(/\./g, "\\.")} no longer holds RBAC verb approve on it, so 0 of 1 required approvals stand\\. Nothing was used\\.`,
    );
    await eventually(
      async () => lapsed.test(await rejection(agentDelete("lapse", true)).catch(() => "")),
      20_000,
      "dry run refused for lapsed rights",
    );
    expect(await rejection(agentDelete("lapse"))).toMatch(lapsed);
    let ar = await getAr(name);
    expect(ar.status?.phase).toBe("Approved");
    expect(ar.status?.consumed).toBeUndefined();
    await core().readNamespacedSecret({ name: "lapse", namespace: ns });

    await rbac.createClusterRoleBinding({
      body: { metadata: { name: bindingName }, roleRef: binding.roleRef, subjects: binding.subjects ?? [] },
    });
    await eventually(
      async () => (await outcome(agentDelete("lapse", true))).ok,
      20_000,
      "dry run allowed again",
    );
    await agentDelete("lapse");
    await eventually(async () => (await getAr(name)).status?.phase === "Consumed", 10_000, "Consumed");
    ar = await getAr(name);
    expect(ar.status?.consumed?.admissionUID).toBeTruthy();
    expect(await rejection(core().readNamespacedSecret({ name: "lapse", namespace: ns }))).toMatch(
      /not found/,
    );
  });
});
