/**
 * The lowered CEL path (src/policy/cel-lower.ts) is the same language as @bufbuild/cel's
 * interpreter: the cel-spec conformance suite (shipped in @bufbuild/cel-spec, read from
 * node_modules) runs through both, every result is compared with the other path and with the
 * suite's expected value, and the lowering must cover the suites policies live in.
 */
import { isCelError, isCelList, isCelMap, isCelUint } from "@bufbuild/cel";
import { getComprehensionSuite, getConformanceSuite } from "@bufbuild/cel-spec/testdata/tests.js";
import { describe, expect, it } from "vitest";
import {
  celProgram,
  compileExpression,
  EVALUATION_COST_LIMIT,
  EvalFrame,
  EvaluationError,
  setCelLowering,
  toCel,
} from "../../src/policy/cel.js";
import { compilePolicy } from "../../src/policy/compile.js";
import { decide } from "../../src/policy/evaluate.js";
import { conformanceCases } from "../support/cel-conformance.js";

/** A CEL value in a comparable form (errors collapse to one marker: only error-ness is compared). */
function norm(v: unknown): unknown {
  if (isCelError(v) || v instanceof Error) return "<error>";
  if (typeof v === "bigint") return `int:${v}`;
  if (typeof v === "number") return Number.isNaN(v) ? "double:NaN" : `double:${v}`;
  if (v === null || typeof v !== "object") return v;
  if (isCelUint(v)) return `uint:${v.value}`;
  if (v instanceof Uint8Array) return `bytes:${[...v].join(",")}`;
  if (isCelList(v)) return [...v].map(norm);
  if (isCelMap(v)) {
    return Object.fromEntries(
      [...v.entries()].map(([k, x]) => [typeof k === "bigint" ? `int:${k}` : String(k), norm(x)]),
    );
  }
  if (Array.isArray(v)) return v.map(norm);
  if (v instanceof Map) return Object.fromEntries([...v.entries()].map(([k, x]) => [String(k), norm(x)]));
  return `<object:${Object.prototype.toString.call(v)}:${String((v as { $typeName?: string }).$typeName ?? (v as { desc?: { typeName?: string } }).desc?.typeName ?? "")}>`;
}

function plainNorm(v: unknown): unknown {
  if (typeof v === "bigint") return `int:${v}`;
  if (typeof v === "number") return Number.isNaN(v) ? "double:NaN" : `double:${v}`;
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(plainNorm);
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainNorm(x)]));
}

function safely(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

describe("CEL lowering: the cel-spec conformance suite through both paths", () => {
  const cases = conformanceCases(getConformanceSuite(), true);
  const perSuite = new Map<string, { total: number; lowered: number; interp: number; low: number }>();
  const mismatches: string[] = [];
  let runnable = 0;
  for (const c of cases) {
    let program: ReturnType<typeof celProgram>;
    try {
      program = celProgram(c.expr, Object.keys(c.bindings));
    } catch {
      continue; // does not parse or plan: the same for both paths
    }
    runnable++;
    const tally = perSuite.get(c.suite) ?? { total: 0, lowered: 0, interp: 0, low: 0 };
    perSuite.set(c.suite, tally);
    tally.total++;
    if (program.lowered) tally.lowered++;
    const a = norm(safely(() => program.interpret(c.bindings)));
    const b = norm(safely(() => program.run(c.bindings)));
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      mismatches.push(
        `${c.suite}/${c.name}: ${c.expr} → interpreter ${JSON.stringify(a)}, lowered ${JSON.stringify(b)}`,
      );
    }
    if (c.expected) {
      const want = "error" in c.expected ? "<error>" : plainNorm(c.expected.value);
      const relax = (x: unknown) => JSON.stringify(x).replace(/"(int|double):(-?[\d.e+]+)"/g, "$2");
      if (relax(a) === relax(want)) tally.interp++;
      if (relax(b) === relax(want)) tally.low++;
    }
  }

  it("gives the interpreter's result on every runnable conformance test", () => {
    console.table(
      Object.fromEntries(
        [...perSuite].map(([suite, t]) => [
          suite,
          { tests: t.total, lowered: t.lowered, "pass (interpreter)": t.interp, "pass (lowered)": t.low },
        ]),
      ),
    );
    expect(runnable).toBeGreaterThan(1000);
    expect(mismatches).toEqual([]);
  });

  it("passes exactly the conformance tests the interpreter passes, suite by suite", () => {
    for (const [suite, t] of perSuite) {
      expect({ suite, passed: t.low }).toEqual({ suite, passed: t.interp });
    }
  });

  it("lowers (does not fall back on) nearly everything in the suites policies live in", () => {
    for (const suite of ["comparisons", "logic", "lists", "macros", "string", "fields"]) {
      const t = perSuite.get(suite);
      if (!t) continue;
      expect({ suite, share: t.lowered / t.total > 0.9 }).toEqual({ suite, share: true });
    }
    const lowered = [...perSuite.values()].reduce((n, t) => n + t.lowered, 0);
    expect(lowered / runnable).toBeGreaterThan(0.75);
  });
});

