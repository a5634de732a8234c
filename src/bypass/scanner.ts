/**
 * The BypassRisk scan (controller role, leader only; never on the admission path): for each
 * valid ApprovalPolicy's concrete subjects, SubjectAccessReviews for the rights in checks.ts,
 * reported as the policy's BypassRisk condition and status.bypassRisks list (server-side
 * apply with its own field manager, so the Ready condition is left alone), a Warning Event
 * per distinct risk set, and the countersign_bypass_risks gauge. Runs when policies change
 * (at most every MIN_GAP_MS) and every intervalMs, so a removed binding clears the condition.
 */
import { createHash } from "node:crypto";
import {
  AuthorizationV1Api,
  CoreV1Api,
  type KubeConfig,
  RbacAuthorizationV1Api,
  type V1ServiceAccount,
} from "@kubernetes/client-node";
import { Gauge } from "prom-client";
import { describeKubeError } from "../kube/errors.js";
import { emitEvent } from "../kube/events.js";
import type { Logger } from "../logging/logger.js";
import { registry } from "../metrics/metrics.js";
import type { CompiledPolicy } from "../policy/compile.js";
import type { PolicyCache } from "../policy/policy-cache.js";
import { type ApprovalPolicyClient, CountersignClient } from "../resources/client.js";
import {
  BypassReason,
  type Clock,
  type Condition,
  ConditionType,
  type ConditionUpdate,
  conditionChanged,
  findCondition,
  mergeCondition,
  systemClock,
} from "../resources/conditions.js";
import { EventReason } from "../resources/event-reasons.js";
import { API_GROUP_VERSION } from "../resources/group.js";
import {
  BYPASS_CHECKS,
  type BypassCheck,
  type BypassRisk,
  bypassCondition,
  type ConcreteSubject,
  concreteSubjects,
  describeRisk,
  installChecks,
  MAX_LISTED_RISKS,
  riskKey,
} from "./checks.js";
import { type Attributes, boundNamespaces, isBound, type RbacSnapshot } from "./rbac-match.js";

export const FIELD_MANAGER = "countersign-bypass-scan";
const POLL_MS = 1000;
const MIN_GAP_MS = 2000;
export const DEFAULT_SCAN_INTERVAL_MS = 60_000;

export const bypassRisks = new Gauge({
  name: "countersign_bypass_risks",
  help: "Rights held by an ApprovalPolicy's covered subjects that go around the gate (impersonation, tokens, pods as other service accounts, RBAC escalation, the webhook configuration), by policy.",
  labelNames: ["policy"] as const,
  registers: [registry],
});

export interface BypassScannerOptions {
  kubeConfig: KubeConfig;
  installNamespace: string;
  policies: PolicyCache;
  isLeader: () => boolean;
  logger: Logger;
  /** For Events. */
  instance: string;
  intervalMs?: number;
  /** The time written into conditions (tests inject one). */
  now?: Clock;
}

interface Cluster {
  rbac: RbacSnapshot;
  serviceAccounts: V1ServiceAccount[];
}

export class BypassScanner {
  private readonly client: ApprovalPolicyClient;
  private readonly core: CoreV1Api;
  private readonly rbacApi: RbacAuthorizationV1Api;
  private readonly authz: AuthorizationV1Api;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastScan = 0;
  private lastSeen = "";
  private readonly reported = new Map<string, string>();

