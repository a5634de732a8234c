/** Issue 10's pure parts: the RBAC matcher, the bypass report, the flood cap, policy-change records, doctor. */
import { describe, expect, it } from "vitest";
import { cappedMessage, openRequests } from "../../src/approvals/open-requests.js";
import { policyChange } from "../../src/audit/config-audit.js";
import { BYPASS_CHECKS, bypassCondition, concreteSubjects, installChecks } from "../../src/bypass/checks.js";
import {
  boundNamespaces,
  fixFor,
  grantsFor,
  type RbacSnapshot,
  ruleAllows,
  serviceAccountWho,
} from "../../src/bypass/rbac-match.js";
import { BurstTracker } from "../../src/notify/bursts.js";
import { summaryFor } from "../../src/notify/messages.js";
import { formatDoctor, whoOf } from "../../src/plugin/doctor.js";
import { compilePolicy } from "../../src/policy/compile.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { approvalPolicy, requireApproval } from "../fixtures/approval-policy.js";

const bot = serviceAccountWho("agents", "bot");
const rbac: RbacSnapshot = {
  roles: [
    {
      metadata: { name: "tokens", namespace: "prod" },
      rules: [{ apiGroups: [""], resources: ["serviceaccounts/token"], verbs: ["create"] }],
    },
  ],
  clusterRoles: [
    {
      metadata: { name: "impersonator" },
      rules: [{ apiGroups: [""], resources: ["users"], verbs: ["impersonate"] }],
    },
    { metadata: { name: "admin-ish" }, rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] },
  ],
  roleBindings: [
    {
      metadata: { name: "bot-tokens", namespace: "prod" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "tokens" },
      subjects: [{ kind: "ServiceAccount", name: "bot", namespace: "agents" }],
    },
  ],
  clusterRoleBindings: [
    {
      metadata: { name: "bot-impersonates" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "impersonator" },
      subjects: [{ kind: "Group", name: "system:serviceaccounts:agents" }],
    },
    {
      metadata: { name: "someone-else" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "admin-ish" },
      subjects: [{ kind: "User", name: "alice" }],
    },
  ],
};

describe("RBAC matcher", () => {
  it("matches verbs, groups, resources, subresources and resourceNames like the RBAC authorizer", () => {
    const rule = { apiGroups: [""], resources: ["pods", "*/scale"], verbs: ["create"] };
    expect(ruleAllows(rule, { verb: "create", group: "", resource: "pods" })).toBe(true);
    expect(ruleAllows(rule, { verb: "create", group: "", resource: "pods", subresource: "exec" })).toBe(
      false,
    );
    expect(
      ruleAllows(rule, { verb: "create", group: "", resource: "deployments", subresource: "scale" }),
    ).toBe(true);
    expect(ruleAllows(rule, { verb: "delete", group: "", resource: "pods" })).toBe(false);
    expect(ruleAllows(rule, { verb: "create", group: "apps", resource: "pods" })).toBe(false);
    const named = { apiGroups: [""], resources: ["secrets"], verbs: ["get"], resourceNames: ["a"] };
    expect(ruleAllows(named, { verb: "get", group: "", resource: "secrets" })).toBe(false);
    expect(ruleAllows(named, { verb: "get", group: "", resource: "secrets", name: "a" })).toBe(true);
  });

  it("names the binding that grants a right, through groups and namespaces, and the fix", () => {
    const imp = grantsFor(bot, { verb: "impersonate", group: "", resource: "users" }, rbac);
    expect(imp).toEqual([
      {
        binding: { kind: "ClusterRoleBinding", name: "bot-impersonates" },
        role: { kind: "ClusterRole", name: "impersonator" },
      },
    ]);
    const a = {
      verb: "create",
      group: "",
      resource: "serviceaccounts",
      subresource: "token",
      namespace: "prod",
    };
    const tok = grantsFor(bot, a, rbac);
    expect(tok.map((g) => g.binding.name)).toEqual(["bot-tokens"]);
    expect(fixFor(tok[0]!, a)).toMatch(/^kubectl delete rolebinding bot-tokens -n prod/);
    expect(grantsFor(bot, { ...a, namespace: "dev" }, rbac)).toEqual([]);
    expect(boundNamespaces(bot, rbac)).toEqual(["prod"]);
    expect(grantsFor(bot, { verb: "delete", group: "", resource: "nodes" }, rbac)).toEqual([]);
  });
});

