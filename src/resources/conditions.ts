/**
 * Status conditions of Countersign's resources: the type, the condition types and reasons
 * (written once), and the one merge rule every writer uses. Pure: the time of a change comes
 * from the caller's clock.
 *
 * lastTransitionTime moves only when a condition's status or reason changes; a new message
 * or observedGeneration alone keeps it.
 */
import { kubeTime } from "../kube/time.js";

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason?: string;
  message?: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

/** A condition as a writer computes it; the merge fills in lastTransitionTime. */
export type ConditionUpdate = Omit<Condition, "lastTransitionTime">;

export type Clock = () => Date;
export const systemClock: Clock = () => new Date();

export const ConditionType = {
  /** ApprovalRequest: decided (any phase but Pending); ApprovalPolicy: compiled and enforced. */
  Ready: "Ready",
  Approved: "Approved",
  Denied: "Denied",
  Expired: "Expired",
  Consumed: "Consumed",
  Revoked: "Revoked",
  /** ApprovalPolicy: covered subjects hold rights that go around the gate (bypass/checks.ts). */
  BypassRisk: "BypassRisk",
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** Reasons of an ApprovalRequest's conditions. */
export const RequestReason = {
  AwaitingApproval: "AwaitingApproval",
  ApprovalsReceived: "ApprovalsReceived",
  DeniedByApprover: "DeniedByApprover",
  TTLExceeded: "TTLExceeded",
  ActionAdmitted: "ActionAdmitted",
  RevokedByApprover: "RevokedByApprover",
  /** Approved by one break-glass approval rather than the policy's count. */
  BreakGlass: "BreakGlass",
} as const;

/** Reasons of an ApprovalPolicy's Ready condition. */
export const PolicyReason = { Compiled: "Compiled", InvalidPolicy: "InvalidPolicy" } as const;

/** Reasons of an ApprovalPolicy's BypassRisk condition. */
export const BypassReason = {
  Found: "BypassRisksFound",
  None: "NoBypassRisks",
  ScanFailed: "ScanFailed",
} as const;

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** `next` as it should be written over `old`: lastTransitionTime kept unless status or reason changed. */
export function mergeCondition(old: Condition | undefined, next: ConditionUpdate, clock: Clock): Condition {
  const kept = old && old.status === next.status && old.reason === next.reason && old.lastTransitionTime;
  return { ...next, lastTransitionTime: kept || kubeTime(clock()) };
}

/** Whether writing `next` over `old` would change anything but lastTransitionTime. */
export function conditionChanged(old: Condition | undefined, next: ConditionUpdate): boolean {
  return (
    !old ||
    old.status !== next.status ||
    old.reason !== next.reason ||
    old.message !== next.message ||
    old.observedGeneration !== next.observedGeneration
  );
}

/** The list with `next` merged in (replacing the condition of its type), sorted by type. */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  next: ConditionUpdate,
  clock: Clock,
): Condition[] {
  const list = conditions ?? [];
  const merged = mergeCondition(findCondition(list, next.type), next, clock);
  return [...list.filter((c) => c.type !== next.type), merged].sort((a, b) => a.type.localeCompare(b.type));
}
