/**
 * Wires Countersign's components together: the policy cache (informers), the approval
 * gate and the webhook server. Used by the CLI entry point, `npm run dev` and the tests.
 */
import { hostname } from "node:os";
import { AuthenticationV1Api, type KubeConfig } from "@kubernetes/client-node";
import type { AdmissionAuth } from "./admission/client-auth.js";
import { coveringPolicies } from "./admission/handler.js";
import { SYSTEM_NAMESPACES } from "./admission/registration.js";
import {
  type RunningAdmissionListener,
  type RunningListener,
  type ServingTls,
  startAdmissionServer,
  startApiServer,
} from "./admission/server.js";
import { approvalApi } from "./api/approval-api.js";
import { RbacChecker } from "./approvals/decision-guard.js";
import { DecisionService } from "./approvals/decision-service.js";
import { loadFingerprintKey } from "./approvals/fingerprint-key.js";
import { ApprovalGate } from "./approvals/gate.js";
import { OpenRequestIndex } from "./approvals/open-requests.js";
import { namespaceArchiveState } from "./audit/archive.js";
import { ConfigAuditor } from "./audit/config-audit.js";
import { AuditWriter } from "./audit/writer.js";
import { BypassScanner } from "./bypass/scanner.js";
import { nextRotation, reconcileWebhookCertificate } from "./certs/webhook-certs.js";
import { WebhookConfigWatch } from "./controller/config-watch.js";
import { Controller } from "./controller/reconciler.js";
import { componentLogger } from "./logging/logger.js";
import type { NotificationConfig } from "./notify/messages.js";
import type { SenderOptions } from "./notify/notifier.js";
import { KubeReplayGuard } from "./notify/replay-guard.js";
import { slackInteractions } from "./notify/slack-interactions.js";
import { PolicyCache } from "./policy/policy-cache.js";

