/**
 * Notification configuration and message formats (pure): Slack (Block Kit, with approve/deny
 * buttons), Microsoft Teams (Adaptive Card for a workflow webhook), and a generic JSON webhook
 * signed with HMAC-SHA256. Messages carry the requester, the action summary, the diff (bounded,
 * with the command that shows all of it; Secret values are already redacted in both; for a
 * DELETE, whose diff is the whole object being deleted, only the command), namespace, policy,
 * the agent's reason, the expiry and how to decide.
 *
 * Agent-controlled text (names, labels, reason, everything in the summary and diff) is escaped
 * for the medium: in Slack mrkdwn `&`, `<`, `>` are entities (so no `<!channel>`, `<@U…>` or
 * `<url|fake text>`) and `@channel`-style words are broken; in Teams markdown the characters
 * of links, emphasis, code, headings and lists are backslash-escaped. Button values and
 * URLs carry only the ApprovalRequest's own (sanitized) namespace/name.
 */

import { createHmac } from "node:crypto";
import { parse as parseYaml } from "yaml";
import type { FollowUp } from "../approvals/follow-ups.js";
import { breakGlassApproval, tally } from "../approvals/lifecycle.js";
import { visible } from "../approvals/visible.js";
import type { ApprovalRequest } from "../resources/approval-request.js";

/** Slack's Approve / Deny buttons; `value` names the request (namespace/name), never agent text. */
function decisionButtons(value: string) {
  return [
    {
      type: "button",
      action_id: "approve",
      style: "primary",
      text: { type: "plain_text", text: "Approve" },
      value,
    },
    { type: "button", action_id: "deny", style: "danger", text: { type: "plain_text", text: "Deny" }, value },
  ];
}

/** The transitions a route may subscribe to (its `events`). */
export type RouteEvent = "Requested" | "Approved" | "Denied" | "Expired" | "Revoked";
export const NOTIFY_EVENTS: RouteEvent[] = ["Requested", "Approved", "Denied", "Expired", "Revoked"];
/**
 * What a notification announces: a transition, or a follow-up of a request left pending
 * (approvals/follow-ups.ts). A Reminder goes to the routes that announced the request
 * (Requested); an escalation to the policy's escalateTo routes, whatever their `events`.
 */
export type NotifyEvent = RouteEvent | FollowUp;

export interface Route {
  name: string;
  type: "slack" | "teams" | "webhook";
  url: string;
  /** For type webhook: key for the X-Countersign-Signature header. */
  hmacSecret?: string;
  /** PEM of a private CA the endpoint's certificate chains to (default: the system's CAs). */
  caPem?: string;
  events?: RouteEvent[];
}

export interface NotificationConfig {
  routes: Route[];
  /** Routes for requests whose policy rule names none. */
  defaultRoutes: string[];
  /**
   * Requests one requester opens in a namespace within this many seconds of an announced one
   * are announced together in one summary message (default 30; 0 sends each on its own).
   */
  burstWindowSeconds?: number;
  /** Slack interactivity: signing secret and the Slack-user → Kubernetes-identity mapping. */
  slack?: { signingSecret: string; users: Record<string, { username: string; groups?: string[] }> };
}

