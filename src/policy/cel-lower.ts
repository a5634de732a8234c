/**
 * Lowers a parsed (and cost-rewritten) CEL expression once into a tree of JavaScript closures,
 * so the request path runs plain function calls instead of @bufbuild/cel's attribute
 * interpreter. No code is generated from policy text (no eval, no new Function): every node
 * becomes one of the fixed closures below.
 *
 * Same language by construction, and tested against the cel-spec conformance suite
 * (test/unit/cel-lower.test.ts):
 * - every value is the library's own (CelMap, CelList, bigint, ...), every error a CelError
 *   value, and each node follows the library's planner node for node (evaluation order, which
 *   error wins, `&&`/`||` absorbing errors, comprehension scoping);
 * - functions are the library's own function groups, looked up in the same (metered)
 *   environment, so cost metering is unchanged; the few hot operators handled inline
 *   (==, !=, <, <=, >, >=, !, in, size, startsWith, endsWith, contains on plain values) charge
 *   exactly what the metering wrapper charges and return what the library returns;
 * - variables and comprehension variables are resolved to slots when lowered;
 * - anything else (protobuf messages and types, optionals, qualified function names,
 *   two-variable comprehensions, dotted variable names) is not lowered: `lowerExpression`
 *   returns undefined and the caller keeps the interpreter for that expression.
 *
 * Sub-expressions that read only the request (no comprehension variable, no `variables.*`)
 * and appear in several expressions can share one evaluation per request: `shared` keys name
 * them, and a memo cell keeps the value and the cost units it took, charged again on every
 * reuse, so the budget sees the same cost as without sharing.
 */
import {
  type CelError,
  celError,
  celList,
  celMap,
  celUint,
  isCelError,
  isCelList,
  isCelMap,
  isCelUint,
} from "@bufbuild/cel";

/**
 * On CEL maps and lists Countersign builds from JSON itself (cel.ts toCel): the JS Map or array
 * of already-converted CEL values behind them, so a field read or an iteration skips the
 * library's per-access conversion. Reading through it returns exactly what `get` returns.
 */
export const RAW = Symbol("countersign.cel.raw");

interface Raw {
  [RAW]?: Map<string, unknown> | unknown[];
}

/** The library's map.get(field) for a string key, through the raw Map when there is one. */
function getField(m: { get(k: never): unknown } & Raw, field: string): unknown {
  const raw = m[RAW];
  return raw !== undefined ? (raw as Map<string, unknown>).get(field) : m.get(field as never);
}

/** The AST as @bufbuild/cel's parser produces it (cel.expr.Expr). */
export interface LowerExpr {
  id?: bigint;
  exprKind: { case: string | undefined; value?: unknown };
}

/** What a lowered expression reads: top-level variables by slot, policy variables, locals. */
export interface Frame {
  /** Top-level variables, in the order of `LowerOptions.variables`. */
  top: unknown[];
  /** The policy's `variables.*`, in the order of `LowerOptions.policyVariables`. */
  vars: unknown[];
  /** Comprehension variables of the expression running (sized by `Lowered.locals`). */
  locals: unknown[];
  /** Identifies the request: memo cells of another serial are stale. */
  serial: number;
  /** Top-level variable `slot`, loaded on first use (undefined: unbound). */
  value(slot: number): unknown;
}

export type Node = (f: Frame) => unknown;

interface FuncGroupLike {
  call(id: number, target: unknown, args: unknown[]): unknown;
}

export interface Meter {
  /** Charges units (throws out of the evaluation when the budget runs out). */
  charge(units: number): void;
  /** Units left in the running evaluation. */
  remaining(): number;
  sizeOf(v: unknown): number;
  deepSizeOf(v: unknown): number;
}

/** A memo cell shared by all expressions of a policy set: one evaluation per request. */
export interface MemoCell {
  epoch: number;
  value: unknown;
  cost: number;
}

