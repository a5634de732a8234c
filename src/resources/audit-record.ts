/**
 * AuditRecord and AuditCheckpoint: types that follow crds/auditrecords.countersign.io.yaml and
 * crds/auditcheckpoints.countersign.io.yaml, the events a record names, and their labels.
 * Pure data; the chain rules live in audit/chain.ts.
 */
import type { API_GROUP_VERSION } from "./group.js";

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
  /** An Approved record of a break-glass approval. */
  breakGlass?: boolean;
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

export const LABEL_APPROVAL_REQUEST = "countersign.io/approval-request";
export const LABEL_EVENT = "countersign.io/event";
