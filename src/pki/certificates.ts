/**
 * X.509 helpers: a small CA that issues serving and client certificates with
 * ECDSA P-256 keys. Used by the control-plane harness (tests, `npm run dev`) and
 * by Countersign's own webhook serving certificate management.
 */
import "reflect-metadata";
import { webcrypto } from "node:crypto";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Backdate notBefore so a few minutes of clock skew never makes a fresh cert "not yet valid". */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export interface CertificateAuthority extends KeyPairPem {
  readonly cert: x509.X509Certificate;
  readonly privateKey: CryptoKey;
}

export type CertUsage = "server" | "client" | "server-and-client";

export interface CertRequest {
  commonName: string;
  /** Subject O= entries; for client certs the API server reads them as groups. */
  organizations?: string[];
  dnsNames?: string[];
  ipAddresses?: string[];
  usage: CertUsage;
  validityDays?: number;
  now?: Date;
}

function subjectName(commonName: string, organizations: string[] = []): string {
  const escapeRdn = (v: string) => v.replace(/([,+"\\<>;=])/g, "\\$1");
  return [`CN=${escapeRdn(commonName)}`, ...organizations.map((o) => `O=${escapeRdn(o)}`)].join(", ");
}

function serialNumber(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // keep it positive
  return Buffer.from(bytes).toString("hex");
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n");
  return `-----BEGIN PRIVATE KEY-----\n${b64.trimEnd()}\n-----END PRIVATE KEY-----\n`;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function createCertificateAuthority(
  commonName: string,
  validityDays = 3650,
  now = new Date(),
): Promise<CertificateAuthority> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: subjectName(commonName),
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + validityDays * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    cert,
    privateKey: keys.privateKey,
    certPem: cert.toString("pem") + "\n",
    keyPem: await exportKeyPem(keys.privateKey),
  };
}

export async function issueCertificate(ca: CertificateAuthority, req: CertRequest): Promise<KeyPairPem> {
  const now = req.now ?? new Date();
  const keys = await newKeys();
  const ekus: string[] = [];
  if (req.usage !== "client") ekus.push(x509.ExtendedKeyUsage.serverAuth);
  if (req.usage !== "server") ekus.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(ekus, false),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
  ];
  const altNames = [
    ...(req.dnsNames ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(req.ipAddresses ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  if (altNames.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(altNames, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: subjectName(req.commonName, req.organizations),
    issuer: ca.cert.subject,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + (req.validityDays ?? 365) * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    extensions,
  });
  return { certPem: cert.toString("pem") + "\n", keyPem: await exportKeyPem(keys.privateKey) };
}

/** A bare ECDSA key pair in PEM, e.g. for the API server's service-account token signer. */
export async function createSigningKeyPair(): Promise<{ publicKeyPem: string; privateKeyPem: string }> {
  const keys = await newKeys();
  const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", keys.publicKey));
  const b64 = spki.toString("base64").replace(/(.{64})/g, "$1\n");
  return {
    publicKeyPem: `-----BEGIN PUBLIC KEY-----\n${b64.trimEnd()}\n-----END PUBLIC KEY-----\n`,
    privateKeyPem: await exportKeyPem(keys.privateKey),
  };
}

/** Reloads a CA written earlier (certPem + PKCS#8 keyPem), e.g. by another process. */
export async function loadCertificateAuthority(
  certPem: string,
  keyPem: string,
): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const der = Buffer.from(keyPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
  const privateKey = await webcrypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, true, ["sign"]);
  return { cert, privateKey, certPem, keyPem };
}
