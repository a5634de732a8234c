/**
 * The controller role's certificate loop: while this replica leads, keep the webhook's
 * serving certificate, CA and caBundle current (reconcileWebhookCertificate), waking again just
 * before the next rotation is due (at most every minute); retry soon after a failure; check
 * often whether a replica that does not lead has become leader.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "../logging/logger.js";
import { nextRotation, reconcileWebhookCertificate } from "./webhook-certs.js";

export const CERT_CHECK_INTERVAL_MS = 60_000;
const RETRY_MS = 5000;
const FOLLOWER_CHECK_MS = 2000;

export interface CertificateLoopOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  secretName: string;
  serviceName: string;
  webhookConfigurationName: string;
  isLeader: () => boolean;
  logger: Logger;
}

/** Starts the loop; `stop` ends it (an iteration in flight finishes, and none follows). */
export function startCertificateLoop(opts: CertificateLoopOptions): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const tick = async () => {
    let wait = CERT_CHECK_INTERVAL_MS;
    if (opts.isLeader()) {
      try {
        const tls = await reconcileWebhookCertificate({
          kubeConfig: opts.kubeConfig,
          namespace: opts.namespace,
          secretName: opts.secretName,
          serviceName: opts.serviceName,
          webhookConfigurationName: opts.webhookConfigurationName,
          logger: opts.logger,
        });
        wait = Math.max(1000, Math.min(wait, nextRotation(tls).getTime() - Date.now()));
      } catch (err) {
        opts.logger.warn("certificate reconcile failed; retrying", {
          error: err instanceof Error ? err.message : String(err),
        });
        wait = RETRY_MS;
      }
    } else {
      wait = FOLLOWER_CHECK_MS; // check soon whether this replica became leader
    }
    if (!stopped) timer = setTimeout(() => void tick(), wait);
  };
  void tick();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
