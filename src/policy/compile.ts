/**
 * Compiles an ApprovalPolicy once (when it changes) into a form the request path
 * evaluates from memory. Pure: no I/O, no clock, no logger.
 */

import type {
  ApprovalPolicy,
  ApprovalSettings,
  Operation,
  PolicyRule,
  ResourceMatch,
  RuleAction,
  Subjects,
} from "../resources/approval-policy.js";
import { type CompiledExpression, type CompileError, compileExpression } from "./cel.js";

export const DEFAULT_TTL_SECONDS = 3600;
export const MAX_TTL_SECONDS = 7 * 24 * 3600;
/**
 * What a policy without `match` looks at: every request the webhook sends for a covered
 * subject — CREATE, UPDATE, DELETE and CONNECT of every resource and every subresource
 * (pods/exec, pods/eviction, serviceaccounts/token, deployments/scale, ...).
 */
export const MATCH_EVERYTHING: readonly ResourceMatch[] = Object.freeze([
  { operations: ["*"], apiGroups: ["*"], resources: ["*/*"] },
]);
export const OPERATIONS: readonly Operation[] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];

/** A resource name (lowercase plural, as in a URL) or "*". */
const RESOURCE_PART = /^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;
/** Open requests per requester per namespace before the gate refuses to open more (issue 10). */
export const DEFAULT_MAX_OPEN_REQUESTS = 10;
export const MAX_MAX_OPEN_REQUESTS = 1000;

export interface CompiledApproval {
  approvers: { users: string[]; groups: string[] };
  requiredApprovals: number;
  ttl: string;
  ttlSeconds: number;
  holdSeconds: number;
  notify: string[];
  maxOpenRequests: number;
  /** Break-glass groups (absent: the rule offers no break-glass). */
  breakGlass?: { groups: string[] };
  /** Follow-ups of a request left pending (durations as written; absent: none). */
  remindAfter?: string;
  escalateAfter?: string;
  escalateTo?: string[];
}

/** Groups a break-glass approval may never come from: machines, or everyone (the CRD refuses them too). */
export function forbiddenBreakGlassGroup(group: string): boolean {
  return (
    ["system:authenticated", "system:unauthenticated", "system:serviceaccounts", "system:masters"].includes(
      group,
    ) ||
    group.startsWith("system:serviceaccounts:") ||
    group.startsWith("system:nodes")
  );
}

export interface CompiledRule {
  name: string;
  index: number;
  action: RuleAction;
  message?: string;
  condition?: CompiledExpression;
  approval?: CompiledApproval;
}

export interface CompiledPolicy {
  name: string;
  generation: number;
  subjects: Subjects;
  /** Never empty: a policy without `match` gets MATCH_EVERYTHING. */
  match: readonly ResourceMatch[];
  matchConditions: CompiledExpression[];
  variables: { name: string; expression: CompiledExpression }[];
  /** The variables' names in declaration order (their slots in an evaluation frame). */
  variableNames: string[];
  rules: CompiledRule[];
  /** True when an expression reads namespaceObject (so the caller need not look it up otherwise). */
  usesNamespaceObject: boolean;
}

export type CompileResult = { ok: true; policy: CompiledPolicy } | { ok: false; errors: CompileError[] };

