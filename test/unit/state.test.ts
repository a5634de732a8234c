import { describe, expect, it } from "vitest";
import { guardWrite } from "../../src/approvals/decision-guard.js";
import type { ApprovalRequest } from "../../src/approvals/request.js";
import { computePhase, nextStatus, nextWakeup } from "../../src/approvals/state.js";
import {
  type AuditRecord,
  auditRecordName,
  GENESIS_HASH,
  hashRecord,
  verifyChain,
} from "../../src/audit/chain.js";
import { auditDetails, expectedAuditEvents } from "../../src/controller/reconciler.js";
import type { AdmissionRequest } from "../../src/policy/evaluate.js";

const T0 = new Date("2026-01-01T00:00:00Z");
const at = (s: number) => new Date(T0.getTime() + s * 1000);

function ar(
  over: Partial<ApprovalRequest["spec"]> = {},
  status?: ApprovalRequest["status"],
): ApprovalRequest {
  return {
    apiVersion: "countersign.io/v1alpha1",
    kind: "ApprovalRequest",
    metadata: { name: "delete-secrets-db-abc", namespace: "prod", generation: 1 },
    spec: {
      fingerprint: "a".repeat(64),
      attempt: 0,
      requester: {
        username: "system:serviceaccount:ai:bot",
        serviceAccount: { namespace: "ai", name: "bot" },
      },
      action: {
        operation: "DELETE",
        group: "",
        version: "v1",
        resource: "secrets",
        subResource: "",
        namespace: "prod",
        name: "db",
        objectHash: "",
        summary: "s",
      },
      policy: { name: "p", rule: "r" },
      approval: {
        approvers: { groups: ["approvers"], users: ["root"] },
        requiredApprovals: 1,
        ttl: "1h",
        expiresAt: at(3600).toISOString(),
      },
      ...over,
    },
    ...(status ? { status } : {}),
  };
}

describe("the ApprovalRequest state machine", () => {
  it("goes Pending → Approved on enough approvals, → Denied on any denial, → Expired at the TTL", () => {
    expect(computePhase(ar(), at(1)).phase).toBe("Pending");
    expect(computePhase(ar({ decisions: [{ approver: "alice", decision: "Approve" }] }), at(1)).phase).toBe(
      "Approved",
    );
    expect(
      computePhase(
        ar({
          decisions: [
            { approver: "alice", decision: "Approve" },
            { approver: "bob", decision: "Deny" },
          ],
        }),
        at(1),
      ).phase,
    ).toBe("Denied");
    expect(computePhase(ar(), at(3600)).phase).toBe("Expired");
    expect(
      computePhase(
        ar({ decisions: [{ approver: "alice", decision: "Approve" }] }, { phase: "Approved" }),
        at(3601),
      ).phase,
    ).toBe("Expired");
  });

  it("never moves out of Consumed, Denied or Expired, and ignores the requester's own approval", () => {
    expect(computePhase(ar({}, { phase: "Consumed" }), at(9999)).phase).toBe("Consumed");
    expect(
      computePhase(ar({ decisions: [{ approver: "x", decision: "Approve" }] }, { phase: "Denied" }), at(1))
        .phase,
    ).toBe("Denied");
    expect(
      computePhase(
        ar({ decisions: [{ approver: "system:serviceaccount:ai:bot", decision: "Approve" }] }),
        at(1),
      ).phase,
    ).toBe("Pending");
  });

  it("moves lastTransitionTime only when a condition changes, and reports no change when there is none", () => {
    const first = nextStatus(ar(), at(1))!;
    const again = nextStatus(ar({}, first), at(50));
    expect(again).toBeUndefined();
    const approved = nextStatus(
      ar({ decisions: [{ approver: "alice", decision: "Approve" }] }, first),
      at(60),
    )!;
    const ready = approved.conditions!.find((c) => c.type === "Ready")!;
    expect(ready.lastTransitionTime).toBe("2026-01-01T00:01:00Z");
    expect(approved.decidedAt).toBe("2026-01-01T00:01:00Z");
    expect(nextWakeup(ar({}, first))?.toISOString()).toBe(at(3600).toISOString());
  });

  it("expects the audit events the phase implies, in order", () => {
    const approved = ar({ decisions: [{ approver: "alice", decision: "Approve", via: "kubectl" }] });
    expect(expectedAuditEvents(approved, "Pending")).toEqual(["Requested"]);
    expect(expectedAuditEvents(approved, "Consumed")).toEqual(["Requested", "Approved", "Consumed"]);
    expect(expectedAuditEvents(ar(), "Expired")).toEqual(["Requested", "Expired"]);
    expect(auditDetails(approved, "Approved", at(5), "cs").actor).toEqual({
      username: "alice",
      via: "kubectl",
    });
  });
});