export interface CountersignOptions {
  kubeConfig: KubeConfig;
  tls: ServingTls;
  /** The admission listener (POST /validate, health); 0 picks a free port. */
  admissionPort: number;
  /** Who may call /validate: the API server's client certificate, or a network fence. */
  admissionAuth: AdmissionAuth;
  /** The approval API + Slack listener; 0 picks a free port; undefined: not served. */
  apiPort?: number;
  host?: string;
  installNamespace: string;
  replica?: string;
  /** Write policy status conditions (the controller role). */
  writePolicyStatus?: boolean;
  bodyLimitBytes?: number;
  /** Other usernames Countersign runs as (e.g. the controller's service account). */
  extraIdentities?: string[];
  /** Run the leader-elected controller in this process too. */
  controller?: {
    retentionSeconds?: number;
    leaseDurationSeconds?: number;
    identity?: string;
    notificationRetry?: SenderOptions;
    /** How often the BypassRisk scan re-checks every policy (default 60 s). */
    bypassScanIntervalMs?: number;
  };
  /** Notification routes (controller) and Slack interactivity (webhook). */
  notifications?: NotificationConfig;
  /** PEM of a private CA for Slack's response_url (tests, proxies). */
  slackResponseCaPem?: string;
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

export interface RunningCountersign {
  /** The admission listener's port (POST /validate, only for the API server). */
  admissionPort: number;
  /** The approval API + Slack interactivity listener's port; undefined when not served. */
  apiPort: number | undefined;
  /** Swaps the serving certificate of both listeners without restarting (new connections use it). */
  setTls(tls: ServingTls): void;
  /** Swaps the CA bundle that admission client certificates are verified against. */
  setAdmissionClientCa(pem: string): void;
  /** The username Countersign runs as. */
  identity: string;
  controller: Controller | undefined;
  policies: PolicyCache;
  admission: RunningAdmissionListener;
  api: RunningListener | undefined;
  stop(): Promise<void>;
}

export async function startCountersign(opts: CountersignOptions): Promise<RunningCountersign> {
  const replica = opts.replica ?? process.env.POD_NAME ?? hostname();
  const policies = new PolicyCache({
    kubeConfig: opts.kubeConfig,
    logger: componentLogger("policy-cache", { replica }),
    writeStatus: opts.writePolicyStatus ?? false,
  });
  const rbac = new RbacChecker(opts.kubeConfig);
  const openRequests = new OpenRequestIndex(opts.kubeConfig, componentLogger("open-requests", { replica }));
  const fingerprintKey = await loadFingerprintKey(
    opts.kubeConfig,
    opts.installNamespace,
    componentLogger("fingerprint-key", { replica }),
  );
  const gate = new ApprovalGate({
    kubeConfig: opts.kubeConfig,
    installNamespace: opts.installNamespace,
    replica,
    logger: componentLogger("gate", { replica }),
    rbac,
    openRequests,
    fingerprintKey,
  });
  const self = await selfUsername(opts.kubeConfig);
  const countersignUsers = new Set([self, ...(opts.extraIdentities ?? [])]);
  const auditor = new ConfigAuditor(
    new AuditWriter(opts.kubeConfig, componentLogger("audit", { replica })),
    opts.installNamespace,
  );
  const decisions = new DecisionService(opts.kubeConfig, rbac, componentLogger("decisions", { replica }), {
    coveredBy: (user) => coveringPolicies(policies, user),
  });
  const isReady = () => policies.isSynced() && openRequests.isSynced();
  const admission = await startAdmissionServer({
    rbac,
    countersignUsers,
    protectedNamespaces: new Set([...SYSTEM_NAMESPACES, opts.installNamespace]),
    configAudit: auditor,
    archiveState: (namespace) => namespaceArchiveState(opts.kubeConfig, opts.installNamespace, namespace),
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
    const slack = opts.notifications?.slack;
    if (slack) {
      replayGuard = new KubeReplayGuard(
        opts.kubeConfig,
        opts.installNamespace,
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
        kubeConfig: opts.kubeConfig,
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
  await Promise.all([policies.start(), openRequests.start()]);
  let controller: Controller | undefined;
  if (opts.controller) {
    controller = new Controller({
      kubeConfig: opts.kubeConfig,
      installNamespace: opts.installNamespace,
      identity: opts.controller.identity ?? replica,
      username: self,
      fingerprintKey,
      ...(opts.controller.retentionSeconds !== undefined
        ? { retentionSeconds: opts.controller.retentionSeconds }
        : {}),
      ...(opts.controller.leaseDurationSeconds !== undefined
        ? { leaseDurationSeconds: opts.controller.leaseDurationSeconds }
        : {}),
      logger: componentLogger("controller", { replica }),
      siemLogger: componentLogger("audit", { replica }),
      ...(opts.notifications ? { notifications: opts.notifications } : {}),
      ...(opts.controller.notificationRetry ? { notificationRetry: opts.controller.notificationRetry } : {}),
    });
    await controller.start();
  }
  const guardrails = controller
    ? await startGuardrails({
        kubeConfig: opts.kubeConfig,
        installNamespace: opts.installNamespace,
        policies,
        controller,
        username: self,
        instance: replica,
        auditor,
        ...(opts.controller?.bypassScanIntervalMs
          ? { intervalMs: opts.controller.bypassScanIntervalMs }
          : {}),
      })
    : undefined;
  return {
    controller,
    admissionPort: admission.port,
    apiPort: api?.port,
    setTls(tls) {
      admission.setTls(tls);
      api?.setTls(tls);
    },
    setAdmissionClientCa(pem) {
      admission.setClientCa(pem);
    },
    identity: self,
    policies,
    admission,
    api,
    async stop() {
      await guardrails?.stop();
      replayGuard?.stop();
      await Promise.all([admission.stop(), api?.stop()]);
      await controller?.stop();
      await Promise.all([policies.stop(), openRequests.stop()]);
    },
  };
}

export interface ControllerRoleOptions {
  kubeConfig: KubeConfig;
  installNamespace: string;
  replica?: string;
  retentionSeconds?: number;
  leaseDurationSeconds?: number;
  /** Self-managed webhook certificates (omit when cert-manager manages them). */
  certificates?: { secretName: string; serviceName: string; webhookConfigurationName: string };
  notifications?: NotificationConfig;
  bypassScanIntervalMs?: number;
}

/**
 * The controller's watch on paths around admission (issue 10): the BypassRisk scan of each
 * policy's subjects, and a record of every change to Countersign's webhook configurations.
 */
export async function startGuardrails(opts: {
  kubeConfig: KubeConfig;
  installNamespace: string;
  policies: PolicyCache;
  controller: Controller;
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

export interface RunningController {
  controller: Controller;
  policies: PolicyCache;
  identity: string;
  stop(): Promise<void>;
}

const CERT_CHECK_INTERVAL_MS = 60_000;

/** The controller role: the reconciler, policy status, and (as leader) the webhook certificates. */
export async function startController(opts: ControllerRoleOptions): Promise<RunningController> {
  const replica = opts.replica ?? process.env.POD_NAME ?? hostname();
  const self = await selfUsername(opts.kubeConfig);
  const policies = new PolicyCache({
    kubeConfig: opts.kubeConfig,
    logger: componentLogger("policy-status", { replica }),
    writeStatus: true,
    lookups: false,
  });
  await policies.start();
  const fingerprintKey = await loadFingerprintKey(
    opts.kubeConfig,
    opts.installNamespace,
    componentLogger("fingerprint-key", { replica }),
  );
  const controller = new Controller({
    kubeConfig: opts.kubeConfig,
    installNamespace: opts.installNamespace,
    identity: replica,
    username: self,
    fingerprintKey,
    ...(opts.retentionSeconds !== undefined ? { retentionSeconds: opts.retentionSeconds } : {}),
    ...(opts.leaseDurationSeconds !== undefined ? { leaseDurationSeconds: opts.leaseDurationSeconds } : {}),
    logger: componentLogger("controller", { replica }),
    siemLogger: componentLogger("audit", { replica }),
    ...(opts.notifications ? { notifications: opts.notifications } : {}),
  });
  await controller.start();
  const guardrails = await startGuardrails({
    kubeConfig: opts.kubeConfig,
    installNamespace: opts.installNamespace,
    policies,
    controller,
    username: self,
    instance: replica,
    auditor: new ConfigAuditor(
      new AuditWriter(opts.kubeConfig, componentLogger("audit", { replica })),
      opts.installNamespace,
    ),
    ...(opts.bypassScanIntervalMs ? { intervalMs: opts.bypassScanIntervalMs } : {}),
  });
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  if (opts.certificates) {
    const certLog = componentLogger("certificates", { replica });
    const certs = opts.certificates;
    const tick = async () => {
      let wait = CERT_CHECK_INTERVAL_MS;
      if (controller.isLeader()) {
        try {
          const tls = await reconcileWebhookCertificate({
            kubeConfig: opts.kubeConfig,
            namespace: opts.installNamespace,
            secretName: certs.secretName,
            serviceName: certs.serviceName,
            webhookConfigurationName: certs.webhookConfigurationName,
            logger: certLog,
          });
          wait = Math.max(1000, Math.min(wait, nextRotation(tls).getTime() - Date.now()));
        } catch (err) {
          certLog.warn("certificate reconcile failed; retrying", {
            error: err instanceof Error ? err.message : String(err),
          });
          wait = 5000;
        }
      } else {
        wait = 2000; // check soon whether this replica became leader
      }
      if (!stopped) timer = setTimeout(() => void tick(), wait);
    };
    void tick();
  }
  return {
    controller,
    policies,
    identity: self,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await guardrails.stop();
      await controller.stop();
      await policies.stop();
    },
  };
}
