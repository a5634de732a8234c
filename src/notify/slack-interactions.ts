/**
 * Slack interactivity: the Approve / Deny buttons on Countersign's Slack messages post here.
 * Every request must carry a valid Slack signature over the exact body, with a timestamp
 * within five minutes, seen only once by any replica (replays are refused; see replay-guard.ts). The Slack user is mapped to a
 * Kubernetes identity only through explicit configuration, and the decision goes through the
 * same DecisionService rules as kubectl and the HTTP API. The message is then updated.
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import express, { type Request, type Response, type Router } from "express";
import type { DecisionService } from "../approvals/decision-service.js";
import type { Logger } from "../logging/logger.js";
import { slackReplaysRefused } from "../metrics/metrics.js";
import { type NotificationConfig, SUMMARY_BLOCK_PREFIX } from "./messages.js";
import { postJson } from "./notifier.js";
import { type ReplayGuard, SLACK_MAX_SKEW_SECONDS } from "./replay-guard.js";

/** Verifies X-Slack-Signature (v0) and X-Slack-Request-Timestamp. Pure. */
export function verifySlackSignature(
  signingSecret: string,
  timestamp: string | undefined,
  signature: string | undefined,
  rawBody: string,
  nowSeconds: number,
): { ok: true } | { ok: false; reason: string } {
  if (!timestamp || !signature) return { ok: false, reason: "missing Slack signature headers" };
  const ts = Number(timestamp);
  if (!Number.isInteger(ts) || Math.abs(nowSeconds - ts) > SLACK_MAX_SKEW_SECONDS) {
    return { ok: false, reason: "stale or invalid timestamp (replay?)" };
  }
  const expected = `v0=${createHmac("sha256", signingSecret).update(`v0:${timestamp}:${rawBody}`).digest("hex")}`;
  const a = Buffer.from(expected);
  const b = Buffer.from(signature);
  if (a.length !== b.length || !timingSafeEqual(a, b)) return { ok: false, reason: "signature mismatch" };
  return { ok: true };
}

export interface SlackInteractionOptions {
  config: NonNullable<NotificationConfig["slack"]>;
  decisions: DecisionService;
  /** Where seen signatures are kept; shared by all replicas in production (KubeReplayGuard). */
  replay: ReplayGuard;
  logger: Logger;
  /** PEM of a private CA for response_url (tests, proxies); default: the system's CAs. */
  responseCaPem?: string;
  now?: () => number;
}

