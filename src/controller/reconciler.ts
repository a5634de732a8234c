/**
 * The ApprovalRequest reconciler (leader-elected), in cert-manager's shape: gather the request
 * from the informer cache, ask the pure plan (approval-request-plan.ts, on lifecycle.ts) what it
 * should be, apply. Per request, in this order:
 *   1. write every AuditRecord its state calls for (idempotent, so a crash between steps
 *      neither loses nor duplicates a record);
 *   2. emit a Kubernetes Event per transition, on the request and on the target object, with
 *      deterministic names (a restart does not repeat them);
 *   3. write the status the lifecycle computes (conditional update);
 *   4. notifications (notifications.ts);
 *   5. the next look: the execution check (execution-check.ts) shortly after consumption, a
 *      wake-up at its expiry or the end of its retention (no polling), or collection: a
 *      finished request is deleted once every record it must have exists (checked by name
 *      from its status, never by listing the namespace's chain).
 *
 * Who writes an ApprovalRequest's status — one writer per concern, each on a fresh read and
 * conditional on its resourceVersion, so writers never undo each other (a conflict re-reads):
 *   - the webhook gate: phase Consumed and status.consumed (lifecycle.consumedStatus), once;
 *   - this reconciler, step 3: phase, conditions, approvals, decidedAt, observedGeneration,
 *     auditRecords (lifecycle.nextStatus plus the records step 1 wrote);
 *   - the notification step, step 4: status.notifications only;
 *   - the execution check, step 5: status.execution only, once.
 * The order of a request's life is the order of these writes: Pending/Approved/Denied/Expired/
 * Revoked (reconciler) → Consumed (gate) → notifications (any time after the phase they
 * announce) → execution (after Consumed).
 *
 * The work queue (work-queue.ts) runs up to RECONCILE_WORKERS requests at once (never one key
 * twice), changes before the backlog found on taking the lead; one reconcile is bounded by a
 * deadline and a failing request backs off exponentially, so no request stalls the others.
 */

import {
  CoreV1Api,
  type Informer,
  type KubeConfig,
  KubernetesObjectApi,
  makeInformer,
  type ObjectCache,
  type V1Namespace,
} from "@kubernetes/client-node";
import type { FingerprintKey } from "../approvals/fingerprint.js";
import { breakGlassApproval, effectivePhase } from "../approvals/lifecycle.js";
import { archiveNamespaceChain, holdsCountersignObjects } from "../audit/archive.js";
import { type AuditRef, AuditWriter } from "../audit/writer.js";
import { describeKubeError } from "../kube/errors.js";
import { type EventTarget, emitEvent, eventTargetOf } from "../kube/events.js";
import { restartOnError } from "../kube/informers.js";
import type { Logger } from "../logging/logger.js";
import { setPendingSource, timeToDecision } from "../metrics/metrics.js";
import type { NotificationConfig } from "../notify/messages.js";
import type { SenderOptions } from "../notify/notifier.js";
import { type ApprovalRequest, Phase } from "../resources/approval-request.js";
import { type ApprovalRequestClient, CountersignClient } from "../resources/client.js";
import { EventReason } from "../resources/event-reasons.js";
import { auditDetails, expectedAuditEvents, nextLook, planReconcile } from "./approval-request-plan.js";
import { ExecutionCheck } from "./execution-check.js";
import { LeaderElector } from "./leader-election.js";
import { RequestNotifications } from "./notifications.js";
import { WorkQueue } from "./work-queue.js";

export const DEFAULT_RETENTION_SECONDS = 24 * 3600;
export const LEASE_NAME = "countersign-controller";

