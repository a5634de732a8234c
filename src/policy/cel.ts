/**
 * The CEL environment policies are compiled in (@bufbuild/cel; see docs/cel-library-choice.md).
 *
 * - Expressions are parsed, checked and planned once, when a policy changes; the request
 *   path only calls the planned function.
 * - Checks at apply time: unknown variables, unknown `request.*` fields, undeclared
 *   `variables.*`, unknown functions, and AST size / depth / comprehension-nesting limits.
 * - `matches()` runs on RE2 semantics (linear time), with compiled patterns cached.
 * - Cost is bounded twice (issue 10): at apply time, a comprehension over request data nested
 *   inside another one over request data (cost quadratic in what the agent sends) is
 *   rejected; at evaluation time every function call and every comprehension iteration is
 *   charged against EVALUATION_COST_LIMIT, and the evaluation is interrupted (thrown out of
 *   the interpreter) the moment the budget runs out, failing closed.
 * - JSON numbers that are integral become CEL ints, so `object.spec.replicas + 1 == 4` works.
 * - Evaluation error messages are cut before any quoted text, so object values (Secret
 *   data) never reach a message.
 */
import {
  type CelEnv,
  CelScalar,
  celEnv,
  celList,
  celMap,
  celMethod,
  isCelError,
  isCelList,
  isCelMap,
  parse,
  plan,
} from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { RE2JS } from "@bufbuild/re2";

export const MAX_AST_NODES = 400;
export const MAX_AST_DEPTH = 40;
export const MAX_COMPREHENSION_NESTING = 2;
export const MAX_REGEX_CACHE = 512;
/**
 * Cost units one evaluation of one expression may spend (Kubernetes' per-call limit for CEL
 * in admission is the same 1,000,000). A function call costs 1 plus the size of its arguments
 * and result (list and map elements, string length / 10), a comprehension 1 per iteration
 * plus the size of its range. Ordinary policy expressions spend tens to a few thousand; one
 * that reaches the limit has run for a few hundred milliseconds at most (README, "Cost").
 */
export const EVALUATION_COST_LIMIT = 1_000_000;
/** Characters of a string that cost one unit (Kubernetes charges string traversal at 0.1 per character). */
export const STRING_CHARS_PER_UNIT = 10;

/** The top-level variables an expression may use. */
export const TOP_LEVEL_VARIABLES = [
  "request",
  "object",
  "oldObject",
  "namespaceObject",
  "variables",
] as const;

/** Fields of `request` (the AdmissionRequest) that expressions may read. */
export const REQUEST_FIELDS = new Set([
  "uid",
  "kind",
  "resource",
  "subResource",
  "requestKind",
  "requestResource",
  "requestSubResource",
  "name",
  "namespace",
  "operation",
  "userInfo",
  "dryRun",
  "options",
]);

const regexCache = new Map<string, { test(text: string): boolean }>();

const cachingRe2 = {
  compile(pattern: string) {
    let m = regexCache.get(pattern);
    if (!m) {
      m = RE2JS.compile(pattern);
      if (regexCache.size >= MAX_REGEX_CACHE) regexCache.clear();
      regexCache.set(pattern, m);
    }
    return m;
  },
};

let sharedEnv: CelEnv | undefined;
let meteredEnv: CelEnv | undefined;

/** The environment expressions are checked against (function names, namespaces). */
export function policyCelEnv(): CelEnv {
  sharedEnv ??= celEnv({ funcs: [...strings, ...linearReplace], re2: cachingRe2 });
  return sharedEnv;
}

/**
 * `replace` in linear time, with cel-go's semantics (Kubernetes' CEL): at most n replacements,
 * all when n is absent or negative; an empty `from` matches before every character and at the
 * end. (The library's own rebuilds and re-searches the whole string per occurrence: quadratic,
 * so one call on a 1 MiB string could run for minutes.)
 */