export interface LowerOptions {
  /** Top-level variable names, in slot order. */
  variables: readonly string[];
  /** Names readable as `variables.NAME` (slot order); absent: `variables` is an ordinary top-level name. */
  policyVariables?: readonly string[];
  /** The function resolver programs are planned with (the metered one). */
  funcs: { find(name: string): FuncGroupLike | undefined };
  meter: Meter;
  /** Memo cells by sub-expression key, for sub-expressions shared between expressions. */
  memo?: (key: string) => MemoCell | undefined;
  /**
   * One-argument functions to call directly instead of through their group (Countersign's
   * metering pass-throughs): each must do exactly what its group's call does for any argument.
   */
  inline?: ReadonlyMap<string, (x: unknown) => unknown>;
}

export interface Lowered {
  run: Node;
  /** How many comprehension-variable slots the expression needs. */
  locals: number;
}

/** Thrown while lowering: the expression keeps the interpreter. */
class NotLowered extends Error {}

const LOGICAL_AND = "_&&_";
const LOGICAL_OR = "_||_";
const CONDITIONAL = "_?_:_";
const INDEX = "_[_]";
const NOT_STRICTLY_FALSE = "@not_strictly_false";
const OLD_NOT_STRICTLY_FALSE = "__not_strictly_false__";
const OPTIONAL_CALLS = new Set(["_[?_]", "_?._", "optional.of", "optional.none", "optional.ofNonZeroValue"]);

/** Calls whose result depends only on their arguments (may be shared within a request). */
const VOLATILE_CALLS = new Set<string>(); // none in the policy environment: no now(), no random

function unresolved(id: number): CelError {
  return celError("unresolved attribute", id);
}

function fieldNotFound(id: number, name: unknown): CelError {
  return celError(`field not found: ${String(name)}`, id);
}

function indexOutOfBounds(id: number, index: unknown): CelError {
  return celError(`index ${index} out of bounds [0, -1)`, id);
}

function typeName(v: unknown): string {
  if (v === null) return "null_type";
  if (isCelList(v)) return "list";
  if (isCelMap(v)) return "map";
  switch (typeof v) {
    case "bigint":
      return "int";
    case "number":
      return "double";
    default:
      return typeof v;
  }
}

/** A value the library's field and index access would treat as a protobuf message (not lowered at run time). */
function isPlainCelContainerOrScalar(v: unknown): boolean {
  return typeof v !== "object" || v === null || isCelMap(v) || isCelList(v);
}

/** Counts code points (the library's size(string) is [...s].length). */
function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

interface Scope {
  /** name → local slot */
  locals: Map<string, number>;
}

interface Ctx {
  opts: LowerOptions;
  nextLocal: number;
  /** Top-level name → slot. */
  top: Map<string, number>;
  vars: Map<string, number> | undefined;
  /** A generic interpreter fallback for access on values the lowering does not handle. */
  access: (obj: unknown, key: unknown, id: number, select: boolean) => unknown;
}

/**
 * Lowers one expression; undefined when something in it is not lowered (the caller keeps the
 * interpreter). `access` evaluates a field or index access on a value the lowering does not
 * handle itself (a protobuf message) with the interpreter.
 */
export function lowerExpression(
  expr: LowerExpr,
  opts: LowerOptions,
  access: Ctx["access"],
): Lowered | undefined {
  if (opts.variables.some((v) => v.includes("."))) return undefined;
  const ctx: Ctx = {
    opts,
    nextLocal: 0,
    top: new Map(opts.variables.map((v, i) => [v, i])),
    vars: opts.policyVariables ? new Map(opts.policyVariables.map((v, i) => [v, i])) : undefined,
    access,
  };
  try {
    const run = lower(expr, ctx, { locals: new Map() }).node;
    return { run, locals: ctx.nextLocal };
  } catch (err) {
    if (err instanceof NotLowered) return undefined;
    throw err;
  }
}

interface LoweredNode {
  node: Node;
  /**
   * Structural key of the subtree, when it reads nothing but top-level variables and literals
   * (no comprehension variable, no variables.*): such a subtree has one value per request.
   */
  key: string | undefined;
  /** A constant value, when the subtree is a literal. */
  constant?: { value: unknown };
  /** The elements of a list literal made only of literals. */
  constantList?: unknown[];
}

function idOf(e: LowerExpr): number {
  return Number(e.id ?? 0n);
}