function respond(url: string, payload: object, caPem: string | undefined, log: Logger): void {
  postJson(url, JSON.stringify(payload), {}, caPem, 10_000).then(
    (status) => {
      if (status >= 300) log.warn("Slack response_url refused the update", { status });
    },
    (err: Error) => log.warn("could not update the Slack message", { error: err.message }),
  );
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const optionalString = (v: unknown) => v === undefined || typeof v === "string";

/** Why a decoded interaction payload is not one Slack sends (the fields read below), or undefined. Pure. */
export function payloadShapeError(p: unknown): string | undefined {
  if (!isRecord(p)) return "not a JSON object";
  if (!optionalString(p.type)) return "type must be a string";
  if (!optionalString(p.response_url)) return "response_url must be a string";
  if (
    p.user !== undefined &&
    !(isRecord(p.user) && optionalString(p.user.id) && optionalString(p.user.username))
  )
    return "user must be an object with string id and username";
  if (p.actions !== undefined) {
    if (!Array.isArray(p.actions)) return "actions must be a list";
    for (const a of p.actions) {
      if (
        !(isRecord(a) && optionalString(a.action_id) && optionalString(a.value) && optionalString(a.block_id))
      )
        return "each action must be an object with string action_id, value and block_id";
    }
  }
  return undefined;
}

export function slackInteractions(opts: SlackInteractionOptions): Router {
  const router = express.Router();
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  router.post(
    "/",
    express.raw({ type: "application/x-www-form-urlencoded", limit: "64kb" }),
    async (req: Request, res: Response) => {
      const raw = Buffer.isBuffer(req.body) ? req.body.toString("utf8") : "";
      const signature = req.get("x-slack-signature");
      const check = verifySlackSignature(
        opts.config.signingSecret,
        req.get("x-slack-request-timestamp"),
        signature,
        raw,
        now(),
      );
      if (!check.ok) {
        opts.logger.warn("refused a Slack interaction", { reason: check.reason });
        res.status(401).json({ error: { code: 401, message: `invalid Slack request: ${check.reason}` } });
        return;
      }
      let first: boolean;
      try {
        first = await opts.replay.claim(signature!);
      } catch (err) {
        opts.logger.error("could not record the Slack request for replay protection; refused it", {
          error: err instanceof Error ? err.message : String(err),
        });
        res.status(503).json({
          error: { code: 503, message: "cannot check for replays right now; nothing was changed, try again" },
        });
        return;
      }
      if (!first) {
        slackReplaysRefused.inc();
        opts.logger.warn("refused a replayed Slack interaction");
        res.status(401).json({ error: { code: 401, message: "invalid Slack request: replayed" } });
        return;
      }

      let payload: {
        type?: string;
        user?: { id?: string; username?: string };
        actions?: { action_id?: string; value?: string; block_id?: string }[];
        response_url?: string;
      };
      try {
        payload = JSON.parse(new URLSearchParams(raw).get("payload") ?? "");
      } catch {
        res.status(400).json({ error: { code: 400, message: "no interaction payload" } });
        return;
      }
      const shapeError = payloadShapeError(payload);
      if (shapeError) {
        res.status(400).json({ error: { code: 400, message: `invalid interaction payload: ${shapeError}` } });
        return;
      }
      const action = payload.actions?.[0];
      if (
        payload.type !== "block_actions" ||
        !action ||
        !["approve", "deny"].includes(action.action_id ?? "")
      ) {
        res.status(200).end(); // not ours to handle
        return;
      }
      const [namespace, name] = (action.value ?? "").split("/");
      const slackUser = payload.user?.id ?? "";
      const identity = Object.hasOwn(opts.config.users, slackUser) ? opts.config.users[slackUser] : undefined;
      // A button in a burst summary (block per request) must not replace the whole summary.
      const inSummary = action.block_id?.startsWith(SUMMARY_BLOCK_PREFIX) ?? false;
      const reply = (text: string, replace: boolean) => {
        if (payload.response_url) {
          respond(
            payload.response_url,
            replace && !inSummary
              ? { replace_original: true, text }
              : { response_type: "ephemeral", replace_original: false, text },
            opts.responseCaPem,
            opts.logger,
          );
        }
      };
      res.status(200).end(); // Slack wants an answer within 3 s; the outcome goes to response_url
      if (!identity) {
        opts.logger.warn("Slack user is not mapped to a Kubernetes identity", { slackUser });
        reply(
          `Countersign: your Slack account (${slackUser}) is not mapped to a Kubernetes identity, so you cannot decide requests from Slack. Ask an admin, or use kubectl approve.`,
          false,
        );
        return;
      }
      if (!namespace || !name) return;
      const decision = action.action_id === "approve" ? "Approve" : "Deny";
      try {
        const out = await opts.decisions.decide(
          namespace,
          name,
          { username: identity.username, groups: identity.groups ?? [] },
          decision,
          `via Slack by ${payload.user?.username ?? slackUser}`,
          "slack",
        );
        if (out.ok)
          reply(
            `${decision === "Approve" ? "Approved" : "Denied"} by ${identity.username}: ${namespace}/${name}`,
            true,
          );
        else reply(out.message, false);
      } catch (err) {
        opts.logger.error("Slack decision failed", {
          error: err instanceof Error ? err.message : String(err),
        });
        reply(
          "Countersign: the decision could not be recorded right now; nothing was changed. Try again or use kubectl approve.",
          false,
        );
      }
    },
  );
  return router;
}
