/**
 * Reminders and escalation (issue 14 item 3) through a real kube-apiserver, with a local HTTPS
 * receiver standing in for the routes: a request left pending past remindAfter re-notifies its
 * routes once, past escalateAfter notifies the escalation route once, and the agent's denial
 * says so ("1/2 approvals …, reminded 3 s ago"). Two more controllers whose clocks run ahead
 * reconciling the same request at the same moment, and a restarted controller, send neither
 * twice (status.remindedAt / escalatedAt are written with the entries in one conditional write).
 */
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalRequestReconciler } from "../../src/controller/reconciler.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { componentLogger } from "../../src/logging/logger.js";
import { createCertificateAuthority, issueCertificate } from "../../src/pki/certificates.js";
import { decide } from "../../src/plugin/commands.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { EventReason } from "../../src/resources/event-reasons.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  countersignIdentity,
  eventually,
  grantServiceAccount,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";

const G = { group: "countersign.io", version: "v1alpha1" };
const agentsNs = uniqueName("fu-agents");
const fastNs = uniqueName("fu-fast"); // remindAfter 3s, escalateAfter 7s
const slowNs = uniqueName("fu-slow"); // remindAfter 5m, escalateAfter 8m: only a clock ahead reaches them
let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let alice: KubeConfig;
const received: { route: string; event: string; name: string }[] = [];
let receiver: ReturnType<typeof createServer> | undefined;
const extra: ApprovalRequestReconciler[] = [];
const installNamespace = uniqueName("fu-cs");

const custom = () => cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
const core = () => cp.adminKubeConfig().makeApiClient(CoreV1Api);
const count = (route: string, event: string, name: string) =>
  received.filter((m) => m.route === route && m.event === event && m.name === name).length;

async function getAr(namespace: string, name: string): Promise<ApprovalRequest> {
  return (await custom().getNamespacedCustomObject({
    ...G,
    namespace,
    plural: "approvalrequests",
    name,
  })) as ApprovalRequest;
}

/** The agent deletes ConfigMap `name` in `namespace`: the denial's text. */
async function agentDelete(namespace: string, name: string): Promise<string> {
  try {
    await agent.makeApiClient(CoreV1Api).deleteNamespacedConfigMap({ name, namespace });
    return "allowed";
  } catch (err) {
    return kubeStatusOf(err)?.message ?? String(err);
  }
}

async function requestDelete(namespace: string, name: string): Promise<string> {
  await core().createNamespacedConfigMap({ namespace, body: { metadata: { name }, data: { k: "v" } } });
  const message = await eventually(
    async () => {
      const m = await agentDelete(namespace, name);
      return /needs a human approval/.test(m) && m;
    },
    15_000,
    "gated",
  );
  const m = /ApprovalRequest \S+\/(\S+) (was created|is pending)/.exec(message);
  if (!m) throw new Error(`unexpected denial: ${message}`);
  return m[1]!;
}

function policy(name: string, namespace: string, approval: Record<string, unknown>) {
  return {
    apiVersion: "countersign.io/v1alpha1",
    kind: "ApprovalPolicy",
    metadata: { name },
    spec: {
      subjects: { serviceAccounts: [{ namespace: agentsNs }] },
      match: [
        { operations: ["DELETE"], apiGroups: [""], resources: ["configmaps"], namespaces: [namespace] },
      ],
      rules: [
        {
          name: "deletes",
          action: "RequireApproval",
          approval: {
            approvers: { groups: ["fu-approvers"] },
            requiredApprovals: 2,
            notify: ["team"],
            ...approval,
          },
        },
      ],
    },
  } as never;
}

