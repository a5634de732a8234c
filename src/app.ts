/**
 * The one composition of Countersign: two roles, and `all` runs both in one process.
 *
 *  - the webhook role: the policy cache (informers), the approval gate, the admission listener
 *    and the approval API / Slack listener;
 *  - the controller role: the leader-elected ApprovalRequest reconciler, policy status, the
 *    guardrails (BypassRisk scan, webhook configuration watch) and, when Countersign manages its
 *    own certificates, the certificate loop (certs/certificate-loop.ts).
 *
 * In one process the roles share the policy cache, the fingerprint key and the identity.
 * Production (main.ts: webhook | controller | all), `npm run dev`, the tests
 * (test/support/countersign.ts) and the bench all start Countersign through startCountersign.
 */
import { hostname } from "node:os";
import { AuthenticationV1Api, type KubeConfig } from "@kubernetes/client-node";
import type { AdmissionAuth } from "./admission/client-auth.js";
import { coveringPolicies } from "./admission/handler.js";
import { type RunningHealthServer, startHealthServer } from "./admission/health-server.js";
import { DEFAULT_MAX_IN_FLIGHT_REVIEWS, InFlightLimit } from "./admission/load-shed.js";
import { SYSTEM_NAMESPACES } from "./admission/registration.js";
import {
  type RunningAdmissionListener,
  type RunningListener,
  type ServingTls,
  startAdmissionServer,
  startApiServer,
} from "./admission/server.js";
import { approvalApi } from "./api/approval-api.js";
import { DecisionService } from "./approvals/decision-service.js";
import { loadFingerprintKey } from "./approvals/fingerprint-key.js";
import { ApprovalGate } from "./approvals/gate.js";
import { OpenRequestIndex } from "./approvals/open-requests.js";
import { RbacChecker } from "./approvals/rbac-checker.js";
import { namespaceArchiveState } from "./audit/archive.js";
import { ConfigAuditor } from "./audit/config-audit.js";
import { AuditWriter } from "./audit/writer.js";
import { BypassScanner } from "./bypass/scanner.js";
import { startCertificateLoop } from "./certs/certificate-loop.js";
import { WebhookConfigWatch } from "./controller/config-watch.js";
import { ApprovalRequestReconciler } from "./controller/reconciler.js";
import { componentLogger } from "./logging/logger.js";
import { setGatedInFlightSource } from "./metrics/metrics.js";
import type { NotificationConfig } from "./notify/messages.js";
import type { SenderOptions } from "./notify/notifier.js";
import { KubeReplayGuard } from "./notify/replay-guard.js";
import { slackInteractions } from "./notify/slack-interactions.js";
import { PolicyCache } from "./policy/policy-cache.js";

export interface WebhookRoleOptions {
  /**
   * The serving certificate, or where to get it once the controller role (started first in
   * `all`) may have written it.
   */
  tls: ServingTls | (() => Promise<ServingTls>);
  /** The admission listener (POST /validate, health); 0 picks a free port. */
  admissionPort: number;
  /** Who may call /validate: the API server's client certificate, or a network fence. */
  admissionAuth: AdmissionAuth;
  /** The approval API + Slack listener; 0 picks a free port; undefined: not served. */
  apiPort?: number;
  /** Plain-HTTP probes (GET /healthz, /readyz); 0 picks a free port; undefined: not served. */
  healthPort?: number;
  host?: string;
  bodyLimitBytes?: number;
  /** Gated reviews in flight before the excess is shed (default DEFAULT_MAX_IN_FLIGHT_REVIEWS). */
  maxInFlightReviews?: number;
  /** Other usernames Countersign runs as (e.g. the controller's service account). */
  extraIdentities?: string[];
  /** PEM of a private CA for Slack's response_url (tests, proxies). */
  slackResponseCaPem?: string;
}

export interface ControllerRoleOptions {
  /** This replica's identity in the leader lease (default: the replica name). */
  identity?: string;
  retentionSeconds?: number;
  leaseDurationSeconds?: number;
  notificationRetry?: SenderOptions;
  /** How often the BypassRisk scan re-checks every policy (default 60 s). */
  bypassScanIntervalMs?: number;
  /** Self-managed webhook certificates (omit when cert-manager or files provide them). */
  certificates?: { secretName: string; serviceName: string; webhookConfigurationName: string };
}

