/** Writing kubeconfig files for the identities the harness and dev environment hand out. */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";

export type KubeconfigCredentials =
  | { token: string }
  | {
      clientCertificatePem: string;
      clientKeyPem: string;
    };

export interface KubeconfigSpec {
  server: string;
  caPem: string;
  user: string;
  credentials: KubeconfigCredentials;
  namespace?: string;
  contextName?: string;
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

export function renderKubeconfig(spec: KubeconfigSpec): string {
  const context = spec.contextName ?? "countersign";
  const user =
    "token" in spec.credentials
      ? { token: spec.credentials.token }
      : {
          "client-certificate-data": b64(spec.credentials.clientCertificatePem),
          "client-key-data": b64(spec.credentials.clientKeyPem),
        };
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      { name: context, cluster: { server: spec.server, "certificate-authority-data": b64(spec.caPem) } },
    ],
    users: [{ name: spec.user, user }],
    contexts: [
      {
        name: context,
        context: {
          cluster: context,
          user: spec.user,
          ...(spec.namespace ? { namespace: spec.namespace } : {}),
        },
      },
    ],
    "current-context": context,
  });
}

/** Writes the kubeconfig with mode 0600 (it holds credentials) and returns its path. */
export function writeKubeconfig(path: string, spec: KubeconfigSpec): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, renderKubeconfig(spec), { mode: 0o600 });
  return path;
}

export function kubeConfigFromSpec(spec: KubeconfigSpec): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(renderKubeconfig(spec));
  return kc;
}
