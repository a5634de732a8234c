/** The chaos harness's invariant checker (test/chaos/invariants.ts) on hand-made histories. */
import { describe, expect, it } from "vitest";
import {
  type ApiAuditEvent,
  checkSchedule,
  type ScheduleEvidence,
  type SeenRequest,
} from "../chaos/invariants.js";

const NS = "chaos-1";
const AGENT = "system:serviceaccount:chaos-agents:agent-0";
const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

function request(
  name: string,
  over: Partial<SeenRequest["status"]> = {},
  decisions = [{ approver: "alice", decision: "Approve", time: t(2) }],
): SeenRequest {
  return {
    metadata: { name, namespace: NS },
    spec: {
      requester: { username: AGENT },
      action: { operation: "CREATE", namespace: NS, name: "cm-0", resource: "configmaps" },
      approval: { requiredApprovals: 1, expiresAt: t(10) },
      decisions,
    },
    status: { phase: "Consumed", consumed: { admissionUID: "u1", time: t(3) }, ...over },
  };
}

function write(id: string, ar: string | undefined, at = 3, code = 201): ApiAuditEvent {
  return {
    auditID: id,
    stage: "ResponseComplete",
    verb: "create",
    user: { username: AGENT },
    objectRef: { resource: "configmaps", namespace: NS, name: "cm-0" },
    responseStatus: { code },
    requestReceivedTimestamp: t(at),
    stageTimestamp: t(at),
    annotations: ar
      ? {
          // The API server's own annotation (first, as in its log): not Countersign's decision.
          "authorization.k8s.io/decision": "allow",
          "gate.countersign.io/decision": "approval-consumed",
          "gate.countersign.io/approval-request": `${NS}/${ar}`,
        }
      : { "gate.countersign.io/decision": "allowed" },
  };
}

function evidence(over: Partial<ScheduleEvidence> = {}): ScheduleEvidence {
  return {
    namespace: NS,
    agentUsernames: [AGENT],
    auditEvents: [write("a1", "r1")],
    requests: [request("r1")],
    records: [
      {
        metadata: { name: "x1" },
        spec: { event: "Requested", approvalRequest: { name: "r1" }, sequence: 1 },
      },
      { metadata: { name: "x2" }, spec: { event: "Consumed", approvalRequest: { name: "r1" }, sequence: 2 } },
    ],
    attempts: [],
    firstSeenTerminal: new Map(),
    healedAt: Date.parse(t(5)),
    terminalBoundMs: 15_000,
    verify: { ok: true, report: "ok" },
    ...over,
  };
}