describe("the audit hash chain", () => {
  const rec = (seq: number, prev: string, reason: string): AuditRecord => {
    const content = {
      sequence: seq,
      event: "Requested" as const,
      time: at(seq).toISOString(),
      approvalRequest: { name: `r${seq}` },
      reason,
      previousHash: prev,
    };
    return {
      apiVersion: "countersign.io/v1alpha1",
      kind: "AuditRecord",
      metadata: { name: auditRecordName(`r${seq}`, "Requested"), namespace: "prod" },
      spec: { ...content, hash: hashRecord(content) },
    };
  };
  const chain = () => {
    const a = rec(0, GENESIS_HASH, "a");
    const b = rec(1, a.spec.hash, "b");
    const c = rec(2, b.spec.hash, "c");
    return [a, b, c];
  };

  it("verifies an intact chain", () => expect(verifyChain(chain())).toEqual([]));

  it("detects an edited record, a removed record and a reordered chain", () => {
    const edited = chain();
    edited[1]!.spec.reason = "forged";
    expect(verifyChain(edited).map((p) => p.problem)).toEqual([
      expect.stringMatching(/content does not match its hash/),
    ]);
    const [a, , c] = chain();
    expect(
      verifyChain([a!, c!])
        .map((p) => p.problem)
        .join(" "),
    ).toMatch(/missing/);
    const rehashed = chain();
    rehashed[1]!.spec.reason = "forged";
    rehashed[1]!.spec.hash = hashRecord(rehashed[1]!.spec);
    expect(verifyChain(rehashed).map((p) => p.sequence)).toEqual([2]); // the next link no longer matches
    expect(
      verifyChain(chain().slice(1))
        .map((p) => p.problem)
        .join(" "),
    ).toMatch(/starts at sequence 1/);
  });
});

