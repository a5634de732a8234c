/**
 * Load shedding (issue 12, overload): the in-flight cap on gated reviews, and the handler
 * around it — past the cap a gated action is refused at once, fail closed, saying so; an action
 * no rule gates is still answered from memory; a slot comes back when the gate finishes or fails.
 */
import { describe, expect, it } from "vitest";
import { DecisionValue, handleAdmission } from "../../src/admission/handler.js";
import { InFlightLimit, overloadedMessage, SHED_REPORT_INTERVAL_MS } from "../../src/admission/load-shed.js";
import { componentLogger } from "../../src/logging/logger.js";
import { compilePolicy } from "../../src/policy/compile.js";
import { PolicySet } from "../../src/policy/policy-set.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";

describe("InFlightLimit", () => {
  it("gives out at most max slots, and one back per release", () => {
    const limit = new InFlightLimit(2);
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(false);
    expect(limit.inFlight).toBe(2);
    limit.release();
    expect(limit.inFlight).toBe(1);
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(false);
    limit.release();
    limit.release();
    expect(limit.inFlight).toBe(0);
  });

  it("keeps a quarter of the slots for other requesters: one agent's flood cannot take them all", () => {
    const limit = new InFlightLimit(8);
    expect(limit.share).toBe(6);
    for (let i = 0; i < 6; i++) expect(limit.tryAcquire("agent")).toBe(true);
    expect(limit.tryAcquire("agent")).toBe(false);
    expect(limit.tryAcquire("other")).toBe(true);
    expect(limit.tryAcquire("third")).toBe(true);
    expect(limit.tryAcquire("fourth")).toBe(false); // the replica's cap still holds
    limit.release("agent");
    expect(limit.tryAcquire("agent")).toBe(true);
    expect(() => limit.release("nobody")).toThrow(/without a matching tryAcquire/);
    expect(limit.inFlight).toBe(8);
  });

  it("refuses a release without an acquire and a limit below 1", () => {
    expect(() => new InFlightLimit(1).release()).toThrow(/without a matching tryAcquire/);
    expect(() => new InFlightLimit(0)).toThrow(/at least 1/);
    expect(() => new InFlightLimit(1.5)).toThrow(/whole number/);
  });

  it("reports sheds for a log line at most once per interval, with the count since the last", () => {
    const limit = new InFlightLimit(1);
    expect(limit.noteShed(1_000)).toBe(1);
    expect(limit.noteShed(1_001)).toBeUndefined();
    expect(limit.noteShed(1_000 + SHED_REPORT_INTERVAL_MS - 1)).toBeUndefined();
    expect(limit.noteShed(1_000 + SHED_REPORT_INTERVAL_MS)).toBe(3);
    expect(limit.noteShed(1_000 + SHED_REPORT_INTERVAL_MS + 1)).toBeUndefined();
  });

  it("tells the agent what happened and what to do", () => {
    expect(overloadedMessage(128)).toMatch(
      /^Countersign is overloaded: it is already working on 128 actions that need approval.*Nothing was changed, no ApprovalRequest was opened and no approval was used\. Retry in a few seconds/,
    );
    expect(overloadedMessage(128, 96)).toMatch(
      /^Countersign is overloaded: it is already working on 96 of your actions that need approval, the most one requester gets at once.*Nothing was changed/,
    );
  });
});

const compiled = (() => {
  const r = compilePolicy({
    apiVersion: "countersign.io/v1alpha1",
    kind: "ApprovalPolicy",
    metadata: { name: "prod-gate", generation: 1 },
    spec: {
      subjects: { serviceAccounts: [{ namespace: "agents" }] },
      match: [{ operations: ["CREATE"], apiGroups: [""], resources: ["configmaps"], namespaces: ["prod"] }],
      rules: [{ name: "prod", action: "RequireApproval", approval: { approvers: { groups: ["sre"] } } }],
    },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
})();

const review = (
  uid: string,
  namespace: string,
  username = "system:serviceaccount:agents:bot",
): AdmissionRequest =>
  ({
    uid,
    kind: { group: "", version: "v1", kind: "ConfigMap" },
    resource: { group: "", version: "v1", resource: "configmaps" },
    namespace,
    name: `cm-${uid}`,
    operation: "CREATE",
    userInfo: { username, groups: ["system:serviceaccounts"] },
    object: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `cm-${uid}`, namespace } },
  }) as never;

