/**
 * What exactly is being approved. Pure functions.
 *
 * One **transition** per admission request is the single source of truth: it is hashed into
 * the fingerprint, and the summary and diff a human approves are rendered from it, so what is
 * shown and what is bound cannot diverge.
 *
 *   transition = { uid, before, after }
 *   - CREATE:  before null; after = canonical new object. With `metadata.generateName` and a
 *              server-generated name, `metadata.name` is left out, so a retry (which gets a new
 *              generated name) is the same action.
 *   - UPDATE:  uid of the object; before = canonical old object; after = canonical new object.
 *              An approval never covers the same new object written on top of another state.
 *   - DELETE:  uid and canonical content of the object being deleted (status left out), and
 *              the delete options that change its effect (propagationPolicy, orphanDependents,
 *              gracePeriodSeconds) when given.
 *   - CONNECT: after = the connect options (command, container, ...).
 *
 * Canonical form of an object (`canonicalContent`): everything except
 *   - metadata.resourceVersion, managedFields (an UPDATE binds their normalized form
 *     separately as `owners`, see ownershipOf), generation, uid (bound separately),
 *     creationTimestamp, selfLink: written by the API server, or not the object's content;
 *   - the agent-context annotations countersign.io/reason|prompt|ticket|agent (shown
 *     separately as what the agent said; they change nothing in the cluster);
 *   - the timestamps of status conditions (lastUpdateTime, lastTransitionTime, ...), which the
 *     API server stamps on each write;
 *   - status, except where status is what the write changes: the /status and /approval
 *     subresources keep it always; a main-resource write keeps it when old and new status
 *     differ (custom resources without a status subresource take status through the main
 *     resource; for everything else the API server resets it before validation, so it never
 *     differs); /scale never (the API server ignores a Scale's status); DELETE never.
 * Everything else is bound, including labels, other annotations (also
 * kubectl.kubernetes.io/last-applied-configuration, which a later `kubectl apply` merges
 * from), finalizers, ownerReferences and deletionTimestamp.
 *
 * Secrets: in the canonical form that is hashed, each data/stringData value and the
 * last-applied-configuration annotation is replaced by an HMAC-SHA256 under the per-install
 * FingerprintKey, so no stored or logged hash lets a reader brute-force a value offline.
 *
 * Secret values never leave this module: for a Secret, data/stringData values and the
 * last-applied-configuration annotation are shown as `<redacted>` (CREATE/DELETE) or
 * `<changed>`/`<added>`/`<removed>` (UPDATE), never as values or hashes of values.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { type AdmissionRequest, serviceAccountOf } from "../resources/admission.js";
import type { ActionIdentity, AgentContext } from "../resources/approval-request.js";
import { canonicalJson } from "../resources/canonical-json.js";
import { visible } from "./visible.js";

export const REDACTED = "<redacted>";
export const ANNOTATION_PREFIX = "countersign.io/";
export const AGENT_CONTEXT_ANNOTATIONS = {
  reason: "countersign.io/reason",
  prompt: "countersign.io/prompt",
  ticket: "countersign.io/ticket",
  agent: "countersign.io/agent",
} as const;
const AGENT_CONTEXT_KEYS: ReadonlySet<string> = new Set(Object.values(AGENT_CONTEXT_ANNOTATIONS));
const CONTEXT_LIMITS = { reason: 2048, prompt: 8192, ticket: 253, agent: 253 } as const;
export const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";
const VOLATILE_METADATA = [
  "resourceVersion",
  "managedFields",
  "generation",
  "uid",
  "creationTimestamp",
  "selfLink",
];
/** Subresources whose write is the status itself. */
const STATUS_SUBRESOURCES: ReadonlySet<string> = new Set(["status", "approval"]);
/** Subresources whose object's status is ignored by the API server. */
const STATUS_IGNORED_SUBRESOURCES: ReadonlySet<string> = new Set(["scale"]);
/** The API server's generated-name suffix: 5 characters of this alphabet (k8s.io/apimachinery rand). */
const GENERATED_SUFFIX = /^[bcdfghjklmnpqrstvwxz2456789]{5}$/;
const MAX_GENERATE_NAME_BASE = 58;

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Condition timestamps the API server stamps on every write (e.g. a CSR approval's
 * lastUpdateTime): kept, a retry of the same decision would never match its approval.
 */
const CONDITION_TIMES = ["lastUpdateTime", "lastTransitionTime", "lastHeartbeatTime", "lastProbeTime"];

function withoutConditionTimes(status: unknown): unknown {
  if (!isObject(status) || !Array.isArray(status.conditions)) return status;
  return {
    ...status,
    conditions: status.conditions.map((c) => {
      if (!isObject(c)) return c;
      const copy = { ...c };
      for (const k of CONDITION_TIMES) delete copy[k];
      return copy;
    }),
  };
}

