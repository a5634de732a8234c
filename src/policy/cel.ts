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
import {
  type Frame,
  type LowerExpr,
  type Lowered,
  lowerExpression,
  type MemoCell,
  RAW,
} from "./cel-lower.js";
import { type Prefilter, prefilterOf } from "./prefilter.js";

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
const meter = { remaining: Number.POSITIVE_INFINITY, exceeded: false, total: 0 };

/** Cost units charged by every evaluation so far (the decision loop paces its deadline checks by it). */
export function unitsCharged(): number {
  return meter.total;
}

function charge(units: number): void {
  meter.total += units;
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
/** The deep size toCel computed while converting a value (no walk needed later). */
const DEEP_SIZE = Symbol("countersign.cel.deepSize");

/**
 * Size of a value including everything nested in it, for the calls that walk all of it
 * (equality, membership in a list). Memoized per value, so each part of a request is walked once.
 */
function deepSizeOf(v: unknown): number {
  if (!isCelList(v) && !isCelMap(v)) return sizeOf(v);
  const converted = (v as { [DEEP_SIZE]?: number })[DEEP_SIZE];
  if (converted !== undefined) return converted;
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

/** The top-level variables lowered expressions read by slot (TOP_LEVEL_VARIABLES minus `variables`). */
export const FRAME_VARIABLES = ["request", "object", "oldObject", "namespaceObject"] as const;

let loweringEnabled = process.env.COUNTERSIGN_CEL_INTERPRETER !== "1";

/**
 * Whether expressions run lowered (the default) or on the interpreter (tests run the policy
 * suite both ways; COUNTERSIGN_CEL_INTERPRETER=1 starts with the interpreter).
 */
export function setCelLowering(enabled: boolean): void {
  loweringEnabled = enabled;
}

const lowerMeter = {
  charge,
  remaining: () => meter.remaining,
  sizeOf,
  deepSizeOf,
};

/** The metering pass-throughs, called directly by lowered code (the same charges as passThrough). */
const inlineCalls: ReadonlyMap<string, (x: unknown) => unknown> = new Map([
  [
    ITERATION_CALL,
    (x: unknown) => {
      charge(1);
      return x;
    },
  ],
  [
    RANGE_CALL,
    (x: unknown) => {
      charge(1 + sizeOf(x));
      return x;
    },
  ],
]);

/**
 * Sub-expression keys seen while compiling, with how many expressions use each: a key used
 * more than once gets a memo cell when its expressions are lowered, so it runs once per request.
 */
const keyUses = new Map<string, number>();
const memoCells = new Map<string, MemoCell>();
const MAX_SHARED_KEYS = 100_000;

function countKey(key: string): undefined {
  if (keyUses.size >= MAX_SHARED_KEYS) keyUses.clear(); // only sharing is lost, never correctness
  keyUses.set(key, (keyUses.get(key) ?? 0) + 1);
  return undefined;
}

function sharedCell(key: string): MemoCell | undefined {
  if ((keyUses.get(key) ?? 0) < 2) return undefined;
  let cell = memoCells.get(key);
  if (!cell) {
    if (memoCells.size >= MAX_SHARED_KEYS) memoCells.clear();
    cell = { epoch: -1, value: undefined, cost: 0 };
    memoCells.set(key, cell);
  }
  return cell;
}

let frameSerial = 0;

/**
 * What one request's expressions read: the top-level variables (converted to CEL values on
 * first use), the policy's variables by slot. One per request and policy; the same `top`
 * array (and serial) for every policy of a request, so shared sub-expressions run once.
 */
export class EvalFrame implements Frame {
  locals: unknown[] = [];
  vars: unknown[] = [];
  /** Identifies the request for memo cells. */
  serial: number;
  private activationCache: Activation | undefined;

  constructor(
    readonly top: unknown[],
    /** Converts top-level variable `slot` on first use (undefined: unbound). */
    readonly load: ((slot: number) => unknown) | undefined,
    serial?: number,
    /** Names of `vars`, for the interpreter's `variables` map. */
    private varNames: readonly string[] = [],
  ) {
    this.serial = serial ?? ++frameSerial;
  }

  /** Starts the next policy of the same request: its variables, nothing of the previous policy's. */
  forPolicy(varNames: readonly string[]): EvalFrame {
    this.varNames = varNames;
    this.vars = [];
    this.activationCache = undefined;
    this.activationVars = -1;
    return this;
  }

  value(slot: number): unknown {
    const v = this.top[slot];
    if (v !== undefined || !this.load) return v;
    const loaded = this.load(slot);
    this.top[slot] = loaded;
    return loaded;
  }

  /** The interpreter's activation, for expressions that are not lowered. */
  activation(): Activation {
    if (this.activationCache && this.activationVars === this.vars.length) return this.activationCache;
    const a: Activation = {};
    FRAME_VARIABLES.forEach((name, slot) => {
      const v = this.value(slot);
      if (v !== undefined) a[name] = v;
    });
    const vars = new Map<string, unknown>();
    this.varNames.forEach((n, i) => {
      if (i < this.vars.length) vars.set(n, this.vars[i]);
    });
    a.variables = liveCelMap(vars);
    this.activationCache = a;
    this.activationVars = this.vars.length;
    return a;
  }
  private activationVars = -1;

  /** A frame over an interpreter-style activation (tests, one-off evaluations). */
  static fromActivation(activation: Activation, varNames: readonly string[]): EvalFrame {
    const top = FRAME_VARIABLES.map((n) => activation[n]);
    const frame = new EvalFrame(top, undefined, undefined, varNames);
    const variables = activation.variables;
    if (variables && isCelMap(variables)) {
      frame.vars = varNames.map((n) => variables.get(n));
    }
    frame.activationCache = activation;
    frame.activationVars = frame.vars.length;
    return frame;
  }
}

/**
 * Interpreter access on a value the lowering leaves to the library (a protobuf message): one
 * planned program per kind of access, run on the value.
 */
let accessPrograms:
  | {
      index: (ctx: Record<string, never>) => unknown;
      has: Map<string, (ctx: Record<string, never>) => unknown>;
    }
  | undefined;
function interpreterAccess(obj: unknown, key: unknown, _id: number, select: boolean): unknown {
  accessPrograms ??= {
    index: plan(meteredCelEnv(), parse("_o[_k]")) as never,
    has: new Map(),
  };
  if (select || typeof key !== "string") {
    return accessPrograms.index({ _o: obj, _k: key } as never);
  }
  let has = accessPrograms.has.get(key);
  if (!has) {
    try {
      has = plan(meteredCelEnv(), parse(`has(_o.${key})`)) as never;
    } catch {
      has = () => new Error("invalid field name");
    }
    accessPrograms.has.set(key, has!);
  }
  return has!({ _o: obj } as never);
}

/**
 * Runs `fn` inside the library's evaluation context (some library functions, e.g. equality of
 * protobuf values, read the type registry from it): one planned call whose function is `fn`.
 */
let contextRunner: (() => void) | undefined;
let contextProgram: (() => unknown) | undefined;
let inContext = false;
export function inCelContext<T>(fn: () => T): T {
  if (inContext) return fn();
  contextProgram ??= plan(contextEnv(), {
    id: 1n,
    exprKind: { case: "callExpr", value: { function: CONTEXT_CALL, args: [], target: undefined } },
  } as never) as () => unknown;
  let out: T | undefined;
  let thrown: unknown;
  let failed = false;
  const previous = contextRunner;
  contextRunner = () => {
    inContext = true;
    try {
      out = fn();
    } catch (err) {
      failed = true;
      thrown = err;
    } finally {
      inContext = false;
    }
  };
  try {
    contextProgram();
  } finally {
    contextRunner = previous;
  }
  if (failed) throw thrown;
  return out as T;
}

const CONTEXT_CALL = "@countersign_context";
let contextEnvCache: CelEnv | undefined;
function contextEnv(): CelEnv {
  if (contextEnvCache) return contextEnvCache;
  const env = meteredCelEnv();
  const group = {
    name: CONTEXT_CALL,
    *[Symbol.iterator]() {},
    call() {
      contextRunner?.();
      return true;
    },
  } as unknown as FuncGroup;
  contextEnvCache = {
    namespace: env.namespace,
    registry: env.registry,
    funcs: {
      [Symbol.iterator]: () => env.funcs[Symbol.iterator](),
      find: (name: string) => (name === CONTEXT_CALL ? group : env.funcs.find(name)),
    },
    variables: env.variables,
  } as unknown as CelEnv;
  return contextEnvCache;
}

export interface CompiledExpression {
  readonly source: string;
  /** Where the expression lives in the policy, e.g. `spec.rules[2].condition`. */
  readonly path: string;
  /** Whether the expression reads request data (object, oldObject, request, namespaceObject, such variables). */
  readonly readsRequest: boolean;
  /** Whether the expression runs lowered (false: it keeps the interpreter; see cel-lower.ts). */
  readonly lowered: boolean;
  /** A test on the decoded request that is false only when the expression is certainly false (prefilter.ts). */
  readonly prefilter?: Prefilter;
  /**
   * Evaluates within a cost budget (default EVALUATION_COST_LIMIT); returns the CEL value or
   * an EvaluationError (never throws), also when the budget ran out. Takes an EvalFrame (the
   * request path) or an interpreter-style activation.
   */
  evaluate(activation: Activation | EvalFrame, costLimit?: number): unknown;
  /** The same evaluation on @bufbuild/cel's interpreter (the reference the lowering is tested against). */
  interpret(activation: Activation | EvalFrame, costLimit?: number): unknown;
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
  const prefilter = prefilterOf(parsed.expr as unknown as LowerExpr);
  let program: (ctx?: Record<string, never>) => unknown;
  try {
    meterComprehensions(parsed.expr as unknown as AstExpr);
    program = plan(meteredCelEnv(), parsed) as (ctx?: Record<string, never>) => unknown;
  } catch (err) {
    return { path, message: `cannot plan expression: ${firstLine(err)}` };
  }
  const varNames = [...declaredVariables];
  const lowerWith = (memo: ((key: string) => MemoCell | undefined) | undefined) =>
    lowerExpression(
      parsed.expr as unknown as LowerExpr,
      {
        variables: FRAME_VARIABLES,
        policyVariables: varNames,
        funcs: meteredCelEnv().funcs as never,
        meter: lowerMeter,
        inline: inlineCalls,
        ...(memo ? { memo } : {}),
      },
      interpreterAccess,
    );
  // Lowered once now (which also counts the sub-expressions it shares with others), and again
  // on first use, when every policy compiled with it has been counted: shared ones get memo cells.
  const probe = lowerWith(countKey);
  let lowered: (Lowered & { locals_: unknown[] }) | undefined;
  const finish = (out: unknown, thrown: unknown, costLimit: number): unknown => {
    // The library turns the interrupt into a CEL error, and `||`/`&&` may even absorb that
    // error into a value: whatever came out, an evaluation that ran out of budget failed.
    if (meter.exceeded) {
      meter.exceeded = false;
      return new EvaluationError(path, `${COST_LIMIT_MESSAGE} (${costLimit} units); it was stopped`);
    }
    if (thrown !== undefined) return new EvaluationError(path, safeDetail(firstLine(thrown)));
    if (isCelError(out)) return new EvaluationError(path, safeDetail(String((out as Error).message)));
    return out;
  };
  const interpret = (input: Activation | EvalFrame, costLimit = EVALUATION_COST_LIMIT): unknown => {
    const activation = input instanceof EvalFrame ? input.activation() : input;
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
    return finish(out, thrown, costLimit);
  };
  return {
    source,
    path,
    readsRequest: stats.readsRequest,
    lowered: probe !== undefined,
    ...(prefilter ? { prefilter } : {}),
    interpret,
    evaluate(input: Activation | EvalFrame, costLimit = EVALUATION_COST_LIMIT): unknown {
      if (!probe || !loweringEnabled) return interpret(input, costLimit);
      if (!lowered) {
        const l = lowerWith(sharedCell) ?? probe;
        lowered = { ...l, locals_: new Array(l.locals) };
      }
      const frame = input instanceof EvalFrame ? input : EvalFrame.fromActivation(input, varNames);
      frame.locals = lowered.locals_;
      const run = lowered.run;
      let out: unknown;
      let thrown: unknown;
      meter.remaining = costLimit;
      meter.exceeded = false;
      try {
        out = inContext ? run(frame) : inCelContext(() => run(frame));
      } catch (err) {
        thrown = err;
      } finally {
        meter.remaining = Number.POSITIVE_INFINITY;
      }
      return finish(out, thrown, costLimit);
    },
  };
}

/** An expression over arbitrary variables, runnable lowered and on the interpreter. */
export interface CelProgram {
  /** False when the lowering left the expression to the interpreter. */
  lowered: boolean;
  /** Raw CEL result (a value or a CelError) of the lowered path (the interpreter when not lowered). */
  run(bindings: Record<string, unknown>): unknown;
  /** Raw CEL result of @bufbuild/cel's interpreter. */
  interpret(bindings: Record<string, unknown>): unknown;
}

/** Top-level conversion of a binding the way the library's activation converts it. */
function bindingToCel(v: unknown): unknown {
  if (Array.isArray(v)) return celList(v as never);
  if (v instanceof Map) return celMap(v as never);
  if (v !== null && typeof v === "object" && (v as object).constructor === Object) {
    return celMap(new Map(Object.entries(v)) as never);
  }
  return v;
}

/**
 * Parses and plans `source` in the policy environment (with metering, no budget) over the given
 * variables, without Countersign's apply-time checks: the conformance test runs the cel-spec
 * suite through both paths with it. Throws on a parse or plan error.
 */
export function celProgram(source: string, variableNames: readonly string[]): CelProgram {
  const parsed = parse(source);
  meterComprehensions(parsed.expr as unknown as AstExpr);
  const program = plan(meteredCelEnv(), parsed) as (ctx?: Record<string, never>) => unknown;
  const lowered = lowerExpression(
    parsed.expr as unknown as LowerExpr,
    {
      variables: variableNames,
      funcs: meteredCelEnv().funcs as never,
      meter: lowerMeter,
      inline: inlineCalls,
    },
    interpreterAccess,
  );
  const locals = new Array(lowered?.locals ?? 0);
  const interpret = (bindings: Record<string, unknown>) => program(bindings as Record<string, never>);
  return {
    lowered: lowered !== undefined,
    interpret,
    run(bindings) {
      if (!lowered) return interpret(bindings);
      const frame = new EvalFrame(
        variableNames.map((n) => bindingToCel(bindings[n])),
        undefined,
      );
      frame.locals = locals;
      return inCelContext(() => lowered.run(frame));
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
  // Each list and map also records the array / Map behind it (read directly by the lowered
  // code, cel-lower.ts RAW) and its deep size (what deepSizeOf would walk it for).
  if (Array.isArray(value)) {
    const items = new Array(value.length);
    let size = value.length;
    for (let i = 0; i < value.length; i++) {
      const v = toCel(value[i]);
      items[i] = v;
      size += deepSizeOf(v);
    }
    const list = celList(items as never) as unknown as Record<symbol, unknown>;
    list[RAW] = items;
    list[DEEP_SIZE] = size;
    return list;
  }
  const entries = new Map<string, unknown>();
  let size = 0;
  for (const key in value as Record<string, unknown>) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) {
      const c = toCel(v);
      entries.set(key, c);
      size += 1 + Math.ceil(key.length / STRING_CHARS_PER_UNIT) + deepSizeOf(c);
    }
  }
  const map = celMap(entries as never) as unknown as Record<symbol, unknown>;
  map[RAW] = entries;
  map[DEEP_SIZE] = size;
  return map;
}

/** A CEL map backed by a live Map, for the `variables` binding filled in as variables evaluate. */
export function liveCelMap(entries: Map<string, unknown>): unknown {
  return celMap(entries as never);
}
