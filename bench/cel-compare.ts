/**
 * Measures the three JavaScript CEL libraries named in the issues on
 *   1. the CEL conformance suite shipped in @bufbuild/cel-spec (the subset that needs no
 *      protobuf message types: literals, operators, macros, strings, lists, maps, logic, ...);
 *   2. evaluation speed of realistic admission expressions over a realistic AdmissionReview;
 *   3. the known traps the gate must survive (string methods, regex ReDoS, int-vs-double).
 *
 * Run: npm run bench:cel   (results are recorded in docs/cel-library-choice.md)
 */
import { parse as bufParse, plan as bufPlan, run as bufRun, celEnv } from "@bufbuild/cel";
import { strings as bufStrings } from "@bufbuild/cel/ext";
import { getConformanceSuite, type IncrementalTestSuite } from "@bufbuild/cel-spec/testdata/tests.js";
import { evaluate as marcEvaluate, parse as marcParse } from "@marcbachmann/cel-js";
import { evaluate as celJsEvaluate, parse as celJsParse } from "cel-js";

type Runner = (expr: string, vars: Record<string, unknown>) => unknown;

const libraries: Record<string, Runner> = {
  "cel-js": (expr, vars) => celJsEvaluate(expr, vars as never),
  "@marcbachmann/cel-js": (expr, vars) => marcEvaluate(expr, vars as never),
  "@bufbuild/cel": (expr, vars) => {
    const out = bufRun(expr, vars as never, { funcs: bufStrings });
    if (out instanceof Error) throw out;
    return out;
  },
};

// Suites whose tests need protobuf message types, enums or wrappers: no library here
// takes those without a registry, so they are excluded for all three alike.
const EXCLUDED_SUITES = new Set([
  "proto2",
  "proto2_ext",
  "proto3",
  "wrappers",
  "enums",
  "dynamic",
  "type_deductions",
  "unknowns",
  "block_ext",
  "namespace",
]);

interface ProtoValue {
  kind: { case: string; value: unknown };
}

const UNSUPPORTED = Symbol("unsupported");

function fromProto(v: ProtoValue): unknown {
  const { case: c, value } = v.kind;
  switch (c) {
    case "nullValue":
      return null;
    case "boolValue":
    case "stringValue":
    case "doubleValue":
      return value;
    case "int64Value":
      return BigInt(value as string | bigint);
    case "listValue": {
      const out = ((value as { values: ProtoValue[] }).values ?? []).map(fromProto);
      return out.includes(UNSUPPORTED) ? UNSUPPORTED : out;
    }
    case "mapValue": {
      const out: Record<string, unknown> = {};
      for (const e of (value as { entries: { key: ProtoValue; value: ProtoValue }[] }).entries) {
        const k = fromProto(e.key);
        if (typeof k !== "string") return UNSUPPORTED;
        out[k] = fromProto(e.value);
        if (out[k] === UNSUPPORTED) return UNSUPPORTED;
      }
      return out;
    }
    default:
      return UNSUPPORTED; // uint, bytes, objects, types, enums
  }
}

