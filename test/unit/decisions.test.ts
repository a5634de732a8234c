import { describe, expect, it } from "vitest";
import { precheckMessage, refusalMessage } from "../../src/approvals/decision-messages.js";
import {
  checkDecision,
  DECISION_CLOCK_SKEW_SECONDS,
  DecisionCode,
  type DecisionInput,
  type DecisionRefusal,
  HTTP_STATUS,
} from "../../src/approvals/decisions.js";
import type { UserInfo } from "../../src/resources/admission.js";
import type { ApprovalRequest, Decision } from "../../src/resources/approval-request.js";
import { approvalRequest } from "../fixtures/approval-request.js";

const NOW = new Date("2026-01-01T00:10:00Z");
const time = NOW.toISOString();
const alice: UserInfo = { username: "alice", uid: "u-alice", groups: ["approvers", "system:authenticated"] };
const mallory: UserInfo = { username: "mallory", uid: "u-m", groups: ["system:authenticated"] };
const bot: UserInfo = {
  username: "system:serviceaccount:ai:bot",
  uid: "u-bot",
  groups: ["system:serviceaccounts"],
};

/** The fixture request as this file names it: fingerprint f…, summary "delete Secret prod/db". */
function request(
  over: Partial<ApprovalRequest["spec"]> = {},
  status?: ApprovalRequest["status"],
): ApprovalRequest {
  const ar = approvalRequest({ fingerprint: "f".repeat(64), ...over }, status);
  ar.metadata = { name: "delete-secrets-db", namespace: "prod" };
  if (!over.action) ar.spec.action.summary = "delete Secret prod/db";
  if (!over.approval) ar.spec.approval.expiresAt = "2026-01-01T01:00:00Z";
  return ar;
}

const entry = (user: UserInfo, decision: Decision["decision"], over: Partial<Decision> = {}): Decision => ({
  approver: user.username!,
  ...(user.uid ? { uid: user.uid } : {}),
  groups: user.groups ?? [],
  decision,
  via: "kubectl",
  time,
  ...over,
});

const check = (over: Partial<DecisionInput> & Pick<DecisionInput, "decision">) =>
  checkDecision({ request: request(), decider: alice, now: NOW, writtenBy: "decider", ...over });

const refusalOf = (r: ReturnType<typeof checkDecision>): DecisionRefusal => {
  if (r.ok) throw new Error(`expected a refusal, got ${JSON.stringify(r)}`);
  return r.refusal;
};

const approved = request({ decisions: [entry(alice, "Approve")] }, { phase: "Approved" });
const oncall: UserInfo = { username: "olga", uid: "u-olga", groups: ["sre-oncall", "system:authenticated"] };
const glass = request({
  approval: {
    approvers: { groups: ["approvers"] },
    requiredApprovals: 2,
    ttl: "1h",
    expiresAt: "2026-01-01T01:00:00Z",
    breakGlass: { groups: ["sre-oncall"] },
  },
});

