/**
 * Notifications of an ApprovalRequest's transitions (the reconciler's notification step). This
 * step is the only writer of status.notifications: an entry is written Sending before its
 * message goes out (so a restart never sends one twice), then Sent or Failed; a Requested
 * notification that follows another from the same requester, namespace and route within the
 * burst window is written Batched and goes out in the window's summary (notify/bursts.ts).
 * Every write re-reads the request and is conditional on its resourceVersion.
 */
import { FollowUp, followUpsDue, pendingProgress } from "../approvals/follow-ups.js";
import { effectivePhase } from "../approvals/lifecycle.js";
import { describeKubeError } from "../kube/errors.js";
import { kubeTime } from "../kube/time.js";
import type { Logger } from "../logging/logger.js";
import { BurstTracker, burstKey, DEFAULT_BURST_WINDOW_SECONDS } from "../notify/bursts.js";
import {
  type NotificationConfig,
  type NotifyEvent,
  type Route,
  routesFor,
  summaryFor,
  unknownEscalationRoutes,
} from "../notify/messages.js";
import { messageFor, type SenderOptions, sendToRoute } from "../notify/notifier.js";
import { type ApprovalRequest, Phase } from "../resources/approval-request.js";
import type { ApprovalRequestClient } from "../resources/client.js";
import { EventReason } from "../resources/event-reasons.js";
import { notifyEventFor } from "./approval-request-plan.js";

type Notification = NonNullable<NonNullable<ApprovalRequest["status"]>["notifications"]>[number];

export interface RequestNotificationsOptions {
  requests: ApprovalRequestClient;
  config: NotificationConfig;
  /** Retry settings (tests shorten the backoff). */
  retry?: SenderOptions;
  logger: Logger;
  now: () => Date;
  /** Summaries go out only while this replica leads. */
  isLeader: () => boolean;
  /** Emits an Event on the request (a failed delivery, a reminder, an escalation). */
  emit: (
    ar: ApprovalRequest,
    reason: string,
    message: string,
    type: "Normal" | "Warning",
    log: Logger,
  ) => Promise<void>;
}