describe("chaos invariants", () => {
  it("a clean history: one approval, one admission, its records", () => {
    const f = checkSchedule(evidence());
    expect(f.violations).toEqual([]);
    expect(f.stats).toMatchObject({ admitted: 1, consumed: 1, consumedNotAdmitted: 0 });
  });

  it("an approval admitted twice (counted from the API server's audit log)", () => {
    const f = checkSchedule(evidence({ auditEvents: [write("a1", "r1"), write("a2", "r1")] }));
    expect(f.violations).toContainEqual(expect.stringMatching(/r1 was used 2 times/));
  });

  it("the API server's authorization.k8s.io/decision annotation is not mistaken for Countersign's (batch 1's false positives)", () => {
    expect(checkSchedule(evidence()).violations).toEqual([]);
  });

  it("an agent write admitted without an approval", () => {
    const f = checkSchedule(evidence({ auditEvents: [write("a1", "r1"), write("a3", undefined)] }));
    expect(f.violations).toContainEqual(expect.stringMatching(/admitted without an approval/));
  });

  it("refused writes (4xx) and other users' writes do not count as admissions", () => {
    const other = { ...write("a4", undefined), user: { username: "alice" } };
    const f = checkSchedule(
      evidence({ auditEvents: [write("a1", "r1"), write("a5", undefined, 3, 403), other] }),
    );
    expect(f.violations).toEqual([]);
  });

  it("consumed after expiry, before enough approvals, after a deny, or outside the admission", () => {
    const late = request("r1", { consumed: { admissionUID: "u", time: t(12) } });
    expect(
      checkSchedule(evidence({ requests: [late], auditEvents: [write("a1", "r1", 12)] })).violations,
    ).toContainEqual(expect.stringMatching(/after it expired/));
    const unapproved = request("r1", {}, []);
    expect(checkSchedule(evidence({ requests: [unapproved] })).violations).toContainEqual(
      expect.stringMatching(/0\/1 approvals/),
    );
    const denied = request("r1", {}, [
      { approver: "bob", decision: "Deny", time: t(1) },
      { approver: "alice", decision: "Approve", time: t(2) },
    ]);
    expect(checkSchedule(evidence({ requests: [denied] })).violations).toContainEqual(
      expect.stringMatching(/after a Deny by bob/),
    );
    expect(checkSchedule(evidence({ auditEvents: [write("a1", "r1", 8)] })).violations).toContainEqual(
      expect.stringMatching(/outside that admission/),
    );
  });

  it("a request for another action cannot be what admitted this one", () => {
    const other = request("r1");
    other.spec.action = { ...other.spec.action, name: "cm-1" };
    expect(checkSchedule(evidence({ requests: [other] })).violations).toContainEqual(
      expect.stringMatching(/which names CREATE configmaps chaos-1\/cm-1/),
    );
  });

  it("a request left open, or terminal too late, is a violation", () => {
    const open = request("r2", { phase: "Pending", consumed: undefined as never });
    const f = checkSchedule(evidence({ requests: [request("r1"), open] }));
    expect(f.violations).toContainEqual(expect.stringMatching(/r2 is still Pending/));
    const late = request("r3", { phase: "Expired", consumed: undefined as never });
    const g = checkSchedule(
      evidence({ requests: [request("r1"), late], firstSeenTerminal: new Map([["r3", Date.parse(t(40))]]) }),
    );
    expect(g.violations).toContainEqual(
      expect.stringMatching(
        /r3 became Expired .* more than 15000 ms .*\(no fault on the shared cluster meanwhile\)$/,
      ),
    );
    // Another schedule's faults on the shared cluster meanwhile are named (the miss still counts).
    const h = checkSchedule(
      evidence({
        requests: [request("r1"), late],
        firstSeenTerminal: new Map([["r3", Date.parse(t(40))]]),
        faultsDuring: (from, to) => (from < to ? ["webhook-1 down (SIGKILL) 20:00:02.000–20:00:15.000"] : []),
      }),
    );
    expect(h.violations).toContainEqual(
      expect.stringMatching(
        /r3 became Expired .* \(while the shared cluster had faults on: webhook-1 down \(SIGKILL\) 20:00:02.000–20:00:15.000\)$/,
      ),
    );
  });

  it("missing audit records and a failed verify are violations", () => {
    const f = checkSchedule(evidence({ records: [], verify: { ok: false, report: "TAMPERED" } }));
    expect(f.violations).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/audit verify failed/),
        expect.stringMatching(/r1 has no Requested audit record/),
        expect.stringMatching(/r1 is Consumed but has no Consumed audit record/),
        expect.stringMatching(/r1 was admitted but has no Consumed audit record/),
      ]),
    );
  });

  it("a success the agent saw that the API server never recorded", () => {
    const f = checkSchedule(
      evidence({
        attempts: [
          {
            agent: "agent-0",
            username: AGENT,
            verb: "delete",
            name: "cm-0",
            start: Date.parse(t(3)),
            end: Date.parse(t(4)),
            ok: true,
          },
        ],
      }),
    );
    expect(f.violations).toContainEqual(
      expect.stringMatching(/succeeded but the API server's audit log has no such write/),
    );
  });
});
