/**
 * The gate's decision: (admission request, compiled policies, lookups) → allow | deny |
 * require approval. Pure: no I/O, no clock (a deadline check is passed in), no logger.
 *
 * Order and conflict resolution (docs/policies.md):
 *  1. Policies are visited in name order; a policy applies when its subjects, match and
 *     every matchCondition match.
 *  2. Every rule of an applying policy whose condition is true is collected.
 *  3. Deny wins over RequireApproval, which wins over Allow. A request no rule matches is
 *     allowed. Among several RequireApproval rules the strictest wins (most required
 *     approvals, then shortest TTL, then policy name and rule order).
 *  4. An expression that fails to evaluate fails closed: the request is denied with a
 *     message naming the policy and field, never the object's contents. So does one that
 *     runs out of its cost budget, or a request whose evaluation passes the deadline.
 */
import { type AdmissionRequest, serviceAccountOf, type UserInfo } from "../resources/admission.js";
import type { ResourceMatch, Subjects } from "../resources/approval-policy.js";
import {
  type CompiledExpression,
  EvalFrame,
  EvaluationError,
  inCelContext,
  toCel,
  unitsCharged,
} from "./cel.js";
import type { CompiledApproval, CompiledPolicy, CompiledRule } from "./compile.js";
import { PolicySet } from "./policy-set.js";

export interface RuleRef {
  policy: string;
  rule: string;
  generation: number;
}

export type Decision =
  | { kind: "allow"; matched: RuleRef[] }
  | { kind: "deny"; rule: RuleRef; message: string }
  | { kind: "require-approval"; rule: RuleRef; approval: CompiledApproval; message?: string }
  | { kind: "error"; policy: string; message: string };

export interface EvaluationInputs {
  /** Labels of a ServiceAccount from the informer cache (undefined when unknown). */
  serviceAccountLabels?: (namespace: string, name: string) => Record<string, string> | undefined;
  /** The Namespace object from the informer cache, for namespaceObject. */
  namespaceObject?: (name: string) => unknown;
  /**
   * Returns true when the evaluation deadline has passed: checked before each policy and
   * before any expression once DEADLINE_CHECK_UNITS were spent since the last check.
   */
  deadlineExceeded?: () => boolean;
  /** Cost budget of one expression evaluation (default EVALUATION_COST_LIMIT, cel.ts). */
  costLimit?: number;
}

/**
 * Cost units spent between deadline checks. Time follows cost (every unit is a bounded piece
 * of work), so reading the clock before every one of a request's many cheap expressions would
 * only add clock reads: the deadline is checked before each policy and before an expression
 * once this many units were spent since the last check.
 */
export const DEADLINE_CHECK_UNITS = 1000;

export function subjectMatches(subjects: Subjects, user: UserInfo, inputs: EvaluationInputs): boolean {
  const username = user.username ?? "";
  if (subjects.users?.includes(username)) return true;
  if (subjects.groups && user.groups?.some((g) => subjects.groups!.includes(g))) return true;
  const sa = serviceAccountOf(username);
  if (!sa) return false;
  if (
    subjects.serviceAccounts?.some(
      (ref) => ref.namespace === sa.namespace && (!ref.name || ref.name === "*" || ref.name === sa.name),
    )
  ) {
    return true;
  }
  const selector = subjects.serviceAccountSelector?.matchLabels;
  if (selector && Object.keys(selector).length > 0) {
    const labels = inputs.serviceAccountLabels?.(sa.namespace, sa.name);
    if (labels && Object.entries(selector).every(([k, v]) => labels[k] === v)) return true;
  }
  return false;
}

/**
 * One `resources` entry against a request, exactly as Kubernetes matches a webhook rule
 * (RuleWithOperations): split at the first "/"; the resource part matches when it is "*" or
 * equal, the subresource part when it is "*" or equal ("" for the main resource). So `pods`
 * is the main resource only, `pods/exec` one subresource, `pods/*` pods and every subresource
 * of pods, `*` every main resource; a `*` resource part with a `scale` subresource part is
 * the scale subresource of anything, and `*` in both parts is everything.
 */
export function resourcePatternMatches(pattern: string, resource: string, subResource: string): boolean {
  const slash = pattern.indexOf("/");
  const res = slash < 0 ? pattern : pattern.slice(0, slash);
  const sub = slash < 0 ? "" : pattern.slice(slash + 1);
  return (res === "*" || res === resource) && (sub === "*" || sub === subResource);
}

function resourceMatches(m: ResourceMatch, req: AdmissionRequest): boolean {
  if (!m.operations.includes(req.operation) && !m.operations.includes("*")) return false;
  if (m.apiGroups && !m.apiGroups.includes("*") && !m.apiGroups.includes(req.resource.group)) return false;
  const resource = req.resource.resource;
  const sub = req.subResource ?? "";
  if (!m.resources.some((r) => resourcePatternMatches(r, resource, sub))) return false;
  const ns = req.namespace ?? "";
  if (m.namespaces && !m.namespaces.includes(ns)) return false;
  if (m.excludedNamespaces?.includes(ns)) return false;
  return true;
}

/** Whether the request is one the policy looks at (an absent `match` compiles to everything). */
export function requestMatches(policy: CompiledPolicy, req: AdmissionRequest): boolean {
  return policy.match.some((m) => resourceMatches(m, req));
}

