import { describe, expect, it } from "vitest";
import {
  actionDiff,
  actionIdentity,
  agentContext,
  fingerprintOf,
  redactedObject,
} from "../../src/approvals/fingerprint.js";
import { effectivePhase, usableApproval } from "../../src/approvals/lifecycle.js";
import { approvalRequestName } from "../../src/approvals/request.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { canonicalJson } from "../../src/resources/canonical-json.js";
import { approvalRequest } from "../fixtures/approval-request.js";

const base = (over: Partial<AdmissionRequest> = {}): AdmissionRequest => ({
  uid: "u",
  kind: { group: "apps", version: "v1", kind: "Deployment" },
  resource: { group: "apps", version: "v1", resource: "deployments" },
  namespace: "prod",
  name: "api",
  operation: "UPDATE",
  userInfo: { username: "system:serviceaccount:ai-agents:ops-bot" },
  object: {
    metadata: {
      name: "api",
      resourceVersion: "5",
      annotations: { "countersign.io/reason": "scale for sale" },
    },
    spec: { replicas: 5 },
  },
  oldObject: { metadata: { name: "api", resourceVersion: "4" }, spec: { replicas: 3 } },
  ...over,
});

describe("fingerprint", () => {
  it("ignores volatile fields, status the write leaves unchanged and the agent's own annotations, but not content", () => {
    const a = fingerprintOf(actionIdentity(base()));
    // Issue 9 item 2: status is bound when the write changes it, so here old and new carry the
    // same status (as the API server makes them for a main-resource write of a built-in kind).
    const volatile = base({
      oldObject: {
        metadata: { name: "api", resourceVersion: "3" },
        spec: { replicas: 3 },
        status: { ready: 1 },
      },
      object: {
        metadata: {
          name: "api",
          resourceVersion: "9",
          uid: "x",
          managedFields: [{}],
          annotations: { "countersign.io/reason": "other words" },
        },
        spec: { replicas: 5 },
        status: { ready: 1 },
      },
    });
    expect(fingerprintOf(actionIdentity(volatile))).toBe(a);
    expect(
      fingerprintOf(actionIdentity(base({ object: { metadata: { name: "api" }, spec: { replicas: 6 } } }))),
    ).not.toBe(a);
    expect(fingerprintOf(actionIdentity(base({ name: "web" })))).not.toBe(a);
    expect(fingerprintOf(actionIdentity(base({ userInfo: { username: "someone-else" } })))).not.toBe(a);
    expect(fingerprintOf(actionIdentity(base({ operation: "CREATE" })))).not.toBe(a);
  });

  it("binds a DELETE to the exact object (uid), so a same-named replacement is a different action", () => {
    const del = (uid: string) =>
      base({ operation: "DELETE", object: undefined, oldObject: { metadata: { name: "api", uid } } });
    expect(fingerprintOf(actionIdentity(del("1")))).not.toBe(fingerprintOf(actionIdentity(del("2"))));
  });

  it("is key-order independent", () => {
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe('{"a":[{"c":2,"d":1}],"b":1}');
  });
});

describe("summary, diff and agent context", () => {
  it("redacts Secret values in diffs and drops last-applied-configuration", () => {
    const secret = base({
      kind: { group: "", version: "v1", kind: "Secret" },
      resource: { group: "", version: "v1", resource: "secrets" },
      object: {
        metadata: {
          name: "s",
          annotations: {
            "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"p":"aHVudGVyMg=="}}',
          },
        },
        data: { p: "aHVudGVyMw==" },
      },
      oldObject: { metadata: { name: "s" }, data: { p: "aHVudGVyMg==" } },
    });
    const diff = actionDiff(secret) ?? "";
    expect(diff).not.toContain("aHVudGVy");
    expect(JSON.stringify(redactedObject(secret.object, true))).not.toContain("aHVudGVy");
  });

  it("shows field-level changes and reads the agent's reason", () => {
    expect(actionDiff(base())).toBe("spec.replicas: 3 → 5");
    expect(agentContext(base())).toEqual({ reason: "scale for sale" });
  });
});