function replaceLinear(s: string, from: string, to: string, n?: bigint): string {
  const limit = n === undefined || n < 0n ? Number.POSITIVE_INFINITY : Number(n);
  const parts: string[] = [];
  let count = 0;
  if (from === "") {
    for (const ch of s) {
      if (count++ < limit) parts.push(to);
      parts.push(ch);
    }
    if (count < limit) parts.push(to);
    return parts.join("");
  }
  let start = 0;
  for (let i = s.indexOf(from); i !== -1 && count < limit; i = s.indexOf(from, start), count++) {
    parts.push(s.slice(start, i), to);
    start = i + from.length;
  }
  parts.push(s.slice(start));
  return parts.join("");
}

const { STRING, INT } = CelScalar;
const linearReplace = [
  celMethod("replace", STRING, [STRING, STRING], STRING, function (this: string, from: string, to: string) {
    return replaceLinear(this, from, to);
  }),
  celMethod(
    "replace",
    STRING,
    [STRING, STRING, INT],
    STRING,
    function (this: string, from: string, to: string, n: bigint) {
      return replaceLinear(this, from, to, n);
    },
  ),
];

/**
 * Upper bounds on the length of what a call returns, charged before it runs, for the calls
 * whose output can be far larger than their inputs.
 */
const OUTPUT_BOUNDS: Record<string, (target: unknown, args: unknown[]) => number> = {
  replace(target, [from, to, n]) {
    if (typeof target !== "string" || typeof from !== "string" || typeof to !== "string") return 0;
    const matches = from === "" ? target.length + 1 : Math.floor(target.length / from.length);
    const count = typeof n === "bigint" && n >= 0n ? Math.min(matches, Number(n)) : matches;
    return target.length + count * to.length;
  },
  join(target, [sep]) {
    if (!isCelList(target)) return 0;
    let total = Math.max(0, target.size - 1) * (typeof sep === "string" ? sep.length : 0);
    for (const item of target) if (typeof item === "string") total += item.length;
    return total;
  },
};

/** Thrown out of the interpreter when the budget runs out; never escapes `evaluate`. */
class CostLimitExceeded extends Error {}

/**
 * The cost meter. Evaluation is synchronous and single-threaded, so one meter serves every
 * expression: `evaluate` arms it before running the planned program and disarms it after.
 */
const meter = { remaining: Number.POSITIVE_INFINITY, exceeded: false };

function charge(units: number): void {
  meter.remaining -= units;
  if (meter.remaining < 0) {
    meter.exceeded = true;
    throw new CostLimitExceeded();
  }
}

/** Size of a CEL value for cost accounting: elements of lists and maps, string length / 10. */
function sizeOf(v: unknown): number {
  const type = typeof v;
  if (type === "string") return Math.ceil((v as string).length / STRING_CHARS_PER_UNIT);
  if (type !== "object" || v === null) return 0;
  if (v instanceof Uint8Array) return Math.ceil(v.length / STRING_CHARS_PER_UNIT);
  if (isCelList(v) || isCelMap(v)) return v.size;
  return 0;
}

const deepSizes = new WeakMap<object, number>();

/**
 * Size of a value including everything nested in it, for the calls that walk all of it
 * (equality, membership in a list). Memoized per value, so each part of a request is walked once.
 */
function deepSizeOf(v: unknown): number {
  if (!isCelList(v) && !isCelMap(v)) return sizeOf(v);
  const known = deepSizes.get(v);
  if (known !== undefined) return known;
  let total = v.size;
  if (isCelList(v)) for (const el of v) total += deepSizeOf(el);
  else for (const [k, el] of v) total += sizeOf(k) + deepSizeOf(el);
  deepSizes.set(v, total);
  return total;
}

/** Calls whose work is proportional to everything nested in their arguments. */
const DEEP_CALLS = new Set(["_==_", "_!=_", "@in"]);

type FuncResolver = CelEnv["funcs"];
type FuncGroup = NonNullable<ReturnType<FuncResolver["find"]>>;

