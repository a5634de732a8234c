/**
 * The cel-spec conformance suite (shipped in @bufbuild/cel-spec) as plain cases: expression,
 * bindings and expected result, for the CEL lowering unit test (test/unit/cel-lower.test.ts)
 * and the library comparison (bench/cel-compare.ts) alike.
 */
import type { IncrementalTestSuite } from "@bufbuild/cel-spec/testdata/tests.js";

/**
 * Suites whose tests need protobuf message types, enums, wrappers or containers: no library
 * here takes those without a registry, so they are left out everywhere alike.
 */
export const EXCLUDED_SUITES: ReadonlySet<string> = new Set([
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

/** A conformance value (cel.expr.Value) as a plain binding; UNSUPPORTED for messages, types, bytes, uint. */
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
        const x = fromProto(e.value);
        if (typeof k !== "string" || x === UNSUPPORTED) return UNSUPPORTED;
        out[k] = x;
      }
      return out;
    }
    default:
      return UNSUPPORTED; // uint, bytes, objects, types, enums
  }
}

export interface ConformanceCase {
  /** The top-level suite the test is in. */
  suite: string;
  name: string;
  expr: string;
  bindings: Record<string, unknown>;
  /** Absent when the suite gives no plain value (or none was asked for). */
  expected?: { error: true } | { value: unknown };
}

/**
 * The runnable tests of `root` and its suites (EXCLUDED_SUITES left out): no container, no
 * check-only or macro-less tests, plain bindings only. With `withResults`, each case carries
 * its expected result when it is an error or a plain value. `skipped` counts what was left out.
 */
export function conformanceCases(
  root: IncrementalTestSuite,
  withResults: boolean,
  skipped: { count: number } = { count: 0 },
): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const walk = (suite: IncrementalTestSuite, top: string) => {
    for (const t of suite.tests) {
      const o = t.original as unknown as {
        expr: string;
        container?: string;
        disableMacros?: boolean;
        checkOnly?: boolean;
        bindings?: Record<string, { kind: { case: string; value: ProtoValue } }>;
        resultMatcher?: { case?: string; value?: ProtoValue };
      };
      if (o.container || o.checkOnly || o.disableMacros) {
        skipped.count++;
        continue;
      }
      const bindings: Record<string, unknown> = {};
      let ok = true;
      for (const [name, b] of Object.entries(o.bindings ?? {})) {
        if (b.kind.case !== "value") ok = false;
        else bindings[name] = fromProto(b.kind.value);
        if (bindings[name] === UNSUPPORTED) ok = false;
      }
      if (!ok) {
        skipped.count++;
        continue;
      }
      let expected: ConformanceCase["expected"];
      if (withResults) {
        const rm = o.resultMatcher;
        if (rm?.case === "evalError") expected = { error: true };
        else if (rm?.case === "value" && rm.value) {
          const v = fromProto(rm.value);
          if (v !== UNSUPPORTED) expected = { value: v };
        }
      }
      cases.push({ suite: top, name: t.name, expr: o.expr, bindings, ...(expected ? { expected } : {}) });
    }
    for (const s of suite.suites) walk(s, top);
  };
  for (const s of root.suites) if (!EXCLUDED_SUITES.has(s.name)) walk(s, s.name);
  walk({ ...root, suites: [] }, root.name);
  return cases;
}
