/**
 * `npm run dev`: the local environment. Starts a real control plane (etcd, kube-apiserver
 * and kube-controller-manager on loopback), installs the CRDs and sample policies, runs
 * Countersign in-process with its webhook registered, and writes kubeconfigs for three
 * identities under .countersign/dev/. Runs until Ctrl-C, then cleans up.
 *
 *   npm run dev                       # local control plane
 *   npm run dev -- --use-current-kubeconfig   # an existing cluster whose API server can reach
 *                                             # this machine at --webhook-host (default 127.0.0.1);
 *        with --admission-client-ca-file FILE (the CA of the client certificate that API server
 *        presents to webhooks), or --admission-auth network to accept any caller (local only)
 *
 * The local control plane's API server presents its webhook client certificate, and the
 * webhook verifies it: the admission port answers only the API server, as in production.
 */
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { KubeConfig, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import type { AdmissionAuth } from "../admission/client-auth.js";
import { webhookConfiguration } from "../admission/registration.js";
import { startCountersign } from "../app.js";
import { REPO_ROOT } from "../controlplane/binaries.js";
import { ControlPlane } from "../controlplane/control-plane.js";
import { applyObjects, installCrds, readManifestDir } from "../kube/apply.js";
import { describeKubeError, isAlreadyExists } from "../kube/errors.js";
import { createCertificateAuthority, issueCertificate } from "../pki/certificates.js";

const AGENT_NAMESPACE = "ai-agents";
const AGENT_NAME = "ops-bot";
const APPROVER = "alice@example.com";
const APPROVER_GROUP = "countersign:approvers";
const INSTALL_NAMESPACE = "countersign-system";
const WEBHOOK_NAME = "countersign-dev";

async function ensureBinding(
  kc: KubeConfig,
  body: Parameters<RbacAuthorizationV1Api["createClusterRoleBinding"]>[0]["body"],
) {
  try {
    await kc.makeApiClient(RbacAuthorizationV1Api).createClusterRoleBinding({ body });
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
  }
}

async function ensureClusterRole(
  kc: KubeConfig,
  body: Parameters<RbacAuthorizationV1Api["createClusterRole"]>[0]["body"],
) {
  try {
    await kc.makeApiClient(RbacAuthorizationV1Api).createClusterRole({ body });
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "use-current-kubeconfig": { type: "boolean", default: false },
      dir: { type: "string", default: join(REPO_ROOT, ".countersign", "dev") },
      port: { type: "string", default: "0" },
      "api-port": { type: "string", default: "0" },
      "admission-client-ca-file": { type: "string" },
      "admission-auth": { type: "string" },
      "webhook-host": { type: "string", default: "127.0.0.1" },
      demo: { type: "boolean", default: false },
      exit: { type: "boolean", default: false },
    },
  });
  const dir = resolve(values.dir!);
  const say = (m: string) => console.log(`[dev] ${m}`);
  let cp: ControlPlane | undefined;
  let kc: KubeConfig;
  const cleanups: (() => Promise<void>)[] = [];

  if (values["use-current-kubeconfig"]) {
    kc = new KubeConfig();
    kc.loadFromDefault();
    say(`using the current kubeconfig context ${kc.getCurrentContext()} (${kc.getCurrentCluster()?.server})`);
    await installCrds(kc, join(REPO_ROOT, "crds"));
  } else {
    rmSync(join(dir, "controlplane"), { recursive: true, force: true });
    cp = await ControlPlane.start({ dir: join(dir, "controlplane"), log: say });
    cleanups.push(() => cp!.stop());
    kc = cp.adminKubeConfig();
  }
  mkdirSync(dir, { recursive: true });

  // Identities: an admin, an AI agent's service account, a human approver.
  let adminPath: string | undefined;
  if (cp) {
    adminPath = join(dir, "admin.kubeconfig");
    copyFileSync(cp.adminKubeconfigPath, adminPath);
    const agent = await cp.serviceAccountIdentity(AGENT_NAMESPACE, AGENT_NAME, {
      labels: { "countersign.io/agent": "true" },
      kubeconfigPath: join(dir, "agent.kubeconfig"),
      expirationSeconds: 24 * 3600,
    });
    const approver = await cp.userIdentity(APPROVER, [APPROVER_GROUP], {
      kubeconfigPath: join(dir, "approver.kubeconfig"),
    });
    await cp.ensureNamespace("prod");
    await cp.ensureNamespace(INSTALL_NAMESPACE);
    // The agent may edit things (Kubernetes' built-in `edit` role, aggregated by the
    // controller-manager); approvers may read and decide ApprovalRequests.
    await ensureBinding(kc, {
      metadata: { name: "countersign-dev-agent" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
      subjects: [{ kind: "ServiceAccount", name: AGENT_NAME, namespace: AGENT_NAMESPACE }],
    });
    await ensureClusterRole(kc, {
      metadata: { name: "countersign-dev-approver" },
      rules: [
        {
          apiGroups: ["countersign.io"],
          resources: ["approvalrequests"],
          verbs: ["get", "list", "watch", "patch", "update", "approve", "deny", "revoke"],
        },
        {
          apiGroups: ["countersign.io"],
          resources: ["approvalpolicies", "auditrecords", "auditcheckpoints"],
          verbs: ["get", "list", "watch"],
        },
      ],
    });
    await ensureBinding(kc, {
      metadata: { name: "countersign-dev-approver" },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "countersign-dev-approver",
      },
      subjects: [{ kind: "Group", name: APPROVER_GROUP, apiGroup: "rbac.authorization.k8s.io" }],
    });
    say(`identities: agent ${agent.username}, approver ${approver.username} (group ${APPROVER_GROUP})`);
  }

  // Countersign runs as its own service account (as in a cluster), so the admin is subject to
  // its guard like everyone else.
  let countersignKc = kc;
  if (cp) {
    await ensureBinding(kc, {
      metadata: { name: "countersign-dev" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
      subjects: [{ kind: "ServiceAccount", name: "countersign", namespace: INSTALL_NAMESPACE }],
    });
    countersignKc = (
      await cp.serviceAccountIdentity(INSTALL_NAMESPACE, "countersign", {
        kubeconfigPath: join(dir, "countersign.kubeconfig"),
        expirationSeconds: 24 * 3600,
      })
    ).kubeConfig;
  }

  const policies = readManifestDir(join(REPO_ROOT, "examples", "policies"));
  await applyObjects(kc, policies);
  say(`applied sample policies: ${policies.map((p) => p.metadata?.name).join(", ")}`);

  // Countersign in-process, with its own serving certificate, and its webhook registered.
  const ca = await createCertificateAuthority("countersign-dev-webhook-ca");
  const host = values["webhook-host"]!;
  const isIp = /^[\d.]+$/.test(host);
  const tls = await issueCertificate(ca, {
    commonName: "countersign-dev",
    usage: "server",
    ...(isIp ? { ipAddresses: [host] } : { dnsNames: [host] }),
  });
  let admissionAuth: AdmissionAuth;
  if (values["admission-client-ca-file"]) {
    admissionAuth = {
      mode: "client-cert",
      clientCaPem: readFileSync(values["admission-client-ca-file"], "utf8"),
    };
  } else if (cp) {
    admissionAuth = { mode: "client-cert", clientCaPem: cp.webhookClient.ca.certPem };
  } else if (values["admission-auth"] === "network") {
    admissionAuth = { mode: "network" };
    say("WARNING: --admission-auth network: any client that reaches the admission port can drive /validate");
  } else {
    throw new Error(
      "with --use-current-kubeconfig, give --admission-client-ca-file (the CA of the client certificate your API server presents to webhooks; see the README's Security model) or --admission-auth network",
    );
  }
  // Both roles in this process, as `countersign all` runs them.
  const cs = await startCountersign({
    kubeConfig: countersignKc,
    installNamespace: INSTALL_NAMESPACE,
    replica: "dev",
    webhook: { tls, admissionPort: Number(values.port), apiPort: Number(values["api-port"]), admissionAuth },
    controller: { retentionSeconds: 3600 },
  });
  const webhook = cs.webhook!;
  cleanups.unshift(() => cs.stop());
  await applyObjects(kc, [
    webhookConfiguration({
      name: WEBHOOK_NAME,
      caBundlePem: ca.certPem,
      url: `https://${host}:${webhook.admissionPort}`,
      installNamespace: INSTALL_NAMESPACE,
      subjects: { serviceAccountNamespaces: [AGENT_NAMESPACE] },
    }) as never,
  ]);
  cleanups.unshift(async () => {
    // Remove the webhook first, so the cluster is never left pointing at a dead endpoint.
    const { AdmissionregistrationV1Api } = await import("@kubernetes/client-node");
    await kc
      .makeApiClient(AdmissionregistrationV1Api)
      .deleteValidatingWebhookConfiguration({ name: WEBHOOK_NAME })
      .catch((err: unknown) => say(`could not remove webhook configuration: ${describeKubeError(err)}`));
  });
  say(
    `Countersign admission on https://${host}:${webhook.admissionPort}/validate (${admissionAuth.mode === "client-cert" ? "only the API server's client certificate" : "any caller"}), approval API on https://${host}:${webhook.apiPort}/api/v1`,
  );

  if (cp) {
    const kubectl = cp.binaries.kubectl;
    const bin = join(REPO_ROOT, "bin");
    const k = (who: string) => `KUBECONFIG=${join(dir, `${who}.kubeconfig`)} kubectl`;
    console.log(`
Countersign dev environment is up.

  admin:    ${adminPath}
  agent:    ${join(dir, "agent.kubeconfig")}     (system:serviceaccount:${AGENT_NAMESPACE}:${AGENT_NAME})
  approver: ${join(dir, "approver.kubeconfig")}  (${APPROVER}, group ${APPROVER_GROUP})

In another shell (the cached kubectl and the Countersign plugins on PATH):
  export PATH=${bin}:${dirname(kubectl)}:$PATH
  ${k("admin")} create secret generic db-creds -n prod --from-literal=password=s3cr3t
  ${k("agent")} delete secret db-creds -n prod          # denied: names the ApprovalRequest
  ${k("approver")} approvals list -n prod
  ${k("approver")} approve <NAME> -n prod --reason "rotation ticket OPS-42"
  ${k("agent")} delete secret db-creds -n prod          # retried: allowed, once
  ${k("approver")} approvals audit --for secret/db-creds -n prod
  ${k("approver")} approvals audit verify -n prod
${values.demo ? "" : "\nOr run the whole story by itself: npm run dev -- --demo\n"}
Press Ctrl-C to stop (the webhook configuration is removed first).
`);
    if (values.demo) await runDemo(kubectl, bin, dir, say);
  }
  if (values.exit) {
    for (const c of cleanups) await c().catch((err: unknown) => say(`cleanup step failed: ${String(err)}`));
    return;
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: cleaning up`);
    for (const c of cleanups) await c().catch((err: unknown) => say(`cleanup step failed: ${String(err)}`));
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

/** The whole story, with the real kubectl and plugins: denied → approved → allowed once → audit. */
async function runDemo(kubectl: string, bin: string, dir: string, say: (m: string) => void): Promise<void> {
  const env = { ...process.env, PATH: `${bin}:${dirname(kubectl)}:${process.env.PATH ?? ""}` };
  // Asynchronous on purpose: this process also serves the webhook these commands call.
  const exec = (args: string[]) =>
    new Promise<{ code: number; out: string }>((resolveRun) => {
      execFile(kubectl, args, { env }, (err, stdout, stderr) =>
        resolveRun({
          code: err ? ((err as { code?: number }).code ?? 1) : 0,
          out: `${stdout}${stderr}`.trim(),
        }),
      );
    });
  const run = async (who: string, args: string[], expectFailure = false): Promise<string> => {
    // Flags after the command: kubectl refuses flags before a plugin's name.
    const shown = `kubectl ${args.join(" ")} --kubeconfig ${who}.kubeconfig`;
    console.log(`\n$ ${shown}`);
    const r = await exec([...args, "--kubeconfig", join(dir, `${who}.kubeconfig`)]);
    console.log(r.out);
    if ((r.code === 0) === expectFailure)
      throw new Error(`demo step "${shown}" ${expectFailure ? "should have failed" : "failed"}`);
    return r.out;
  };
  say("demo: an AI agent deletes a production Secret");
  await run("admin", [
    "create",
    "secret",
    "generic",
    "db-creds",
    "-n",
    "prod",
    "--from-literal=password=s3cr3t",
  ]);
  const denied = await run("agent", ["delete", "secret", "db-creds", "-n", "prod"], true);
  const name = /kubectl approve (\S+) -n prod/.exec(denied)?.[1];
  if (!name) throw new Error("demo: the denial did not name an ApprovalRequest");
  await run("approver", ["approvals", "list", "-n", "prod"]);
  await run("approver", ["approvals", "show", name, "-n", "prod"]);
  await run("agent", ["approve", name, "-n", "prod"], true); // the agent cannot approve itself
  await run("approver", ["approve", name, "-n", "prod", "--reason", "rotation ticket OPS-42"]);
  for (let i = 0; i < 50; i++) {
    const r = await exec([
      "--kubeconfig",
      join(dir, "admin.kubeconfig"),
      "get",
      "approvalrequest",
      name,
      "-n",
      "prod",
      "-o",
      "jsonpath={.status.phase}",
    ]);
    if (r.out === "Approved") break;
    await new Promise((res) => setTimeout(res, 200));
  }
  await run("agent", ["delete", "secret", "db-creds", "-n", "prod"]);
  await run("admin", [
    "create",
    "secret",
    "generic",
    "db-creds",
    "-n",
    "prod",
    "--from-literal=password=n3w",
  ]);
  await run("agent", ["delete", "secret", "db-creds", "-n", "prod"], true); // used once: a new request is needed
  await new Promise((res) => setTimeout(res, 4000)); // the controller checks execution ~3 s after admission
  await run("approver", ["approvals", "audit", "--for", "secret/db-creds", "-n", "prod"]);
  await run("approver", ["approvals", "audit", "verify", "-n", "prod"]);
  say("demo: done");
}

main().catch((err: unknown) => {
  console.error(`[dev] failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
