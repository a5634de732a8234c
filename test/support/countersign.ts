/** Starts Countersign in-process against the test control plane and registers its webhook. */
import { AdmissionregistrationV1Api } from "@kubernetes/client-node";
import { type SelectedSubjects, webhookConfiguration } from "../../src/admission/registration.js";
import { type RunningCountersign, startCountersign } from "../../src/app.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { isNotFound } from "../../src/kube/errors.js";
import { createCertificateAuthority, issueCertificate } from "../../src/pki/certificates.js";

export interface TestCountersign {
  replicas: RunningCountersign[];
  webhookName: string;
  stop(): Promise<void>;
}

/**
 * Runs `replicas` webhook processes' worth of Countersign (in this process, each with its
 * own server and informers), registers one webhook configuration pointing at the first,
 * and waits until the API server routes requests through it.
 */
export async function startTestCountersign(
  cp: ControlPlane,
  opts: { subjects: SelectedSubjects; installNamespace?: string; replicas?: number; webhookName?: string },
): Promise<TestCountersign> {
  const ca = await createCertificateAuthority("countersign-test-webhook-ca");
  const tls = await issueCertificate(ca, {
    commonName: "countersign",
    ipAddresses: ["127.0.0.1"],
    dnsNames: ["localhost"],
    usage: "server",
  });
  const installNamespace = opts.installNamespace ?? "countersign-system";
  await cp.ensureNamespace(installNamespace);
  const replicas: RunningCountersign[] = [];
  for (let i = 0; i < (opts.replicas ?? 1); i++) {
    replicas.push(
      await startCountersign({
        kubeConfig: cp.adminKubeConfig(),
        tls,
        port: 0,
        host: "127.0.0.1",
        installNamespace,
        replica: `test-replica-${i}`,
        writePolicyStatus: i === 0,
      }),
    );
  }
  const webhookName = opts.webhookName ?? "countersign-test";
  const admission = cp.adminKubeConfig().makeApiClient(AdmissionregistrationV1Api);
  const config = webhookConfiguration({
    name: webhookName,
    caBundlePem: ca.certPem,
    url: `https://127.0.0.1:${replicas[0]!.port}`,
    installNamespace,
    subjects: opts.subjects,
  });
  await cp.apply([config as never]);
  return {
    replicas,
    webhookName,
    async stop() {
      try {
        await admission.deleteValidatingWebhookConfiguration({ name: webhookName });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      for (const r of replicas) await r.stop();
    },
  };
}

/** Polls until `fn` returns a truthy value (or throws after timeoutMs). */
export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