/** The object without volatile metadata, the agent-context annotations, and (unless kept) status. */
export function canonicalContent(obj: unknown, keepStatus: boolean): Json {
  if (!isObject(obj)) return (obj ?? null) as Json;
  const { status, metadata, ...rest } = obj;
  const out: Record<string, unknown> = { ...rest };
  if (keepStatus && status !== undefined) out.status = withoutConditionTimes(status);
  if (isObject(metadata)) {
    const md: Record<string, unknown> = { ...metadata };
    for (const k of VOLATILE_METADATA) delete md[k];
    if (isObject(md.annotations)) {
      const ann = Object.fromEntries(
        Object.entries(md.annotations).filter(([k]) => !AGENT_CONTEXT_KEYS.has(k)),
      );
      if (Object.keys(ann).length > 0) md.annotations = ann;
      else delete md.annotations;
    }
    out.metadata = md;
  }
  return out as Json;
}

/** The object's content without status (what the controller compares after an UPDATE). */
export function canonicalObject(obj: unknown): Json {
  return canonicalContent(obj, false);
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

const metadataOf = (obj: unknown): Record<string, unknown> | undefined =>
  isObject(obj) && isObject(obj.metadata) ? obj.metadata : undefined;

/**
 * The generateName of a CREATE whose name the API server generated from it (validating
 * admission already sees the generated name), else undefined. A name the client chose
 * itself does not count, unless it is indistinguishable from a generated one.
 */
export function generatedNameBase(req: AdmissionRequest): string | undefined {
  if (req.operation !== "CREATE" || req.subResource) return undefined;
  const md = metadataOf(req.object);
  const base = md?.generateName;
  const name = md?.name ?? req.name;
  if (typeof base !== "string" || !base || typeof name !== "string") return undefined;
  const stem = base.slice(0, MAX_GENERATE_NAME_BASE);
  return name.startsWith(stem) && GENERATED_SUFFIX.test(name.slice(stem.length)) ? base : undefined;
}

/** What one admission request does: the hashed and displayed unit. */
export interface Transition {
  /** The uid of the existing object an UPDATE or DELETE applies to. */
  uid?: string;
  /** The canonical object before (UPDATE, DELETE); null when there is none. */
  before: Json;
  /** The canonical object after (CREATE, UPDATE) or the CONNECT options; null for DELETE. */
  after: Json;
  /** DELETE options that change what the delete does (cascade, grace period), when given. */
  deleteOptions?: { [k: string]: Json };
  /**
   * UPDATE: field ownership (normalized managedFields, see ownershipOf) before and after, when
   * either has any. A later server-side apply removes fields by ownership, so it is bound.
   */
  owners?: { before: Json[]; after: Json[] };
}

/** The managedFields entry fields that decide ownership (`time` is left out). */
const OWNERSHIP_FIELDS = ["manager", "operation", "apiVersion", "subresource", "fieldsV1"] as const;

/**
 * An object's field ownership as an order-independent set of {manager, operation, apiVersion,
 * subresource, fieldsV1}, sorted by canonical JSON, duplicates and entries owning no field
 * removed. Without status
 * (`keepStatus` false), status fields are left out of each entry (controllers' status writes
 * change them all the time; they are not what the write changes), and entries left empty go.
 */
export function ownershipOf(obj: unknown, keepStatus: boolean): Json[] {
  const mf = metadataOf(obj)?.managedFields;
  if (!Array.isArray(mf)) return [];
  const seen = new Map<string, Json>();
  for (const e of mf) {
    if (!isObject(e)) continue;
    const entry: Record<string, Json> = {};
    for (const k of OWNERSHIP_FIELDS) if (e[k] !== undefined && e[k] !== "") entry[k] = e[k] as Json;
    // An entry that owns no field changes nothing a later apply does.
    if (!isObject(entry.fieldsV1) || Object.keys(entry.fieldsV1).length === 0) continue;
    if (!keepStatus && "f:status" in entry.fieldsV1) {
      const { "f:status": _status, ...fields } = entry.fieldsV1;
      if (Object.keys(fields).length === 0) continue;
      entry.fieldsV1 = fields as Json;
    }
    seen.set(canonicalJson(entry), entry);
  }
  return [...seen.keys()].sort().map((k) => seen.get(k) as Json);
}

/** The field paths in a managedFields fieldsV1 set, readable (`data.mode`, `spec.containers[k:{"name":"app"}]`). */
function ownedPaths(fields: unknown, prefix = ""): string[] {
  if (!isObject(fields)) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (k === ".") continue;
    const part = k.startsWith("f:") ? k.slice(2) : k;
    const path = k.startsWith("f:") ? (prefix ? `${prefix}.${part}` : part) : `${prefix}[${part}]`;
    const children = ownedPaths(v, path);
    out.push(...(children.length > 0 ? children : [path]));
  }
  return out;
}