/** Reads the YAML configuration; ${VAR} is replaced from the environment (secrets stay out of the file). */
export function parseNotificationConfig(
  text: string,
  env: Record<string, string | undefined>,
): NotificationConfig {
  const expanded = text.replace(/\$\{([A-Z0-9_]+)\}/g, (_, v: string) => {
    const value = env[v];
    if (value === undefined) throw new Error(`notification config references \${${v}}, which is not set`);
    return value;
  });
  const raw = (parseYaml(expanded) ?? {}) as Partial<NotificationConfig>;
  const routes = raw.routes ?? [];
  const names = new Set<string>();
  routes.forEach((r, i) => {
    if (!r.name || !/^[a-z0-9-]+$/.test(r.name))
      throw new Error(`routes[${i}].name must be lowercase letters, digits and dashes`);
    if (names.has(r.name)) throw new Error(`routes[${i}].name "${r.name}" is used twice`);
    names.add(r.name);
    if (!["slack", "teams", "webhook"].includes(r.type))
      throw new Error(`routes[${i}].type must be slack, teams or webhook`);
    if (!/^https:\/\//.test(r.url ?? "")) throw new Error(`routes[${i}].url must be an https:// URL`);
    for (const e of r.events ?? [])
      if (!NOTIFY_EVENTS.includes(e)) throw new Error(`routes[${i}].events: unknown event ${e}`);
  });
  for (const d of raw.defaultRoutes ?? [])
    if (!names.has(d)) throw new Error(`defaultRoutes names unknown route "${d}"`);
  if (
    raw.burstWindowSeconds !== undefined &&
    (!Number.isInteger(raw.burstWindowSeconds) || raw.burstWindowSeconds < 0 || raw.burstWindowSeconds > 3600)
  )
    throw new Error("burstWindowSeconds must be a whole number of seconds from 0 to 3600");
  if (raw.slack && !raw.slack.signingSecret)
    throw new Error("slack.signingSecret is required for Slack interactivity");
  return {
    routes,
    defaultRoutes: raw.defaultRoutes ?? [],
    ...(raw.burstWindowSeconds !== undefined ? { burstWindowSeconds: raw.burstWindowSeconds } : {}),
    ...(raw.slack ? { slack: { signingSecret: raw.slack.signingSecret, users: raw.slack.users ?? {} } } : {}),
  };
}

export function routesFor(ar: ApprovalRequest, event: NotifyEvent, config: NotificationConfig): Route[] {
  // A break-glass approval is everyone's business: every route hears of it.
  if (event === "Approved" && breakGlassApproval(ar.spec)) return [...config.routes];
  if (event === "Escalated") {
    const to = ar.spec.approval.escalateTo ?? [];
    return config.routes.filter((r) => to.includes(r.name));
  }
  const wanted = ar.spec.approval.notify?.length ? ar.spec.approval.notify : config.defaultRoutes;
  const as: RouteEvent = event === "Reminder" ? "Requested" : event;
  return config.routes.filter((r) => wanted.includes(r.name) && (r.events ?? NOTIFY_EVENTS).includes(as));
}

/** escalateTo names that are not routes of the configuration (the escalation cannot reach them). */
export function unknownEscalationRoutes(ar: ApprovalRequest, config: NotificationConfig): string[] {
  const names = new Set(config.routes.map((r) => r.name));
  return (ar.spec.approval.escalateTo ?? []).filter((n) => !names.has(n));
}

/** Lines and characters of the diff a chat message carries. */
export const CHAT_DIFF_LINES = 20;
export const CHAT_DIFF_CHARS = 2500;

/** Slack mrkdwn: entities for the three control characters, and no @channel/@here/@everyone. */
export function slackEscape(text: string): string {
  return visible(text, { newlines: true })
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/@(channel|here|everyone)\b/gi, "@\u200b$1");
}

/**
 * Teams (Adaptive Card markdown): the characters that make links, emphasis and code are
 * backslash-escaped everywhere, and those that start headings or lists at a line's start.
 */