function lower(e: LowerExpr, ctx: Ctx, scope: Scope): LoweredNode {
  const id = idOf(e);
  const { case: kind, value } = e.exprKind;
  switch (kind) {
    case "constExpr":
      return lowerConst(value as { constantKind: { case: string | undefined; value: unknown } });
    case "identExpr":
      return lowerIdent((value as { name: string }).name, id, ctx, scope);
    case "selectExpr":
      return lowerSelect(value as { operand?: LowerExpr; field: string; testOnly: boolean }, id, ctx, scope);
    case "callExpr":
      return lowerCall(value as { target?: LowerExpr; function: string; args: LowerExpr[] }, id, ctx, scope);
    case "listExpr":
      return lowerList(value as { elements: LowerExpr[]; optionalIndices: number[] }, id, ctx, scope);
    case "structExpr":
      return lowerStruct(
        value as {
          messageName: string;
          entries: {
            keyKind: { case: string | undefined; value: unknown };
            value?: LowerExpr;
            optionalEntry: boolean;
          }[];
        },
        id,
        ctx,
        scope,
      );
    case "comprehensionExpr":
      return lowerComprehension(value as ComprehensionValue, id, ctx, scope);
    default:
      throw new NotLowered();
  }
}

/**
 * Memo keys name a sub-expression exactly: two expressions share a cached result only when their
 * keys are equal, so a key must never be equal for different expressions. Each key is the JSON
 * of [kind, ...parts] (parts are strings, nested keys included as strings): no concatenation can
 * make two different trees collide.
 */
function memoKey(kind: string, ...parts: string[]): string {
  return JSON.stringify([kind, ...parts]);
}

/** A literal's key: its CEL type and its exact value (uint and bytes by value, -0 apart from 0). */
function constantKey(kind: string | undefined, value: unknown): string {
  let repr: string;
  if (value instanceof Uint8Array) repr = Buffer.from(value).toString("hex");
  else if (typeof value === "number") repr = Object.is(value, -0) ? "-0" : String(value);
  else repr = String(value); // string, bool, bigint (int64/uint64), null
  return memoKey("const", kind ?? "", repr);
}

function lowerConst(c: { constantKind: { case: string | undefined; value: unknown } }): LoweredNode {
  let v: unknown;
  switch (c.constantKind.case) {
    case "stringValue":
    case "bytesValue":
    case "doubleValue":
    case "boolValue":
    case "int64Value":
      v = c.constantKind.value;
      break;
    case "uint64Value":
      v = celUint(c.constantKind.value as bigint);
      break;
    case "nullValue":
      v = null;
      break;
    default:
      throw new NotLowered();
  }
  const node: Node = () => v;
  return {
    node,
    key: constantKey(c.constantKind.case, c.constantKind.value),
    constant: { value: v },
  };
}

function lowerIdent(name: string, id: number, ctx: Ctx, scope: Scope): LoweredNode {
  const local = scope.locals.get(name);
  if (local !== undefined) {
    return { node: (f) => f.locals[local], key: undefined };
  }
  // `variables` of a policy is only read as variables.NAME (lowered in lowerSelect).
  if (ctx.vars && name === "variables") throw new NotLowered();
  const slot = ctx.top.get(name);
  // Anything else (type names like int, enum or message names, undeclared names) keeps the interpreter.
  if (slot === undefined) throw new NotLowered();
  return {
    node: (f) => {
      const v = f.top[slot];
      if (v !== undefined) return v;
      const loaded = f.value(slot);
      return loaded === undefined ? unresolved(id) : loaded;
    },
    key: memoKey("ident", name),
  };
}

/** The qualified name of an ident/select chain (a.b.c), as the planner computes it. */
function qualifiedName(e: LowerExpr | undefined): string | undefined {
  if (!e) return undefined;
  if (e.exprKind.case === "identExpr") return (e.exprKind.value as { name: string }).name;
  if (e.exprKind.case === "selectExpr") {
    const s = e.exprKind.value as { operand?: LowerExpr; field: string; testOnly: boolean };
    if (s.testOnly) return undefined;
    const parent = qualifiedName(s.operand);
    return parent === undefined ? undefined : `${parent}.${s.field}`;
  }
  return undefined;
}