const ownerKey = (e: Json): string => {
  const o = isObject(e) ? e : {};
  const tail = [o.operation, o.subresource ? `/${String(o.subresource)}` : "", o.apiVersion]
    .filter((x) => x)
    .join(", ");
  return `${JSON.stringify(String(o.manager ?? ""))} (${tail})`;
};

/** One line per manager whose field ownership the UPDATE changes (empty when none does). */
export function ownershipLines(t: Transition): string[] {
  if (!t.owners) return [];
  const paths = (entries: Json[]) => {
    const m = new Map<string, Set<string>>();
    for (const e of entries) {
      const key = ownerKey(e);
      const set = m.get(key) ?? new Set<string>();
      for (const p of ownedPaths(isObject(e) ? e.fieldsV1 : undefined)) set.add(p);
      m.set(key, set);
    }
    return m;
  };
  const before = paths(t.owners.before);
  const after = paths(t.owners.after);
  // Every path, never "and N more": what is bound is what is shown (renderActionDiff bounds the total).
  const list = (xs: string[]) => xs.join(", ");
  const lines: string[] = [];
  for (const key of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    const b = before.get(key) ?? new Set<string>();
    const a = after.get(key) ?? new Set<string>();
    const gains = [...a].filter((p) => !b.has(p)).sort();
    const loses = [...b].filter((p) => !a.has(p)).sort();
    if (gains.length === 0 && loses.length === 0) continue;
    const parts = [
      ...(gains.length ? [`now owns ${list(gains)}`] : []),
      ...(loses.length ? [`no longer owns ${list(loses)}`] : []),
    ];
    // Manager names and fieldsV1 keys are agent-written: escaped, so they cannot forge a line.
    lines.push(visible(`(field ownership) ${key}: ${parts.join("; ")}`));
  }
  return lines;
}

/** The DeleteOptions fields that change what a DELETE does; the rest (dryRun, preconditions) only restrict it. */
const DELETE_EFFECT_OPTIONS = ["propagationPolicy", "orphanDependents", "gracePeriodSeconds"];

function deleteOptionsOf(req: AdmissionRequest): { [k: string]: Json } | undefined {
  if (req.operation !== "DELETE" || !isObject(req.options)) return undefined;
  const opts = req.options;
  const picked = Object.fromEntries(
    DELETE_EFFECT_OPTIONS.filter((k) => opts[k] !== undefined && opts[k] !== null).map((k) => [
      k,
      opts[k] as Json,
    ]),
  );
  return Object.keys(picked).length > 0 ? picked : undefined;
}

function emptyStatus(v: unknown): boolean {
  return v === undefined || v === null || (isObject(v) && Object.keys(v).length === 0);
}

/**
 * The per-install key that Secret values are HMAC'd with before anything derived from them is
 * hashed (objectHash, transitionHash, fingerprint): a reader of ApprovalRequests, AuditRecords or
 * logs cannot brute-force a weak Secret value without it. Held only by Countersign (the Secret
 * `countersign-fingerprint-key` in the install namespace, see fingerprint-key.ts).
 */
export type FingerprintKey = Uint8Array;

/**
 * Used when no key is passed (unit tests, display-only callers): random per process and never
 * stored, so it still hides values; hashes made with it match only within this process.
 */
const PROCESS_KEY: FingerprintKey = randomBytes(32);

const keyedValue = (key: FingerprintKey, field: string, name: string, value: unknown): string =>
  `hmac-sha256:${createHmac("sha256", key)
    .update(`${field}\u0000${name}\u0000${typeof value === "string" ? value : canonicalJson(value)}`)
    .digest("hex")}`;

/**
 * A canonical Secret with each `data`/`stringData` value and its last-applied annotation replaced
 * by an HMAC under `key` (in place; `c` is a fresh copy from canonicalContent). Equal values give
 * equal HMACs, so changes and no-ops are still seen.
 */
function keyedSecret(c: Json, key: FingerprintKey): Json {
  if (!isObject(c)) return c;
  for (const field of ["data", "stringData"]) {
    const d = c[field];
    if (isObject(d)) {
      c[field] = Object.fromEntries(Object.entries(d).map(([k, v]) => [k, keyedValue(key, field, k, v)]));
    }
  }
  const md = c.metadata;
  if (isObject(md) && isObject(md.annotations) && LAST_APPLIED in md.annotations) {
    md.annotations = {
      ...md.annotations,
      [LAST_APPLIED]: keyedValue(key, "annotation", LAST_APPLIED, md.annotations[LAST_APPLIED]),
    };
  }
  return c;
}

const isSecretResource = (group: string, resource: string) => group === "" && resource === "secrets";

/**
 * The hash the controller compares after an UPDATE: the canonical object without status, with
 * Secret values keyed (the same key the webhook used, else the hashes do not match).
 */
export function contentHash(obj: unknown, secret: boolean, key: FingerprintKey = PROCESS_KEY): string {
  const c = canonicalObject(obj);
  return sha256(canonicalJson(secret ? keyedSecret(c, key) : c));
}