export function teamsEscape(text: string): string {
  return visible(text, { newlines: true })
    .replace(/[\\`*_[\]()~<>]/g, (c) => `\\${c}`)
    .replace(/^(\s*)([#+-])/gm, "$1\\$2")
    .replace(/^(\s*\d+)\./gm, "$1\\.");
}

/** The first lines of a diff for a chat message, and how many lines were left out. */
export function boundedDiff(
  diff: string | undefined,
  maxLines = CHAT_DIFF_LINES,
  maxChars = CHAT_DIFF_CHARS,
): { lines: string[]; omitted: number; cut: number } {
  const all = (diff ?? "").split("\n").filter((l) => l.length > 0);
  const lines: string[] = [];
  let chars = 0;
  let cutLines = 0;
  for (const line of all) {
    if (lines.length >= maxLines) break;
    const cut = line.length > 300 ? `${line.slice(0, 297)}...` : line;
    if (chars + cut.length > maxChars) break;
    lines.push(cut);
    if (cut !== line) cutLines++;
    chars += cut.length + 1;
  }
  return { lines, omitted: all.length - lines.length, cut: cutLines };
}

interface Facts {
  title: string;
  requester: string;
  action: string;
  namespace: string;
  policy: string;
  reason?: string;
  expires: string;
  decidedBy?: string;
  /** For a follow-up: approvals so far and since when it waits. */
  waiting?: string;
  approveCommand: string;
  revokeCommand: string;
  showCommand: string;
  diff: { lines: string[]; omitted: number; cut: number };
}

function facts(ar: ApprovalRequest, event: NotifyEvent): Facts {
  const s = ar.spec;
  const { namespace, name } = ar.metadata;
  const decisions = s.decisions ?? [];
  const breakGlass = event === "Approved" ? breakGlassApproval(s) : undefined;
  const decider =
    breakGlass ??
    (event === "Denied"
      ? decisions.find((d) => d.decision === "Deny")
      : event === "Revoked"
        ? decisions.find((d) => d.decision === "Revoke")
        : event === "Approved"
          ? tally(s).approvals.at(-1)
          : undefined);
  const titles: Record<NotifyEvent, string> = {
    Requested: "Approval needed",
    Approved: "Approved",
    Denied: "Denied",
    Expired: "Expired without a decision",
    Revoked: "Approval revoked",
    Reminder: "Reminder, still waiting for approval",
    Escalated: "Escalated, approval overdue",
  };
  return {
    title: `${breakGlass ? "BREAK-GLASS approval" : titles[event]}: ${s.action.operation} ${s.action.resource}${s.action.subResource ? `/${s.action.subResource}` : ""} ${s.action.name || "(new)"}`,
    requester: s.requester.username,
    action: s.action.summary,
    namespace: s.action.namespace || "(cluster-scoped)",
    policy: `${s.policy.name} / ${s.policy.rule}`,
    ...(s.agentContext?.reason ? { reason: s.agentContext.reason } : {}),
    expires: s.approval.expiresAt,
    ...(decider ? { decidedBy: `${decider.approver}${decider.reason ? `: ${decider.reason}` : ""}` } : {}),
    ...(event === "Reminder" || event === "Escalated"
      ? {
          waiting: `${tally(s).approvals.length}/${s.approval.requiredApprovals} approvals, pending since ${
            ar.metadata.creationTimestamp
              ? new Date(ar.metadata.creationTimestamp).toISOString()
              : "its creation"
          }`,
        }
      : {}),
    approveCommand: `kubectl approve ${name} -n ${namespace}`,
    revokeCommand: `kubectl approvals revoke ${name} -n ${namespace} --reason "..."`,
    showCommand: `kubectl approvals show ${name} -n ${namespace}`,
    // A DELETE's "diff" is the whole object being deleted: chat gets only the command to see it.
    diff: s.action.operation === "DELETE" ? boundedDiff(s.diff, 0, 0) : boundedDiff(s.diff),
  };
}

/** The request is still waiting: the message offers the decision (buttons, the approve command). */
const asksForDecision = (event: NotifyEvent) =>
  event === "Requested" || event === "Reminder" || event === "Escalated";

/** Where to read the rest of the diff (or, for a DELETE, the object being deleted). */
function moreLines(f: Facts): string {
  const n = f.diff.omitted;
  if (f.diff.lines.length === 0) return `The object (${n} line${n === 1 ? "" : "s"}): ${f.showCommand}`;
  const what = [
    ...(n > 0 ? [`${n} more line${n === 1 ? "" : "s"}`] : []),
    ...(f.diff.cut > 0 ? [`${f.diff.cut} long line${f.diff.cut === 1 ? "" : "s"} cut`] : []),
  ];
  return `Partial diff, ${what.join(", ")}: ${f.showCommand}`;
}

/** Whether the chat message shows less than the stored diff (then it says so). */
const partial = (f: Facts) => f.diff.omitted > 0 || f.diff.cut > 0;

export function slackMessage(ar: ApprovalRequest, event: NotifyEvent): object {
  const f = facts(ar, event);
  const e = slackEscape;
  const value = `${ar.metadata.namespace}/${ar.metadata.name}`;
  const fields = [
    `*Requester*\n${e(f.requester)}`,
    `*Namespace*\n${e(f.namespace)}`,
    `*Policy*\n${e(f.policy)}`,
    `*Expires*\n${e(f.expires)}`,
    ...(f.reason ? [`*Agent's reason*\n${e(f.reason)}`] : []),
    ...(f.decidedBy ? [`*Decided by*\n${e(f.decidedBy)}`] : []),
    ...(f.waiting ? [`*Waiting*\n${e(f.waiting)}`] : []),
  ].map((text) => ({ type: "mrkdwn", text: text.slice(0, 2000) }));
  const blocks: object[] = [
    { type: "header", text: { type: "plain_text", text: f.title.slice(0, 150) } },
    { type: "section", text: { type: "mrkdwn", text: e(f.action).slice(0, 3000) } },
    { type: "section", fields: fields.slice(0, 10) },
  ];
  if (f.diff.lines.length > 0) {
    // Backticks could close the code block: shown as a look-alike instead.
    const code = e(f.diff.lines.join("\n")).replace(/`/g, "\u02cb");
    blocks.push({ type: "section", text: { type: "mrkdwn", text: `*Changes*\n\`\`\`${code}\`\`\`` } });
  }
  if (partial(f)) {
    blocks.push({
      type: "context",
      elements: [
        {
          type: "mrkdwn",
          text: slackEscape(moreLines(f)).replace(f.showCommand, `\`${f.showCommand}\``),
        },
      ],
    });
  }
  if (asksForDecision(event)) {
    blocks.push(
      {
        type: "actions",
        block_id: "countersign-decision",
        elements: decisionButtons(value),
      },
      { type: "context", elements: [{ type: "mrkdwn", text: `Or: \`${f.approveCommand}\`` }] },
    );
  }
  if (event === "Approved") {
    blocks.push({
      type: "context",
      elements: [{ type: "mrkdwn", text: `Changed your mind before it is used? \`${f.revokeCommand}\`` }],
    });
  }
  return { text: e(`${f.title} (${value})`), blocks };
}