function lowerSelect(
  s: { operand?: LowerExpr; field: string; testOnly: boolean },
  id: number,
  ctx: Ctx,
  scope: Scope,
): LoweredNode {
  if (!s.operand) throw new NotLowered();
  const field = s.field;
  // variables.NAME: the policy variable's slot.
  if (
    ctx.vars &&
    !s.testOnly &&
    s.operand.exprKind.case === "identExpr" &&
    (s.operand.exprKind.value as { name: string }).name === "variables" &&
    !scope.locals.has("variables")
  ) {
    const slot = ctx.vars.get(field);
    if (slot === undefined) throw new NotLowered();
    return {
      node: (f) => {
        const v = f.vars[slot];
        return v === undefined ? fieldNotFound(id, field) : v;
      },
      key: undefined,
    };
  }
  const operand = lower(s.operand, ctx, scope);
  const op = operand.node;
  const access = ctx.access;
  if (s.testOnly) {
    // has(x.f): the library's isSet: false on non-objects, map.has on maps.
    const node: Node = (f) => {
      const v = op(f);
      if (isCelError(v)) return v;
      if (typeof v !== "object" || v === null) return false;
      if (isCelMap(v)) {
        const raw = (v as Raw)[RAW];
        // The library's has(): get(key) != undefined, so a key holding null is not "set".
        return raw !== undefined ? (raw as Map<string, unknown>).get(field) != null : v.has(field);
      }
      if (isCelList(v)) return false;
      return access(v, field, id, false);
    };
    return { node, key: operand.key === undefined ? undefined : memoKey("has", operand.key, field) };
  }
  const node: Node = (f) => {
    const v = op(f);
    if (isCelError(v)) return v;
    if (typeof v !== "object" || v === null) return fieldNotFound(id, field);
    if (isCelMap(v)) {
      const out = getField(v, field);
      return out === undefined ? fieldNotFound(id, field) : out;
    }
    if (isCelList(v)) return fieldNotFound(id, field);
    return access(v, field, id, true);
  };
  return { node, key: operand.key === undefined ? undefined : memoKey("select", operand.key, field) };
}

/** Field or index access by a key of any type, as the library's attribute accesses do it. */
function accessBy(obj: unknown, key: unknown, id: number, access: Ctx["access"]): unknown {
  switch (typeof key) {
    case "string":
      if (typeof obj !== "object" || obj === null) return fieldNotFound(id, key);
      if (isCelMap(obj)) {
        const out = obj.get(key);
        return out === undefined ? fieldNotFound(id, key) : out;
      }
      if (isCelList(obj)) return fieldNotFound(id, key);
      return access(obj, key, id, false);
    case "boolean":
    case "number":
    case "bigint": {
      let out: unknown;
      if (isCelMap(obj)) out = obj.get(key as never);
      else if (isCelList(obj)) out = obj.get(Number(key));
      else if (!isPlainCelContainerOrScalar(obj)) return access(obj, key, id, false);
      if (out !== undefined) return out;
      return typeof key === "boolean" ? fieldNotFound(id, key) : indexOutOfBounds(id, key);
    }
    case "object":
      if (isCelUint(key)) {
        // a CelUint: accessed by its value, like an int
        const k = key.value;
        let out: unknown;
        if (isCelMap(obj)) out = obj.get(k as never);
        else if (isCelList(obj)) out = obj.get(Number(k));
        else if (!isPlainCelContainerOrScalar(obj)) return access(obj, key, id, false);
        return out === undefined ? indexOutOfBounds(id, k) : out;
      }
      return celError("unsupported key type", id);
    default:
      return celError("unsupported key type", id);
  }
}

interface CallValue {
  target?: LowerExpr;
  function: string;
  args: LowerExpr[];
}

