import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  messageFor,
  parseNotificationConfig,
  routesFor,
  slackEscape,
  slackMessage,
  summaryFor,
  teamsEscape,
  teamsMessage,
  webhookMessage,
  webhookSignature,
} from "../../src/notify/messages.js";
import { verifySlackSignature } from "../../src/notify/slack-interactions.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { approvalRequest, decision, REQUESTER } from "../fixtures/approval-request.js";

const ar = (notify: string[] = []): ApprovalRequest => {
  const base = approvalRequest();
  return approvalRequest({
    requester: { username: REQUESTER },
    action: {
      ...base.spec.action,
      summary: 'service account ai/bot wants to DELETE secrets "db" (Secret values redacted).',
    },
    agentContext: { reason: "rotate" },
    approval: { ...base.spec.approval, approvers: { groups: ["g"] }, notify },
    decisions: [decision("alice", "Deny", { reason: "freeze" })],
  });
};

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
      reason: expect.stringMatching(/mismatch/),
    });
    expect(verifySlackSignature("s", "1000", sign("1000", "a=1", "other"), "a=1", 1100)).toMatchObject({
      ok: false,
    });
    expect(verifySlackSignature("s", "1000", sign("1000", "a=1"), "a=1", 2000)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/stale/),
    });
    expect(verifySlackSignature("s", undefined, undefined, "a=1", 1000)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/missing/),
    });
  });
});

describe("what approvers see in chat (issue 9 item 3)", () => {
  const hostile =
    "<!channel> <@U123> <https://evil.example/approve|Approve> @here **urgent** [Approve](https://evil.example) ```";
  const withDiff = (lines: number): ApprovalRequest => {
    const a = ar();
    a.spec.action.operation = "UPDATE";
    a.spec.action.summary = `service account ai/bot wants to UPDATE rolebindings "${hostile}"`;
    a.spec.agentContext = { reason: hostile };
    a.spec.diff = Array.from({ length: lines }, (_, i) => `data.k${i}: "${i === 0 ? hostile : "v"}"`).join(
      "\n",
    );
    return a;
  };

  it("Slack carries the diff, bounded, with the command that shows all of it", () => {
    const msg = slackMessage(withDiff(30), "Requested") as { blocks: { text?: { text: string } }[] };
    const text = JSON.stringify(msg);
    expect(text).toContain("data.k19");
    expect(text).not.toContain("data.k20");
    expect(text).toContain("10 more lines: `kubectl approvals show delete-secrets-db-abc -n prod`");
    const short = JSON.stringify(slackMessage(withDiff(3), "Requested"));
    expect(short).toContain("data.k2");
    expect(short).not.toContain("more line");
  });

  it("Slack: agent text cannot mention, link or close the code block", () => {
    const text = JSON.stringify(slackMessage(withDiff(3), "Requested"));
    for (const bad of ["<!channel>", "<@U123>", "<https://evil", "@here"]) expect(text).not.toContain(bad);
    expect(text).toContain("&lt;!channel&gt;");
    const msg = slackMessage(withDiff(3), "Requested") as { blocks: { text?: { text: string } }[] };
    const code = msg.blocks.map((b) => b.text?.text ?? "").find((t) => t.startsWith("*Changes*"))!;
    expect(code.match(/```/g)).toHaveLength(2);
    // Buttons carry only the request's own namespace/name.
    const actions = JSON.stringify(msg.blocks.find((b) => (b as { type?: string }).type === "actions"));
    expect(actions).not.toContain("evil");
  });

  it("Teams: the diff in monospace, bounded; agent text cannot make links or emphasis", () => {
    const card = JSON.stringify(teamsMessage(withDiff(30), "Requested"));
    expect(card).toContain("Monospace");
    expect(card).toContain("data.k19");
    expect(card).not.toContain("data.k20");
    expect(card).toContain("10 more lines: kubectl approvals show delete-secrets-db-abc -n prod");
    expect(card).not.toContain("[Approve](https");
    expect(card).not.toContain("**urgent**");
    expect(teamsEscape("[x](https://e) **b** - item\n1. one")).toBe(
      "\\[x\\]\\(https://e\\) \\*\\*b\\*\\* - item\n1\\. one",
    );
    expect(teamsEscape("- a\n# b")).toBe("\\- a\n\\# b");
  });

  it("escapes for Slack mrkdwn", () => {
    expect(slackEscape("a & <b> @channel")).toBe("a &amp; &lt;b&gt; @\u200bchannel");
  });

  it("the generic webhook carries the whole diff", () => {
    const body = webhookMessage(withDiff(30), "Requested") as { diff?: string };
    expect(body.diff?.split("\n")).toHaveLength(30);
  });
});

describe("a DELETE's notification", () => {
  it("does not carry the object being deleted, only the command that shows it", () => {
    const a = ar();
    a.spec.diff = 'data.config: "internal-only"\nkind: "ConfigMap"';
    for (const route of ["slack", "teams", "webhook"] as const) {
      const body = JSON.stringify(messageFor({ name: "r", type: route, url: "https://x" }, a, "Requested"));
      expect(body).not.toContain("internal-only");
      if (route !== "webhook") expect(body).toContain("2 lines");
      if (route !== "webhook") expect(body).toContain("kubectl approvals show delete-secrets-db-abc -n prod");
    }
  });
});

describe("a burst summary", () => {
  it("escapes agent text in the summaries it lists", () => {
    const a = ar();
    a.spec.action.summary =
      'service account ai/bot wants to CREATE rolebindings "x" (binds ClusterRole "cluster-admin" to User "<!channel> [ok](https://evil.example)")';
    const slack = JSON.stringify(summaryFor({ name: "s", type: "slack", url: "https://x" }, [a, a]));
    expect(slack).not.toContain("<!channel>");
    expect(slack).toContain("&lt;!channel&gt;");
    const teams = JSON.stringify(summaryFor({ name: "t", type: "teams", url: "https://x" }, [a]));
    expect(teams).not.toContain("[ok](https");
  });
});
