/**
 * Paths around admission (issue 10): rights that let a covered subject act as someone the
 * gate does not select, or switch the gate off. Admission cannot stop them, so Countersign
 * looks for them (SubjectAccessReviews, by the controller) and reports them as the
 * `BypassRisk` condition. Pure: the checks, the subjects of a policy, and the report.
 */
import type { V1ServiceAccount } from "@kubernetes/client-node";
import type { Subjects } from "../resources/approval-policy.js";
import type { Condition } from "../resources/conditions.js";
import { BypassReason, ConditionType } from "../resources/conditions.js";
import { type Attributes, serviceAccountWho, type Who } from "./rbac-match.js";

/** At most this many risks are listed in status (the condition message lists fewer). */
export const MAX_LISTED_RISKS = 50;
/** At most this many concrete subjects are checked per policy. */
export const MAX_SUBJECTS = 50;

export interface BypassCheck {
  id: string;
  attributes: Omit<Attributes, "namespace">;
  /** cluster: checked once, cluster-wide; namespaced: cluster-wide and in each namespace the subject is bound in. */
  scope: "cluster" | "namespaced";
  /** What the right lets the subject do, for people. */
  what: string;
  /** Checked only in this namespace (Countersign's own). */
  fixedNamespace?: string;
  /** Only a risk when the namespace has other service accounts with bindings (create pods). */
  needsOtherServiceAccounts?: boolean;
}

const RBAC = "rbac.authorization.k8s.io";

/** The checks, apart from those on Countersign's own deployment (see installChecks). */
export const BYPASS_CHECKS: readonly BypassCheck[] = [
  {
    id: "impersonate-users",
    attributes: { verb: "impersonate", group: "", resource: "users" },
    scope: "cluster",
    what: "impersonate users (act as any user the gate does not select)",
  },
  {
    id: "impersonate-groups",
    attributes: { verb: "impersonate", group: "", resource: "groups" },
    scope: "cluster",
    what: "impersonate groups",
  },
  {
    id: "impersonate-serviceaccounts",
    attributes: { verb: "impersonate", group: "", resource: "serviceaccounts" },
    scope: "namespaced",
    what: "impersonate service accounts",
  },
  {
    id: "impersonate-uids",
    attributes: { verb: "impersonate", group: "authentication.k8s.io", resource: "uids" },
    scope: "cluster",
    what: "impersonate user uids",
  },
  {
    id: "serviceaccount-token",
    attributes: { verb: "create", group: "", resource: "serviceaccounts", subresource: "token" },
    scope: "namespaced",
    what: "mint tokens for other service accounts (create serviceaccounts/token)",
  },
  {
    id: "create-pods",
    attributes: { verb: "create", group: "", resource: "pods" },
    scope: "namespaced",
    what: "create pods that run as other, bound service accounts",
    needsOtherServiceAccounts: true,
  },
  {
    id: "bind-clusterroles",
    attributes: { verb: "bind", group: RBAC, resource: "clusterroles" },
    scope: "namespaced",
    what: "bind ClusterRoles it does not hold (grant itself more)",
  },
  {
    id: "escalate-clusterroles",
    attributes: { verb: "escalate", group: RBAC, resource: "clusterroles" },
    scope: "namespaced",
    what: "escalate ClusterRoles (add rights it does not hold)",
  },
  {
    id: "bind-roles",
    attributes: { verb: "bind", group: RBAC, resource: "roles" },
    scope: "namespaced",
    what: "bind Roles it does not hold",
  },
  {
    id: "escalate-roles",
    attributes: { verb: "escalate", group: RBAC, resource: "roles" },
    scope: "namespaced",
    what: "escalate Roles",
  },
  ...(["update", "patch", "delete"] as const).map(
    (verb): BypassCheck => ({
      id: `${verb}-webhook-configurations`,
      attributes: {
        verb,
        group: "admissionregistration.k8s.io",
        resource: "validatingwebhookconfigurations",
      },
      scope: "cluster",
      what: `${verb} ValidatingWebhookConfigurations (switch the gate off; no webhook can refuse this)`,
    }),
  ),
  ...(["delete", "update", "patch"] as const).map(
    (verb): BypassCheck => ({
      id: `${verb}-namespaces`,
      attributes: { verb, group: "", resource: "namespaces" },
      scope: "cluster",
      what: `${verb} Namespaces (the namespaces Countersign leaves out — kube-system, its own install namespace — can be ${verb === "delete" ? "deleted, taking Countersign with them" : "relabelled, e.g. their pod-security labels"})`,
    }),
  ),
  {
    id: "delete-crds",
    attributes: { verb: "delete", group: "apiextensions.k8s.io", resource: "customresourcedefinitions" },
    scope: "cluster",
    what: "delete CustomResourceDefinitions (deleting Countersign's CRD removes every policy without admission)",
  },
];