  constructor(private readonly opts: BypassScannerOptions) {
    const kc = opts.kubeConfig;
    this.client = CountersignClient.fromKubeConfig(kc).approvalPolicies;
    this.core = kc.makeApiClient(CoreV1Api);
    this.rbacApi = kc.makeApiClient(RbacAuthorizationV1Api);
    this.authz = kc.makeApiClient(AuthorizationV1Api);
  }

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      try {
        await this.maybeScan();
      } catch (err) {
        this.opts.logger.warn("bypass scan failed; retrying", { error: describeKubeError(err) });
      }
      if (!this.stopped) this.timer = setTimeout(() => void tick(), POLL_MS);
    };
    this.timer = setTimeout(() => void tick(), 0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async maybeScan(): Promise<void> {
    if (!this.opts.isLeader() || !this.opts.policies.isSynced()) return;
    const policies = this.opts.policies.list();
    const seen = policies.map((p) => `${p.name}@${p.generation}`).join(",");
    const now = Date.now();
    const due = now - this.lastScan >= (this.opts.intervalMs ?? DEFAULT_SCAN_INTERVAL_MS);
    if (!due && (seen === this.lastSeen || now - this.lastScan < MIN_GAP_MS)) return;
    this.lastScan = now;
    this.lastSeen = seen;
    await this.scan(policies);
  }

  /** One pass over every valid policy. */
  async scan(policies: readonly CompiledPolicy[]): Promise<void> {
    const cluster = await this.readCluster();
    const reviews = new Map<string, Promise<boolean>>();
    bypassRisks.reset();
    for (const p of policies) {
      const log = this.opts.logger.child({ policy: p.name, generation: p.generation });
      const { subjects, truncated } = concreteSubjects(p.subjects, cluster.serviceAccounts);
      let risks: BypassRisk[];
      try {
        risks = [];
        for (const s of subjects) risks.push(...(await this.risksOf(s, cluster, reviews)));
      } catch (err) {
        log.warn("bypass scan of a policy failed", { error: describeKubeError(err) });
        await this.writeStatus(p, {
          type: ConditionType.BypassRisk,
          status: "Unknown",
          reason: BypassReason.ScanFailed,
          message: `could not check the covered subjects' rights: ${describeKubeError(err)}`.slice(0, 1000),
          observedGeneration: p.generation,
        });
        continue;
      }
      bypassRisks.set({ policy: p.name }, risks.length);
      await this.writeStatus(p, bypassCondition(risks, p.generation, truncated), risks);
      const fingerprint = createHash("sha256").update(risks.map(riskKey).sort().join("\n")).digest("hex");
      if (risks.length > 0 && this.reported.get(p.name) !== fingerprint) {
        log.warn("covered subjects hold rights that go around the gate", {
          risks: risks.length,
          first: describeRisk(risks[0]!),
        });
        await emitEvent(
          this.core,
          {
            target: { apiVersion: API_GROUP_VERSION, kind: "ApprovalPolicy", name: p.name, namespace: "" },
            eventNamespace: "default",
            reason: EventReason.BypassRisk,
            message: bypassCondition(risks, p.generation, truncated).message ?? "",
            type: "Warning",
            component: "controller",
            instance: this.opts.instance,
            // One Event per distinct set of risks (a restarted controller finds it exists).
            dedupeKey: `${p.name}/bypass/${fingerprint}`,
            now: new Date(),
          },
          log,
        );
      }
      this.reported.set(p.name, fingerprint);
    }
  }

  private async readCluster(): Promise<Cluster> {
    const [roles, clusterRoles, roleBindings, clusterRoleBindings, serviceAccounts] = await Promise.all([
      this.rbacApi.listRoleForAllNamespaces(),
      this.rbacApi.listClusterRole(),
      this.rbacApi.listRoleBindingForAllNamespaces(),
      this.rbacApi.listClusterRoleBinding(),
      this.core.listServiceAccountForAllNamespaces(),
    ]);
    return {
      rbac: {
        roles: roles.items,
        clusterRoles: clusterRoles.items,
        roleBindings: roleBindings.items,
        clusterRoleBindings: clusterRoleBindings.items,
      },
      serviceAccounts: serviceAccounts.items,
    };
  }

  private review(who: ConcreteSubject["who"], a: Attributes, cache: Map<string, Promise<boolean>>) {
    const key = JSON.stringify([who, a]);
    let hit = cache.get(key);
    if (!hit) {
      hit = this.authz
        .createSubjectAccessReview({
          body: {
            apiVersion: "authorization.k8s.io/v1",
            kind: "SubjectAccessReview",
            spec: {
              ...(who.username ? { user: who.username } : {}),
              groups: who.groups,
              resourceAttributes: {
                verb: a.verb,
                group: a.group,
                resource: a.resource,
                ...(a.subresource ? { subresource: a.subresource } : {}),
                ...(a.namespace ? { namespace: a.namespace } : {}),
              },
            },
          },
        })
        .then((r) => r.status?.allowed === true);
      cache.set(key, hit);
    }
    return hit;
  }

  private async risksOf(
    s: ConcreteSubject,
    cluster: Cluster,
    cache: Map<string, Promise<boolean>>,
  ): Promise<BypassRisk[]> {
    const out: BypassRisk[] = [];
    const namespaces = boundNamespaces(s.who, cluster.rbac);
    const checks: BypassCheck[] = [...BYPASS_CHECKS, ...installChecks(this.opts.installNamespace)];
    for (const check of checks) {
      const where: (string | undefined)[] = check.fixedNamespace
        ? [check.fixedNamespace]
        : check.scope === "cluster"
          ? [undefined]
          : [undefined, ...namespaces];
      for (const ns of where) {
        const attributes: Attributes = { ...check.attributes, ...(ns ? { namespace: ns } : {}) };
        if (!(await this.review(s.who, attributes, cache))) continue;
        let description = check.what;
        if (check.needsOtherServiceAccounts) {
          const others = cluster.serviceAccounts.filter((sa) => {
            const saNs = sa.metadata?.namespace ?? "";
            const name = sa.metadata?.name ?? "";
            if (ns && saNs !== ns) return false;
            if (s.serviceAccount && s.serviceAccount.namespace === saNs && s.serviceAccount.name === name)
              return false;
            return isBound(saNs, name, cluster.rbac);
          });
          if (others.length === 0) continue;
          const names = others.slice(0, 3).map((sa) => `${sa.metadata?.namespace}/${sa.metadata?.name}`);
          description = `${check.what} (e.g. ${names.join(", ")}${others.length > 3 ? `, ${others.length - 3} more` : ""})`;
        }
        out.push({
          subject: s.display,
          check: check.id,
          verb: check.attributes.verb,
          apiGroup: check.attributes.group,
          resource: check.attributes.subresource
            ? `${check.attributes.resource}/${check.attributes.subresource}`
            : check.attributes.resource,
          ...(ns ? { namespace: ns } : {}),
          description,
        });
        if (!ns && !check.fixedNamespace) break; // cluster-wide covers every namespace
      }
    }
    return out;
  }

  private async writeStatus(
    p: CompiledPolicy,
    condition: ConditionUpdate,
    risks?: BypassRisk[],
  ): Promise<void> {
    let current: { status?: { conditions?: Condition[] } } | undefined;
    try {
      current = await this.client.get(p.name);
    } catch (err) {
      this.opts.logger.warn("could not read policy for its BypassRisk status", {
        policy: p.name,
        error: describeKubeError(err),
      });
      return;
    }
    if (!current) return; // deleted meanwhile
    const old = findCondition(current.status?.conditions, ConditionType.BypassRisk);
    if (!conditionChanged(old, condition)) return;
    const full = mergeCondition(old, condition, this.opts.now ?? systemClock);
    try {
      await this.client.applyStatus(
        p.name,
        {
          conditions: [full],
          ...(risks
            ? {
                bypassRisks: risks.slice(0, MAX_LISTED_RISKS).map((r) => ({
                  subject: r.subject,
                  verb: r.verb,
                  apiGroup: r.apiGroup,
                  resource: r.resource,
                  ...(r.namespace ? { namespace: r.namespace } : {}),
                  description: r.description,
                })),
              }
            : {}),
        },
        FIELD_MANAGER,
      );
      this.opts.logger.info("BypassRisk condition written", {
        policy: p.name,
        status: condition.status,
        risks: risks?.length,
      });
    } catch (err) {
      this.opts.logger.warn("could not write the BypassRisk condition", {
        policy: p.name,
        error: describeKubeError(err),
      });
    }
  }
}
