/**
 * The decision rules, once: may this decider record this decision on this ApprovalRequest now?
 * Pure (no I/O, clock or logger): the caller passes the request as stored, the decider's
 * identity as the API server (or TokenReview) established it, the decision entry, `now`, and
 * the ApprovalPolicies that cover the decider (from memory).
 *
 * Every path maps the same typed result: the webhook guard (kubectl's own writes, and the
 * decisions Countersign relays), the HTTP API and Slack (DecisionService: code → HTTP status
 * via HTTP_STATUS), the kubectl plugin's precheck, and the console. The words a person reads
 * for each refusal live in decision-messages.ts. RBAC (a SubjectAccessReview) comes after a
 * passing check; its refusal is the `needs-rbac` code.
 */
import type { UserInfo } from "../resources/admission.js";
import { serviceAccountOf } from "../resources/admission.js";
import { type ApprovalRequest, type Decision, DecisionKind, Phase } from "../resources/approval-request.js";
import { BREAK_GLASS_MIN_REASON, effectivePhase, visibleLength } from "./lifecycle.js";

export const Verb = { Approve: "approve", Deny: "deny", Revoke: "revoke" } as const;
export type DecisionVerb = (typeof Verb)[keyof typeof Verb];
export const VERB_OF: Record<DecisionKind, DecisionVerb> = {
  Approve: Verb.Approve,
  Deny: Verb.Deny,
  Revoke: Verb.Revoke,
};

/** How far a decision's `time` may be from the server's clock (either way). */
export const DECISION_CLOCK_SKEW_SECONDS = 120;

/** The only `via` a person writes themselves; the others are Countersign relaying a decider. */
export const KUBECTL_VIA = "kubectl";
export const RELAYED_VIA: readonly string[] = ["slack", "teams", "api"];

/** Why a decision is refused. Each code has one HTTP status (HTTP_STATUS) and one wording. */
export const DecisionCode = {
  /** The decider is a subject some ApprovalPolicy puts under approval. */
  CoveredSubject: "covered-subject",
  /** The entry names someone other than the authenticated decider, or claims a relayed `via`. */
  ForgedMetadata: "forged-metadata",
  /** The entry lacks uid / groups / time / via (or a relayed one its decider or time). */
  IncompleteMetadata: "incomplete-metadata",
  /** `via` is not one Countersign knows (or a relayed entry does not say how it was made). */
  InvalidVia: "invalid-via",
  /** `time` is not a timestamp, or too far from the server's clock. */
  BadTime: "bad-time",
  /** This person already approved or denied it. */
  Already: "already",
  /** The requester (any identity of the same service account) deciding its own request. */
  Self: "self",
  /** The change could not be shown in full, so it cannot be approved (Deny stays possible). */
  TooLarge: "too-large",
  Expired: "expired",
  /** Approve/Deny on a request that is no longer Pending. */
  NotPending: "not-pending",
  /** The decider matches none of the request's approver users or groups. */
  NotApprover: "not-approver",
  /** A revocation without a reason. */
  ReasonRequired: "reason-required",
  /** Revoke on a request that holds no approval (Pending, Denied). */
  RevokeNotApproved: "revoke-not-approved",
  /** Revoke on an approval that was already used. */
  AlreadyUsed: "already-used",
  AlreadyRevoked: "already-revoked",
  /** The decider passes every rule but lacks the RBAC verb (SubjectAccessReview). */
  NeedsRbac: "needs-rbac",
  /** The SubjectAccessReview could not be made. */
  RbacUnavailable: "rbac-unavailable",
  /** A break-glass approval of a request whose policy names no break-glass group. */
  BreakGlassNotOffered: "break-glass-not-offered",
  /** A break-glass approval by someone in none of the request's break-glass groups. */
  BreakGlassNotMember: "break-glass-not-member",
  /** A break-glass approval whose reason is shorter than BREAK_GLASS_MIN_REASON. */
  BreakGlassReason: "break-glass-reason",
  /** Only an Approve can be break-glass. */
  BreakGlassApproveOnly: "break-glass-approve-only",
} as const;
export type DecisionCode = (typeof DecisionCode)[keyof typeof DecisionCode];

