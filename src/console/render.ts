/**
 * The console's pages, rendered on the server. Pure: data in, `Html` out (see html.ts for the
 * escaping every value goes through). Live parts are rendered by the same functions the
 * server calls again when the watch sees a change (`inboxBody`, `requestState`, `groupBody`).
 */
import { createHash } from "node:crypto";
import { followUpSummary } from "../approvals/follow-ups.js";
import { BREAK_GLASS_MIN_REASON, effectivePhase, tally } from "../approvals/lifecycle.js";
import { type ApprovalRequest, DecisionKind, Phase } from "../resources/approval-request.js";
import type { AuditRecord } from "../resources/audit-record.js";
import { type Html, html, raw, url } from "./html.js";
import {
  approvalsSoFar,
  type Count,
  type InboxFilter,
  type InboxView,
  keyOf,
  type RequestGroup,
} from "./inbox.js";

export interface Flash {
  ok: boolean;
  lines: string[];
}

export interface PageContext {
  /** CSP nonce of this response's inline script and style. */
  nonce: string;
  /** The session's form token. */
  csrf: string;
  /** Who the console acts as (SelfSubjectReview) and against which cluster. */
  user: string;
  /** The groups the API server puts that user in (SelfSubjectReview): who may break the glass. */
  groups?: readonly string[];
  cluster: string;
  now: Date;
  flash?: Flash;
}

/** Stable, URL-safe id of a group key. */
export function groupId(key: string): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 16);
}

export function requestHref(ar: ApprovalRequest): string {
  return url(["r", ar.metadata.namespace, ar.metadata.name]);
}

function actionLine(ar: ApprovalRequest): string {
  const a = ar.spec.action;
  const res = a.subResource ? `${a.resource}/${a.subResource}` : a.resource;
  const target = `${a.namespace ? `${a.namespace}/` : ""}${a.name || a.generateName || "(new)"}`;
  return `${a.operation} ${res} ${target}`;
}

