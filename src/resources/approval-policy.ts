/** ApprovalPolicy: types that follow crds/approvalpolicies.countersign.io.yaml (the source of truth). */
import type { Condition } from "./conditions.js";
import type { API_GROUP_VERSION } from "./group.js";

export type Operation = "CREATE" | "UPDATE" | "DELETE" | "CONNECT";
export type RuleAction = "Allow" | "Deny" | "RequireApproval";

export interface ServiceAccountRef {
  namespace: string;
  name?: string;
}

export interface Subjects {
  users?: string[];
  groups?: string[];
  serviceAccounts?: ServiceAccountRef[];
  serviceAccountSelector?: { matchLabels?: Record<string, string> };
}

export interface ResourceMatch {
  operations: (Operation | "*")[];
  apiGroups?: string[];
  resources: string[];
  namespaces?: string[];
  excludedNamespaces?: string[];
}

export interface NamedExpression {
  name: string;
  expression: string;
}

export interface Approvers {
  users?: string[];
  groups?: string[];
}

export interface ApprovalSettings {
  approvers: Approvers;
  requiredApprovals?: number;
  ttl?: string;
  holdSeconds?: number;
  notify?: string[];
  /** Open (Pending or Approved, unused) requests one requester may have per namespace. */
  maxOpenRequests?: number;
  /** Emergency approval: one break-glass Approve by a member of these groups suffices. */
  breakGlass?: { groups: string[] };
  /** Re-notify the request's routes once when it is still pending this long after creation. */
  remindAfter?: string;
  /** Notify the escalateTo routes once when it is still pending this long after creation. */
  escalateAfter?: string;
  escalateTo?: string[];
}

export interface PolicyRule {
  name: string;
  condition?: string;
  action: RuleAction;
  message?: string;
  approval?: ApprovalSettings;
}

export interface ApprovalPolicySpec {
  subjects: Subjects;
  match?: ResourceMatch[];
  matchConditions?: NamedExpression[];
  variables?: NamedExpression[];
  rules: PolicyRule[];
}

export interface ApprovalPolicy {
  apiVersion: typeof API_GROUP_VERSION;
  kind: "ApprovalPolicy";
  metadata: { name: string; generation?: number; resourceVersion?: string; uid?: string };
  spec: ApprovalPolicySpec;
  status?: { observedGeneration?: number; ruleCount?: number; conditions?: Condition[] };
}
