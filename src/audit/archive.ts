/**
 * Archiving a deleted namespace's audit chain, so `kubectl delete namespace` completes without
 * losing the trail. When a namespace holding Countersign objects starts Terminating, the
 * controller copies its AuditRecords (same spec, so they still verify) into Countersign's
 * install namespace, labelled with the source namespace and its uid, then writes the archive
 * checkpoint `archive.<namespace>.<uid>` (the chain's head and id). The guard lets the namespace
 * controller delete the namespace's ApprovalRequests, AuditRecords and checkpoint only once
 * that checkpoint exists.
 */
import { randomUUID } from "node:crypto";
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { isAlreadyExists, isNotFound } from "../kube/errors.js";
import { listPages } from "../kube/list-pages.js";
import { kubeTime } from "../kube/time.js";
import type { Logger } from "../logging/logger.js";
import {
  type AuditCheckpoint,
  type AuditRecord,
  type ChainHead,
  LABEL_ARCHIVE_UID,
  LABEL_ARCHIVED_FROM,
} from "../resources/audit-record.js";
import {
  API_GROUP,
  API_GROUP_VERSION,
  API_VERSION,
  APPROVAL_REQUEST_PLURAL,
  AUDIT_CHECKPOINT_PLURAL,
  AUDIT_PLURAL,
} from "../resources/group.js";
import { archiveCheckpointName, archivedRecordName, GENESIS_HASH } from "./chain.js";
import { OWN_CHAIN_SELECTOR, readCheckpoint } from "./writer.js";

const G = { group: API_GROUP, version: API_VERSION };
const MAX_ROUNDS = 5;

export type ArchiveState = { archived: true } | { archived: false; reason: string };

/**
 * May the namespace controller delete Countersign objects in `namespace` now? Only when the
 * namespace is being deleted and its chain is archived (two GETs; only this rare path pays them).
 */