function lowerCall(call: CallValue, id: number, ctx: Ctx, scope: Scope): LoweredNode {
  const name = call.function;
  if (OPTIONAL_CALLS.has(name) || VOLATILE_CALLS.has(name)) throw new NotLowered();
  if (call.target) {
    const qual = qualifiedName(call.target);
    // The planner first tries `qual.function` as a namespaced function (strings.quote, math.*).
    if (qual !== undefined && ctx.opts.funcs.find(`${qual}.${name}`) !== undefined) throw new NotLowered();
  }
  const args = call.args.map((a) => lower(a, ctx, scope));
  const target = call.target ? lower(call.target, ctx, scope) : undefined;
  const all = target ? [target, ...args] : args;
  const allKeys = all.every((a) => a.key !== undefined);
  // The receiver form a.f(b) and the global form f(a, b) are different overloads: keyed apart.
  const key = allKeys ? memoKey(target ? "member" : "global", name, ...all.map((a) => a.key!)) : undefined;
  let node: Node;
  switch (name) {
    case INDEX:
      node = lowerIndex(all[0]!.node, all[1]!, id, ctx);
      return { node, key: allKeys ? memoKey("index", all[0]!.key!, all[1]!.key!) : undefined };
    case CONDITIONAL: {
      const [c, t, e] = [all[0]!.node, all[1]!.node, all[2]!.node];
      node = (f) => {
        const cond = c(f);
        if (cond === true) return t(f);
        if (cond === false) return e(f);
        if (isCelError(cond)) return cond;
        return celError(`found no matching overload for _?_:_ applied to '(${typeName(cond)})'`, id);
      };
      return { node: shareable(node, key, ctx), key };
    }
    case LOGICAL_AND:
    case LOGICAL_OR:
      node = lowerLogical(
        all.map((a) => a.node),
        name === LOGICAL_AND,
        id,
      );
      return { node: shareable(node, key, ctx), key };
    case NOT_STRICTLY_FALSE:
    case OLD_NOT_STRICTLY_FALSE: {
      const a = all[0]!.node;
      return { node: (f) => a(f) !== false, key };
    }
    default:
      break;
  }
  node = lowerFunction(name, id, target, args, ctx);
  return { node: shareable(node, key, ctx), key };
}

/** Wraps a shareable sub-expression in its memo cell (when it is shared between expressions). */
function shareable(node: Node, key: string | undefined, ctx: Ctx): Node {
  if (key === undefined || !ctx.opts.memo) return node;
  const cell = ctx.opts.memo(key);
  if (!cell) return node;
  const meter = ctx.opts.meter;
  return (f) => {
    if (cell.epoch === f.serial) {
      if (cell.cost > 0) meter.charge(cell.cost);
      return cell.value;
    }
    const before = meter.remaining();
    const value = node(f); // a budget overrun throws past this: nothing is remembered
    // Only plain values are kept (a list or map of the request is not held between requests).
    if (typeof value !== "object" || value === null) {
      cell.value = value;
      cell.cost = before - meter.remaining();
      cell.epoch = f.serial;
    }
    return value;
  };
}

function lowerIndex(op: Node, keyNode: LoweredNode, id: number, ctx: Ctx): Node {
  const access = ctx.access;
  if (keyNode.constant) {
    const k = keyNode.constant.value;
    if (typeof k === "string") {
      return (f) => {
        const v = op(f);
        if (isCelError(v)) return v;
        if (isCelMap(v)) {
          const out = getField(v, k);
          return out === undefined ? fieldNotFound(id, k) : out;
        }
        return accessBy(v, k, id, access);
      };
    }
    return (f) => {
      const v = op(f);
      if (isCelError(v)) return v;
      return accessBy(v, k, id, access);
    };
  }
  const kn = keyNode.node;
  return (f) => {
    const v = op(f);
    if (isCelError(v)) return v;
    const k = kn(f);
    if (isCelError(k)) return k;
    return accessBy(v, k, id, access);
  };
}

function lowerLogical(args: Node[], isAnd: boolean, id: number): Node {
  const stop = !isAnd; // && stops at false, || at true
  const check = (v: unknown): CelError | undefined =>
    isCelError(v) ? v : celError(`type mismatch: expected bool, got ${typeName(v)}`, id);
  if (args.length === 2) {
    const [a, b] = args as [Node, Node];
    return (f) => {
      const x = a(f);
      if (x === stop) return stop;
      const y = b(f);
      if (y === stop) return stop;
      if (typeof x === "boolean" && typeof y === "boolean") return !stop;
      // The first error wins (the library merges them under the first one's message).
      return typeof x === "boolean" ? check(y) : check(x);
    };
  }
  return (f) => {
    let first: CelError | undefined;
    for (const a of args) {
      const v = a(f);
      if (v === stop) return stop;
      if (typeof v !== "boolean" && !first) first = check(v);
    }
    return first ?? !stop;
  };
}

