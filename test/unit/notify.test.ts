import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { ApprovalRequest } from "../../src/approvals/request.js";
import {
  messageFor,
  parseNotificationConfig,
  routesFor,
  slackMessage,
  webhookSignature,
} from "../../src/notify/messages.js";
import { verifySlackSignature } from "../../src/notify/slack-interactions.js";

const ar = (notify: string[] = []): ApprovalRequest => ({
  apiVersion: "countersign.io/v1alpha1",
  kind: "ApprovalRequest",
  metadata: { name: "delete-secrets-db-abc", namespace: "prod" },
  spec: {
    fingerprint: "a".repeat(64),
    attempt: 0,
    requester: { username: "system:serviceaccount:ai:bot" },
    action: {
      operation: "DELETE",
      group: "",
      version: "v1",
      resource: "secrets",
      subResource: "",
      namespace: "prod",
      name: "db",
      objectHash: "",
      summary: 'service account ai/bot wants to DELETE secrets "db" (Secret values redacted).',
    },
    agentContext: { reason: "rotate" },
    policy: { name: "p", rule: "r" },
    approval: {
      approvers: { groups: ["g"] },
      requiredApprovals: 1,
      ttl: "1h",
      expiresAt: "2026-01-01T01:00:00Z",
      notify,
    },
    decisions: [{ approver: "alice", decision: "Deny", reason: "freeze" }],
  },
});

describe("notification configuration", () => {
  const yaml = `
routes:
  - { name: sre, type: slack, url: "\${SLACK_URL}" }
  - { name: siem, type: webhook, url: https://siem.example.com/in, hmacSecret: "\${HMAC}", events: [Approved, Denied] }
defaultRoutes: [sre]
slack: { signingSecret: "\${SIGNING}", users: { U1: { username: alice } } }
`;
  const env = { SLACK_URL: "https://hooks.slack.com/services/x", HMAC: "k", SIGNING: "s" };

  it("expands secrets from the environment and routes by policy or default", () => {
    const c = parseNotificationConfig(yaml, env);
    expect(c.routes[0]!.url).toBe(env.SLACK_URL);
    expect(routesFor(ar(), "Requested", c).map((r) => r.name)).toEqual(["sre"]);
    expect(routesFor(ar(["siem"]), "Requested", c)).toEqual([]); // siem only wants decisions
    expect(routesFor(ar(["siem"]), "Denied", c).map((r) => r.name)).toEqual(["siem"]);
  });

  it("explains mistakes", () => {
    expect(() => parseNotificationConfig(yaml, {})).toThrow(/\$\{SLACK_URL\}, which is not set/);
    expect(() => parseNotificationConfig("routes: [{ name: a, type: slack, url: http://x }]", {})).toThrow(
      /https/,
    );
    expect(() => parseNotificationConfig("routes: []\ndefaultRoutes: [nope]", {})).toThrow(
      /unknown route "nope"/,
    );
    expect(() => parseNotificationConfig("routes: [{ name: a, type: pager, url: https://x }]", {})).toThrow(
      /slack, teams or webhook/,
    );
  });
});

describe("messages", () => {
  it("carry who, what, where, why and how to decide, never the object", () => {
    const slack = JSON.stringify(slackMessage(ar(), "Requested"));
    expect(slack).toContain("system:serviceaccount:ai:bot");
    expect(slack).toContain("rotate");
    expect(slack).toContain("kubectl approve delete-secrets-db-abc -n prod");
    expect(slack).toContain('"value":"prod/delete-secrets-db-abc"');
    const denied = JSON.stringify(messageFor({ name: "t", type: "teams", url: "https://x" }, ar(), "Denied"));
    expect(denied).toContain("alice: freeze");
    expect(denied).not.toContain('"Approve"');
  });

  it("announce a revocation with who and why, and tell approvers how to revoke an approval", () => {
    const revoked = ar();
    revoked.spec.decisions = [
      { approver: "alice", decision: "Approve" },
      { approver: "bob", decision: "Revoke", reason: "wrong cluster" },
    ];
    const slack = JSON.stringify(slackMessage(revoked, "Revoked"));
    expect(slack).toContain("Approval revoked: DELETE secrets db");
    expect(slack).toContain("bob: wrong cluster");
    expect(slack).not.toContain('"action_id":"approve"');
    const hook = messageFor({ name: "h", type: "webhook", url: "https://x" }, revoked, "Revoked");
    expect(hook).toMatchObject({ event: "Revoked", decidedBy: "bob: wrong cluster" });
    const approved = JSON.stringify(slackMessage(revoked, "Approved"));
    expect(approved).toContain('kubectl approvals revoke delete-secrets-db-abc -n prod --reason \\"...\\"');
  });

  it("signs generic webhooks over timestamp and body", () => {
    expect(webhookSignature("k", "1700000000", "{}")).toBe(
      `sha256=${createHmac("sha256", "k").update("1700000000.{}").digest("hex")}`,
    );
  });
});

describe("Slack request verification", () => {
  const sign = (ts: string, body: string, secret = "s") =>
    `v0=${createHmac("sha256", secret).update(`v0:${ts}:${body}`).digest("hex")}`;
  it("accepts a fresh, correctly signed request and nothing else", () => {
    expect(verifySlackSignature("s", "1000", sign("1000", "a=1"), "a=1", 1100)).toEqual({ ok: true });
    expect(verifySlackSignature("s", "1000", sign("1000", "a=1"), "a=2", 1100)).toMatchObject({
      ok: false,
      reason: /mismatch/,
    });
    expect(verifySlackSignature("s", "1000", sign("1000", "a=1", "other"), "a=1", 1100)).toMatchObject({
      ok: false,
    });
    expect(verifySlackSignature("s", "1000", sign("1000", "a=1"), "a=1", 2000)).toMatchObject({
      ok: false,
      reason: /stale/,
    });
    expect(verifySlackSignature("s", undefined, undefined, "a=1", 1000)).toMatchObject({
      ok: false,
      reason: /missing/,
    });
  });
});