/** Normalizes any library's result so that equal CEL values compare equal. */
function norm(v: unknown): unknown {
  if (typeof v === "bigint") return `int:${v}`;
  if (typeof v === "number") return Number.isInteger(v) && Math.abs(v) < 2 ** 53 ? `num:${v}` : `num:${v}`;
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(norm);
  const obj = v as { [Symbol.iterator]?: unknown; entries?: () => Iterable<[unknown, unknown]> };
  if (v instanceof Map) return Object.fromEntries([...v.entries()].map(([k, x]) => [String(k), norm(x)]));
  if (typeof obj[Symbol.iterator] === "function" && !(v instanceof Uint8Array)) {
    // CelList
    return [...(v as Iterable<unknown>)].map(norm);
  }
  if (typeof obj.entries === "function") {
    return Object.fromEntries([...obj.entries()].map(([k, x]) => [String(k), norm(x)]));
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
}

/** Expected proto value normalized the same way (an int64 may come back as a JS number from cel-js). */
function expectedMatches(expected: unknown, got: unknown): boolean {
  const e = norm(expected);
  const g = norm(got);
  const relax = (x: unknown): unknown =>
    typeof x === "string" && (x.startsWith("int:") || x.startsWith("num:"))
      ? `n:${Number(x.slice(4))}`
      : Array.isArray(x)
        ? x.map(relax)
        : x && typeof x === "object"
          ? Object.fromEntries(Object.entries(x).map(([k, y]) => [k, relax(y)]))
          : x;
  return JSON.stringify(e) === JSON.stringify(g) || JSON.stringify(relax(e)) === JSON.stringify(relax(g));
}

interface Tally {
  pass: number;
  fail: number;
  bySuite: Record<string, { pass: number; total: number }>;
}

function conformance(): { total: number; skipped: number; tallies: Record<string, Tally> } {
  const tallies: Record<string, Tally> = Object.fromEntries(
    Object.keys(libraries).map((k) => [k, { pass: 0, fail: 0, bySuite: {} }]),
  );
  let total = 0;
  let skipped = 0;
  const walk = (suite: IncrementalTestSuite, top: string) => {
    for (const t of suite.tests) {
      const o = t.original as unknown as {
        expr: string;
        container: string;
        disableMacros: boolean;
        checkOnly: boolean;
        typeEnv: unknown[];
        bindings: Record<string, { kind: { case: string; value: ProtoValue } }>;
        resultMatcher: { case?: string; value?: ProtoValue };
      };
      if (o.container || o.checkOnly || o.disableMacros) {
        skipped++;
        continue;
      }
      const vars: Record<string, unknown> = {};
      let ok = true;
      for (const [name, b] of Object.entries(o.bindings ?? {})) {
        if (b.kind.case !== "value") ok = false;
        else vars[name] = fromProto(b.kind.value);
        if (vars[name] === UNSUPPORTED) ok = false;
      }
      const rm = o.resultMatcher;
      let expected: unknown;
      const expectError = rm.case === "evalError";
      if (rm.case === "value" && rm.value) expected = fromProto(rm.value);
      else if (!expectError) ok = false;
      if (!ok || expected === UNSUPPORTED) {
        skipped++;
        continue;
      }
      total++;
      for (const [lib, runner] of Object.entries(libraries)) {
        let passed: boolean;
        try {
          const got = runner(o.expr, vars);
          passed = !expectError && expectedMatches(expected, got);
        } catch {
          passed = expectError;
        }
        const tally = tallies[lib]!;
        tally.bySuite[top] ??= { pass: 0, total: 0 };
        tally.bySuite[top].total++;
        if (passed) {
          tally.pass++;
          tally.bySuite[top].pass++;
        } else tally.fail++;
      }
    }
    for (const s of suite.suites) walk(s, top);
  };
  for (const s of getConformanceSuite().suites) {
    if (EXCLUDED_SUITES.has(s.name)) continue;
    walk(s, s.name);
  }
  return { total, skipped, tallies };
}

// A realistic admission input: a Secret DELETE by an agent's service account.
export const admissionVars = {
  request: {
    uid: "705ab4f5-6393-11e8-b7cc-42010a800002",
    operation: "UPDATE",
    kind: { group: "apps", version: "v1", kind: "Deployment" },
    resource: { group: "apps", version: "v1", resource: "deployments" },
    namespace: "prod",
    name: "payments-api",
    userInfo: {
      username: "system:serviceaccount:ai-agents:ops-bot",
      uid: "b81fa587-105a-47ac-a365-49e5973b5d0f",
      groups: ["system:serviceaccounts", "system:serviceaccounts:ai-agents", "system:authenticated"],
    },
    dryRun: false,
  },
  object: {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: "payments-api",
      namespace: "prod",
      labels: { app: "payments-api", tier: "critical", "app.kubernetes.io/managed-by": "argocd" },
      annotations: { "countersign.io/reason": "scale up for the sale" },
    },
    spec: {
      replicas: 3,
      template: {
        spec: {
          containers: [
            {
              name: "api",
              image: "registry.example.com/payments/api:1.42.0",
              ports: [{ containerPort: 8080 }],
            },
            { name: "sidecar", image: "registry.example.com/mesh/proxy:2.1.0" },
          ],
        },
      },
    },
  },
};

const speedExpressions = [
  `request.operation == "UPDATE" && request.namespace == "prod"`,
  `"system:serviceaccounts:ai-agents" in request.userInfo.groups`,
  `has(object.metadata.labels) && object.metadata.labels["tier"] == "critical"`,
  `object.spec.template.spec.containers.all(c, c.image.startsWith("registry.example.com/"))`,
  `object.spec.template.spec.containers.exists(c, c.name == "api") && request.userInfo.username.endsWith(":ops-bot")`,
];

