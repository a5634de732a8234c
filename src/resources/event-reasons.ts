/**
 * The reason of every Kubernetes Event Countersign emits, written once. Operators filter on
 * these (`kubectl get events --field-selector reason=...`); docs/ lists them.
 */
export const EventReason = {
  /** The webhook created an ApprovalRequest (on the request). */
  ApprovalRequested: "ApprovalRequested",
  /** The controller saw a new request Pending (on the request and its target). */
  ApprovalPending: "ApprovalPending",
  Approved: "Approved",
  Denied: "Denied",
  Expired: "Expired",
  Revoked: "ApprovalRevoked",
  /** The webhook admitted the approved action (the approval is used). */
  Consumed: "ApprovalConsumed",
  Executed: "ApprovedActionExecuted",
  NotExecuted: "ApprovedActionNotExecuted",
  NotificationFailed: "NotificationFailed",
  /** A request still pending past its policy's remindAfter: its routes were reminded (on the request). */
  Reminded: "ApprovalReminder",
  /** A request still pending past its policy's escalateAfter: escalated (Warning, on the request). */
  Escalated: "ApprovalEscalated",
  /** An escalateTo route is not in the notification configuration (Warning, on the request). */
  EscalationRouteUnknown: "EscalationRouteUnknown",
  GarbageCollected: "GarbageCollected",
  /** A break-glass approval approved the request (Warning, on the request and its target). */
  BreakGlass: "BreakGlassApproval",
  /** On an ApprovalPolicy whose covered subjects can go around the gate. */
  BypassRisk: "BypassRisk",
  WebhookConfigurationChanged: "WebhookConfigurationChanged",
  WebhookConfigurationDeleted: "WebhookConfigurationDeleted",
} as const;
export type EventReason = (typeof EventReason)[keyof typeof EventReason];