export interface CountersignOptions {
  kubeConfig: KubeConfig;
  installNamespace: string;
  /** This process's name in logs and leases (default $POD_NAME, else the host name). */
  replica?: string;
  /** Notification routes (controller) and Slack interactivity (webhook). */
  notifications?: NotificationConfig;
  /** The webhook role; absent: not served by this process. */
  webhook?: WebhookRoleOptions;
  /** The controller role; absent: not run by this process. */
  controller?: ControllerRoleOptions;
}

/** Who this process is to the API server (SelfSubjectReview). */
export async function selfUsername(kc: KubeConfig): Promise<string> {
  const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
    body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  });
  const name = review.status?.userInfo?.username;
  if (!name)
    throw new Error("SelfSubjectReview returned no username; cannot tell Countersign's own identity");
  return name;
}

export interface RunningWebhook {
  /** The admission listener's port (POST /validate, only for the API server). */
  admissionPort: number;
  /** The approval API + Slack interactivity listener's port; undefined when not served. */
  apiPort: number | undefined;
  /** The probe listener's port; undefined when not served. */
  healthPort: number | undefined;
  /** Swaps the serving certificate of both listeners without restarting (new connections use it). */
  setTls(tls: ServingTls): void;
  /** Swaps the CA bundle that admission client certificates are verified against. */
  setAdmissionClientCa(pem: string): void;
  admission: RunningAdmissionListener;
  api: RunningListener | undefined;
}

export interface RunningCountersign {
  /** The username Countersign runs as. */
  identity: string;
  replica: string;
  policies: PolicyCache;
  webhook: RunningWebhook | undefined;
  controller: ApprovalRequestReconciler | undefined;
  stop(): Promise<void>;
}

/** What the roles of one process share. */
interface Shared {
  kubeConfig: KubeConfig;
  installNamespace: string;
  replica: string;
  identity: string;
  policies: PolicyCache;
  fingerprintKey: Uint8Array;
  auditor: ConfigAuditor;
  notifications?: NotificationConfig;
}

interface Role {
  /** Settles when the role's caches have synced. */
  started?: Promise<void>;
  stop(): Promise<void>;
}

/** Starts the roles `opts` names (at least one), sharing what one process can share. */
export async function startCountersign(opts: CountersignOptions): Promise<RunningCountersign> {
  if (!opts.webhook && !opts.controller)
    throw new Error("startCountersign: give a webhook role, a controller role, or both");
  const replica = opts.replica ?? process.env.POD_NAME ?? hostname();
  const identity = await selfUsername(opts.kubeConfig);
  const policies = new PolicyCache({
    kubeConfig: opts.kubeConfig,
    logger: componentLogger("policy-cache", { replica }),
    // The controller role writes each policy's Ready condition; a webhook-only replica does not.
    writeStatus: opts.controller !== undefined,
    // The webhook evaluates serviceAccountSelector / namespaceObject; the controller alone needs neither.
    lookups: opts.webhook !== undefined,
  });
  const fingerprintKey = await loadFingerprintKey(
    opts.kubeConfig,
    opts.installNamespace,
    componentLogger("fingerprint-key", { replica }),
  );
  const shared: Shared = {
    kubeConfig: opts.kubeConfig,
    installNamespace: opts.installNamespace,
    replica,
    identity,
    policies,
    fingerprintKey,
    auditor: new ConfigAuditor(
      new AuditWriter(opts.kubeConfig, componentLogger("audit", { replica })),
      opts.installNamespace,
    ),
    ...(opts.notifications ? { notifications: opts.notifications } : {}),
  };
  // The controller role first: with self-managed certificates it writes the webhook's TLS
  // Secret, which the webhook role (`tls` as a function) may be waiting for.
  const roles: Role[] = [];
  let webhook: (RunningWebhook & Role) | undefined;
  let controller: (Role & { controller: ApprovalRequestReconciler }) | undefined;
  try {
    if (opts.controller) {
      controller = await startControllerRole(shared, opts.controller);
      roles.unshift(controller);
    }
    if (opts.webhook) {
      const tls = typeof opts.webhook.tls === "function" ? await opts.webhook.tls() : opts.webhook.tls;
      webhook = await startWebhookRole(shared, { ...opts.webhook, tls });
      roles.unshift(webhook);
    }
    await Promise.all([policies.start(), webhook?.started]);
  } catch (err) {
    for (const r of roles) await r.stop().catch(() => undefined);
    await policies.stop();
    throw err;
  }
  return {
    identity,
    replica,
    policies,
    webhook,
    controller: controller?.controller,
    async stop() {
      // The webhook role first, so nothing is admitted by a half-stopped process.
      for (const r of roles) await r.stop();
      await policies.stop();
    },
  };
}

