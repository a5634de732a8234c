import { describe, expect, it } from "vitest";
import { guardWrite } from "../../src/approvals/decision-guard.js";
import { DECISION_CLOCK_SKEW_SECONDS } from "../../src/approvals/decisions.js";
import {
  computePhase,
  finishedAt,
  judgeExecution,
  nextStatus,
  nextWakeup,
} from "../../src/approvals/lifecycle.js";
import { decisionEntry } from "../../src/approvals/request.js";
import { auditRecordName, GENESIS_HASH, hashRecord, verifyChain } from "../../src/audit/chain.js";
import {
  auditDetails,
  expectedAuditEvents,
  notifyEventFor,
} from "../../src/controller/approval-request-plan.js";
import { kubeTime } from "../../src/kube/time.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import type { AuditRecord } from "../../src/resources/audit-record.js";
import { approvalRequest, approvalRequestUpdate, at } from "../fixtures/approval-request.js";

const ar = approvalRequest;

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

  it("moves an Approved request to Revoked on a Revoke decision, terminally, with a Revoked condition", () => {
    const approve = { approver: "alice", decision: "Approve" as const, time: kubeTime(at(1)) };
    const revoke = { approver: "bob", decision: "Revoke" as const, reason: "freeze", time: kubeTime(at(9)) };
    const revoked = ar({ decisions: [approve, revoke] }, { phase: "Approved", decidedAt: kubeTime(at(1)) });
    expect(computePhase(revoked, at(10))).toMatchObject({
      phase: "Revoked",
      reason: "RevokedByApprover",
      message: "approval revoked by bob: freeze",
    });
    const status = nextStatus(revoked, at(10))!;
    expect(status.phase).toBe("Revoked");
    expect(status.conditions?.find((c) => c.type === "Revoked")).toMatchObject({ status: "True" });
    expect(status.conditions?.find((c) => c.type === "Approved")).toMatchObject({ status: "False" });
    // Terminal: past its expiry it stays Revoked.
    expect(computePhase(ar({ decisions: [approve, revoke] }, status), at(99999)).phase).toBe("Revoked");
    expect(expectedAuditEvents(revoked, "Revoked")).toEqual(["Requested", "Approved", "Revoked"]);
    expect(auditDetails(revoked, "Revoked", at(20), "cs")).toEqual({
      time: kubeTime(at(9)),
      actor: { username: "bob" },
      reason: "freeze",
    });
    expect(notifyEventFor("Revoked")).toBe("Revoked");
    expect(finishedAt(ar({ decisions: [approve, revoke] }, status))?.toISOString()).toBe(at(9).toISOString());
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
  const update = approvalRequestUpdate;
  const alice = { username: "alice", uid: "a-1", groups: ["approvers"] };
  type D = NonNullable<ApprovalRequest["spec"]["decisions"]>[number];
  /** A decision as kubectl approve writes it for `user`, at `now`. */
  const full = (user: AdmissionRequest["userInfo"], decision: D["decision"], extra: Partial<D> = {}): D => ({
    ...decisionEntry(user, decision, extra.reason, "kubectl", now),
    ...extra,
  });
  const withDecision = (d: D, base = ar()) =>
    ({ ...base, spec: { ...base.spec, decisions: [...(base.spec.decisions ?? []), d] } }) as ApprovalRequest;
  const refused = (pattern: RegExp) => ({ allowed: false, message: expect.stringMatching(pattern) });

  it("passes a correct decision on to RBAC with the right verb", () => {
    const r = guardWrite(update(ar(), withDecision(full(alice, "Deny")), alice), new Set(), now);
    expect(r).toMatchObject({ allowed: "needs-rbac", verb: "deny", namespace: "prod" });
    // A client-certificate user has no uid: the decision carries none either.
    const cert = { username: "carl", groups: ["approvers", "system:authenticated"] };
    expect(guardWrite(update(ar(), withDecision(full(cert, "Approve")), cert), new Set(), now)).toMatchObject(
      {
        allowed: "needs-rbac",
        verb: "approve",
      },
    );
  });

  it("refuses any decision by a subject an ApprovalPolicy covers, also relayed (red team 9, finding 8)", () => {
    const agent2 = { username: "system:serviceaccount:ai:other-bot", uid: "u2", groups: ["approvers"] };
    const covering = (u: AdmissionRequest["userInfo"]) =>
      u.username?.startsWith("system:serviceaccount:ai:") ? ["agents"] : [];
    for (const kind of ["Approve", "Deny"] as const) {
      expect(
        guardWrite(update(ar(), withDecision(full(agent2, kind)), agent2), new Set(), now, covering),
      ).toMatchObject(refused(/other-bot.* is covered by ApprovalPolicy agents, so it may not/));
    }
    // Relayed by Countersign (approval API, Slack) for a covered decider: refused as well.
    const cs = { username: "system:serviceaccount:countersign:webhook", groups: [] };
    const relayed = { ...full(agent2, "Approve"), via: "api" as const };
    expect(
      guardWrite(update(ar(), withDecision(relayed), cs), new Set([cs.username]), now, covering),
    ).toMatchObject(refused(/is covered by ApprovalPolicy agents/));
    // A human approver is not covered: passed on to RBAC as before.
    expect(
      guardWrite(update(ar(), withDecision(full(alice, "Approve")), alice), new Set(), now, covering),
    ).toMatchObject({ allowed: "needs-rbac" });
  });

  it("refuses forged identities, self-approval, non-approvers, late and duplicate decisions", () => {
    const g = (newAr: ApprovalRequest, user: AdmissionRequest["userInfo"] = alice, oldAr = ar()) =>
      guardWrite(update(oldAr, newAr, user), new Set(), now);
    expect(g(withDecision(full({ ...alice, username: "bob" }, "Approve")))).toMatchObject(
      refused(/authenticated as "alice"/),
    );
    expect(g(withDecision(full(alice, "Approve", { uid: "other" })))).toMatchObject(
      refused(/uid "other" does not match/),
    );
    const bot = { username: "system:serviceaccount:ai:bot", groups: ["approvers"] };
    expect(g(withDecision(full(bot, "Approve")), bot)).toMatchObject(refused(/own request/));
    const mallory = { username: "mallory", groups: ["devs"] };
    expect(g(withDecision(full(mallory, "Approve")), mallory)).toMatchObject(refused(/not an approver/));
    const expired = ar({ approval: { ...ar().spec.approval, expiresAt: at(5).toISOString() } });
    expect(g(withDecision(full(alice, "Approve"), expired), alice, expired)).toMatchObject(
      refused(/expired/),
    );
    const decided = withDecision(full(alice, "Approve"));
    expect(g(withDecision(full(alice, "Deny"), decided), alice, decided)).toMatchObject(
      refused(/already decided/),
    );
    const two = withDecision(
      full({ username: "root", groups: [] }, "Approve"),
      withDecision(full(alice, "Approve")),
    );
    expect(g(two)).toMatchObject(refused(/one decision per write/));
  });

  it("requires uid, groups, time and via equal to the caller's, the server's clock and kubectl", () => {
    const g = (d: D, user: AdmissionRequest["userInfo"] = alice) =>
      guardWrite(update(ar(), withDecision(d), user), new Set(), now);
    const { uid: _u, ...noUid } = full(alice, "Approve");
    expect(g(noUid)).toMatchObject(refused(/lacks uid\b.*kubectl approve/));
    const { groups: _g, time: _t, ...bare } = full(alice, "Approve");
    expect(g(bare)).toMatchObject(refused(/lacks groups, time\. .*SelfSubjectReview/));
    // A cert user (no uid) may not claim one, nor someone else's.
    const cert = { username: "carl", groups: ["approvers"] };
    expect(g(full(cert, "Approve", { uid: "a-1" }), cert)).toMatchObject(refused(/uid "a-1" does not match/));
    expect(g(full(alice, "Approve", { groups: ["approvers", "system:masters"] }))).toMatchObject(
      refused(/groups do not match/),
    );
    expect(g(full(alice, "Approve", { groups: [] }))).toMatchObject(refused(/groups do not match/));
    expect(g(full(alice, "Approve", { time: kubeTime(at(10 - 3600)) }))).toMatchObject(
      refused(/3600s behind the server's clock \(120s allowed\)/),
    );
    expect(g(full(alice, "Approve", { time: kubeTime(at(10 + 86400)) }))).toMatchObject(
      refused(/86400s ahead of the server's clock/),
    );
    expect(g(full(alice, "Approve", { time: kubeTime(at(10 + DECISION_CLOCK_SKEW_SECONDS)) }))).toMatchObject(
      {
        allowed: "needs-rbac",
      },
    );
    expect(g(full(alice, "Approve", { time: "yesterday" }))).toMatchObject(refused(/not a timestamp/));
    expect(g(full(alice, "Approve", { via: "slack" }))).toMatchObject(
      refused(/via slack is recorded only by Countersign itself/),
    );
    expect(g(full(alice, "Approve", { via: "api" }))).toMatchObject(refused(/only by Countersign itself/));
    const { via: _v, ...noVia } = full(alice, "Approve");
    expect(g(noVia)).toMatchObject(refused(/lacks via/));
  });

  it("accepts relayed decisions from Countersign only with sane metadata and the decision rules", () => {
    const self = new Set(["cs"]);
    const cs = { username: "cs", groups: ["system:serviceaccounts"] };
    const relayed = (d: D) => guardWrite(update(ar(), withDecision(d), cs), self, now);
    expect(relayed(full(alice, "Approve", { via: "slack" }))).toEqual({ allowed: true });
    expect(relayed(full(alice, "Approve", { via: "api" }))).toEqual({ allowed: true });
    expect(relayed(full(alice, "Approve"))).toMatchObject(refused(/must say how it was made/));
    expect(relayed(full(alice, "Approve", { via: "api", time: kubeTime(at(-1000)) }))).toMatchObject(
      refused(/behind the server's clock/),
    );
    const bot = { username: "system:serviceaccount:ai:bot", groups: ["approvers"] };
    expect(relayed(full(bot, "Approve", { via: "api" }))).toMatchObject(refused(/own request/));
    expect(
      relayed(full({ username: "mallory", groups: ["devs"] }, "Approve", { via: "slack" })),
    ).toMatchObject(refused(/not an approver/));
    // Countersign is bound by immutability too.
    const edited = { ...ar(), spec: { ...ar().spec, fingerprint: "b".repeat(64) } };
    expect(guardWrite(update(ar(), edited, cs), self, now)).toMatchObject(refused(/immutable/));
  });

  it("lets an eligible approver revoke an Approved, unused request, with a reason", () => {
    const approved = withDecision(full(alice, "Approve"), ar(undefined, { phase: "Approved" }));
    const bob = { username: "bob", groups: ["approvers"] };
    const g = (d: D, user: AdmissionRequest["userInfo"], base = approved) =>
      guardWrite(update(base, withDecision(d, base), user), new Set(), now);
    // The approver themselves (a second entry for the same approver) and any other eligible one.
    expect(g(full(alice, "Revoke", { reason: "wrong cluster" }), alice)).toMatchObject({
      allowed: "needs-rbac",
      verb: "revoke",
    });
    expect(g(full(bob, "Revoke", { reason: "freeze" }), bob)).toMatchObject({
      allowed: "needs-rbac",
      verb: "revoke",
    });
    expect(g(full(bob, "Revoke"), bob)).toMatchObject(refused(/needs a reason/));
    const bot = { username: "system:serviceaccount:ai:bot", groups: ["approvers"] };
    expect(g(full(bot, "Revoke", { reason: "never mind" }), bot)).toMatchObject(
      refused(/requester cannot revoke/),
    );
    const mallory = { username: "mallory", groups: ["devs"] };
    expect(g(full(mallory, "Revoke", { reason: "x" }), mallory)).toMatchObject(refused(/not an approver/));
    const pending = ar();
    expect(g(full(bob, "Revoke", { reason: "x" }), bob, pending)).toMatchObject(
      refused(/Pending: there is no approval to revoke yet\. Deny it instead: kubectl deny/),
    );
    const consumed = withDecision(
      full(alice, "Approve"),
      ar(undefined, {
        phase: "Consumed",
        consumed: { admissionUID: "adm-1", time: kubeTime(at(5)) },
      }),
    );
    expect(g(full(bob, "Revoke", { reason: "x" }), bob, consumed)).toMatchObject(
      refused(/already used \(admitted at .*adm-1\); a used approval cannot be revoked/),
    );
    const revoked = withDecision(full(alice, "Revoke", { reason: "r" }), approved);
    expect(g(full(bob, "Revoke", { reason: "x" }), bob, revoked)).toMatchObject(
      refused(/already revoked by alice/),
    );
    // Nobody approves or denies a revoked request either.
    expect(g(full(bob, "Approve"), bob, revoked)).toMatchObject(refused(/already Revoked/));
    const expired = withDecision(
      full(alice, "Approve"),
      ar({ approval: { ...ar().spec.approval, expiresAt: at(5).toISOString() } }, { phase: "Approved" }),
    );
    expect(g(full(bob, "Revoke", { reason: "x" }), bob, expired)).toMatchObject(refused(/expired at/));
  });

  it("lets Countersign itself write, and nobody else create, delete or set status", () => {
    const base = update(ar(), ar(), alice);
    expect(guardWrite({ ...base, operation: "CREATE" }, new Set(["cs"]), now)).toMatchObject({
      allowed: false,
    });
    expect(
      guardWrite({ ...base, operation: "CREATE", userInfo: { username: "cs" } }, new Set(["cs"]), now),
    ).toEqual({ allowed: true });
    expect(guardWrite({ ...base, subResource: "status" }, new Set(), now)).toMatchObject(refused(/status/));
    expect(guardWrite({ ...base, operation: "DELETE" }, new Set(), now)).toMatchObject(
      refused(/audit trail/),
    );
    const audit = {
      ...base,
      resource: { ...base.resource, resource: "auditrecords" },
      operation: "DELETE" as const,
    };
    expect(guardWrite(audit, new Set(), now)).toMatchObject(refused(/AuditRecords/));
  });
});

describe("execution check (pure)", () => {
  it("judges deletes, creates and updates from the target as read after admission", () => {
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
    // An approved eviction or token request: nothing to read back, never "refused" (issue 10).
    const evict = ar({ action: { ...del.spec.action, operation: "CREATE", subResource: "eviction" } });
    expect(judgeExecution(evict, undefined)).toMatchObject({
      result: "Unknown",
      message: expect.stringMatching(/subresource/),
    });
  });
});
