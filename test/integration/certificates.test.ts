/**
 * Self-managed webhook certificates through the real API server: created, rotated before
 * expiry (serving certificate, then the CA with an overlapping bundle), the caBundle kept
 * current, and a running webhook picking up a new certificate without restarting.
 */
import { X509Certificate } from "node:crypto";
import { connect } from "node:tls";
import { AdmissionregistrationV1Api, CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webhookConfiguration } from "../../src/admission/registration.js";
import { startCountersign } from "../../src/app.js";
import {
  reconcileWebhookCertificate,
  rotationNeeded,
  serviceDnsNames,
  TlsSecretWatcher,
  tlsFromSecret,
} from "../../src/certs/webhook-certs.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { componentLogger } from "../../src/logging/logger.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import { countersignIdentity, eventually } from "../support/countersign.js";

const ns = uniqueName("certs");
const vwcName = uniqueName("countersign-certs");
const DAY = 24 * 3600 * 1000;
let cp: ControlPlane;
const log = componentLogger("certificates-test");

const opts = (now: Date) => ({
  kubeConfig: cp.adminKubeConfig(),
  namespace: ns,
  secretName: "webhook-tls",
  serviceName: "countersign-webhook",
  webhookConfigurationName: vwcName,
  logger: log,
  now: () => now,
});

async function caBundle(): Promise<string> {
  const vwc = await cp
    .adminKubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .readValidatingWebhookConfiguration({ name: vwcName });
  const cb = vwc.webhooks?.[0]?.clientConfig.caBundle as unknown as string;
  return Buffer.from(cb, "base64").toString("utf8");
}

const certsIn = (bundle: string) =>
  bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  await cp.apply([
    webhookConfiguration({
      name: vwcName,
      caBundlePem: "placeholder",
      service: { namespace: ns, name: "countersign-webhook" },
      installNamespace: ns,
      subjects: { serviceAccountNamespaces: [uniqueName("nobody")] },
    }) as never,
  ]);
});

afterAll(async () => {
  await cp
    .adminKubeConfig()
    .makeApiClient(AdmissionregistrationV1Api)
    .deleteValidatingWebhookConfiguration({ name: vwcName });
});

describe("self-managed webhook certificates", () => {
  it("creates a CA and serving certificate for the Service, and sets the caBundle", async () => {
    const t0 = new Date();
    const tls = await reconcileWebhookCertificate(opts(t0));
    const serving = new X509Certificate(tls.certPem);
    for (const name of serviceDnsNames("countersign-webhook", ns))
      expect(serving.subjectAltName).toContain(`DNS:${name}`);
    expect(serving.verify(new X509Certificate(tls.caPem).publicKey)).toBe(true);
    expect(await caBundle()).toBe(tls.caBundlePem);
    // Idempotent: nothing to do the second time.
    const again = await reconcileWebhookCertificate(opts(t0));
    expect(again.certPem).toBe(tls.certPem);
  });

  it("rotates the serving certificate at 2/3 of its lifetime, keeping the CA", async () => {
    const before = tlsFromSecret(
      await cp
        .adminKubeConfig()
        .makeApiClient(CoreV1Api)
        .readNamespacedSecret({ name: "webhook-tls", namespace: ns }),
    )!;
    const later = new Date(Date.now() + 250 * DAY);
    expect(rotationNeeded(before, serviceDnsNames("countersign-webhook", ns), later)).toBe("serving");
    const after = await reconcileWebhookCertificate(opts(later));
    expect(after.certPem).not.toBe(before.certPem);
    expect(after.caPem).toBe(before.caPem);
    expect(new X509Certificate(after.certPem).verify(new X509Certificate(before.caPem).publicKey)).toBe(true);
  });

  it("rotates the CA before it expires, trusting old and new CA until the old one expires", async () => {
    const before = tlsFromSecret(
      await cp
        .adminKubeConfig()
        .makeApiClient(CoreV1Api)
        .readNamespacedSecret({ name: "webhook-tls", namespace: ns }),
    )!;
    const muchLater = new Date(Date.now() + 2500 * DAY);
    expect(rotationNeeded(before, serviceDnsNames("countersign-webhook", ns), muchLater)).toBe("ca");
    const after = await reconcileWebhookCertificate(opts(muchLater));
    expect(after.caPem).not.toBe(before.caPem);
    const bundle = await caBundle();
    expect(certsIn(bundle)).toHaveLength(2);
    expect(bundle).toContain(after.caPem.trim());
    expect(bundle).toContain(before.caPem.trim());
  });

  it("a running webhook swaps to a rotated certificate without restarting", async () => {
    const self = await countersignIdentity(cp, ns);
    const first = tlsFromSecret(
      await cp
        .adminKubeConfig()
        .makeApiClient(CoreV1Api)
        .readNamespacedSecret({ name: "webhook-tls", namespace: ns }),
    )!;
    const cs = await startCountersign({
      kubeConfig: self,
      installNamespace: ns,
      webhook: {
        tls: first,
        admissionPort: 0,
        apiPort: 0,
        admissionAuth: { mode: "client-cert", clientCaPem: cp.webhookClient.ca.certPem },
        host: "127.0.0.1",
      },
    });
    const running = cs.webhook!;
    const watcher = new TlsSecretWatcher(
      cp.adminKubeConfig(),
      ns,
      "webhook-tls",
      (tls) => running.setTls(tls),
      log,
      200,
    );
    await watcher.first();
    watcher.start();
    const servedSerial = (port = running.admissionPort) =>
      new Promise<string>((resolve, reject) => {
        const s = connect(
          {
            host: "127.0.0.1",
            port,
            rejectUnauthorized: false,
            servername: "countersign-webhook",
          },
          () => {
            resolve(s.getPeerX509Certificate()?.serialNumber ?? "");
            s.end();
          },
        );
        s.on("error", reject);
      });
    try {
      expect(await servedSerial()).toBe(new X509Certificate(first.certPem).serialNumber);
      expect(await servedSerial(running.apiPort)).toBe(new X509Certificate(first.certPem).serialNumber);
      const rotated = await reconcileWebhookCertificate(opts(new Date(Date.now() + 3000 * DAY)));
      const want = new X509Certificate(rotated.certPem).serialNumber;
      await eventually(async () => (await servedSerial()) === want, 10_000, "new certificate served");
      // The API listener (approval API, Slack) rotates with it.
      await eventually(
        async () => (await servedSerial(running.apiPort)) === want,
        10_000,
        "new certificate served on the API port",
      );
    } finally {
      watcher.stop();
      await cs.stop();
    }
  });
});