export function teamsMessage(ar: ApprovalRequest, event: NotifyEvent): object {
  const f = facts(ar, event);
  const e = teamsEscape;
  const diff: object[] = [
    ...(f.diff.lines.length
      ? [
          { type: "TextBlock", text: "Changes", weight: "Bolder", wrap: true },
          {
            type: "Container",
            style: "emphasis",
            items: f.diff.lines.map((line) => ({
              type: "TextBlock",
              text: e(line),
              fontType: "Monospace",
              size: "Small",
              wrap: true,
              spacing: "None",
            })),
          },
        ]
      : []),
    ...(partial(f) ? [{ type: "TextBlock", text: e(moreLines(f)), isSubtle: true, wrap: true }] : []),
  ];
  return {
    type: "message",
    attachments: [
      {
        contentType: "application/vnd.microsoft.card.adaptive",
        content: {
          $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
          type: "AdaptiveCard",
          version: "1.4",
          body: [
            { type: "TextBlock", size: "Medium", weight: "Bolder", text: e(f.title), wrap: true },
            { type: "TextBlock", text: e(f.action), wrap: true },
            {
              type: "FactSet",
              facts: [
                { title: "Requester", value: e(f.requester) },
                { title: "Namespace", value: e(f.namespace) },
                { title: "Policy", value: e(f.policy) },
                { title: "Expires", value: e(f.expires) },
                ...(f.reason ? [{ title: "Agent's reason", value: e(f.reason) }] : []),
                ...(f.decidedBy ? [{ title: "Decided by", value: e(f.decidedBy) }] : []),
                ...(f.waiting ? [{ title: "Waiting", value: e(f.waiting) }] : []),
              ],
            },
            ...diff,
            ...(asksForDecision(event)
              ? [
                  {
                    type: "TextBlock",
                    text: e(`Approve: ${f.approveCommand}`),
                    fontType: "Monospace",
                    wrap: true,
                  },
                ]
              : []),
            ...(event === "Approved"
              ? [
                  {
                    type: "TextBlock",
                    text: e(`Revoke before it is used: ${f.revokeCommand}`),
                    fontType: "Monospace",
                    wrap: true,
                  },
                ]
              : []),
          ],
        },
      },
    ],
  };
}

