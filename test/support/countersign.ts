/** Starts Countersign in-process against the test control plane and registers its webhook. */
import { AdmissionregistrationV1Api, type KubeConfig, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { type SelectedSubjects, webhookConfiguration } from "../../src/admission/registration.js";
import { type RunningCountersign, startCountersign } from "../../src/app.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { isAlreadyExists, isNotFound } from "../../src/kube/errors.js";
import type { NotificationConfig } from "../../src/notify/messages.js";
import { createCertificateAuthority, issueCertificate } from "../../src/pki/certificates.js";

/** One replica: the webhook role, and in the first (unless turned off) the controller role too (`all`). */
export interface TestReplica {
  admissionPort: number;
  apiPort: number | undefined;
  identity: string;
  policies: RunningCountersign["policies"];
  controller: RunningCountersign["controller"];
  stop(): Promise<void>;
}

export interface TestCountersign {
  replicas: TestReplica[];
  webhookName: string;
  stop(): Promise<void>;
}

/**
 * Runs `replicas` webhook processes' worth of Countersign (in this process, each with its
 * own server and informers), registers one webhook configuration pointing at the first,
 * and waits until the API server routes requests through it.
 */
export const APPROVER_CLUSTER_ROLE = "countersign-test-approver";

async function ensure(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
  }
}

/**
 * Countersign's own identity in tests: a service account bound to cluster-admin, so that the
 * test admin (system:masters) is *not* Countersign and is subject to its guard like anyone.
 */
export async function countersignIdentity(
  cp: ControlPlane,
  installNamespace = "countersign-system",
): Promise<KubeConfig> {
  const id = await cp.serviceAccountIdentity(installNamespace, "countersign");
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  await ensure(() =>
    rbac.createClusterRoleBinding({
      body: {
        metadata: { name: `countersign-test-${installNamespace}` },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
        subjects: [{ kind: "ServiceAccount", name: "countersign", namespace: installNamespace }],
      },
    }),
  );
  return id.kubeConfig;
}

/** A human approver: a client-cert user in `groups`, optionally with the RBAC verbs approve/deny. */
export async function approverIdentity(
  cp: ControlPlane,
  username: string,
  groups: string[],
  withRbac = true,
): Promise<KubeConfig> {
  const id = await cp.userIdentity(username, groups);
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  await ensure(() =>
    rbac.createClusterRole({
      body: {
        metadata: { name: APPROVER_CLUSTER_ROLE },
        rules: [
          {
            apiGroups: ["countersign.io"],
            resources: ["approvalrequests"],
            verbs: ["get", "list", "watch", "patch", "update", "approve", "deny", "revoke"],
          },
          {
            apiGroups: ["countersign.io"],
            resources: ["auditrecords", "auditcheckpoints", "approvalpolicies"],
            verbs: ["get", "list", "watch"],
          },
        ],
      },
    }),
  );
  if (withRbac) {
    await ensure(() =>
      rbac.createClusterRoleBinding({
        body: {
          metadata: {
            name: `${APPROVER_CLUSTER_ROLE}-${username.replace(/[^a-z0-9.-]/gi, "-").toLowerCase()}`,
          },
          roleRef: {
            apiGroup: "rbac.authorization.k8s.io",
            kind: "ClusterRole",
            name: APPROVER_CLUSTER_ROLE,
          },
          subjects: [{ kind: "User", name: username, apiGroup: "rbac.authorization.k8s.io" }],
        },
      }),
    );
  } else {
    // Can read and patch, but lacks the approve/deny verbs.
    await ensure(() =>
      rbac.createClusterRole({
        body: {
          metadata: { name: `${APPROVER_CLUSTER_ROLE}-no-verbs` },
          rules: [
            {
              apiGroups: ["countersign.io"],
              resources: ["approvalrequests"],
              verbs: ["get", "list", "watch", "patch", "update"],
            },
          ],
        },
      }),
    );
    await ensure(() =>
      rbac.createClusterRoleBinding({
        body: {
          metadata: {
            name: `${APPROVER_CLUSTER_ROLE}-no-verbs-${username.replace(/[^a-z0-9.-]/gi, "-").toLowerCase()}`,
          },
          roleRef: {
            apiGroup: "rbac.authorization.k8s.io",
            kind: "ClusterRole",
            name: `${APPROVER_CLUSTER_ROLE}-no-verbs`,
          },
          subjects: [{ kind: "User", name: username, apiGroup: "rbac.authorization.k8s.io" }],
        },
      }),
    );
  }
  return id.kubeConfig;
}

