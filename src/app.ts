/**
 * Wires Countersign's components together: the policy cache (informers), the approval
 * gate and the webhook server. Used by the CLI entry point, `npm run dev` and the tests.
 */
import type { Server } from "node:https";
import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import { startWebhookServer } from "./admission/server.js";
import { ApprovalGate } from "./approvals/gate.js";
import { componentLogger } from "./logging/logger.js";
import { PolicyCache } from "./policy/policy-cache.js";

export interface CountersignOptions {
  kubeConfig: KubeConfig;
  tls: { certPem: string; keyPem: string };
  port: number;
  host?: string;
  installNamespace: string;
  replica?: string;
  /** Write policy status conditions (the controller role). */
  writePolicyStatus?: boolean;
  bodyLimitBytes?: number;
}

export interface RunningCountersign {
  port: number;
  policies: PolicyCache;
  server: Server;
  stop(): Promise<void>;
}

export async function startCountersign(opts: CountersignOptions): Promise<RunningCountersign> {
  const replica = opts.replica ?? process.env.POD_NAME ?? hostname();
  const policies = new PolicyCache({
    kubeConfig: opts.kubeConfig,
    logger: componentLogger("policy-cache", { replica }),
    writeStatus: opts.writePolicyStatus ?? false,
  });
  const gate = new ApprovalGate({
    kubeConfig: opts.kubeConfig,
    installNamespace: opts.installNamespace,
    replica,
    logger: componentLogger("gate", { replica }),
  });
  const { server, port } = await startWebhookServer({
    tls: opts.tls,
    port: opts.port,
    ...(opts.host ? { host: opts.host } : {}),
    ...(opts.bodyLimitBytes ? { bodyLimitBytes: opts.bodyLimitBytes } : {}),
    policies,
    gate,
    logger: componentLogger("admission", { replica }),
    isReady: () => policies.isSynced(),
  });
  await policies.start();
  return {
    port,
    policies,
    server,
    async stop() {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await policies.stop();
    },
  };
}
