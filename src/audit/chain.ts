/**
 * The AuditRecord hash chain, pure. Records in one namespace are ordered by `sequence`;
 * each carries the hash of the one before (`previousHash`) and its own `hash` over its
 * canonical content, so an edited, removed, reordered or inserted record breaks the chain.
 */
import { createHash } from "node:crypto";
import { canonicalJson } from "../approvals/fingerprint.js";
import type { API_GROUP_VERSION } from "../policy/types.js";

export const GENESIS_HASH = "0".repeat(64);
export const AuditEvent = {
  Requested: "Requested",
  Approved: "Approved",
  Denied: "Denied",
  Expired: "Expired",
  Revoked: "Revoked",
  Consumed: "Consumed",
  Executed: "Executed",
  NotExecuted: "NotExecuted",
  /** Countersign's own configuration changed (issue 10: turning the gate off leaves a trace). */
  PolicyCreated: "PolicyCreated",
  PolicyUpdated: "PolicyUpdated",
  PolicyDeleted: "PolicyDeleted",
  WebhookConfigurationChanged: "WebhookConfigurationChanged",
  WebhookConfigurationDeleted: "WebhookConfigurationDeleted",
} as const;
export type AuditEvent = (typeof AuditEvent)[keyof typeof AuditEvent];

export interface AuditActor {
  username?: string;
  uid?: string;
  groups?: string[];
  via?: string;
}

export interface AuditRecordSpec {
  sequence: number;
  event: AuditEvent;
  time: string;
  approvalRequest: { name: string; uid?: string };
  fingerprint?: string;
  requester?: {
    username?: string;
    uid?: string;
    groups?: string[];
    serviceAccount?: { namespace: string; name: string };
  };
  actor?: AuditActor;
  reason?: string;
  action?: Record<string, unknown>;
  agentContext?: Record<string, string>;
  policy?: { name: string; rule: string };
  previousHash: string;
  hash: string;
}

export interface AuditRecord {
  apiVersion: typeof API_GROUP_VERSION;
  kind: "AuditRecord";
  metadata: { name: string; namespace: string; labels?: Record<string, string>; resourceVersion?: string };
  spec: AuditRecordSpec;
}

export function hashRecord(spec: Omit<AuditRecordSpec, "hash">): string {
  const { hash: _ignored, ...content } = spec as AuditRecordSpec;
  return createHash("sha256").update(canonicalJson(content)).digest("hex");
}

/** Deterministic, so writing a record twice (after a crash) finds the first one. */
export function auditRecordName(approvalRequestName: string, event: AuditEvent): string {
  return `${approvalRequestName}.${event.toLowerCase()}`;
}

/** The one AuditCheckpoint of a namespace's live chain. */
export const CHECKPOINT_NAME = "audit-chain";
/** On archived copies (records and checkpoint): the source namespace's name and uid. */
export const LABEL_ARCHIVED_FROM = "countersign.io/archived-from";
export const LABEL_ARCHIVE_UID = "countersign.io/archive-uid";

/** The newest record of a chain, as its checkpoint anchors it. `sequence` -1: empty chain. */
export interface ChainHead {
  sequence: number;
  hash: string;
  record?: string;
  time?: string;
}

export interface AuditCheckpointSpec {
  /** Stable id of this chain (also in every exported log line), kept when archived. */
  chain: string;
  head: ChainHead;
  /** The head when this checkpoint was first written: records up to it predate the anchor. */
  anchoredAt?: { sequence: number; time: string };
  /** An append in flight: the record claimed as head + 1 (completed by the next writer after a crash). */
  pending?: { record: string; hash: string; spec: AuditRecordSpec; labels?: Record<string, string> };
  /** Set on an archive: the namespace this chain was copied from before it was deleted. */
  archive?: { namespace: string; uid: string; archivedAt: string; records: number };
}

export interface AuditCheckpoint {
  apiVersion: typeof API_GROUP_VERSION;
  kind: "AuditCheckpoint";
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    resourceVersion?: string;
    uid?: string;
  };
  spec: AuditCheckpointSpec;
}

/** Where a deleted namespace's chain is archived: one checkpoint per namespace incarnation (uid). */
export function archiveCheckpointName(namespace: string, uid: string): string {
  return `archive.${namespace}.${uid}`;
}

/** The archived copy of a record: same spec (so it verifies), a name unique in the install namespace. */
export function archivedRecordName(namespace: string, uid: string, record: string): string {
  const name = `${namespace}.${uid.slice(0, 8)}.${record}`;
  if (name.length <= 253) return name;
  const h = createHash("sha256").update(record).digest("hex").slice(0, 16);
  return `${name.slice(0, 253 - 17)}.${h}`;
}

export interface ChainProblem {
  sequence?: number;
  record?: string;
  problem: string;
}

/** Verifies one namespace's chain. Returns the problems found (empty when intact). */
export function verifyChain(records: readonly AuditRecord[]): ChainProblem[] {
  const problems: ChainProblem[] = [];
  const sorted = [...records].sort((a, b) => a.spec.sequence - b.spec.sequence);
  let previous = GENESIS_HASH;
  let expectedSeq = sorted[0]?.spec.sequence ?? 0;
  if (sorted.length > 0 && expectedSeq !== 0) {
    problems.push({
      sequence: 0,
      problem: `the chain starts at sequence ${expectedSeq}, not 0: earlier records are missing`,
    });
  }
  for (const r of sorted) {
    const where = { sequence: r.spec.sequence, record: r.metadata.name };
    if (r.spec.sequence !== expectedSeq) {
      problems.push({
        ...where,
        problem: `sequence ${r.spec.sequence} follows ${expectedSeq - 1}: a record is missing or duplicated`,
      });
    }
    if (r.spec.previousHash !== previous) {
      problems.push({
        ...where,
        problem:
          "previousHash does not match the record before it (a record was removed, inserted or edited)",
      });
    }
    const actual = hashRecord(r.spec);
    if (actual !== r.spec.hash)
      problems.push({ ...where, problem: "content does not match its hash (the record was changed)" });
    previous = r.spec.hash;
    expectedSeq = r.spec.sequence + 1;
  }
  return problems;
}