describe("the decision guard (pure part)", () => {
  const now = at(10);
  const update = (
    oldAr: ApprovalRequest,
    newAr: ApprovalRequest,
    user: AdmissionRequest["userInfo"],
  ): AdmissionRequest => ({
    uid: "u",
    kind: { group: "countersign.io", version: "v1alpha1", kind: "ApprovalRequest" },
    resource: { group: "countersign.io", version: "v1alpha1", resource: "approvalrequests" },
    namespace: "prod",
    name: oldAr.metadata.name,
    operation: "UPDATE",
    userInfo: user,
    oldObject: oldAr,
    object: newAr,
  });
  const alice = { username: "alice", uid: "a-1", groups: ["approvers"] };
  const withDecision = (d: NonNullable<ApprovalRequest["spec"]["decisions"]>[number]) =>
    ar({ decisions: [d] });

  it("passes a correct decision on to RBAC with the right verb", () => {
    const r = guardWrite(
      update(
        ar(),
        withDecision({ approver: "alice", uid: "a-1", groups: ["approvers"], decision: "Deny" }),
        alice,
      ),
      new Set(),
      now,
    );
    expect(r).toMatchObject({ allowed: "needs-rbac", verb: "deny", namespace: "prod" });
  });

  it("refuses forged identities, self-approval, non-approvers, late and duplicate decisions", () => {
    const g = (newAr: ApprovalRequest, user: AdmissionRequest["userInfo"] = alice, oldAr = ar()) =>
      guardWrite(update(oldAr, newAr, user), new Set(), now);
    expect(g(withDecision({ approver: "bob", decision: "Approve" }))).toMatchObject({
      allowed: false,
      message: /authenticated as "alice"/,
    });
    expect(g(withDecision({ approver: "alice", uid: "other", decision: "Approve" }))).toMatchObject({
      allowed: false,
      message: /uid/,
    });
    const bot = { username: "system:serviceaccount:ai:bot", groups: ["approvers"] };
    expect(g(withDecision({ approver: bot.username, decision: "Approve" }), bot)).toMatchObject({
      allowed: false,
      message: /own request/,
    });
    const mallory = { username: "mallory", groups: ["devs"] };
    expect(g(withDecision({ approver: "mallory", decision: "Approve" }), mallory)).toMatchObject({
      allowed: false,
      message: /not an approver/,
    });
    const expired = ar({ approval: { ...ar().spec.approval, expiresAt: at(5).toISOString() } });
    expect(
      g(
        { ...expired, spec: { ...expired.spec, decisions: [{ approver: "alice", decision: "Approve" }] } },
        alice,
        expired,
      ),
    ).toMatchObject({
      allowed: false,
      message: /expired/,
    });
    const decided = withDecision({ approver: "alice", decision: "Approve" });
    expect(
      g(
        {
          ...decided,
          spec: {
            ...decided.spec,
            decisions: [...decided.spec.decisions!, { approver: "alice", decision: "Deny" }],
          },
        },
        alice,
        decided,
      ),
    ).toMatchObject({
      allowed: false,
    });
    const two = ar({
      decisions: [
        { approver: "alice", decision: "Approve" },
        { approver: "root", decision: "Approve" },
      ],
    });
    expect(g(two)).toMatchObject({ allowed: false, message: /one decision per write/ });
  });

  it("lets Countersign itself write, and nobody else create, delete or set status", () => {
    const base = update(ar(), ar(), alice);
    expect(guardWrite({ ...base, operation: "CREATE" }, new Set(["cs"]), now)).toMatchObject({
      allowed: false,
    });
    expect(
      guardWrite({ ...base, operation: "CREATE", userInfo: { username: "cs" } }, new Set(["cs"]), now),
    ).toEqual({ allowed: true });
    expect(guardWrite({ ...base, subResource: "status" }, new Set(), now)).toMatchObject({
      allowed: false,
      message: /status/,
    });
    expect(guardWrite({ ...base, operation: "DELETE" }, new Set(), now)).toMatchObject({
      allowed: false,
      message: /audit trail/,
    });
    const audit = {
      ...base,
      resource: { ...base.resource, resource: "auditrecords" },
      operation: "DELETE" as const,
    };
    expect(guardWrite(audit, new Set(), now)).toMatchObject({ allowed: false, message: /AuditRecords/ });
  });
});

describe("execution check (pure)", () => {
  it("judges deletes, creates and updates from the target as read after admission", async () => {
    const { judgeExecution } = await import("../../src/controller/reconciler.js");
    const del = ar();
    expect(judgeExecution(del, undefined).result).toBe("Executed");
    expect(judgeExecution(del, { metadata: { name: "db", deletionTimestamp: new Date() } }).result).toBe(
      "Executed",
    );
    expect(judgeExecution(del, { metadata: { name: "db" } }).result).toBe("NotExecuted");
    const create = ar({ action: { ...del.spec.action, operation: "CREATE" } });
    expect(judgeExecution(create, undefined).result).toBe("NotExecuted");
    expect(judgeExecution(create, { metadata: { name: "db" } }).result).toBe("Executed");
    const connect = ar({ action: { ...del.spec.action, operation: "CONNECT" } });
    expect(judgeExecution(connect, undefined).result).toBe("Unknown");
  });
});
