/**
 * `kubectl approvals doctor`: the ways around the gate the controller found (each policy's
 * BypassRisk condition and status.bypassRisks), with the RoleBinding or ClusterRoleBinding
 * that grants each one (found by the RBAC matcher over the live bindings, as the caller) and
 * the command that removes it. Exit code 1 when any risk exists.
 */
import { type KubeConfig, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import {
  type Attributes,
  fixFor,
  grantsFor,
  type RbacSnapshot,
  serviceAccountWho,
  type Who,
} from "../bypass/rbac-match.js";
import { describeKubeError } from "../kube/errors.js";
import { CountersignClient } from "../resources/client.js";
import { type Condition, ConditionType } from "../resources/conditions.js";

interface ListedRisk {
  subject: string;
  verb: string;
  apiGroup?: string;
  resource: string;
  namespace?: string;
  description?: string;
}

interface PolicyWithRisks {
  metadata: { name: string; generation?: number };
  status?: { conditions?: Condition[]; bypassRisks?: ListedRisk[] };
}

/** The identity behind a subject as the scan names it ("ServiceAccount ns/name", "user x", "group g"). Pure. */
export function whoOf(subject: string): Who | undefined {
  const sa = /^ServiceAccount ([^/]+)\/(.+)$/.exec(subject);
  if (sa) return serviceAccountWho(sa[1]!, sa[2]!);
  const user = /^user (.+)$/.exec(subject);
  if (user) return { username: user[1]!, groups: ["system:authenticated"] };
  const group = /^group (.+)$/.exec(subject);
  if (group) return { username: "", groups: [group[1]!] };
  return undefined;
}

/** The report for the policies as read, with bindings from `rbac` (when readable). Pure. */
export function formatDoctor(
  policies: readonly PolicyWithRisks[],
  rbac: RbacSnapshot | undefined,
  rbacError?: string,
): { risks: number; report: string } {
  const lines: string[] = [];
  let total = 0;
  for (const p of [...policies].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1))) {
    const cond = p.status?.conditions?.find((c) => c.type === ConditionType.BypassRisk);
    if (!cond) {
      lines.push(
        `ApprovalPolicy ${p.metadata.name}: not checked yet (is the Countersign controller running?)`,
      );
      continue;
    }
    if (cond.status === "Unknown") {
      lines.push(`ApprovalPolicy ${p.metadata.name}: could not be checked: ${cond.message ?? ""}`);
      continue;
    }
    const risks = p.status?.bypassRisks ?? [];
    if (cond.status !== "True" || risks.length === 0) {
      lines.push(`ApprovalPolicy ${p.metadata.name}: no way around the gate found`);
      continue;
    }
    total += risks.length;
    lines.push(`ApprovalPolicy ${p.metadata.name}: ${risks.length} way(s) around the gate`);
    for (const r of risks) {
      const where = r.namespace ? `in namespace ${r.namespace}` : "cluster-wide";
      lines.push(`  RISK  ${r.subject} can ${r.description ?? `${r.verb} ${r.resource}`} ${where}`);
      const [resource, subresource] = r.resource.split("/") as [string, string | undefined];
      const a: Attributes = {
        verb: r.verb,
        group: r.apiGroup ?? "",
        resource,
        ...(subresource ? { subresource } : {}),
        ...(r.namespace ? { namespace: r.namespace } : {}),
      };
      const who = whoOf(r.subject);
      if (!rbac || !who) {
        lines.push(`        granted by: unknown (${rbacError ?? "cannot read RBAC bindings"})`);
        continue;
      }
      const grants = grantsFor(who, a, rbac);
      if (grants.length === 0) {
        lines.push(
          `        granted by: no RoleBinding or ClusterRoleBinding found (another authorizer?); check: kubectl auth can-i ${r.verb} ${r.resource} ${r.namespace ? `-n ${r.namespace} ` : "-A "}--as ${who.username || `x --as-group ${who.groups[0]}`}`,
        );
        continue;
      }
      for (const g of grants) {
        const binding =
          g.binding.kind === "RoleBinding" ? `${g.binding.namespace}/${g.binding.name}` : g.binding.name;
        lines.push(`        granted by: ${g.binding.kind} ${binding} (${g.role.kind} ${g.role.name})`);
        lines.push(`        fix: ${fixFor(g, a)}`);
      }
    }
  }
  if (policies.length === 0) lines.push("no ApprovalPolicies");
  lines.push(
    total > 0
      ? `\n${total} way(s) around the gate. Admission cannot stop these rights; remove them or accept them knowingly.`
      : "\nNo ways around the gate found.",
  );
  return { risks: total, report: lines.join("\n") };
}

export async function doctor(kc: KubeConfig): Promise<{ ok: boolean; report: string }> {
  const list = {
    items: (await CountersignClient.fromKubeConfig(kc).approvalPolicies.list()) as PolicyWithRisks[],
  };
  const api = kc.makeApiClient(RbacAuthorizationV1Api);
  let rbac: RbacSnapshot | undefined;
  let rbacError: string | undefined;
  try {
    const [roles, clusterRoles, roleBindings, clusterRoleBindings] = await Promise.all([
      api.listRoleForAllNamespaces(),
      api.listClusterRole(),
      api.listRoleBindingForAllNamespaces(),
      api.listClusterRoleBinding(),
    ]);
    rbac = {
      roles: roles.items,
      clusterRoles: clusterRoles.items,
      roleBindings: roleBindings.items,
      clusterRoleBindings: clusterRoleBindings.items,
    };
  } catch (err) {
    rbacError = `cannot list RBAC objects: ${describeKubeError(err)}`;
  }
  const { risks, report } = formatDoctor(list.items, rbac, rbacError);
  return { ok: risks === 0, report };
}
