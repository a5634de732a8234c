/**
 * Notifications and Slack interactivity, with local HTTPS receivers standing in for Slack,
 * Teams and a generic webhook (real HTTP, real signatures), and a real API server.
 */
import { createHmac } from "node:crypto";
import { request } from "node:https";
import { CoordinationV1Api, CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { componentLogger } from "../../src/logging/logger.js";
import type { NotificationConfig } from "../../src/notify/messages.js";
import { webhookSignature } from "../../src/notify/messages.js";
import {
  KubeReplayGuard,
  REPLAY_MARKER_LABEL,
  REPLAY_MARKER_TTL_SECONDS,
  replayMarkerName,
} from "../../src/notify/replay-guard.js";
import { deleteGuard, requireApproval } from "../fixtures/approval-policy.js";
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
  approvalRequestsIn,
  type Receiver,
  receiverTls,
  startReceiver,
} from "../support/scenario.js";

const agentsNs = uniqueName("notify-agents");
const ns = uniqueName("notify-prod");
const HMAC = "hmac-secret-for-tests";
const SIGNING = "slack-signing-secret";
let cp: ControlPlane;
let cs: TestCountersign;
let caPem: string;
let receiver: Receiver | undefined;
let flakyFailuresLeft = 2;
/** Every call the receivers answered 200, in order; the route is the first path segment. */
const received = () =>
  (receiver?.received ?? []).map((c) => ({ route: c.path.split("/")[1]!, body: c.body, headers: c.headers }));
/** The Slack response_url receiver. */
const responseUrl = () => (receiver ? `${receiver.base}/response` : "");

/** This file's messages only: the controller is cluster-wide and also announces other files' requests. */
const mine = () => received().filter((m) => m.route === "response" || m.body.includes(ns));
const count = (route: string, match: RegExp) =>
  mine().filter((m) => m.route === route && match.test(m.body)).length;
const first = (route: string) => mine().find((m) => m.route === route)!;

