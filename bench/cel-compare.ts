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
import { getConformanceSuite } from "@bufbuild/cel-spec/testdata/tests.js";
import { evaluate as marcEvaluate, parse as marcParse } from "@marcbachmann/cel-js";
import { evaluate as celJsEvaluate, parse as celJsParse } from "cel-js";
import { conformanceCases } from "../test/support/cel-conformance.js";

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
  const skippedTests = { count: 0 };
  const all = conformanceCases(getConformanceSuite(), true, skippedTests);
  // Only tests with an expected error or plain value count.
  const cases = all.filter((c) => c.expected);
  const total = cases.length;
  const skipped = skippedTests.count + all.length - cases.length;
  for (const c of cases) {
    const expectError = "error" in c.expected!;
    const expected = "value" in c.expected! ? c.expected.value : undefined;
    for (const [lib, runner] of Object.entries(libraries)) {
      let passed: boolean;
      try {
        const got = runner(c.expr, c.bindings);
        passed = !expectError && expectedMatches(expected, got);
      } catch {
        passed = expectError;
      }
      const tally = tallies[lib]!;
      tally.bySuite[c.suite] ??= { pass: 0, total: 0 };
      tally.bySuite[c.suite]!.total++;
      if (passed) {
        tally.pass++;
        tally.bySuite[c.suite]!.pass++;
      } else tally.fail++;
    }
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
