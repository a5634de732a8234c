/**
 * Which ApprovalPolicies a ServiceAccount write takes the account out of. A policy may select
 * its subjects by the labels of their ServiceAccount (`subjects.serviceAccountSelector`); a
 * covered agent that may patch ServiceAccounts (the built-in `edit` role allows it) could
 * remove that label and leave the gate. The admission handler refuses such a write from a
 * covered subject. Pure: the old and new objects come from the AdmissionRequest, no lookups.
 */

import type { AdmissionRequest, UserInfo } from "../resources/admission.js";
import type { CompiledPolicy } from "./compile.js";
import { subjectMatches } from "./evaluate.js";
import { PolicySet } from "./policy-set.js";

type Labels = Record<string, string>;

function labelsOf(obj: unknown): Labels {
  const labels = (obj as { metadata?: { labels?: unknown } } | undefined)?.metadata?.labels;
  if (!labels || typeof labels !== "object") return {};
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels as Record<string, unknown>)) {
    if (typeof v === "string") out[k] = v;
  }
  return out;
}

/** The identity Kubernetes gives a ServiceAccount's tokens (username and groups). */
export function serviceAccountUser(namespace: string, name: string): UserInfo {
  return {
    username: `system:serviceaccount:${namespace}:${name}`,
    groups: ["system:serviceaccounts", `system:serviceaccounts:${namespace}`, "system:authenticated"],
  };
}

/** Whether the request writes a ServiceAccount object itself (not a subresource such as token). */
export function isServiceAccountWrite(req: AdmissionRequest): boolean {
  return (
    req.resource.group === "" &&
    req.resource.resource === "serviceaccounts" &&
    !req.subResource &&
    (req.operation === "UPDATE" || req.operation === "DELETE")
  );
}

/**
 * The names of the policies (in evaluation order) that cover the ServiceAccount before this
 * write and would not after it, because of its labels. UPDATE compares the old and new labels;
 * DELETE compares the old labels with none (the name may be re-created without the label, and
 * every policy selecting it by label would lose it). A policy that also names the account
 * (`serviceAccounts`, `users`, `groups`) keeps covering it and is not listed. Anything other
 * than an UPDATE or DELETE of a ServiceAccount returns [].
 */
export function coverageLostBy(
  req: AdmissionRequest,
  policies: readonly CompiledPolicy[] | PolicySet,
): string[] {
  if (!isServiceAccountWrite(req)) return [];
  const name = req.name || (req.oldObject as { metadata?: { name?: string } } | undefined)?.metadata?.name;
  const namespace = req.namespace;
  if (!name || !namespace) return [];
  const before = labelsOf(req.oldObject);
  const after = req.operation === "DELETE" ? {} : labelsOf(req.object);
  const user = serviceAccountUser(namespace, name);
  const list = policies instanceof PolicySet ? policies.candidates(user) : policies;
  const covers = (labels: Labels) => (p: CompiledPolicy) =>
    subjectMatches(p.subjects, user, { serviceAccountLabels: () => labels });
  const coveredBefore = covers(before);
  const coveredAfter = covers(after);
  return list.filter((p) => coveredBefore(p) && !coveredAfter(p)).map((p) => p.name);
}
