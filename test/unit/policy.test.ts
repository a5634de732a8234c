import { describe, expect, it } from "vitest";
import { compileExpression, EvaluationError, safeDetail, toCel } from "../../src/policy/cel.js";
import { type CompiledPolicy, compilePolicy, parseDurationSeconds } from "../../src/policy/compile.js";
import { decide, resourcePatternMatches } from "../../src/policy/evaluate.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalPolicy, ApprovalPolicySpec } from "../../src/resources/approval-policy.js";
import { agentsIn, approvalPolicy } from "../fixtures/approval-policy.js";

const policy = (name: string, spec: Partial<ApprovalPolicySpec>): ApprovalPolicy =>
  approvalPolicy(name, { subjects: agentsIn("ai-agents"), rules: [], ...spec }, 1);

function compiled(p: ApprovalPolicy): CompiledPolicy {
  const r = compilePolicy(p);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const request = (over: Partial<AdmissionRequest> = {}): AdmissionRequest => ({
  uid: "u1",
  kind: { group: "", version: "v1", kind: "Secret" },
  resource: { group: "", version: "v1", resource: "secrets" },
  namespace: "prod",
  name: "db-creds",
  operation: "DELETE",
  userInfo: { username: "system:serviceaccount:ai-agents:ops-bot", groups: ["system:serviceaccounts"] },
  ...over,
});

const approval = { approvers: { groups: ["approvers"] } };

describe("policy compilation (apply-time checks)", () => {
  it("names the field of a syntax error, an unknown variable, a typo'd request field and an unknown function", () => {
    const r = compilePolicy(
      policy("p", {
        matchConditions: [{ name: "a", expression: "request.operation ==" }],
        rules: [
          { name: "r1", action: "Deny", condition: "objekt.x == 1" },
          { name: "r2", action: "Deny", condition: "request.operaton == 'DELETE'" },
          { name: "r3", action: "Deny", condition: "frobnicate(request.name)" },
          { name: "r4", action: "Deny", condition: "variables.missing" },
        ],
      }),
    );
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors;
    expect(errors.map((e) => e.path)).toEqual([
      "spec.matchConditions[0].expression",
      "spec.rules[0].condition",
      "spec.rules[1].condition",
      "spec.rules[2].condition",
      "spec.rules[3].condition",
    ]);
    expect(errors[1]!.message).toMatch(/undeclared reference to 'objekt'/);
    expect(errors[2]!.message).toMatch(/request has no field 'operaton'/);
    expect(errors[3]!.message).toMatch(/unknown function 'frobnicate'/);
    expect(errors[4]!.message).toMatch(/variables.missing is not declared/);
  });

  it("limits runaway expressions: AST size and comprehension nesting", () => {
    const big = Array.from({ length: 300 }, (_, i) => `request.name == 'n${i}'`).join(" || ");
    expect(compileExpression(big, "x", new Set())).toMatchObject({
      message: expect.stringMatching(/too large/),
    });
    const nested = "object.a.all(x, object.b.all(y, object.c.all(z, x == y && y == z)))";
    expect(compileExpression(nested, "x", new Set())).toMatchObject({
      message: expect.stringMatching(/nested 3 deep/),
    });
  });

  it("rejects a bad TTL and a RequireApproval rule that can never gather its approvals", () => {
    const r = compilePolicy(
      policy("p", {
        rules: [
          { name: "a", action: "RequireApproval", approval: { ...approval, ttl: "1 day" } },
          {
            name: "b",
            action: "RequireApproval",
            approval: { approvers: { users: ["alice"] }, requiredApprovals: 2 },
          },
        ],
      }),
    );
    expect(r.ok ? [] : r.errors.map((e) => e.path)).toEqual([
      "spec.rules[0].approval.ttl",
      "spec.rules[1].approval.requiredApprovals",
    ]);
    expect(parseDurationSeconds("1h30m")).toBe(5400);
  });
});

describe("CEL traps", () => {
  const run = (expr: string, vars: Record<string, unknown>) => {
    const c = compileExpression(expr, "t", new Set());
    if ("message" in c) throw new Error(c.message);
    return c.evaluate(vars);
  };

  it("has string methods", () => {
    expect(
      run(`request.name.startsWith("db-") && request.name.endsWith("creds")`, {
        request: { name: "db-creds" },
      }),
    ).toBe(true);
  });

  it("runs matches() with RE2 semantics: the classic ReDoS input finishes in linear time", () => {
    const t0 = performance.now();
    expect(run(`request.name.matches('^(a+)+$')`, { request: { name: `${"a".repeat(30)}!` } })).toBe(false);
    expect(run(`request.name.matches('^(a+)+$')`, { request: { name: `${"a".repeat(100_000)}!` } })).toBe(
      false,
    );
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it("treats integral JSON numbers as ints", () => {
    expect(run("object.spec.replicas + 1 == 4", { object: toCel({ spec: { replicas: 3 } }) })).toBe(true);
    expect(run("object.spec.ratio > 0.5", { object: toCel({ spec: { ratio: 0.75 } }) })).toBe(true);
  });

  it("never puts object data into an error message", () => {
    const secret = { data: { token: "c2VjcmV0LXZhbHVl" } };
    const out = run("object.data.password == 'x'", { object: secret });
    expect(out).toBeInstanceOf(EvaluationError);
    expect(String((out as Error).message)).not.toContain("c2VjcmV0");
    const conv = run("int(object.data.token) > 0", { object: secret });
    expect(String((conv as Error).message)).not.toContain("c2VjcmV0");
    expect(safeDetail("Cannot convert s3cr3t to int")).toBe("type conversion failed");
    expect(safeDetail("something nobody anticipated: s3cr3t")).toBe("expression evaluation failed");
  });
});

describe("decide (pure)", () => {
  const approvalPolicy = compiled(
    policy("b-approve", {
      rules: [
        { name: "deletes", action: "RequireApproval", condition: "request.operation == 'DELETE'", approval },
      ],
    }),
  );
  const denyPolicy = compiled(
    policy("c-deny", {
      rules: [
        {
          name: "no-kube-system",
          action: "Deny",
          condition: "request.namespace == 'kube-system'",
          message: "never",
        },
      ],
    }),
  );
  const allowPolicy = compiled(policy("a-allow", { rules: [{ name: "reads", action: "Allow" }] }));

  it("allows a request no policy covers", () => {
    expect(decide(request({ userInfo: { username: "alice" } }), [approvalPolicy, denyPolicy]).kind).toBe(
      "allow",
    );
  });

  it("deny wins over approval, approval over allow", () => {
    expect(
      decide(request({ namespace: "kube-system" }), [allowPolicy, approvalPolicy, denyPolicy]),
    ).toMatchObject({
      kind: "deny",
      message: "never",
    });
    expect(decide(request(), [allowPolicy, approvalPolicy, denyPolicy])).toMatchObject({
      kind: "require-approval",
      rule: { policy: "b-approve", rule: "deletes" },
    });
    expect(decide(request({ operation: "CREATE" }), [allowPolicy, approvalPolicy]).kind).toBe("allow");
  });

  it("picks the strictest of several RequireApproval rules", () => {
    const two = compiled(
      policy("z-two", {
        rules: [
          {
            name: "two",
            action: "RequireApproval",
            approval: { approvers: { groups: ["g"] }, requiredApprovals: 2 },
          },
        ],
      }),
    );
    expect(decide(request(), [approvalPolicy, two])).toMatchObject({ rule: { policy: "z-two" } });
  });

  it("matches subjects by user, group, service account and service-account labels", () => {
    const p = (subjects: ApprovalPolicySpec["subjects"]) =>
      compiled({
        ...policy("p", { rules: [{ name: "d", action: "Deny" }] }),
        spec: { subjects, rules: [{ name: "d", action: "Deny" }] },
      });
    expect(decide(request({ userInfo: { username: "bot" } }), [p({ users: ["bot"] })]).kind).toBe("deny");
    expect(
      decide(request({ userInfo: { username: "x", groups: ["bots"] } }), [p({ groups: ["bots"] })]).kind,
    ).toBe("deny");
    expect(
      decide(request(), [p({ serviceAccounts: [{ namespace: "ai-agents", name: "other" }] })]).kind,
    ).toBe("allow");
    const labelled = p({ serviceAccountSelector: { matchLabels: { "countersign.io/agent": "true" } } });
    expect(
      decide(request(), [labelled], { serviceAccountLabels: () => ({ "countersign.io/agent": "true" }) })
        .kind,
    ).toBe("deny");
    expect(decide(request(), [labelled], { serviceAccountLabels: () => ({}) }).kind).toBe("allow");
  });

  it("matches resources, subresources and namespaces", () => {
    const p = compiled(
      policy("p", {
        match: [{ operations: ["CONNECT"], resources: ["pods/exec"], namespaces: ["prod"] }],
        rules: [{ name: "exec", action: "RequireApproval", approval }],
      }),
    );
    const exec = request({
      operation: "CONNECT",
      resource: { group: "", version: "v1", resource: "pods" },
      subResource: "exec",
    });
    expect(decide(exec, [p]).kind).toBe("require-approval");
    expect(decide({ ...exec, subResource: "log" }, [p]).kind).toBe("allow");
    expect(decide({ ...exec, namespace: "dev" }, [p]).kind).toBe("allow");
  });

  it("matches resource patterns like Kubernetes webhook rules", () => {
    const cases: [string, string, string, boolean][] = [
      ["pods", "pods", "", true],
      ["pods", "pods", "eviction", false],
      ["pods/exec", "pods", "exec", true],
      ["pods/exec", "pods", "", false],
      ["pods/exec", "pods", "attach", false],
      ["pods/*", "pods", "eviction", true],
      ["pods/*", "pods", "", true], // sub "*" matches the main resource too, as in Kubernetes
      ["pods/*", "deployments", "scale", false],
      ["*", "secrets", "", true],
      ["*", "serviceaccounts", "token", false],
      ["*/scale", "deployments", "scale", true],
      ["*/scale", "deployments", "", false],
      ["*/*", "pods", "ephemeralcontainers", true],
      ["*/*", "configmaps", "", true],
    ];
    for (const [pattern, resource, sub, want] of cases) {
      expect([pattern, resource, sub, resourcePatternMatches(pattern, resource, sub)]).toEqual([
        pattern,
        resource,
        sub,
        want,
      ]);
    }
  });

  it("without match covers every operation on every resource and subresource (issue 10: no silent bypass)", () => {
    const p = compiled(policy("p", { rules: [{ name: "all", action: "RequireApproval", approval }] }));
    const sub = (operation: AdmissionRequest["operation"], resource: string, subResource: string) =>
      request({ operation, resource: { group: "", version: "v1", resource }, subResource });
    const covered = [
      sub("CREATE", "serviceaccounts", "token"), // kubectl create token
      sub("UPDATE", "deployments", "scale"), // kubectl scale
      sub("CREATE", "pods", "eviction"), // kubectl drain
      sub("UPDATE", "pods", "ephemeralcontainers"), // kubectl debug
      sub("CONNECT", "pods", "exec"),
      sub("CONNECT", "pods", "portforward"),
      request(),
    ];
    for (const r of covered) expect(decide(r, [p]).kind).toBe("require-approval");
  });

  it("with resources [pods] leaves eviction out, and pods/* covers it", () => {
    const evict = request({
      operation: "CREATE",
      resource: { group: "", version: "v1", resource: "pods" },
      subResource: "eviction",
    });
    const withResources = (resources: string[]) =>
      compiled(
        policy("p", {
          match: [{ operations: ["*"], resources }],
          rules: [{ name: "d", action: "Deny" }],
        }),
      );
    expect(decide(evict, [withResources(["pods"])]).kind).toBe("allow");
    expect(decide(evict, [withResources(["pods/*"])]).kind).toBe("deny");
    expect(decide(evict, [withResources(["*/eviction"])]).kind).toBe("deny");
  });

  it("rejects malformed resource patterns and operations at apply time, naming the field", () => {
    const r = compilePolicy(
      policy("p", {
        match: [
          { operations: ["CREATE"], resources: ["pods", "pods/exec/x", "Pods", "pods/", ""] },
          { operations: ["DELET" as "DELETE"], resources: ["*/*"] },
          { operations: ["CREATE"], resources: [] },
        ],
        rules: [{ name: "d", action: "Deny" }],
      }),
    );
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors;
    expect(errors.map((e) => e.path)).toEqual([
      "spec.match[0].resources[1]",
      "spec.match[0].resources[2]",
      "spec.match[0].resources[3]",
      "spec.match[0].resources[4]",
      "spec.match[1].operations[0]",
      "spec.match[2].resources",
    ]);
    expect(errors[0]!.message).toMatch(/'pods\/exec\/x' is not a resource pattern: write "pods"/);
    expect(errors[4]!.message).toMatch(/'DELET' is not an operation/);
  });

  it("uses variables, object and matchConditions, and fails closed on an evaluation error", () => {
    const p = compiled(
      policy("p", {
        variables: [
          {
            name: "critical",
            expression: "has(object.metadata.labels) && object.metadata.labels['tier'] == 'critical'",
          },
        ],
        matchConditions: [{ name: "updates", expression: "request.operation == 'UPDATE'" }],
        rules: [
          {
            name: "crit",
            action: "RequireApproval",
            condition: "variables.critical && object.spec.replicas > 2",
            approval,
          },
        ],
      }),
    );
    const upd = (labels: Record<string, string>, spec: unknown) =>
      request({ operation: "UPDATE", object: { metadata: { labels }, spec } });
    expect(decide(upd({ tier: "critical" }, { replicas: 3 }), [p]).kind).toBe("require-approval");
    expect(decide(upd({ tier: "low" }, { replicas: 3 }), [p]).kind).toBe("allow");
    const err = decide(upd({ tier: "critical" }, {}), [p]);
    expect(err).toMatchObject({ kind: "error", policy: "p" });
    expect(decide(request(), [p]).kind).toBe("allow"); // matchCondition false: policy does not apply
  });

  it("fails closed when the deadline has passed", () => {
    expect(decide(request(), [approvalPolicy], { deadlineExceeded: () => true })).toMatchObject({
      kind: "error",
    });
  });
});

describe("the request variable", () => {
  it("has optional fields present as empty strings, like Kubernetes' own CEL (sample policy regression)", () => {
    const p = compiled(
      policy("p", {
        match: [{ operations: ["*"], resources: ["*", "*/*"] }],
        rules: [{ name: "exec", action: "Deny", condition: 'request.subResource in ["exec", "attach"]' }],
      }),
    );
    expect(decide(request(), [p]).kind).toBe("allow");
    expect(decide(request({ subResource: "exec" }), [p]).kind).toBe("deny");
  });

  it("the shipped sample policies compile", async () => {
    const { readManifestDir } = await import("../../src/kube/apply.js");
    const docs = readManifestDir(new URL("../../examples/policies", import.meta.url).pathname);
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) expect(compilePolicy(d as unknown as ApprovalPolicy)).toMatchObject({ ok: true });
  });
});

describe("README policy example", () => {
  it("compiles and behaves as documented", () => {
    const p = compiled(
      policy("readme", {
        matchConditions: [
          {
            name: "not-argo-sync",
            expression:
              '!has(object.metadata.labels) || !("argocd.argoproj.io/instance" in object.metadata.labels)',
          },
        ],
        rules: [{ name: "r", action: "Deny" }],
      }),
    );
    const withLabels = (labels?: Record<string, string>) =>
      request({ operation: "UPDATE", object: { metadata: labels ? { labels } : {} } });
    expect(decide(withLabels(), [p]).kind).toBe("deny");
    expect(decide(withLabels({ "argocd.argoproj.io/instance": "x" }), [p]).kind).toBe("allow");
  });
});

describe("evaluation cost (issue 10: one expensive expression must not stall admission)", () => {
  const n = 100_000;
  const items = Array.from({ length: n }, (_, i) => `item-${i}`);
  const big = toCel({
    items,
    data: Object.fromEntries(items.map((k) => [k, "v"])),
    blob: "x".repeat(1 << 20),
  });
  const evaluate = (expr: string, object: unknown = big, costLimit?: number) => {
    const c = compileExpression(expr, "spec.rules[0].condition", new Set());
    if (!("evaluate" in c)) throw new Error(c.message);
    const started = performance.now();
    const out = c.evaluate(
      { object, request: null, oldObject: null, namespaceObject: null, variables: null },
      costLimit,
    );
    return { out, ms: performance.now() - started };
  };

  it("stops a quadratic expression over a 100,000-element list at the budget, failing closed", () => {
    const { out, ms } = evaluate("object.items.all(x, x in object.items)");
    expect(out).toBeInstanceOf(EvaluationError);
    expect((out as Error).message).toMatch(
      /^spec\.rules\[0\]\.condition: the expression exceeded its evaluation cost budget \(1000000 units\)/,
    );
    expect(ms).toBeLessThan(2000); // unmetered: 10^10 comparisons, minutes
  });

  it("stops quadratic string work and list building too (contains in a loop, map's concatenation)", () => {
    expect(evaluate("object.items.exists(x, object.blob.contains(x))").out).toBeInstanceOf(EvaluationError);
    expect(evaluate("object.items.map(x, x).size() > 0").out).toBeInstanceOf(EvaluationError);
  });

  it("charges a call for what it may return before it runs: replace and join cannot blow up", () => {
    const strings = toCel({
      s: "a".repeat(1 << 20),
      list: Array.from({ length: 1000 }, () => "a".repeat(1000)),
    });
    for (const expr of [
      "object.s.replace('a', object.s).size() > 0",
      "object.list.join(object.s).size() > 0",
    ]) {
      const { out, ms } = evaluate(expr, strings);
      expect(out).toBeInstanceOf(EvaluationError);
      expect(ms).toBeLessThan(500);
    }
    // One replace over 1 MiB with a million matches is linear (the library's own was quadratic: minutes).
    const { out, ms } = evaluate("object.s.replace('a', 'b').startsWith('bbb')", strings);
    expect(out).toBe(true);
    expect(ms).toBeLessThan(2000);
  });

  it("charges equality by everything nested in its operands, not just the top level", () => {
    const spec = { template: { containers: Array.from({ length: 20_000 }, (_, i) => ({ name: `c${i}` })) } };
    const deep = toCel({ metadata: { annotations: Object.fromEntries(items.map((k) => [k, "v"])) }, spec });
    const old = toCel({ spec });
    const c = compileExpression(
      "object.metadata.annotations.all(k, object.spec == oldObject.spec)",
      "p",
      new Set(),
    );
    if (!("evaluate" in c)) throw new Error(c.message);
    const started = performance.now();
    expect(c.evaluate({ object: deep, oldObject: old })).toBeInstanceOf(EvaluationError);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it("replace follows cel-go (Kubernetes) semantics", () => {
    expect(
      evaluate(
        "'ab'.replace('', 'X') == 'XaXbX' && 'abc'.replace('', '-', 2) == '-a-bc' && 'aaa'.replace('a', 'b', 2) == 'bba' && 'aaa'.replace('a', 'b', -1) == 'bbb' && 'aaa'.replace('a', 'b', 0) == 'aaa' && 'a.b.c'.replace('.', '::') == 'a::b::c'",
      ).out,
    ).toBe(true);
  });

  it("fails closed even when || would have absorbed the interrupted branch", () => {
    expect(evaluate("object.items.all(x, x in object.items) || true").out).toBeInstanceOf(EvaluationError);
  });

  it("leaves ordinary expressions alone, including one linear pass over the large list and map lookups", () => {
    expect(evaluate("object.items.all(x, x.startsWith('item-'))").out).toBe(true);
    expect(evaluate("object.items.all(x, x in object.data)").out).toBe(true); // map lookup: constant cost
    const pod = toCel({
      metadata: { labels: { tier: "critical" } },
      spec: { containers: [{ name: "a", image: "nginx:1", env: [{ name: "X", value: "1" }] }] },
    });
    expect(
      evaluate(
        "object.metadata.labels['tier'] == 'critical' && object.spec.containers.all(c, c.env.all(e, e.name != '') && !c.image.endsWith(':latest'))",
        pod,
      ).out,
    ).toBe(true);
    expect(evaluate("object.spec.containers.map(c, c.name) == ['a']", pod).out).toBe(true);
  });

  it("counts each evaluation from zero (a budget is per evaluation, not shared)", () => {
    const c = compileExpression("object.items.all(x, x != '')", "p", new Set());
    if (!("evaluate" in c)) throw new Error(c.message);
    for (let i = 0; i < 3; i++) expect(c.evaluate({ object: big }, 500_000)).toBe(true);
    expect(c.evaluate({ object: big }, 100_000)).toBeInstanceOf(EvaluationError);
  });

  it("rejects at apply time a comprehension over request data nested in another one, naming the field", () => {
    const r = compilePolicy(
      policy("p", {
        variables: [
          { name: "keys", expression: "object.data.map(k, k)" },
          { name: "allowed", expression: "['a', 'b']" },
        ],
        rules: [
          { name: "dup", action: "Deny", condition: "object.data.all(k, object.data.exists(j, j == k))" },
          {
            name: "via-variable",
            action: "Deny",
            condition: "object.items.all(k, variables.keys.exists(j, j == k))",
          },
          {
            name: "through-element",
            action: "Deny",
            condition: "object.spec.containers.all(c, c.env.all(e, e.name != ''))",
          },
          {
            name: "constant-inner",
            action: "Deny",
            condition: "object.items.all(k, variables.allowed.exists(a, a == k))",
          },
        ],
      }),
    );
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors;
    expect(errors.map((e) => e.path)).toEqual(["spec.rules[0].condition", "spec.rules[1].condition"]);
    expect(errors[0]!.message).toMatch(/cost grows with the square of the request/);
  });

  it("names the policy and the budget when decide fails closed", () => {
    const p = compiled(
      policy("costly", {
        rules: [{ name: "r", action: "Deny", condition: "object.items.all(x, x in object.items)" }],
      }),
    );
    const d = decide(request({ operation: "CREATE", object: { items } }), [p]);
    expect(d).toMatchObject({ kind: "error", policy: "costly" });
    expect(d.kind === "error" && d.message).toMatch(/spec\.rules\[0\]\.condition: .*cost budget/);
  });
});
