/**
 * The reconciler's pure plan (src/controller/approval-request-plan.ts): what one reconcile
 * writes, and the next look after it.
 */
import { describe, expect, it } from "vitest";
import { EXECUTION_CHECK_DELAY_MS } from "../../src/approvals/lifecycle.js";
import { nextLook, planReconcile } from "../../src/controller/approval-request-plan.js";
import { approvalRequest, at, decision } from "../fixtures/approval-request.js";

const HOUR = 3600_000;

describe("planReconcile", () => {
  it("a new request: the Requested record, no Event (the webhook announced it), status Pending", () => {
    const plan = planReconcile(approvalRequest(), at(1));
    expect(plan.target.phase).toBe("Pending");
    expect(plan.audit).toEqual(["Requested"]);
    expect(plan.announce).toBe(false);
    expect(plan.status?.phase).toBe("Pending");
    expect(plan.observeDecision).toBe(false);
  });

  it("an approval: the Approved record only (Requested is listed), an Event, the metric", () => {
    const ar = approvalRequest(
      { decisions: [decision("alice", "Approve")] },
      { phase: "Pending", auditRecords: [{ event: "Requested", sequence: 0, record: "x.requested" }] },
    );
    const plan = planReconcile(ar, at(10));
    expect(plan.target.phase).toBe("Approved");
    expect(plan.audit).toEqual(["Approved"]);
    expect(plan.announce).toBe(true);
    expect(plan.observeDecision).toBe(true);
    expect(plan.status?.phase).toBe("Approved");
  });

  it("nothing changed: nothing to write", () => {
    const first = approvalRequest();
    const status = planReconcile(first, at(1)).status;
    const settled = approvalRequest(
      {},
      { ...status, auditRecords: [{ event: "Requested", sequence: 0, record: "x.requested" }] },
    );
    const plan = planReconcile(settled, at(2));
    expect(plan).toMatchObject({ audit: [], announce: false, status: undefined, observeDecision: false });
  });

  it("expiry of an approved, unused request: no time-to-decision (it was decided already)", () => {
    const ar = approvalRequest({ decisions: [decision("alice", "Approve")] }, { phase: "Approved" });
    const plan = planReconcile(ar, at(3601));
    expect(plan.target.phase).toBe("Expired");
    expect(plan.announce).toBe(true);
    expect(plan.observeDecision).toBe(false);
  });
});

describe("nextLook", () => {
  const consumedAt = at(100);
  const consumed = (execution?: { result: "Executed" }) =>
    approvalRequest(
      { decisions: [decision("alice", "Approve")] },
      {
        phase: "Consumed",
        consumed: { admissionUID: "u", time: consumedAt.toISOString() },
        ...(execution ? { execution } : {}),
      },
    );

  it("a consumed request: wait for the execution check, then check, once", () => {
    expect(nextLook(consumed(), at(101), HOUR)).toEqual({
      kind: "wake",
      at: new Date(consumedAt.getTime() + EXECUTION_CHECK_DELAY_MS),
      why: "execution-check",
    });
    expect(nextLook(consumed(), new Date(consumedAt.getTime() + EXECUTION_CHECK_DELAY_MS), HOUR)).toEqual({
      kind: "check-execution",
    });
    expect(nextLook(consumed({ result: "Executed" }), at(200), HOUR)).toEqual({
      kind: "wake",
      at: new Date(consumedAt.getTime() + HOUR),
      why: "retention",
    });
  });

  it("an open request wakes at its expiry; a finished one is collected after its retention", () => {
    expect(nextLook(approvalRequest(), at(1), HOUR)).toEqual({ kind: "wake", at: at(3600), why: "expiry" });
    const expired = approvalRequest({}, { phase: "Expired" });
    expect(nextLook(expired, at(3700), HOUR)).toEqual({ kind: "wake", at: at(7200), why: "retention" });
    expect(nextLook(expired, at(7200), HOUR)).toEqual({ kind: "collect" });
  });
});