export interface ReconcilerOptions {
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
 * One reconcile may not hold a worker longer than this: an API call that never answers would
 * otherwise stall the requests behind it (seen as a test whose request never got a status
 * while its controller led). The late reconcile may still finish; its writes are conditional
 * (resourceVersion) or idempotent, and the key is retried after its backoff.
 */
const RECONCILE_DEADLINE_MS = 15_000;

/** Requests reconciled at once (distinct keys); client-go controllers run several workers too. */
const RECONCILE_WORKERS = 4;

/**
 * Retry delays of a failing request: 1 s, 2 s, 4 s, 8 s, then every 10 s. Capped low so that a
 * request that fell due during an outage of the API server reaches its phase within ~10 s of
 * the API's return (issue 12's liveness bound is 15 s), at the cost of one reconcile per 10 s
 * for a request that keeps failing.
 */
const RECONCILE_BACKOFF = { baseMs: 1000, maxMs: 10_000 };

const keyOf = (ar: ApprovalRequest) => `${ar.metadata.namespace}/${ar.metadata.name}`;

export class ApprovalRequestReconciler {
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
  private readonly queue: WorkQueue;
  private readonly notifications: RequestNotifications | undefined;
  private readonly execution: ExecutionCheck;
  private stopped = false;
  private readonly now: () => Date;