export function webhookMessage(ar: ApprovalRequest, event: NotifyEvent): object {
  const f = facts(ar, event);
  return {
    event,
    approvalRequest: { namespace: ar.metadata.namespace, name: ar.metadata.name, uid: ar.metadata.uid },
    requester: ar.spec.requester,
    action: ar.spec.action,
    policy: ar.spec.policy,
    ...(ar.spec.agentContext ? { agentContext: ar.spec.agentContext } : {}),
    ...(ar.spec.diff && ar.spec.action.operation !== "DELETE" ? { diff: ar.spec.diff } : {}),
    expiresAt: f.expires,
    ...(f.decidedBy ? { decidedBy: f.decidedBy } : {}),
    ...(f.waiting
      ? {
          approvals: { have: tally(ar.spec).approvals.length, required: ar.spec.approval.requiredApprovals },
          pendingSince: ar.metadata.creationTimestamp
            ? new Date(ar.metadata.creationTimestamp).toISOString()
            : undefined,
        }
      : {}),
    ...(event === "Approved" && breakGlassApproval(ar.spec) ? { breakGlass: true } : {}),
    approve: f.approveCommand,
    ...(event === "Approved" ? { revoke: f.revokeCommand } : {}),
  };
}

/** Header value for the generic webhook: sha256=hex(HMAC(secret, "<timestamp>.<body>")). */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

export function messageFor(route: Route, ar: ApprovalRequest, event: NotifyEvent): object {
  return route.type === "slack"
    ? slackMessage(ar, event)
    : route.type === "teams"
      ? teamsMessage(ar, event)
      : webhookMessage(ar, event);
}

/** block_id prefix of a summary's per-request buttons (a click answers without replacing the summary). */
export const SUMMARY_BLOCK_PREFIX = "countersign-decision-";

/** At most this many requests are itemized in one summary (the rest are counted). */
export const SUMMARY_MAX_ITEMS = 10;

/**
 * One message for a burst of approval requests from one requester in one namespace (the
 * first of the burst was announced on its own). Each item names the request, what it does
 * and how to decide it. Pure.
 */
export function summaryFor(route: Route, requests: readonly ApprovalRequest[]): object {
  const first = requests[0]!;
  const ns = first.metadata.namespace;
  const requester = first.spec.requester.username;
  const title = `${requests.length} more approval request${requests.length === 1 ? "" : "s"} from ${requester} in ${ns}`;
  const items = requests.slice(0, SUMMARY_MAX_ITEMS);
  const rest = requests.length - items.length;
  const more = rest > 0 ? `…and ${rest} more: kubectl approvals list -n ${ns}` : undefined;
  if (route.type === "slack") {
    const blocks: object[] = [{ type: "header", text: { type: "plain_text", text: title.slice(0, 150) } }];
    for (const ar of items) {
      const value = `${ar.metadata.namespace}/${ar.metadata.name}`;
      blocks.push(
        {
          type: "section",
          text: {
            type: "mrkdwn",
            text: `*${ar.metadata.name}*\n${slackEscape(ar.spec.action.summary)}\n\`kubectl approve ${ar.metadata.name} -n ${ns}\``.slice(
              0,
              2900,
            ),
          },
        },
        {
          type: "actions",
          block_id: `${SUMMARY_BLOCK_PREFIX}${ar.metadata.name}`.slice(0, 255),
          elements: decisionButtons(value),
        },
      );
    }
    if (more) blocks.push({ type: "context", elements: [{ type: "mrkdwn", text: more }] });
    return { text: slackEscape(title), blocks };
  }
  if (route.type === "teams") {
    return {
      type: "message",
      attachments: [
        {
          contentType: "application/vnd.microsoft.card.adaptive",
          content: {
            $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
            type: "AdaptiveCard",
            version: "1.4",
            body: [
              { type: "TextBlock", size: "Medium", weight: "Bolder", text: teamsEscape(title), wrap: true },
              ...items.map((ar) => ({
                type: "TextBlock",
                text: teamsEscape(
                  `${ar.metadata.name}: ${ar.spec.action.summary} — kubectl approve ${ar.metadata.name} -n ${ns}`,
                ),
                wrap: true,
              })),
              ...(more ? [{ type: "TextBlock", text: teamsEscape(more), wrap: true }] : []),
            ],
          },
        },
      ],
    };
  }
  return {
    event: "RequestedSummary",
    namespace: ns,
    requester: first.spec.requester,
    count: requests.length,
    approvalRequests: requests.map((ar) => ({
      name: ar.metadata.name,
      uid: ar.metadata.uid,
      action: ar.spec.action,
      policy: ar.spec.policy,
      expiresAt: ar.spec.approval.expiresAt,
      approve: `kubectl approve ${ar.metadata.name} -n ${ns}`,
    })),
  };
}