export function transitionOf(req: AdmissionRequest, key: FingerprintKey = PROCESS_KEY): Transition {
  const sub = req.subResource ?? "";
  const op = req.operation;
  const oldObj = op === "UPDATE" || op === "DELETE" ? req.oldObject : undefined;
  const newObj = op === "DELETE" ? undefined : req.object;
  const oldStatus = isObject(oldObj) ? oldObj.status : undefined;
  const newStatus = isObject(newObj) ? newObj.status : undefined;
  let keepStatus: boolean;
  if (op === "DELETE" || STATUS_IGNORED_SUBRESOURCES.has(sub)) keepStatus = false;
  else if (STATUS_SUBRESOURCES.has(sub)) keepStatus = true;
  else if (op === "CREATE" || op === "CONNECT") keepStatus = !emptyStatus(newStatus);
  else keepStatus = canonicalJson(oldStatus ?? null) !== canonicalJson(newStatus ?? null);

  const secret = isSecretResource(req.resource.group, req.resource.resource);
  const canonical = (o: unknown) => {
    const c = canonicalContent(o, keepStatus);
    return secret ? keyedSecret(c, key) : c;
  };
  const before = oldObj === undefined ? null : canonical(oldObj);
  const after = newObj === undefined ? null : canonical(newObj);
  if (generatedNameBase(req) !== undefined && isObject(after) && isObject(after.metadata)) {
    delete after.metadata.name;
  }
  const uid = metadataOf(oldObj)?.uid;
  const deleteOptions = deleteOptionsOf(req);
  const owners =
    op === "UPDATE"
      ? { before: ownershipOf(oldObj, keepStatus), after: ownershipOf(newObj, keepStatus) }
      : undefined;
  return {
    ...(typeof uid === "string" && uid ? { uid } : {}),
    before,
    after,
    ...(deleteOptions ? { deleteOptions } : {}),
    ...(owners && (owners.before.length > 0 || owners.after.length > 0) ? { owners } : {}),
  };
}

export function transitionHash(t: Transition): string {
  return sha256(
    canonicalJson({
      uid: t.uid ?? "",
      before: t.before,
      after: t.after,
      ...(t.deleteOptions ? { deleteOptions: t.deleteOptions } : {}),
      ...(t.owners ? { owners: t.owners } : {}),
    }),
  );
}

/** An UPDATE that changes nothing the canonical form keeps (see the module comment). */
export function isNoOpUpdate(
  req: AdmissionRequest,
  key: FingerprintKey = PROCESS_KEY,
  transition?: Transition,
): boolean {
  if (req.operation !== "UPDATE" || !isObject(req.object) || !isObject(req.oldObject)) return false;
  const t = transition ?? transitionOf(req, key);
  const newUid = metadataOf(req.object)?.uid;
  if (typeof newUid === "string" && newUid && newUid !== t.uid) return false;
  return (
    canonicalJson(t.before) === canonicalJson(t.after) &&
    canonicalJson(t.owners?.before ?? []) === canonicalJson(t.owners?.after ?? [])
  );
}

/**
 * The hash of the object the controller checks after admission: the canonical new object for
 * CREATE/UPDATE, the options for CONNECT, and for DELETE the identity (uid) of the object.
 */
export function objectHash(req: AdmissionRequest, key: FingerprintKey = PROCESS_KEY): string {
  if (req.operation === "DELETE") {
    const uid = metadataOf(req.oldObject)?.uid;
    return typeof uid === "string" ? sha256(`uid:${uid}`) : "";
  }
  if (req.object === undefined || req.object === null) return "";
  return contentHash(req.object, isSecretResource(req.resource.group, req.resource.resource), key);
}

export function actionIdentity(
  req: AdmissionRequest,
  transition?: Transition,
  key: FingerprintKey = PROCESS_KEY,
): ActionIdentity {
  const t = transition ?? transitionOf(req, key);
  const generateName = generatedNameBase(req);
  return {
    username: req.userInfo.username ?? "",
    operation: req.operation,
    group: req.resource.group,
    version: req.resource.version,
    resource: req.resource.resource,
    subResource: req.subResource ?? "",
    namespace: req.namespace ?? "",
    name: generateName === undefined ? (req.name ?? "") : "",
    ...(generateName !== undefined ? { generateName } : {}),
    objectHash: objectHash(req, key),
    transitionHash: transitionHash(t),
  };
}

/**
 * The fingerprint: the action, and (when given) the policy and rule that decide it. With the
 * rule in it, an approval obtained under one rule is never found for an action another (e.g.
 * stricter, newer) rule decides now: that action gets its own request and name.
 */