/** Planner-internal calls the AST rewrite adds: each charges its argument and passes it through. */
const ITERATION_CALL = "@countersign_iteration";
const RANGE_CALL = "@countersign_range";
const IN_CALL = "@in";

function passThrough(name: string, baseCost: number): FuncGroup {
  return {
    name,
    *[Symbol.iterator]() {},
    call(_id: number, _target: unknown, args: unknown[]) {
      charge(baseCost + (name === RANGE_CALL ? sizeOf(args[0]) : 0));
      return args[0];
    },
  } as unknown as FuncGroup;
}

/** Wraps a function group so every call is charged before it runs and for what it returns. */
function meteredGroup(group: FuncGroup): FuncGroup {
  const isIn = group.name === IN_CALL;
  const size = DEEP_CALLS.has(group.name) ? deepSizeOf : sizeOf;
  const outputBound = OUTPUT_BOUNDS[group.name];
  return {
    name: group.name,
    [Symbol.iterator]: () => group[Symbol.iterator](),
    call(id: number, target: unknown, args: unknown[]) {
      let units = 1 + sizeOf(target);
      // `k in someMap` is a hash lookup: charge the key only, not the map.
      if (isIn && isCelMap(args[1])) units += size(args[0]);
      else for (let i = 0; i < args.length; i++) units += size(args[i]);
      if (outputBound) units += Math.ceil(outputBound(target, args) / STRING_CHARS_PER_UNIT);
      charge(units);
      const out = group.call(id, target as never, args as never);
      if (typeof out === "string" || typeof out === "object") charge(sizeOf(out));
      return out;
    },
  } as unknown as FuncGroup;
}

/** The environment programs are planned in: the policy environment with every function metered. */
function meteredCelEnv(): CelEnv {
  if (meteredEnv) return meteredEnv;
  const env = policyCelEnv();
  const groups = new Map<string, FuncGroup | undefined>([
    [ITERATION_CALL, passThrough(ITERATION_CALL, 1)],
    [RANGE_CALL, passThrough(RANGE_CALL, 1)],
  ]);
  const funcs = {
    [Symbol.iterator]: () => env.funcs[Symbol.iterator](),
    find(name: string) {
      if (!groups.has(name)) {
        const g = env.funcs.find(name);
        groups.set(name, g && meteredGroup(g));
      }
      return groups.get(name);
    },
  } as unknown as FuncResolver;
  meteredEnv = {
    namespace: env.namespace,
    registry: env.registry,
    funcs,
    variables: env.variables,
  } as unknown as CelEnv;
  return meteredEnv;
}

/**
 * Rewrites every comprehension so its range and each iteration are charged:
 * `range` becomes `@countersign_range(range)`, `loopCondition` `@countersign_iteration(cond)`.
 */
function meterComprehensions(e: AstExpr | undefined): void {
  if (!e) return;
  const wrap = (fn: string, inner: AstExpr): AstExpr => ({
    id: inner.id ?? 0n,
    exprKind: { case: "callExpr", value: { function: fn, args: [inner], target: undefined } },
  });
  const { case: kind, value } = e.exprKind;
  switch (kind) {
    case "selectExpr":
      meterComprehensions((value as { operand: AstExpr }).operand);
      return;
    case "callExpr": {
      const call = value as { target?: AstExpr; args: AstExpr[] };
      meterComprehensions(call.target);
      for (const a of call.args) meterComprehensions(a);
      return;
    }
    case "listExpr":
      for (const el of (value as { elements: AstExpr[] }).elements) meterComprehensions(el);
      return;
    case "structExpr":
      for (const entry of (
        value as { entries: { keyKind: { case: string; value: unknown }; value: AstExpr }[] }
      ).entries) {
        if (entry.keyKind.case === "mapKey") meterComprehensions(entry.keyKind.value as AstExpr);
        meterComprehensions(entry.value);
      }
      return;
    case "comprehensionExpr": {
      const c = value as Record<"iterRange" | "accuInit" | "loopCondition" | "loopStep" | "result", AstExpr>;
      for (const part of ["iterRange", "accuInit", "loopCondition", "loopStep", "result"] as const)
        meterComprehensions(c[part]);
      c.iterRange = wrap(RANGE_CALL, c.iterRange);
      c.loopCondition = wrap(ITERATION_CALL, c.loopCondition);
      return;
    }
    default:
      return;
  }
}