describe("CEL lowering: cel-go's comprehension expressions through both paths", () => {
  it("gives the interpreter's result (values or errors) on every expression that plans", () => {
    const mismatches: string[] = [];
    let n = 0;
    for (const c of conformanceCases(getComprehensionSuite(), false)) {
      let program: ReturnType<typeof celProgram>;
      try {
        program = celProgram(c.expr, Object.keys(c.bindings));
      } catch {
        continue;
      }
      n++;
      const a = norm(safely(() => program.interpret(c.bindings)));
      const b = norm(safely(() => program.run(c.bindings)));
      if (JSON.stringify(a) !== JSON.stringify(b))
        mismatches.push(`${c.expr}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }
    expect(n).toBeGreaterThan(10);
    expect(mismatches).toEqual([]);
  });
});

describe("CEL lowering keeps the cost budget's semantics", () => {
  const object = toCel({
    items: Array.from({ length: 2000 }, (_, i) => `item-${i}`),
    labels: { tier: "critical", app: "payments" },
    blob: "ab".repeat(5000),
    spec: {
      replicas: 3,
      template: { spec: { containers: [{ name: "a", image: "registry.example.com/a:1" }] } },
    },
  });
  const request = toCel({ namespace: "prod", operation: "UPDATE", resource: { resource: "deployments" } });
  const activation = { request, object, oldObject: object, namespaceObject: null, variables: null };
  /** The smallest budget the evaluation succeeds with (what it costs), by bisection. */
  const cost = (run: (limit: number) => unknown): number => {
    let lo = 0;
    let hi = EVALUATION_COST_LIMIT;
    if (run(hi) instanceof EvaluationError) return Number.POSITIVE_INFINITY;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (run(mid) instanceof EvaluationError) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  it.each([
    "object.items.all(x, x.startsWith('item-'))",
    "object.items.exists(x, x == 'item-1999')",
    "'item-7' in object.items",
    "object.labels['tier'] in ['critical', 'high'] && has(object.spec.replicas) && object.spec.replicas > 2",
    "object.blob.size() > 10 && object.blob.contains('ba')",
    "object.items.filter(x, x.endsWith('9')).size() == 200",
    "object.items.map(x, x + '!').size() > 0",
    "object == oldObject",
    "request.namespace in ['prod', 'staging'] && request.operation == 'UPDATE'",
    "object.spec.template.spec.containers.all(c, c.image.startsWith('registry.example.com/'))",
    "object.blob.replace('a', 'cc').size() > 0",
  ])("charges the same units as the interpreter: %s", (expr) => {
    const c = compileExpression(expr, "p", new Set());
    if (!("evaluate" in c)) throw new Error(c.message);
    expect(c.lowered).toBe(true);
    const lowered = cost((limit) => c.evaluate(activation, limit));
    const interpreted = cost((limit) => c.interpret(activation, limit));
    expect(lowered).toBe(interpreted);
    expect(lowered).toBeGreaterThan(0);
  });

  it("a sub-expression shared between expressions runs once per request and is charged on every use", () => {
    const source = "object.blob.replace('a', 'cc').size() > 1000";
    const a = compileExpression(source, "a", new Set());
    const b = compileExpression(source, "b", new Set());
    if (!("evaluate" in a) || !("evaluate" in b)) throw new Error("did not compile");
    const frame = EvalFrame.fromActivation(activation, []);
    const full = cost((limit) => a.evaluate(EvalFrame.fromActivation(activation, []), limit));
    expect(a.evaluate(frame)).toBe(true);
    // The second expression reuses the value, and still pays for it: one unit short fails closed.
    expect(b.evaluate(frame, full - 1)).toBeInstanceOf(EvaluationError);
    expect(b.evaluate(frame, full)).toBe(true);
  });
});

describe("pre-filters (prefilter.ts) agree with CEL", () => {
  const req = (over: Record<string, unknown>) => ({
    uid: "u",
    kind: { group: "apps", version: "v1", kind: "Deployment" },
    resource: { group: "apps", version: "v1", resource: "deployments" },
    namespace: "prod",
    name: "web",
    operation: "UPDATE",
    userInfo: { username: "system:serviceaccount:a:b" },
    ...over,
  });
  const requests = [
    req({}),
    req({ namespace: "dev" }),
    req({ namespace: undefined }),
    req({ operation: "DELETE", resource: { group: "", version: "v1", resource: "secrets" } }),
    req({ name: "scratch-1" }),
    req({ subResource: "scale" }),
    req({ userInfo: { username: "alice" } }),
    req({ userInfo: {} }),
  ];
  it.each([
    'request.namespace in ["prod", "prod-1"]',
    'request.operation == "DELETE" && request.resource.resource == "secrets" && request.name != "scratch-1"',
    '"secrets" == request.resource.resource && object.spec.replicas > 3',
    'request.resource.resource in ["deployments"] && request.subResource == ""',
    'request.userInfo.username == "system:serviceaccount:a:b"',
  ])("never says false when CEL says true or fails: %s", (expr) => {
    const c = compileExpression(expr, "p", new Set());
    if (!("evaluate" in c)) throw new Error(c.message);
    expect(c.prefilter).toBeDefined();
    let decided = 0;
    for (const r of requests) {
      const { object: _o, ...rest } = r as Record<string, unknown>;
      const cel = c.evaluate({
        request: toCel({
          name: "",
          namespace: "",
          subResource: "",
          requestSubResource: "",
          dryRun: false,
          ...rest,
        }),
        object: toCel({ spec: { replicas: 1 } }),
        oldObject: null,
        namespaceObject: null,
        variables: null,
      });
      const pre = c.prefilter!(r);
      if (pre !== undefined) {
        decided++;
        expect(cel).toBe(pre);
      }
    }
    expect(decided).toBeGreaterThan(0);
  });

  it("decides a condition made only of field tests either way, one with more only when false", () => {
    const whole = compileExpression(
      'request.namespace in ["prod"] && request.operation == "UPDATE"',
      "p",
      new Set(),
    );
    const part = compileExpression(
      'request.namespace in ["prod"] && object.spec.replicas > 1',
      "p",
      new Set(),
    );
    if (!("evaluate" in whole) || !("evaluate" in part)) throw new Error("did not compile");
    expect(whole.prefilter!(req({}))).toBe(true);
    expect(whole.prefilter!(req({ namespace: "dev" }))).toBe(false);
    expect(part.prefilter!(req({}))).toBeUndefined();
    expect(part.prefilter!(req({ namespace: "dev" }))).toBe(false);
  });

  it("derives none from a condition whose first conjunct is anything else", () => {
    for (const expr of [
      'object.spec.replicas > 3 && request.namespace == "prod"',
      'request.namespace.startsWith("prod")',
      'request.namespace in variables_list || request.name == "x"',
    ]) {
      const c = compileExpression(expr.replace("variables_list", '["a"]'), "p", new Set());
      if (!("evaluate" in c)) throw new Error(c.message);
      expect(c.prefilter).toBeUndefined();
    }
  });
});

describe("sub-expressions shared between policies (red-team F1: colliding memo keys)", () => {
  // Two admin-written rules evaluated in one request: a cached result may be reused only for the
  // very same sub-expression. Before the fix, every uint literal had one key (so `> 500u` reused
  // `> 50u`'s answer), and string lists, bytes and a.f(b)/f(a, b) collided the same way.
  const pairs: [string, string][] = [
    ["uint(object.spec.replicas) > 500u", "uint(object.spec.replicas) > 50u"],
    ["bytes(object.spec.name) == b'b'", "bytes(object.spec.name) == b'a'"],
    ["object.spec.name in ['a,c:string:b']", "object.spec.name in ['a', 'b']"],
    ["object.spec.ratio + 1.0 / -0.0 > 0.0", "object.spec.ratio + 1.0 / 0.0 > 0.0"],
  ];
  const policy = (name: string, condition: string, action: "Deny" | "RequireApproval") => ({
    apiVersion: "countersign.io/v1alpha1",
    kind: "ApprovalPolicy",
    metadata: { name, generation: 1 },
    spec: {
      subjects: { serviceAccounts: [{ namespace: "ai-agents" }] },
      rules: [
        {
          name: "r",
          action,
          condition,
          ...(action === "RequireApproval" ? { approval: { approvers: { groups: ["sre"] } } } : {}),
        },
      ],
    },
  });
  const request = {
    uid: "u1",
    kind: { group: "apps", version: "v1", kind: "Deployment" },
    resource: { group: "apps", version: "v1", resource: "deployments" },
    namespace: "prod",
    name: "api",
    operation: "UPDATE",
    userInfo: { username: "system:serviceaccount:ai-agents:bot", groups: ["system:serviceaccounts"] },
    object: { spec: { replicas: 100, name: "a", ratio: 0 } },
    oldObject: { spec: { replicas: 3, name: "a", ratio: 0 } },
  };
  const run = (first: string, second: string, lowered: boolean) => {
    setCelLowering(lowered);
    try {
      const compiled = [policy("a-first", first, "Deny"), policy("b-second", second, "RequireApproval")].map(
        (p) => {
          const r = compilePolicy(p as never);
          if (!r.ok) throw new Error(JSON.stringify(r.errors));
          return r.policy;
        },
      );
      return decide(request as never, compiled).kind;
    } finally {
      setCelLowering(true);
    }
  };
  for (const [first, second] of pairs) {
    it(`${first} | ${second}: lowered decides as the interpreter`, () => {
      expect(run(first, second, true)).toBe(run(first, second, false));
    });
  }
  it("the uint pair, as the red team ran it: replicas 3 → 100 needs approval (not allow)", () => {
    expect(run(pairs[0]![0], pairs[0]![1], true)).toBe("require-approval");
  });
});
