/**
 * A small RBAC rule matcher, pure: which RoleBindings / ClusterRoleBindings grant a subject a
 * request? A SubjectAccessReview says *whether* (authoritatively); this says *which binding*,
 * so `kubectl approvals doctor` can name the fix. Follows the RBAC authorizer's rules for
 * verbs, API groups, resources ("*", "*\/sub"), resourceNames and binding scope; aggregated
 * ClusterRoles are read as the aggregation controller wrote them.
 */
import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1PolicyRule,
  V1Role,
  V1RoleBinding,
  RbacV1Subject as V1Subject,
} from "@kubernetes/client-node";

/** The identity a request would carry. */
export interface Who {
  username: string;
  groups: string[];
}

export interface Attributes {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  /** Empty or absent: cluster-scoped, or "in every namespace". */
  namespace?: string;
  name?: string;
}

export interface RbacSnapshot {
  roles: V1Role[];
  clusterRoles: V1ClusterRole[];
  roleBindings: V1RoleBinding[];
  clusterRoleBindings: V1ClusterRoleBinding[];
}

export interface Grant {
  binding: { kind: "RoleBinding" | "ClusterRoleBinding"; name: string; namespace?: string };
  role: { kind: "Role" | "ClusterRole"; name: string; namespace?: string };
}

const SA_PREFIX = "system:serviceaccount:";

/** The identity of a service account as the API server authenticates it. Pure. */
export function serviceAccountWho(namespace: string, name: string): Who {
  return {
    username: `${SA_PREFIX}${namespace}:${name}`,
    groups: ["system:serviceaccounts", `system:serviceaccounts:${namespace}`, "system:authenticated"],
  };
}

export function subjectMatches(s: V1Subject, who: Who, bindingNamespace?: string): boolean {
  switch (s.kind) {
    case "User":
      return s.name === who.username;
    case "Group":
      return who.groups.includes(s.name);
    case "ServiceAccount":
      return who.username === `${SA_PREFIX}${s.namespace ?? bindingNamespace ?? ""}:${s.name}`;
    default:
      return false;
  }
}

const has = (list: readonly string[] | undefined, value: string) =>
  (list ?? []).includes(value) || (list ?? []).includes("*");

export function ruleAllows(rule: V1PolicyRule, a: Attributes): boolean {
  if (!has(rule.verbs, a.verb)) return false;
  if (!has(rule.apiGroups, a.group)) return false;
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resources = rule.resources ?? [];
  const resourceOk =
    resources.includes("*") ||
    resources.includes(combined) ||
    (a.subresource !== undefined && resources.includes(`*/${a.subresource}`));
  if (!resourceOk) return false;
  if (rule.resourceNames?.length) return a.name !== undefined && rule.resourceNames.includes(a.name);
  return true;
}

function rulesOf(
  ref: { kind: string; name: string },
  namespace: string | undefined,
  rbac: RbacSnapshot,
): V1PolicyRule[] {
  if (ref.kind === "ClusterRole")
    return rbac.clusterRoles.find((r) => r.metadata?.name === ref.name)?.rules ?? [];
  return (
    rbac.roles.find((r) => r.metadata?.name === ref.name && r.metadata?.namespace === namespace)?.rules ?? []
  );
}

/** Every binding that grants `who` the request `a`. Pure. */
export function grantsFor(who: Who, a: Attributes, rbac: RbacSnapshot): Grant[] {
  const out: Grant[] = [];
  for (const b of rbac.clusterRoleBindings) {
    if (!(b.subjects ?? []).some((s) => subjectMatches(s, who))) continue;
    if (rulesOf(b.roleRef, undefined, rbac).some((r) => ruleAllows(r, a))) {
      out.push({
        binding: { kind: "ClusterRoleBinding", name: b.metadata?.name ?? "" },
        role: { kind: "ClusterRole", name: b.roleRef.name },
      });
    }
  }
  if (a.namespace) {
    for (const b of rbac.roleBindings) {
      const ns = b.metadata?.namespace;
      if (ns !== a.namespace) continue;
      if (!(b.subjects ?? []).some((s) => subjectMatches(s, who, ns))) continue;
      if (rulesOf(b.roleRef, ns, rbac).some((r) => ruleAllows(r, a))) {
        out.push({
          binding: { kind: "RoleBinding", name: b.metadata?.name ?? "", namespace: ns },
          role: {
            kind: b.roleRef.kind === "ClusterRole" ? "ClusterRole" : "Role",
            name: b.roleRef.name,
            ...(b.roleRef.kind === "Role" ? { namespace: ns } : {}),
          },
        });
      }
    }
  }
  return out;
}

/** Namespaces where some RoleBinding names `who` (where namespace-scoped grants can live). Pure. */
export function boundNamespaces(who: Who, rbac: RbacSnapshot): string[] {
  const out = new Set<string>();
  for (const b of rbac.roleBindings) {
    const ns = b.metadata?.namespace;
    if (ns && (b.subjects ?? []).some((s) => subjectMatches(s, who, ns))) out.add(ns);
  }
  return [...out].sort();
}

/** Whether any binding names this service account (directly or by one of its groups, not system:authenticated). */
export function isBound(namespace: string, name: string, rbac: RbacSnapshot): boolean {
  const who = serviceAccountWho(namespace, name);
  who.groups = who.groups.filter((g) => g !== "system:authenticated" && g !== "system:serviceaccounts");
  return (
    rbac.clusterRoleBindings.some((b) => (b.subjects ?? []).some((s) => subjectMatches(s, who))) ||
    rbac.roleBindings.some((b) =>
      (b.subjects ?? []).some((s) => subjectMatches(s, who, b.metadata?.namespace)),
    )
  );
}

/** The command that removes a grant, and the alternative of narrowing the role. Pure. */
export function fixFor(g: Grant, a: Attributes): string {
  const del =
    g.binding.kind === "ClusterRoleBinding"
      ? `kubectl delete clusterrolebinding ${g.binding.name}`
      : `kubectl delete rolebinding ${g.binding.name} -n ${g.binding.namespace}`;
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const role =
    g.role.kind === "ClusterRole" ? `ClusterRole ${g.role.name}` : `Role ${g.role.namespace}/${g.role.name}`;
  return `${del}   (or remove verb "${a.verb}" on "${res}" from ${role}, or the subject from the binding)`;
}