/** The webhook role: admission, the approval gate, the approval API and Slack interactivity. */
async function startWebhookRole(
  shared: Shared,
  opts: WebhookRoleOptions & { tls: ServingTls },
): Promise<RunningWebhook & Role> {
  const { kubeConfig, installNamespace, replica, policies } = shared;
  const rbac = new RbacChecker(kubeConfig);
  const openRequests = new OpenRequestIndex(kubeConfig, componentLogger("open-requests", { replica }));
  const gate = new ApprovalGate({
    kubeConfig,
    installNamespace,
    replica,
    logger: componentLogger("gate", { replica }),
    rbac,
    openRequests,
    fingerprintKey: shared.fingerprintKey,
  });
  const countersignUsers = new Set([shared.identity, ...(opts.extraIdentities ?? [])]);
  const decisions = new DecisionService(kubeConfig, rbac, componentLogger("decisions", { replica }), {
    coveredBy: (user) => coveringPolicies(policies, user),
  });
  const isReady = () => policies.isSynced() && openRequests.isSynced();
  const inFlight = new InFlightLimit(opts.maxInFlightReviews ?? DEFAULT_MAX_IN_FLIGHT_REVIEWS);
  setGatedInFlightSource(() => inFlight.inFlight);
  const admission = await startAdmissionServer({
    inFlight,
    rbac,
    countersignUsers,
    protectedNamespaces: new Set([...SYSTEM_NAMESPACES, installNamespace]),
    configAudit: shared.auditor,
    archiveState: (namespace) => namespaceArchiveState(kubeConfig, installNamespace, namespace),
    tls: opts.tls,
    port: opts.admissionPort,
    auth: opts.admissionAuth,
    ...(opts.host ? { host: opts.host } : {}),
    ...(opts.bodyLimitBytes ? { bodyLimitBytes: opts.bodyLimitBytes } : {}),
    policies,
    gate,
    logger: componentLogger("admission", { replica }),
    isReady,
  });
  let replayGuard: KubeReplayGuard | undefined;
  let api: RunningListener | undefined;
  if (opts.apiPort !== undefined) {
    const slack = shared.notifications?.slack;
    if (slack) {
      replayGuard = new KubeReplayGuard(
        kubeConfig,
        installNamespace,
        replica,
        componentLogger("slack", { replica }),
      );
      replayGuard.startSweeping();
    }
    api = await startApiServer({
      tls: opts.tls,
      port: opts.apiPort,
      ...(opts.host ? { host: opts.host } : {}),
      isReady,
      logger: componentLogger("api", { replica }),
      api: approvalApi({
        kubeConfig,
        rbac,
        decisions,
        logger: componentLogger("approval-api", { replica }),
      }),
      ...(slack && replayGuard
        ? {
            slack: slackInteractions({
              config: slack,
              decisions,
              replay: replayGuard,
              logger: componentLogger("slack", { replica }),
              ...(opts.slackResponseCaPem ? { responseCaPem: opts.slackResponseCaPem } : {}),
            }),
          }
        : {}),
    }).catch(async (err: unknown) => {
      replayGuard?.stop();
      await admission.stop();
      throw err;
    });
  }
  let health: RunningHealthServer | undefined;
  if (opts.healthPort !== undefined) {
    health = await startHealthServer({
      port: opts.healthPort,
      ...(opts.host ? { host: opts.host } : {}),
      isReady,
    }).catch(async (err: unknown) => {
      replayGuard?.stop();
      await Promise.all([admission.stop(), api?.stop()]);
      throw err;
    });
  }
  return {
    started: openRequests.start(),
    admissionPort: admission.port,
    apiPort: api?.port,
    healthPort: health?.port,
    setTls(tls) {
      admission.setTls(tls);
      api?.setTls(tls);
    },
    setAdmissionClientCa(pem) {
      admission.setClientCa(pem);
    },
    admission,
    api,
    async stop() {
      replayGuard?.stop();
      await Promise.all([admission.stop(), api?.stop(), health?.stop()]);
      await openRequests.stop();
    },
  };
}

