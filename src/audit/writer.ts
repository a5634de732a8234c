/**
 * Writes AuditRecords: idempotent (deterministic names), serialized per namespace, chained
 * (sequence + previousHash), and mirrored as JSON log lines for SIEM export. Only the
 * leader-elected controller writes, so one namespace's chain has one writer.
 */
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import type { ApprovalRequest } from "../approvals/request.js";
import { isAlreadyExists, isNotFound } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";
import { API_GROUP, API_GROUP_VERSION, API_VERSION } from "../policy/types.js";
import {
  type AuditActor,
  type AuditEvent,
  type AuditRecord,
  type AuditRecordSpec,
  auditRecordName,
  GENESIS_HASH,
  hashRecord,
} from "./chain.js";

export const AUDIT_PLURAL = "auditrecords";
export const LABEL_APPROVAL_REQUEST = "countersign.io/approval-request";
export const LABEL_EVENT = "countersign.io/event";

/** A record's content; the writer adds the chain fields (sequence, previousHash, hash). */
export type AuditContent = Omit<AuditRecordSpec, "sequence" | "previousHash" | "hash">;

export interface AuditDetails {
  time: string;
  actor?: AuditActor;
  reason?: string;
}

export class AuditWriter {
  private readonly api: CustomObjectsApi;
  private readonly tails = new Map<string, { sequence: number; hash: string }>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    kc: KubeConfig,
    private readonly siem: Logger,
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  /** Forget cached chain tails (e.g. after losing leadership: another replica may have written). */
  reset(): void {
    this.tails.clear();
  }

  async list(namespace: string): Promise<AuditRecord[]> {
    const out = (await this.api.listNamespacedCustomObject({
      group: API_GROUP,
      version: API_VERSION,
      namespace,
      plural: AUDIT_PLURAL,
    })) as { items: AuditRecord[] };
    return out.items;
  }

  private async tail(namespace: string): Promise<{ sequence: number; hash: string }> {
    let t = this.tails.get(namespace);
    if (!t) {
      const records = await this.list(namespace);
      const last = records.reduce<AuditRecord | undefined>(
        (m, r) => (!m || r.spec.sequence > m.spec.sequence ? r : m),
        undefined,
      );
      t = last
        ? { sequence: last.spec.sequence, hash: last.spec.hash }
        : { sequence: -1, hash: GENESIS_HASH };
      this.tails.set(namespace, t);
    }
    return t;
  }

  /** Writes the record for (request, event) unless it exists. Returns true if it wrote one. */
  ensure(ar: ApprovalRequest, event: AuditEvent, details: AuditDetails): Promise<boolean> {
    const s = ar.spec;
    return this.append(
      ar.metadata.namespace,
      auditRecordName(ar.metadata.name, event),
      { [LABEL_APPROVAL_REQUEST]: ar.metadata.name.slice(0, 63), [LABEL_EVENT]: event },
      {
        event,
        time: details.time,
        approvalRequest: { name: ar.metadata.name, ...(ar.metadata.uid ? { uid: ar.metadata.uid } : {}) },
        fingerprint: s.fingerprint,
        requester: s.requester,
        ...(details.actor ? { actor: details.actor } : {}),
        ...(details.reason ? { reason: details.reason.slice(0, 2048) } : {}),
        action: { ...s.action },
        ...(s.agentContext ? { agentContext: { ...s.agentContext } as Record<string, string> } : {}),
        policy: { name: s.policy.name, rule: s.policy.rule },
      },
    );
  }

  /**
   * Appends one record named `name` to the namespace's chain unless a record of that name
   * exists (serialized per namespace in this process). Returns true if it wrote one.
   */
  append(
    namespace: string,
    name: string,
    labels: Record<string, string>,
    content: AuditContent,
  ): Promise<boolean> {
    const run = (this.locks.get(namespace) ?? Promise.resolve()).then(
      () => this.write(namespace, name, labels, content),
      () => this.write(namespace, name, labels, content),
    );
    this.locks.set(
      namespace,
      run.catch(() => undefined),
    );
    return run;
  }

  private async write(
    ns: string,
    name: string,
    labels: Record<string, string>,
    body: AuditContent,
  ): Promise<boolean> {
    try {
      await this.api.getNamespacedCustomObject({
        group: API_GROUP,
        version: API_VERSION,
        namespace: ns,
        plural: AUDIT_PLURAL,
        name,
      });
      return false;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const tail = await this.tail(ns);
    const content: Omit<AuditRecordSpec, "hash"> = {
      sequence: tail.sequence + 1,
      ...body,
      previousHash: tail.hash,
    };
    const spec: AuditRecordSpec = { ...content, hash: hashRecord(content) };
    const record: AuditRecord = {
      apiVersion: API_GROUP_VERSION,
      kind: "AuditRecord",
      metadata: { name, namespace: ns, labels },
      spec,
    };
    try {
      await this.api.createNamespacedCustomObject({
        group: API_GROUP,
        version: API_VERSION,
        namespace: ns,
        plural: AUDIT_PLURAL,
        body: record,
      });
    } catch (err) {
      this.tails.delete(ns); // re-read the chain next time
      if (isAlreadyExists(err)) return false;
      throw err;
    }
    this.tails.set(ns, { sequence: spec.sequence, hash: spec.hash });
    this.siem.info("audit record", { auditRecord: `${ns}/${name}`, namespace: ns, ...spec });
    return true;
  }
}
