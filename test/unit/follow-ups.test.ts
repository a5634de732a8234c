/**
 * Reminders and escalation (issue 14 item 3), the pure parts: when each follow-up is due, that
 * a sent one is never due again, the wake-up for the next one, the routes each goes to, the
 * requester's progress text, the messages, and the policy compiler's checks.
 */
import { describe, expect, it } from "vitest";
import {
  ago,
  FollowUp,
  followUpSummary,
  followUpsDue,
  pendingProgress,
} from "../../src/approvals/follow-ups.js";
import { nextLook } from "../../src/controller/approval-request-plan.js";
import {
  messageFor,
  type NotificationConfig,
  routesFor,
  unknownEscalationRoutes,
} from "../../src/notify/messages.js";
import { compilePolicy } from "../../src/policy/compile.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { approvalRequest, at, decision, T0 } from "../fixtures/approval-request.js";

type Status = NonNullable<ApprovalRequest["status"]>;

/** Pending since T0; reminder at 10 min, escalation to "pager" at 30 min, expiry at 1 h. */
function pending(status: Partial<Status> = {}, approval: Partial<ApprovalRequest["spec"]["approval"]> = {}) {
  const base = approvalRequest({}, { phase: "Pending", ...status });
  const ar: ApprovalRequest = {
    ...base,
    metadata: { ...base.metadata, creationTimestamp: T0 },
    spec: {
      ...base.spec,
      approval: {
        ...base.spec.approval,
        requiredApprovals: 2,
        remindAfter: "10m",
        escalateAfter: "30m",
        escalateTo: ["pager"],
        ...approval,
      },
    },
  };
  return ar;
}

const config: NotificationConfig = {
  routes: [
    { name: "team", type: "webhook", url: "https://team.example/hook" },
    { name: "decisions-only", type: "webhook", url: "https://d.example/hook", events: ["Approved"] },
    { name: "pager", type: "webhook", url: "https://pager.example/hook", events: ["Approved"] },
  ],
  defaultRoutes: ["team", "decisions-only"],
};

describe("follow-ups: when they are due", () => {
  it("nothing before remindAfter; the wake-up is the reminder's time", () => {
    expect(followUpsDue(pending(), at(60))).toEqual({ due: [], nextAt: at(600) });
  });

  it("the reminder past remindAfter, then the escalation past escalateAfter", () => {
    expect(followUpsDue(pending(), at(601))).toEqual({ due: [FollowUp.Reminder], nextAt: at(1800) });
    const reminded = pending({ remindedAt: at(601).toISOString() });
    expect(followUpsDue(reminded, at(900))).toEqual({ due: [], nextAt: at(1800) });
    expect(followUpsDue(reminded, at(1800))).toEqual({ due: [FollowUp.Escalated] });
  });

  it("a reminder waits while the request is still held for a burst summary", () => {
    const held = pending({ notifications: [{ route: "team", event: "Requested", state: "Batched" }] });
    expect(followUpsDue(held, at(700))).toEqual({ due: [], nextAt: at(1800) });
    const announced = pending({ notifications: [{ route: "team", event: "Requested", state: "Sent" }] });
    expect(followUpsDue(announced, at(700)).due).toEqual([FollowUp.Reminder]);
  });

  it("a controller that was down past both sends both, once", () => {
    expect(followUpsDue(pending(), at(2000)).due).toEqual([FollowUp.Reminder, FollowUp.Escalated]);
    const both = pending({ remindedAt: at(2000).toISOString(), escalatedAt: at(2000).toISOString() });
    expect(followUpsDue(both, at(3000))).toEqual({ due: [] });
  });

  it("never for a request that is decided, expired, or has no follow-ups", () => {
    for (const phase of ["Approved", "Denied", "Consumed", "Revoked", "Expired"] as const)
      expect(followUpsDue(pending({ phase }), at(2000)).due).toEqual([]);
    // Past expiry the request is Expired, whatever its status says.
    expect(followUpsDue(pending(), at(3600)).due).toEqual([]);
    const denied = pending();
    denied.spec.decisions = [decision("root", "Deny")];
    expect(followUpsDue(denied, at(2000)).due).toEqual([]);
    expect(followUpsDue(pending({}, { remindAfter: undefined, escalateAfter: undefined }), at(2000))).toEqual(
      {
        due: [],
      },
    );
  });

  it("a follow-up that would fall at or after expiry is never due and never wakes the request", () => {
    const late = pending({}, { remindAfter: "2h", escalateAfter: "3h" });
    expect(followUpsDue(late, at(1000))).toEqual({ due: [] });
  });

  it("the reconciler wakes a pending request at its next follow-up, else at expiry", () => {
    expect(nextLook(pending(), at(60), 0)).toEqual({ kind: "wake", at: at(600), why: "follow-up" });
    const done = pending({ remindedAt: at(601).toISOString(), escalatedAt: at(1800).toISOString() });
    expect(nextLook(done, at(1900), 0)).toEqual({ kind: "wake", at: at(3600), why: "expiry" });
  });
});

