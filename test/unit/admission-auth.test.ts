import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  type AdmissionAuth,
  assertCertificatePem,
  certificateNames,
  checkAdmissionClient,
  parseAllowedNames,
} from "../../src/admission/client-auth.js";
import { admissionClientConfig } from "../../src/controlplane/control-plane.js";
import { memoryReplayGuard, replayMarkerName } from "../../src/notify/replay-guard.js";

const CA: AdmissionAuth = { mode: "client-cert", clientCaPem: "pem" };
const apiServerCert = {
  subject: { CN: "kube-apiserver-webhook-client" },
  subjectaltname: "DNS:kube-apiserver-webhook-client, IP Address:10.0.0.1",
};

describe("admission caller authentication", () => {
  it("reads a certificate's CN and DNS SANs", () => {
    expect(certificateNames(apiServerCert)).toEqual(["kube-apiserver-webhook-client"]);
    expect(
      certificateNames({ subject: { CN: "a" }, subjectaltname: "DNS:b, DNS:c, URI:spiffe://x" }),
    ).toEqual(["a", "b", "c"]);
    expect(certificateNames({})).toEqual([]);
  });

  it("accepts the API server's verified certificate", () => {
    expect(checkAdmissionClient(CA, { authorized: true, certificate: apiServerCert })).toEqual({
      ok: true,
      name: "kube-apiserver-webhook-client",
    });
  });

  it("refuses a caller without a certificate, naming what to configure", () => {
    for (const certificate of [undefined, {}]) {
      const out = checkAdmissionClient(CA, { authorized: false, certificate });
      expect(out).toMatchObject({ ok: false, code: "no-certificate" });
      expect(!out.ok && out.reason).toMatch(/only the Kubernetes API server may call \/validate/);
    }
  });

  it("refuses a certificate another CA signed (e.g. a cluster user's)", () => {
    const out = checkAdmissionClient(CA, {
      authorized: false,
      authorizationError: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      certificate: { subject: { CN: "system:serviceaccount:ai-agents:ops-bot" } },
    });
    expect(out).toMatchObject({ ok: false, code: "untrusted-certificate" });
    expect(!out.ok && out.reason).toMatch(/ops-bot.*not signed by the configured admission client CA/);
  });

  it("pins the certificate's names when allowed names are configured", () => {
    const pinned: AdmissionAuth = { ...CA, allowedNames: ["kube-apiserver-webhook-client"] } as AdmissionAuth;
    expect(checkAdmissionClient(pinned, { authorized: true, certificate: apiServerCert }).ok).toBe(true);
    // A DNS SAN matches as well as the CN.
    expect(
      checkAdmissionClient(pinned, {
        authorized: true,
        certificate: { subject: { CN: "other" }, subjectaltname: "DNS:kube-apiserver-webhook-client" },
      }).ok,
    ).toBe(true);
    const out = checkAdmissionClient(pinned, {
      authorized: true,
      certificate: { subject: { CN: "etcd-client" } },
    });
    expect(out).toMatchObject({ ok: false, code: "name-not-allowed" });
    expect(!out.ok && out.reason).toMatch(/"etcd-client" is not one of the allowed/);
  });

  it("in network mode trusts the fence, not a certificate", () => {
    expect(checkAdmissionClient({ mode: "network" }, { authorized: false }).ok).toBe(true);
  });

  it("parses allowed names and checks PEM input", () => {
    expect(parseAllowedNames(" a, ,b ")).toEqual(["a", "b"]);
    expect(parseAllowedNames(undefined)).toEqual([]);
    expect(() => assertCertificatePem("hello", "--admission-client-ca-file x")).toThrow(
      /--admission-client-ca-file x holds no PEM certificate/,
    );
    expect(() =>
      assertCertificatePem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "f"),
    ).not.toThrow();
  });

  it("writes an AdmissionConfiguration whose kubeconfig presents the client certificate to every webhook", () => {
    const out = admissionClientConfig({ clientCert: "/p/c.crt", clientKey: "/p/c.key", kubeconfig: "/p/kc" });
    const config = parse(out.admissionConfiguration);
    expect(config).toMatchObject({
      apiVersion: "apiserver.config.k8s.io/v1",
      kind: "AdmissionConfiguration",
    });
    expect(config.plugins.map((p: { name: string }) => p.name)).toEqual([
      "ValidatingAdmissionWebhook",
      "MutatingAdmissionWebhook",
    ]);
    for (const p of config.plugins) {
      expect(p.configuration).toEqual({
        apiVersion: "apiserver.config.k8s.io/v1",
        kind: "WebhookAdmissionConfiguration",
        kubeConfigFile: "/p/kc",
      });
    }
    const kc = parse(out.kubeconfig);
    // "*" is kube-apiserver's default match (staging/src/k8s.io/apiserver/pkg/util/webhook/authentication.go).
    expect(kc.users).toEqual([
      { name: "*", user: { "client-certificate": "/p/c.crt", "client-key": "/p/c.key" } },
    ]);
  });
});

describe("Slack replay markers", () => {
  it("names a marker deterministically from the signature, as a DNS label without the signature", () => {
    const sig = "v0=0123456789abcdef";
    const name = replayMarkerName(sig);
    expect(name).toBe(replayMarkerName(sig));
    expect(name).not.toBe(replayMarkerName("v0=other"));
    expect(name).toMatch(/^slack-replay-[0-9a-f]{40}$/);
    expect(name).not.toContain("0123456789abcdef");
  });

  it("a memory guard accepts a signature once within the window", async () => {
    let now = 1000;
    const guard = memoryReplayGuard(() => now);
    expect(await guard.claim("a")).toBe(true);
    expect(await guard.claim("a")).toBe(false);
    expect(await guard.claim("b")).toBe(true);
    now += 601;
    expect(await guard.claim("a")).toBe(true);
  });
});