/** A gate whose every handle() waits until the test settles it. */
function heldGate() {
  const waiting: { uid: string; settle: (ok: boolean) => void }[] = [];
  return {
    waiting,
    gate: {
      transitionOf: () => ({ uid: "", before: null, after: {} }),
      handle: (req: AdmissionRequest) =>
        new Promise((resolve, reject) =>
          waiting.push({
            uid: req.uid,
            settle: (ok) =>
              ok
                ? resolve({ state: "pending", allowed: false, message: "pending approval" })
                : reject(new Error("API unreachable")),
          }),
        ),
    },
  };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 1));
  expect(check()).toBe(true);
};

describe("the admission handler at its in-flight cap", () => {
  const setup = (max: number) => {
    const held = heldGate();
    const deps = {
      policies: {
        isSynced: () => true,
        policySet: () => new PolicySet([compiled]),
        inputs: { serviceAccountLabels: () => ({}), namespaceObject: () => null },
      },
      gate: held.gate,
      rbac: undefined,
      logger: componentLogger("admission"),
      countersignUsers: new Set(["system:serviceaccount:countersign:countersign"]),
      inFlight: new InFlightLimit(max),
    };
    return {
      held,
      deps,
      inFlight: deps.inFlight,
      handle: (r: AdmissionRequest) => handleAdmission(r, deps as never),
    };
  };

  it("sheds the gated review past the cap at once, fail closed, and still answers ungated ones", async () => {
    const { held, inFlight, handle } = setup(2);
    const first = handle(review("g1", "prod"));
    const second = handle(review("g2", "prod"));
    await until(() => held.waiting.length === 2);
    expect(inFlight.inFlight).toBe(2);

    const shed = await handle(review("g3", "prod"));
    expect(shed.response.uid).toBe("g3");
    expect(shed.response.allowed).toBe(false);
    expect(shed.response.status?.message).toBe(overloadedMessage(2));
    expect(shed.response.auditAnnotations).toMatchObject({
      decision: DecisionValue.Overloaded,
      policy: "prod-gate",
      rule: "prod",
    });
    expect(held.waiting.map((w) => w.uid)).toEqual(["g1", "g2"]); // the gate never saw g3

    // No rule gates a ConfigMap in dev: answered from memory, never shed.
    const ungated = await handle(review("a1", "dev"));
    expect(ungated.response.allowed).toBe(true);

    held.waiting[0]!.settle(true);
    expect((await first).response.status?.message).toBe("pending approval");
    expect(inFlight.inFlight).toBe(1);
    const next = handle(review("g4", "prod"));
    await until(() => held.waiting.length === 3);
    expect(held.waiting[2]!.uid).toBe("g4");

    // A gate that fails gives its slot back too (and the review fails closed as before).
    held.waiting[1]!.settle(false);
    expect((await second).response.allowed).toBe(false);
    held.waiting[2]!.settle(true);
    await next;
    expect(inFlight.inFlight).toBe(0);
  });

  it("one agent flooding gated actions fills only its share: another agent's gated action is still looked at", async () => {
    const { held, inFlight, handle } = setup(4);
    const flood = ["f1", "f2", "f3", "f4", "f5"].map((uid) => handle(review(uid, "prod")));
    await until(() => held.waiting.length === 3);
    // The flood's fourth and fifth are shed, fail closed, naming the requester's share.
    const shed = await Promise.race([flood[3]!, flood[4]!]);
    expect(shed.response.allowed).toBe(false);
    expect(shed.response.status?.message).toBe(overloadedMessage(4, 3));
    expect(inFlight.inFlight).toBe(3);
    // Another agent's gated action (say, the retry of its approved change) reaches the gate.
    const other = handle(review("o1", "prod", "system:serviceaccount:agents:other"));
    await until(() => held.waiting.length === 4);
    expect(held.waiting.map((w) => w.uid)).toEqual(["f1", "f2", "f3", "o1"]);
    for (const w of held.waiting) w.settle(true);
    await Promise.all([...flood, other]);
    expect(inFlight.inFlight).toBe(0);
  });
});
