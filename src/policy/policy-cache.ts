/**
 * Compile-once policy cache: an informer on ApprovalPolicies compiles each policy when
 * its generation changes and serves the compiled, name-sorted list from memory. Informers
 * on ServiceAccounts and Namespaces back the serviceAccountSelector and namespaceObject.
 * Nothing here is called per admission request except the in-memory getters.
 */
import {
  CoreV1Api,
  type Informer,
  type KubeConfig,
  makeInformer,
  type ObjectCache,
  type V1Namespace,
  type V1ServiceAccount,
} from "@kubernetes/client-node";
import { describeKubeError } from "../kube/errors.js";
import { restartOnError } from "../kube/informers.js";
import type { Logger } from "../logging/logger.js";
import type { ApprovalPolicy } from "../resources/approval-policy.js";
import { type ApprovalPolicyClient, CountersignClient } from "../resources/client.js";
import {
  type Clock,
  ConditionType,
  type ConditionUpdate,
  conditionChanged,
  findCondition,
  mergeCondition,
  PolicyReason,
  systemClock,
} from "../resources/conditions.js";
import { type CompiledPolicy, compilePolicy, formatCompileErrors } from "./compile.js";
import type { EvaluationInputs } from "./evaluate.js";
import { PolicySet } from "./policy-set.js";

const STATUS_FIELD_MANAGER = "countersign-policy-status";

export interface PolicyCacheOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** Write the Ready condition to each policy's status (the controller does; webhook replicas need not). */
  writeStatus?: boolean;
  /**
   * Keep ServiceAccount and Namespace caches for serviceAccountSelector / namespaceObject
   * (default true; the controller, which only writes policy status, turns them off).
   */
  lookups?: boolean;
  /** The time written into conditions (tests inject one). */
  now?: Clock;
}

export class PolicyCache {
  private compiled = new Map<string, { generation: number; policy?: CompiledPolicy; error?: string }>();
  private set = new PolicySet([]);
  private synced = false;
  private stopped = false;
  private policies: Informer<ApprovalPolicy> & ObjectCache<ApprovalPolicy>;
  private serviceAccounts: Informer<V1ServiceAccount> & ObjectCache<V1ServiceAccount>;
  private namespaces: Informer<V1Namespace> & ObjectCache<V1Namespace>;
  private readonly client: ApprovalPolicyClient;

  /** The lookups the pure decision function needs, served from the informer caches. */
  readonly inputs: EvaluationInputs;

  private readonly clock: Clock;

  constructor(private readonly opts: PolicyCacheOptions) {
    this.clock = opts.now ?? systemClock;
    const kc = opts.kubeConfig;
    this.client = CountersignClient.fromKubeConfig(kc).approvalPolicies;
    const core = kc.makeApiClient(CoreV1Api);
    this.policies = makeInformer<ApprovalPolicy>(kc, this.client.informerPath, this.client.listForInformer);
    this.serviceAccounts = makeInformer(kc, "/api/v1/serviceaccounts", () =>
      core.listServiceAccountForAllNamespaces(),
    );
    this.namespaces = makeInformer(kc, "/api/v1/namespaces", () => core.listNamespace());
    const onChange = (p: ApprovalPolicy) => this.upsert(p);
    this.policies.on("add", onChange);
    this.policies.on("update", onChange);
    this.policies.on("delete", (p) => {
      this.compiled.delete(p.metadata.name);
      this.rebuild();
    });
    restartOnError(this.policies, "approvalpolicies", opts.logger, () => this.stopped);
    restartOnError(this.serviceAccounts, "serviceaccounts", opts.logger, () => this.stopped);
    restartOnError(this.namespaces, "namespaces", opts.logger, () => this.stopped);
    this.inputs = {
      serviceAccountLabels: (namespace, name) =>
        this.serviceAccounts.get(name, namespace)?.metadata?.labels ?? {},
      namespaceObject: (name) => this.namespaces.get(name) ?? null,
    };
  }

  async start(): Promise<void> {
    const lookups = this.opts.lookups ?? true;
    await Promise.all([
      this.policies.start(),
      ...(lookups ? [this.serviceAccounts.start(), this.namespaces.start()] : []),
    ]);
    this.synced = true;
    this.opts.logger.info("policy cache synced", {
      policies: this.set.size,
      invalid: this.invalidCount(),
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const lookups = this.opts.lookups ?? true;
    await Promise.all([
      this.policies.stop(),
      ...(lookups ? [this.serviceAccounts.stop(), this.namespaces.stop()] : []),
    ]);
  }

  isSynced(): boolean {
    return this.synced;
  }

  /** Valid compiled policies, sorted by name. Invalid ones are skipped (and reported in status). */
  list(): readonly CompiledPolicy[] {
    return this.set.policies;
  }

  /** The same policies, indexed by subject: what the admission path evaluates. */
  policySet(): PolicySet {
    return this.set;
  }

  invalidCount(): number {
    return [...this.compiled.values()].filter((c) => c.error).length;
  }

  private upsert(p: ApprovalPolicy): void {
    const name = p.metadata.name;
    const generation = p.metadata.generation ?? 0;
    const prev = this.compiled.get(name);
    if (prev && prev.generation === generation) return; // status-only change: nothing to recompile
    const result = compilePolicy(p);
    const log = this.opts.logger.child({ policy: name, generation });
    if (result.ok) {
      this.compiled.set(name, { generation, policy: result.policy });
      log.info("policy compiled", { rules: result.policy.rules.length });
    } else {
      const error = formatCompileErrors(name, result.errors);
      this.compiled.set(name, { generation, error });
      log.warn("policy is invalid and is not enforced", { error });
    }
    this.rebuild();
    if (this.opts.writeStatus)
      void this.writeStatus(p, result.ok ? undefined : this.compiled.get(name)?.error);
  }

  private rebuild(): void {
    this.set = new PolicySet([...this.compiled.values()].flatMap((c) => (c.policy ? [c.policy] : [])));
  }

  private async writeStatus(p: ApprovalPolicy, error: string | undefined): Promise<void> {
    const generation = p.metadata.generation ?? 0;
    const next: ConditionUpdate = {
      type: ConditionType.Ready,
      status: error ? "False" : "True",
      reason: error ? PolicyReason.InvalidPolicy : PolicyReason.Compiled,
      message: error ?? `compiled ${p.spec.rules?.length ?? 0} rules`,
      observedGeneration: generation,
    };
    const old = findCondition(p.status?.conditions, ConditionType.Ready);
    if (!conditionChanged(old, next)) return;
    const condition = mergeCondition(old, next, this.clock);
    try {
      // Server-side apply with its own field manager: other conditions (BypassRisk) stay.
      await this.client.applyStatus(
        p.metadata.name,
        { observedGeneration: generation, ruleCount: p.spec.rules?.length ?? 0, conditions: [condition] },
        STATUS_FIELD_MANAGER,
      );
    } catch (err) {
      this.opts.logger.warn("could not write policy status", {
        policy: p.metadata.name,
        error: describeKubeError(err),
      });
    }
  }
}