/**
 * The controller role: the leader-elected ApprovalRequest reconciler, the guardrails and (as
 * leader, when Countersign manages them) the webhook certificates.
 */
async function startControllerRole(
  shared: Shared,
  opts: ControllerRoleOptions,
): Promise<Role & { controller: ApprovalRequestReconciler }> {
  const { kubeConfig, installNamespace, replica } = shared;
  const controller = new ApprovalRequestReconciler({
    kubeConfig,
    installNamespace,
    identity: opts.identity ?? replica,
    username: shared.identity,
    fingerprintKey: shared.fingerprintKey,
    ...(opts.retentionSeconds !== undefined ? { retentionSeconds: opts.retentionSeconds } : {}),
    ...(opts.leaseDurationSeconds !== undefined ? { leaseDurationSeconds: opts.leaseDurationSeconds } : {}),
    logger: componentLogger("controller", { replica }),
    siemLogger: componentLogger("audit", { replica }),
    ...(shared.notifications ? { notifications: shared.notifications } : {}),
    ...(opts.notificationRetry ? { notificationRetry: opts.notificationRetry } : {}),
  });
  await controller.start();
  const guardrails = await startGuardrails({
    kubeConfig,
    installNamespace,
    policies: shared.policies,
    controller,
    username: shared.identity,
    instance: replica,
    auditor: shared.auditor,
    ...(opts.bypassScanIntervalMs ? { intervalMs: opts.bypassScanIntervalMs } : {}),
  });
  const certificates = opts.certificates
    ? startCertificateLoop({
        kubeConfig,
        namespace: installNamespace,
        ...opts.certificates,
        isLeader: () => controller.isLeader(),
        logger: componentLogger("certificates", { replica }),
      })
    : undefined;
  return {
    controller,
    async stop() {
      certificates?.stop();
      await guardrails.stop();
      await controller.stop();
    },
  };
}

/**
 * The controller's watch on paths around admission (issue 10): the BypassRisk scan of each
 * policy's subjects, and a record of every change to Countersign's webhook configurations.
 */
async function startGuardrails(opts: {
  kubeConfig: KubeConfig;
  installNamespace: string;
  policies: PolicyCache;
  controller: ApprovalRequestReconciler;
  username: string;
  instance: string;
  auditor: ConfigAuditor;
  intervalMs?: number;
}): Promise<{ stop(): Promise<void> }> {
  const scanner = new BypassScanner({
    kubeConfig: opts.kubeConfig,
    installNamespace: opts.installNamespace,
    policies: opts.policies,
    isLeader: () => opts.controller.isLeader(),
    logger: componentLogger("bypass-scan", { replica: opts.instance }),
    instance: opts.instance,
    ...(opts.intervalMs ? { intervalMs: opts.intervalMs } : {}),
  });
  const watch = new WebhookConfigWatch({
    kubeConfig: opts.kubeConfig,
    auditor: opts.auditor,
    isLeader: () => opts.controller.isLeader(),
    username: opts.username,
    instance: opts.instance,
    logger: componentLogger("config-watch", { replica: opts.instance }),
  });
  await watch.start();
  scanner.start();
  return {
    async stop() {
      scanner.stop();
      await watch.stop();
    },
  };
}