/** Another controller replica (its own informers and lease identity) whose clock runs `aheadMs` ahead. */
async function rival(identity: string, aheadMs: number): Promise<ApprovalRequestReconciler> {
  const leader = cs.replicas[0]!.controller!;
  const opts = (leader as unknown as { opts: ConstructorParameters<typeof ApprovalRequestReconciler>[0] })
    .opts;
  const r = new ApprovalRequestReconciler({
    ...opts,
    identity,
    logger: componentLogger("controller").child({ replica: identity }),
    siemLogger: componentLogger("audit"),
    now: () => new Date(Date.now() + aheadMs),
  });
  extra.push(r);
  await r.start();
  return r;
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(fastNs);
  await cp.ensureNamespace(slowNs);
  agent = (await cp.serviceAccountIdentity(agentsNs, "bot")).kubeConfig;
  for (const n of [fastNs, slowNs])
    await grantServiceAccount(cp, n, { namespace: agentsNs, name: "bot" }, ["configmaps"], ["get", "delete"]);
  alice = await approverIdentity(cp, `${uniqueName("alice")}@example.com`, ["fu-approvers"]);

  const ca = await createCertificateAuthority("fu-receiver");
  const tls = await issueCertificate(ca, {
    commonName: "receiver",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  receiver = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const json = JSON.parse(body) as { event?: string; approvalRequest?: { name?: string } };
      received.push({
        route: (req.url ?? "").slice(1),
        event: json.event ?? "",
        name: json.approvalRequest?.name ?? "",
      });
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((r) => receiver!.listen(0, "127.0.0.1", () => r()));
  const base = `https://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace,
    webhookName: "countersign-follow-ups-test",
    notifications: {
      routes: [
        { name: "team", type: "webhook", url: `${base}/team`, caPem: ca.certPem },
        // Subscribed to nothing but Approved: an escalation reaches it anyway (escalateTo names it).
        { name: "pager", type: "webhook", url: `${base}/pager`, caPem: ca.certPem, events: ["Approved"] },
      ],
      defaultRoutes: [],
      burstWindowSeconds: 0,
    },
  });
  const fast = uniqueName("fu-fast-policy");
  const slow = uniqueName("fu-slow-policy");
  await cp.apply([
    policy(fast, fastNs, { ttl: "5m", remindAfter: "3s", escalateAfter: "7s", escalateTo: ["pager"] }),
    policy(slow, slowNs, { ttl: "1h", remindAfter: "5m", escalateAfter: "8m", escalateTo: ["pager"] }),
  ]);
  await eventually(
    async () => [fast, slow].every((p) => cs.replicas[0]!.policies.list().some((x) => x.name === p)),
    10_000,
    "policies",
  );
});

afterAll(async () => {
  for (const r of extra) await r.stop();
  await cs?.stop();
  receiver?.close();
});

describe("reminders and escalation", () => {
  let fastName = "";

  it("reminds the routes once past remindAfter, escalates once past escalateAfter, and the agent's denial shows it", async () => {
    fastName = await requestDelete(fastNs, "app-config");
    await eventually(async () => count("team", "Requested", fastName) === 1, 10_000, "announced");
    await decide(alice, fastNs, fastName, "Approve", "looks fine to me");
    // Before remindAfter: progress without a reminder.
    const early = await agentDelete(fastNs, "app-config");
    expect(early).toMatch(/\(1\/2 approvals from group fu-approvers; expires /);
    expect(early).not.toMatch(/reminded/);

    await eventually(async () => count("team", "Reminder", fastName) === 1, 15_000, "reminder");
    expect(count("pager", "Reminder", fastName)).toBe(0);
    const reminded = await eventually(
      async () => {
        const m = await agentDelete(fastNs, "app-config");
        return /reminded \d+ s ago/.test(m) && m;
      },
      10_000,
      "progress in the denial",
    );
    expect(reminded).toMatch(/\(1\/2 approvals from group fu-approvers, reminded \d+ s ago; expires /);

    await eventually(async () => count("pager", "Escalated", fastName) === 1, 15_000, "escalation");
    expect(count("team", "Escalated", fastName)).toBe(0);
    const escalated = await eventually(
      async () => {
        const m = await agentDelete(fastNs, "app-config");
        return /escalated to pager/.test(m) && m;
      },
      10_000,
      "escalation in the denial",
    );
    expect(escalated).toMatch(
      /1\/2 approvals from group fu-approvers, reminded \d+ s ago, escalated to pager \d+ s ago/,
    );

    const ar = await getAr(fastNs, fastName);
    expect(ar.status?.remindedAt).toBeTruthy();
    expect(ar.status?.escalatedAt).toBeTruthy();
    expect(Date.parse(ar.status!.escalatedAt!)).toBeGreaterThan(Date.parse(ar.status!.remindedAt!));
    const events = await eventually(
      async () => {
        const list = await core().listNamespacedEvent({
          namespace: fastNs,
          fieldSelector: `involvedObject.name=${fastName}`,
        });
        const reasons = list.items.map((e) => e.reason);
        return (
          reasons.includes(EventReason.Reminded) && reasons.includes(EventReason.Escalated) && list.items
        );
      },
      10_000,
      "events",
    );
    expect(events.find((e) => e.reason === EventReason.Escalated)?.type).toBe("Warning");

    // Nothing more arrives while it stays pending.
    await new Promise((r) => setTimeout(r, 2000));
    expect(count("team", "Reminder", fastName)).toBe(1);
    expect(count("pager", "Escalated", fastName)).toBe(1);
  });

  it("a restarted controller does not send them again", async () => {
    const before = received.length;
    const controller = cs.replicas[0]!.controller!;
    await controller.stop(true);
    const opts = (
      controller as unknown as { opts: ConstructorParameters<typeof ApprovalRequestReconciler>[0] }
    ).opts;
    const restarted = new ApprovalRequestReconciler({
      ...opts,
      identity: "restarted",
      logger: componentLogger("controller"),
      siemLogger: componentLogger("audit"),
    });
    await restarted.start();
    (cs.replicas[0] as { controller: unknown }).controller = restarted;
    await eventually(async () => restarted.isLeader(), 15_000, "new leader");
    // It reconciles the backlog on taking the lead; give that time to (not) send.
    await new Promise((r) => setTimeout(r, 2500));
    expect(received.slice(before).filter((m) => m.name === fastName)).toEqual([]);
    expect(count("team", "Reminder", fastName)).toBe(1);
    expect(count("pager", "Escalated", fastName)).toBe(1);
  });

  it("two more controllers whose clocks are past both deadlines, reconciling at once, send each once", async () => {
    const name = await requestDelete(slowNs, "app-config");
    await eventually(async () => count("team", "Requested", name) === 1, 10_000, "announced");
    const key = `${slowNs}/${name}`;
    const ahead = 9 * 60_000; // past remindAfter 5m and escalateAfter 8m, before the 1h ttl
    const a = await rival("rival-a", ahead);
    const b = await rival("rival-b", ahead);
    // Both caches hold the request as announced (same resourceVersion), then both act at once.
    await eventually(
      async () => {
        const rv = (await getAr(slowNs, name)).metadata.resourceVersion;
        const cached = (r: ApprovalRequestReconciler) =>
          (
            r as unknown as { informer: { get(n: string, ns: string): ApprovalRequest | undefined } }
          ).informer.get(name, slowNs)?.metadata.resourceVersion;
        return cached(a) === rv && cached(b) === rv;
      },
      10_000,
      "both rivals synced",
    );
    await Promise.all([a.reconcile(key), b.reconcile(key), a.reconcile(key), b.reconcile(key)]);
    await eventually(
      async () => count("team", "Reminder", name) === 1 && count("pager", "Escalated", name) === 1,
      10_000,
      "one reminder and one escalation",
    );
    // More reconciles (their caches catch up) change nothing.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 500));
      await Promise.all([a.reconcile(key), b.reconcile(key)]);
    }
    expect(count("team", "Reminder", name)).toBe(1);
    expect(count("pager", "Escalated", name)).toBe(1);
    const ar = await getAr(slowNs, name);
    expect(ar.status?.notifications?.filter((n) => n.event === "Reminder").map((n) => n.route)).toEqual([
      "team",
    ]);
    expect(ar.status?.notifications?.filter((n) => n.event === "Escalated").map((n) => n.route)).toEqual([
      "pager",
    ]);
  });

  it("the API server refuses follow-ups the CRD rules out, and a status that drops remindedAt", async () => {
    const refusal = async (approval: Record<string, unknown>) => {
      try {
        await custom().createClusterCustomObject({
          ...G,
          plural: "approvalpolicies",
          body: policy(uniqueName("fu-bad"), fastNs, approval),
        });
      } catch (err) {
        return kubeStatusOf(err)?.message ?? String(err);
      }
      return "accepted";
    };
    expect(await refusal({ ttl: "10m", remindAfter: "10m" })).toMatch(/remindAfter must be shorter than ttl/);
    expect(await refusal({ remindAfter: "20m", escalateAfter: "10m", escalateTo: ["pager"] })).toMatch(
      /remindAfter must be shorter than escalateAfter/,
    );
    expect(await refusal({ escalateAfter: "10m" })).toMatch(/escalateAfter and escalateTo go together/);
    expect(await refusal({ remindAfter: "soon" })).toMatch(/remindAfter/);

    // Even Countersign's own identity (the guard lets it write status) cannot drop remindedAt.
    const self = await countersignIdentity(cp, installNamespace);
    const ar = await getAr(fastNs, fastName);
    const { remindedAt: _dropped, ...status } = ar.status!;
    let message = "accepted";
    try {
      await self.makeApiClient(CustomObjectsApi).replaceNamespacedCustomObjectStatus({
        ...G,
        namespace: fastNs,
        plural: "approvalrequests",
        name: fastName,
        body: { ...ar, status },
      });
    } catch (err) {
      message = kubeStatusOf(err)?.message ?? String(err);
    }
    expect(message).toMatch(/remindedAt and escalatedAt, once set, stay/);
  });
});
