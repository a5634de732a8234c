/**
 * The ApprovalRequest reconciler (leader-elected). For each request, in this order:
 *   1. write every AuditRecord its state calls for (idempotent, so a crash between steps
 *      neither loses nor duplicates a record);
 *   2. emit a Kubernetes Event per transition, on the request and on the target object,
 *      with deterministic names (a restart does not repeat them);
 *   3. write the status computed by the pure state machine (conditional update);
 *   4. schedule the next look at its expiry or garbage-collection time: no polling;
 *   5. delete finished requests after the retention, once their records exist (checked by
 *      name from the status, never by listing the namespace's chain).
 * Up to RECONCILE_WORKERS requests are reconciled at once (never one key twice); changes come
 * before the backlog found on taking the lead, and one reconcile is bounded by a deadline.
 */

import {
  CoreV1Api,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  makeInformer,
  type ObjectCache,
  type V1Namespace,
} from "@kubernetes/client-node";
import type { FingerprintKey } from "../approvals/fingerprint.js";
import {
  breakGlassApproval,
  computePhase,
  EXECUTION_CHECK_DELAY_MS,
  type ExecutionResult,
  effectivePhase,
  finishedAt,
  judgeExecution,
  nextStatus,
} from "../approvals/lifecycle.js";
import { archiveNamespaceChain, holdsCountersignObjects } from "../audit/archive.js";
import { type AuditRef, AuditWriter } from "../audit/writer.js";
import { describeKubeError, isNotFound } from "../kube/errors.js";
import { type EventTarget, emitEvent, eventTargetOf } from "../kube/events.js";
import { restartOnError } from "../kube/informers.js";
import { kubeTime } from "../kube/time.js";
import type { Logger } from "../logging/logger.js";
import { setPendingSource, timeToDecision } from "../metrics/metrics.js";
import { BurstTracker, burstKey, DEFAULT_BURST_WINDOW_SECONDS } from "../notify/bursts.js";
import {
  type NotificationConfig,
  type NotifyEvent,
  type Route,
  routesFor,
  summaryFor,
} from "../notify/messages.js";
import { messageFor, type SenderOptions, sendToRoute } from "../notify/notifier.js";
import { type ApprovalRequest, Phase } from "../resources/approval-request.js";
import { type ApprovalRequestClient, CountersignClient } from "../resources/client.js";
import { EventReason } from "../resources/event-reasons.js";
import { auditDetails, expectedAuditEvents, notifyEventFor } from "./approval-request-plan.js";
import { LeaderElector } from "./leader-election.js";

type Notification = NonNullable<NonNullable<ApprovalRequest["status"]>["notifications"]>[number];

export const DEFAULT_RETENTION_SECONDS = 24 * 3600;
export const LEASE_NAME = "countersign-controller";

export interface ControllerOptions {
  kubeConfig: KubeConfig;
  installNamespace: string;
  /** This replica's identity in the lease. */
  identity: string;
  /** The username Countersign runs as (recorded as the actor of Expired events). */
  username: string;
  retentionSeconds?: number;
  leaseDurationSeconds?: number;
  logger: Logger;
  siemLogger: Logger;
  now?: () => Date;
  /**
   * Called after each reconcile step; fault-injection tests throw here to "crash" the
   * controller between steps and check that a restart completes the work exactly once.
   */
  afterStep?: (step: "audit" | "events" | "status", key: string) => void;
  /** Where to send notifications (none when absent). */
  notifications?: NotificationConfig;
  /** Retry settings for notifications (tests shorten the backoff). */
  notificationRetry?: SenderOptions;
  /** The webhook's fingerprint key: a Secret's objectHash is keyed with it (fingerprint-key.ts). */
  fingerprintKey?: FingerprintKey;
}

/**
 * One reconcile may not hold the queue longer than this: an API call that never answers would
 * otherwise stall every other request behind it (seen as a test whose request never got a
 * status while its controller led). The late reconcile may still finish; its writes are
 * conditional (resourceVersion) or idempotent, and the key is retried.
 */
const RECONCILE_DEADLINE_MS = 15_000;