export function fingerprintOf(a: ActionIdentity, rule?: { policy: string; rule: string }): string {
  return sha256(
    canonicalJson([
      ...(rule ? [`policy:${rule.policy}`, `rule:${rule.rule}`] : []),
      a.username,
      a.operation,
      a.group,
      a.version,
      a.resource,
      a.subResource,
      a.namespace,
      a.name,
      a.generateName ?? "",
      a.transitionHash,
    ]),
  );
}

export function isSecret(req: AdmissionRequest): boolean {
  return isSecretResource(req.resource.group, req.resource.resource);
}

/** Whether the value at `path` of a Secret must never be shown. */
function secretPath(path: readonly (string | number)[]): boolean {
  const [a, b] = path;
  return (
    ((a === "data" || a === "stringData") && path.length >= 2) ||
    (a === "metadata" && b === "annotations" && path[2] === LAST_APPLIED)
  );
}

/** A copy safe to show humans: Secret values (and their last-applied copy) redacted. */
export function redactedObject(obj: unknown, secret: boolean): Json {
  const c = canonicalObject(obj);
  if (!isObject(c) || !secret) return c;
  for (const field of ["data", "stringData"]) {
    const d = c[field];
    if (isObject(d)) c[field] = Object.fromEntries(Object.keys(d).map((k) => [k, REDACTED]));
  }
  const ann = isObject(c.metadata) ? c.metadata.annotations : undefined;
  if (isObject(ann) && LAST_APPLIED in ann) ann[LAST_APPLIED] = REDACTED;
  return c;
}

/** Deepest nesting Countersign renders and hashes; deeper objects are denied (see nestingDepth). */
export const MAX_NESTING_DEPTH = 200;

/** How deeply a JSON value nests (iterative: never overflows the stack), stopping past `limit`. */
export function nestingDepth(value: unknown, limit = MAX_NESTING_DEPTH): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (d + 1 > deepest) deepest = d + 1;
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === "object" && child !== null) stack.push([child, d + 1]);
    }
  }
  return deepest;
}

