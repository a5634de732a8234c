/**
 * Appends AuditRecords to a namespace's hash chain, anchored by the namespace's
 * AuditCheckpoint (the chain head: sequence, hash). Safe for several writers in different
 * processes (controller replicas, a stale ex-leader, webhook replicas):
 *
 *   1. read the checkpoint; if it holds a `pending` append, complete that first;
 *   2. if the record exists (deterministic name), it was written already: done;
 *   3. claim: store the full record as `pending` (sequence head + 1, previousHash = head hash)
 *      with the checkpoint's resourceVersion as precondition; of racing writers exactly one
 *      claims, the others re-read and go again;
 *   4. create the record; 5. advance the head and clear `pending` (resourceVersion precondition).
 *
 * A crash after 3 or 4 leaves `pending`, which the next append (by any writer) completes from
 * the checkpoint alone, so the chain never forks, and a record the checkpoint does not cover is
 * never left behind (it would read as tampering). The SIEM line is written by whoever creates
 * the record.
 */
import { randomUUID } from "node:crypto";
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { isAlreadyExists, isConflict, isNotFound } from "../kube/errors.js";
import { type ListStats, listAll, listPages } from "../kube/list-pages.js";
import { kubeTime } from "../kube/time.js";
import type { Logger } from "../logging/logger.js";
import type { ApprovalRequest } from "../resources/approval-request.js";
import {
  type AuditActor,
  type AuditCheckpoint,
  type AuditEvent,
  type AuditRecord,
  type AuditRecordSpec,
  CHECKPOINT_NAME,
  LABEL_APPROVAL_REQUEST,
  LABEL_ARCHIVE_UID,
  LABEL_EVENT,
} from "../resources/audit-record.js";
import {
  API_GROUP,
  API_GROUP_VERSION,
  API_VERSION,
  AUDIT_CHECKPOINT_PLURAL,
  AUDIT_PLURAL,
} from "../resources/group.js";
import { auditRecordName, GENESIS_HASH, hashRecord } from "./chain.js";
import { targetLabels } from "./target-labels.js";

/** The SIEM log line's message; `kubectl approvals audit verify --against FILE` reads these lines. */
export const SIEM_MESSAGE = "audit record";
const MAX_ATTEMPTS = 30;

const G = { group: API_GROUP, version: API_VERSION };

export interface AuditDetails {
  time: string;
  actor?: AuditActor;
  reason?: string;
  /** The approval was a break-glass approval. */
  breakGlass?: boolean;
}

/** A record's content; the append adds the chain fields (sequence, previousHash, hash). */
export type AuditContent = Omit<AuditRecordSpec, "sequence" | "previousHash" | "hash">;

export interface AppendArgs {
  namespace: string;
  /** Deterministic per logical event: appending the same name twice writes one record. */
  name: string;
  /** What to record; sequence, previousHash and hash are filled in by the append. */
  content: AuditContent;
  labels?: Record<string, string>;
}

export interface AppendResult {
  record: AuditRecord;
  /** False when a record of that name already existed (nothing was written). */
  created: boolean;
}