function slackClick(
  body: string,
  timestamp = String(Math.floor(Date.now() / 1000)),
  secret = SIGNING,
): Promise<number> {
  const signature = `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:${body}`).digest("hex")}`;
  return slackPost(body, timestamp, signature);
}

function slackPost(body: string, timestamp: string, signature: string, replica = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: cs.replicas[replica]!.apiPort,
        path: "/slack/interactions",
        method: "POST",
        rejectUnauthorized: false,
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          "x-slack-request-timestamp": timestamp,
          "x-slack-signature": signature,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const getAr = (name: string) => approvalRequestsIn(cp, ns).get(name);

let agentDelete: (name: string) => Promise<string>;
const installNamespace = uniqueName("cs-notify");

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const tls = await receiverTls("receivers");
  caPem = tls.caPem;
  // One receiver; each route posts to its own path.
  receiver = await startReceiver(tls, (call) => {
    if (call.path.startsWith("/flaky") && flakyFailuresLeft > 0) {
      flakyFailuresLeft--;
      return 503;
    }
    return 200;
  });
  const slackUrl = `${receiver.base}/slack/hook`;
  const teamsUrl = `${receiver.base}/teams/hook`;
  const hookUrl = `${receiver.base}/webhook/hook`;
  const flakyUrl = `${receiver.base}/flaky/hook`;
  const agent = await agentIdentity(cp, agentsNs, "bot", {
    target: ns,
    resources: ["configmaps"],
    verbs: ["get", "delete"],
  });
  await approverIdentity(cp, "helen@example.com", ["notify-approvers"]);
  const config: NotificationConfig = {
    routes: [
      { name: "slack", type: "slack", url: slackUrl, caPem },
      { name: "teams", type: "teams", url: teamsUrl, caPem },
      { name: "siem", type: "webhook", url: hookUrl, hmacSecret: HMAC, caPem },
      { name: "flaky", type: "webhook", url: flakyUrl, caPem },
      { name: "dead", type: "webhook", url: "https://127.0.0.1:1/nothing", caPem },
    ],
    defaultRoutes: ["slack", "teams", "siem", "flaky", "dead"],
    slack: {
      signingSecret: SIGNING,
      users: { U_HELEN: { username: "helen@example.com", groups: ["notify-approvers"] } },
    },
  };
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    // Two webhook replicas: Slack may deliver (or an attacker replay) a click to either.
    replicas: 2,
    installNamespace,
    webhookName: "countersign-notify-test",
    notifications: config,
    slackResponseCaPem: caPem,
  });
  await applyPolicies(cp, cs, [
    deleteGuard(uniqueName("notify-policy"), {
      agents: agentsNs,
      resource: "configmaps",
      namespace: ns,
      rules: [requireApproval("deletes", { groups: ["notify-approvers"] })],
    }),
  ]);
  agentDelete = async (name: string) => {
    try {
      await agent.kubeConfig.makeApiClient(CoreV1Api).deleteNamespacedConfigMap({ name, namespace: ns });
      return "allowed";
    } catch (err) {
      return kubeStatusOf(err)?.message ?? String(err);
    }
  };
  await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: "app-config" }, data: { secretish: "do-not-leak-me" } },
    });
  await eventually(
    async () => /needs a human approval/.test(await agentDelete("app-config")),
    15_000,
    "gated",
  );
});

afterAll(async () => {
  await cs?.stop();
  await receiver?.close();
});

describe("notifications", () => {
  it("sends a request to Slack, Teams and a signed webhook once, retrying a flaky receiver", async () => {
    await eventually(
      async () =>
        count("slack", /Approval needed/) === 1 &&
        count("teams", /Approval needed/) === 1 &&
        count("webhook", /"event":"Requested"/) === 1,
      15_000,
      "messages",
    );
    await eventually(
      async () => count("flaky", /"event":"Requested"/) === 1,
      15_000,
      "flaky receiver, after retries",
    );
    const slack = JSON.parse(first("slack").body);
    expect(JSON.stringify(slack.blocks)).toMatch(/"action_id":"approve"/);
    expect(JSON.stringify(slack)).toContain("kubectl approve");
    const teams = JSON.parse(first("teams").body);
    expect(teams.attachments[0].contentType).toBe("application/vnd.microsoft.card.adaptive");
    const hook = first("webhook");
    expect(hook.headers["x-countersign-signature"]).toBe(
      webhookSignature(HMAC, String(hook.headers["x-countersign-timestamp"]), hook.body),
    );
    for (const m of received()) expect(m.body).not.toContain("do-not-leak-me");
    expect(mine().filter((m) => m.route === "slack")).toHaveLength(1);
  });

  it("makes a failing route visible (status, Warning Event) without blocking the flow", async () => {
    const name = (JSON.parse(first("webhook").body) as { approvalRequest: { name: string } }).approvalRequest
      .name;
    const failed = await eventually(
      async () => {
        const ar = await getAr(name);
        return ar.status?.notifications?.find((n) => n.route === "dead" && n.state === "Failed");
      },
      15_000,
      "dead route Failed",
    );
    expect(failed.attempts).toBe(3);
    const sentRoutes = async () =>
      ((await getAr(name)).status?.notifications ?? [])
        .filter((n) => n.event === "Requested" && n.state === "Sent")
        .map((n) => n.route)
        .sort()
        .join(",");
    await eventually(
      async () => (await sentRoutes()) === "flaky,siem,slack,teams",
      10_000,
      "every other route Sent",
    );
    const events = await cp.adminKubeConfig().makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: ns });
    expect(
      events.items.some(
        (e) => e.involvedObject.name === name && e.reason === "NotificationFailed" && e.type === "Warning",
      ),
    ).toBe(true);
    expect((await getAr(name)).status?.phase).toBe("Pending");
  });

  it("does not send again after a controller restart", async () => {
    const before = mine().length;
    const controller = cs.replicas[0]!.controller!;
    await controller.stop(true);
    const { ApprovalRequestReconciler } = await import("../../src/controller/reconciler.js");
    const { componentLogger } = await import("../../src/logging/logger.js");
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
    await eventually(async () => restarted.isLeader(), 15_000, "new leader");
    await new Promise((r) => setTimeout(r, 2000));
    expect(mine().length).toBe(before);
    (cs.replicas[0] as { controller: unknown }).controller = restarted;
  });
});

describe("Slack interactivity", () => {
  const payload = (name: string, user = "U_HELEN", action = "approve") =>
    `payload=${encodeURIComponent(
      JSON.stringify({
        type: "block_actions",
        user: { id: user, username: "helen" },
        actions: [{ action_id: action, value: `${ns}/${name}` }],
        response_url: responseUrl(),
      }),
    )}`;

  it("refuses forged, stale and replayed clicks", async () => {
    const name = (JSON.parse(first("webhook").body) as { approvalRequest: { name: string } }).approvalRequest
      .name;
    const body = payload(name);
    expect(await slackClick(body, undefined, "wrong-secret")).toBe(401);
    expect(await slackClick(body, String(Math.floor(Date.now() / 1000) - 3600))).toBe(401);
    expect(await slackPost(body, String(Math.floor(Date.now() / 1000)), "v0=deadbeef")).toBe(401);
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);
  });

  it("tells an unmapped Slack user they cannot decide", async () => {
    const name = (JSON.parse(first("webhook").body) as { approvalRequest: { name: string } }).approvalRequest
      .name;
    expect(await slackClick(payload(name, "U_STRANGER"))).toBe(200);
    await eventually(
      async () =>
        received().some((m) => m.route === "response" && /not mapped to a Kubernetes identity/.test(m.body)),
      10_000,
      "ephemeral reply",
    );
    expect((await getAr(name)).spec.decisions ?? []).toHaveLength(0);
  });

  it("a signed click approves the real ApprovalRequest as the mapped identity, updates the message, and a replay to either replica is refused", async () => {
    const name = (JSON.parse(first("webhook").body) as { approvalRequest: { name: string } }).approvalRequest
      .name;
    const body = payload(name);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const signature = `v0=${createHmac("sha256", SIGNING).update(`v0:${timestamp}:${body}`).digest("hex")}`;
    expect(await slackPost(body, timestamp, signature)).toBe(200);
    await eventually(
      async () => (await getAr(name)).status?.phase === "Approved",
      10_000,
      "Approved via Slack",
    );
    const decision = (await getAr(name)).spec.decisions![0]!;
    expect(decision).toMatchObject({ approver: "helen@example.com", via: "slack", decision: "Approve" });
    await eventually(
      async () =>
        received().some(
          (m) =>
            m.route === "response" &&
            /"replace_original":true/.test(m.body) &&
            /Approved by helen@example.com/.test(m.body),
        ),
      10_000,
      "message updated",
    );
    // The same signed click replayed to the other replica, then to the first: both refused,
    // because the seen-signature marker lives in the API server, not in one process.
    expect(await slackPost(body, timestamp, signature, 1)).toBe(401);
    expect(await slackPost(body, timestamp, signature, 0)).toBe(401);
    const marker = await cp
      .adminKubeConfig()
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: replayMarkerName(signature), namespace: installNamespace });
    expect(marker.metadata?.labels?.[REPLAY_MARKER_LABEL]).toBe("slack");
    expect((await getAr(name)).spec.decisions).toHaveLength(1);
    await eventually(
      async () => count("slack", /"text":"Approved: DELETE configmaps app-config/) === 1,
      10_000,
      "Approved notification",
    );
    expect(await agentDelete("app-config")).toBe("allowed");
  });

  it("a click on a burst summary's button decides that request and answers without replacing the summary", async () => {
    await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name: "in-a-burst" }, data: { k: "v" } },
      });
    expect(await agentDelete("in-a-burst")).toMatch(/needs a human approval/);
    const ar = await eventually(
      async () => (await approvalRequestsIn(cp, ns).list()).find((a) => a.spec.action.name === "in-a-burst"),
      10_000,
      "request",
    );
    const name = ar.metadata.name;
    const body = `payload=${encodeURIComponent(
      JSON.stringify({
        type: "block_actions",
        user: { id: "U_HELEN", username: "helen" },
        actions: [{ action_id: "approve", block_id: `countersign-decision-${name}`, value: `${ns}/${name}` }],
        response_url: responseUrl(),
      }),
    )}`;
    expect(await slackClick(body)).toBe(200);
    await eventually(async () => (await getAr(name)).status?.phase === "Approved", 10_000, "Approved");
    await eventually(
      async () =>
        received().some(
          (m) =>
            m.route === "response" &&
            m.body.includes(name) &&
            /"replace_original":false/.test(m.body) &&
            /Approved by helen@example.com/.test(m.body),
        ),
      10_000,
      "an answer that leaves the summary in place",
    );
  });

  it("sweeps replay markers only once their signatures can no longer be valid", async () => {
    const kc = cp.adminKubeConfig();
    const log = componentLogger("replay-test");
    const now = new KubeReplayGuard(kc, installNamespace, "t", log);
    expect(await now.claim("v0=sweep-me")).toBe(true);
    expect(await now.claim("v0=sweep-me")).toBe(false);
    expect(await now.sweep()).toBe(0); // fresh markers stay
    const later = new KubeReplayGuard(
      kc,
      installNamespace,
      "t",
      log,
      () => new Date(Date.now() + (REPLAY_MARKER_TTL_SECONDS + 60) * 1000),
    );
    expect(await later.sweep()).toBeGreaterThanOrEqual(1);
    const leases = await kc
      .makeApiClient(CoordinationV1Api)
      .listNamespacedLease({ namespace: installNamespace, labelSelector: `${REPLAY_MARKER_LABEL}=slack` });
    expect(leases.items).toHaveLength(0);
  });
});
