/**
 * The approver's inbox as data: which requests are shown, in which order, with which counts,
 * and which form GitOps groups. Pure (callers pass `now`).
 */
import { gitopsGroupKey } from "../approvals/gitops.js";
import { effectivePhase, tally } from "../approvals/lifecycle.js";
import { type ApprovalRequest, Phase } from "../resources/approval-request.js";

export interface InboxFilter {
  namespace?: string;
  requester?: string;
  policy?: string;
  /** Also finished requests (Approved, Denied, Expired, Consumed, Revoked), newest first. */
  all?: boolean;
}

export interface Count {
  value: string;
  count: number;
}

export interface InboxView {
  rows: ApprovalRequest[];
  /** Pending requests in scope before the filter. */
  pending: number;
  /** Pending requests per namespace, requester and policy (before the filter), most first. */
  byNamespace: Count[];
  byRequester: Count[];
  byPolicy: Count[];
}

export const keyOf = (ar: ApprovalRequest) => `${ar.metadata.namespace}/${ar.metadata.name}`;

const created = (ar: ApprovalRequest) => {
  const t = ar.metadata.creationTimestamp;
  return t ? new Date(t).getTime() : 0;
};

/** Newest first; ties by namespace/name so the order is stable. */
export function newestFirst(a: ApprovalRequest, b: ApprovalRequest): number {
  return created(b) - created(a) || keyOf(a).localeCompare(keyOf(b));
}

function counts(values: string[]): Count[] {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return [...m.entries()]
    .map(([value, count]) => ({ value, count }))
    .sort((a, b) => b.count - a.count || a.value.localeCompare(b.value));
}

export function inboxView(items: readonly ApprovalRequest[], filter: InboxFilter, now: Date): InboxView {
  const pending = items.filter((ar) => effectivePhase(ar, now) === Phase.Pending);
  const base = filter.all ? [...items] : pending;
  const rows = base
    .filter(
      (ar) =>
        (!filter.namespace || ar.metadata.namespace === filter.namespace) &&
        (!filter.requester || ar.spec.requester.username === filter.requester) &&
        (!filter.policy || ar.spec.policy.name === filter.policy),
    )
    .sort(newestFirst);
  return {
    rows,
    pending: pending.length,
    byNamespace: counts(pending.map((ar) => ar.metadata.namespace)),
    byRequester: counts(pending.map((ar) => ar.spec.requester.username)),
    byPolicy: counts(pending.map((ar) => ar.spec.policy.name)),
  };
}

export interface RequestGroup {
  key: string;
  requester: string;
  tool: string;
  app: string;
  revision?: string;
  /** Newest first. */
  requests: ApprovalRequest[];
  pending: number;
}

/**
 * Requests from one requester and one GitOps application and revision (spec.gitops), each
 * group with at least one pending request; finished requests of such a group are kept so the
 * approver sees what else that sync did. Most pending first.
 */
export function gitopsGroups(items: readonly ApprovalRequest[], now: Date): RequestGroup[] {
  const groups = new Map<string, RequestGroup>();
  for (const ar of items) {
    const g = ar.spec.gitops;
    if (!g) continue;
    const key = gitopsGroupKey(ar.spec.requester.username, g);
    let group = groups.get(key);
    if (!group) {
      group = {
        key,
        requester: ar.spec.requester.username,
        tool: g.tool,
        app: g.app,
        ...(g.revision ? { revision: g.revision } : {}),
        requests: [],
        pending: 0,
      };
      groups.set(key, group);
    }
    group.requests.push(ar);
    if (effectivePhase(ar, now) === Phase.Pending) group.pending++;
  }
  return [...groups.values()]
    .filter((g) => g.pending > 0)
    .map((g) => ({ ...g, requests: g.requests.sort(newestFirst) }))
    .sort((a, b) => b.pending - a.pending || a.key.localeCompare(b.key));
}

/** The group a request belongs to, if it has one with anything pending. */
export function groupOf(ar: ApprovalRequest, groups: readonly RequestGroup[]): RequestGroup | undefined {
  if (!ar.spec.gitops) return undefined;
  const key = gitopsGroupKey(ar.spec.requester.username, ar.spec.gitops);
  return groups.find((g) => g.key === key);
}

/** "1/2" approvals so far, counting as the controller does (distinct, never the requester). */
export function approvalsSoFar(ar: ApprovalRequest): string {
  return `${tally(ar.spec).approvals.length}/${ar.spec.approval.requiredApprovals}`;
}