export type Activation = Record<string, unknown>;

export interface CompiledExpression {
  readonly source: string;
  /** Where the expression lives in the policy, e.g. `spec.rules[2].condition`. */
  readonly path: string;
  /** Whether the expression reads request data (object, oldObject, request, namespaceObject, such variables). */
  readonly readsRequest: boolean;
  /**
   * Evaluates within a cost budget (default EVALUATION_COST_LIMIT); returns the CEL value or
   * an EvaluationError (never throws), also when the budget ran out.
   */
  evaluate(activation: Activation, costLimit?: number): unknown;
}

export class EvaluationError extends Error {
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

export interface CompileError {
  path: string;
  message: string;
}

interface AstExpr {
  id?: bigint;
  exprKind: { case: string | undefined; value?: unknown };
}

interface Scope {
  locals: Set<string>;
  variables: ReadonlySet<string>;
  /** Declared variables whose expressions read no request data. */
  constantVariables: ReadonlySet<string>;
  /** Inside the body of a comprehension whose range reads request data. */
  insideRequestLoop: boolean;
}

interface WalkStats {
  nodes: number;
  maxDepth: number;
  readsRequest: boolean;
}

export const QUADRATIC_MESSAGE =
  "cost grows with the square of the request: a comprehension (all, exists, map, filter) over request data inside another one over request data; an agent sending a long list would make it run for minutes. Iterate the request once (e.g. compare with a literal list, or iterate a part of the outer element)";
export const COST_LIMIT_MESSAGE = "the expression exceeded its evaluation cost budget";

/**
 * Parses, checks and plans one expression. `declaredVariables` are the policy's
 * `variables.*` names visible at this point (earlier variables only, for variables).
 */
export function compileExpression(
  source: string,
  path: string,
  declaredVariables: ReadonlySet<string>,
  constantVariables: ReadonlySet<string> = new Set(),
): CompiledExpression | CompileError {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(source);
  } catch (err) {
    return { path, message: `invalid CEL syntax: ${firstLine(err)}` };
  }
  const problems: string[] = [];
  const stats: WalkStats = { nodes: 0, maxDepth: 0, readsRequest: false };
  walk(
    parsed.expr as unknown as AstExpr,
    { locals: new Set(), variables: declaredVariables, constantVariables, insideRequestLoop: false },
    1,
    0,
    stats,
    problems,
  );
  if (stats.nodes > MAX_AST_NODES) {
    problems.push(`expression is too large (${stats.nodes} nodes; the limit is ${MAX_AST_NODES})`);
  }
  if (stats.maxDepth > MAX_AST_DEPTH) {
    problems.push(`expression is nested too deeply (depth ${stats.maxDepth}; the limit is ${MAX_AST_DEPTH})`);
  }
  if (problems.length > 0) return { path, message: [...new Set(problems)].join("; ") };
  let program: (ctx?: Record<string, never>) => unknown;
  try {
    meterComprehensions(parsed.expr as unknown as AstExpr);
    program = plan(meteredCelEnv(), parsed) as (ctx?: Record<string, never>) => unknown;
  } catch (err) {
    return { path, message: `cannot plan expression: ${firstLine(err)}` };
  }
  return {
    source,
    path,
    readsRequest: stats.readsRequest,
    evaluate(activation: Activation, costLimit = EVALUATION_COST_LIMIT): unknown {
      let out: unknown;
      let thrown: unknown;
      meter.remaining = costLimit;
      meter.exceeded = false;
      try {
        out = program(activation as Record<string, never>);
      } catch (err) {
        thrown = err;
      } finally {
        meter.remaining = Number.POSITIVE_INFINITY;
      }
      // The library turns the interrupt into a CEL error, and `||`/`&&` may even absorb that
      // error into a value: whatever came out, an evaluation that ran out of budget failed.
      if (meter.exceeded) {
        meter.exceeded = false;
        return new EvaluationError(path, `${COST_LIMIT_MESSAGE} (${costLimit} units); it was stopped`);
      }
      if (thrown !== undefined) return new EvaluationError(path, safeDetail(firstLine(thrown)));
      if (isCelError(out)) return new EvaluationError(path, safeDetail(String((out as Error).message)));
      return out;
    },
  };
}

