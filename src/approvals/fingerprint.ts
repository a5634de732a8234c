/**
 * What exactly is being approved: the action's fingerprint, a readable summary, a
 * field-level diff for updates, and the agent's stated context. Pure functions.
 *
 * Secret values never leave this module: summaries and diffs show Secret data keys
 * with redacted values, and the last-applied-configuration annotation (which can
 * hold a Secret's data) is dropped.
 */
import { createHash } from "node:crypto";
import { type AdmissionRequest, serviceAccountOf } from "../policy/evaluate.js";

export const REDACTED = "<redacted>";
export const ANNOTATION_PREFIX = "countersign.io/";
export const AGENT_CONTEXT_ANNOTATIONS = {
  reason: "countersign.io/reason",
  prompt: "countersign.io/prompt",
  ticket: "countersign.io/ticket",
  agent: "countersign.io/agent",
} as const;
const CONTEXT_LIMITS = { reason: 2048, prompt: 8192, ticket: 253, agent: 253 } as const;
const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";
const VOLATILE_METADATA = [
  "resourceVersion",
  "managedFields",
  "generation",
  "uid",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "selfLink",
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The object without volatile fields, status, or Countersign's own annotations. */
export function canonicalObject(obj: unknown): Json {
  if (!isObject(obj)) return (obj ?? null) as Json;
  const { status: _status, metadata, ...rest } = obj;
  const out: Record<string, unknown> = { ...rest };
  if (isObject(metadata)) {
    const md: Record<string, unknown> = { ...metadata };
    for (const k of VOLATILE_METADATA) delete md[k];
    if (isObject(md.annotations)) {
      const ann = Object.fromEntries(
        Object.entries(md.annotations).filter(
          ([k]) => !k.startsWith(ANNOTATION_PREFIX) && k !== LAST_APPLIED,
        ),
      );
      if (Object.keys(ann).length > 0) md.annotations = ann;
      else delete md.annotations;
    }
    out.metadata = md;
  }
  return out as Json;
}

/** JSON with object keys sorted at every level: equal objects give equal strings. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
    .join(",")}}`;
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * The hash of the object an action carries: the new object for CREATE/UPDATE, the
 * options for CONNECT, and for DELETE the identity (uid) of the object being deleted,
 * so an approval to delete one object never covers a same-named replacement.
 */
export function objectHash(req: AdmissionRequest): string {
  if (req.operation === "DELETE") {
    const uid =
      isObject(req.oldObject) && isObject(req.oldObject.metadata) ? req.oldObject.metadata.uid : undefined;
    return typeof uid === "string" ? sha256(`uid:${uid}`) : "";
  }
  if (req.object === undefined || req.object === null) return "";
  return sha256(canonicalJson(canonicalObject(req.object)));
}

export interface ActionIdentity {
  username: string;
  operation: string;
  group: string;
  version: string;
  resource: string;
  subResource: string;
  namespace: string;
  name: string;
  objectHash: string;
}

export function actionIdentity(req: AdmissionRequest): ActionIdentity {
  return {
    username: req.userInfo.username ?? "",
    operation: req.operation,
    group: req.resource.group,
    version: req.resource.version,
    resource: req.resource.resource,
    subResource: req.subResource ?? "",
    namespace: req.namespace ?? "",
    name: req.name ?? "",
    objectHash: objectHash(req),
  };
}

export function fingerprintOf(a: ActionIdentity): string {
  return sha256(
    canonicalJson([
      a.username,
      a.operation,
      a.group,
      a.version,
      a.resource,
      a.subResource,
      a.namespace,
      a.name,
      a.objectHash,
    ]),
  );
}

export function isSecret(req: AdmissionRequest): boolean {
  return req.resource.group === "" && req.resource.resource === "secrets";
}

/** A copy safe to show humans: Secret values redacted, last-applied-configuration dropped. */
export function redactedObject(obj: unknown, secret: boolean): Json {
  const c = canonicalObject(obj);
  if (!isObject(c)) return c;
  if (secret) {
    for (const field of ["data", "stringData"]) {
      const d = c[field];
      if (isObject(d)) c[field] = Object.fromEntries(Object.keys(d).map((k) => [k, REDACTED]));
    }
  }
  return c;
}

function describeValue(v: Json | undefined): string {
  if (v === undefined) return "(absent)";
  const s = JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** Field-level changes between two redacted objects: `path: old → new`, one per line. */
export function fieldDiff(oldObj: Json, newObj: Json, maxLines = 200): string {
  const lines: string[] = [];
  const visit = (a: Json | undefined, b: Json | undefined, path: string) => {
    if (lines.length >= maxLines) return;
    if (isObject(a) && isObject(b)) {
      for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
        visit(a[k] as Json | undefined, b[k] as Json | undefined, path ? `${path}.${k}` : k);
      }
      return;
    }
    if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
      for (let i = 0; i < a.length; i++) visit(a[i], b[i], `${path}[${i}]`);
      return;
    }
    if (canonicalJson(a) !== canonicalJson(b))
      lines.push(`${path}: ${describeValue(a)} → ${describeValue(b)}`);
  };
  visit(oldObj, newObj, "");
  if (lines.length >= maxLines) lines.push("... (more changes)");
  return lines.join("\n");
}

export function requesterName(username: string): string {
  const sa = serviceAccountOf(username);
  return sa ? `service account ${sa.namespace}/${sa.name}` : username;
}

/** One readable paragraph: who wants to do what, where. */
export function actionSummary(req: AdmissionRequest): string {
  const res = req.subResource ? `${req.resource.resource}/${req.subResource}` : req.resource.resource;
  const group = req.resource.group ? `.${req.resource.group}` : "";
  const target = req.name ? `${res}${group} "${req.name}"` : `a new ${req.kind.kind}`;
  const where = req.namespace ? ` in namespace "${req.namespace}"` : " (cluster-scoped)";
  const extra: string[] = [];
  if (req.operation === "UPDATE" && isObject(req.object) && isObject(req.oldObject)) {
    const n = fieldDiff(
      redactedObject(req.oldObject, isSecret(req)),
      redactedObject(req.object, isSecret(req)),
    )
      .split("\n")
      .filter(Boolean).length;
    extra.push(`${n} field${n === 1 ? "" : "s"} changed`);
  }
  if (isSecret(req)) extra.push("Secret values redacted");
  return `${requesterName(req.userInfo.username ?? "unknown")} wants to ${req.operation} ${target}${where}${extra.length ? ` (${extra.join("; ")})` : ""}.`;
}

export function actionDiff(req: AdmissionRequest): string | undefined {
  if (req.operation !== "UPDATE") return undefined;
  const secret = isSecret(req);
  return (
    fieldDiff(redactedObject(req.oldObject, secret), redactedObject(req.object, secret)) ||
    "(no field changes)"
  );
}

export interface AgentContext {
  reason?: string;
  prompt?: string;
  ticket?: string;
  agent?: string;
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
