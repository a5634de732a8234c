/**
 * The ApprovalRequest lifecycle (src/approvals/lifecycle.ts), pure: the one tally, the status
 * the gate writes when it uses an approval, and the gate's table — every phase of the request
 * it finds × the situation of the action (same rule or not, dry run or not, hold or not,
 * before or after the TTL).
 */
import { describe, expect, it } from "vitest";
import {
  consumedStatus,
  type GateContext,
  gateStep,
  holdStep,
  tally,
} from "../../src/approvals/lifecycle.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { approvalRequest, at, decision, REQUESTER } from "../fixtures/approval-request.js";

const FP = "a".repeat(64);
const before = at(60); // inside the TTL
const after = at(3601); // past expiresAt

const ctx = (over: Partial<GateContext> = {}): GateContext => ({
  fingerprint: FP,
  rule: { policy: "p", rule: "r" },
  now: before,
  dryRun: false,
  holdSeconds: 0,
  ...over,
});

const approve = decision("alice", "Approve");
const pending = () => approvalRequest();
const approved = (over: Partial<ApprovalRequest["spec"]> = {}) =>
  approvalRequest({ decisions: [approve], ...over }, { phase: "Approved" });
const denied = () => approvalRequest({ decisions: [decision("alice", "Deny")] }, { phase: "Denied" });
const revoked = () =>
  approvalRequest(
    { decisions: [approve, decision("root", "Revoke", { reason: "no" })] },
    { phase: "Revoked" },
  );
const consumed = () =>
  approvalRequest(
    { decisions: [approve] },
    { phase: "Consumed", consumed: { admissionUID: "u", time: at(30).toISOString() } },
  );
const expired = () => approvalRequest({}, { phase: "Expired" });

describe("tally: the one count of a request's decisions", () => {
  it("counts distinct approvers, never the requester, and finds the first denial and revocation", () => {
    const t = tally(
      approvalRequest({
        approval: { ...approvalRequest().spec.approval, requiredApprovals: 2 },
        decisions: [
          decision(REQUESTER, "Approve"),
          decision("alice", "Approve"),
          decision("alice", "Approve"),
          decision("bob", "Deny", { reason: "first" }),
          decision("carol", "Deny"),
          decision("root", "Approve"),
          decision("dave", "Revoke"),
        ],
      }).spec,
    );
    expect(t.approvers).toEqual(["alice", "root"]);
    expect(t.approvals.map((d) => d.approver)).toEqual(["alice", "root"]);
    expect(t.required).toBe(2);
    expect(t.reached).toBe(true);
    expect(t.deniedBy?.approver).toBe("bob");
    expect(t.revokedBy?.approver).toBe("dave");
  });

  it("is not reached with fewer distinct approvals than required", () => {
    const t = tally(approvalRequest({ decisions: [decision(REQUESTER, "Approve")] }).spec);
    expect(t).toMatchObject({ approvers: [], reached: false });
    expect(t.deniedBy).toBeUndefined();
  });
});

describe("consumedStatus", () => {
  it("marks the request Consumed with the admission uid, time and replica, keeping the rest", () => {
    const ar = approved();
    ar.status = {
      ...ar.status,
      approvals: 1,
      auditRecords: [{ event: "Requested", sequence: 0, record: "x" }],
    };
    expect(consumedStatus(ar, { admissionUID: "uid-1", replica: "w-0" }, at(90))).toEqual({
      phase: "Consumed",
      approvals: 1,
      auditRecords: [{ event: "Requested", sequence: 0, record: "x" }],
      consumed: { admissionUID: "uid-1", time: at(90).toISOString(), replica: "w-0" },
    });
  });
});