/**
 * Checks one expression tree. Returns whether the subtree reads request data (a top-level
 * variable other than a constant `variables.*`), which the quadratic-cost check needs.
 */
function walk(
  e: AstExpr | undefined,
  scope: Scope,
  depth: number,
  comprehensionDepth: number,
  stats: WalkStats,
  problems: string[],
): boolean {
  if (!e) return false;
  stats.nodes++;
  if (depth > stats.maxDepth) stats.maxDepth = depth;
  if (stats.nodes > MAX_AST_NODES * 4) return false; // stop walking absurd trees early
  const next = (x: unknown, s: Scope = scope, cd = comprehensionDepth): boolean =>
    walk(x as AstExpr | undefined, s, depth + 1, cd, stats, problems);
  const { case: kind, value } = e.exprKind;
  switch (kind) {
    case "constExpr":
      return false;
    case "identExpr": {
      const name = (value as { name: string }).name;
      if (scope.locals.has(name)) return false;
      if (!(TOP_LEVEL_VARIABLES as readonly string[]).includes(name)) {
        problems.push(`undeclared reference to '${name}' (available: ${TOP_LEVEL_VARIABLES.join(", ")})`);
        return false;
      }
      // `variables` as a whole counts as request data; `variables.NAME` is refined below.
      stats.readsRequest = true;
      return true;
    }
    case "selectExpr": {
      const sel = value as { operand: AstExpr; field: string };
      const operand = sel.operand?.exprKind;
      if (operand?.case === "identExpr") {
        const base = (operand.value as { name: string }).name;
        if (!scope.locals.has(base)) {
          if (base === "request" && !REQUEST_FIELDS.has(sel.field)) {
            problems.push(`request has no field '${sel.field}' (fields: ${[...REQUEST_FIELDS].join(", ")})`);
          }
          if (base === "variables") {
            if (!scope.variables.has(sel.field)) {
              problems.push(
                `variables.${sel.field} is not declared${scope.variables.size ? ` before this point (declared: ${[...scope.variables].join(", ")})` : ""}`,
              );
            }
            stats.nodes++;
            const reads = !scope.constantVariables.has(sel.field);
            if (reads) stats.readsRequest = true;
            return reads;
          }
        }
      }
      return next(sel.operand);
    }
    case "callExpr": {
      const call = value as { target?: AstExpr; function: string; args: AstExpr[] };
      // Operators (_&&_, _[_], @not_strictly_false, ...) are special forms the planner resolves itself.
      const isOperator = call.function.startsWith("_") || call.function.startsWith("@");
      if (!isOperator && !policyCelEnv().funcs.find(call.function))
        problems.push(`unknown function '${call.function}'`);
      let reads = next(call.target);
      for (const a of call.args) reads = next(a) || reads;
      return reads;
    }
    case "listExpr": {
      let reads = false;
      for (const el of (value as { elements: AstExpr[] }).elements) reads = next(el) || reads;
      return reads;
    }
    case "structExpr": {
      let reads = false;
      for (const entry of (
        value as { entries: { keyKind: { case: string; value: unknown }; value: AstExpr }[] }
      ).entries) {
        if (entry.keyKind.case === "mapKey") reads = next(entry.keyKind.value) || reads;
        reads = next(entry.value) || reads;
      }
      return reads;
    }
    case "comprehensionExpr": {
      const c = value as {
        iterVar: string;
        iterVar2?: string;
        accuVar: string;
        iterRange: AstExpr;
        accuInit: AstExpr;
        loopCondition: AstExpr;
        loopStep: AstExpr;
        result: AstExpr;
      };
      const nesting = comprehensionDepth + 1;
      if (nesting > MAX_COMPREHENSION_NESTING) {
        problems.push(
          `comprehensions (all, exists, map, filter) nested ${nesting} deep; the limit is ${MAX_COMPREHENSION_NESTING}`,
        );
      }
      const rangeReadsRequest = next(c.iterRange);
      // The range is evaluated once per iteration of every enclosing loop: a range over request
      // data inside a loop over request data costs n² for the n elements an agent can send.
      // (A range read through the outer loop's element, like c.env in containers.all(c, ...),
      // walks disjoint parts of the request and stays linear.)
      if (rangeReadsRequest && scope.insideRequestLoop) {
        problems.push(QUADRATIC_MESSAGE);
      }
      let reads = rangeReadsRequest;
      reads = next(c.accuInit) || reads;
      const inner: Scope = {
        ...scope,
        locals: new Set([...scope.locals, c.iterVar, c.accuVar, ...(c.iterVar2 ? [c.iterVar2] : [])]),
        insideRequestLoop: scope.insideRequestLoop || rangeReadsRequest,
      };
      reads = next(c.loopCondition, inner, nesting) || reads;
      reads = next(c.loopStep, inner, nesting) || reads;
      reads = next(c.result, { ...scope, locals: new Set([...scope.locals, c.accuVar]) }, nesting) || reads;
      return reads;
    }
    default:
      problems.push(`unsupported expression (${kind ?? "empty"})`);
      return false;
  }
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return (msg.split("\n")[0] ?? msg).slice(0, 300);
}

