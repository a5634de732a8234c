/**
 * ApprovalRequest: types that follow crds/approvalrequests.countersign.io.yaml (the source of
 * truth), its labels, phases and decision kinds. Pure data; the rules live in
 * approvals/lifecycle.ts.
 */
import type { Condition } from "./conditions.js";
import type { API_GROUP_VERSION } from "./group.js";

export const LABEL_FINGERPRINT = "countersign.io/fingerprint";
export const LABEL_POLICY = "countersign.io/policy";
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";

export const Phase = {
  Pending: "Pending",
  Approved: "Approved",
  Denied: "Denied",
  Expired: "Expired",
  Consumed: "Consumed",
  Revoked: "Revoked",
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

export const DecisionKind = { Approve: "Approve", Deny: "Deny", Revoke: "Revoke" } as const;
export type DecisionKind = (typeof DecisionKind)[keyof typeof DecisionKind];

/**
 * One entry of spec.decisions. `approver`, `uid`, `groups`, `time` and `via` are checked by the
 * decision guard against the API server's userInfo and clock (see decision-guard.ts).
 * Approve and Deny decide a Pending request; Revoke withdraws an Approved, unconsumed one.
 */
export interface Decision {
  approver: string;
  uid?: string;
  groups?: string[];
  decision: DecisionKind;
  reason?: string;
  via?: "kubectl" | "slack" | "teams" | "api";
  time?: string;
  /** An emergency Approve by a member of the request's break-glass groups (see isBreakGlass). */
  breakGlass?: boolean;
}

export interface ApprovalRequestSpec {
  fingerprint: string;
  attempt: number;
  requester: {
    username: string;
    uid?: string;
    groups?: string[];
    serviceAccount?: { namespace: string; name: string };
  };
  action: Omit<ActionIdentity, "username" | "transitionHash"> & {
    kind?: string;
    summary: string;
    /** Absent on requests created before the fingerprint bound the transition. */
    transitionHash?: string;
  };
  admissionUID?: string;
  diff?: string;
  /** The diff could not be stored in full: the request cannot be approved (only denied). */
  diffTruncated?: boolean;
  agentContext?: AgentContext;
  /** The GitOps application the target object claims (see approvals/gitops.ts): groups requests, binds nothing more. */
  gitops?: GitOpsOrigin;
  policy: { name: string; rule: string; generation?: number; message?: string };
  approval: {
    approvers: { users?: string[]; groups?: string[] };
    requiredApprovals: number;
    ttl: string;
    expiresAt: string;
    holdSeconds?: number;
    notify?: string[];
    /** The policy's break-glass groups, copied at creation. */
    breakGlass?: { groups: string[] };
    /** Follow-ups while it stays pending (see controller/approval-request-plan.ts followUps). */
    remindAfter?: string;
    escalateAfter?: string;
    escalateTo?: string[];
  };
  decisions?: Decision[];
}

export interface ApprovalRequestStatus {
  phase?: Phase;
  observedGeneration?: number;
  approvals?: number;
  decidedAt?: string;
  consumed?: { admissionUID: string; time: string; replica?: string };
  /** When the reminder went out (written once, with its notification entries). */
  remindedAt?: string;
  /** When the escalation went out (written once, with its notification entries). */
  escalatedAt?: string;
  execution?: { result: "Executed" | "NotExecuted" | "Unknown"; message?: string; checkedAt?: string };
  /** This request's AuditRecords: where each sits in the namespace's chain. */
  auditRecords?: { event: string; sequence: number; record: string }[];
  notifications?: {
    route: string;
    event: "Requested" | "Approved" | "Denied" | "Expired" | "Revoked" | "Reminder" | "Escalated";
    /** Batched: held for the summary of a burst (see notify/bursts.ts). */
    state: "Sending" | "Sent" | "Failed" | "Batched";
    attempts?: number;
    message?: string;
    time?: string;
  }[];
  conditions?: Condition[];
}

export interface ApprovalRequest {
  apiVersion: typeof API_GROUP_VERSION;
  kind: "ApprovalRequest";
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    resourceVersion?: string;
    uid?: string;
    creationTimestamp?: Date;
    generation?: number;
  };
  spec: ApprovalRequestSpec;
  status?: ApprovalRequestStatus;
}

/** What an action is, as the fingerprint binds it (approvals/fingerprint.ts computes it). */
export interface ActionIdentity {
  username: string;
  operation: string;
  group: string;
  version: string;
  resource: string;
  subResource: string;
  namespace: string;
  /** The target's name; empty for a CREATE whose name the server generates. */
  name: string;
  /** For a CREATE with a server-generated name: the generateName it was made from. */
  generateName?: string;
  objectHash: string;
  /** sha256 of the transition (the old and new canonical objects); part of the fingerprint. */
  transitionHash: string;
}

export interface AgentContext {
  reason?: string;
  prompt?: string;
  ticket?: string;
  agent?: string;
}

/** The GitOps tool and application an object claims to be managed by (approvals/gitops.ts reads it). */
export const GitOpsTool = { ArgoCD: "argocd", Flux: "flux" } as const;
export type GitOpsTool = (typeof GitOpsTool)[keyof typeof GitOpsTool];

export interface GitOpsOrigin {
  tool: GitOpsTool;
  /** The application: an Argo CD Application ("name" or "namespace/name"), a Flux "Kustomization ns/name" or "HelmRelease ns/name". */
  app: string;
  /** The label or annotation it was read from. */
  marker: string;
  /** The source revision, when the tool records one on the object. */
  revision?: string;
}
