/**
 * The kubectl plugin's commands as functions (the CLI in cli.ts parses arguments and prints).
 * Every command acts as the user of the kubeconfig; nothing here bypasses the webhook.
 */

import { AuthenticationV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { kubeRaceMessage, precheckMessage } from "../approvals/decision-messages.js";
import { checkDecision, DecisionCode, KUBECTL_VIA } from "../approvals/decisions.js";
import { followUpSummary } from "../approvals/follow-ups.js";
import { effectivePhase, tally } from "../approvals/lifecycle.js";
import { decisionEntry } from "../approvals/request.js";
import { visible } from "../approvals/visible.js";
import { actionTargets, targetNameSelector, UNLABELLED_SELECTOR } from "../audit/target-labels.js";
import {
  type ChainUnderTest,
  type ExportedRecord,
  exportedFor,
  parseExportedLog,
  verifyAnchoredChain,
} from "../audit/verify.js";
import { kubeStatusOf } from "../kube/errors.js";
import { type ListStats, listAll, listPages } from "../kube/list-pages.js";
import type { UserInfo } from "../resources/admission.js";
import { type ApprovalRequest, type Decision, DecisionKind, Phase } from "../resources/approval-request.js";
import {
  type AuditCheckpoint,
  type AuditRecord,
  CHECKPOINT_NAME,
  LABEL_ARCHIVE_UID,
  LABEL_ARCHIVED_FROM,
} from "../resources/audit-record.js";
import { CountersignClient, isDecisionRace } from "../resources/client.js";
import {
  API_GROUP,
  API_VERSION,
  APPROVAL_REQUEST_PLURAL,
  AUDIT_CHECKPOINT_PLURAL,
  AUDIT_PLURAL,
} from "../resources/group.js";

export class PluginError extends Error {}

const _G = { group: API_GROUP, version: API_VERSION };

export async function whoAmI(kc: KubeConfig): Promise<{ username: string; uid?: string; groups: string[] }> {
  const r = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
    body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  });
  const u = r.status?.userInfo;
  if (!u?.username) throw new PluginError("the API server did not say who you are (SelfSubjectReview)");
  return { username: u.username, ...(u.uid ? { uid: u.uid } : {}), groups: u.groups ?? [] };
}

async function getRequest(kc: KubeConfig, namespace: string, name: string): Promise<ApprovalRequest> {
  let ar: ApprovalRequest | undefined;
  try {
    ar = await CountersignClient.fromKubeConfig(kc).approvalRequests.get(namespace, name);
  } catch (err) {
    const s = kubeStatusOf(err);
    if (s?.code === 403)
      throw new PluginError(`you may not read ApprovalRequests in ${namespace}: ${s.message}`);
    throw err;
  }
  if (!ar) {
    throw new PluginError(
      `ApprovalRequest ${namespace}/${name} not found. Pending requests: kubectl approvals list -n ${namespace}`,
    );
  }
  return ar;
}

/**
 * The shared decision rules (decisions.ts) run here before anything is written, so a refusal
 * reads as the webhook would word it, addressed to the caller. The covering policies and RBAC
 * are left to the webhook guard, which judges the write itself.
 */
function precheck(ar: ApprovalRequest, me: UserInfo, entry: Decision, now: Date): void {
  const check = checkDecision({ request: ar, decider: me, decision: entry, now, writtenBy: "decider" });
  if (!check.ok) throw new PluginError(precheckMessage(check.refusal));
}

/** Appends the entry; undefined when the request changed meanwhile (re-read and try again). */
async function append(kc: KubeConfig, ar: ApprovalRequest, entry: Decision): Promise<"race" | undefined> {
  try {
    await CountersignClient.fromKubeConfig(kc).approvalRequests.appendDecision(ar, entry);
    return undefined;
  } catch (err) {
    const s = kubeStatusOf(err);
    if (isDecisionRace(s)) return "race";
    if (s?.code === 403 || s?.code === 400 || s?.code === 422) throw new PluginError(s.message ?? "refused");
    throw err;
  }
}

/**
 * Appends the caller's decision (identity from SelfSubjectReview, as the webhook verifies).
 * Returns a one-line description of the outcome.
 */
