/**
 * Who may drive admission. Only the API server may: an AdmissionReview carries the identity
 * Countersign gates and approves on, and serving one has side effects (an ApprovalRequest is
 * created, an approval consumed). Two modes:
 *
 *   client-cert  the admission listener asks for a TLS client certificate and verifies it
 *                against a configured CA (the one that signed the certificate kube-apiserver
 *                presents through its WebhookAdmissionConfiguration), optionally pinned to names
 *   network      no certificate is checked; the admission port is fenced off by a NetworkPolicy
 *                that admits only the API server's addresses (managed control planes that
 *                cannot present a client certificate)
 *
 * The checks here are pure: they look at what TLS already verified and at the peer
 * certificate's names.
 */

export const ADMISSION_AUTH_MODES = ["client-cert", "network"] as const;
export type AdmissionAuthMode = (typeof ADMISSION_AUTH_MODES)[number];

export type AdmissionAuth =
  | {
      mode: "client-cert";
      /** PEM bundle of the CA(s) that sign the API server's webhook client certificate. */
      clientCaPem: string;
      /** When non-empty, the client certificate's CN or a DNS SAN must be one of these. */
      allowedNames?: string[];
    }
  | { mode: "network" };

/** The parts of a TLS peer certificate the name check reads (node's PeerCertificate shape). */
export interface PeerCertificateNames {
  subject?: { CN?: string | string[] } | undefined;
  subjectaltname?: string | undefined;
}

/** The identity TLS established for a connection, as node reports it. */
export interface TlsPeer {
  authorized: boolean;
  authorizationError?: string | Error | null | undefined;
  certificate?: PeerCertificateNames | undefined;
}

export type ClientRefusal = "no-certificate" | "untrusted-certificate" | "name-not-allowed";
export type ClientCheck = { ok: true; name: string } | { ok: false; code: ClientRefusal; reason: string };

/** The CN and DNS SANs of a certificate, in that order, without duplicates. Pure. */
export function certificateNames(cert: PeerCertificateNames): string[] {
  const cn = cert.subject?.CN;
  const names = Array.isArray(cn) ? [...cn] : cn ? [cn] : [];
  for (const entry of (cert.subjectaltname ?? "").split(",")) {
    const m = /^\s*DNS:(.+?)\s*$/.exec(entry);
    if (m?.[1]) names.push(m[1]);
  }
  return [...new Set(names)];
}

/**
 * Decides whether an admission caller is the API server. `peer.certificate` is empty when
 * the client presented none. Pure.
 */
export function checkAdmissionClient(auth: AdmissionAuth, peer: TlsPeer): ClientCheck {
  if (auth.mode === "network") return { ok: true, name: "(network-fenced)" };
  const names = peer.certificate ? certificateNames(peer.certificate) : [];
  const hasCert = peer.certificate !== undefined && Object.keys(peer.certificate).length > 0;
  if (!hasCert) {
    return {
      ok: false,
      code: "no-certificate",
      reason:
        "no client certificate: only the Kubernetes API server may call /validate, and it must present the webhook client certificate configured in its admission configuration",
    };
  }
  if (!peer.authorized) {
    const why = peer.authorizationError ? String(peer.authorizationError) : "unverified";
    return {
      ok: false,
      code: "untrusted-certificate",
      reason: `client certificate ${describe(names)} is not signed by the configured admission client CA (${why})`,
    };
  }
  const allowed = auth.allowedNames ?? [];
  if (allowed.length > 0 && !names.some((n) => allowed.includes(n))) {
    return {
      ok: false,
      code: "name-not-allowed",
      reason: `client certificate ${describe(names)} is not one of the allowed admission client names (${allowed.join(", ")})`,
    };
  }
  return { ok: true, name: names[0] ?? "(no name)" };
}

function describe(names: string[]): string {
  return names.length > 0 ? `"${names.join('", "')}"` : "(no names)";
}

/** Parses a comma-separated list of allowed client names. Pure. */
export function parseAllowedNames(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Rough PEM sanity check, so a wrong file gives a clear start-up error. Pure. */
export function assertCertificatePem(pem: string, what: string): void {
  if (!/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(pem)) {
    throw new Error(`${what} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)`);
  }
}