/** The HTTP status of each refusal (the approval API, Slack's relay). */
export const HTTP_STATUS: Record<DecisionCode, 400 | 403 | 409 | 503> = {
  "covered-subject": 403,
  "forged-metadata": 403,
  "incomplete-metadata": 400,
  "invalid-via": 400,
  "bad-time": 400,
  already: 409,
  self: 403,
  "too-large": 403,
  expired: 409,
  "not-pending": 409,
  "not-approver": 403,
  "reason-required": 400,
  "revoke-not-approved": 409,
  "already-used": 409,
  "already-revoked": 409,
  "needs-rbac": 403,
  "rbac-unavailable": 503,
  "break-glass-not-offered": 403,
  "break-glass-not-member": 403,
  "break-glass-reason": 400,
  "break-glass-approve-only": 400,
};

export interface RequestRef {
  namespace: string;
  name: string;
}

/** A refusal: its code and the facts its message is made of (see decision-messages.ts). */
export type DecisionRefusal =
  | {
      code: "covered-subject";
      request: RequestRef;
      decider: string;
      decision: DecisionKind;
      policies: readonly string[];
    }
  | { code: "forged-metadata"; field: "approver"; claimed: string; caller: string }
  | { code: "forged-metadata"; field: "uid"; claimed: string | undefined; caller: string }
  | { code: "forged-metadata"; field: "groups"; callerGroups: readonly string[] }
  | { code: "forged-metadata"; field: "via"; via: string }
  | { code: "incomplete-metadata"; relayed: false; missing: readonly string[] }
  | { code: "incomplete-metadata"; relayed: true }
  | { code: "invalid-via"; relayed: boolean; via: string | undefined }
  | { code: "bad-time"; time: string | undefined; offsetSeconds?: number }
  | { code: "already"; request: RequestRef; decider: string }
  | { code: "self"; request: RequestRef; decision: DecisionKind }
  | { code: "too-large"; request: RequestRef }
  | { code: "expired"; request: RequestRef; decision: DecisionKind; expiresAt: string }
  | { code: "not-pending"; request: RequestRef; phase: Phase }
  | {
      code: "not-approver";
      decider: string;
      approvers: { users?: readonly string[]; groups?: readonly string[] };
    }
  | { code: "reason-required" }
  | { code: "revoke-not-approved"; request: RequestRef; phase: Phase }
  | { code: "already-used"; request: RequestRef; consumed?: { time: string; admissionUID: string } }
  | { code: "already-revoked"; request: RequestRef; by?: string }
  | { code: "needs-rbac"; decider: string; verb: DecisionVerb; namespace: string; reason: string }
  | { code: "rbac-unavailable" }
  | { code: "break-glass-not-offered"; request: RequestRef }
  | { code: "break-glass-not-member"; decider: string; groups: readonly string[] }
  | { code: "break-glass-reason"; length: number }
  | { code: "break-glass-approve-only"; decision: DecisionKind };

export type DecisionCheck =
  | {
      ok: true;
      /** The RBAC verb the decider must hold on this request (SubjectAccessReview, next). */
      verb: DecisionVerb;
      request: RequestRef;
      /** A valid break-glass approval: on its own it approves the request. */
      breakGlass: boolean;
    }
  | { ok: false; refusal: DecisionRefusal };

export interface DecisionInput {
  /** The request as stored before this decision. */
  request: ApprovalRequest;
  /** The person deciding, as authenticated (admission userInfo, TokenReview, a Slack mapping). */
  decider: UserInfo;
  /** The entry to append to spec.decisions. */
  decision: Decision;
  now: Date;
  /**
   * Who wrote the entry: `decider` — the person through the API server (kubectl): its
   * approver, uid, groups, time and via must be theirs; `relayed` — Countersign for a decider
   * it authenticated (HTTP API, Slack, Teams).
   */
  writtenBy: "decider" | "relayed";
  /** ApprovalPolicies that cover the decider; [] where the caller cannot know (the plugin). */
  coveredBy?: readonly string[];
}

const refuse = (refusal: DecisionRefusal): DecisionCheck => ({ ok: false, refusal });
const refOf = (ar: ApprovalRequest): RequestRef => ({
  namespace: ar.metadata.namespace,
  name: ar.metadata.name,
});
const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");