describe("follow-ups: where they go", () => {
  it("a reminder goes to the routes that announced the request; an escalation to escalateTo, whatever its events", () => {
    const ar = pending();
    expect(routesFor(ar, "Reminder", config).map((r) => r.name)).toEqual(["team"]);
    expect(routesFor(ar, "Escalated", config).map((r) => r.name)).toEqual(["pager"]);
    expect(unknownEscalationRoutes(pending({}, { escalateTo: ["pager", "nope"] }), config)).toEqual(["nope"]);
  });

  it("reminder and escalation messages say how long it waits and offer the decision", () => {
    const ar = pending();
    ar.spec.decisions = [decision("root", "Approve")];
    const slack = JSON.stringify(messageFor({ name: "s", type: "slack", url: "https://s" }, ar, "Reminder"));
    expect(slack).toContain("Reminder, still waiting for approval");
    expect(slack).toContain("1/2 approvals, pending since 2026-01-01T00:00:00.000Z");
    expect(slack).toContain('"action_id":"approve"');
    const hook = messageFor(config.routes[2]!, ar, "Escalated") as Record<string, unknown>;
    expect(hook).toMatchObject({ event: "Escalated", approvals: { have: 1, required: 2 } });
    const teams = JSON.stringify(messageFor({ name: "t", type: "teams", url: "https://t" }, ar, "Escalated"));
    expect(teams).toContain("Escalated, approval overdue");
    expect(teams).toContain("kubectl approve");
  });
});

describe("follow-ups: the requester's progress", () => {
  it("counts approvals and says when routes were reminded and escalated to", () => {
    const ar = pending({
      remindedAt: at(600).toISOString(),
      escalatedAt: at(1800).toISOString(),
      notifications: [
        { route: "team", event: "Reminder", state: "Sent" },
        { route: "pager", event: "Escalated", state: "Sent" },
      ],
    });
    ar.spec.decisions = [decision("root", "Approve")];
    expect(pendingProgress(ar, at(1200))).toBe(
      "1/2 approvals, reminded 10 min ago, escalated to pager 0 s ago",
    );
    expect(pendingProgress(ar, at(2000), "group approvers")).toBe(
      "1/2 approvals from group approvers, reminded 23 min ago, escalated to pager 3 min ago",
    );
  });

  it("does not claim a reminder no route received", () => {
    const ar = pending({ remindedAt: at(600).toISOString(), notifications: [] });
    expect(pendingProgress(ar, at(1200))).toBe("0/2 approvals");
  });

  it("summarizes the follow-ups for kubectl approvals show and the console", () => {
    expect(followUpSummary(pending({ remindedAt: at(600).toISOString() }))).toBe(
      "remind after 10m (sent 2026-01-01T00:10:00.000Z), escalate to pager after 30m (not yet)",
    );
    expect(
      followUpSummary(pending({}, { remindAfter: undefined, escalateAfter: undefined })),
    ).toBeUndefined();
  });

  it("words durations for people", () => {
    expect(ago(45_000)).toBe("45 s ago");
    expect(ago(10 * 60_000 + 5000)).toBe("10 min ago");
    expect(ago(125 * 60_000)).toBe("2 h 5 min ago");
    expect(ago(-5)).toBe("0 s ago");
  });
});

describe("follow-ups: the policy", () => {
  const policy = (approval: Record<string, unknown>) =>
    compilePolicy({
      apiVersion: "countersign.io/v1alpha1",
      kind: "ApprovalPolicy",
      metadata: { name: "p", generation: 1 },
      spec: {
        subjects: { groups: ["agents"] },
        rules: [
          { name: "r", action: "RequireApproval", approval: { approvers: { groups: ["a"] }, ...approval } },
        ],
      },
    } as never);

  it("copies valid follow-ups into the compiled rule", () => {
    const p = policy({ remindAfter: "10m", escalateAfter: "30m", escalateTo: ["pager"] });
    expect(p).toMatchObject({
      ok: true,
      policy: { rules: [{ approval: { remindAfter: "10m", escalateAfter: "30m", escalateTo: ["pager"] } }] },
    });
  });

  it("refuses a follow-up at or after ttl, out of order, malformed, or escalation without routes", () => {
    for (const bad of [
      { remindAfter: "1h" },
      { remindAfter: "2h", ttl: "1h" },
      { remindAfter: "30m", escalateAfter: "10m", escalateTo: ["pager"] },
      { remindAfter: "10 minutes" },
      { remindAfter: "0s" },
      { escalateAfter: "30m" },
      { escalateTo: ["pager"] },
    ])
      expect(policy(bad), JSON.stringify(bad)).toMatchObject({ ok: false });
  });
});