export async function decide(
  kc: KubeConfig,
  namespace: string,
  name: string,
  decision: "Approve" | "Deny",
  reason: string | undefined,
  now = new Date(),
  /** An emergency Approve by a member of the request's break-glass groups. */
  breakGlass = false,
): Promise<string> {
  const me = await whoAmI(kc);
  for (let attempt = 0; attempt < 3; attempt++) {
    const ar = await getRequest(kc, namespace, name);
    const entry = decisionEntry(me, decision, reason, KUBECTL_VIA, now, breakGlass);
    precheck(ar, me, entry, now);
    if ((await append(kc, ar, entry)) === "race") continue;
    if (breakGlass)
      return `break-glass approved ${namespace}/${name}: the requester can now retry the action, once. Every notification route, a Warning Event and the audit trail record it`;
    const got = tally({ ...ar.spec, decisions: [...(ar.spec.decisions ?? []), entry] }).approvals.length;
    return decision === "Approve"
      ? `approved ${namespace}/${name} (${got}/${ar.spec.approval.requiredApprovals} approvals)${got >= ar.spec.approval.requiredApprovals ? ": the requester can now retry the action, once" : ""}`
      : `denied ${namespace}/${name}`;
  }
  throw new PluginError(kubeRaceMessage(namespace, name));
}

/**
 * Revokes an Approved, unused approval as the caller (an eligible approver with RBAC verb
 * revoke), with a reason. Against a parallel retry of the action exactly one wins: the
 * revocation (the action stays refused) or the retry (then this is refused as already used).
 */
export async function revoke(
  kc: KubeConfig,
  namespace: string,
  name: string,
  reason: string,
  now = new Date(),
): Promise<string> {
  if (!reason.trim()) throw new PluginError(precheckMessage({ code: DecisionCode.ReasonRequired }));
  const me = await whoAmI(kc);
  for (let attempt = 0; attempt < 3; attempt++) {
    const ar = await getRequest(kc, namespace, name);
    const entry = decisionEntry(me, DecisionKind.Revoke, reason, KUBECTL_VIA, now);
    precheck(ar, me, entry, now);
    // changed meanwhile (consumed, or another decision): re-read
    if ((await append(kc, ar, entry)) === "race") continue;
    return `revoked ${namespace}/${name}: the approval can no longer be used`;
  }
  throw new PluginError(kubeRaceMessage(namespace, name));
}

export async function listRequests(
  kc: KubeConfig,
  namespace: string | undefined,
): Promise<ApprovalRequest[]> {
  return CountersignClient.fromKubeConfig(kc).approvalRequests.list(namespace);
}

function age(from: string | Date | undefined, now: Date): string {
  if (!from) return "?";
  const s = Math.max(0, Math.round((now.getTime() - new Date(from).getTime()) / 1000));
  return s < 120
    ? `${s}s`
    : s < 7200
      ? `${Math.round(s / 60)}m`
      : s < 172800
        ? `${Math.round(s / 3600)}h`
        : `${Math.round(s / 86400)}d`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "))
    .join("\n");
}

export function formatList(items: ApprovalRequest[], now: Date, all: boolean): string {
  const pending = items.filter((ar) => all || effectivePhase(ar, now) === Phase.Pending);
  if (pending.length === 0) return all ? "No ApprovalRequests." : "No pending ApprovalRequests.";
  const rows = [["NAMESPACE", "NAME", "PHASE", "REQUESTER", "ACTION", "TARGET", "AGE", "REASON"]];
  for (const ar of pending) {
    const a = ar.spec.action;
    rows.push([
      ar.metadata.namespace,
      ar.metadata.name,
      effectivePhase(ar, now),
      ar.spec.requester.username,
      `${a.operation} ${a.subResource ? `${a.resource}/${a.subResource}` : a.resource}`,
      a.name || "(new)",
      age(ar.metadata.creationTimestamp, now),
      visible((ar.spec.agentContext?.reason ?? "").replace(/\s+/g, " ")).slice(0, 60),
    ]);
  }
  // Every cell is agent-derived or may be: one line each, escapes made visible.
  return table(rows.map((r) => r.map((c) => visible(c))));
}