describe("bypass report", () => {
  it("expands a policy's subjects to the service accounts that exist, and bounds the condition", () => {
    const { subjects } = concreteSubjects(
      {
        users: ["u"],
        serviceAccounts: [{ namespace: "agents" }],
        serviceAccountSelector: { matchLabels: { ai: "yes" } },
      },
      [
        { metadata: { namespace: "agents", name: "bot" } },
        { metadata: { namespace: "agents", name: "default" } },
        { metadata: { namespace: "other", name: "labelled", labels: { ai: "yes" } } },
        { metadata: { namespace: "other", name: "plain" } },
      ],
    );
    expect(subjects.map((s) => s.display)).toEqual([
      "ServiceAccount agents/bot",
      "ServiceAccount agents/default",
      "ServiceAccount other/labelled",
      "user u",
    ]);
    const risk = {
      subject: "ServiceAccount agents/bot",
      check: "impersonate-users",
      verb: "impersonate",
      apiGroup: "",
      resource: "users",
      description: "impersonate users",
    };
    const c = bypassCondition(
      Array.from({ length: 8 }, () => risk),
      3,
      false,
    );
    expect(c.status).toBe("True");
    expect(c.message).toMatch(
      /^8 way\(s\) around the gate: ServiceAccount agents\/bot can impersonate users cluster-wide/,
    );
    expect(c.message).toMatch(/and 3 more/);
    expect(bypassCondition([], 3, false).status).toBe("False");
  });

  it("doctor prints each risk with its binding and fix, and counts them", () => {
    expect(whoOf("ServiceAccount agents/bot")).toEqual(bot);
    const { risks, report } = formatDoctor(
      [
        {
          metadata: { name: "p" },
          status: {
            conditions: [{ type: "BypassRisk", status: "True" }],
            bypassRisks: [
              { subject: "ServiceAccount agents/bot", verb: "impersonate", apiGroup: "", resource: "users" },
            ],
          },
        },
        { metadata: { name: "q" }, status: { conditions: [{ type: "BypassRisk", status: "False" }] } },
      ],
      rbac,
    );
    expect(risks).toBe(1);
    expect(report).toContain("granted by: ClusterRoleBinding bot-impersonates (ClusterRole impersonator)");
    expect(report).toContain("fix: kubectl delete clusterrolebinding bot-impersonates");
    expect(report).toContain("ApprovalPolicy q: no way around the gate found");
  });
});

describe("bypass checks (red team 9, findings 7 and 16)", () => {
  it("report writes to Namespaces, and ConfigMaps, Secrets and pods/exec in the install namespace", () => {
    const ids = BYPASS_CHECKS.map((c) => c.id);
    for (const id of ["delete-namespaces", "update-namespaces", "patch-namespaces"])
      expect(ids).toContain(id);
    const install = installChecks("countersign");
    const byId = Object.fromEntries(install.map((c) => [c.id, c]));
    expect(byId["update-countersign-configmaps"]).toMatchObject({
      attributes: { verb: "update", group: "", resource: "configmaps" },
      fixedNamespace: "countersign",
    });
    expect(byId["patch-countersign-configmaps"]?.attributes.verb).toBe("patch");
    expect(byId["get-countersign-secrets"]?.attributes).toEqual({
      verb: "get",
      group: "",
      resource: "secrets",
    });
    expect(byId["exec-countersign-pods"]?.attributes).toEqual({
      verb: "create",
      group: "",
      resource: "pods",
      subresource: "exec",
    });
    // A Role in the install namespace granting these is found by the matcher the scanner uses.
    const snapshot: RbacSnapshot = {
      roles: [
        {
          metadata: { name: "ops", namespace: "countersign" },
          rules: [
            { apiGroups: [""], resources: ["configmaps"], verbs: ["update"] },
            { apiGroups: [""], resources: ["pods/exec"], verbs: ["create"] },
          ],
        },
      ],
      clusterRoles: [],
      roleBindings: [
        {
          metadata: { name: "bot-ops", namespace: "countersign" },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "ops" },
          subjects: [{ kind: "ServiceAccount", name: "bot", namespace: "agents" }],
        },
      ],
      clusterRoleBindings: [],
    };
    for (const id of ["update-countersign-configmaps", "exec-countersign-pods"]) {
      const c = byId[id]!;
      expect(grantsFor(bot, { ...c.attributes, namespace: "countersign" }, snapshot), id).toHaveLength(1);
    }
    const secrets = byId["get-countersign-secrets"]!;
    expect(grantsFor(bot, { ...secrets.attributes, namespace: "countersign" }, snapshot)).toEqual([]);
  });
});

describe("flood cap", () => {
  const ar = (name: string, phase: string, expiresAt: string) =>
    ({
      metadata: { name, namespace: "prod" },
      spec: { requester: { username: "bot" }, approval: { expiresAt } },
      status: { phase },
    }) as unknown as ApprovalRequest;
  const now = new Date("2030-01-01T00:00:00Z");

  it("counts Pending and unused Approved requests that have not expired, oldest first", () => {
    const open = openRequests(
      [
        ar("b", "Pending", "2030-01-01T02:00:00Z"),
        ar("a", "Approved", "2030-01-01T01:00:00Z"),
        ar("c", "Consumed", "2030-01-01T01:00:00Z"),
        ar("d", "Denied", "2030-01-01T01:00:00Z"),
        ar("e", "Pending", "2029-12-31T23:00:00Z"),
      ],
      now,
    );
    expect(open.map((x) => x.metadata.name)).toEqual(["a", "b"]);
    const msg = cappedMessage({ username: "bot", namespace: "prod", open, limit: 2, policy: "p", rule: "r" });
    expect(msg).toMatch(/bot already has 2 open ApprovalRequests in namespace prod \(the limit is 2/);
    expect(msg).toContain("a, b");
    expect(msg).toMatch(/Nothing was created/);
  });

  it("validates maxOpenRequests and defaults it to 10", () => {
    const policy = (max?: number) =>
      approvalPolicy("p", {
        subjects: { users: ["u"] },
        rules: [
          requireApproval("r", { users: ["a"], ...(max !== undefined ? { maxOpenRequests: max } : {}) }),
        ],
      });
    const ok = compilePolicy(policy());
    expect(ok.ok && ok.policy.rules[0]!.approval!.maxOpenRequests).toBe(10);
    const bad = compilePolicy(policy(0));
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.errors[0]!.path).toBe("spec.rules[0].approval.maxOpenRequests");
  });
});

