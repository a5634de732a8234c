/**
 * The CEL environment policies are compiled in (@bufbuild/cel; see docs/cel-library-choice.md).
 *
 * - Expressions are parsed, checked and planned once, when a policy changes; the request
 *   path only calls the planned function.
 * - Checks at apply time: unknown variables, unknown `request.*` fields, undeclared
 *   `variables.*`, unknown functions, and AST size / depth / comprehension-nesting limits.
 * - `matches()` runs on RE2 semantics (linear time), with compiled patterns cached.
 * - JSON numbers that are integral become CEL ints, so `object.spec.replicas + 1 == 4` works.
 * - Evaluation error messages are cut before any quoted text, so object values (Secret
 *   data) never reach a message.
 */
import { type CelEnv, celEnv, celList, celMap, isCelError, parse, plan } from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { RE2JS } from "@bufbuild/re2";

export const MAX_AST_NODES = 400;
export const MAX_AST_DEPTH = 40;
export const MAX_COMPREHENSION_NESTING = 2;
export const MAX_REGEX_CACHE = 512;

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

export function policyCelEnv(): CelEnv {
  sharedEnv ??= celEnv({ funcs: strings, re2: cachingRe2 });
  return sharedEnv;
}

export type Activation = Record<string, unknown>;

export interface CompiledExpression {
  readonly source: string;
  /** Where the expression lives in the policy, e.g. `spec.rules[2].condition`. */
  readonly path: string;
  /** Evaluates; returns the CEL value or an EvaluationError (never throws). */
  evaluate(activation: Activation): unknown;
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
}

/**
 * Parses, checks and plans one expression. `declaredVariables` are the policy's
 * `variables.*` names visible at this point (earlier variables only, for variables).
 */
export function compileExpression(
  source: string,
  path: string,
  declaredVariables: ReadonlySet<string>,
): CompiledExpression | CompileError {
  const env = policyCelEnv();
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(source);
  } catch (err) {
    return { path, message: `invalid CEL syntax: ${firstLine(err)}` };
  }
  const problems: string[] = [];
  const stats = { nodes: 0, maxDepth: 0 };
  walk(
    parsed.expr as unknown as AstExpr,
    { locals: new Set(), variables: declaredVariables },
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
    program = plan(env, parsed) as (ctx?: Record<string, never>) => unknown;
  } catch (err) {
    return { path, message: `cannot plan expression: ${firstLine(err)}` };
  }
  return {
    source,
    path,
    evaluate(activation: Activation): unknown {
      let out: unknown;
      try {
        out = program(activation as Record<string, never>);
      } catch (err) {
        return new EvaluationError(path, safeDetail(firstLine(err)));
      }
      if (isCelError(out)) return new EvaluationError(path, safeDetail(String((out as Error).message)));
      return out;
    },
  };
}

function walk(
  e: AstExpr | undefined,
  scope: Scope,
  depth: number,
  comprehensionDepth: number,
  stats: { nodes: number; maxDepth: number },
  problems: string[],
): void {
  if (!e) return;
  stats.nodes++;
  if (depth > stats.maxDepth) stats.maxDepth = depth;
  if (stats.nodes > MAX_AST_NODES * 4) return; // stop walking absurd trees early
  const next = (x: unknown, s: Scope = scope, cd = comprehensionDepth) =>
    walk(x as AstExpr | undefined, s, depth + 1, cd, stats, problems);
  const { case: kind, value } = e.exprKind;
  switch (kind) {
    case "constExpr":
      return;
    case "identExpr": {
      const name = (value as { name: string }).name;
      if (!scope.locals.has(name) && !(TOP_LEVEL_VARIABLES as readonly string[]).includes(name)) {
        problems.push(`undeclared reference to '${name}' (available: ${TOP_LEVEL_VARIABLES.join(", ")})`);
      }
      return;
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
          if (base === "variables" && !scope.variables.has(sel.field)) {
            problems.push(
              `variables.${sel.field} is not declared${scope.variables.size ? ` before this point (declared: ${[...scope.variables].join(", ")})` : ""}`,
            );
          }
        }
      }
      next(sel.operand);
      return;
    }
    case "callExpr": {
      const call = value as { target?: AstExpr; function: string; args: AstExpr[] };
      // Operators (_&&_, _[_], @not_strictly_false, ...) are special forms the planner resolves itself.
      const isOperator = call.function.startsWith("_") || call.function.startsWith("@");
      if (!isOperator && !policyCelEnv().funcs.find(call.function))
        problems.push(`unknown function '${call.function}'`);
      next(call.target);
      for (const a of call.args) next(a);
      return;
    }
    case "listExpr":
      for (const el of (value as { elements: AstExpr[] }).elements) next(el);
      return;
    case "structExpr":
      for (const entry of (
        value as { entries: { keyKind: { case: string; value: unknown }; value: AstExpr }[] }
      ).entries) {
        if (entry.keyKind.case === "mapKey") next(entry.keyKind.value);
        next(entry.value);
      }
      return;
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
      next(c.iterRange);
      next(c.accuInit);
      const inner: Scope = {
        locals: new Set([...scope.locals, c.iterVar, c.accuVar, ...(c.iterVar2 ? [c.iterVar2] : [])]),
        variables: scope.variables,
      };
      next(c.loopCondition, inner, nesting);
      next(c.loopStep, inner, nesting);
      next(c.result, { locals: new Set([...scope.locals, c.accuVar]), variables: scope.variables }, nesting);
      return;
    }
    default:
      problems.push(`unsupported expression (${kind ?? "empty"})`);
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
