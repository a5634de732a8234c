/**
 * Pre-filters: a condition whose first conjuncts compare plain request fields with literals
 * (`request.namespace in ["prod", "staging"]`, `request.operation == "DELETE"`,
 * `request.resource.resource != "secrets"`) is checked on the decoded AdmissionRequest, before
 * any CEL value is built. Exact, not a heuristic: only conjuncts that come before anything else
 * (in evaluation order) are used, and they cannot fail, so when one of them is false the CEL
 * `&&` is false without evaluating the rest, which is what the interpreter does too. When a
 * field is not a plain string the pre-filter says "maybe" and CEL decides. A condition made only
 * of such conjuncts is decided here entirely (it cannot fail, and costs a handful of units).
 */
import type { LowerExpr } from "./cel-lower.js";

/**
 * false: the condition is certainly false for this request; true: certainly true (only when
 * the whole condition is such conjuncts); undefined: evaluate it.
 */
export type Prefilter = (req: Readonly<Record<string, unknown>>) => boolean | undefined;

/** Fields of `request` that are strings, with the "" default Countersign's CEL request gives them. */
const TOP_FIELDS = new Set(["name", "namespace", "operation", "subResource", "requestSubResource", "uid"]);
const DEFAULTED = new Set(["name", "namespace", "subResource", "requestSubResource"]);
const NESTED_FIELDS: Record<string, Set<string>> = {
  resource: new Set(["group", "version", "resource"]),
  kind: new Set(["group", "version", "kind"]),
  requestResource: new Set(["group", "version", "resource"]),
  requestKind: new Set(["group", "version", "kind"]),
  userInfo: new Set(["username", "uid"]),
};

type FieldReader = (req: Readonly<Record<string, unknown>>) => string | undefined;

interface Call {
  function: string;
  target?: LowerExpr;
  args: LowerExpr[];
}

function call(e: LowerExpr): Call | undefined {
  return e.exprKind.case === "callExpr" ? (e.exprKind.value as Call) : undefined;
}

function stringConst(e: LowerExpr): string | undefined {
  if (e.exprKind.case !== "constExpr") return undefined;
  const c = (e.exprKind.value as { constantKind: { case: string; value: unknown } }).constantKind;
  return c.case === "stringValue" ? (c.value as string) : undefined;
}

function select(e: LowerExpr): { operand: LowerExpr; field: string } | undefined {
  if (e.exprKind.case !== "selectExpr") return undefined;
  const s = e.exprKind.value as { operand?: LowerExpr; field: string; testOnly: boolean };
  return s.testOnly || !s.operand ? undefined : { operand: s.operand, field: s.field };
}

function isRequest(e: LowerExpr): boolean {
  return e.exprKind.case === "identExpr" && (e.exprKind.value as { name: string }).name === "request";
}

/** A reader for `request.F` or `request.A.B` (string fields only). */
function fieldReader(e: LowerExpr): FieldReader | undefined {
  const s = select(e);
  if (!s) return undefined;
  if (isRequest(s.operand)) {
    const f = s.field;
    if (!TOP_FIELDS.has(f)) return undefined;
    const defaulted = DEFAULTED.has(f);
    return (req) => {
      const v = req[f];
      if (typeof v === "string") return v;
      return v === undefined && defaulted && !(f in req) ? "" : undefined;
    };
  }
  const inner = select(s.operand);
  if (!inner || !isRequest(inner.operand)) return undefined;
  const parent = inner.field;
  const f = s.field;
  if (!NESTED_FIELDS[parent]?.has(f)) return undefined;
  return (req) => {
    const p = req[parent];
    if (typeof p !== "object" || p === null || Array.isArray(p)) return undefined;
    const v = (p as Record<string, unknown>)[f];
    return typeof v === "string" ? v : undefined;
  };
}

/** One conjunct as a test on the request: true/false, or undefined when it cannot tell. */
function conjunct(
  e: LowerExpr,
): ((req: Readonly<Record<string, unknown>>) => boolean | undefined) | undefined {
  const c = call(e);
  if (!c || c.target) return undefined;
  const [a, b] = c.args;
  if (!a || !b || c.args.length !== 2) return undefined;
  if (c.function === "@in" && b.exprKind.case === "listExpr") {
    const read = fieldReader(a);
    const list = b.exprKind.value as { elements: LowerExpr[]; optionalIndices: number[] };
    if (!read || list.optionalIndices.length > 0) return undefined;
    const values = list.elements.map(stringConst);
    if (values.some((v) => v === undefined)) return undefined;
    const set = new Set(values as string[]);
    return (req) => {
      const v = read(req);
      return v === undefined ? undefined : set.has(v);
    };
  }
  if (c.function === "_==_" || c.function === "_!=_") {
    const eq = c.function === "_==_";
    const read = fieldReader(a) ?? fieldReader(b);
    const lit = stringConst(b) ?? stringConst(a);
    if (!read || lit === undefined) return undefined;
    return (req) => {
      const v = read(req);
      return v === undefined ? undefined : (v === lit) === eq;
    };
  }
  return undefined;
}

/** The conjuncts of an && chain, in evaluation (source) order. */
function conjuncts(e: LowerExpr, out: LowerExpr[]): void {
  const c = call(e);
  if (c && c.function === "_&&_" && !c.target && c.args.length === 2) {
    conjuncts(c.args[0]!, out);
    conjuncts(c.args[1]!, out);
  } else out.push(e);
}

/** The pre-filter of an expression (undefined when its first conjunct is not a plain field test). */
export function prefilterOf(expr: LowerExpr): Prefilter | undefined {
  const all: LowerExpr[] = [];
  conjuncts(expr, all);
  const tests: ((req: Readonly<Record<string, unknown>>) => boolean | undefined)[] = [];
  for (const e of all) {
    const t = conjunct(e);
    if (!t) break; // only the leading ones: later ones run after something that might fail
    tests.push(t);
  }
  if (tests.length === 0) return undefined;
  // When every conjunct is a field test, all of them true means the condition is true.
  const complete = tests.length === all.length;
  return (req) => {
    for (const t of tests) {
      const r = t(req);
      if (r === undefined) return undefined; // cannot tell from here on: CEL decides
      if (!r) return false;
    }
    return complete ? true : undefined;
  };
}