export class RequestNotifications {
  private readonly bursts: BurstTracker;
  private readonly burstTimers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly opts: RequestNotificationsOptions) {
    this.bursts = new BurstTracker((opts.config.burstWindowSeconds ?? DEFAULT_BURST_WINDOW_SECONDS) * 1000);
  }

  /**
   * Writes Sending entries for due notifications and starts sending them; "conflict" on a stale
   * read. A Requested notification that follows another from the same requester, namespace and
   * route within the burst window is written Batched instead, for the window's summary.
   */
  async mark(ar: ApprovalRequest): Promise<ApprovalRequest | "conflict" | undefined> {
    const config = this.opts.config;
    const event = notifyEventFor(ar.status?.phase);
    if (!event) return undefined;
    const followUps = followUpsDue(ar, this.opts.now()).due;
    const member = `${ar.metadata.namespace}/${ar.metadata.name}`;
    const routes = routesFor(ar, event, config);
    const entries = (ar.status?.notifications ?? []).filter((n) => n.event === event);
    if (event === "Requested") {
      // Held entries no window knows of (written before a restart or by another leader): adopt them.
      for (const n of entries.filter((e) => e.state === "Batched")) {
        const route = routes.find((r) => r.name === n.route);
        if (!route || this.bursts.holds(burstKey(route, ar), member)) continue;
        const flushAt = this.bursts.adopt(burstKey(route, ar), member, this.opts.now().getTime());
        if (flushAt !== undefined) this.scheduleFlush(burstKey(route, ar), route, flushAt);
      }
    }
    const done = new Set(entries.map((n) => n.route));
    const due = routes.filter((r) => !done.has(r.name));
    if (due.length === 0 && followUps.length === 0) return undefined;
    const time = kubeTime(this.opts.now());
    const placed = due.map((r) => {
      if (event !== "Requested" || this.bursts.windowMs === 0) return { route: r, batch: false };
      const key = burstKey(r, ar);
      const p = this.bursts.place(key, member, this.opts.now().getTime());
      if (p.kind === "send") this.scheduleFlush(key, r, p.flushAt);
      return { route: r, batch: p.kind === "batch" };
    });
    // Follow-ups (reminder, escalation): their time is recorded with their entries in this one
    // conditional write, so a second controller or a restart never sends them again.
    const follow = followUps.map((f) => ({ event: f, routes: routesFor(ar, f, config) }));
    const updated = await this.opts.requests.replaceStatus(ar, {
      ...ar.status,
      notifications: [
        ...(ar.status?.notifications ?? []),
        ...placed.map(({ route, batch }) => ({
          route: route.name,
          event,
          state: batch ? ("Batched" as const) : ("Sending" as const),
          attempts: 0,
          time,
        })),
        ...follow.flatMap((f) =>
          f.routes.map((r) => ({
            route: r.name,
            event: f.event,
            state: "Sending" as const,
            attempts: 0,
            time,
          })),
        ),
      ],
      ...(followUps.includes(FollowUp.Reminder) ? { remindedAt: time } : {}),
      ...(followUps.includes(FollowUp.Escalated) ? { escalatedAt: time } : {}),
    });
    if (updated === "conflict") return "conflict";
    for (const { route, batch } of placed) if (!batch) void this.deliver(updated, route, event);
    for (const f of follow) {
      for (const r of f.routes) void this.deliver(updated, r, f.event);
      await this.announceFollowUp(updated, f.event, f.routes);
    }
    return updated;
  }

  /** The follow-up's Event on the request (and a Warning for escalation routes the configuration lacks). */
  private async announceFollowUp(ar: ApprovalRequest, event: FollowUp, routes: Route[]): Promise<void> {
    const { namespace, name } = ar.metadata;
    const log = this.opts.logger.child({ approvalRequest: `${namespace}/${name}`, event });
    const to = routes.length ? routes.map((r) => r.name).join(", ") : "no route";
    const progress = pendingProgress(ar, this.opts.now());
    if (event === FollowUp.Reminder) {
      log.info("reminder sent", { routes: routes.map((r) => r.name) });
      await this.opts.emit(
        ar,
        EventReason.Reminded,
        `Still pending after ${ar.spec.approval.remindAfter} (${progress}): reminded ${to}. Approve: kubectl approve ${name} -n ${namespace}`,
        "Normal",
        log,
      );
      return;
    }
    log.warn("request escalated", { routes: routes.map((r) => r.name) });
    await this.opts.emit(
      ar,
      EventReason.Escalated,
      `Still pending after ${ar.spec.approval.escalateAfter} (${progress}): escalated to ${to}. Approve: kubectl approve ${name} -n ${namespace}`,
      "Warning",
      log,
    );
    const unknown = unknownEscalationRoutes(ar, this.opts.config);
    if (unknown.length > 0) {
      await this.opts.emit(
        ar,
        EventReason.EscalationRouteUnknown,
        `escalateTo names ${unknown.join(", ")}, which the notification configuration does not have; the escalation did not reach ${unknown.length === 1 ? "it" : "them"}.`,
        "Warning",
        log,
      );
    }
  }

  private scheduleFlush(key: string, route: Route, at: number): void {
    const old = this.burstTimers.get(key);
    if (old) clearTimeout(old);
    const delay = Math.max(0, at - this.opts.now().getTime());
    this.burstTimers.set(
      key,
      setTimeout(() => {
        this.burstTimers.delete(key);
        void this.flushBurst(key, route);
      }, delay),
    );
  }

  /** Forgets the burst windows and their timers (Batched entries stay recorded; the next leader adopts them). */
  clear(): void {
    for (const t of this.burstTimers.values()) clearTimeout(t);
    this.burstTimers.clear();
    this.bursts.clear();
  }

  /**
   * The window closed: one summary for the held requests. Each held entry becomes Sending
   * before the message goes out (at most once, as for single messages), then Sent or Failed.
   */
  private async flushBurst(key: string, route: Route): Promise<void> {
    if (!this.opts.isLeader()) return;
    const { members, nextFlushAt } = this.bursts.flush(key, this.opts.now().getTime());
    if (nextFlushAt !== undefined) this.scheduleFlush(key, route, nextFlushAt);
    if (members.length === 0) return;
    const log = this.opts.logger.child({ route: route.name, burst: members.length });
    const claimed: ApprovalRequest[] = [];
    for (const m of members) {
      const [namespace, name] = m.split("/") as [string, string];
      let pending = true;
      const marked = await this.setNotificationState(
        namespace,
        name,
        route.name,
        "Requested",
        (n, current) => {
          if (n.state !== "Batched") return undefined;
          pending = effectivePhase(current, this.opts.now()) === Phase.Pending;
          return pending
            ? { ...n, state: "Sending" }
            : { ...n, state: "Sent", message: "decided before the burst summary went out; not announced" };
        },
      );
      if (marked && pending) claimed.push(marked);
    }
    if (claimed.length === 0) return;
    const result = await sendToRoute(
      route,
      summaryFor(route, claimed),
      `summary/${route.name}/${claimed.map((a) => a.metadata.uid ?? a.metadata.name).join(",")}`.slice(
        0,
        512,
      ),
      log,
      this.opts.retry,
    );
    if (result.ok) log.info("burst summary sent", { requests: claimed.length, attempts: result.attempts });
    else log.warn("burst summary failed", { requests: claimed.length, error: result.message });
    for (const ar of claimed) {
      await this.setNotificationState(
        ar.metadata.namespace,
        ar.metadata.name,
        route.name,
        "Requested",
        (n) => ({
          ...n,
          state: result.ok ? "Sent" : "Failed",
          attempts: result.attempts,
          message:
            `${result.ok ? "in a summary" : "summary not delivered"} of ${claimed.length} requests: ${result.message}`.slice(
              0,
              500,
            ),
        }),
      );
      if (!result.ok) {
        await this.opts.emit(
          ar,
          EventReason.NotificationFailed,
          `Summary notification to route ${route.name} failed after ${result.attempts} attempts: ${result.message}. The approval flow is not affected.`,
          "Warning",
          log,
        );
      }
    }
  }

  /** Rewrites one notification entry (re-reading on conflicts); undefined when it was not changed. */
  private async setNotificationState(
    namespace: string,
    name: string,
    route: string,
    event: NotifyEvent,
    change: (n: Notification, current: ApprovalRequest) => Notification | undefined,
  ): Promise<ApprovalRequest | undefined> {
    for (let i = 0; i < 5; i++) {
      try {
        const current = await this.opts.requests.get(namespace, name);
        if (!current) return undefined;
        let changed = false;
        const notifications = (current.status?.notifications ?? []).map((n) => {
          if (n.route !== route || n.event !== event) return n;
          const next = change(n, current);
          if (!next) return n;
          changed = true;
          return next;
        });
        if (!changed) return undefined;
        const written = await this.opts.requests.replaceStatus(current, { ...current.status, notifications });
        if (written !== "conflict") return written;
      } catch (err) {
        this.opts.logger.warn("could not update a notification entry", {
          approvalRequest: `${namespace}/${name}`,
          error: describeKubeError(err),
        });
        return undefined;
      }
    }
    return undefined;
  }

  private async deliver(ar: ApprovalRequest, route: Route, event: NotifyEvent): Promise<void> {
    const { namespace, name } = ar.metadata;
    const log = this.opts.logger.child({ approvalRequest: `${namespace}/${name}`, route: route.name, event });
    const result = await sendToRoute(
      route,
      messageFor(route, ar, event),
      `${ar.metadata.uid ?? name}/${event}/${route.name}`,
      log,
      this.opts.retry,
    );
    if (result.ok) log.info("notification sent", { attempts: result.attempts });
    else {
      log.warn("notification failed", { attempts: result.attempts, error: result.message });
      await this.opts.emit(
        ar,
        EventReason.NotificationFailed,
        `Notification to route ${route.name} (${event}) failed after ${result.attempts} attempts: ${result.message}. The approval flow is not affected.`,
        "Warning",
        log,
      );
    }
    // Record the outcome (re-reading on conflicts: other status writes may come in between).
    for (let i = 0; i < 5; i++) {
      try {
        const current = await this.opts.requests.get(namespace, name);
        if (!current) return;
        const notifications = (current.status?.notifications ?? []).map((n) =>
          n.route === route.name && n.event === event
            ? {
                ...n,
                state: result.ok ? ("Sent" as const) : ("Failed" as const),
                attempts: result.attempts,
                message: result.message,
              }
            : n,
        );
        if (
          (await this.opts.requests.replaceStatus(current, { ...current.status, notifications })) !==
          "conflict"
        )
          return;
      } catch (err) {
        log.warn("could not record the notification outcome", { error: describeKubeError(err) });
        return;
      }
    }
  }
}