/** A call through the environment's function group, with inline paths for the hot operators. */
function lowerFunction(
  name: string,
  id: number,
  target: LoweredNode | undefined,
  args: LoweredNode[],
  ctx: Ctx,
): Node {
  const group = ctx.opts.funcs.find(name);
  if (!group) return () => celError(`unbound function: ${name}`, id);
  const inline = ctx.opts.inline?.get(name);
  if (inline && !target && args.length === 1) {
    const a = args[0]!.node;
    return (f) => {
      const x = a(f);
      return isCelError(x) ? x : inline(x);
    };
  }
  const meter = ctx.opts.meter;
  const generic = genericCall(
    group,
    id,
    name,
    target?.node,
    args.map((a) => a.node),
  );
  const callGroup = (t: unknown, vals: unknown[]): unknown => {
    const out = group.call(id, t, vals);
    return out !== undefined ? out : noMatch(name, id, t, vals);
  };
  // Inline paths: the same units the metering wrapper charges (cel.ts: 1 + sizes of target and
  // arguments, deep sizes for == != in), the same result the library's overload returns.
  if (!target && args.length === 2) {
    const [a, b] = [args[0]!.node, args[1]!.node];
    const cmp = comparison(name);
    if (name === "_==_" || name === "_!=_") {
      const eq = name === "_==_";
      return (f) => {
        const x = a(f);
        if (isCelError(x)) return x;
        const y = b(f);
        if (isCelError(y)) return y;
        const tx = typeof x;
        if (tx === typeof y && (tx === "string" || tx === "bigint" || tx === "boolean")) {
          meter.charge(1 + meter.sizeOf(x) + meter.sizeOf(y));
          return eq ? x === y : x !== y;
        }
        // x == null: the library's equals is x === null for every value but a protobuf one
        // (an Any may unpack to null), which takes the group.
        if (
          (x === null && isPlainCelContainerOrScalar(y)) ||
          (y === null && isPlainCelContainerOrScalar(x))
        ) {
          meter.charge(1 + meter.deepSizeOf(x) + meter.deepSizeOf(y));
          return eq ? x === y : x !== y;
        }
        return callGroup(undefined, [x, y]);
      };
    }
    if (cmp) {
      return (f) => {
        const x = a(f);
        if (isCelError(x)) return x;
        const y = b(f);
        if (isCelError(y)) return y;
        const tx = typeof x;
        if (tx === typeof y && (tx === "bigint" || tx === "string" || tx === "number")) {
          meter.charge(1 + meter.sizeOf(x) + meter.sizeOf(y));
          return cmp(x as never, y as never);
        }
        return callGroup(undefined, [x, y]);
      };
    }
    if (name === "@in") {
      // `x in [literal strings]`: a Set lookup, charged as the library's list scan is.
      const strings = args[1]!.constantList?.every((s) => typeof s === "string")
        ? new Set(args[1]!.constantList as string[])
        : undefined;
      return (f) => {
        const x = a(f);
        if (isCelError(x)) return x;
        const y = b(f);
        if (isCelError(y)) return y;
        if (typeof x === "string") {
          if (strings && isCelList(y)) {
            meter.charge(1 + meter.sizeOf(x) + meter.deepSizeOf(y));
            return strings.has(x);
          }
          if (isCelMap(y)) {
            meter.charge(1 + meter.sizeOf(x));
            return y.has(x);
          }
        }
        return callGroup(undefined, [x, y]);
      };
    }
  }
  if (name === "size" && ((target && args.length === 0) || (!target && args.length === 1))) {
    const a = target ? target.node : args[0]!.node;
    const method = !!target;
    return (f) => {
      const x = a(f);
      if (isCelError(x)) return x;
      if (typeof x === "string") {
        meter.charge(1 + meter.sizeOf(x));
        return BigInt(codePoints(x));
      }
      if (isCelList(x) || isCelMap(x)) {
        meter.charge(1 + x.size);
        return BigInt(x.size);
      }
      return method ? callGroup(x, []) : callGroup(undefined, [x]);
    };
  }
  if (target && args.length === 1 && (name === "startsWith" || name === "endsWith" || name === "contains")) {
    const t = target.node;
    const a = args[0]!.node;
    const op =
      name === "startsWith"
        ? (s: string, p: string) => s.startsWith(p)
        : name === "endsWith"
          ? (s: string, p: string) => s.endsWith(p)
          : (s: string, p: string) => s.includes(p);
    return (f) => {
      const x = t(f);
      if (isCelError(x)) return x;
      const y = a(f);
      if (isCelError(y)) return y;
      if (typeof x === "string" && typeof y === "string") {
        meter.charge(1 + meter.sizeOf(x) + meter.sizeOf(y));
        return op(x, y);
      }
      return callGroup(x, [y]);
    };
  }
  if (name === "!_" && !target && args.length === 1) {
    const a = args[0]!.node;
    return (f) => {
      const x = a(f);
      if (isCelError(x)) return x;
      if (typeof x === "boolean") {
        meter.charge(1);
        return !x;
      }
      return callGroup(undefined, [x]);
    };
  }
  return generic;
}