export function formatShow(ar: ApprovalRequest, now: Date): string {
  const s = ar.spec;
  const a = s.action;
  const lines = [
    `Name:        ${ar.metadata.namespace}/${ar.metadata.name}`,
    `Phase:       ${effectivePhase(ar, now)}${ar.status?.conditions?.find((c) => c.type === "Ready")?.message ? ` (${ar.status.conditions.find((c) => c.type === "Ready")!.message})` : ""}`,
    `Requester:   ${s.requester.username}${s.requester.uid ? ` (uid ${s.requester.uid})` : ""}`,
    `Groups:      ${(s.requester.groups ?? []).join(", ")}`,
    `Action:      ${a.operation} ${a.group ? `${a.group}/` : ""}${a.version} ${a.resource}${a.subResource ? `/${a.subResource}` : ""} ${a.namespace ? `${a.namespace}/` : ""}${a.name || "(new)"}`,
    `Summary:     ${a.summary}`,
    `Policy:      ${s.policy.name}, rule ${s.policy.rule}${s.policy.message ? ` (${s.policy.message})` : ""}`,
    `Approvers:   ${[...(s.approval.approvers.users ?? []).map((u) => `user ${u}`), ...(s.approval.approvers.groups ?? []).map((g) => `group ${g}`)].join(", ")}; ${s.approval.requiredApprovals} required`,
    ...(s.approval.breakGlass?.groups.length
      ? [
          `Break-glass: ${s.approval.breakGlass.groups.map((g) => `group ${g}`).join(", ")} (one approval with --break-glass and a reason of 20+ characters suffices)`,
        ]
      : []),
    ...(followUpSummary(ar) ? [`Follow-ups:  ${followUpSummary(ar)}`] : []),
    `Expires:     ${s.approval.expiresAt}`,
    `Fingerprint: ${s.fingerprint}`,
  ];
  if (s.agentContext) {
    lines.push("Agent context (as the agent stated it):");
    for (const [k, v] of Object.entries(s.agentContext)) {
      const [first, ...more] = String(v).split("\n");
      lines.push(`  ${k}: ${first}`, ...more.map((l) => `    ${l}`));
    }
  }
  if (s.diff) {
    const heading =
      a.operation === "CREATE"
        ? "Object (as it will be created):"
        : a.operation === "DELETE"
          ? "Object (as it will be deleted):"
          : a.operation === "CONNECT"
            ? "Options:"
            : "Changes:";
    if (s.diffTruncated)
      lines.push(
        "WARNING: the change is too large to show in full; this request cannot be approved (deny it).",
      );
    lines.push(heading, ...s.diff.split("\n").map((l) => `  ${l}`));
  }
  lines.push("Decisions:");
  if (!s.decisions?.length) lines.push("  (none yet)");
  for (const d of s.decisions ?? [])
    lines.push(
      `  ${d.time ?? ""} ${d.decision}${d.breakGlass ? " (BREAK-GLASS)" : ""} by ${d.approver}${d.via ? ` via ${d.via}` : ""}${d.reason ? `: ${d.reason}` : ""}`,
    );
  if (ar.status?.consumed)
    lines.push(`Consumed:    ${ar.status.consumed.time} (admission uid ${ar.status.consumed.admissionUID})`);
  // One place for every line: agent-derived text (summary, context, diff, names, reasons)
  // cannot carry a terminal escape, a line break or a bidi/zero-width character.
  return lines.map((l) => visible(l)).join("\n");
}

export async function showRequest(
  kc: KubeConfig,
  namespace: string,
  name: string,
  now = new Date(),
): Promise<string> {
  return formatShow(await getRequest(kc, namespace, name), now);
}

/** How the audit commands list: page size, and counters of what the server sent. */
export interface ListOptions {
  pageSize?: number;
  stats?: ListStats;
}

const pageArgs = (o: ListOptions | undefined) => ({
  ...(o?.pageSize ? { limit: o.pageSize } : {}),
  ...(o?.stats ? { stats: o.stats } : {}),
});

/** Every AuditRecord in `namespace` (or all), listed a page at a time. */
export function listAuditRecords(
  kc: KubeConfig,
  namespace: string | undefined,
  opts?: ListOptions,
): Promise<AuditRecord[]> {
  return listAll<AuditRecord>(kc.makeApiClient(CustomObjectsApi), {
    namespace,
    plural: AUDIT_PLURAL,
    ...pageArgs(opts),
  });
}

async function listOrEmpty<T>(
  kc: KubeConfig,
  plural: string,
  namespace: string | undefined,
  notes: string[],
  opts?: ListOptions,
): Promise<T[]> {
  try {
    return await listAll<T>(kc.makeApiClient(CustomObjectsApi), { namespace, plural, ...pageArgs(opts) });
  } catch (err) {
    const s = kubeStatusOf(err);
    if (s?.code !== 403) throw err;
    notes.push(`cannot list ${plural} (${s.message ?? "forbidden"}): not checked against them`);
    return [];
  }
}