/** Requests reconciled at once (distinct keys); client-go controllers run several workers too. */
const RECONCILE_WORKERS = 4;

function withDeadline<T>(work: Promise<T>, ms: number, key: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`reconcile of ${key} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

export class Controller {
  private readonly requests: ApprovalRequestClient;
  private readonly core: CoreV1Api;
  private readonly objects: KubernetesObjectApi;
  private readonly informer: Informer<ApprovalRequest> & ObjectCache<ApprovalRequest>;
  /** Namespaces, to archive the audit chain of one being deleted (see audit/archive.ts). */
  private readonly namespaces: Informer<V1Namespace> & ObjectCache<V1Namespace>;
  private readonly archiving = new Set<string>();
  private readonly archiveTimers = new Map<string, NodeJS.Timeout>();
  private readonly audit: AuditWriter;
  private readonly elector: LeaderElector;
  /** Keys to reconcile: changes and timers first, then the backlog found on taking the lead. */
  private readonly queue = new Set<string>();
  private readonly backlog = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Keys a worker is reconciling now, and keys enqueued meanwhile (reconciled again after). */
  private readonly active = new Set<string>();
  private readonly dirty = new Set<string>();
  private workers = 0;
  private stopped = false;
  private readonly bursts: BurstTracker;
  private readonly burstTimers = new Map<string, NodeJS.Timeout>();
  private readonly now: () => Date;

  constructor(private readonly opts: ControllerOptions) {
    const kc = opts.kubeConfig;
    this.requests = CountersignClient.fromKubeConfig(kc).approvalRequests;
    this.core = kc.makeApiClient(CoreV1Api);
    this.objects = KubernetesObjectApi.makeApiClient(kc);
    this.now = opts.now ?? (() => new Date());
    this.audit = new AuditWriter(kc, opts.siemLogger);
    this.bursts = new BurstTracker(
      (opts.notifications?.burstWindowSeconds ?? DEFAULT_BURST_WINDOW_SECONDS) * 1000,
    );
    this.informer = makeInformer<ApprovalRequest>(
      kc,
      this.requests.informerPath,
      this.requests.listForInformer,
    );
    const enqueue = (ar: ApprovalRequest) => this.enqueue(`${ar.metadata.namespace}/${ar.metadata.name}`);
    this.informer.on("add", enqueue);
    this.informer.on("update", enqueue);
    this.informer.on("delete", (ar) => this.clearTimer(`${ar.metadata.namespace}/${ar.metadata.name}`));
    restartOnError(this.informer, "approvalrequests", opts.logger, () => this.stopped);
    this.namespaces = makeInformer<V1Namespace>(kc, "/api/v1/namespaces", () => this.core.listNamespace());
    const onNamespace = (n: V1Namespace) => {
      if (n.metadata?.deletionTimestamp && n.metadata.name) void this.archive(n.metadata.name);
    };
    this.namespaces.on("add", onNamespace);
    this.namespaces.on("update", onNamespace);
    restartOnError(this.namespaces, "namespaces", opts.logger, () => this.stopped);
    this.elector = new LeaderElector({
      kubeConfig: kc,
      namespace: opts.installNamespace,
      name: LEASE_NAME,
      identity: opts.identity,
      leaseDurationSeconds: opts.leaseDurationSeconds ?? 15,
      logger: opts.logger,
      onStartedLeading: () => {
        // Everything already there is a backlog: a request that changes meanwhile goes first.
        for (const ar of this.informer.list())
          this.enqueue(`${ar.metadata.namespace}/${ar.metadata.name}`, true);
        for (const n of this.namespaces.list()) onNamespace(n);
      },
      onStoppedLeading: () => {
        for (const key of [...this.timers.keys()]) this.clearTimer(key);
        this.clearBursts(); // Batched entries stay recorded; the next leader adopts them
        this.queue.clear();
        this.backlog.clear();
        this.dirty.clear();
      },
    });
  }

  isLeader(): boolean {
    return this.elector.isLeader();
  }

  async start(): Promise<void> {
    await Promise.all([this.informer.start(), this.namespaces.start()]);
    setPendingSource(() => {
      const now = this.now();
      return this.informer.list().filter((ar) => effectivePhase(ar, now) === Phase.Pending).length;
    });
    this.elector.start();
  }

  /** Stops. `releaseLease: false` simulates a crash: the lease stays until it expires. */
  async stop(releaseLease = true): Promise<void> {
    this.stopped = true;
    setPendingSource(undefined);
    for (const key of [...this.timers.keys()]) this.clearTimer(key);
    for (const t of this.archiveTimers.values()) clearTimeout(t);
    this.archiveTimers.clear();
    this.clearBursts();
    await this.elector.stop(releaseLease);
    await Promise.all([this.informer.stop(), this.namespaces.stop()]);
  }

  /**
   * A namespace is being deleted: archive its audit chain into the install namespace, so the
   * guard lets the namespace controller delete its Countersign objects. Re-checked while the
   * namespace exists (an object may appear late; an API error is retried).
   */
  private async archive(name: string): Promise<void> {
    if (this.stopped || !this.elector.isLeader() || this.archiving.has(name)) return;
    if (name === this.opts.installNamespace) return;
    const ns = this.namespaces.get(name);
    const uid = ns?.metadata?.uid;
    if (!ns?.metadata?.deletionTimestamp || !uid) return;
    const log = this.opts.logger.child({ namespace: name });
    this.archiving.add(name);
    let again = 0;
    try {
      const kc = this.opts.kubeConfig;
      if (!(await holdsCountersignObjects(kc, name))) again = 5000;
      else {
        await archiveNamespaceChain(kc, {
          namespace: name,
          uid,
          installNamespace: this.opts.installNamespace,
          now: this.now(),
          logger: log,
        });
      }
    } catch (err) {
      log.warn("archiving the audit chain failed; retrying", { error: describeKubeError(err) });
      again = 2000;
    } finally {
      this.archiving.delete(name);
    }
    if (again > 0 && !this.stopped) {
      clearTimeout(this.archiveTimers.get(name));
      this.archiveTimers.set(
        name,
        setTimeout(() => {
          this.archiveTimers.delete(name);
          void this.archive(name);
        }, again),
      );
    }
  }

  private enqueue(key: string, backlog = false): void {
    if (this.stopped || !this.elector.isLeader()) return;
    if (this.active.has(key)) {
      this.dirty.add(key); // never two workers on one key: it runs again once the first is done
      return;
    }
    if (backlog) {
      if (!this.queue.has(key)) this.backlog.add(key);
    } else {
      this.backlog.delete(key);
      this.queue.add(key);
    }
    while (this.workers < RECONCILE_WORKERS && this.queue.size + this.backlog.size > 0) {
      // work() takes its first key synchronously, so each pass shrinks the queue
      this.workers++;
      void this.work();
    }
  }

  private clearTimer(key: string): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
  }

  private schedule(key: string, at: Date): void {
    this.clearTimer(key);
    const delay = Math.max(0, at.getTime() - this.now().getTime()) + 50;
    // setTimeout caps at ~24.8 days; longer waits re-arm on the next event or resync.
    this.timers.set(
      key,
      setTimeout(() => this.enqueue(key), Math.min(delay, 2 ** 31 - 1)),
    );
  }

  /**
   * One worker: takes keys until the queue is empty. Several run at once (RECONCILE_WORKERS),
   * so a slow key — or a backlog of thousands after a restart — never holds back a fresh
   * request; a key is never reconciled by two workers at once.
   */
  private async work(): Promise<void> {
    try {
      while (this.queue.size + this.backlog.size > 0 && !this.stopped && this.elector.isLeader()) {
        const from = this.queue.size > 0 ? this.queue : this.backlog;
        const key = from.values().next().value as string;
        from.delete(key);
        this.active.add(key);
        try {
          await withDeadline(this.reconcile(key), RECONCILE_DEADLINE_MS, key);
        } catch (err) {
          this.opts.logger.warn("reconcile failed; retrying", {
            approvalRequest: key,
            error: describeKubeError(err),
          });
          setTimeout(() => this.enqueue(key), 1000);
        } finally {
          this.active.delete(key);
          if (this.dirty.delete(key)) this.queue.add(key);
        }
      }
    } finally {
      this.workers--;
    }
  }

  async reconcile(key: string): Promise<void> {
    const [namespace, name] = key.split("/") as [string, string];
    const cached = this.informer.get(name, namespace);
    if (!cached) return;
    const log = this.opts.logger.child({ approvalRequest: key });
    const now = this.now();
    const before = cached.status?.phase;
    const computed = computePhase(cached, now);
    const target = computed.phase;

    // 1. audit records (before anything else can be observed); the status lists where each
    //    sits in the chain, so records it already names cost no API call
    const known = cached.status?.auditRecords ?? [];
    const refs: AuditRef[] = [];
    for (const event of expectedAuditEvents(cached, target)) {
      const listed = known.find((r) => r.event === event);
      if (listed) continue;
      const ref = await this.audit.ensure(
        cached,
        event,
        auditDetails(cached, event, now, this.opts.username),
      );
      if (ref.created) log.info("audit record written", { event, sequence: ref.sequence });
      refs.push({ event: ref.event, sequence: ref.sequence, record: ref.record });
    }

    this.opts.afterStep?.("audit", key);

    // 2. events for the transition (the webhook already announced creation and consumption)
    if (target !== before && target !== Phase.Pending && target !== Phase.Consumed)
      await this.emitTransition(cached, target, computed.message, log);

    this.opts.afterStep?.("events", key);

    // 3. status
    let status = nextStatus(cached, now);
    if (refs.length > 0) status = { ...(status ?? cached.status), auditRecords: [...known, ...refs] };
    let current = cached;
    if (status) {
      const written = await this.requests.replaceStatus(cached, status);
      if (written === "conflict") return; // a newer version is on its way through the informer
      current = written;
      if (target !== before) {
        log.info("phase changed", { from: before ?? "(new)", to: target });
        if (
          target === Phase.Approved ||
          target === Phase.Denied ||
          (target === Phase.Expired && before !== Phase.Approved)
        ) {
          const created = cached.metadata.creationTimestamp
            ? new Date(cached.metadata.creationTimestamp).getTime()
            : now.getTime();
          timeToDecision.observe({ outcome: target }, Math.max(0, (now.getTime() - created) / 1000));
        }
      }
    }

    this.opts.afterStep?.("status", key);

    // notifications: recorded as Sending before they go out, so a restart never repeats one
    if (this.opts.notifications) {
      const marked = await this.markNotifications(current);
      if (marked === "conflict") return;
      if (marked) current = marked;
    }

    // 4. did the consumed action take effect? (checked once, shortly after admission)
    if (current.status?.phase === Phase.Consumed && !current.status.execution) {
      const consumedAt = Date.parse(current.status.consumed?.time ?? "") || now.getTime();
      if (now.getTime() < consumedAt + EXECUTION_CHECK_DELAY_MS) {
        this.schedule(key, new Date(consumedAt + EXECUTION_CHECK_DELAY_MS));
        return;
      }
      await this.checkExecution(current, log);
      return; // the status write brings the request back through the informer
    }

    // 5. the next look: expiry, or garbage collection after the retention
    const finished = finishedAt(current);
    if (!finished) {
      this.schedule(key, new Date(Date.parse(current.spec.approval.expiresAt)));
      return;
    }
    const retentionMs = (this.opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS) * 1000;
    const gcAt = new Date(finished.getTime() + retentionMs);
    if (now < gcAt) {
      this.schedule(key, gcAt);
      return;
    }
    // The status names every record the request has (step 1 writes them first); each is read
    // by name, so collection costs a few GETs, not a LIST of the namespace's whole chain.
    const expected = expectedAuditEvents(current, current.status?.phase ?? target);
    const listed = current.status?.auditRecords ?? [];
    const have = new Set<string>();
    for (const ref of listed) {
      if ((expected as string[]).includes(ref.event) && (await this.audit.exists(namespace, ref.record)))
        have.add(ref.event);
    }
    if (!expected.every((e) => have.has(e))) {
      log.warn("not collecting: audit records incomplete", { expected, have: [...have] });
      this.schedule(key, new Date(now.getTime() + 5000));
      return;
    }
    if (await this.requests.delete(namespace, name))
      log.info("garbage-collected finished request", { phase: current.status?.phase });
  }

  /**
   * Writes Sending entries for due notifications and starts sending them; "conflict" on a stale
   * read. A Requested notification that follows another from the same requester, namespace and
   * route within the burst window is written Batched instead, for the window's summary.
   */
  private async markNotifications(ar: ApprovalRequest): Promise<ApprovalRequest | "conflict" | undefined> {
    const config = this.opts.notifications!;
    const event = notifyEventFor(ar.status?.phase);
    if (!event) return undefined;
    const member = `${ar.metadata.namespace}/${ar.metadata.name}`;
    const routes = routesFor(ar, event, config);
    const entries = (ar.status?.notifications ?? []).filter((n) => n.event === event);
    if (event === "Requested") {
      // Held entries no window knows of (written before a restart or by another leader): adopt them.
      for (const n of entries.filter((e) => e.state === "Batched")) {
        const route = routes.find((r) => r.name === n.route);
        if (!route || this.bursts.holds(burstKey(route, ar), member)) continue;
        const flushAt = this.bursts.adopt(burstKey(route, ar), member, this.now().getTime());
        if (flushAt !== undefined) this.scheduleFlush(burstKey(route, ar), route, flushAt);
      }
    }
    const done = new Set(entries.map((n) => n.route));
    const due = routes.filter((r) => !done.has(r.name));
    if (due.length === 0) return undefined;
    const time = kubeTime(this.now());
    const placed = due.map((r) => {
      if (event !== "Requested" || this.bursts.windowMs === 0) return { route: r, batch: false };
      const key = burstKey(r, ar);
      const p = this.bursts.place(key, member, this.now().getTime());
      if (p.kind === "send") this.scheduleFlush(key, r, p.flushAt);
      return { route: r, batch: p.kind === "batch" };
    });
    const updated = await this.requests.replaceStatus(ar, {
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
      ],
    });
    if (updated === "conflict") return "conflict";
    for (const { route, batch } of placed) if (!batch) void this.deliver(updated, route, event);
    return updated;
  }

  private scheduleFlush(key: string, route: Route, at: number): void {
    const old = this.burstTimers.get(key);
    if (old) clearTimeout(old);
    const delay = Math.max(0, at - this.now().getTime());
    this.burstTimers.set(
      key,
      setTimeout(() => {
        this.burstTimers.delete(key);
        void this.flushBurst(key, route);
      }, delay),
    );
  }

  private clearBursts(): void {
    for (const t of this.burstTimers.values()) clearTimeout(t);
    this.burstTimers.clear();
    this.bursts.clear();
  }

  /**
   * The window closed: one summary for the held requests. Each held entry becomes Sending
   * before the message goes out (at most once, as for single messages), then Sent or Failed.
   */
  private async flushBurst(key: string, route: Route): Promise<void> {
    if (this.stopped || !this.elector.isLeader()) return;
    const { members, nextFlushAt } = this.bursts.flush(key, this.now().getTime());
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
          pending = effectivePhase(current, this.now()) === Phase.Pending;
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
      this.opts.notificationRetry,
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
        await this.emitRaw(
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
        const current = await this.requests.get(namespace, name);
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
        const written = await this.requests.replaceStatus(current, { ...current.status, notifications });
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
      this.opts.notificationRetry,
    );
    if (result.ok) log.info("notification sent", { attempts: result.attempts });
    else {
      log.warn("notification failed", { attempts: result.attempts, error: result.message });
      await this.emitRaw(
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
        const current = await this.requests.get(namespace, name);
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
        if ((await this.requests.replaceStatus(current, { ...current.status, notifications })) !== "conflict")
          return;
      } catch (err) {
        log.warn("could not record the notification outcome", { error: describeKubeError(err) });
        return;
      }
    }
  }

  private async checkExecution(ar: ApprovalRequest, log: Logger): Promise<void> {
    const a = ar.spec.action;
    let target: KubernetesObject | undefined;
    let verdict: ExecutionResult;
    if (a.operation === "CONNECT" || a.subResource || !a.kind || (a.operation === "CREATE" && !a.name)) {
      verdict = judgeExecution(ar, undefined);
    } else {
      try {
        target = await this.objects.read({
          apiVersion: a.group ? `${a.group}/${a.version}` : a.version,
          kind: a.kind,
          metadata: { name: a.name, ...(a.namespace ? { namespace: a.namespace } : {}) },
        });
        verdict = judgeExecution(ar, target, this.opts.fingerprintKey);
      } catch (err) {
        verdict = isNotFound(err)
          ? judgeExecution(ar, undefined)
          : { result: "Unknown", message: `could not read the target: ${describeKubeError(err)}` };
      }
    }
    const checkedAt = kubeTime(this.now());
    const status = {
      ...ar.status,
      execution: { result: verdict.result, message: verdict.message, checkedAt },
    };
    // The Event first (deterministic name, so a retry after a crash does not repeat it), then
    // the status that records the check as done.
    if (verdict.result === "NotExecuted") {
      await this.emitRaw(
        ar,
        EventReason.NotExecuted,
        `The approved action did not take effect (${verdict.message}). The approval is used; the requester must request again.`,
        "Warning",
        log,
      );
    } else if (verdict.result === "Executed") {
      await this.emitRaw(
        ar,
        EventReason.Executed,
        `The approved action took effect: ${verdict.message}.`,
        "Normal",
        log,
      );
    }
    if ((await this.requests.replaceStatus(ar, status)) === "conflict") return;
    log.info("execution checked", { result: verdict.result, detail: verdict.message });
  }

  private emitRaw(
    ar: ApprovalRequest,
    reason: string,
    message: string,
    type: "Normal" | "Warning",
    log: Logger,
  ): Promise<void> {
    const { namespace, name } = ar.metadata;
    return emitEvent(
      this.core,
      {
        target: eventTargetOf(ar),
        reason,
        message,
        type,
        component: "controller",
        instance: this.opts.identity,
        dedupeKey: `${namespace}/${name}/${reason}`,
        now: this.now(),
      },
      log,
    );
  }

  private async emitTransition(
    ar: ApprovalRequest,
    phase: Phase,
    message: string,
    log: Logger,
  ): Promise<void> {
    const breakGlass = phase === Phase.Approved ? breakGlassApproval(ar.spec) : undefined;
    const reason =
      phase === Phase.Pending
        ? EventReason.ApprovalPending
        : phase === Phase.Approved
          ? breakGlass
            ? EventReason.BreakGlass
            : EventReason.Approved
          : phase === Phase.Denied
            ? EventReason.Denied
            : phase === Phase.Expired
              ? EventReason.Expired
              : phase === Phase.Revoked
                ? EventReason.Revoked
                : EventReason.Consumed;
    const { namespace, name } = ar.metadata;
    const text =
      phase === Phase.Pending
        ? `${ar.spec.action.summary} Approve: kubectl approve ${name} -n ${namespace}`
        : `ApprovalRequest ${namespace}/${name}: ${message}`;
    const targets: EventTarget[] = [eventTargetOf(ar)];
    const a = ar.spec.action;
    if (a.namespace && a.name && a.kind) {
      targets.push({
        apiVersion: a.group ? `${a.group}/${a.version}` : a.version,
        kind: a.kind,
        name: a.name,
        namespace: a.namespace,
      });
    }
    for (const t of targets) {
      await emitEvent(
        this.core,
        {
          target: t,
          reason,
          message: text,
          type:
            phase === Phase.Denied || phase === Phase.Expired || phase === Phase.Revoked || breakGlass
              ? "Warning"
              : "Normal",
          component: "controller",
          instance: this.opts.identity,
          // Deterministic: a restarted controller re-emitting this transition finds it exists.
          dedupeKey: `${namespace}/${name}/${phase}/${t.kind}/${t.name}`,
          now: this.now(),
        },
        log,
      );
    }
  }
}