function comparison(
  name: string,
): ((x: string | bigint | number, y: string | bigint | number) => boolean) | undefined {
  switch (name) {
    case "_<_":
      return (x, y) => x < y;
    case "_<=_":
      return (x, y) => x <= y;
    case "_>_":
      return (x, y) => x > y;
    case "_>=_":
      return (x, y) => x >= y;
    default:
      return undefined;
  }
}

/** The planner's EvalCall: target first, then arguments in order; the first error wins. */
function genericCall(
  group: FuncGroupLike,
  id: number,
  name: string,
  target: Node | undefined,
  args: Node[],
): Node {
  if (!target && args.length === 1) {
    const a = args[0]!;
    return (f) => {
      const x = a(f);
      if (isCelError(x)) return x;
      const out = group.call(id, undefined, [x]);
      return out !== undefined ? out : noMatch(name, id, undefined, [x]);
    };
  }
  return (f) => {
    const t = target ? target(f) : undefined;
    if (isCelError(t)) return t;
    const vals: unknown[] = new Array(args.length);
    for (let i = 0; i < args.length; i++) {
      const v = args[i]!(f);
      if (isCelError(v)) return v;
      vals[i] = v;
    }
    const out = group.call(id, t, vals);
    return out !== undefined ? out : noMatch(name, id, t, vals);
  };
}

function noMatch(name: string, id: number, t: unknown, vals: unknown[]): CelError {
  return celError(
    `found no matching overload for '${name}' applied to '${t !== undefined ? `${typeName(t)}.` : ""}(${vals.map(typeName).join(", ")})'`,
    id,
  );
}

function lowerList(
  l: { elements: LowerExpr[]; optionalIndices: number[] },
  _id: number,
  ctx: Ctx,
  scope: Scope,
): LoweredNode {
  if (l.optionalIndices.length > 0) throw new NotLowered();
  const elems = l.elements.map((e) => lower(e, ctx, scope));
  if (elems.every((e) => e.constant)) {
    // A list of literals is the same value on every evaluation: built once.
    const values = elems.map((e) => e.constant!.value);
    const list = celList(values as never);
    return {
      node: () => list,
      key: memoKey("list", ...elems.map((e) => e.key!)),
      constant: { value: list },
      constantList: values,
    };
  }
  const nodes = elems.map((e) => e.node);
  const node: Node = (f) => {
    const out: unknown[] = new Array(nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      const v = nodes[i]!(f);
      if (isCelError(v)) return v;
      out[i] = v;
    }
    return celList(out as never);
  };
  return {
    node,
    key: elems.every((e) => e.key !== undefined) ? memoKey("list", ...elems.map((e) => e.key!)) : undefined,
  };
}

