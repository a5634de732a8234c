/**
 * Countersign's own webhook certificates (when cert-manager is not used): the leader-elected
 * controller keeps a CA and a serving certificate in one Secret, rotates them before expiry,
 * and keeps the ValidatingWebhookConfiguration's caBundle current; webhook replicas re-read
 * the Secret and swap their TLS context without restarting.
 *
 * CA rotation overlaps: the caBundle carries the new and the previous CA until the previous
 * one expires, so no API server ever sees a certificate it cannot verify.
 */
import { X509Certificate } from "node:crypto";
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Secret,
  type V1ValidatingWebhookConfiguration,
} from "@kubernetes/client-node";
import { describeKubeError, isAlreadyExists, isConflict, isNotFound } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  issueCertificate,
  loadCertificateAuthority,
} from "../pki/certificates.js";

export const SECRET_KEYS = {
  caCert: "ca.crt",
  caKey: "ca.key",
  caBundle: "ca-bundle.crt",
  tlsCert: "tls.crt",
  tlsKey: "tls.key",
} as const;
export const CA_VALIDITY_DAYS = 3650;
export const SERVING_VALIDITY_DAYS = 365;
/** Rotate when this fraction of a certificate's lifetime has passed. */
export const ROTATE_AT_FRACTION = 2 / 3;

export interface WebhookTls {
  caPem: string;
  caBundlePem: string;
  certPem: string;
  keyPem: string;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, "base64").toString("utf8") : "");

export function serviceDnsNames(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}

function lifetime(pem: string): { notBefore: number; notAfter: number; sans: string } {
  const c = new X509Certificate(pem);
  return {
    notBefore: Date.parse(c.validFrom),
    notAfter: Date.parse(c.validTo),
    sans: c.subjectAltName ?? "",
  };
}

/** What needs renewing at `now` (pure). */
export function rotationNeeded(
  tls: WebhookTls | undefined,
  dnsNames: string[],
  now: Date,
): "ca" | "serving" | undefined {
  if (!tls?.caPem || !tls.certPem || !tls.keyPem) return "ca";
  const due = (pem: string) => {
    const l = lifetime(pem);
    return now.getTime() >= l.notBefore + (l.notAfter - l.notBefore) * ROTATE_AT_FRACTION;
  };
  if (due(tls.caPem)) return "ca";
  const serving = lifetime(tls.certPem);
  if (due(tls.certPem) || !dnsNames.every((d) => serving.sans.includes(`DNS:${d}`))) return "serving";
  return undefined;
}

/** The next rotation time of the current material (pure). */
export function nextRotation(tls: WebhookTls): Date {
  const at = (pem: string) => {
    const l = lifetime(pem);
    return l.notBefore + (l.notAfter - l.notBefore) * ROTATE_AT_FRACTION;
  };
  return new Date(Math.min(at(tls.caPem), at(tls.certPem)));
}

export function tlsFromSecret(secret: V1Secret | undefined): WebhookTls | undefined {
  const d = secret?.data;
  if (!d?.[SECRET_KEYS.tlsCert] || !d[SECRET_KEYS.tlsKey]) return undefined;
  const caPem = unb64(d[SECRET_KEYS.caCert]);
  return {
    caPem,
    caBundlePem: unb64(d[SECRET_KEYS.caBundle]) || caPem,
    certPem: unb64(d[SECRET_KEYS.tlsCert]),
    keyPem: unb64(d[SECRET_KEYS.tlsKey]),
  };
}

export interface CertManagerOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  secretName: string;
  serviceName: string;
  webhookConfigurationName: string;
  logger: Logger;
  now?: () => Date;
}