describe("policy change records", () => {
  const req = (
    operation: AdmissionRequest["operation"],
    oldSpec?: unknown,
    newSpec?: unknown,
  ): AdmissionRequest => ({
    uid: "0f0e-1",
    kind: { group: "countersign.io", version: "v1alpha1", kind: "ApprovalPolicy" },
    resource: { group: "countersign.io", version: "v1alpha1", resource: "approvalpolicies" },
    name: "p",
    operation,
    userInfo: { username: "admin", groups: ["system:masters"] },
    ...(oldSpec ? { oldObject: { metadata: { name: "p", uid: "u1", generation: 2 }, spec: oldSpec } } : {}),
    ...(newSpec ? { object: { metadata: { name: "p" }, spec: newSpec } } : {}),
  });

  it("records creates, spec changes and deletes with the API server's user; a no-op update is not a change", () => {
    const upd = policyChange(req("UPDATE", { a: 1 }, { a: 2 }), new Date("2030-01-01T00:00:00Z"))!;
    expect(upd.content.event).toBe("PolicyUpdated");
    expect(upd.content.actor).toMatchObject({ username: "admin", via: "admission" });
    expect(upd.content.reason).toMatch(/changed the spec of ApprovalPolicy p \(generation 2/);
    expect(policyChange(req("UPDATE", { a: 1 }, { a: 1 }), new Date())).toBeUndefined();
    const del1 = policyChange(req("DELETE", { a: 1 }), new Date())!;
    const del2 = policyChange({ ...req("DELETE", { a: 1 }), uid: "other" }, new Date())!;
    expect(del1.content.event).toBe("PolicyDeleted");
    expect(del1.name).toBe(del2.name); // a re-validated delete is one record
    expect(del1.labels["countersign.io/event"]).toBe("PolicyDeleted");
  });
});

describe("notification bursts", () => {
  it("announces the first request of a window alone, holds the rest for one summary per window", () => {
    const t = new BurstTracker(30_000);
    expect(t.place("k", "ns/a", 0)).toEqual({ kind: "send", flushAt: 30_000 });
    expect(t.place("k", "ns/b", 1000)).toEqual({ kind: "batch" });
    expect(t.place("k", "ns/c", 2000)).toEqual({ kind: "batch" });
    expect(t.place("other", "ns/x", 2000).kind).toBe("send");
    expect(t.flush("k", 30_000)).toEqual({ members: ["ns/b", "ns/c"], nextFlushAt: 60_000 });
    expect(t.place("k", "ns/d", 31_000)).toEqual({ kind: "batch" }); // the flood goes on: next summary
    expect(t.flush("k", 60_000).members).toEqual(["ns/d"]);
    expect(t.flush("k", 90_000)).toEqual({ members: [] });
    expect(t.place("k", "ns/e", 100_000).kind).toBe("send"); // quiet again: announced alone
    expect(new BurstTracker(0).place("k", "ns/a", 0).kind).toBe("send");
    expect(new BurstTracker(0).place("k", "ns/b", 1).kind).toBe("send");
  });

  it("summarizes a burst in one message per route type", () => {
    const ar = (name: string) =>
      ({
        metadata: { name, namespace: "prod", uid: name },
        spec: {
          requester: { username: "bot" },
          action: { summary: `DELETE configmaps prod/${name}` },
          policy: { name: "p", rule: "r" },
          approval: { expiresAt: "2030-01-01T00:00:00Z" },
        },
      }) as unknown as ApprovalRequest;
    const reqs = Array.from({ length: 12 }, (_, i) => ar(`r${i}`));
    const hook = summaryFor({ name: "h", type: "webhook", url: "https://x" }, reqs) as { count: number };
    expect(hook.count).toBe(12);
    const slack = JSON.stringify(summaryFor({ name: "s", type: "slack", url: "https://x" }, reqs));
    expect(slack).toContain("12 more approval requests from bot in prod");
    expect(slack).toContain("kubectl approve r0 -n prod");
    expect(slack).toContain("and 2 more");
    expect(slack).not.toContain("r11");
  });
});