describe("checkDecision: one code per rule", () => {
  const cases: {
    code: DecisionCode;
    input: Partial<DecisionInput> & Pick<DecisionInput, "decision">;
    text: RegExp;
  }[] = [
    {
      code: "covered-subject",
      input: { decision: entry(alice, "Approve"), coveredBy: ["agents"] },
      text: /alice is covered by ApprovalPolicy agents, so it may not approve ApprovalRequests/,
    },
    {
      code: "forged-metadata",
      input: { decision: entry(alice, "Approve", { approver: "bob" }) },
      text: /names "bob" but you are authenticated as "alice"/,
    },
    {
      code: "forged-metadata",
      input: { decision: entry(alice, "Approve", { groups: ["approvers", "system:masters"] }) },
      text: /groups do not match/,
    },
    {
      code: "forged-metadata",
      input: { decision: entry(alice, "Approve", { uid: "other" }) },
      text: /uid "other" does not match/,
    },
    {
      code: "forged-metadata",
      input: { decision: entry(alice, "Approve", { via: "slack" }) },
      text: /a decision via slack is recorded only by Countersign itself/,
    },
    {
      code: "incomplete-metadata",
      input: { decision: { approver: "alice", decision: "Approve" } },
      text: /the decision lacks uid, groups, time, via/,
    },
    {
      code: "incomplete-metadata",
      input: { decision: { approver: "alice", decision: "Approve", via: "api" }, writtenBy: "relayed" },
      text: /a relayed decision must name its decider, their groups and its time/,
    },
    {
      code: "invalid-via",
      input: { decision: entry(alice, "Approve", { via: "carrier-pigeon" as never }) },
      text: /via must be "kubectl"/,
    },
    {
      code: "invalid-via",
      input: { decision: entry(alice, "Approve"), writtenBy: "relayed" },
      text: /must say how it was made \(via slack, teams, api\), not kubectl/,
    },
    {
      code: "bad-time",
      input: { decision: entry(alice, "Approve", { time: "yesterday" }) },
      text: /time "yesterday" is not a timestamp/,
    },
    {
      code: "bad-time",
      input: {
        decision: entry(alice, "Approve", {
          time: new Date(NOW.getTime() - (DECISION_CLOCK_SKEW_SECONDS + 60) * 1000).toISOString(),
        }),
      },
      text: /is 180s behind the server's clock/,
    },
    {
      code: "already",
      input: {
        request: request({ decisions: [entry(alice, "Approve")] }),
        decision: entry(alice, "Approve"),
      },
      text: /alice has already decided this request/,
    },
    {
      code: "self",
      input: { decider: bot, decision: entry(bot, "Approve") },
      text: /nobody decides their own request; ask one of its approvers/,
    },
    {
      code: "self",
      input: { request: approved, decider: bot, decision: entry(bot, "Revoke", { reason: "never mind" }) },
      text: /the requester cannot revoke its own request/,
    },
    {
      code: "too-large",
      input: { request: request({ diffTruncated: true }), decision: entry(alice, "Approve") },
      text: /cannot be approved: the change is too large to show in full/,
    },
    {
      code: "expired",
      input: {
        now: new Date("2026-01-01T02:00:00Z"),
        decision: entry(alice, "Approve", { time: "2026-01-01T02:00:00Z" }),
      },
      text: /is expired at 2026-01-01T01:00:00Z; the requester must retry the action/,
    },
    {
      code: "not-pending",
      input: { request: request({}, { phase: "Denied" }), decision: entry(alice, "Approve") },
      text: /prod\/delete-secrets-db is already Denied/,
    },
    {
      code: "not-approver",
      input: { decider: mallory, decision: entry(mallory, "Approve") },
      text: /mallory is not an approver for this request \(approvers: user root, group approvers\)/,
    },
    {
      code: "reason-required",
      input: { request: approved, decision: entry(alice, "Revoke") },
      text: /a revocation needs a reason/,
    },
    {
      code: "revoke-not-approved",
      input: { decision: entry(alice, "Revoke", { reason: "too early" }) },
      text: /is Pending: there is no approval to revoke yet\. Deny it instead: kubectl deny delete-secrets-db -n prod/,
    },
    {
      code: "already-used",
      input: {
        request: request(
          { decisions: [entry(alice, "Approve")] },
          { phase: "Consumed", consumed: { time: "2026-01-01T00:05:00Z", admissionUID: "adm-1" } },
        ),
        decision: entry(alice, "Revoke", { reason: "too late" }),
      },
      text: /already used \(admitted at 2026-01-01T00:05:00Z, admission uid adm-1\); a used approval cannot be revoked/,
    },
    {
      code: "already-revoked",
      input: {
        request: request({
          decisions: [entry(alice, "Approve"), { ...entry(mallory, "Revoke"), reason: "x" }],
        }),
        decision: entry(alice, "Revoke", { reason: "me too" }),
      },
      text: /is already revoked by mallory/,
    },
    {
      code: "break-glass-not-offered",
      input: {
        decision: entry(alice, "Approve", {
          breakGlass: true,
          reason: "prod is down, customers cannot log in",
        }),
      },
      text: /offers no break-glass approval/,
    },
    {
      code: "break-glass-not-member",
      input: {
        request: glass,
        decision: entry(alice, "Approve", {
          breakGlass: true,
          reason: "prod is down, customers cannot log in",
        }),
      },
      text: /alice is in none of this request's break-glass groups \(sre-oncall\)/,
    },
    {
      code: "break-glass-reason",
      input: {
        request: glass,
        decider: oncall,
        decision: entry(oncall, "Approve", { breakGlass: true, reason: "  urgent!  " }),
      },
      text: /a reason of at least 20 characters .* \(got 7\)/,
    },
    {
      code: "break-glass-approve-only",
      input: {
        request: glass,
        decider: oncall,
        decision: entry(oncall, "Deny", { breakGlass: true, reason: "x".repeat(30) }),
      },
      text: /only an Approve can be break-glass, not a Deny/,
    },
    {
      code: "self",
      input: {
        request: request({ approval: { ...glass.spec.approval }, requester: { username: oncall.username! } }),
        decider: oncall,
        decision: entry(oncall, "Approve", {
          breakGlass: true,
          reason: "prod is down, customers cannot log in",
        }),
      },
      text: /nobody decides their own request/,
    },
    {
      code: "covered-subject",
      input: {
        request: glass,
        decider: oncall,
        coveredBy: ["agents"],
        decision: entry(oncall, "Approve", {
          breakGlass: true,
          reason: "prod is down, customers cannot log in",
        }),
      },
      text: /is covered by ApprovalPolicy agents/,
    },
  ];

  for (const c of cases) {
    it(`${c.code}: ${c.text.source.slice(0, 60)}`, () => {
      const refusal = refusalOf(check(c.input));
      expect(refusal.code).toBe(c.code);
      expect(refusalMessage(refusal)).toMatch(c.text);
      expect(refusalMessage(refusal)).toMatch(/^Countersign: /);
    });
  }

  it("every code has an HTTP status; conflicts are 409, malformed input 400, the caller 403", () => {
    for (const code of Object.values(DecisionCode)) expect(HTTP_STATUS[code]).toBeGreaterThanOrEqual(400);
    expect(HTTP_STATUS.already).toBe(409);
    expect(HTTP_STATUS["reason-required"]).toBe(400);
    expect(HTTP_STATUS.self).toBe(403);
    expect(HTTP_STATUS["needs-rbac"]).toBe(403);
    expect(HTTP_STATUS["rbac-unavailable"]).toBe(503);
  });

  it("needs-rbac and rbac-unavailable are worded for the decider", () => {
    expect(
      refusalMessage({ code: "needs-rbac", decider: "dave", verb: "approve", namespace: "prod", reason: "" }),
    ).toMatch(/dave matches this request's approver rules but lacks RBAC verb "approve" on approvalrequests/);
    expect(refusalMessage({ code: "rbac-unavailable" })).toMatch(/retry shortly/);
  });

  it("passes an approver's Approve, Deny and Revoke with the RBAC verb still to check", () => {
    expect(check({ decision: entry(alice, "Approve") })).toEqual({
      ok: true,
      verb: "approve",
      request: { namespace: "prod", name: "delete-secrets-db" },
      breakGlass: false,
    });
    expect(check({ decision: entry(alice, "Deny") })).toMatchObject({ ok: true, verb: "deny" });
    expect(
      check({ request: approved, decision: entry(alice, "Revoke", { reason: "wrong cluster" }) }),
    ).toMatchObject({ ok: true, verb: "revoke" });
    expect(check({ decision: entry(alice, "Approve", { via: "api" }), writtenBy: "relayed" })).toMatchObject({
      ok: true,
      verb: "approve",
    });
  });

  it("a break-glass member's Approve with a real reason passes alone, as verb approve, not needing the approver rules", () => {
    expect(
      check({
        request: glass,
        decider: oncall,
        decision: entry(oncall, "Approve", {
          breakGlass: true,
          reason: "  prod is down, customers cannot log in ",
        }),
      }),
    ).toMatchObject({ ok: true, verb: "approve", breakGlass: true });
    // Without the mark, olga is just someone outside the approver rules.
    expect(
      refusalOf(check({ request: glass, decider: oncall, decision: entry(oncall, "Approve") })).code,
    ).toBe("not-approver");
  });

  it("another token of the requester's service account is the requester", () => {
    const other = { username: "system:serviceaccount:ai:bot", uid: "another-token", groups: [] };
    expect(refusalOf(check({ decider: other, decision: entry(other, "Approve") })).code).toBe("self");
  });

  it("a covered requester is told it is the requester (the more specific refusal)", () => {
    expect(
      refusalOf(check({ decider: bot, decision: entry(bot, "Approve"), coveredBy: ["agents"] })).code,
    ).toBe("self");
  });
});

describe("the plugin's precheck wording", () => {
  it("addresses the caller where the plugin always did", () => {
    const r = (refusal: DecisionRefusal) => precheckMessage(refusal);
    const ref = { namespace: "prod", name: "x" };
    expect(r({ code: "self", request: ref, decision: "Approve" })).toBe(
      "you cannot decide your own request; ask one of its approvers",
    );
    expect(r({ code: "already", request: ref, decider: "alice" })).toBe(
      "you (alice) have already decided prod/x",
    );
    expect(r({ code: "already-revoked", request: ref, by: "bob" })).toBe(
      "ApprovalRequest prod/x is already Revoked",
    );
    expect(r({ code: "reason-required" })).toMatch(/^--reason is required/);
    // Elsewhere the guard's words, without the webhook prefix.
    expect(r({ code: "not-pending", request: ref, phase: "Approved" })).toBe(
      "ApprovalRequest prod/x is already Approved",
    );
  });
});