/** Run by the leader: ensures the Secret is valid and the caBundle matches. Returns the material. */
export async function reconcileWebhookCertificate(opts: CertManagerOptions): Promise<WebhookTls> {
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const now = opts.now?.() ?? new Date();
  const dnsNames = serviceDnsNames(opts.serviceName, opts.namespace);
  let secret: V1Secret | undefined;
  try {
    secret = await core.readNamespacedSecret({ name: opts.secretName, namespace: opts.namespace });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  let tls = tlsFromSecret(secret);
  const need = rotationNeeded(tls, dnsNames, now);
  if (need) {
    const caKeyPem = unb64(secret?.data?.[SECRET_KEYS.caKey]);
    let caPem = tls?.caPem ?? "";
    let caBundlePem = tls?.caBundlePem ?? "";
    let ca: CertificateAuthority;
    if (need === "ca" || !caKeyPem) {
      ca = await createCertificateAuthority("countersign-webhook-ca", CA_VALIDITY_DAYS, now);
      // Keep trusting the previous CA until it expires.
      const previous = tls?.caPem && lifetime(tls.caPem).notAfter > now.getTime() ? tls.caPem : "";
      caPem = ca.certPem;
      caBundlePem = `${ca.certPem}${previous}`;
    } else {
      ca = await loadCertificateAuthority(caPem, caKeyPem);
    }
    const serving = await issueCertificate(ca, {
      commonName: dnsNames[2]!,
      dnsNames,
      usage: "server",
      validityDays: SERVING_VALIDITY_DAYS,
      now,
    });
    tls = { caPem, caBundlePem, certPem: serving.certPem, keyPem: serving.keyPem };
    const body: V1Secret = {
      metadata: {
        name: opts.secretName,
        namespace: opts.namespace,
        labels: { "app.kubernetes.io/part-of": "countersign", "app.kubernetes.io/component": "webhook-tls" },
        ...(secret?.metadata?.resourceVersion ? { resourceVersion: secret.metadata.resourceVersion } : {}),
      },
      type: "Opaque",
      data: {
        [SECRET_KEYS.caCert]: b64(caPem),
        [SECRET_KEYS.caKey]: b64(ca.keyPem),
        [SECRET_KEYS.caBundle]: b64(caBundlePem),
        [SECRET_KEYS.tlsCert]: b64(serving.certPem),
        [SECRET_KEYS.tlsKey]: b64(serving.keyPem),
      },
    };
    try {
      if (secret)
        await core.replaceNamespacedSecret({ name: opts.secretName, namespace: opts.namespace, body });
      else await core.createNamespacedSecret({ namespace: opts.namespace, body });
      opts.logger.info("webhook certificate written", {
        secret: `${opts.namespace}/${opts.secretName}`,
        rotated: need,
      });
    } catch (err) {
      if (!isAlreadyExists(err) && !isConflict(err)) throw err;
      // Another leader wrote it first: use theirs.
      return reconcileWebhookCertificate(opts);
    }
  }
  await syncCaBundle(opts.kubeConfig, opts.webhookConfigurationName, tls!.caBundlePem, opts.logger);
  return tls!;
}

/** Sets every webhook's clientConfig.caBundle in the configuration to `bundlePem` (when it differs). */
export async function syncCaBundle(
  kc: KubeConfig,
  name: string,
  bundlePem: string,
  log: Logger,
): Promise<boolean> {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  let vwc: V1ValidatingWebhookConfiguration;
  try {
    vwc = await api.readValidatingWebhookConfiguration({ name });
  } catch (err) {
    if (isNotFound(err)) {
      log.warn("webhook configuration not found; caBundle not synced", { webhookConfiguration: name });
      return false;
    }
    throw err;
  }
  const want = b64(bundlePem);
  const webhooks = vwc.webhooks ?? [];
  if (
    webhooks.every((w) => {
      const cb = w.clientConfig.caBundle as unknown;
      return (
        (typeof cb === "string" ? cb : cb ? Buffer.from(cb as Uint8Array).toString("base64") : "") === want
      );
    })
  ) {
    return false;
  }
  for (const w of webhooks) w.clientConfig.caBundle = want as never;
  try {
    await api.replaceValidatingWebhookConfiguration({ name, body: vwc });
  } catch (err) {
    log.warn("could not update caBundle; will retry", {
      webhookConfiguration: name,
      error: describeKubeError(err),
    });
    return false;
  }
  log.info("caBundle updated", { webhookConfiguration: name });
  return true;
}

/**
 * Webhook side: re-reads the Secret every `intervalMs` (a GET on one named Secret, so the
 * webhook needs no list/watch on Secrets) and calls `onChange` when the material changes.
 */
export class TlsSecretWatcher {
  private timer: NodeJS.Timeout | undefined;
  private lastVersion = "";

  constructor(
    private readonly kc: KubeConfig,
    private readonly namespace: string,
    private readonly secretName: string,
    private readonly onChange: (tls: WebhookTls) => void,
    private readonly log: Logger,
    private readonly intervalMs = 30_000,
  ) {}

  /** Resolves with the first usable material (waiting for the controller to create it). */
  async first(timeoutMs = 10 * 60_000): Promise<WebhookTls> {
    const core = this.kc.makeApiClient(CoreV1Api);
    const deadline = Date.now() + timeoutMs;
    let warned = false;
    for (;;) {
      try {
        const s = await core.readNamespacedSecret({ name: this.secretName, namespace: this.namespace });
        const tls = tlsFromSecret(s);
        if (tls) {
          this.lastVersion = s.metadata?.resourceVersion ?? "";
          return tls;
        }
      } catch (err) {
        if (!isNotFound(err))
          this.log.warn("cannot read the webhook TLS Secret", { error: describeKubeError(err) });
      }
      if (!warned) {
        this.log.info("waiting for the webhook TLS Secret (written by the controller)", {
          secret: `${this.namespace}/${this.secretName}`,
        });
        warned = true;
      }
      if (Date.now() > deadline)
        throw new Error(`webhook TLS Secret ${this.namespace}/${this.secretName} did not appear`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  start(): void {
    const core = this.kc.makeApiClient(CoreV1Api);
    const tick = async () => {
      try {
        const s = await core.readNamespacedSecret({ name: this.secretName, namespace: this.namespace });
        const version = s.metadata?.resourceVersion ?? "";
        const tls = tlsFromSecret(s);
        if (tls && version !== this.lastVersion) {
          this.lastVersion = version;
          this.onChange(tls);
          this.log.info("webhook TLS material reloaded", { secret: `${this.namespace}/${this.secretName}` });
        }
      } catch (err) {
        this.log.warn("cannot re-read the webhook TLS Secret", { error: describeKubeError(err) });
      }
      this.timer = setTimeout(() => void tick(), this.intervalMs);
    };
    this.timer = setTimeout(() => void tick(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
