/**
 * One Countersign process for the chaos harness (test/chaos/cluster.ts): a webhook replica or
 * a controller replica, configured by the CHAOS_WORKER environment variable (JSON), started
 * as a real child process so the harness can SIGKILL it at any point. Tells the parent it is
 * ready over IPC: { ready: true, admissionPort?, healthPort? }.
 */
import { readFileSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";
import { startCountersign } from "../../src/app.js";

export interface WorkerConfig {
  role: "webhook" | "controller";
  replica: string;
  kubeconfigPath: string;
  installNamespace: string;
  /** webhook: serving certificate and the CA the API server's client certificate is checked against. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  clientCaFile?: string;
  /** webhook: --max-in-flight-reviews (default: Countersign's). */
  maxInFlightReviews?: number;
  /** controller */
  leaseDurationSeconds?: number;
  retentionSeconds?: number;
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env.CHAOS_WORKER ?? "{}") as WorkerConfig;
  const kc = new KubeConfig();
  kc.loadFromFile(cfg.kubeconfigPath);
  const cs = await startCountersign({
    kubeConfig: kc,
    installNamespace: cfg.installNamespace,
    replica: cfg.replica,
    ...(cfg.role === "webhook"
      ? {
          webhook: {
            tls: {
              certPem: readFileSync(cfg.tlsCertFile!, "utf8"),
              keyPem: readFileSync(cfg.tlsKeyFile!, "utf8"),
            },
            admissionPort: 0,
            admissionAuth: {
              mode: "client-cert",
              clientCaPem: readFileSync(cfg.clientCaFile!, "utf8"),
              allowedNames: [],
            },
            host: "127.0.0.1",
            healthPort: 0,
            ...(cfg.maxInFlightReviews ? { maxInFlightReviews: cfg.maxInFlightReviews } : {}),
          },
        }
      : {
          controller: {
            ...(cfg.leaseDurationSeconds ? { leaseDurationSeconds: cfg.leaseDurationSeconds } : {}),
            ...(cfg.retentionSeconds ? { retentionSeconds: cfg.retentionSeconds } : {}),
          },
        }),
  });
  const stop = () => cs.stop();
  const admissionPort = cs.webhook?.admissionPort;
  const healthPort = cs.webhook?.healthPort;
  process.send?.({ ready: true, ...(admissionPort ? { admissionPort, healthPort } : {}) });
  process.once("SIGTERM", () => {
    void stop().finally(() => process.exit(0));
  });
  // The parent going away (a crashed harness) takes this process with it.
  process.once("disconnect", () => process.exit(0));
}

main().catch((err: unknown) => {
  console.error(
    `chaos worker failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
  process.exit(1);
});