function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${visible(JSON.stringify(seg))}]`;
  }
  return out || "(object)";
}

/** A value in full, as JSON, with control and format characters escaped. Never cut. */
function describeValue(v: Json | undefined): string {
  if (v === undefined) return "(absent)";
  return visible(JSON.stringify(v));
}

/** Continuation lines of a multi-line value: never start like a `path: value` line. */
const textLine = (mark: "|" | "-" | "+", line: string) => `  ${mark} ${visible(line)}`;

/** A multi-line string in full, one line per line. */
function textBlock(p: string, s: string): string[] {
  const lines = s.split("\n");
  return [`${p}: (text, ${lines.length} lines)`, ...lines.map((l) => textLine("|", l))];
}

/**
 * Two strings of which one is multi-line: every changed line in full, as one hunk from the
 * first to the last changed line (removed `-`, added `+`), with two lines of context.
 */
function textChange(p: string, a: string, b: string): string[] {
  const A = a.split("\n");
  const B = b.split("\n");
  let s = 0;
  while (s < A.length && s < B.length && A[s] === B[s]) s++;
  let e = 0;
  while (e < A.length - s && e < B.length - s && A[A.length - 1 - e] === B[B.length - 1 - e]) e++;
  const CONTEXT = 2;
  return [
    `${p}: (text, ${A.length} → ${B.length} lines, changed from line ${s + 1}; every changed line shown)`,
    ...A.slice(Math.max(0, s - CONTEXT), s).map((l) => textLine("|", l)),
    ...A.slice(s, A.length - e).map((l) => textLine("-", l)),
    ...B.slice(s, B.length - e).map((l) => textLine("+", l)),
    ...A.slice(A.length - e, Math.min(A.length, A.length - e + CONTEXT)).map((l) => textLine("|", l)),
  ];
}

export interface DiffOptions {
  /** Secret: values under data/stringData and last-applied-configuration are never shown. */
  secret?: boolean;
  /** Stop rendering before exceeding this many lines (default 500). */
  maxLines?: number;
  /** Stop rendering before exceeding this many characters (default unbounded). */
  maxChars?: number;
  /** Stop walking once this many changed fields are counted (default: count them all). */
  countLimit?: number;
}

export interface RenderedDiff {
  /** Whole entries only, in display order; a field is either shown in full or not at all. */
  lines: string[];
  /** Changed fields shown. */
  shown: number;
  /** Changed fields counted (at most countLimit). */
  total: number;
  /** Whether every changed field is in `lines`. */
  complete: boolean;
}

/** Paths shown after everything else: an agent cannot pad them to push the rest out of view. */
const isLateContainer = (path: readonly (string | number)[]) =>
  path.length === 2 && path[0] === "metadata" && (path[1] === "annotations" || path[1] === "labels");

class CountLimitReached extends Error {}

/**
 * Field-level rendering of a transition, one entry per changed leaf:
 * CREATE/CONNECT (no before) and DELETE (no after) list `path: value`;
 * UPDATE lists `path: old → new` with `(absent)` for a side that has no value.
 * Arrays are compared element by element, so an appended element is its own entry.
 * Values are never cut: multi-line strings are shown line by line (an UPDATE as a line diff
 * with every changed line). Paths are sorted, except that metadata.labels and
 * metadata.annotations come last, after spec, data, rules, roleRef, subjects, ...
 * Rendering stops at the first entry that does not fit maxLines/maxChars (counting goes on,
 * up to countLimit), so what is shown is always a prefix of whole entries.
 */
export function renderDiff(before: Json, after: Json, opts: DiffOptions = {}): RenderedDiff {
  const maxLines = opts.maxLines ?? 500;
  const maxChars = opts.maxChars ?? Number.POSITIVE_INFINITY;
  const countLimit = opts.countLimit ?? Number.POSITIVE_INFINITY;
  const lines: string[] = [];
  let chars = 0;
  let shown = 0;
  let total = 0;
  let full = maxLines <= 0;
  const oneSided = before === null || after === null;
  const entry = (render: () => string[]) => {
    total++;
    if (!full) {
      const out = render();
      const size = out.reduce((n, l) => n + l.length + 1, 0);
      if (lines.length + out.length > maxLines || chars + size > maxChars) full = true;
      else {
        lines.push(...out);
        chars += size;
        shown++;
      }
    }
    if (total >= countLimit) throw new CountLimitReached();
  };
  const containerOf = (v: Json | undefined) =>
    isObject(v) ? "object" : Array.isArray(v) ? "array" : undefined;
  const deferred: [Json | undefined, Json | undefined, (string | number)[]][] = [];
  let deferring = true;
  const visit = (a: Json | undefined, b: Json | undefined, path: (string | number)[]) => {
    if (deferring && isLateContainer(path)) {
      deferred.push([a, b, path]);
      return;
    }
    const ca = containerOf(a);
    const cb = containerOf(b);
    if ((ca || cb) && (ca === cb || a === undefined || b === undefined)) {
      const keysOf = (v: Json | undefined): (string | number)[] =>
        Array.isArray(v) ? v.map((_, i) => i) : isObject(v) ? Object.keys(v) : [];
      const ka = keysOf(a);
      const kb = keysOf(b);
      const keys =
        (ca ?? cb) === "array"
          ? Array.from({ length: Math.max(ka.length, kb.length) }, (_, i) => i)
          : [...new Set([...ka, ...kb])].sort();
      if (keys.length === 0) {
        // Both empty: nothing changed. One side absent: the empty container is the change.
        if (a === undefined || b === undefined) {
          entry(() => {
            const p = formatPath(path);
            return [
              oneSided ? `${p}: ${describeValue(a ?? b)}` : `${p}: ${describeValue(a)} → ${describeValue(b)}`,
            ];
          });
        }
        return;
      }
      const at = (v: Json | undefined, k: string | number): Json | undefined =>
        Array.isArray(v)
          ? v[k as number]
          : isObject(v)
            ? (v as Record<string, Json>)[k as string]
            : undefined;
      for (const k of keys) visit(at(a, k), at(b, k), [...path, k]);
      return;
    }
    if ((a === undefined) === (b === undefined) && canonicalJson(a ?? null) === canonicalJson(b ?? null))
      return;
    entry(() => {
      const p = formatPath(path);
      if (opts.secret && secretPath(path)) {
        if (oneSided) return [`${p}: ${REDACTED}`];
        return [`${p}: ${a === undefined ? "<added>" : b === undefined ? "<removed>" : "<changed>"}`];
      }
      if (oneSided) {
        const v = a === undefined ? b : a;
        return typeof v === "string" && v.includes("\n") ? textBlock(p, v) : [`${p}: ${describeValue(v)}`];
      }
      if (typeof a === "string" && typeof b === "string" && (a.includes("\n") || b.includes("\n")))
        return textChange(p, a, b);
      return [`${p}: ${describeValue(a)} → ${describeValue(b)}`];
    });
  };
  let stopped = false;
  try {
    visit(before ?? undefined, after ?? undefined, []);
    deferring = false;
    for (const [a, b, path] of deferred) visit(a, b, path);
  } catch (err) {
    if (!(err instanceof CountLimitReached)) throw err;
    stopped = true;
  }
  return { lines, shown, total, complete: !stopped && shown === total };
}

/** The changed fields of a transition, counted with an early exit at `limit`. */
export function countChanges(before: Json, after: Json, secret: boolean, limit: number): number {
  return renderDiff(before, after, { secret, maxLines: 0, countLimit: limit }).total;
}

/** renderDiff as lines, with a closing line saying how many changed fields are not shown. */
export function fieldDiff(before: Json, after: Json, opts: DiffOptions = {}): string[] {
  const r = renderDiff(before, after, opts);
  const omitted = r.total - r.shown;
  if (omitted > 0)
    r.lines.push(
      `... ${omitted} more changed field${omitted === 1 ? "" : "s"} not shown (the fingerprint covers the whole object)`,
    );
  return r.lines;
}

export function requesterName(username: string): string {
  const sa = serviceAccountOf(username);
  return sa ? `service account ${sa.namespace}/${sa.name}` : username;
}

const q = (v: unknown) => JSON.stringify(typeof v === "string" ? v : String(v ?? ""));
const at = (v: Json | undefined, ...path: string[]): Json | undefined => {
  let cur: Json | undefined = v;
  for (const k of path) cur = isObject(cur) ? (cur as Record<string, Json>)[k] : undefined;
  return cur;
};

/** What matters most about a few well-known actions, named in the summary itself. */
function highlights(req: AdmissionRequest, t: Transition): string[] {
  const sub = req.subResource ?? "";
  const res = req.resource.resource;
  const out: string[] = [];
  if (
    req.resource.group === "rbac.authorization.k8s.io" &&
    (res === "rolebindings" || res === "clusterrolebindings") &&
    !sub &&
    t.after !== null
  ) {
    const ref = at(t.after, "roleRef");
    const subjects = at(t.after, "subjects");
    const who = (Array.isArray(subjects) ? subjects : []).map((s) => {
      const ns = at(s, "namespace");
      return `${String(at(s, "kind") ?? "?")} ${q(typeof ns === "string" && ns ? `${ns}/${String(at(s, "name"))}` : at(s, "name"))}`;
    });
    const shown = who.slice(0, 5).join(", ") + (who.length > 5 ? ` and ${who.length - 5} more` : "");
    out.push(`binds ${String(at(ref, "kind") ?? "?")} ${q(at(ref, "name"))} to ${shown || "no subjects"}`);
  }
  if (sub === "scale" && req.operation === "UPDATE") {
    out.push(
      `replicas ${JSON.stringify(at(t.before, "spec", "replicas") ?? null)} → ${JSON.stringify(at(t.after, "spec", "replicas") ?? null)}`,
    );
  }
  if (sub === "approval" && res === "certificatesigningrequests") {
    const conds = at(t.after, "status", "conditions");
    const old = new Set(
      (Array.isArray(at(t.before, "status", "conditions"))
        ? (at(t.before, "status", "conditions") as Json[])
        : []
      ).map((c) => `${String(at(c, "type"))}=${String(at(c, "status"))}`),
    );
    const added = (Array.isArray(conds) ? conds : [])
      .map((c) => `${String(at(c, "type"))}=${String(at(c, "status"))}`)
      .filter((c) => !old.has(c));
    out.push(added.length ? `sets condition ${added.join(", ")}` : "changes no condition");
  }
  if (sub === "eviction") out.push(`evicts pod ${q(req.name)}`);
  if (sub === "binding" && res === "pods")
    out.push(
      `binds the pod to ${String(at(t.after, "target", "kind") ?? "?")} ${q(at(t.after, "target", "name"))}`,
    );
  if (sub === "token" && res === "serviceaccounts") {
    const aud = at(t.after, "spec", "audiences");
    out.push(
      `issues a token for audiences ${Array.isArray(aud) && aud.length ? aud.map(q).join(", ") : "(API server default)"}, valid ${String(at(t.after, "spec", "expirationSeconds") ?? "default")} s`,
    );
  }
  if (sub === "ephemeralcontainers") {
    const before = new Set(
      ((at(t.before, "spec", "ephemeralContainers") as Json[] | undefined) ?? []).map((c) =>
        String(at(c, "name")),
      ),
    );
    const added = ((at(t.after, "spec", "ephemeralContainers") as Json[] | undefined) ?? []).filter(
      (c) => !before.has(String(at(c, "name"))),
    );
    out.push(
      `adds ephemeral container${added.length === 1 ? "" : "s"} ${added.map((c) => `${q(at(c, "name"))} (image ${q(at(c, "image"))})`).join(", ") || "(none)"}`,
    );
  }
  if (t.deleteOptions) {
    out.push(
      Object.entries(t.deleteOptions)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
        .join(", "),
    );
  }
  if (req.operation === "CONNECT") {
    const cmd = at(t.after, "command");
    if (Array.isArray(cmd)) out.push(`command ${q(cmd.join(" "))}`);
  }
  return out;
}

/** One readable paragraph: who wants to do what, where, and what matters most about it. */
export function actionSummary(req: AdmissionRequest, t: Transition = transitionOf(req)): string {
  const res = req.subResource ? `${req.resource.resource}/${req.subResource}` : req.resource.resource;
  const group = req.resource.group ? `.${req.resource.group}` : "";
  const generateName = generatedNameBase(req);
  const target =
    generateName !== undefined
      ? `${res}${group} named ${q(`${generateName}*`)} (name generated by the server)`
      : req.name
        ? `${res}${group} ${q(req.name)}`
        : `a new ${req.kind.kind}`;
  const where = req.namespace ? ` in namespace ${q(req.namespace)}` : " (cluster-scoped)";
  const extra = highlights(req, t);
  if (req.operation === "UPDATE") {
    const n = countChanges(t.before, t.after, isSecret(req), SUMMARY_COUNT_LIMIT);
    extra.push(`${n >= SUMMARY_COUNT_LIMIT ? "at least " : ""}${n} field${n === 1 ? "" : "s"} changed`);
  }
  if (isSecret(req)) extra.push("Secret values redacted");
  const text = `${requesterName(req.userInfo.username ?? "unknown")} wants to ${req.operation} ${target}${where}${extra.length ? ` (${extra.join("; ")})` : ""}.`;
  const shown = visible(text);
  return shown.length > SUMMARY_LIMIT ? `${shown.slice(0, SUMMARY_LIMIT - 3)}...` : shown;
}

/** The summary's "N fields changed" stops counting here. */
const SUMMARY_COUNT_LIMIT = 10_000;
/** The summary is a paragraph (its highlights are bounded); the CRD allows 4096. */
const SUMMARY_LIMIT = 3600;

/**
 * Longest diff stored in an ApprovalRequest (the CRD's spec.diff allows 262144 characters;
 * the rest of the object stays far below etcd's 1.5 MiB request limit).
 */
export const DIFF_LIMIT = 256 * 1024 - 2048;

/** What the approver reads, and whether it is the whole transition. */
export interface ActionDiff {
  text: string;
  /** Some changed fields are not in `text`: the request must not be approved (see the decision guard). */
  truncated: boolean;
  /** Changed fields (entries) in the whole transition. */
  fields: number;
}

/** Said in the summary and the diff of a request whose change is too large to show in full. */
export function tooLargeMessage(fields: number): string {
  return `THE CHANGE IS TOO LARGE TO SHOW IN FULL (${fields} changed fields); IT CANNOT BE APPROVED - split it into smaller changes, or have an admin add an Allow rule for it.`;
}

/**
 * What the approver reads: the whole transition, field by field (see renderDiff), with Secret
 * values redacted. Computed from the same transition that is hashed. Never cut silently: if
 * the whole rendering does not fit DIFF_LIMIT, `truncated` is set and the text says so.
 */
export function renderActionDiff(req: AdmissionRequest, t: Transition = transitionOf(req)): ActionDiff {
  const headLines = Object.entries(t.deleteOptions ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `(delete option) ${k}: ${describeValue(v)}`)
    .concat(ownershipLines(t));
  // Delete options and ownership changes first, as many as fit; the fields get the rest.
  const optionLines: string[] = [];
  let budget = DIFF_LIMIT - 400;
  for (const l of headLines) {
    if (l.length + 1 > budget) break;
    optionLines.push(l);
    budget -= l.length + 1;
  }
  const headOmitted = headLines.length - optionLines.length;
  const r = renderDiff(t.before, t.after, {
    secret: isSecret(req),
    maxLines: Number.POSITIVE_INFINITY,
    maxChars: headOmitted > 0 ? 0 : budget,
  });
  const lines = [...optionLines, ...r.lines];
  if (headOmitted > 0) {
    lines.push(
      `... ${headOmitted} more option/field-ownership line${headOmitted === 1 ? "" : "s"} and ${r.total} changed field${r.total === 1 ? "" : "s"} NOT SHOWN. ${tooLargeMessage(r.total)}`,
    );
    return { text: lines.join("\n"), truncated: true, fields: r.total };
  }
  if (r.complete)
    return {
      text: lines.length ? lines.join("\n") : "(no field changes)",
      truncated: false,
      fields: r.total,
    };
  const omitted = r.total - r.shown;
  lines.push(
    `... ${omitted} more changed field${omitted === 1 ? "" : "s"} NOT SHOWN. ${tooLargeMessage(r.total)}`,
  );
  return { text: lines.join("\n"), truncated: true, fields: r.total };
}

/** The text of renderActionDiff. */
export function actionDiff(req: AdmissionRequest, t: Transition = transitionOf(req)): string {
  return renderActionDiff(req, t).text;
}

/** The agent's stated context from countersign.io/* annotations (the new object, or the deleted one). */
export function agentContext(req: AdmissionRequest): AgentContext | undefined {
  const source = isObject(req.object) ? req.object : isObject(req.oldObject) ? req.oldObject : undefined;
  const ann = source && isObject(source.metadata) ? source.metadata.annotations : undefined;
  if (!isObject(ann)) return undefined;
  const out: AgentContext = {};
  for (const [key, annotation] of Object.entries(AGENT_CONTEXT_ANNOTATIONS) as [
    keyof AgentContext,
    string,
  ][]) {
    const v = ann[annotation];
    if (typeof v === "string" && v.trim()) out[key] = v.slice(0, CONTEXT_LIMITS[key]);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
