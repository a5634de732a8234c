import { describe, expect, it } from "vitest";
import { type CompiledPolicy, compilePolicy } from "../../src/policy/compile.js";
import { PolicySet } from "../../src/policy/policy-set.js";
import { coverageLostBy, isServiceAccountWrite } from "../../src/policy/subject-relabel.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalPolicySpec } from "../../src/resources/approval-policy.js";
import { approvalPolicy } from "../fixtures/approval-policy.js";

const GATED = "agents.example.com/gated";

function compiled(name: string, subjects: ApprovalPolicySpec["subjects"]): CompiledPolicy {
  const r = compilePolicy(approvalPolicy(name, { subjects, rules: [{ name: "all", action: "Deny" }] }, 1));
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const bySelector = compiled("by-selector", { serviceAccountSelector: { matchLabels: { [GATED]: "true" } } });
const byTwoLabels = compiled("by-two-labels", {
  serviceAccountSelector: { matchLabels: { [GATED]: "true", team: "a" } },
});
const byName = compiled("by-name", { serviceAccounts: [{ namespace: "agents", name: "bot" }] });
const bySelectorAndName = compiled("by-selector-and-name", {
  serviceAccountSelector: { matchLabels: { [GATED]: "true" } },
  serviceAccounts: [{ namespace: "agents", name: "bot" }],
});
const byGroup = compiled("by-group", {
  groups: ["system:serviceaccounts:agents"],
  serviceAccountSelector: { matchLabels: { [GATED]: "true" } },
});

const sa = (labels?: Record<string, string>) => ({
  apiVersion: "v1",
  kind: "ServiceAccount",
  metadata: { name: "bot", namespace: "agents", ...(labels ? { labels } : {}) },
});

const write = (
  operation: AdmissionRequest["operation"],
  oldObject: unknown,
  object: unknown,
  over: Partial<AdmissionRequest> = {},
): AdmissionRequest => ({
  uid: "u1",
  kind: { group: "", version: "v1", kind: "ServiceAccount" },
  resource: { group: "", version: "v1", resource: "serviceaccounts" },
  namespace: "agents",
  name: "bot",
  operation,
  userInfo: { username: "system:serviceaccount:agents:bot" },
  oldObject,
  object,
  ...over,
});

describe("coverageLostBy (ServiceAccount label changes that leave a policy)", () => {
  it("removing the selected label loses the selector policy", () => {
    const req = write("UPDATE", sa({ [GATED]: "true", x: "1" }), sa({ x: "1" }));
    expect(coverageLostBy(req, [bySelector])).toEqual(["by-selector"]);
  });

  it("changing the selected label's value loses it too", () => {
    const req = write("UPDATE", sa({ [GATED]: "true" }), sa({ [GATED]: "false" }));
    expect(coverageLostBy(req, [bySelector])).toEqual(["by-selector"]);
  });

  it("removing all labels (labels: null) loses every selector policy that matched, and only those", () => {
    const req = write("UPDATE", sa({ [GATED]: "true", team: "a" }), sa());
    expect(coverageLostBy(req, [byTwoLabels, bySelector, byName])).toEqual(["by-two-labels", "by-selector"]);
  });

  it("removing one of two selected labels loses only the policy that needs it", () => {
    const req = write("UPDATE", sa({ [GATED]: "true", team: "a" }), sa({ [GATED]: "true" }));
    expect(coverageLostBy(req, [byTwoLabels, bySelector])).toEqual(["by-two-labels"]);
  });

  it("other label changes, adding the label, or a policy that did not match before lose nothing", () => {
    expect(
      coverageLostBy(write("UPDATE", sa({ [GATED]: "true" }), sa({ [GATED]: "true", y: "2" })), [bySelector]),
    ).toEqual([]);
    expect(coverageLostBy(write("UPDATE", sa(), sa({ [GATED]: "true" })), [bySelector])).toEqual([]);
    expect(coverageLostBy(write("UPDATE", sa({ team: "b" }), sa()), [byTwoLabels])).toEqual([]);
  });

  it("a policy that also names the account (serviceAccounts or a group) keeps covering it: nothing lost", () => {
    const req = write("UPDATE", sa({ [GATED]: "true" }), sa());
    expect(coverageLostBy(req, [bySelectorAndName, byGroup, byName])).toEqual([]);
  });

  it("DELETE of a selected account loses the selector policies (it could be re-created without the label)", () => {
    const req = write("DELETE", sa({ [GATED]: "true" }), undefined);
    expect(coverageLostBy(req, [bySelector, byName, bySelectorAndName])).toEqual(["by-selector"]);
    expect(coverageLostBy(write("DELETE", sa({ team: "x" }), undefined), [bySelector])).toEqual([]);
  });

  it("works through a PolicySet (the admission path) and for another account than the requester", () => {
    const req = write("UPDATE", sa({ [GATED]: "true" }), sa(), {
      userInfo: { username: "system:serviceaccount:other:agent" },
    });
    expect(coverageLostBy(req, new PolicySet([byName, bySelector]))).toEqual(["by-selector"]);
  });

  it("ignores CREATE, subresources (token) and other resources", () => {
    expect(coverageLostBy(write("CREATE", undefined, sa()), [bySelector])).toEqual([]);
    const token = write("UPDATE", sa({ [GATED]: "true" }), sa(), { subResource: "token" });
    expect(isServiceAccountWrite(token)).toBe(false);
    expect(coverageLostBy(token, [bySelector])).toEqual([]);
    const cm = write("UPDATE", sa({ [GATED]: "true" }), sa(), {
      resource: { group: "", version: "v1", resource: "configmaps" },
    });
    expect(coverageLostBy(cm, [bySelector])).toEqual([]);
  });

  it("tolerates malformed labels without throwing (non-string values are not labels)", () => {
    const req = write(
      "UPDATE",
      { metadata: { labels: { [GATED]: "true" } } },
      { metadata: { labels: { [GATED]: 1 } } },
    );
    expect(coverageLostBy(req, [bySelector])).toEqual(["by-selector"]);
    expect(coverageLostBy(write("UPDATE", "junk", null), [bySelector])).toEqual([]);
  });
});