/** Lets a service account (an agent) use `verbs` on core-group `resources` in `namespace`. */
export async function grantServiceAccount(
  cp: ControlPlane,
  namespace: string,
  serviceAccount: { namespace: string; name: string },
  resources: string[],
  verbs: string[],
): Promise<void> {
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  const name = `${serviceAccount.name}-${resources.join("-")}`.slice(0, 63);
  await rbac.createNamespacedRole({
    namespace,
    body: { metadata: { name }, rules: [{ apiGroups: [""], resources, verbs }] },
  });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name: serviceAccount.name, namespace: serviceAccount.namespace }],
    },
  });
}

export async function startTestCountersign(
  cp: ControlPlane,
  opts: {
    subjects: SelectedSubjects;
    installNamespace?: string;
    replicas?: number;
    webhookName?: string;
    /** Run the controller in the first replica (default true). */
    controller?: boolean;
    retentionSeconds?: number;
    leaseDurationSeconds?: number;
    notifications?: NotificationConfig;
    slackResponseCaPem?: string;
    /** Pin the API server's webhook client certificate to these names (default: any from its CA). */
    admissionClientNames?: string[];
    bypassScanIntervalMs?: number;
  },
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
  const self = await countersignIdentity(cp, installNamespace);
  const replicas: TestReplica[] = [];
  for (let i = 0; i < (opts.replicas ?? 1); i++) {
    const running = await startCountersign({
      kubeConfig: self,
      installNamespace,
      replica: `test-replica-${i}`,
      ...(opts.notifications ? { notifications: opts.notifications } : {}),
      webhook: {
        tls,
        admissionPort: 0,
        apiPort: 0,
        // Only the test API server may call /validate: its webhook client certificate is verified.
        admissionAuth: {
          mode: "client-cert",
          clientCaPem: cp.webhookClient.ca.certPem,
          allowedNames: opts.admissionClientNames ?? [],
        },
        host: "127.0.0.1",
        ...(opts.slackResponseCaPem ? { slackResponseCaPem: opts.slackResponseCaPem } : {}),
      },
      ...(i === 0 && opts.controller !== false
        ? {
            controller: {
              ...(opts.retentionSeconds !== undefined ? { retentionSeconds: opts.retentionSeconds } : {}),
              leaseDurationSeconds: opts.leaseDurationSeconds ?? 4,
              notificationRetry: { attempts: 3, backoffMs: 100, timeoutMs: 2000 },
              ...(opts.bypassScanIntervalMs ? { bypassScanIntervalMs: opts.bypassScanIntervalMs } : {}),
            },
          }
        : {}),
    });
    replicas.push({
      admissionPort: running.webhook!.admissionPort,
      apiPort: running.webhook!.apiPort,
      identity: running.identity,
      policies: running.policies,
      controller: running.controller,
      stop: () => running.stop(),
    });
  }
  const webhookName = opts.webhookName ?? "countersign-test";
  const admission = cp.adminKubeConfig().makeApiClient(AdmissionregistrationV1Api);
  const config = webhookConfiguration({
    name: webhookName,
    caBundlePem: ca.certPem,
    url: `https://127.0.0.1:${replicas[0]!.admissionPort}`,
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

/**
 * TLS options for a client that plays the API server towards the admission port (it presents
 * the API server's webhook client certificate), e.g. to send AdmissionReviews to a replica
 * the webhook configuration does not point at.
 */
export function asApiServer(cp: ControlPlane): { cert: string; key: string } {
  return { cert: cp.webhookClient.client.certPem, key: cp.webhookClient.client.keyPem };
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