/** The chains in scope: each namespace's live chain, and the archives of deleted namespaces. */
export function chainsOf(
  records: readonly AuditRecord[],
  checkpoints: readonly AuditCheckpoint[],
  requests: readonly ApprovalRequest[],
): ChainUnderTest[] {
  const chains = new Map<string, ChainUnderTest & { records: AuditRecord[] }>();
  const live = (ns: string) => {
    const key = `live/${ns}`;
    let c = chains.get(key);
    if (!c) {
      c = { label: ns, origin: ns, records: [], requests: [] };
      chains.set(key, c);
    }
    return c;
  };
  for (const cp of checkpoints) {
    const a = cp.spec.archive;
    if (a) {
      chains.set(`archive/${cp.metadata.namespace}/${a.uid}`, {
        label: `archive of ${a.namespace} (deleted; uid ${a.uid}) in ${cp.metadata.namespace}`,
        origin: a.namespace,
        archiveUid: a.uid,
        records: [],
        checkpoint: cp,
      });
    } else if (cp.metadata.name === CHECKPOINT_NAME) live(cp.metadata.namespace).checkpoint = cp;
  }
  for (const r of records) {
    const uid = r.metadata.labels?.[LABEL_ARCHIVE_UID];
    if (uid) {
      const key = `archive/${r.metadata.namespace}/${uid}`;
      let c = chains.get(key);
      if (!c) {
        const from = r.metadata.labels?.[LABEL_ARCHIVED_FROM] ?? "?";
        c = {
          label: `archive of ${from} (uid ${uid}) in ${r.metadata.namespace}`,
          origin: from,
          archiveUid: uid,
          records: [],
        };
        chains.set(key, c);
      }
      c.records.push(r);
    } else live(r.metadata.namespace).records.push(r);
  }
  for (const ar of requests) {
    if (ar.status?.auditRecords?.length) (live(ar.metadata.namespace).requests as ApprovalRequest[]).push(ar);
  }
  return [...chains.values()].sort((a, b) => a.label.localeCompare(b.label));
}

/**
 * Verifies the audit chains in `namespace` (or all): linkage and hashes, each chain's tail
 * against its checkpoint, the requests' recorded sequences, and with `exportedLog` (the SIEM
 * export, JSON lines) every record against the log. Returns the report and whether all is intact.
 */
export async function auditVerify(
  kc: KubeConfig,
  namespace: string | undefined,
  exportedLog?: string,
  opts?: ListOptions,
): Promise<{ ok: boolean; report: string }> {
  const notes: string[] = [];
  const records = await listAuditRecords(kc, namespace, opts);
  const checkpoints = await listOrEmpty<AuditCheckpoint>(kc, AUDIT_CHECKPOINT_PLURAL, namespace, notes, opts);
  const requests = await listOrEmpty<ApprovalRequest>(kc, APPROVAL_REQUEST_PLURAL, namespace, notes, opts);
  const chains = chainsOf(records, checkpoints, requests);
  const exported = exportedLog === undefined ? undefined : parseExportedLog(exportedLog);
  const lines: string[] = [];
  let ok = true;
  const matched = new Set<ExportedRecord>();
  for (const c of chains) {
    if (exported) {
      c.exported = exportedFor(exported.records, c.origin, c.checkpoint?.spec.chain);
      for (const e of c.exported) matched.add(e);
    }
    const { findings, notes: chainNotes, head } = verifyAnchoredChain(c);
    const anchor = c.checkpoint
      ? `, checkpoint head ${head?.sequence ?? "?"}${c.exported ? `, exported log ${c.exported.length} lines` : ""}`
      : "";
    if (findings.length === 0)
      lines.push(`${c.label}: OK, ${c.records.length} records, chain intact${anchor}`);
    else {
      ok = false;
      lines.push(
        `${c.label}: TAMPERED, ${findings.length} problem(s) in ${c.records.length} records${anchor}`,
      );
      for (const f of findings)
        lines.push(
          f.sequence === undefined
            ? `  ${f.problem}`
            : `  sequence ${f.sequence} (${f.record ?? "name unknown"}): ${f.problem}`,
        );
    }
    for (const n of chainNotes) lines.push(`  note: ${n}`);
  }
  // Log lines of chains the cluster no longer has at all (every record and the checkpoint gone).
  if (exported) {
    const orphans = exported.records.filter(
      (e) => !matched.has(e) && (namespace === undefined || e.namespace === namespace),
    );
    const byChain = new Map<string, ExportedRecord[]>();
    for (const e of orphans) {
      const key = `${e.namespace} ${e.chain ?? ""}`;
      byChain.set(key, [...(byChain.get(key) ?? []), e]);
    }
    for (const es of byChain.values()) {
      ok = false;
      const seqs = es.map((e) => e.spec.sequence).sort((a, b) => a - b);
      lines.push(
        `${es[0]!.namespace}: TAMPERED, the exported log has ${es.length} record(s) of a chain the cluster does not have${es[0]!.chain ? ` (chain ${es[0]!.chain})` : ""}: records and checkpoint were removed`,
      );
      for (const e of es.slice(0, 50))
        lines.push(`  sequence ${e.spec.sequence} (${e.record}): is missing (exported log line ${e.line})`);
      if (es.length > 50) lines.push(`  … sequences ${seqs[0]}-${seqs[seqs.length - 1]}`);
    }
    if (exported.records.length === 0)
      notes.push(`the exported log has no audit record lines (${exported.skipped} other lines skipped)`);
  }
  if (chains.length === 0 && lines.length === 0)
    lines.push(`no audit records${namespace ? ` in ${namespace}` : ""}`);
  for (const n of notes) lines.push(`note: ${n}`);
  return { ok, report: lines.join("\n") };
}