function lowerStruct(
  s: {
    messageName: string;
    entries: {
      keyKind: { case: string | undefined; value: unknown };
      value?: LowerExpr;
      optionalEntry: boolean;
    }[];
  },
  id: number,
  ctx: Ctx,
  scope: Scope,
): LoweredNode {
  if (s.messageName !== "") throw new NotLowered();
  const keys: Node[] = [];
  const values: Node[] = [];
  for (const entry of s.entries) {
    if (entry.optionalEntry || entry.keyKind.case !== "mapKey" || !entry.value) throw new NotLowered();
    keys.push(lower(entry.keyKind.value as LowerExpr, ctx, scope).node);
    values.push(lower(entry.value, ctx, scope).node);
  }
  if (keys.length === 0) {
    return { node: () => emptyMap(), key: undefined };
  }
  const node: Node = (f) => {
    const entries = new Map<unknown, unknown>();
    for (let i = 0; i < keys.length; i++) {
      let k = keys[i]!(f);
      if (isCelError(k)) return k;
      switch (typeof k) {
        case "boolean":
        case "bigint":
        case "string":
          break;
        case "number":
          if (!Number.isInteger(k)) return celError("unsupported key type", id);
          k = BigInt(k);
          break;
        case "object":
          if (isCelUint(k)) break;
          return celError("unsupported key type", id);
        default:
          return celError("unsupported key type", id);
      }
      const v = values[i]!(f);
      if (isCelError(v)) return v;
      if (entries.has(k)) return celError(`map key conflict: ${String(k)}`, id);
      entries.set(k, v);
    }
    return celMapOf(entries);
  };
  return { node, key: undefined };
}

interface ComprehensionValue {
  iterVar: string;
  iterVar2?: string;
  accuVar: string;
  iterRange?: LowerExpr;
  accuInit?: LowerExpr;
  loopCondition?: LowerExpr;
  loopStep?: LowerExpr;
  result?: LowerExpr;
}

function lowerComprehension(c: ComprehensionValue, id: number, ctx: Ctx, scope: Scope): LoweredNode {
  if (c.iterVar2) throw new NotLowered();
  if (!c.iterRange || !c.accuInit || !c.loopCondition || !c.loopStep || !c.result) throw new NotLowered();
  const accuInit = lower(c.accuInit, ctx, scope).node;
  const iterRange = lower(c.iterRange, ctx, scope).node;
  const accuSlot = ctx.nextLocal++;
  const iterSlot = ctx.nextLocal++;
  // Loop condition and step see both variables; the result sees the accumulator only (the
  // iteration variable there is whatever it is outside, as in the library's EvalFold).
  const inner: Scope = { locals: new Map([...scope.locals, [c.accuVar, accuSlot], [c.iterVar, iterSlot]]) };
  // (accuVar declared after iterVar wins when both have the same name, as VarActivation nests them.)
  inner.locals.set(c.iterVar, iterSlot);
  const innerCond = lower(c.loopCondition, ctx, inner).node;
  const innerStep = lower(c.loopStep, ctx, inner).node;
  const resultScope: Scope = { locals: new Map([...scope.locals, [c.accuVar, accuSlot]]) };
  const result = lower(c.result, ctx, resultScope).node;
  const node: Node = (f) => {
    const init = accuInit(f);
    if (isCelError(init)) return init;
    const range = iterRange(f);
    if (isCelError(range)) return range;
    let items: unknown[];
    if (isCelMap(range)) items = Array.from(range.keys());
    else if (isCelList(range)) items = ((range as Raw)[RAW] as unknown[] | undefined) ?? Array.from(range);
    else return celError(`type mismatch: iterable vs ${typeName(range)}`, id);
    const locals = f.locals;
    locals[accuSlot] = init;
    for (const item of items) {
      if (isCelError(item)) return item;
      locals[iterSlot] = item;
      const cond = innerCond(f);
      if (isCelError(cond)) return cond;
      if (cond !== true) break;
      locals[accuSlot] = innerStep(f);
    }
    return result(f);
  };
  return { node, key: undefined };
}

const EMPTY_MAP = celMap(new Map() as never);
function emptyMap(): unknown {
  return EMPTY_MAP;
}
function celMapOf(entries: Map<unknown, unknown>): unknown {
  return celMap(entries as never);
}