/** The requester, or another identity (token) of the requester's service account. */
export function isRequester(ar: ApprovalRequest, user: UserInfo): boolean {
  const requester = ar.spec.requester;
  const callerSa = serviceAccountOf(user.username);
  const requesterSa = requester.serviceAccount ?? serviceAccountOf(requester.username);
  return (
    user.username === requester.username ||
    (callerSa !== undefined &&
      requesterSa !== undefined &&
      callerSa.namespace === requesterSa.namespace &&
      callerSa.name === requesterSa.name)
  );
}

/** Whether the decider matches one of the request's approver users or groups. */
export function isApprover(ar: ApprovalRequest, user: UserInfo): boolean {
  const approvers = ar.spec.approval.approvers;
  return (
    (approvers.users?.includes(user.username ?? "") ?? false) ||
    (user.groups ?? []).some((g) => approvers.groups?.includes(g))
  );
}

/**
 * The one decision check: metadata (who wrote the entry, and when), then the rules shared by
 * every path. Order matters only for which refusal is reported first; every rule holds.
 */
export function checkDecision(input: DecisionInput): DecisionCheck {
  const { request: ar, decider, decision: d, now } = input;
  // The requester is refused below with its own, more specific message.
  const covering = isRequester(ar, decider) ? [] : (input.coveredBy ?? []);
  if (covering.length > 0) {
    return refuse({
      code: DecisionCode.CoveredSubject,
      request: refOf(ar),
      decider: decider.username ?? "(anonymous)",
      decision: d.decision,
      policies: covering,
    });
  }
  const metadata =
    input.writtenBy === "decider" ? checkDecisionMetadata(d, decider, now) : checkRelayedMetadata(d, now);
  if (metadata) return refuse(metadata);
  if (d.breakGlass === true && d.decision !== DecisionKind.Approve)
    return refuse({ code: DecisionCode.BreakGlassApproveOnly, decision: d.decision });
  return d.decision === DecisionKind.Revoke
    ? checkRevokeRules(ar, decider, d, now)
    : checkRules(ar, decider, d, now);
}

function checkTime(d: Decision, now: Date): DecisionRefusal | undefined {
  const t = Date.parse(d.time ?? "");
  if (Number.isNaN(t)) return { code: DecisionCode.BadTime, time: d.time };
  const off = Math.round((t - now.getTime()) / 1000);
  if (Math.abs(off) > DECISION_CLOCK_SKEW_SECONDS)
    return { code: DecisionCode.BadTime, time: d.time, offsetSeconds: off };
  return undefined;
}

/**
 * A decision a person writes themselves (kubectl) names them exactly as the API server
 * authenticated them (username, uid, groups — all present; an empty uid only for callers that
 * have none, such as client-certificate users), is stamped now, and came through kubectl.
 */
export function checkDecisionMetadata(d: Decision, caller: UserInfo, now: Date): DecisionRefusal | undefined {
  if (d.approver !== caller.username) {
    return {
      code: DecisionCode.ForgedMetadata,
      field: "approver",
      claimed: d.approver,
      caller: caller.username ?? "(anonymous)",
    };
  }
  const missing = [
    ...(d.uid === undefined && caller.uid ? ["uid"] : []),
    ...(d.groups === undefined ? ["groups"] : []),
    ...(d.time === undefined ? ["time"] : []),
    ...(d.via === undefined ? ["via"] : []),
  ];
  if (missing.length > 0) return { code: DecisionCode.IncompleteMetadata, relayed: false, missing };
  if ((d.uid ?? "") !== (caller.uid ?? ""))
    return { code: DecisionCode.ForgedMetadata, field: "uid", claimed: d.uid, caller: caller.uid ?? "" };
  if (!sameSet(d.groups ?? [], caller.groups ?? []))
    return { code: DecisionCode.ForgedMetadata, field: "groups", callerGroups: caller.groups ?? [] };
  if (d.via !== KUBECTL_VIA) {
    return RELAYED_VIA.includes(d.via ?? "")
      ? { code: DecisionCode.ForgedMetadata, field: "via", via: d.via ?? "" }
      : { code: DecisionCode.InvalidVia, relayed: false, via: d.via };
  }
  return checkTime(d, now);
}

