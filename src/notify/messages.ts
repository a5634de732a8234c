/**
 * Notification configuration and message formats (pure): Slack (Block Kit, with approve/deny
 * buttons), Microsoft Teams (Adaptive Card for a workflow webhook), and a generic JSON webhook
 * signed with HMAC-SHA256. Messages carry the requester, the action summary (Secret values are
 * already redacted there), namespace, policy, the agent's reason, the expiry and how to decide.
 * Never the object itself.
 */
import { createHmac } from "node:crypto";
import { parse as parseYaml } from "yaml";
import type { ApprovalRequest } from "../approvals/request.js";

export type NotifyEvent = "Requested" | "Approved" | "Denied" | "Expired" | "Revoked";
export const NOTIFY_EVENTS: NotifyEvent[] = ["Requested", "Approved", "Denied", "Expired", "Revoked"];

export interface Route {
  name: string;
  type: "slack" | "teams" | "webhook";
  url: string;
  /** For type webhook: key for the X-Countersign-Signature header. */
  hmacSecret?: string;
  /** PEM of a private CA the endpoint's certificate chains to (default: the system's CAs). */
  caPem?: string;
  events?: NotifyEvent[];
}

export interface NotificationConfig {
  routes: Route[];
  /** Routes for requests whose policy rule names none. */
  defaultRoutes: string[];
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
  if (raw.slack && !raw.slack.signingSecret)
    throw new Error("slack.signingSecret is required for Slack interactivity");
  return {
    routes,
    defaultRoutes: raw.defaultRoutes ?? [],
    ...(raw.slack ? { slack: { signingSecret: raw.slack.signingSecret, users: raw.slack.users ?? {} } } : {}),
  };
}

export function routesFor(ar: ApprovalRequest, event: NotifyEvent, config: NotificationConfig): Route[] {
  const wanted = ar.spec.approval.notify?.length ? ar.spec.approval.notify : config.defaultRoutes;
  return config.routes.filter((r) => wanted.includes(r.name) && (r.events ?? NOTIFY_EVENTS).includes(event));
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
  approveCommand: string;
  revokeCommand: string;
}

function facts(ar: ApprovalRequest, event: NotifyEvent): Facts {
  const s = ar.spec;
  const { namespace, name } = ar.metadata;
  const decisions = s.decisions ?? [];
  const decider =
    event === "Denied"
      ? decisions.find((d) => d.decision === "Deny")
      : event === "Revoked"
        ? decisions.find((d) => d.decision === "Revoke")
        : event === "Approved"
          ? decisions.filter((d) => d.decision === "Approve").at(-1)
          : undefined;
  const titles: Record<NotifyEvent, string> = {
    Requested: "Approval needed",
    Approved: "Approved",
    Denied: "Denied",
    Expired: "Expired without a decision",
    Revoked: "Approval revoked",
  };
  return {
    title: `${titles[event]}: ${s.action.operation} ${s.action.resource}${s.action.subResource ? `/${s.action.subResource}` : ""} ${s.action.name || "(new)"}`,
    requester: s.requester.username,
    action: s.action.summary,
    namespace: s.action.namespace || "(cluster-scoped)",
    policy: `${s.policy.name} / ${s.policy.rule}`,
    ...(s.agentContext?.reason ? { reason: s.agentContext.reason } : {}),
    expires: s.approval.expiresAt,
    ...(decider ? { decidedBy: `${decider.approver}${decider.reason ? `: ${decider.reason}` : ""}` } : {}),
    approveCommand: `kubectl approve ${name} -n ${namespace}`,
    revokeCommand: `kubectl approvals revoke ${name} -n ${namespace} --reason "..."`,
  };
}

export function slackMessage(ar: ApprovalRequest, event: NotifyEvent): object {
  const f = facts(ar, event);
  const value = `${ar.metadata.namespace}/${ar.metadata.name}`;
  const fields = [
    `*Requester*\n${f.requester}`,
    `*Namespace*\n${f.namespace}`,
    `*Policy*\n${f.policy}`,
    `*Expires*\n${f.expires}`,
    ...(f.reason ? [`*Agent's reason*\n${f.reason}`] : []),
    ...(f.decidedBy ? [`*Decided by*\n${f.decidedBy}`] : []),
  ].map((text) => ({ type: "mrkdwn", text }));
  const blocks: object[] = [
    { type: "header", text: { type: "plain_text", text: f.title.slice(0, 150) } },
    { type: "section", text: { type: "mrkdwn", text: f.action } },
    { type: "section", fields: fields.slice(0, 10) },
  ];
  if (event === "Requested") {
    blocks.push(
      {
        type: "actions",
        block_id: "countersign-decision",
        elements: [
          {
            type: "button",
            action_id: "approve",
            style: "primary",
            text: { type: "plain_text", text: "Approve" },
            value,
          },
          {
            type: "button",
            action_id: "deny",
            style: "danger",
            text: { type: "plain_text", text: "Deny" },
            value,
          },
        ],
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
  return { text: `${f.title} (${value})`, blocks };
}

export function teamsMessage(ar: ApprovalRequest, event: NotifyEvent): object {
  const f = facts(ar, event);
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
            { type: "TextBlock", size: "Medium", weight: "Bolder", text: f.title, wrap: true },
            { type: "TextBlock", text: f.action, wrap: true },
            {
              type: "FactSet",
              facts: [
                { title: "Requester", value: f.requester },
                { title: "Namespace", value: f.namespace },
                { title: "Policy", value: f.policy },
                { title: "Expires", value: f.expires },
                ...(f.reason ? [{ title: "Agent's reason", value: f.reason }] : []),
                ...(f.decidedBy ? [{ title: "Decided by", value: f.decidedBy }] : []),
              ],
            },
            ...(event === "Requested"
              ? [
                  {
                    type: "TextBlock",
                    text: `Approve: ${f.approveCommand}`,
                    fontType: "Monospace",
                    wrap: true,
                  },
                ]
              : []),
            ...(event === "Approved"
              ? [
                  {
                    type: "TextBlock",
                    text: `Revoke before it is used: ${f.revokeCommand}`,
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
    expiresAt: f.expires,
    ...(f.decidedBy ? { decidedBy: f.decidedBy } : {}),
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