/** "4m 05s" until `to` (negative: "expired"). */
export function countdown(to: string, now: Date): string {
  const ms = Date.parse(to) - now.getTime();
  if (Number.isNaN(ms)) return "unknown";
  if (ms <= 0) return "expired";
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m ${sec}s`;
}

function age(from: Date | string | undefined, now: Date): string {
  if (!from) return "";
  const s = Math.max(0, Math.round((now.getTime() - new Date(from).getTime()) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

const phaseBadge = (phase: string) => html`<span class="phase phase-${phase.toLowerCase()}">${phase}</span>`;

function expiry(ar: ApprovalRequest, now: Date): Html {
  const phase = effectivePhase(ar, now);
  if (phase !== Phase.Pending && phase !== Phase.Approved) return html``;
  return html`<span class="expires" data-expires="${ar.spec.approval.expiresAt}" title="expires at ${ar.spec.approval.expiresAt}">${countdown(ar.spec.approval.expiresAt, now)}</span>`;
}

// ---------------------------------------------------------------------------------------------
// Layout

const STYLE = `
:root{--fg:#1b1f24;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--soft:#f6f8fa;--accent:#0b5cad;--ok:#1a7f37;--bad:#c62828;--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;border-bottom:1px solid var(--line);background:var(--soft);flex-wrap:wrap}
header .brand{font-weight:700}
header nav a{margin-right:1rem}
header .who{margin-left:auto;color:var(--muted);font-size:.9em}
#live{font-size:.85em;color:var(--muted)}
main{padding:1rem 1.2rem;max-width:1400px}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible,summary:focus-visible{outline:3px solid #f0b400;outline-offset:2px}
h1{font-size:1.35rem;margin:.2rem 0 .6rem;word-break:break-all}
h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.85em;color:var(--muted);font-weight:600}
td.name{word-break:break-all}
.muted{color:var(--muted)}
.phase{display:inline-block;padding:0 .45rem;border-radius:1rem;font-size:.8em;font-weight:600;border:1px solid currentColor}
.phase-pending{color:var(--warn)}.phase-approved,.phase-consumed{color:var(--ok)}.phase-denied,.phase-revoked,.phase-expired{color:var(--bad)}
.counts{display:flex;gap:2rem;flex-wrap:wrap;margin:.5rem 0 1rem}
.counts ul{list-style:none;margin:0;padding:0}
.counts li{font-size:.9em}
form.filter{display:flex;gap:.6rem;align-items:end;flex-wrap:wrap;margin-bottom:.8rem}
label{font-size:.85em;color:var(--muted);display:block}
input,select,textarea,button{font:inherit}
input[type=text],select{padding:.25rem .4rem;border:1px solid var(--line);border-radius:4px}
textarea{width:100%;min-height:4.5rem;padding:.4rem;border:1px solid var(--line);border-radius:4px}
button{padding:.35rem .9rem;border-radius:6px;border:1px solid var(--line);background:var(--soft);cursor:pointer}
button.approve{background:var(--ok);color:#fff;border-color:var(--ok)}
button.deny,button.revoke{background:var(--bad);color:#fff;border-color:var(--bad)}
.grid{display:grid;grid-template-columns:minmax(0,1fr) 26rem;gap:1.5rem}
@media (max-width:1000px){.grid{grid-template-columns:1fr}}
aside .box{position:sticky;top:.5rem}
.box{border:1px solid var(--line);border-radius:8px;padding:.7rem .9rem;margin-bottom:1rem;background:var(--bg)}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem .8rem;margin:0}
dt{color:var(--muted);font-size:.9em}
dd{margin:0;word-break:break-word}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.6rem;overflow:auto;white-space:pre-wrap;word-break:break-word;font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin:.3rem 0}
pre.diff{max-height:70vh}
tr.member-diff td{border-top:none;padding-top:0}tr.member-diff pre.diff{max-height:40vh;margin:0}
.add{color:var(--ok)}.del{color:var(--bad)}
.said{border-left:4px solid var(--warn);padding-left:.6rem}
.flash{padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem;white-space:pre-wrap}
.flash.ok{background:#dafbe1;border:1px solid var(--ok)}
.flash.err{background:#ffebe9;border:1px solid var(--bad)}
.warning{color:var(--bad);font-weight:600}
.ok{color:var(--ok)}.bad{color:var(--bad)}
.group-tag{font-size:.8em;color:var(--muted)}
.expires{white-space:nowrap}
`;

/**
 * The only script: live swaps from the server's event stream (server-rendered, escaped HTML),
 * expiry countdowns, which decision buttons apply in the current phase, "select all".
 */
const SCRIPT = `(() => {
  const skew = Number(document.body.dataset.now) - Date.now();
  const fmt = (ms) => {
    if (!(ms > 0)) return "expired";
    const s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    const two = (n) => String(n).padStart(2, "0");
    return d > 0 ? d + "d " + h + "h" : h > 0 ? h + "h " + two(m) + "m" : m + "m " + two(s % 60) + "s";
  };
  const age = (ms) => {
    const s = Math.max(0, Math.round(ms / 1000));
    return s < 120 ? s + "s" : s < 7200 ? Math.round(s / 60) + "m" : Math.round(s / 3600) + "h";
  };
  const tick = () => {
    for (const el of document.querySelectorAll("[data-expires]")) el.textContent = fmt(Date.parse(el.dataset.expires) - (Date.now() + skew));
    for (const el of document.querySelectorAll("[data-age]")) el.textContent = age(Date.now() + skew - Date.parse(el.dataset.age));
  };
  const phase = () => {
    const st = document.querySelector("[data-phase]");
    if (!st) return;
    for (const b of document.querySelectorAll("button[data-when]")) b.hidden = !b.dataset.when.split(" ").includes(st.dataset.phase);
  };
  const refresh = () => { tick(); phase(); };
  const live = document.body.dataset.live;
  const status = document.getElementById("live");
  if (live && window.EventSource) {
    const es = new EventSource(live);
    es.addEventListener("open", () => { if (status) status.textContent = "live"; });
    es.addEventListener("error", () => { if (status) status.textContent = "reconnecting…"; });
    es.addEventListener("swap", (e) => {
      const m = JSON.parse(e.data);
      const el = document.getElementById(m.id);
      if (!el) return;
      // Keep what the approver ticked: the swap re-renders the checkboxes.
      const ticked = new Set([...el.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.id + "=" + c.value));
      el.innerHTML = m.html;
      for (const c of el.querySelectorAll("input[type=checkbox]")) if (ticked.has(c.id + "=" + c.value) && !c.disabled) c.checked = true;
      refresh();
    });
    // The inbox's deltas: changed counts, new or changed rows, and the order when it moved.
    es.addEventListener("rows", (e) => {
      const m = JSON.parse(e.data);
      const root = document.getElementById(m.id);
      const body = root && root.querySelector("#requests tbody");
      if (!body) return;
      if (m.head !== undefined) { const h = root.querySelector("[data-part=head]"); if (h) h.innerHTML = m.head; }
      const rows = new Map([...body.children].map((tr) => [tr.dataset.request, tr]));
      for (const [key, html] of Object.entries(m.rows)) {
        const t = document.createElement("tbody");
        t.innerHTML = html;
        const tr = t.firstElementChild;
        const old = rows.get(key);
        if (old) old.replaceWith(tr);
        rows.set(key, tr);
      }
      if (m.order) {
        const keep = new Set(m.order);
        for (const [key, tr] of rows) if (!keep.has(key)) tr.remove();
        for (const key of m.order) { const tr = rows.get(key); if (tr) body.append(tr); }
      }
      refresh();
    });
  }
  // Delegated: live swaps replace the "select all" box itself.
  document.addEventListener("change", (e) => {
    if (e.target && e.target.id === "select-all")
      for (const c of document.querySelectorAll("input[name=request]:not(:disabled)")) c.checked = e.target.checked;
  });
  setInterval(tick, 1000);
  refresh();
})();`;

export function layout(
  ctx: PageContext,
  title: string,
  body: Html,
  opts: { live?: string; active?: "inbox" | "groups" | "history" } = {},
): Html {
  const nav = (href: string, label: string, key: string) =>
    html`<a href="${href}"${opts.active === key ? raw(' aria-current="page"') : ""}>${label}</a>`;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${title} · Countersign</title>
<style nonce="${ctx.nonce}">${raw(STYLE)}</style></head>
<body data-now="${String(ctx.now.getTime())}"${opts.live ? html` data-live="${opts.live}"` : ""}>
<header><span class="brand">Countersign</span>
<nav aria-label="main">${nav("/", "Inbox", "inbox")}${nav("/groups", "Groups", "groups")}${nav("/history", "History", "history")}</nav>
<span id="live" aria-live="polite">${opts.live ? "connecting…" : ""}</span>
<span class="who">${ctx.user} · ${ctx.cluster}</span></header>
<main id="main">${ctx.flash ? flashBox(ctx.flash) : ""}${body}</main>
<script nonce="${ctx.nonce}">${raw(SCRIPT)}</script>
</body></html>`;
}

function flashBox(f: Flash): Html {
  return html`<div class="flash ${f.ok ? "ok" : "err"}" role="${f.ok ? "status" : "alert"}" id="flash">${f.lines.join("\n")}</div>`;
}

// ---------------------------------------------------------------------------------------------
// Inbox

function countList(title: string, param: "namespace" | "requester" | "policy", cs: Count[], f: InboxFilter) {
  return html`<div><h2>${title}</h2><ul>${cs
    .slice(0, 12)
    .map(
      (c) =>
        html`<li><a href="${url([], { ...filterQuery(f), [param]: c.value })}">${c.value}</a> <span class="muted">${c.count}</span></li>`,
    )}${cs.length > 12 ? html`<li class="muted">… ${cs.length - 12} more</li>` : ""}</ul></div>`;
}

export function filterQuery(f: InboxFilter): Record<string, string | undefined> {
  return {
    namespace: f.namespace,
    requester: f.requester,
    policy: f.policy,
    all: f.all ? "1" : undefined,
  };
}

/** The live part of the inbox: counts and the table. */
/** The inbox's counts (the part above the table). */
function inboxHead(view: InboxView, f: InboxFilter): Html {
  const filtered = f.namespace || f.requester || f.policy;
  return html`<p><strong id="pending-count">${view.pending}</strong> pending${filtered ? html`, <span id="shown-count">${view.rows.length}</span> shown · <a href="/">clear filter</a>` : ""}</p>
<div class="counts">${countList("Namespaces", "namespace", view.byNamespace, f)}${countList("Requesters", "requester", view.byRequester, f)}${countList("Policies", "policy", view.byPolicy, f)}</div>`;
}

/** One inbox row. Its expiry and age are ticked by the page's script (data-expires, data-age). */
function inboxRow(ar: ApprovalRequest, g: RequestGroup | undefined, now: Date): Html {
  const created = ar.metadata.creationTimestamp ? new Date(ar.metadata.creationTimestamp) : undefined;
  return html`<tr data-request="${keyOf(ar)}"><td class="name"><a href="${requestHref(ar)}">${keyOf(ar)}</a>${g ? html`<div class="group-tag">in <a href="${url(["groups", groupId(g.key)])}">${g.tool} ${g.app}</a></div>` : ""}</td>
<td>${phaseBadge(effectivePhase(ar, now))}</td><td class="name">${ar.spec.requester.username}</td>
<td class="name">${actionLine(ar)}</td><td>${(ar.spec.agentContext?.reason ?? "").slice(0, 140)}</td>
<td>${approvalsSoFar(ar)}</td><td>${expiry(ar, now)}</td><td${created && !Number.isNaN(created.getTime()) ? html` data-age="${created.toISOString()}"` : ""}>${age(created, now)}</td></tr>`;
}

/**
 * The inbox's live part as its pieces: the counts, each row (keyed by namespace/name, in
 * order), and the whole fragment. The server keeps the last snapshot it sent each page and
 * sends only what changed (inboxDelta).
 */
export interface InboxSnapshot {
  head: string;
  rows: { key: string; html: string }[];
  full: string;
}

export function inboxSnapshot(
  view: InboxView,
  f: InboxFilter,
  groups: readonly RequestGroup[],
  now: Date,
): InboxSnapshot {
  const p = inboxParts(view, f, groups, now);
  return {
    head: p.head.text,
    rows: p.rows.map((r) => ({ key: r.key, html: r.html.text })),
    full: p.full.text,
  };
}

function inboxParts(
  view: InboxView,
  f: InboxFilter,
  groups: readonly RequestGroup[],
  now: Date,
): { head: Html; rows: { key: string; html: Html }[]; full: Html } {
  const groupByRequest = new Map<string, RequestGroup>();
  for (const g of groups) for (const r of g.requests) groupByRequest.set(keyOf(r), g);
  const head = inboxHead(view, f);
  const rows = view.rows.map((ar) => ({
    key: keyOf(ar),
    html: inboxRow(ar, groupByRequest.get(keyOf(ar)), now),
  }));
  const full = html`<div data-part="head">${head}</div>
${
  rows.length === 0
    ? html`<p class="muted" id="empty">${f.all ? "No requests." : "Nothing waits for a decision."}</p>`
    : html`<table id="requests"><thead><tr><th scope="col">Request</th><th scope="col">Phase</th><th scope="col">Requester</th><th scope="col">Action</th><th scope="col">Agent's reason</th><th scope="col">Approvals</th><th scope="col">Expires</th><th scope="col">Age</th></tr></thead><tbody>
${rows.map((r) => r.html)}</tbody></table>`
}`;
  return { head, rows, full };
}

export function inboxBody(view: InboxView, f: InboxFilter, groups: readonly RequestGroup[], now: Date): Html {
  return inboxParts(view, f, groups, now).full;
}

/** A row's text without what the page's script ticks (countdown, age): what a change is. */
const steady = (row: string) =>
  row.replace(/(data-expires="[^"]*"[^>]*>)[^<]*/g, "$1").replace(/(data-age="[^"]*">)[^<]*/g, "$1");

/** What an open inbox needs to catch up from `prev` to `next`. */
export interface InboxDelta {
  /** The counts, when they changed. */
  head?: string;
  /** Every row's key in order, when the order or the set of rows changed (rows not named go). */
  order?: string[];
  /** Rows that are new or changed (beyond their ticking countdown and age), by key. */
  rows: Record<string, string>;
}

/**
 * The delta from the snapshot a page has to the current one, pure: "full" when the page must be
 * replaced whole (nothing sent yet, or the table appears or goes), undefined when nothing changed.
 */
export function inboxDelta(
  prev: InboxSnapshot | undefined,
  next: InboxSnapshot,
): InboxDelta | "full" | undefined {
  if (!prev || (prev.rows.length === 0) !== (next.rows.length === 0)) return "full";
  const before = new Map(prev.rows.map((r) => [r.key, steady(r.html)]));
  const rows: Record<string, string> = {};
  for (const r of next.rows) if (before.get(r.key) !== steady(r.html)) rows[r.key] = r.html;
  const sameOrder =
    prev.rows.length === next.rows.length && prev.rows.every((r, i) => r.key === next.rows[i]!.key);
  const delta: InboxDelta = {
    ...(prev.head !== next.head ? { head: next.head } : {}),
    ...(sameOrder ? {} : { order: next.rows.map((r) => r.key) }),
    rows,
  };
  return delta.head === undefined && delta.order === undefined && Object.keys(rows).length === 0
    ? undefined
    : delta;
}

export function inboxPage(
  ctx: PageContext,
  view: InboxView,
  f: InboxFilter,
  groups: readonly RequestGroup[],
  notes: readonly string[],
): Html {
  const options = (cs: Count[], selected: string | undefined) =>
    html`<option value="">all</option>${cs.map(
      (c) =>
        html`<option value="${c.value}"${c.value === selected ? raw(" selected") : ""}>${c.value}</option>`,
    )}${selected && !cs.some((c) => c.value === selected) ? html`<option value="${selected}" selected>${selected}</option>` : ""}`;
  const body = html`<h1>Inbox</h1>
${notes.map((n) => html`<p class="muted note">${n}</p>`)}
<form class="filter" method="get" action="/" role="search">
<div><label for="f-ns">Namespace</label><select id="f-ns" name="namespace">${options(view.byNamespace, f.namespace)}</select></div>
<div><label for="f-req">Requester</label><select id="f-req" name="requester">${options(view.byRequester, f.requester)}</select></div>
<div><label for="f-pol">Policy</label><select id="f-pol" name="policy">${options(view.byPolicy, f.policy)}</select></div>
<div><label><input type="checkbox" name="all" value="1"${f.all ? raw(" checked") : ""}> finished too</label></div>
<div><button type="submit">Filter</button></div></form>
<section id="inbox" aria-live="polite">${inboxBody(view, f, groups, ctx.now)}</section>`;
  return layout(ctx, "Inbox", body, { live: url(["events"], filterQuery(f)), active: "inbox" });
}

// ---------------------------------------------------------------------------------------------
// One request

/** The live part of a request: phase, approvals so far, expiry, decisions, use. */
export function requestState(ar: ApprovalRequest, now: Date): Html {
  const phase = effectivePhase(ar, now);
  const s = ar.spec;
  const { deniedBy, revokedBy } = tally(s);
  const ready = ar.status?.conditions?.find((c) => c.type === "Ready")?.message;
  return html`<div data-phase="${phase}"><dl>
<dt>Phase</dt><dd>${phaseBadge(phase)}${ready ? html` <span class="muted">${ready}</span>` : ""}</dd>
<dt>Approvals</dt><dd><span id="approvals">${approvalsSoFar(ar)}</span>${deniedBy ? html` · denied by ${deniedBy.approver}` : ""}${revokedBy ? html` · revoked by ${revokedBy.approver}` : ""}</dd>
<dt>Expires</dt><dd>${expiry(ar, now)} <span class="muted">${s.approval.expiresAt}</span></dd>
${ar.status?.consumed ? html`<dt>Used</dt><dd>${ar.status.consumed.time} <span class="muted">(admission ${ar.status.consumed.admissionUID})</span></dd>` : ""}
${ar.status?.execution ? html`<dt>Ran</dt><dd>${ar.status.execution.result}${ar.status.execution.message ? html` <span class="muted">${ar.status.execution.message}</span>` : ""}</dd>` : ""}
</dl>
<h2>Decisions</h2>
${
  s.decisions?.length
    ? html`<ul class="decisions">${s.decisions.map(
        (d) =>
          html`<li><strong>${d.decision}${d.breakGlass ? " (BREAK-GLASS)" : ""}</strong> by ${d.approver}${d.via ? html` <span class="muted">via ${d.via}</span>` : ""} <span class="muted">${d.time ?? ""}</span>${d.reason ? html`<br>${d.reason}` : ""}</li>`,
      )}</ul>`
    : html`<p class="muted">None yet.</p>`
}</div>`;
}

const DIFF_HEADINGS: Record<string, string> = {
  CREATE: "Object, as it will be created",
  DELETE: "Object, as it will be deleted",
  CONNECT: "Options",
};

/** The diff, line by line; removed and added text lines marked. Secret values arrive redacted. */
export function diffBlock(diff: string, id = "diff"): Html {
  return html`<pre class="diff" id="${id}" tabindex="0">${diff.split("\n").map((line, i) => {
    const cls = /^\s*\+ /.test(line) ? "add" : /^\s*- /.test(line) ? "del" : "";
    return html`${i > 0 ? "\n" : ""}${cls ? html`<span class="${cls}">${line}</span>` : line}`;
  })}</pre>`;
}

/**
 * Break-glass, offered only to a member of the rule's break-glass groups (as the API server
 * names the console's user): one Approve marked break-glass, with its own reason, through the
 * same path as `kubectl approve --break-glass`; the webhook judges membership and the reason.
 */
function breakGlassBox(ctx: PageContext, ar: ApprovalRequest): Html {
  const groups = ar.spec.approval.breakGlass?.groups ?? [];
  if (groups.length === 0) return html``;
  const mine = groups.filter((g) => ctx.groups?.includes(g));
  if (mine.length === 0)
    return html`<div class="box"><h2>Break-glass</h2><p class="muted" id="break-glass-note">This rule offers an emergency approval to members of ${groups.join(", ")}; you are not in ${groups.length === 1 ? "it" : "them"}.</p></div>`;
  return html`<div class="box" id="break-glass"><h2>Break-glass</h2>
<p class="warning">Emergency only: your approval alone approves this request, whatever its ${ar.spec.approval.requiredApprovals} required approvals. Every notification route hears of it, a Warning Event names you, and the audit trail marks it break-glass.</p>
<form method="post" action="${url(["r", ar.metadata.namespace, ar.metadata.name, "decide"])}" id="break-glass-form">
<input type="hidden" name="csrf" value="${ctx.csrf}"><input type="hidden" name="breakGlass" value="1">
<label for="break-glass-reason">Why it cannot wait (at least ${BREAK_GLASS_MIN_REASON} visible characters; you are in ${mine.join(", ")})</label>
<textarea id="break-glass-reason" name="reason" maxlength="1024" required></textarea>
<p><button class="deny" name="decision" value="${DecisionKind.Approve}" data-when="Pending">Break the glass</button></p>
</form></div>`;
}

export function requestPage(ctx: PageContext, ar: ApprovalRequest, group: RequestGroup | undefined): Html {
  const s = ar.spec;
  const a = s.action;
  const key = keyOf(ar);
  const ctxEntries = Object.entries(s.agentContext ?? {}).filter(([, v]) => typeof v === "string" && v);
  const approvers = [
    ...(s.approval.approvers.users ?? []).map((u) => `user ${u}`),
    ...(s.approval.approvers.groups ?? []).map((g) => `group ${g}`),
  ];
  const target = `${a.kind ?? a.resource}/${a.name || a.generateName || ""}`;
  const body = html`<p class="muted"><a href="/">Inbox</a> › ${key}</p>
<h1>${actionLine(ar)}</h1>
<div class="grid"><div>
<p id="summary">${a.summary}</p>
${s.diffTruncated ? html`<p class="warning">The change is too large to show in full: this request cannot be approved (deny it).</p>` : ""}
<h2>Requested by</h2>
<dl id="requester"><dt>User</dt><dd>${s.requester.username}${s.requester.uid ? html` <span class="muted">uid ${s.requester.uid}</span>` : ""}</dd>
<dt>Groups</dt><dd>${(s.requester.groups ?? []).join(", ") || "none"}</dd>
${s.requester.serviceAccount ? html`<dt>Service account</dt><dd>${s.requester.serviceAccount.namespace}/${s.requester.serviceAccount.name}</dd>` : ""}
<dt>Action</dt><dd>${a.operation} ${a.group ? `${a.group}/` : ""}${a.version} ${a.resource}${a.subResource ? `/${a.subResource}` : ""} ${a.namespace ? `${a.namespace}/` : ""}${a.name || a.generateName || "(new)"}</dd></dl>
<h2>What the agent said <span class="muted">(its own words, unverified)</span></h2>
${
  ctxEntries.length
    ? html`<dl class="said" id="agent-context">${ctxEntries.map(([k, v]) => html`<dt>${k}</dt><dd><pre>${v}</pre></dd>`)}</dl>`
    : html`<p class="muted">Nothing: no countersign.io/reason, prompt, ticket or agent annotation.</p>`
}
<h2>${DIFF_HEADINGS[a.operation] ?? "Changes"}</h2>
${s.diff ? diffBlock(s.diff) : html`<p class="muted">No diff recorded.</p>`}
</div>
<aside><div class="box">
<section id="state" aria-live="polite">${requestState(ar, ctx.now)}</section>
<h2>Decide</h2>
<form method="post" action="${url(["r", ar.metadata.namespace, ar.metadata.name, "decide"])}" id="decide">
<input type="hidden" name="csrf" value="${ctx.csrf}">
<label for="reason">Reason (recorded in the audit trail and shown to the requester)</label>
<textarea id="reason" name="reason" maxlength="1024"></textarea>
<p><button class="approve" name="decision" value="${DecisionKind.Approve}" data-when="Pending">Approve</button>
<button class="deny" name="decision" value="${DecisionKind.Deny}" data-when="Pending">Deny</button>
<button class="revoke" name="decision" value="${DecisionKind.Revoke}" data-when="Approved">Revoke</button></p>
<p class="muted">Recorded as you (${ctx.user}) exactly like <code>kubectl approve</code>; Countersign's webhook checks it.</p>
</form></div>
${breakGlassBox(ctx, ar)}
<div class="box"><h2>Policy</h2><dl id="policy">
<dt>Policy</dt><dd>${s.policy.name}</dd><dt>Rule</dt><dd>${s.policy.rule}</dd>
${s.policy.message ? html`<dt>Says</dt><dd>${s.policy.message}</dd>` : ""}
<dt>Approvers</dt><dd>${approvers.join(", ") || "none"}</dd>
<dt>Required</dt><dd>${s.approval.requiredApprovals}</dd><dt>TTL</dt><dd>${s.approval.ttl}</dd>
${followUpSummary(ar) ? html`<dt>Follow-ups</dt><dd id="follow-ups">${followUpSummary(ar)}</dd>` : ""}</dl></div>
${
  s.gitops
    ? html`<div class="box"><h2>GitOps</h2><dl id="gitops"><dt>Tool</dt><dd>${s.gitops.tool}</dd><dt>Application</dt><dd>${s.gitops.app}</dd>
<dt>Revision</dt><dd>${s.gitops.revision ?? "not recorded on the object"}</dd><dt>From</dt><dd>${s.gitops.marker} <span class="muted">(as the object claims)</span></dd></dl>
${group ? html`<p><a href="${url(["groups", groupId(group.key)])}">${group.requests.length} request(s) of this sync</a></p>` : ""}</div>`
    : ""
}
<div class="box"><h2>Trail</h2><p><a href="${url(["history"], { namespace: ar.metadata.namespace, request: ar.metadata.name })}" id="history-link">History of this request</a></p>
${a.name ? html`<p><a href="${url(["history"], { namespace: a.namespace || ar.metadata.namespace, object: target })}">History of ${target}</a></p>` : ""}
<p class="muted">Fingerprint ${s.fingerprint.slice(0, 16)}…</p></div>
</aside></div>`;
  return layout(ctx, key, body, { live: url(["events"], { request: key }) });
}

// ---------------------------------------------------------------------------------------------
// Groups

export function groupsPage(ctx: PageContext, groups: readonly RequestGroup[]): Html {
  const body = html`<h1>Groups</h1>
<p class="muted">Requests from one requester for one GitOps application and revision (Argo CD tracking, Flux labels on the target object). Each request is still decided, bound and recorded on its own.</p>
<p class="warning">${GROUP_CAVEAT}</p>
<section id="groups" aria-live="polite">${groupsBody(groups)}</section>`;
  return layout(ctx, "Groups", body, { live: url(["events"], { view: "groups" }), active: "groups" });
}

export function groupsBody(groups: readonly RequestGroup[]): Html {
  if (groups.length === 0) return html`<p class="muted">No pending request carries a GitOps origin.</p>`;
  return html`<table><thead><tr><th scope="col">Application</th><th scope="col">Requester</th><th scope="col">Revision</th><th scope="col">Pending</th></tr></thead><tbody>
${groups.map((g) => html`<tr><td><a href="${url(["groups", groupId(g.key)])}">${g.tool} ${g.app}</a></td><td class="name">${g.requester}</td><td>${g.revision ?? "—"}</td><td>${g.pending} of ${g.requests.length}</td></tr>`)}
</tbody></table>`;
}

/**
 * What a group is: the objects' own claim. Labels and annotations are written by whoever writes
 * the object, the agent included, so a group proves nothing about who made the change.
 */
const GROUP_CAVEAT =
  "Grouped by what the objects claim (Argo CD / Flux labels and annotations): whoever writes an object — the agent too — can write them, so nothing here shows these changes came from a GitOps sync.";

/**
 * The live part of one group: each request with a checkbox (pending ones), its action and
 * summary, and under it the request's whole diff (red team 11 F2: "approve selected" must not
 * approve transitions the approver never saw).
 */
export function groupBody(g: RequestGroup, now: Date): Html {
  return html`<table><thead><tr><th scope="col"><input type="checkbox" id="select-all" aria-label="select all pending"></th><th scope="col">Request</th><th scope="col">Phase</th><th scope="col">Action</th><th scope="col">Summary</th><th scope="col">Approvals</th><th scope="col">Expires</th></tr></thead><tbody>
${g.requests.map((ar) => {
  const pending = effectivePhase(ar, now) === Phase.Pending;
  const id = `sel-${groupId(keyOf(ar))}`;
  return html`<tr><td><input type="checkbox" name="request" value="${keyOf(ar)}" id="${id}"${pending ? "" : raw(" disabled")} aria-label="select ${keyOf(ar)}"></td>
<td class="name"><a href="${requestHref(ar)}">${keyOf(ar)}</a></td><td>${phaseBadge(effectivePhase(ar, now))}</td><td class="name">${actionLine(ar)}</td>
<td>${ar.spec.action.summary.slice(0, 300)}</td><td>${approvalsSoFar(ar)}</td><td>${expiry(ar, now)}</td></tr>
<tr class="member-diff"><td></td><td colspan="6">${
    ar.spec.diffTruncated
      ? html`<p class="warning">Too large to show in full: cannot be approved.</p>`
      : ar.spec.diff
        ? html`<details open><summary>${DIFF_HEADINGS[ar.spec.action.operation] ?? "Changes"} — ${keyOf(ar)}</summary>${diffBlock(ar.spec.diff, `diff-${groupId(keyOf(ar))}`)}</details>`
        : html`<p class="muted">No diff recorded.</p>`
  }</td></tr>`;
})}</tbody></table>`;
}

export function groupPage(ctx: PageContext, g: RequestGroup): Html {
  const id = groupId(g.key);
  const body = html`<p class="muted"><a href="/groups">Groups</a> › ${g.tool} ${g.app}</p>
<h1>${g.tool} ${g.app}</h1>
<p class="warning" id="group-caveat">${GROUP_CAVEAT}</p>
<dl><dt>Claimed through</dt><dd id="group-markers">${[...new Set(g.requests.map((r) => r.spec.gitops?.marker ?? ""))].filter(Boolean).join(", ") || "unknown"}</dd>
<dt>Requester</dt><dd>${g.requester}</dd><dt>Revision</dt><dd>${g.revision ?? "not recorded on the objects (Argo CD writes none)"}</dd></dl>
<form method="post" action="${url(["groups", id, "decide"])}">
<input type="hidden" name="csrf" value="${ctx.csrf}">
<section id="group" aria-live="polite">${groupBody(g, ctx.now)}</section>
<label for="reason">Reason (recorded on each request)</label>
<textarea id="reason" name="reason" maxlength="1024"></textarea>
<p><button class="approve" name="decision" value="${DecisionKind.Approve}">Approve selected</button>
<button class="deny" name="decision" value="${DecisionKind.Deny}">Deny selected</button></p>
<p class="muted">Each selected request is decided on its own, through the same checks as <code>kubectl approve</code>, and its approval covers exactly the diff shown under it: read each one first.</p>
</form>`;
  return layout(ctx, `${g.tool} ${g.app}`, body, { live: url(["events"], { group: id }), active: "groups" });
}

// ---------------------------------------------------------------------------------------------
// History

export interface HistoryQuery {
  namespace?: string;
  request?: string;
  object?: string;
}

export function historyPage(
  ctx: PageContext,
  q: HistoryQuery,
  records: readonly AuditRecord[] | undefined,
  verify: { ok: boolean; report: string } | undefined,
): Html {
  const what = q.request
    ? `request ${q.namespace}/${q.request}`
    : q.object
      ? `${q.object}${q.namespace ? ` in ${q.namespace}` : ""}`
      : undefined;
  const form = html`<form class="filter" method="get" action="/history" role="search">
<div><label for="h-ns">Namespace</label><input type="text" id="h-ns" name="namespace" value="${q.namespace ?? ""}"></div>
<div><label for="h-obj">Object (KIND/NAME)</label><input type="text" id="h-obj" name="object" value="${q.object ?? ""}" placeholder="secret/db-creds"></div>
<div><label for="h-req">or request</label><input type="text" id="h-req" name="request" value="${q.request ?? ""}"></div>
<div><button type="submit">Show</button></div></form>`;
  const verified = verify
    ? html`<div class="box" id="verify"><h2>Chain check: <span class="${verify.ok ? "ok" : "bad"}">${verify.ok ? "intact" : "TAMPERED"}</span></h2><pre>${verify.report}</pre></div>`
    : "";
  const trail =
    records === undefined
      ? ""
      : records.length === 0
        ? html`<p class="muted" id="trail">No audit records for ${what ?? "this"}.</p>`
        : html`<table id="trail"><thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Who</th><th scope="col">Request</th><th scope="col">Details</th><th scope="col">Seq</th></tr></thead><tbody>
${records.map((r) => {
  const s = r.spec;
  const action = s.action as { summary?: string } | undefined;
  return html`<tr data-event="${s.event}"><td>${s.time}</td><td><strong>${s.event}</strong></td><td class="name">${s.actor?.username ?? ""}${s.actor?.via ? html` <span class="muted">via ${s.actor.via}</span>` : ""}</td>
<td class="name"><a href="${url(["r", r.metadata.namespace, s.approvalRequest.name])}">${s.approvalRequest.name}</a></td>
<td>${s.event === "Requested" ? html`${s.policy ? `policy ${s.policy.name}/${s.policy.rule}. ` : ""}${action?.summary ?? ""}${s.agentContext?.reason ? html`<br><span class="muted">agent's reason:</span> ${s.agentContext.reason}` : ""}` : (s.reason ?? "")}</td>
<td>${String(s.sequence)}</td></tr>`;
})}</tbody></table>`;
  const body = html`<h1>History${what ? html` of ${what}` : ""}</h1>${form}${verified}${trail}`;
  return layout(ctx, "History", body, { active: "history" });
}

export function messagePage(ctx: PageContext, title: string, message: string): Html {
  return layout(ctx, title, html`<h1>${title}</h1><p>${message}</p><p><a href="/">Inbox</a></p>`);
}

/** A page for visitors without a session (no user data on it). */
export function signedOutPage(title: string, message: string): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>${title}</title></head>
<body><h1>${title}</h1><p>${message}</p></body></html>`.text;
}