export async function namespaceArchiveState(
  kc: KubeConfig,
  installNamespace: string,
  namespace: string,
): Promise<ArchiveState> {
  if (namespace === installNamespace) {
    return {
      archived: false,
      reason: `Countersign: ${namespace} holds Countersign's audit trail and the archives of deleted namespaces; export the trail and uninstall Countersign before deleting it`,
    };
  }
  let uid: string | undefined;
  try {
    const ns = await kc.makeApiClient(CoreV1Api).readNamespace({ name: namespace });
    if (!ns.metadata?.deletionTimestamp) {
      return {
        archived: false,
        reason: `Countersign: namespace ${namespace} is not being deleted; ApprovalRequests, AuditRecords and AuditCheckpoints are removed only by Countersign`,
      };
    }
    uid = ns.metadata.uid;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  if (!uid) return { archived: false, reason: `Countersign: namespace ${namespace} not found` };
  const archive = await readCheckpoint(
    kc.makeApiClient(CustomObjectsApi),
    installNamespace,
    archiveCheckpointName(namespace, uid),
  );
  if (archive?.spec.archive) return { archived: true };
  return {
    archived: false,
    reason: `Countersign is archiving the audit chain of namespace ${namespace} into ${installNamespace}; the namespace's Countersign objects can be deleted once that is done (the namespace controller retries)`,
  };
}

/** Whether a Terminating namespace holds anything of Countersign's (so it needs an archive). */
export async function holdsCountersignObjects(kc: KubeConfig, namespace: string): Promise<boolean> {
  const api = kc.makeApiClient(CustomObjectsApi);
  for (const plural of [AUDIT_PLURAL, AUDIT_CHECKPOINT_PLURAL, APPROVAL_REQUEST_PLURAL]) {
    const out = (await api.listNamespacedCustomObject({ ...G, namespace, plural, limit: 1 })) as {
      items: unknown[];
    };
    if (out.items.length > 0) return true;
  }
  return false;
}

/** What the archive needs to know of the records it copied: how many, the newest, the pending one. */
interface CopiedChain {
  count: number;
  newest?: AuditRecord;
  /** The copied record of each name the checkpoint's pending append claimed (at most one). */
  byName: Map<string, AuditRecord>;
}

function headOf(checkpoint: AuditCheckpoint | undefined, copied: CopiedChain): ChainHead {
  if (checkpoint) {
    const p = checkpoint.spec.pending;
    const r = p && copied.byName.get(p.record);
    if (p && r && r.spec.hash === p.hash && r.spec.sequence === checkpoint.spec.head.sequence + 1)
      return { sequence: r.spec.sequence, hash: r.spec.hash, record: r.metadata.name, time: r.spec.time };
    return checkpoint.spec.head;
  }
  const last = copied.newest;
  return last
    ? { sequence: last.spec.sequence, hash: last.spec.hash, record: last.metadata.name, time: last.spec.time }
    : { sequence: -1, hash: GENESIS_HASH };
}

/** Records copied at once (each copy is one create). */
const COPY_CONCURRENCY = 8;

/**
 * Copies `namespace`'s chain into `installNamespace` and writes its archive checkpoint (last,
 * so its existence means the copy is complete). Idempotent: a restart finishes the job.
 * Returns the archive checkpoint's name and how many records it holds.
 */
export async function archiveNamespaceChain(
  kc: KubeConfig,
  args: { namespace: string; uid: string; installNamespace: string; now: Date; logger: Logger },
): Promise<{ name: string; records: number; created: boolean }> {
  const { namespace, uid, installNamespace } = args;
  const api = kc.makeApiClient(CustomObjectsApi);
  const name = archiveCheckpointName(namespace, uid);
  const existing = await readCheckpoint(api, installNamespace, name);
  if (existing?.spec.archive) return { name, records: existing.spec.archive.records, created: false };
  const labels = { [LABEL_ARCHIVED_FROM]: namespace, [LABEL_ARCHIVE_UID]: uid };
  // Names only (not records) are remembered across rounds: memory stays a page of records.
  const copiedNames = new Set<string>();
  let checkpoint: AuditCheckpoint | undefined;
  let chain: CopiedChain = { count: 0, byName: new Map() };
  const copy = async (r: AuditRecord) => {
    if (copiedNames.has(r.metadata.name)) return;
    try {
      await api.createNamespacedCustomObject({
        ...G,
        namespace: installNamespace,
        plural: AUDIT_PLURAL,
        body: {
          apiVersion: API_GROUP_VERSION,
          kind: "AuditRecord",
          metadata: {
            name: archivedRecordName(namespace, uid, r.metadata.name),
            namespace: installNamespace,
            labels: { ...(r.metadata.labels ?? {}), ...labels },
          },
          spec: r.spec,
        } satisfies AuditRecord,
      });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    copiedNames.add(r.metadata.name);
  };
  // Copy until the chain stands still (an append that slipped in as deletion began is kept).
  for (let round = 0; round < MAX_ROUNDS; round++) {
    checkpoint = await readCheckpoint(api, namespace);
    const pendingName = checkpoint?.spec.pending?.record;
    chain = { count: 0, byName: new Map() };
    for await (const page of listPages<AuditRecord>(api, {
      namespace,
      plural: AUDIT_PLURAL,
      labelSelector: OWN_CHAIN_SELECTOR,
    })) {
      for (let i = 0; i < page.length; i += COPY_CONCURRENCY)
        await Promise.all(page.slice(i, i + COPY_CONCURRENCY).map(copy));
      for (const r of page) {
        chain.count++;
        if (!chain.newest || r.spec.sequence > chain.newest.spec.sequence) chain.newest = r;
        if (r.metadata.name === pendingName) chain.byName.set(r.metadata.name, r);
      }
    }
    const again = await readCheckpoint(api, namespace);
    if (again?.metadata.resourceVersion === checkpoint?.metadata.resourceVersion && !again?.spec.pending)
      break;
  }
  const body: AuditCheckpoint = {
    apiVersion: API_GROUP_VERSION,
    kind: "AuditCheckpoint",
    metadata: { name, namespace: installNamespace, labels },
    spec: {
      chain: checkpoint?.spec.chain ?? randomUUID(),
      head: headOf(checkpoint, chain),
      ...(checkpoint?.spec.anchoredAt ? { anchoredAt: checkpoint.spec.anchoredAt } : {}),
      archive: { namespace, uid, archivedAt: kubeTime(args.now), records: chain.count },
    },
  };
  try {
    await api.createNamespacedCustomObject({
      ...G,
      namespace: installNamespace,
      plural: AUDIT_CHECKPOINT_PLURAL,
      body,
    });
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    return { name, records: chain.count, created: false };
  }
  args.logger.info("archived the audit chain of a deleted namespace", {
    namespace,
    uid,
    archive: `${installNamespace}/${name}`,
    records: chain.count,
    head: body.spec.head.sequence,
  });
  return { name, records: chain.count, created: true };
}