async function getOrUndefined<T>(fn: () => Promise<unknown>): Promise<T | undefined> {
  try {
    return (await fn()) as T;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export function readCheckpoint(
  api: CustomObjectsApi,
  namespace: string,
  name = CHECKPOINT_NAME,
): Promise<AuditCheckpoint | undefined> {
  return getOrUndefined(() =>
    api.getNamespacedCustomObject({ ...G, namespace, plural: AUDIT_CHECKPOINT_PLURAL, name }),
  );
}

function readRecord(
  api: CustomObjectsApi,
  namespace: string,
  name: string,
): Promise<AuditRecord | undefined> {
  return getOrUndefined(() => api.getNamespacedCustomObject({ ...G, namespace, plural: AUDIT_PLURAL, name }));
}

/** Selects a namespace's own chain (archived copies of other namespaces' chains excluded). */
export const OWN_CHAIN_SELECTOR = `!${LABEL_ARCHIVE_UID}`;

/** The records of `namespace`'s own chain, listed a page at a time and collected. */
export function listChainRecords(
  api: CustomObjectsApi,
  namespace: string,
  stats?: ListStats,
): Promise<AuditRecord[]> {
  return listAll<AuditRecord>(api, {
    namespace,
    plural: AUDIT_PLURAL,
    labelSelector: OWN_CHAIN_SELECTOR,
    ...(stats ? { stats } : {}),
  });
}

/**
 * The newest record of `namespace`'s own chain when it has no checkpoint. One LIST with
 * limit 1 answers the usual case (a namespace's first record: the chain is empty). Only a
 * namespace holding records written before checkpoints existed (or whose checkpoint was
 * removed behind Countersign's back) is scanned, a page at a time, once: the checkpoint
 * created from the answer is the chain head from then on.
 */
export async function findUnanchoredHead(
  api: CustomObjectsApi,
  namespace: string,
  stats?: ListStats,
): Promise<AuditRecord | undefined> {
  const args = {
    namespace,
    plural: AUDIT_PLURAL,
    labelSelector: OWN_CHAIN_SELECTOR,
    ...(stats ? { stats } : {}),
  };
  const probe = await listPages<AuditRecord>(api, { ...args, limit: 1 }).next();
  if (probe.done || probe.value.length === 0) return undefined;
  let last: AuditRecord | undefined;
  for await (const page of listPages<AuditRecord>(api, args)) {
    for (const r of page) if (!last || r.spec.sequence > last.spec.sequence) last = r;
  }
  return last;
}

/** Replaces the checkpoint as read (resourceVersion precondition); undefined when someone else wrote first. */
async function replaceCheckpoint(
  api: CustomObjectsApi,
  cp: AuditCheckpoint,
): Promise<AuditCheckpoint | undefined> {
  try {
    return (await api.replaceNamespacedCustomObject({
      ...G,
      namespace: cp.metadata.namespace,
      plural: AUDIT_CHECKPOINT_PLURAL,
      name: cp.metadata.name,
      body: cp,
    })) as AuditCheckpoint;
  } catch (err) {
    if (isConflict(err) || isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * The first checkpoint of a namespace: anchored at the chain as it stands (empty on a fresh
 * install; records written before checkpoints existed are covered from here on). Undefined
 * when another writer created it first.
 */
async function createCheckpoint(
  api: CustomObjectsApi,
  namespace: string,
): Promise<AuditCheckpoint | undefined> {
  const last = await findUnanchoredHead(api, namespace);
  const now = kubeTime(new Date());
  const head = last
    ? { sequence: last.spec.sequence, hash: last.spec.hash, record: last.metadata.name, time: last.spec.time }
    : { sequence: -1, hash: GENESIS_HASH };
  const body: AuditCheckpoint = {
    apiVersion: API_GROUP_VERSION,
    kind: "AuditCheckpoint",
    metadata: { name: CHECKPOINT_NAME, namespace },
    spec: { chain: randomUUID(), head, anchoredAt: { sequence: head.sequence, time: now } },
  };
  try {
    return (await api.createNamespacedCustomObject({
      ...G,
      namespace,
      plural: AUDIT_CHECKPOINT_PLURAL,
      body,
    })) as AuditCheckpoint;
  } catch (err) {
    if (isAlreadyExists(err)) return undefined;
    throw err;
  }
}

function logRecord(siem: Logger | undefined, chain: string, record: AuditRecord): void {
  const ns = record.metadata.namespace;
  siem?.info(SIEM_MESSAGE, {
    auditRecord: `${ns}/${record.metadata.name}`,
    namespace: ns,
    chain,
    sequence: record.spec.sequence,
    event: record.spec.event,
    spec: record.spec,
  });
}

/**
 * Completes the checkpoint's pending append: creates the claimed record if it is missing,
 * then advances the head to it (or, if a different record of that name exists, drops the
 * claim). Undefined when another writer changed the checkpoint first.
 */
async function completePending(
  api: CustomObjectsApi,
  siem: Logger | undefined,
  cp: AuditCheckpoint,
): Promise<AuditCheckpoint | undefined> {
  const p = cp.spec.pending!;
  const ns = cp.metadata.namespace;
  let record = await readRecord(api, ns, p.record);
  if (!record) {
    const body: AuditRecord = {
      apiVersion: API_GROUP_VERSION,
      kind: "AuditRecord",
      metadata: { name: p.record, namespace: ns, ...(p.labels ? { labels: p.labels } : {}) },
      spec: p.spec,
    };
    try {
      record = (await api.createNamespacedCustomObject({
        ...G,
        namespace: ns,
        plural: AUDIT_PLURAL,
        body,
      })) as AuditRecord;
      logRecord(siem, cp.spec.chain, record);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      record = await readRecord(api, ns, p.record);
    }
  }
  const landed =
    record !== undefined &&
    record.spec.hash === p.hash &&
    record.spec.sequence === cp.spec.head.sequence + 1 &&
    record.spec.previousHash === cp.spec.head.hash;
  const { pending: _done, ...rest } = cp.spec;
  return replaceCheckpoint(api, {
    ...cp,
    spec: landed
      ? {
          ...rest,
          head: { sequence: p.spec.sequence, hash: p.hash, record: p.record, time: p.spec.time },
        }
      : rest,
  });
}

/**
 * Appends one record to `namespace`'s audit chain: the one way any component (controller,
 * webhook) writes an AuditRecord. Idempotent by `name`; safe against concurrent writers in
 * other processes (see the protocol at the top of this file); logs the SIEM line. Throws only
 * on API errors (the caller retries); returns the record as stored.
 */
export async function appendAuditRecord(
  api: CustomObjectsApi,
  siem: Logger | undefined,
  args: AppendArgs,
): Promise<AppendResult> {
  const { namespace, name } = args;
  // Every record carries the labels that identify its target (audit --for selects on them).
  const labels = { ...targetLabels(args.content.action), ...(args.labels ?? {}) };
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    let cp = await readCheckpoint(api, namespace);
    if (!cp) {
      cp = await createCheckpoint(api, namespace);
      if (!cp) continue;
    }
    if (cp.spec.pending) {
      await completePending(api, siem, cp);
      continue; // re-read: the head moved (or someone else moved it)
    }
    const existing = await readRecord(api, namespace, name);
    if (existing) return { record: existing, created: false };
    const content: Omit<AuditRecordSpec, "hash"> = {
      ...args.content,
      sequence: cp.spec.head.sequence + 1,
      previousHash: cp.spec.head.hash,
    };
    const spec: AuditRecordSpec = { ...content, hash: hashRecord(content) };
    const claimed = await replaceCheckpoint(api, {
      ...cp,
      spec: {
        ...cp.spec,
        pending: { record: name, hash: spec.hash, spec, labels },
      },
    });
    if (!claimed) continue; // another writer appended first: go again on the new head
    await completePending(api, siem, claimed); // undefined: another writer completed it for us
    const record = await readRecord(api, namespace, name);
    if (record) return { record, created: record.spec.hash === spec.hash };
  }
  throw new Error(
    `could not append audit record ${namespace}/${name}: the chain kept changing (${MAX_ATTEMPTS} attempts)`,
  );
}

/** Where a request's record sits in the chain (listed in the request's status). */
export interface AuditRef {
  event: AuditEvent;
  sequence: number;
  record: string;
}

export class AuditWriter {
  private readonly api: CustomObjectsApi;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    kc: KubeConfig,
    private readonly siem: Logger,
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  /** The records of `namespace`'s own chain. */
  list(namespace: string): Promise<AuditRecord[]> {
    return listChainRecords(this.api, namespace);
  }

  /** Whether the record `name` exists in `namespace` (one GET). */
  async exists(namespace: string, name: string): Promise<boolean> {
    return (await readRecord(this.api, namespace, name)) !== undefined;
  }

  /** appendAuditRecord, one at a time per namespace within this process (fewer conflicts). */
  append(args: AppendArgs): Promise<AppendResult> {
    const ns = args.namespace;
    const run = (this.locks.get(ns) ?? Promise.resolve()).then(
      () => appendAuditRecord(this.api, this.siem, args),
      () => appendAuditRecord(this.api, this.siem, args),
    );
    this.locks.set(
      ns,
      run.catch(() => undefined),
    );
    return run;
  }

  /** Writes the record for (request, event) unless it exists; returns where it is in the chain. */
  async ensure(
    ar: ApprovalRequest,
    event: AuditEvent,
    details: AuditDetails,
  ): Promise<AuditRef & { created: boolean }> {
    const s = ar.spec;
    const name = auditRecordName(ar.metadata.name, event);
    const { record, created } = await this.append({
      namespace: ar.metadata.namespace,
      name,
      labels: { [LABEL_APPROVAL_REQUEST]: ar.metadata.name.slice(0, 63), [LABEL_EVENT]: event },
      content: {
        event,
        time: details.time,
        approvalRequest: { name: ar.metadata.name, ...(ar.metadata.uid ? { uid: ar.metadata.uid } : {}) },
        fingerprint: s.fingerprint,
        requester: s.requester,
        ...(details.actor ? { actor: details.actor } : {}),
        ...(details.reason ? { reason: details.reason.slice(0, 2048) } : {}),
        ...(details.breakGlass ? { breakGlass: true } : {}),
        action: { ...s.action },
        ...(s.agentContext ? { agentContext: { ...s.agentContext } as Record<string, string> } : {}),
        policy: { name: s.policy.name, rule: s.policy.rule },
      },
    });
    return { event, sequence: record.spec.sequence, record: name, created };
  }
}