/**
 * Maps an evaluation error to a fixed description. CEL error texts can quote the values
 * they failed on (e.g. "Cannot convert <value> to int"), and values may be Secret data,
 * so only known categories pass, never the library's own wording.
 */
const ERROR_CATEGORIES: [RegExp, string][] = [
  [
    /no such (key|field|attribute)|not found|missing/i,
    "no such key or field (use has() to guard optional fields)",
  ],
  [/overload/i, "no matching overload for the operand types (check int vs double vs string)"],
  [/convert|conversion|parse/i, "type conversion failed"],
  [/divi(de|sion) by zero|modulus by zero/i, "division by zero"],
  [/overflow|out of range|range/i, "value out of range"],
  [/regex|regexp|pattern/i, "invalid regular expression"],
  [/unbound|undeclared|unknown variable/i, "reference to an unbound variable"],
  [/null/i, "operation on a null value"],
  [/expression must return a bool/i, ""],
];

export function safeDetail(message: string): string {
  for (const [re, text] of ERROR_CATEGORIES) {
    if (re.test(message)) return text || message.slice(0, 80);
  }
  return "expression evaluation failed";
}

/**
 * Converts decoded JSON into CEL values once per request: integral numbers become CEL ints
 * (bigint), as Kubernetes' own CEL does for integer fields; objects and arrays become CEL
 * maps and lists. (Handing the library plain objects would make it rebuild a Map on every
 * field access of every expression.)
 */
export function toCel(value: unknown): unknown {
  if (typeof value === "number") return Number.isInteger(value) ? BigInt(value) : value;
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return celList(value.map(toCel) as never);
  const entries = new Map<string, unknown>();
  for (const key in value as Record<string, unknown>) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) entries.set(key, toCel(v));
  }
  return celMap(entries as never);
}

/** A CEL map backed by a live Map, for the `variables` binding filled in as variables evaluate. */
export function liveCelMap(entries: Map<string, unknown>): unknown {
  return celMap(entries as never);
}