/** Oldest first, by time then chain sequence. */
export function oldestFirst(a: AuditRecord, b: AuditRecord): number {
  return a.spec.time < b.spec.time ? -1 : a.spec.time > b.spec.time ? 1 : a.spec.sequence - b.spec.sequence;
}

/**
 * The records of one target, KIND/NAME (kind or resource name), oldest first; shared by
 * `kubectl approvals audit --for` and the console's history.
 * The API server selects the target's records by label (see audit/target-labels.ts); records
 * written before those labels existed are found by a second, paged LIST of the unlabelled
 * ones. Both are read a page at a time and only matching records are kept, and every record
 * is compared on its full spec.action (a label is an index, not evidence).
 */
export async function auditTrail(
  kc: KubeConfig,
  target: string,
  namespace: string | undefined,
  opts?: ListOptions,
): Promise<AuditRecord[]> {
  const [kindOrResource, name] = target.split("/") as [string, string | undefined];
  if (!kindOrResource || !name)
    throw new PluginError("--for takes KIND/NAME, e.g. secret/db-creds or deployments/api");
  const api = kc.makeApiClient(CustomObjectsApi);
  const records: AuditRecord[] = [];
  for (const labelSelector of [targetNameSelector(name), UNLABELLED_SELECTOR]) {
    for await (const page of listPages<AuditRecord>(api, {
      namespace,
      plural: AUDIT_PLURAL,
      labelSelector,
      ...pageArgs(opts),
    })) {
      for (const r of page) if (actionTargets(r.spec.action, kindOrResource, name)) records.push(r);
    }
  }
  return records.sort(oldestFirst);
}

/** "Who authorized this change?": the trail for one target, KIND/NAME (kind or resource name). */
export async function auditFor(
  kc: KubeConfig,
  target: string,
  namespace: string | undefined,
  opts?: ListOptions,
): Promise<string> {
  const records = await auditTrail(kc, target, namespace, opts);
  if (records.length === 0) return `no audit records for ${target}${namespace ? ` in ${namespace}` : ""}`;
  const lines = [`Audit trail for ${target}:`];
  for (const r of records) {
    const s = r.spec;
    lines.push(
      `  ${s.time}  ${s.event.padEnd(9)}  ${s.actor?.username ?? "?"}${s.actor?.via ? ` via ${s.actor.via}` : ""}  [${r.metadata.namespace}/${s.approvalRequest.name}]`,
    );
    if (s.event === "Requested") {
      lines.push(
        `      policy ${s.policy?.name}/${s.policy?.rule}; ${(s.action as { summary?: string } | undefined)?.summary ?? ""}`,
      );
      if (s.agentContext?.reason) lines.push(`      agent reason: ${s.agentContext.reason}`);
      if (s.agentContext?.prompt)
        lines.push(`      agent prompt: ${visible(s.agentContext.prompt.replace(/\n/g, " ")).slice(0, 300)}`);
    } else if (s.reason) lines.push(`      ${s.reason}`);
  }
  return lines.map((l) => visible(l)).join("\n");
}