/** A decision Countersign relays says how it was made, names its decider and groups, and is stamped now. */
function checkRelayedMetadata(d: Decision, now: Date): DecisionRefusal | undefined {
  if (!RELAYED_VIA.includes(d.via ?? "")) return { code: DecisionCode.InvalidVia, relayed: true, via: d.via };
  if (!d.approver || d.groups === undefined || d.time === undefined)
    return { code: DecisionCode.IncompleteMetadata, relayed: true };
  return checkTime(d, now);
}

/** Approve and Deny: once per person, never the requester, a Pending request, an approver. */
function checkRules(ar: ApprovalRequest, user: UserInfo, d: Decision, now: Date): DecisionCheck {
  const request = refOf(ar);
  if ((ar.spec.decisions ?? []).some((x) => x.approver === d.approver && x.decision !== DecisionKind.Revoke))
    return refuse({ code: DecisionCode.Already, request, decider: d.approver });
  if (isRequester(ar, user)) return refuse({ code: DecisionCode.Self, request, decision: d.decision });
  // Nobody can have seen the whole change, so nobody may approve it; Deny stays possible.
  if (d.decision === DecisionKind.Approve && ar.spec.diffTruncated)
    return refuse({ code: DecisionCode.TooLarge, request });
  const phase = effectivePhase(ar, now);
  if (phase === Phase.Expired)
    return refuse({
      code: DecisionCode.Expired,
      request,
      decision: d.decision,
      expiresAt: ar.spec.approval.expiresAt,
    });
  if (phase !== Phase.Pending) return refuse({ code: DecisionCode.NotPending, request, phase });
  if (d.breakGlass === true) {
    // In place of the approver rules: membership of a break-glass group and a real reason.
    const groups = ar.spec.approval.breakGlass?.groups ?? [];
    if (groups.length === 0) return refuse({ code: DecisionCode.BreakGlassNotOffered, request });
    if (!(user.groups ?? []).some((g) => groups.includes(g)))
      return refuse({
        code: DecisionCode.BreakGlassNotMember,
        decider: user.username ?? "(anonymous)",
        groups,
      });
    const length = visibleLength(d.reason ?? "");
    if (length < BREAK_GLASS_MIN_REASON) return refuse({ code: DecisionCode.BreakGlassReason, length });
    return { ok: true, verb: Verb.Approve, request, breakGlass: true };
  }
  if (!isApprover(ar, user)) return refuse(notApprover(ar, user));
  return { ok: true, verb: VERB_OF[d.decision], request, breakGlass: false };
}

/**
 * Revoking withdraws an approval before it is used: any eligible approver (the approver rules
 * and RBAC verb revoke; never the requester) may revoke a request that is Approved, unexpired
 * and unconsumed, giving a reason.
 */
function checkRevokeRules(ar: ApprovalRequest, user: UserInfo, d: Decision, now: Date): DecisionCheck {
  const request = refOf(ar);
  if (isRequester(ar, user)) return refuse({ code: DecisionCode.Self, request, decision: d.decision });
  if (!d.reason?.trim()) return refuse({ code: DecisionCode.ReasonRequired });
  const phase = effectivePhase(ar, now);
  const consumed = ar.status?.consumed;
  if (phase === Phase.Revoked) {
    const by = (ar.spec.decisions ?? []).find((x) => x.decision === DecisionKind.Revoke)?.approver;
    return refuse({ code: DecisionCode.AlreadyRevoked, request, ...(by ? { by } : {}) });
  }
  if (phase === Phase.Consumed || (phase === Phase.Approved && consumed)) {
    return refuse({
      code: DecisionCode.AlreadyUsed,
      request,
      ...(consumed ? { consumed: { time: consumed.time, admissionUID: consumed.admissionUID } } : {}),
    });
  }
  if (phase === Phase.Expired)
    return refuse({
      code: DecisionCode.Expired,
      request,
      decision: d.decision,
      expiresAt: ar.spec.approval.expiresAt,
    });
  if (phase !== Phase.Approved) return refuse({ code: DecisionCode.RevokeNotApproved, request, phase });
  if (!isApprover(ar, user)) return refuse(notApprover(ar, user));
  return { ok: true, verb: Verb.Revoke, request, breakGlass: false };
}

function notApprover(ar: ApprovalRequest, user: UserInfo): DecisionRefusal {
  return {
    code: DecisionCode.NotApprover,
    decider: user.username ?? "(anonymous)",
    approvers: ar.spec.approval.approvers,
  };
}