describe("ApprovalRequest names and state", () => {
  it("names requests deterministically, readable and at most 63 characters", () => {
    const action = actionIdentity(base({ name: "a".repeat(80) }));
    const fp = fingerprintOf(action);
    const n = approvalRequestName(action, fp, 0);
    expect(n).toBe(approvalRequestName(action, fp, 0));
    expect(n.length).toBeLessThanOrEqual(63);
    expect(n).toMatch(/^update-deployments-a+-[0-9a-f]{12}$/);
    expect(approvalRequestName(action, fp, 1)).toMatch(/-2$/);
  });

  const ar = (
    status: ApprovalRequest["status"],
    decisions: ApprovalRequest["spec"]["decisions"],
    required = 1,
  ): ApprovalRequest => {
    const base = approvalRequest();
    return approvalRequest(
      {
        fingerprint: "f".repeat(64),
        requester: { username: "bot" },
        approval: { ...base.spec.approval, approvers: { groups: ["g"] }, requiredApprovals: required },
        decisions,
      },
      status,
    );
  };
  const now = new Date("2026-01-01T00:30:00Z");
  const fp = "f".repeat(64);

  it("uses only approved, unexpired, unconsumed requests with enough distinct non-requester approvals", () => {
    expect(
      usableApproval(ar({ phase: "Approved" }, [{ approver: "alice", decision: "Approve" }]), fp, now).usable,
    ).toBe(true);
    expect(
      usableApproval(
        ar({ phase: "Approved" }, [{ approver: "alice", decision: "Approve" }]),
        "0".repeat(64),
        now,
      ),
    ).toMatchObject({ why: expect.stringMatching(/different action/) });
    expect(usableApproval(ar({ phase: "Pending" }, []), fp, now).usable).toBe(false);
    expect(
      usableApproval(ar({ phase: "Approved" }, [{ approver: "bot", decision: "Approve" }]), fp, now),
    ).toMatchObject({ why: expect.stringMatching(/0 of 1/) });
    expect(
      usableApproval(ar({ phase: "Approved" }, [{ approver: "a", decision: "Approve" }], 2), fp, now),
    ).toMatchObject({ why: expect.stringMatching(/1 of 2/) });
    expect(
      usableApproval(
        ar({ phase: "Approved" }, [
          { approver: "a", decision: "Approve" },
          { approver: "b", decision: "Deny" },
        ]),
        fp,
        now,
      ),
    ).toMatchObject({ why: expect.stringMatching(/denied by b/) });
    expect(
      usableApproval(
        ar({ phase: "Approved", consumed: { admissionUID: "u", time: "t" } }, [
          { approver: "a", decision: "Approve" },
        ]),
        fp,
        now,
      ).usable,
    ).toBe(false);
  });

  it("an approval counts only under the policy and rule that decide the action now (red team 9, finding 10)", () => {
    const approved = ar({ phase: "Approved" }, [{ approver: "alice", decision: "Approve" }]);
    expect(usableApproval(approved, fp, now, { policy: "p", rule: "r" }).usable).toBe(true);
    expect(usableApproval(approved, fp, now, { policy: "strict", rule: "r" })).toMatchObject({
      why: expect.stringMatching(
        /approved under ApprovalPolicy p rule r, but ApprovalPolicy strict rule r decides/,
      ),
    });
    expect(usableApproval(approved, fp, now, { policy: "p", rule: "two-person" }).usable).toBe(false);
    // The fingerprint (and so the request's name) differs per policy and rule: a new request.
    const action = actionIdentity(base());
    const lenient = fingerprintOf(action, { policy: "p", rule: "r" });
    expect(fingerprintOf(action, { policy: "p", rule: "r" })).toBe(lenient);
    expect(fingerprintOf(action, { policy: "strict", rule: "r" })).not.toBe(lenient);
    expect(fingerprintOf(action, { policy: "p", rule: "two-person" })).not.toBe(lenient);
  });

  it("refuses a revoked approval as soon as the Revoke is in spec, before the controller writes Revoked", () => {
    const revoked = ar({ phase: "Approved" }, [
      { approver: "alice", decision: "Approve" },
      { approver: "alice", decision: "Revoke", reason: "wrong cluster" },
    ]);
    expect(usableApproval(revoked, fp, now)).toEqual({
      usable: false,
      why: "its approval was revoked by alice: wrong cluster",
    });
    expect(effectivePhase(revoked, now)).toBe("Revoked");
    expect(effectivePhase(revoked, new Date("2027-01-01T00:00:00Z"))).toBe("Revoked");
    // A Revoke never counts as an approval.
    expect(
      usableApproval(
        ar({ phase: "Approved" }, [
          { approver: "a", decision: "Approve" },
          { approver: "b", decision: "Revoke", reason: "r" },
        ]),
        fp,
        now,
      ),
    ).toMatchObject({ usable: false, why: expect.stringMatching(/revoked by b/) });
  });

  it("treats a request past its expiry as Expired before the controller says so", () => {
    expect(effectivePhase(ar({ phase: "Approved" }, []), new Date("2026-01-01T02:00:00Z"))).toBe("Expired");
    expect(effectivePhase(ar(undefined, []), now)).toBe("Pending");
    expect(effectivePhase(ar({ phase: "Consumed" }, []), new Date("2027-01-01T00:00:00Z"))).toBe("Consumed");
  });
});
