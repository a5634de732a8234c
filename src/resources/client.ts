/**
 * A typed client for Countersign's custom resources: the one place that speaks to the API
 * server about ApprovalRequests, AuditRecords, AuditCheckpoints and ApprovalPolicies. Thin
 * I/O, no rules: what to write is decided elsewhere (approvals/lifecycle.ts, audit/, policy/).
 *
 * Conventions, the same for every resource:
 *   - get: undefined when the object does not exist;
 *   - list: every page (label-selected), or one page with listPage;
 *   - create: throws (the caller decides what AlreadyExists means);
 *   - replace / replaceStatus: the object as read is the precondition (its resourceVersion), so
 *     of concurrent writers exactly one wins; "conflict" when someone changed it first or it
 *     is gone;
 *   - delete: false when it was already gone.
 */
import {
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { isConflict, isNotFound, type KubeStatus } from "../kube/errors.js";
import { type ListStats, listAll, listPage, listPages, type Page } from "../kube/list-pages.js";
import type { ApprovalPolicy } from "./approval-policy.js";
import type { ApprovalRequest, ApprovalRequestStatus, Decision } from "./approval-request.js";
import type { AuditCheckpoint, AuditRecord } from "./audit-record.js";
import {
  API_GROUP_VERSION,
  APPROVAL_REQUEST_PLURAL,
  AUDIT_CHECKPOINT_PLURAL,
  AUDIT_PLURAL,
  clusterPath,
  gvr,
  namespacedPath,
  type Plural,
  POLICY_PLURAL,
} from "./group.js";

interface Stored {
  metadata: { name: string; namespace?: string; resourceVersion?: string };
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Objects per page (default 500). */
  limit?: number;
  /** Counts the LIST calls and the objects they returned. */
  stats?: ListStats;
}

export type { Page };

async function orUndefined<T>(call: () => Promise<unknown>): Promise<T | undefined> {
  try {
    return (await call()) as T;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function orConflict<T>(call: () => Promise<unknown>): Promise<T | "conflict"> {
  try {
    return (await call()) as T;
  } catch (err) {
    if (isConflict(err) || isNotFound(err)) return "conflict";
    throw err;
  }
}

/** One namespaced custom resource. */
export class NamespacedResource<T extends Stored> {
  constructor(
    protected readonly api: CustomObjectsApi,
    readonly plural: Plural,
  ) {}

  /** The path an informer over every namespace watches. */
  get informerPath(): string {
    return clusterPath(this.plural);
  }

  /** The list call an informer over every namespace makes. */
  listForInformer = (): Promise<KubernetesListObject<T & KubernetesObject>> =>
    this.api.listClusterCustomObject(gvr(this.plural)) as Promise<KubernetesListObject<T & KubernetesObject>>;

  /** What an informer over `namespace` (every namespace when undefined) watches and lists. */
  informerSource(namespace: string | undefined): {
    path: string;
    list: () => Promise<KubernetesListObject<T & KubernetesObject>>;
  } {
    if (namespace === undefined) return { path: this.informerPath, list: this.listForInformer };
    return {
      path: namespacedPath(this.plural, namespace),
      list: () =>
        this.api.listNamespacedCustomObject({ ...gvr(this.plural), namespace }) as Promise<
          KubernetesListObject<T & KubernetesObject>
        >,
    };
  }

  get(namespace: string, name: string): Promise<T | undefined> {
    return orUndefined(() => this.api.getNamespacedCustomObject({ ...gvr(this.plural), namespace, name }));
  }

  /** One page in `namespace` (every namespace when undefined). */
  listPage(namespace: string | undefined, opts: ListOptions & { continue?: string } = {}): Promise<Page<T>> {
    const { continue: token, ...rest } = opts;
    return listPage<T>(this.api, { plural: this.plural, namespace, ...rest }, token);
  }

  /** Every object in `namespace` (every namespace when undefined), page by page. */
  list(namespace: string | undefined, opts: ListOptions = {}): Promise<T[]> {
    return listAll<T>(this.api, { plural: this.plural, namespace, ...opts });
  }

  /** The objects in `namespace` (every namespace when undefined) a page at a time, in bounded memory. */
  pages(namespace: string | undefined, opts: ListOptions = {}): AsyncGenerator<T[]> {
    return listPages<T>(this.api, { plural: this.plural, namespace, ...opts });
  }

  /** Whether `namespace` holds at least one object (one call, one item at most). */
  async any(namespace: string): Promise<boolean> {
    return (await this.listPage(namespace, { limit: 1 })).items.length > 0;
  }

  async create(obj: T): Promise<T> {
    return (await this.api.createNamespacedCustomObject({
      ...gvr(this.plural),
      namespace: obj.metadata.namespace ?? "",
      body: obj,
    })) as T;
  }

  replace(obj: T): Promise<T | "conflict"> {
    return orConflict(() =>
      this.api.replaceNamespacedCustomObject({
        ...gvr(this.plural),
        namespace: obj.metadata.namespace ?? "",
        name: obj.metadata.name,
        body: obj,
      }),
    );
  }

  async delete(namespace: string, name: string): Promise<boolean> {
    try {
      await this.api.deleteNamespacedCustomObject({ ...gvr(this.plural), namespace, name });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }
}

export class ApprovalRequestClient extends NamespacedResource<ApprovalRequest> {
  constructor(api: CustomObjectsApi) {
    super(api, APPROVAL_REQUEST_PLURAL);
  }

  /** Replaces the status of the request as read (its resourceVersion is the precondition). */
  replaceStatus(ar: ApprovalRequest, status: ApprovalRequestStatus): Promise<ApprovalRequest | "conflict"> {
    return orConflict(() =>
      this.api.replaceNamespacedCustomObjectStatus({
        ...gvr(this.plural),
        namespace: ar.metadata.namespace,
        name: ar.metadata.name,
        body: { ...ar, status },
      }),
    );
  }

  /**
   * Appends a decision with a JSON patch. "add …/-" appends to the list as the server has it,
   * so concurrent deciders both land; when the list did not exist yet and another decision
   * created it meanwhile, the CRD's append-only rule refuses the replacement and the caller
   * re-reads (isDecisionRace).
   */
  async appendDecision(ar: ApprovalRequest, entry: Decision): Promise<ApprovalRequest> {
    const patch = ar.spec.decisions
      ? [{ op: "add", path: "/spec/decisions/-", value: entry }]
      : [{ op: "add", path: "/spec/decisions", value: [entry] }];
    return (await this.api.patchNamespacedCustomObject(
      { ...gvr(this.plural), namespace: ar.metadata.namespace, name: ar.metadata.name, body: patch },
      setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
    )) as ApprovalRequest;
  }
}

/**
 * Whether a failed decision write should be retried after re-reading the request, decided on
 * the Status's code, reason and causes, never on the message's words:
 *   - 409 Conflict: the object changed under a write that named its resourceVersion;
 *   - 422 Invalid with a FieldValueInvalid cause on spec.decisions: the CRD's append-only rule
 *     (oldSelf.all(d, d in self)) refused a decider's first append (`add /spec/decisions`)
 *     because another decision had created the list meanwhile, so the add replaced it.
 */
export function isDecisionRace(status: KubeStatus | undefined): boolean {
  if (status?.code === 409) return status.reason === "Conflict";
  return (
    status?.code === 422 &&
    status.reason === "Invalid" &&
    (status.causes ?? []).some((c) => c.reason === "FieldValueInvalid" && c.field === DECISIONS_FIELD)
  );
}

/** The field path of an ApprovalRequest's decisions in a Status cause. */
const DECISIONS_FIELD = "spec.decisions";

/** ApprovalPolicies (cluster-scoped). */
export class ApprovalPolicyClient {
  readonly plural = POLICY_PLURAL;
  constructor(private readonly api: CustomObjectsApi) {}

  get informerPath(): string {
    return clusterPath(this.plural);
  }

  listForInformer = (): Promise<KubernetesListObject<ApprovalPolicy & KubernetesObject>> =>
    this.api.listClusterCustomObject(gvr(this.plural)) as Promise<
      KubernetesListObject<ApprovalPolicy & KubernetesObject>
    >;

  get(name: string): Promise<ApprovalPolicy | undefined> {
    return orUndefined(() => this.api.getClusterCustomObject({ ...gvr(this.plural), name }));
  }

  list(opts: ListOptions = {}): Promise<ApprovalPolicy[]> {
    return listAll<ApprovalPolicy>(this.api, { plural: this.plural, ...opts });
  }

  /**
   * Server-side applies part of a policy's status under `fieldManager`: the fields (and the
   * conditions, by type) another manager owns stay as they are.
   */
  async applyStatus(name: string, status: Record<string, unknown>, fieldManager: string): Promise<void> {
    await this.api.patchClusterCustomObjectStatus(
      {
        ...gvr(this.plural),
        name,
        fieldManager,
        force: true,
        body: { apiVersion: API_GROUP_VERSION, kind: "ApprovalPolicy", metadata: { name }, status },
      },
      setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
    );
  }
}

/** Countersign's resources, one typed client each. */
export class CountersignClient {
  readonly approvalRequests: ApprovalRequestClient;
  readonly auditRecords: NamespacedResource<AuditRecord>;
  readonly auditCheckpoints: NamespacedResource<AuditCheckpoint>;
  readonly approvalPolicies: ApprovalPolicyClient;

  constructor(readonly api: CustomObjectsApi) {
    this.approvalRequests = new ApprovalRequestClient(api);
    this.auditRecords = new NamespacedResource<AuditRecord>(api, AUDIT_PLURAL);
    this.auditCheckpoints = new NamespacedResource<AuditCheckpoint>(api, AUDIT_CHECKPOINT_PLURAL);
    this.approvalPolicies = new ApprovalPolicyClient(api);
  }

  static fromKubeConfig(kc: KubeConfig): CountersignClient {
    return new CountersignClient(kc.makeApiClient(CustomObjectsApi));
  }
}