  constructor(private readonly opts: ReconcilerOptions) {
    const kc = opts.kubeConfig;
    this.requests = CountersignClient.fromKubeConfig(kc).approvalRequests;
    this.core = kc.makeApiClient(CoreV1Api);
    this.objects = KubernetesObjectApi.makeApiClient(kc);
    this.now = opts.now ?? (() => new Date());
    this.audit = new AuditWriter(kc, opts.siemLogger);
    this.queue = new WorkQueue({
      workers: RECONCILE_WORKERS,
      deadlineMs: RECONCILE_DEADLINE_MS,
      backoff: RECONCILE_BACKOFF,
      process: (key) => this.reconcile(key),
      onError: (key, err, retryInMs) =>
        opts.logger.warn("reconcile failed; retrying", {
          approvalRequest: key,
          retryInMs,
          error: describeKubeError(err),
        }),
      active: () => !this.stopped && this.elector.isLeader(),
    });
    const emit = this.emitRaw.bind(this);
    this.execution = new ExecutionCheck({
      requests: this.requests,
      objects: this.objects,
      ...(opts.fingerprintKey ? { fingerprintKey: opts.fingerprintKey } : {}),
      now: this.now,
      emit,
    });
    this.notifications = opts.notifications
      ? new RequestNotifications({
          requests: this.requests,
          config: opts.notifications,
          ...(opts.notificationRetry ? { retry: opts.notificationRetry } : {}),
          logger: opts.logger,
          now: this.now,
          isLeader: () => !this.stopped && this.elector.isLeader(),
          emit,
        })
      : undefined;
    this.informer = makeInformer<ApprovalRequest>(
      kc,
      this.requests.informerPath,
      this.requests.listForInformer,
    );
    // A decision reaches the reconciler as an informer update: it is queued at once.
    const enqueue = (ar: ApprovalRequest) => this.queue.add(keyOf(ar));
    this.informer.on("add", enqueue);
    this.informer.on("update", enqueue);
    this.informer.on("delete", (ar) => this.queue.forget(keyOf(ar)));
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
        for (const ar of this.informer.list()) this.queue.add(keyOf(ar), { backlog: true });
        for (const n of this.namespaces.list()) onNamespace(n);
      },
      onStoppedLeading: () => {
        this.queue.clear();
        this.notifications?.clear(); // Batched entries stay recorded; the next leader adopts them
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
    this.queue.stop();
    for (const t of this.archiveTimers.values()) clearTimeout(t);
    this.archiveTimers.clear();
    this.notifications?.clear();
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

  /** The next look at `key` at `at` (expiry, execution check, garbage collection): no polling. */
  private schedule(key: string, at: Date): void {
    this.queue.addAfter(key, at.getTime() - this.now().getTime() + 50);
  }

  async reconcile(key: string): Promise<void> {
    // gather: the request as the informer has it (a decision arrives here as an update)
    const [namespace, name] = key.split("/") as [string, string];
    const cached = this.informer.get(name, namespace);
    if (!cached) return;
    if ((await this.reconcileObject(key, cached)) !== "conflict") return;
    // The informer's copy was stale. Usually the newer version is on its way through the
    // informer, but after an etcd restart its watch can deliver it many seconds late, and a
    // due timer that already fired does not fire again (chaos seed 1091860729 path 11: three
    // requests Expired/Revoked ~17 s after due). So read the request from the API server and
    // reconcile that.
    const fresh = await this.requests.get(namespace, name);
    if (!fresh || fresh.metadata.resourceVersion === cached.metadata.resourceVersion) return;
    // A second conflict: another writer (the webhook, a rival replica) right now. Look again
    // after this pass (a no-op unless this replica leads), not relying on the informer alone.
    if ((await this.reconcileObject(key, fresh)) === "conflict") this.queue.add(key);
  }

  /** plan + apply for one copy of the request; "conflict" when its status write found it stale. */
  private async reconcileObject(key: string, cached: ApprovalRequest): Promise<"conflict" | undefined> {
    const log = this.opts.logger.child({ approvalRequest: key });
    const now = this.now();
    // plan (pure)
    const plan = planReconcile(cached, now);
    const target = plan.target.phase;

    // apply 1. audit records (before anything else can be observed); the status lists where
    //    each sits in the chain, so records it already names cost no API call
    const refs: AuditRef[] = [];
    for (const event of plan.audit) {
      const ref = await this.audit.ensure(
        cached,
        event,
        auditDetails(cached, event, now, this.opts.username),
      );
      if (ref.created) log.info("audit record written", { event, sequence: ref.sequence });
      refs.push({ event: ref.event, sequence: ref.sequence, record: ref.record });
    }
    this.opts.afterStep?.("audit", key);

    // apply 2. the transition's Events (deterministic names: a restart does not repeat them)
    if (plan.announce) await this.emitTransition(cached, target, plan.target.message, log);
    this.opts.afterStep?.("events", key);

    // apply 3. the status (phase, conditions, approvals, auditRecords; conditional update)
    let status = plan.status;
    if (refs.length > 0)
      status = {
        ...(status ?? cached.status),
        auditRecords: [...(cached.status?.auditRecords ?? []), ...refs],
      };
    let current = cached;
    if (status) {
      const written = await this.requests.replaceStatus(cached, status);
      if (written === "conflict") return "conflict";
      current = written;
      if (target !== plan.before) log.info("phase changed", { from: plan.before ?? "(new)", to: target });
      if (plan.observeDecision) {
        const created = cached.metadata.creationTimestamp
          ? new Date(cached.metadata.creationTimestamp).getTime()
          : now.getTime();
        timeToDecision.observe({ outcome: target }, Math.max(0, (now.getTime() - created) / 1000));
      }
    }
    this.opts.afterStep?.("status", key);

    // apply 4. notifications (their own step and status writer)
    if (this.notifications) {
      const marked = await this.notifications.mark(current);
      if (marked === "conflict") return "conflict";
      if (marked) current = marked;
    }

    // apply 5. the next look: the execution check, a wake-up, or collection
    const retentionMs = (this.opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS) * 1000;
    const next = nextLook(current, now, retentionMs);
    if (next.kind === "wake") {
      this.schedule(key, next.at);
      return undefined;
    }
    if (next.kind === "check-execution") {
      await this.execution.check(current, log);
      return undefined; // its status write brings the request back through the informer
    }
    await this.collect(current, log);
    return undefined;
  }

  /**
   * Deletes a finished request after its retention, once every record it must have exists. The
   * status names every record the request has (apply 1 writes them first); each is read by
   * name, so collection costs a few GETs, not a LIST of the namespace's whole chain.
   */
  private async collect(ar: ApprovalRequest, log: Logger): Promise<void> {
    const { namespace, name } = ar.metadata;
    const expected = expectedAuditEvents(ar, ar.status?.phase ?? Phase.Pending);
    const have = new Set<string>();
    for (const ref of ar.status?.auditRecords ?? []) {
      if ((expected as string[]).includes(ref.event) && (await this.audit.exists(namespace, ref.record)))
        have.add(ref.event);
    }
    if (!expected.every((e) => have.has(e))) {
      log.warn("not collecting: audit records incomplete", { expected, have: [...have] });
      this.schedule(`${namespace}/${name}`, new Date(this.now().getTime() + 5000));
      return;
    }
    if (await this.requests.delete(namespace, name))
      log.info("garbage-collected finished request", { phase: ar.status?.phase });
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
    // Both at once (each is one create; a failure is logged, never thrown).
    await Promise.all(
      targets.map((t) =>
        emitEvent(
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
        ),
      ),
    );
  }
}
