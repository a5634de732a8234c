/**
 * Sends notifications for ApprovalRequest events, at most once per route and event:
 *   1. the controller records {route, event, state: Sending} in the request's status;
 *   2. only then is the message sent, with retries and backoff (network errors, 429, 5xx);
 *   3. the entry becomes Sent or Failed. A failure becomes a Warning Event and a metric; it
 *      never blocks or changes the approval flow.
 * A controller that restarts between 1 and 3 does not send again (it cannot know whether the
 * first send arrived; a duplicate in a channel is worse than a missing message that the
 * Failed/Sending state and the Event make visible).
 */
import { request } from "node:https";
import { Counter } from "prom-client";
import type { Logger } from "../logging/logger.js";
import { registry } from "../metrics/metrics.js";
import { messageFor, type Route, webhookSignature } from "./messages.js";

export const notificationFailures = new Counter({
  name: "countersign_notification_failures_total",
  help: "Notifications that failed after all retries, by route.",
  labelNames: ["route"] as const,
  registers: [registry],
});

export interface SendResult {
  ok: boolean;
  attempts: number;
  message: string;
}

export interface SenderOptions {
  attempts?: number;
  backoffMs?: number;
  timeoutMs?: number;
}

/** POSTs a JSON body over HTTPS; resolves with the status code, rejects on network errors. */
export function postJson(
  url: string,
  body: string,
  headers: Record<string, string>,
  caPem: string | undefined,
  timeoutMs: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(body)),
          ...headers,
        },
        timeout: timeoutMs,
        ...(caPem ? { ca: caPem } : {}),
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** One route, one message, with retries. Never throws. */
export async function sendToRoute(
  route: Route,
  payload: object,
  deliveryId: string,
  log: Logger,
  opts: SenderOptions = {},
): Promise<SendResult> {
  const attempts = opts.attempts ?? 4;
  const backoff = opts.backoffMs ?? 1000;
  const body = JSON.stringify(payload);
  let last = "";
  for (let i = 1; i <= attempts; i++) {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const headers: Record<string, string> = { "x-countersign-delivery": deliveryId };
    if (route.type === "webhook" && route.hmacSecret) {
      headers["x-countersign-timestamp"] = timestamp;
      headers["x-countersign-signature"] = webhookSignature(route.hmacSecret, timestamp, body);
    }
    try {
      const status = await postJson(route.url, body, headers, route.caPem, opts.timeoutMs ?? 10_000);
      if (status >= 200 && status < 300)
        return { ok: true, attempts: i, message: `delivered (HTTP ${status})` };
      last = `HTTP ${status}`;
      if (status < 500 && status !== 429 && status !== 408) break; // the receiver refused it: retrying will not help
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (i < attempts) {
      log.warn("notification failed; retrying", { route: route.name, attempt: i, error: last });
      await new Promise((r) => setTimeout(r, backoff * 2 ** (i - 1)));
    }
  }
  notificationFailures.inc({ route: route.name });
  return { ok: false, attempts, message: `not delivered: ${last}`.slice(0, 500) };
}

export { messageFor };