function speed(): Record<string, Record<string, number | string>> {
  const out: Record<string, Record<string, number | string>> = {};
  const compiled: Record<string, ((vars: Record<string, unknown>) => unknown) | undefined> = {
    "cel-js": (() => {
      const parsed = speedExpressions.map((e) => celJsParse(e));
      if (!parsed.every((p) => p.isSuccess)) return undefined;
      return (vars) => parsed.map((p) => celJsEvaluate((p as unknown as { cst: never }).cst, vars as never));
    })(),
    "@marcbachmann/cel-js": (() => {
      const fns = speedExpressions.map((e) => marcParse(e));
      return (vars) => fns.map((f) => f(vars as never));
    })(),
    "@bufbuild/cel": undefined,
  };
  // @bufbuild/cel: parse and plan once per expression.
  const env = celEnv({ funcs: bufStrings });
  const planned = speedExpressions.map((e) => bufPlan(env, bufParse(e)));
  compiled["@bufbuild/cel"] = (vars) => planned.map((p) => p(vars as never));
  for (const [lib, fn] of Object.entries(compiled)) {
    if (!fn) {
      out[lib] = { "evals/s": "n/a (startsWith/endsWith unsupported)" };
      continue;
    }
    try {
      fn(admissionVars);
    } catch (err) {
      out[lib] = { "evals/s": `n/a (${(err as Error).message.split("\n")[0]?.slice(0, 60)})` };
      continue;
    }
    const iterations = 20_000;
    for (let i = 0; i < 2000; i++) fn(admissionVars);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn(admissionVars);
    const ns = Number(process.hrtime.bigint() - t0);
    out[lib] = {
      "expr evals/s": Math.round((iterations * speedExpressions.length) / (ns / 1e9)),
      "µs per 5-expr set": +(ns / iterations / 1000).toFixed(2),
    };
  }
  return out;
}

function traps(): Record<string, Record<string, string>> {
  const cases: Record<string, { expr: string; vars?: Record<string, unknown>; want: unknown }> = {
    "startsWith()": { expr: `"ops-bot".startsWith("ops")`, want: true },
    "matches() RE2": { expr: `"abc123".matches("^[a-z]+[0-9]+$")`, want: true },
    "int from JSON + 1": {
      expr: "object.spec.replicas + 1 == 4",
      vars: { object: { spec: { replicas: 3 } } },
      want: true,
    },
    "missing field error leaks?": {
      expr: "object.data.password == 'x'",
      vars: { object: { data: { token: "c2VjcmV0LXZhbHVl" } } },
      want: "error",
    },
  };
  const out: Record<string, Record<string, string>> = {};
  for (const [lib, runner] of Object.entries(libraries)) {
    out[lib] = {};
    for (const [name, c] of Object.entries(cases)) {
      try {
        const got = runner(c.expr, c.vars ?? {});
        out[lib][name] = got === c.want ? "ok" : `wrong (${String(got)})`;
      } catch (err) {
        const msg = String((err as Error).message);
        if (c.want === "error")
          out[lib][name] = msg.includes("c2VjcmV0") ? "LEAKS object in error" : "ok (error, no leak)";
        else out[lib][name] = `error: ${msg.split("\n")[0]?.slice(0, 50)}`;
      }
    }
  }
  return out;
}

const conf = conformance();
console.log(
  `CEL conformance (@bufbuild/cel-spec), ${conf.total} runnable tests, ${conf.skipped} skipped (need protobuf types, uint/bytes bindings or a container)`,
);
// Rows are suites, columns libraries (the table stays narrow enough for a terminal).
const table: Record<string, Record<string, string>> = { ALL: {} };
for (const [lib, t] of Object.entries(conf.tallies)) {
  table["ALL"]![lib] = `${t.pass}/${conf.total} (${((100 * t.pass) / conf.total).toFixed(1)}%)`;
  for (const [suite, s] of Object.entries(t.bySuite)) {
    table[suite] ??= {};
    table[suite][lib] = `${s.pass}/${s.total}`;
  }
}
console.table(table);
console.log("Evaluation speed: 5 realistic admission expressions over an AdmissionReview-shaped input");
console.table(speed());
console.log("Known traps");
console.table(traps());