/** Parses a Go-style duration made of s/m/h parts ("90s", "1h30m"); undefined if malformed. */
export function parseDurationSeconds(text: string): number | undefined {
  if (!/^(\d+(s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(/(\d+)(s|m|h)/g)) {
    total += Number(m[1]) * (m[2] === "h" ? 3600 : m[2] === "m" ? 60 : 1);
  }
  return total;
}

/** remindAfter / escalateAfter / escalateTo: the CRD's rules, worded for the webhook's apply-time refusal. */
function compileFollowUps(
  a: ApprovalSettings,
  ttlSeconds: number | undefined,
  path: string,
  errors: CompileError[],
): Pick<CompiledApproval, "remindAfter" | "escalateAfter" | "escalateTo"> {
  const seconds = (field: "remindAfter" | "escalateAfter"): number | undefined => {
    const text = a[field];
    if (text === undefined) return undefined;
    const s = parseDurationSeconds(text);
    if (s === undefined || s <= 0) {
      errors.push({ path: `${path}.${field}`, message: `invalid duration '${text}' (use e.g. 10m, 1h)` });
      return undefined;
    }
    if (ttlSeconds !== undefined && s >= ttlSeconds)
      errors.push({
        path: `${path}.${field}`,
        message: `${field} ${text} must be shorter than ttl ${a.ttl ?? "1h"}`,
      });
    return s;
  };
  const remind = seconds("remindAfter");
  const escalate = seconds("escalateAfter");
  if (remind !== undefined && escalate !== undefined && remind >= escalate)
    errors.push({ path: `${path}.remindAfter`, message: "remindAfter must be shorter than escalateAfter" });
  const escalateTo = a.escalateTo ?? [];
  if ((a.escalateAfter !== undefined) !== escalateTo.length > 0)
    errors.push({
      path: `${path}.escalateTo`,
      message: "escalateAfter and escalateTo go together: name the routes an overdue request escalates to",
    });
  return {
    ...(a.remindAfter !== undefined ? { remindAfter: a.remindAfter } : {}),
    ...(a.escalateAfter !== undefined ? { escalateAfter: a.escalateAfter } : {}),
    ...(escalateTo.length > 0 ? { escalateTo } : {}),
  };
}

function compileApproval(a: ApprovalSettings, path: string, errors: CompileError[]): CompiledApproval {
  const ttl = a.ttl ?? "1h";
  const ttlSeconds = parseDurationSeconds(ttl);
  if (ttlSeconds === undefined || ttlSeconds <= 0) {
    errors.push({ path: `${path}.ttl`, message: `invalid duration '${ttl}' (use e.g. 30m, 1h, 24h)` });
  } else if (ttlSeconds > MAX_TTL_SECONDS) {
    errors.push({ path: `${path}.ttl`, message: `ttl ${ttl} is longer than the maximum of 168h` });
  }
  const approvers = { users: a.approvers?.users ?? [], groups: a.approvers?.groups ?? [] };
  if (approvers.users.length + approvers.groups.length === 0) {
    errors.push({ path: `${path}.approvers`, message: "approvers must name at least one user or group" });
  }
  const requiredApprovals = a.requiredApprovals ?? 1;
  if (approvers.groups.length === 0 && approvers.users.length < requiredApprovals) {
    errors.push({
      path: `${path}.requiredApprovals`,
      message: `${requiredApprovals} approvals required but only ${approvers.users.length} approver users are named and no groups`,
    });
  }
  const maxOpenRequests = a.maxOpenRequests ?? DEFAULT_MAX_OPEN_REQUESTS;
  if (!Number.isInteger(maxOpenRequests) || maxOpenRequests < 1 || maxOpenRequests > MAX_MAX_OPEN_REQUESTS) {
    errors.push({
      path: `${path}.maxOpenRequests`,
      message: `maxOpenRequests must be a whole number from 1 to ${MAX_MAX_OPEN_REQUESTS}, not ${maxOpenRequests}`,
    });
  }
  const breakGlassGroups = a.breakGlass?.groups ?? [];
  if (a.breakGlass && breakGlassGroups.length === 0)
    errors.push({ path: `${path}.breakGlass.groups`, message: "breakGlass must name at least one group" });
  for (const g of breakGlassGroups.filter(forbiddenBreakGlassGroup)) {
    errors.push({
      path: `${path}.breakGlass.groups`,
      message: `${g} cannot be a break-glass group: break-glass groups must be groups of people`,
    });
  }
  const followUps = compileFollowUps(a, ttlSeconds, path, errors);
  return {
    approvers,
    requiredApprovals,
    ...followUps,
    ttl,
    ttlSeconds: ttlSeconds ?? DEFAULT_TTL_SECONDS,
    holdSeconds: a.holdSeconds ?? 0,
    notify: a.notify ?? [],
    maxOpenRequests,
    ...(breakGlassGroups.length > 0 ? { breakGlass: { groups: breakGlassGroups } } : {}),
  };
}

/**
 * Checks one `match` entry: known operations and resource patterns written the way
 * Kubernetes webhook rules write them: a resource, or resource/subresource, where either part
 * may be "*".
 */
function checkMatch(m: ResourceMatch, path: string, errors: CompileError[]): void {
  const ops = Array.isArray(m.operations) ? m.operations : [];
  if (ops.length === 0) {
    errors.push({
      path: `${path}.operations`,
      message: "name at least one of CREATE, UPDATE, DELETE, CONNECT or *",
    });
  }
  ops.forEach((op, j) => {
    if (op !== "*" && !OPERATIONS.includes(op)) {
      errors.push({
        path: `${path}.operations[${j}]`,
        message: `'${op}' is not an operation (use CREATE, UPDATE, DELETE, CONNECT or *)`,
      });
    }
  });
  const resources = Array.isArray(m.resources) ? m.resources : [];
  if (resources.length === 0) {
    errors.push({
      path: `${path}.resources`,
      message: 'name at least one resource ("*/*" is every resource and subresource)',
    });
  }
  resources.forEach((r, j) => {
    const parts = typeof r === "string" ? r.split("/") : [];
    if (parts.length < 1 || parts.length > 2 || !parts.every((part) => RESOURCE_PART.test(part))) {
      errors.push({
        path: `${path}.resources[${j}]`,
        message: `'${String(r)}' is not a resource pattern: write "pods" (the resource only), "pods/exec" (one subresource), "pods/*" (pods and all its subresources), "*" (every resource), "*/scale" or "*/*" (everything), in lowercase plural as in kubectl api-resources`,
      });
    }
  });
}

export function compilePolicy(policy: ApprovalPolicy): CompileResult {
  const errors: CompileError[] = [];
  const spec = policy.spec;
  if (!spec || typeof spec !== "object")
    return { ok: false, errors: [{ path: "spec", message: "spec is required" }] };
  if (!spec.subjects) errors.push({ path: "spec.subjects", message: "subjects is required" });
  if (!Array.isArray(spec.rules) || spec.rules.length === 0) {
    errors.push({ path: "spec.rules", message: "at least one rule is required" });
  }
  const declared = new Set<string>();
  /** Variables computed without request data: iterating them is not agent-sized. */
  const constant = new Set<string>();
  const variables: CompiledPolicy["variables"] = [];
  let usesNamespaceObject = false;
  const compile = (source: string, path: string): CompiledExpression | undefined => {
    const r = compileExpression(source, path, new Set(declared), new Set(constant));
    if ("message" in r) {
      errors.push(r);
      return undefined;
    }
    if (source.includes("namespaceObject")) usesNamespaceObject = true;
    return r;
  };
  (spec.variables ?? []).forEach((v, i) => {
    if (declared.has(v.name)) {
      errors.push({ path: `spec.variables[${i}].name`, message: `variable '${v.name}' is declared twice` });
    }
    const e = compile(v.expression, `spec.variables[${i}].expression`);
    declared.add(v.name);
    if (e && !e.readsRequest) constant.add(v.name);
    if (e) variables.push({ name: v.name, expression: e });
  });
  const matchConditions = (spec.matchConditions ?? [])
    .map((m, i) => compile(m.expression, `spec.matchConditions[${i}].expression`))
    .filter((e): e is CompiledExpression => e !== undefined);
  const ruleNames = new Set<string>();
  const rules: CompiledRule[] = (spec.rules ?? []).map((r: PolicyRule, i) => {
    const path = `spec.rules[${i}]`;
    if (ruleNames.has(r.name))
      errors.push({ path: `${path}.name`, message: `rule name '${r.name}' is used twice` });
    ruleNames.add(r.name);
    if (!["Allow", "Deny", "RequireApproval"].includes(r.action)) {
      errors.push({
        path: `${path}.action`,
        message: `action must be Allow, Deny or RequireApproval, not '${r.action}'`,
      });
    }
    if (r.action === "RequireApproval" && !r.approval) {
      errors.push({ path: `${path}.approval`, message: "a RequireApproval rule needs an approval block" });
    }
    const rule: CompiledRule = { name: r.name, index: i, action: r.action };
    if (r.message) rule.message = r.message;
    if (r.condition) {
      const c = compile(r.condition, `${path}.condition`);
      if (c) rule.condition = c;
    }
    if (r.approval && r.action === "RequireApproval")
      rule.approval = compileApproval(r.approval, `${path}.approval`, errors);
    return rule;
  });
  if (spec.match !== undefined && !Array.isArray(spec.match)) {
    errors.push({ path: "spec.match", message: "match must be a list (or absent, to match every request)" });
  }
  const matchEntries = Array.isArray(spec.match) ? spec.match : [];
  for (const [i, m] of matchEntries.entries()) checkMatch(m, `spec.match[${i}]`, errors);
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    policy: {
      name: policy.metadata.name,
      generation: policy.metadata.generation ?? 0,
      subjects: spec.subjects,
      match: spec.match?.length ? spec.match : MATCH_EVERYTHING,
      matchConditions,
      variables,
      variableNames: variables.map((v) => v.name),
      rules,
      usesNamespaceObject,
    },
  };
}

/** One readable message for all compile errors, each naming its field. */
export function formatCompileErrors(policyName: string, errors: CompileError[]): string {
  return `ApprovalPolicy ${policyName} is invalid: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`;
}