describe("the gate's table: request found × situation → step", () => {
  it("no request: create one (holding when the rule holds), or create nothing on a dry run", () => {
    expect(gateStep(undefined, ctx())).toEqual({ step: "create", hold: false });
    expect(gateStep(undefined, ctx({ holdSeconds: 5 }))).toEqual({ step: "create", hold: true });
    expect(gateStep(undefined, ctx({ dryRun: true, holdSeconds: 5 }))).toEqual({ step: "dry-run-none" });
  });

  it("a request of another action under the same name: the next attempt's name", () => {
    for (const found of [pending(), approved(), denied()])
      expect(gateStep(found, ctx({ fingerprint: "b".repeat(64) }))).toEqual({ step: "next-attempt" });
  });

  it("Pending: refuse with how to get it approved; hold only when the rule holds and it is no dry run", () => {
    expect(gateStep(pending(), ctx())).toEqual({ step: "pending", hold: false });
    expect(gateStep(pending(), ctx({ holdSeconds: 5 }))).toEqual({ step: "pending", hold: true });
    expect(gateStep(pending(), ctx({ holdSeconds: 5, dryRun: true }))).toEqual({
      step: "pending",
      hold: false,
    });
    // approvals in spec the controller has not recorded yet do not make it usable
    expect(gateStep(approvalRequest({ decisions: [approve] }), ctx())).toEqual({
      step: "pending",
      hold: false,
    });
  });

  it("Approved and usable: use it (a dry run only reports it)", () => {
    expect(gateStep(approved(), ctx())).toEqual({ step: "use", dryRun: false });
    expect(gateStep(approved(), ctx({ dryRun: true }))).toEqual({ step: "use", dryRun: true });
  });

  it("Approved but not usable for this action: refuse and say why", () => {
    const otherRule = gateStep(approved(), ctx({ rule: { policy: "p", rule: "stricter" } }));
    expect(otherRule).toMatchObject({
      step: "unusable",
      why: expect.stringMatching(/rule stricter decides/),
    });
    expect(gateStep(approved({ diffTruncated: true }), ctx())).toMatchObject({
      step: "unusable",
      why: expect.stringMatching(/too large/),
    });
    const short = approved({
      approval: { ...approvalRequest().spec.approval, requiredApprovals: 2 },
    });
    expect(gateStep(short, ctx())).toMatchObject({
      step: "unusable",
      why: "it has 1 of 2 required approvals",
    });
    const alsoDenied = approved({ decisions: [approve, decision("bob", "Deny")] });
    expect(gateStep(alsoDenied, ctx())).toMatchObject({ step: "unusable", why: "it was denied by bob" });
  });

  it("Approved with a revocation the controller has not recorded yet: refused as revoked", () => {
    const found = approved({ decisions: [approve, decision("root", "Revoke", { reason: "no" })] });
    expect(gateStep(found, ctx())).toEqual({ step: "revoked" });
  });

  it("Denied or Revoked: refuse until the TTL, then a retry opens a new request", () => {
    expect(gateStep(denied(), ctx())).toEqual({ step: "denied" });
    expect(gateStep(revoked(), ctx())).toEqual({ step: "revoked" });
    expect(gateStep(denied(), ctx({ now: after }))).toEqual({ step: "next-attempt" });
    expect(gateStep(revoked(), ctx({ now: after }))).toEqual({ step: "next-attempt" });
  });

  it("Consumed, Expired, or Pending/Approved past the TTL: used up, the next attempt's name", () => {
    expect(gateStep(consumed(), ctx())).toEqual({ step: "next-attempt" });
    expect(gateStep(expired(), ctx())).toEqual({ step: "next-attempt" });
    expect(gateStep(pending(), ctx({ now: after }))).toEqual({ step: "next-attempt" });
    expect(gateStep(approved(), ctx({ now: after }))).toEqual({ step: "next-attempt" });
  });
});

describe("the hold table: each re-read while an agent's call is held", () => {
  it("waits while Pending, uses a usable approval, refuses a denial or revocation, else stops", () => {
    expect(holdStep(pending(), FP, before)).toEqual({ step: "wait" });
    expect(holdStep(approved(), FP, before)).toEqual({ step: "use" });
    expect(holdStep(approved({ diffTruncated: true }), FP, before)).toEqual({ step: "stop" });
    expect(holdStep(denied(), FP, before)).toEqual({ step: "denied" });
    expect(holdStep(revoked(), FP, before)).toEqual({ step: "revoked" });
    expect(holdStep(consumed(), FP, before)).toEqual({ step: "stop" });
    expect(holdStep(expired(), FP, before)).toEqual({ step: "stop" });
    expect(holdStep(pending(), FP, after)).toEqual({ step: "stop" });
    expect(holdStep(undefined, FP, before)).toEqual({ step: "stop" });
  });
});