/**
 * The request's CEL variables, converted on first use (once per request, shared by every
 * policy): `request` like Kubernetes' own CEL (optional strings present as "", dryRun a bool),
 * `object` / `oldObject` (null when absent), `namespaceObject` from the informer cache.
 */
function requestFrame(req: AdmissionRequest, inputs: EvaluationInputs): EvalFrame {
  return new EvalFrame([undefined, undefined, undefined, undefined], (slot) => {
    switch (slot) {
      case 0: {
        const { object: _o, oldObject: _old, ...rest } = req;
        return toCel({
          name: "",
          namespace: "",
          subResource: "",
          requestSubResource: "",
          dryRun: false,
          ...rest,
        });
      }
      case 1:
        return req.object === undefined ? null : toCel(req.object);
      case 2:
        return req.oldObject === undefined ? null : toCel(req.oldObject);
      case 3:
        return req.namespace ? toCel(inputs.namespaceObject?.(req.namespace) ?? null) : null;
      default:
        return undefined;
    }
  });
}

function asBool(v: unknown, path: string): boolean | EvaluationError {
  if (v instanceof EvaluationError) return v;
  if (typeof v === "boolean") return v;
  return new EvaluationError(path, `expression must return a bool, got ${v === null ? "null" : typeof v}`);
}

function strictness(a: CompiledApproval): [number, number] {
  return [-a.requiredApprovals, a.ttlSeconds];
}

export function decide(
  req: AdmissionRequest,
  policies: readonly CompiledPolicy[] | PolicySet,
  inputs: EvaluationInputs = {},
): Decision {
  // One evaluation context for the whole request (the library's type registry), not one per expression.
  return inCelContext(() => decideIn(req, policies, inputs));
}

function decideIn(
  req: AdmissionRequest,
  policies: readonly CompiledPolicy[] | PolicySet,
  inputs: EvaluationInputs,
): Decision {
  let base: EvalFrame | undefined;
  let lastEvaluated: string | undefined;
  const deadline = inputs.deadlineExceeded;
  const candidates = policies instanceof PolicySet ? policies.candidates(req.userInfo) : policies;
  const allowed: RuleRef[] = [];
  let approval: { rule: CompiledRule; ref: RuleRef } | undefined;
  for (const policy of candidates) {
    if (!subjectMatches(policy.subjects, req.userInfo, inputs) || !requestMatches(policy, req)) continue;
    // CEL values of the request are built on first use: a policy whose matchCondition fails its
    // pre-filter (request.namespace in [...], prefilter.ts) never builds one.
    base ??= requestFrame(req, inputs);
    const frame = base.forPolicy(policy.variableNames);
    // Each expression is bounded by its cost budget (cel.ts); the deadline is checked before
    // each policy and whenever DEADLINE_CHECK_UNITS were spent since, so a request costs at
    // most the deadline plus one expression's budget (and those units).
    if (deadline?.()) {
      return { kind: "error", policy: policy.name, message: "policy evaluation exceeded its deadline" };
    }
    lastEvaluated = policy.name;
    let checkedAt = unitsCharged();
    const run = (e: CompiledExpression): unknown => {
      if (deadline && unitsCharged() - checkedAt >= DEADLINE_CHECK_UNITS) {
        checkedAt = unitsCharged();
        if (deadline()) return new EvaluationError(e.path, "policy evaluation exceeded its deadline");
      }
      return e.evaluate(frame, inputs.costLimit);
    };
    let applies = true;
    for (const mc of policy.matchConditions) {
      const pre = mc.prefilter?.(req as never);
      if (pre === false) {
        applies = false;
        break;
      }
      if (pre === true) continue;
      const r = asBool(run(mc), mc.path);
      if (r instanceof EvaluationError) return { kind: "error", policy: policy.name, message: r.message };
      if (!r) {
        applies = false;
        break;
      }
    }
    if (!applies) continue;
    for (const v of policy.variables) {
      const value = run(v.expression);
      if (value instanceof EvaluationError)
        return { kind: "error", policy: policy.name, message: value.message };
      frame.vars.push(value);
    }
    for (const rule of policy.rules) {
      if (rule.condition) {
        const pre = rule.condition.prefilter?.(req as never);
        if (pre === false) continue;
        if (pre !== true) {
          const r = asBool(run(rule.condition), rule.condition.path);
          if (r instanceof EvaluationError) return { kind: "error", policy: policy.name, message: r.message };
          if (!r) continue;
        }
      }
      const ref: RuleRef = { policy: policy.name, rule: rule.name, generation: policy.generation };
      if (rule.action === "Deny") {
        return {
          kind: "deny",
          rule: ref,
          message: rule.message ?? `denied by ApprovalPolicy ${policy.name}, rule ${rule.name}`,
        };
      }
      if (rule.action === "RequireApproval" && rule.approval) {
        if (!approval) approval = { rule, ref };
        else {
          const [a1, a2] = strictness(rule.approval);
          const [b1, b2] = strictness(approval.rule.approval!);
          if (a1 < b1 || (a1 === b1 && a2 < b2)) approval = { rule, ref };
        }
      } else allowed.push(ref);
    }
  }
  if (lastEvaluated !== undefined && deadline?.()) {
    return { kind: "error", policy: lastEvaluated, message: "policy evaluation exceeded its deadline" };
  }
  if (approval) {
    const d: Decision = { kind: "require-approval", rule: approval.ref, approval: approval.rule.approval! };
    if (approval.rule.message) d.message = approval.rule.message;
    return d;
  }
  return { kind: "allow", matched: allowed };
}