/** Checks on Countersign's own workload in its install namespace. Pure. */
export function installChecks(installNamespace: string): BypassCheck[] {
  const inInstall = (check: Omit<BypassCheck, "scope" | "fixedNamespace">): BypassCheck => ({
    ...check,
    scope: "cluster",
    fixedNamespace: installNamespace,
  });
  return [
    ...(["update", "patch"] as const).map((verb) =>
      inInstall({
        id: `${verb}-countersign-deployments`,
        attributes: { verb, group: "apps", resource: "deployments" },
        what: `${verb} Deployments in ${installNamespace}, where Countersign runs (run code as Countersign)`,
      }),
    ),
    ...(["update", "patch"] as const).map((verb) =>
      inInstall({
        id: `${verb}-countersign-configmaps`,
        attributes: { verb, group: "", resource: "configmaps" },
        what: `${verb} ConfigMaps in ${installNamespace} (the admission client CA is reloaded from one: add its own CA and forge admission reviews)`,
      }),
    ),
    inInstall({
      id: "get-countersign-secrets",
      attributes: { verb: "get", group: "", resource: "secrets" },
      what: `read Secrets in ${installNamespace} (the webhook's serving key, notification credentials, the fingerprint key)`,
    }),
    inInstall({
      id: "exec-countersign-pods",
      attributes: { verb: "create", group: "", resource: "pods", subresource: "exec" },
      what: `exec into pods in ${installNamespace} (act as Countersign's service account, which relays decisions naming any approver)`,
    }),
  ];
}

/** A concrete subject to check: how it is named for people and the identity to review. */
export interface ConcreteSubject {
  display: string;
  who: Who;
  /** The service account itself, so pods running as it are not counted as "other". */
  serviceAccount?: { namespace: string; name: string };
}

/**
 * A policy's concrete subjects: its users, groups, named service accounts, and the service
 * accounts that exist for namespace-wide entries and selectors (at most MAX_SUBJECTS). Pure.
 */
export function concreteSubjects(
  subjects: Subjects,
  serviceAccounts: readonly V1ServiceAccount[],
): { subjects: ConcreteSubject[]; truncated: boolean } {
  const out = new Map<string, ConcreteSubject>();
  for (const u of subjects.users ?? [])
    out.set(`user:${u}`, { display: `user ${u}`, who: { username: u, groups: ["system:authenticated"] } });
  for (const g of subjects.groups ?? [])
    out.set(`group:${g}`, { display: `group ${g}`, who: { username: "", groups: [g] } });
  const addSa = (namespace: string, name: string) =>
    out.set(`sa:${namespace}/${name}`, {
      display: `ServiceAccount ${namespace}/${name}`,
      who: serviceAccountWho(namespace, name),
      serviceAccount: { namespace, name },
    });
  for (const ref of subjects.serviceAccounts ?? []) {
    if (ref.name && ref.name !== "*") addSa(ref.namespace, ref.name);
    else
      for (const sa of serviceAccounts)
        if (sa.metadata?.namespace === ref.namespace) addSa(ref.namespace, sa.metadata?.name ?? "");
  }
  const selector = subjects.serviceAccountSelector?.matchLabels ?? {};
  if (Object.keys(selector).length > 0) {
    for (const sa of serviceAccounts) {
      const labels = sa.metadata?.labels ?? {};
      if (Object.entries(selector).every(([k, v]) => labels[k] === v))
        addSa(sa.metadata?.namespace ?? "", sa.metadata?.name ?? "");
    }
  }
  const all = [...out.values()].sort((a, b) => (a.display < b.display ? -1 : 1));
  return { subjects: all.slice(0, MAX_SUBJECTS), truncated: all.length > MAX_SUBJECTS };
}

/** One risk: a subject holds a right that goes around the gate. */
export interface BypassRisk {
  subject: string;
  check: string;
  verb: string;
  resource: string;
  apiGroup: string;
  /** Absent: cluster-wide (every namespace). */
  namespace?: string;
  description: string;
}

export function riskKey(r: BypassRisk): string {
  return `${r.subject}|${r.check}|${r.namespace ?? ""}`;
}

/** A one-line description of a risk. Pure. */
export function describeRisk(r: BypassRisk): string {
  return `${r.subject} can ${r.description} ${r.namespace ? `in namespace ${r.namespace}` : "cluster-wide"}`;
}

/** The BypassRisk condition (its lastTransitionTime is set by the caller). Pure. */
export function bypassCondition(
  risks: readonly BypassRisk[],
  generation: number,
  truncatedSubjects: boolean,
): Omit<Condition, "lastTransitionTime"> {
  const note = truncatedSubjects ? ` (only the first ${MAX_SUBJECTS} subjects were checked)` : "";
  if (risks.length === 0) {
    return {
      type: ConditionType.BypassRisk,
      status: "False",
      reason: BypassReason.None,
      message: `no covered subject holds a right that goes around the gate${note}`,
      observedGeneration: generation,
    };
  }
  const shown = risks.slice(0, 5).map(describeRisk);
  const more = risks.length > shown.length ? `; and ${risks.length - shown.length} more` : "";
  return {
    type: ConditionType.BypassRisk,
    status: "True",
    reason: BypassReason.Found,
    message:
      `${risks.length} way(s) around the gate: ${shown.join("; ")}${more}${note}. Run kubectl approvals doctor for the bindings and fixes.`.slice(
        0,
        2000,
      ),
    observedGeneration: generation,
  };
}
