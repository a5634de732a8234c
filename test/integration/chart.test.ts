/**
 * The Helm chart against the real API server: lint, render every values file and apply it
 * with server-side dry run, install it, then run the real `countersign webhook` and
 * `countersign controller` processes locally with the chart's own service-account tokens
 * (there is no kubelet here) to prove its RBAC is sufficient, show that each permission is
 * needed, upgrade, and uninstall (webhook configuration first).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  AdmissionregistrationV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  RbacAuthorizationV1Api,
  type V1ValidatingWebhook,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { webhookConfiguration } from "../../src/admission/registration.js";
import { verifyChain } from "../../src/audit/chain.js";
import { REPO_ROOT } from "../../src/controlplane/binaries.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { isNotFound, kubeStatusOf } from "../../src/kube/errors.js";
import { parseNotificationConfig } from "../../src/notify/messages.js";
import { decide, listAuditRecords } from "../../src/plugin/commands.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import { approverIdentity, eventually, grantServiceAccount } from "../support/countersign.js";

const run = promisify(execFile);
const CHART = join(REPO_ROOT, "charts", "countersign");
const release = "cs";
const ns = uniqueName("countersign-chart");
const agentsNs = uniqueName("chart-agents");
const target = uniqueName("chart-prod");
const WEBHOOK_PORT = 18443 + Math.floor(Math.random() * 1000);
const fullname = `${release}-countersign`;
let cp: ControlPlane;
const procs: ChildProcess[] = [];

async function helm(args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cp.binaries.helm, [...args, "--kubeconfig", cp.adminKubeconfigPath], {
      maxBuffer: 32 << 20,
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(tmpdir(), "cs-helm-cache"),
        HELM_CONFIG_HOME: join(tmpdir(), "cs-helm-config"),
      },
    });
    return stdout;
  } catch (err) {
    throw new Error(`helm ${args.join(" ")} failed:\n${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
}

async function kubectl(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cp.binaries.kubectl,
      [...args, "--kubeconfig", cp.adminKubeconfigPath],
      { maxBuffer: 32 << 20 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`kubectl ${args.join(" ")}: ${stderr || err.message}`)) : resolve(stdout),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Starts `countersign MODE` from source with a kubeconfig, as the image's entrypoint would. */
function startProcess(mode: string, kubeconfig: string, extraEnv: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "src", "main.ts"), mode], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      COUNTERSIGN_KUBECONFIG: kubeconfig,
      POD_NAMESPACE: ns,
      COUNTERSIGN_LOG_LEVEL: "warn",
      ...extraEnv,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout?.on("data", (c) => (log += c));
  child.stderr?.on("data", (c) => (log += c));
  (child as ChildProcess & { log: () => string }).log = () => log;
  procs.push(child);
  return child;
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
}

/** A non-loopback IPv4 of this machine (EndpointSlices may not hold loopback addresses). */
function hostIp(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  throw new Error("no non-loopback IPv4 address on this machine to publish the webhook's EndpointSlice");
}

async function tokenKubeconfig(sa: string): Promise<string> {
  const id = await cp.serviceAccountIdentity(ns, sa, {
    kubeconfigPath: join(cp.dir, "identities", `chart-${sa}.kubeconfig`),
  });
  return id.kubeconfigPath;
}

beforeAll(async () => {
  cp = await attachControlPlane();
});

afterAll(async () => {
  for (const p of procs) await stopProcess(p);
  await helm(["uninstall", release, "-n", ns, "--no-hooks", "--ignore-not-found"]).catch(() => undefined);
});

describe("the Helm chart", () => {
  it("ships exactly the CRDs in crds/ (no drift)", () => {
    const files = readdirSync(join(REPO_ROOT, "crds")).sort();
    expect(readdirSync(join(CHART, "crds")).sort()).toEqual(files);
    for (const f of files) {
      expect(
        readFileSync(join(CHART, "crds", f), "utf8"),
        `charts/countersign/crds/${f} differs from crds/${f}`,
      ).toBe(readFileSync(join(REPO_ROOT, "crds", f), "utf8"));
    }
  });

  it("passes helm lint, and every values file renders and is accepted by the API server (server-side dry run)", async () => {
    await helm(["lint", CHART, "--strict"]);
    // cert-manager is not installed here: stand-in CRDs let its two kinds through the dry run.
    await kubectl(["apply", "-f", "-"], stubCertManagerCrds());
    await cp.ensureNamespace(ns);
    for (const values of ["", ...readdirSync(join(CHART, "ci")).map((f) => join(CHART, "ci", f))]) {
      const rendered = await helm(["template", release, CHART, "-n", ns, ...(values ? ["-f", values] : [])]);
      const out = await kubectl(["apply", "--dry-run=server", "-n", ns, "-f", "-"], rendered);
      expect(out, values || "defaults").toMatch(/validatingwebhookconfiguration.*created \(server dry run\)/);
    }
  });

  it("renders a notification config that Countersign accepts", async () => {
    const rendered = await helm([
      "template",
      release,
      CHART,
      "-n",
      ns,
      "-f",
      join(CHART, "ci", "notifications-values.yaml"),
    ]);
    const cm = parseAllDocuments(rendered)
      .map((d) => d.toJS())
      .find((o) => o?.kind === "ConfigMap");
    const config = parseNotificationConfig(cm.data["notifications.yaml"], {
      SLACK_WEBHOOK_URL: "https://hooks.slack.com/services/T/B/X",
      SIEM_HMAC_SECRET: "k",
      SLACK_SIGNING_SECRET: "s",
    });
    expect(config.routes.map((r) => r.name)).toEqual(["sre", "siem"]);
    expect(config.slack?.users.U024BE7LH?.username).toBe("alice@example.com");
  });

  it("rejects bad values with a clear message", async () => {
    await expect(
      helm(["template", release, CHART, "--set", "webhook.failurePolicy=Sometimes"]),
    ).rejects.toThrow(/webhook\/failurePolicy.*must be one of 'Fail', 'Ignore'/);
    await expect(helm(["template", release, CHART, "--set", "controller.retention=1day"])).rejects.toThrow(
      /controller\/retention/,
    );
    await expect(
      helm(["template", release, CHART, "--set", "webhook.selectedSubjects.serviceAccountNamespaces=null"]),
    ).rejects.toThrow(/selectedSubjects/);
  });

  it("serves admission apart from the API, and authenticates admission callers (client certificate or a network fence)", async () => {
    const render = async (...args: string[]) =>
      parseAllDocuments(await helm(["template", release, CHART, "-n", ns, ...args]))
        .map((d) => d.toJS())
        .filter(Boolean);
    const deployment = (objs: Awaited<ReturnType<typeof render>>) =>
      objs.find((o) => o.kind === "Deployment" && o.metadata.name === `${fullname}-webhook`);
    const env = (objs: Awaited<ReturnType<typeof render>>) =>
      Object.fromEntries(
        deployment(objs).spec.template.spec.containers[0].env.map((e: { name: string; value?: string }) => [
          e.name,
          e.value,
        ]),
      );

    // Default: client-certificate mode, CA from <fullname>-admission-client-ca; two Service ports.
    const defaults = await render();
    expect(env(defaults)).toMatchObject({
      COUNTERSIGN_PORT: "8443",
      COUNTERSIGN_API_PORT: "8444",
      COUNTERSIGN_ADMISSION_AUTH: "client-cert",
      COUNTERSIGN_ADMISSION_CLIENT_CA_FILE: "/etc/countersign-admission/ca.crt",
    });
    expect(deployment(defaults).spec.template.spec.volumes).toContainEqual({
      name: "admission-client-ca",
      configMap: { name: `${fullname}-admission-client-ca`, items: [{ key: "ca.crt", path: "ca.crt" }] },
    });
    const svc = defaults.find((o) => o.kind === "Service" && o.metadata.name === `${fullname}-webhook`);
    expect(svc.spec.ports).toEqual([
      { name: "admission", port: 443, targetPort: "admission", protocol: "TCP" },
      { name: "api", port: 8444, targetPort: "api", protocol: "TCP" },
    ]);
    // Probes on the plain-HTTP health port (answered under overload, unlike a TLS handshake).
    const container = deployment(defaults).spec.template.spec.containers[0];
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "health", scheme: "HTTP" });
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "health", scheme: "HTTP" });
    expect(container.ports).toContainEqual({ name: "health", containerPort: 8081, protocol: "TCP" });
    expect(env(defaults)).toMatchObject({
      COUNTERSIGN_HEALTH_PORT: "8081",
      COUNTERSIGN_MAX_IN_FLIGHT_REVIEWS: "128",
    });
    expect(defaults.some((o) => o.kind === "NetworkPolicy")).toBe(false);

    // A Secret and pinned names.
    const pinned = await render("-f", join(CHART, "ci", "cert-manager-values.yaml"));
    expect(env(pinned).COUNTERSIGN_ADMISSION_CLIENT_NAMES).toBe("kube-apiserver-webhook-client");
    expect(deployment(pinned).spec.template.spec.volumes).toContainEqual({
      name: "admission-client-ca",
      secret: { secretName: "apiserver-webhook-client-ca", items: [{ key: "ca.crt", path: "ca.crt" }] },
    });

    // networkPolicy mode: no certificate check, and a NetworkPolicy fencing the admission port.
    const fenced = await render("-f", join(CHART, "ci", "network-policy-values.yaml"));
    expect(env(fenced).COUNTERSIGN_ADMISSION_AUTH).toBe("network");
    expect(env(fenced).COUNTERSIGN_ADMISSION_CLIENT_CA_FILE).toBeUndefined();
    const policy = fenced.find((o) => o.kind === "NetworkPolicy");
    expect(policy.spec.policyTypes).toEqual(["Ingress"]);
    expect(policy.spec.ingress[0]).toEqual({
      from: [{ ipBlock: { cidr: "10.0.0.0/28" } }, { ipBlock: { cidr: "172.16.5.4/32" } }],
      ports: [{ port: "admission", protocol: "TCP" }],
    });
    // The API port is off here (apiPort 0); only metrics and health stay open to all.
    expect(policy.spec.ingress[1]).toEqual({
      ports: [
        { port: "metrics", protocol: "TCP" },
        { port: "health", protocol: "TCP" },
      ],
    });
    await expect(
      helm(["template", release, CHART, "--set", "webhook.admissionAuth.mode=networkPolicy"]),
    ).rejects.toThrow(/apiServerCIDRs/);
    await expect(
      helm(["template", release, CHART, "--set", "webhook.admissionAuth.mode=anyone"]),
    ).rejects.toThrow(/admissionAuth\/mode.*must be one of 'clientCert', 'networkPolicy'/);
  });

  it("renders the same webhook configuration the code registers", async () => {
    const rendered = await helm([
      "template",
      release,
      CHART,
      "-n",
      ns,
      "-f",
      join(CHART, "ci", "cert-manager-values.yaml"),
    ]);
    const vwc = parseAllDocuments(rendered)
      .map((d) => d.toJS())
      .find((o) => o?.kind === "ValidatingWebhookConfiguration");
    const code = webhookConfiguration({
      name: fullname,
      caBundlePem: "x",
      service: { namespace: ns, name: `${fullname}-webhook` },
      installNamespace: ns,
      subjects: {
        users: ["argo-bot@example.com"],
        groups: ["llm-agents"],
        serviceAccountNamespaces: ["ai-agents", "argocd"],
      },
      excludedNamespaces: ["monitoring"],
      failurePolicy: "Ignore",
    });
    const strip = (w: V1ValidatingWebhook) => {
      const { clientConfig, ...rest } = w;
      return { ...rest, service: { ...clientConfig.service } };
    };
    expect((vwc.webhooks as V1ValidatingWebhook[]).map(strip)).toEqual(code.webhooks!.map(strip));
  });

  it("installs, and the webhook and controller run with the chart's own service accounts: the whole flow works", async () => {
    // The CA of the test API server's webhook client certificate, where the chart reads it.
    await cp.ensureNamespace(ns);
    await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedConfigMap({
        namespace: ns,
        body: {
          metadata: { name: `${fullname}-admission-client-ca` },
          data: { "ca.crt": cp.webhookClient.ca.certPem },
        },
      });
    await helm([
      "install",
      release,
      CHART,
      "-n",
      ns,
      "--set",
      `webhook.port=${WEBHOOK_PORT}`,
      "--set",
      `webhook.apiPort=${WEBHOOK_PORT + 1}`,
      "--set",
      `webhook.selectedSubjects.serviceAccountNamespaces={${agentsNs}}`,
    ]);
    const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
    const deployments = await kubectl(["get", "deploy,svc,pdb,sa,role,rolebinding", "-n", ns, "-o", "name"]);
    expect(deployments).toContain(`deployment.apps/${fullname}-webhook`);
    expect(deployments).toContain(`deployment.apps/${fullname}-controller`);
    expect(deployments).toContain(`poddisruptionbudget.policy/${fullname}-webhook`);

    // No kubelet: run the two roles here, as the chart's service accounts.
    const webhookKc = await tokenKubeconfig(`${fullname}-webhook`);
    const controllerKc = await tokenKubeconfig(`${fullname}-controller`);
    const controllerEnv = {
      COUNTERSIGN_TLS_SECRET: `${fullname}-webhook-tls`,
      COUNTERSIGN_SERVICE_NAME: `${fullname}-webhook`,
      COUNTERSIGN_WEBHOOK_CONFIGURATION: fullname,
      COUNTERSIGN_LEASE_DURATION: "4s",
      COUNTERSIGN_METRICS_PORT: String(WEBHOOK_PORT + 2000),
      POD_NAME: "controller-0",
    };
    startProcess("controller", controllerKc, controllerEnv);
    await eventually(
      async () =>
        (await core.readNamespacedSecret({ name: `${fullname}-webhook-tls`, namespace: ns })).data?.[
          "tls.crt"
        ],
      30_000,
      "TLS Secret written by the controller",
    );
    // The controller writes the Secret first and the caBundle after it: poll for the second.
    const vwc = await eventually(
      async () => {
        const current = await cp
          .adminKubeConfig()
          .makeApiClient(AdmissionregistrationV1Api)
          .readValidatingWebhookConfiguration({ name: fullname });
        return current.webhooks?.every((w) => w.clientConfig.caBundle) ? current : undefined;
      },
      30_000,
      "caBundle injected into every webhook of the configuration",
    );
    expect(vwc.webhooks?.every((w) => w.clientConfig.caBundle)).toBe(true);

    // What the pod's volume would hold: the ConfigMap's CA, as a file.
    const caFile = join(cp.dir, `chart-admission-client-ca-${ns}.crt`);
    writeFileSync(caFile, cp.webhookClient.ca.certPem);
    startProcess("webhook", webhookKc, {
      COUNTERSIGN_PORT: String(WEBHOOK_PORT),
      COUNTERSIGN_API_PORT: String(WEBHOOK_PORT + 1),
      COUNTERSIGN_ADMISSION_AUTH: "client-cert",
      COUNTERSIGN_ADMISSION_CLIENT_CA_FILE: caFile,
      COUNTERSIGN_TLS_SECRET: `${fullname}-webhook-tls`,
      COUNTERSIGN_IDENTITIES: `system:serviceaccount:${ns}:${fullname}-controller`,
      COUNTERSIGN_METRICS_PORT: String(WEBHOOK_PORT + 3000),
      COUNTERSIGN_HEALTH_PORT: String(WEBHOOK_PORT + 4000),
      POD_NAME: "webhook-0",
    });
    // Publish it as the Service's endpoint (what the endpoints controller would do).
    await cp
      .adminKubeConfig()
      .makeApiClient(DiscoveryV1Api)
      .createNamespacedEndpointSlice({
        namespace: ns,
        body: {
          metadata: {
            name: `${fullname}-webhook-local`,
            labels: { "kubernetes.io/service-name": `${fullname}-webhook` },
          },
          addressType: "IPv4",
          endpoints: [{ addresses: [hostIp()], conditions: { ready: true } }],
          ports: [{ name: "admission", port: WEBHOOK_PORT, protocol: "TCP" }],
        },
      });

    // A policy, an agent, an approver: the flow through the chart's webhook configuration.
    await cp.ensureNamespace(target);
    const agent = await cp.serviceAccountIdentity(agentsNs, "bot");
    const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    await grantServiceAccount(
      cp,
      target,
      { namespace: agentsNs, name: "bot" },
      ["configmaps"],
      ["get", "delete"],
    );
    const approver = await approverIdentity(cp, "erin@example.com", ["chart-approvers"], false);
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: uniqueName("chart-approver") },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `${fullname}-approver` },
        subjects: [{ kind: "Group", name: "chart-approvers", apiGroup: "rbac.authorization.k8s.io" }],
      },
    });
    await eventually(
      async () => {
        try {
          await cp.apply([
            {
              apiVersion: "countersign.io/v1alpha1",
              kind: "ApprovalPolicy",
              metadata: { name: uniqueName("chart-policy") },
              spec: {
                subjects: { serviceAccounts: [{ namespace: agentsNs }] },
                match: [
                  {
                    operations: ["DELETE"],
                    apiGroups: [""],
                    resources: ["configmaps"],
                    namespaces: [target],
                  },
                ],
                rules: [
                  {
                    name: "deletes",
                    action: "RequireApproval",
                    approval: { approvers: { groups: ["chart-approvers"] } },
                  },
                ],
              },
            } as never,
          ]);
          return true;
        } catch {
          return false; // the policy webhook is not reachable yet
        }
      },
      30_000,
      "policy accepted through the chart's webhook",
    );
    await core.createNamespacedConfigMap({
      namespace: target,
      body: { metadata: { name: "flags" }, data: { a: "b" } },
    });
    const denial = await eventually(
      async () => {
        try {
          await agent.kubeConfig
            .makeApiClient(CoreV1Api)
            .deleteNamespacedConfigMap({ name: "flags", namespace: target });
          return undefined;
        } catch (err) {
          const m = kubeStatusOf(err)?.message ?? "";
          return /needs a human approval/.test(m) ? m : undefined;
        }
      },
      30_000,
      "the gate, through the chart's webhook configuration",
    );
    const name = /kubectl approve (\S+) -n/.exec(denial)![1]!;
    await eventually(
      async () => {
        const ar = (await cp.adminKubeConfig().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
          group: "countersign.io",
          version: "v1alpha1",
          namespace: target,
          plural: "approvalrequests",
          name,
        })) as ApprovalRequest;
        return ar.status?.phase === "Pending";
      },
      15_000,
      "Pending (controller)",
    );
    await decide(approver, target, name, "Approve", "chart test");
    await eventually(
      async () => {
        try {
          await agent.kubeConfig
            .makeApiClient(CoreV1Api)
            .deleteNamespacedConfigMap({ name: "flags", namespace: target });
          return true;
        } catch {
          return false;
        }
      },
      15_000,
      "approved delete allowed",
    );
    await eventually(
      async () =>
        (await listAuditRecords(cp.adminKubeConfig(), target)).some((r) => r.spec.event === "Executed"),
      20_000,
      "Executed record",
    );
    expect(verifyChain(await listAuditRecords(cp.adminKubeConfig(), target))).toEqual([]);
    // The webhook answers the kubelet's probes on its plain-HTTP health port.
    expect(await (await fetch(`http://127.0.0.1:${WEBHOOK_PORT + 4000}/readyz`)).text()).toBe("ok");
    // Both processes export metrics on their own port.
    const webhookMetrics = await (await fetch(`http://127.0.0.1:${WEBHOOK_PORT + 3000}/metrics`)).text();
    expect(webhookMetrics).toMatch(
      /countersign_admission_decisions_total\{policy="chart-policy-\w+",outcome="approval-consumed"\} 1/,
    );
    const controllerMetrics = await (await fetch(`http://127.0.0.1:${WEBHOOK_PORT + 2000}/metrics`)).text();
    expect(controllerMetrics).toMatch(
      /countersign_approval_time_to_decision_seconds_count\{outcome="Approved"\} 1/,
    );
  });

  it("needs every permission it asks for: each rule removed breaks an operation its component performs", async () => {
    const webhookKc = (await cp.serviceAccountIdentity(ns, `${fullname}-webhook`)).kubeConfig;
    const controllerKc = (await cp.serviceAccountIdentity(ns, `${fullname}-controller`)).kubeConfig;
    const probes = rbacProbes(webhookKc, controllerKc);
    const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    const roles = [
      { kind: "ClusterRole", name: `${fullname}-webhook` },
      { kind: "Role", name: `${fullname}-webhook` },
      { kind: "ClusterRole", name: `${fullname}-controller` },
      { kind: "Role", name: `${fullname}-controller` },
    ] as const;
    let checked = 0;
    for (const role of roles) {
      const read = () =>
        role.kind === "ClusterRole"
          ? rbac.readClusterRole({ name: role.name })
          : rbac.readNamespacedRole({ name: role.name, namespace: ns });
      const write = (body: Awaited<ReturnType<typeof read>>) =>
        role.kind === "ClusterRole"
          ? rbac.replaceClusterRole({ name: role.name, body })
          : rbac.replaceNamespacedRole({ name: role.name, namespace: ns, body });
      const original = await read();
      for (let i = 0; i < (original.rules ?? []).length; i++) {
        const rule = original.rules![i]!;
        const key = `${role.kind}/${role.name.endsWith("-webhook") ? "webhook" : "controller"}: ${rule.apiGroups?.join(",")}/${rule.resources?.join(",")} [${rule.verbs.join(",")}]`;
        const probe = probes.find((p) =>
          p.matches(
            role.name.endsWith("-webhook") ? "webhook" : "controller",
            rule.apiGroups ?? [],
            rule.resources ?? [],
            rule.verbs,
          ),
        );
        expect(probe, `no probe shows why ${key} is needed`).toBeDefined();
        await expect(probe!.run(), `with ${key}`).resolves.toBeUndefined();
        const current = await read();
        current.rules = current.rules!.filter((_, j) => j !== i);
        await write(current);
        await eventually(
          async () =>
            (await probe!.run().then(
              () => "ok",
              (e: unknown) => (isForbidden(e) ? "forbidden" : `other: ${e}`),
            )) === "forbidden",
          5000,
          `${key} removed → forbidden`,
        );
        const restored = await read();
        restored.rules = original.rules;
        await write(restored);
        await eventually(
          async () =>
            probe!.run().then(
              () => true,
              () => false,
            ),
          5000,
          `${key} restored`,
        );
        checked++;
      }
    }
    console.log(`[countersign] least privilege: ${checked} chart RBAC rules each shown necessary`);
    expect(checked).toBeGreaterThanOrEqual(31);
  });

  it("upgrades to a newer chart version without touching ApprovalRequests or AuditRecords", async () => {
    const custom = cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    const before = (await custom.listNamespacedCustomObject({
      group: "countersign.io",
      version: "v1alpha1",
      namespace: target,
      plural: "approvalrequests",
    })) as { items: ApprovalRequest[] };
    const recordsBefore = await listAuditRecords(cp.adminKubeConfig(), target);
    // The installed release is this chart (0.1.0, the first version); upgrade it to a next version.
    const next = join(tmpdir(), uniqueName("chart-next"));
    await run("cp", ["-r", CHART, next]);
    writeFileSync(
      join(next, "Chart.yaml"),
      readFileSync(join(next, "Chart.yaml"), "utf8").replace(/^version: .*/m, "version: 0.1.1"),
    );
    await helm(["upgrade", release, next, "-n", ns, "--reuse-values", "--set", "controller.retention=48h"]);
    const history = await helm(["history", release, "-n", ns, "-o", "json"]);
    expect(JSON.parse(history)).toHaveLength(2);
    const after = (await custom.listNamespacedCustomObject({
      group: "countersign.io",
      version: "v1alpha1",
      namespace: target,
      plural: "approvalrequests",
    })) as { items: ApprovalRequest[] };
    expect(after.items.map((i) => i.metadata.uid)).toEqual(before.items.map((i) => i.metadata.uid));
    expect((await listAuditRecords(cp.adminKubeConfig(), target)).map((r) => r.spec.hash)).toEqual(
      recordsBefore.map((r) => r.spec.hash),
    );
  });

  it("uninstall removes the webhook configuration first (pre-delete hook), keeping the audit trail", async () => {
    for (const p of procs) await stopProcess(p);
    const batch = cp.adminKubeConfig().makeApiClient(BatchV1Api);
    const admission = cp.adminKubeConfig().makeApiClient(AdmissionregistrationV1Api);
    const uninstall = helm(["uninstall", release, "-n", ns, "--timeout", "90s"]);
    // No kubelet: play the hook Job's pod with the image's entrypoint and the hook's own
    // service account, then report the Job complete.
    const job = await eventually(
      async () => {
        try {
          return await batch.readNamespacedJob({ name: `${fullname}-uninstall`, namespace: ns });
        } catch {
          return undefined;
        }
      },
      30_000,
      "pre-delete hook Job",
    );
    expect(job.spec?.template.spec?.serviceAccountName).toBe(`${fullname}-uninstall`);
    const hookKc = await tokenKubeconfig(`${fullname}-uninstall`);
    const hook = startProcess("uninstall", hookKc, { COUNTERSIGN_WEBHOOK_CONFIGURATION: fullname });
    const code = await new Promise<number | null>((r) => hook.once("exit", r));
    expect(code, (hook as ChildProcess & { log: () => string }).log()).toBe(0);
    await expect(admission.readValidatingWebhookConfiguration({ name: fullname })).rejects.toSatisfy(
      isNotFound,
    );
    const deploymentStillThere = await kubectl(["get", "deploy", "-n", ns, "-o", "name"]);
    expect(deploymentStillThere).toContain(`${fullname}-webhook`); // the webhook config went first
    const now = new Date();
    await batch.replaceNamespacedJobStatus({
      name: `${fullname}-uninstall`,
      namespace: ns,
      body: {
        ...job,
        status: {
          startTime: now,
          completionTime: now,
          succeeded: 1,
          conditions: [
            { type: "SuccessCriteriaMet", status: "True", lastTransitionTime: now, lastProbeTime: now },
            { type: "Complete", status: "True", lastTransitionTime: now, lastProbeTime: now },
          ],
        },
      },
    });
    await uninstall;
    expect(await kubectl(["get", "deploy", "-n", ns, "-o", "name"])).toBe("");
    expect((await listAuditRecords(cp.adminKubeConfig(), target)).length).toBeGreaterThan(0);
  });
});

function isForbidden(err: unknown): boolean {
  return kubeStatusOf(err)?.code === 403;
}

interface Probe {
  matches(
    component: "webhook" | "controller",
    apiGroups: string[],
    resources: string[],
    verbs: string[],
  ): boolean;
  run(): Promise<void>;
}

/** One representative API call per rule: what the component does with that permission. */
function rbacProbes(webhook: KubeConfig, controller: KubeConfig): Probe[] {
  const G = { group: "countersign.io", version: "v1alpha1" };
  const p = (
    component: "webhook" | "controller",
    resource: string,
    verb: string,
    run: () => Promise<unknown>,
  ): Probe => ({
    matches: (c, _groups, resources, verbs) =>
      c === component && resources.includes(resource) && verbs.includes(verb),
    run: async () => {
      try {
        await run();
      } catch (err) {
        // Only a refusal by RBAC counts as failure here; "not found" means the call was allowed.
        if (isForbidden(err)) throw err;
      }
    },
  });
  const wCustom = webhook.makeApiClient(CustomObjectsApi);
  const cCustom = controller.makeApiClient(CustomObjectsApi);
  const ar = (n: string) => ({ ...G, namespace: target, plural: "approvalrequests", name: n });
  const event = (kc: KubeConfig) =>
    kc.makeApiClient(CoreV1Api).createNamespacedEvent({
      namespace: ns,
      dryRun: "All",
      body: {
        metadata: { generateName: "probe." },
        involvedObject: { kind: "Pod", name: "x", namespace: ns },
        reason: "Probe",
        message: "rbac probe",
      },
    });
  return [
    p("webhook", "approvalpolicies", "list", () =>
      wCustom.listClusterCustomObject({ ...G, plural: "approvalpolicies" }),
    ),
    p("webhook", "serviceaccounts", "list", () =>
      webhook.makeApiClient(CoreV1Api).listServiceAccountForAllNamespaces({ limit: 1 }),
    ),
    p("webhook", "approvalrequests", "get", () => wCustom.getNamespacedCustomObject(ar("nope"))),
    p("webhook", "approvalrequests/status", "update", () =>
      wCustom.replaceNamespacedCustomObjectStatus({
        ...ar("nope"),
        body: {
          apiVersion: "countersign.io/v1alpha1",
          kind: "ApprovalRequest",
          metadata: { name: "nope", namespace: target },
        },
      }),
    ),
    p("webhook", "events", "create", () => event(webhook)),
    p(
      "webhook",
      "subjectaccessreviews",
      "create",
      () =>
        webhook.makeApiClient(RbacAuthorizationV1Api) &&
        import("@kubernetes/client-node").then(({ AuthorizationV1Api }) =>
          webhook.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
            body: {
              spec: {
                user: "x",
                resourceAttributes: {
                  group: "countersign.io",
                  resource: "approvalrequests",
                  verb: "approve",
                },
              },
            },
          }),
        ),
    ),
    p("webhook", "tokenreviews", "create", () =>
      import("@kubernetes/client-node").then(({ AuthenticationV1Api }) =>
        webhook
          .makeApiClient(AuthenticationV1Api)
          .createTokenReview({ body: { spec: { token: "not-a-token" } } }),
      ),
    ),
    p("webhook", "auditrecords", "create", () =>
      wCustom.createNamespacedCustomObject({
        ...G,
        namespace: ns,
        plural: "auditrecords",
        dryRun: "All",
        body: { apiVersion: "countersign.io/v1alpha1", kind: "AuditRecord", metadata: { name: "probe" } },
      }),
    ),
    p("webhook", "auditcheckpoints", "update", () =>
      wCustom.replaceNamespacedCustomObject({
        ...G,
        namespace: ns,
        plural: "auditcheckpoints",
        name: "nope",
        body: { apiVersion: "countersign.io/v1alpha1", kind: "AuditCheckpoint", metadata: { name: "nope" } },
      }),
    ),
    p("webhook", "secrets", "create", () =>
      webhook.makeApiClient(CoreV1Api).createNamespacedSecret({
        namespace: ns,
        dryRun: "All",
        body: { metadata: { name: "probe-secret" } },
      }),
    ),
    p("webhook", "secrets", "get", () =>
      webhook
        .makeApiClient(CoreV1Api)
        .readNamespacedSecret({ name: `${fullname}-webhook-tls`, namespace: ns }),
    ),
    p("controller", "approvalrequests", "list", () =>
      cCustom.listClusterCustomObject({ ...G, plural: "approvalrequests", limit: 1 }),
    ),
    p("controller", "approvalrequests/status", "update", () =>
      cCustom.replaceNamespacedCustomObjectStatus({
        ...ar("nope"),
        body: {
          apiVersion: "countersign.io/v1alpha1",
          kind: "ApprovalRequest",
          metadata: { name: "nope", namespace: target },
        },
      }),
    ),
    p("controller", "auditrecords", "list", () =>
      cCustom.listNamespacedCustomObject({ ...G, namespace: target, plural: "auditrecords", limit: 1 }),
    ),
    p("controller", "auditcheckpoints", "update", () =>
      cCustom.replaceNamespacedCustomObject({
        ...G,
        namespace: target,
        plural: "auditcheckpoints",
        name: "nope",
        body: { apiVersion: "countersign.io/v1alpha1", kind: "AuditCheckpoint", metadata: { name: "nope" } },
      }),
    ),
    p("controller", "namespaces", "list", () =>
      controller.makeApiClient(CoreV1Api).listNamespace({ limit: 1 }),
    ),
    p("webhook", "namespaces", "get", () => webhook.makeApiClient(CoreV1Api).readNamespace({ name: target })),
    p("webhook", "auditcheckpoints", "get", () =>
      wCustom.getNamespacedCustomObject({
        ...G,
        namespace: target,
        plural: "auditcheckpoints",
        name: "nope",
      }),
    ),
    p("controller", "approvalpolicies", "list", () =>
      cCustom.listClusterCustomObject({ ...G, plural: "approvalpolicies", limit: 1 }),
    ),
    p("controller", "approvalpolicies/status", "patch", () =>
      cCustom.patchClusterCustomObjectStatus({ ...G, plural: "approvalpolicies", name: "nope", body: [] }),
    ),
    p("controller", "events", "create", () => event(controller)),
    p("controller", "serviceaccounts", "list", () =>
      controller.makeApiClient(CoreV1Api).listServiceAccountForAllNamespaces({ limit: 1 }),
    ),
    p("controller", "rolebindings", "list", () =>
      controller.makeApiClient(RbacAuthorizationV1Api).listRoleBindingForAllNamespaces({ limit: 1 }),
    ),
    p("controller", "subjectaccessreviews", "create", () =>
      import("@kubernetes/client-node").then(({ AuthorizationV1Api }) =>
        controller.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
          body: { spec: { user: "x", resourceAttributes: { verb: "impersonate", resource: "users" } } },
        }),
      ),
    ),
    p("controller", "validatingwebhookconfigurations", "watch", () =>
      controller
        .makeApiClient(AdmissionregistrationV1Api)
        .listValidatingWebhookConfiguration({ limit: 1, watch: false }),
    ),
    p("controller", "validatingwebhookconfigurations", "get", () =>
      controller
        .makeApiClient(AdmissionregistrationV1Api)
        .readValidatingWebhookConfiguration({ name: fullname }),
    ),
    p("controller", "configmaps", "get", () =>
      controller.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: "nope", namespace: target }),
    ),
    p("controller", "deployments", "get", () =>
      import("@kubernetes/client-node").then(({ AppsV1Api }) =>
        controller.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: "nope", namespace: target }),
      ),
    ),
    p("controller", "roles", "get", () =>
      controller
        .makeApiClient(RbacAuthorizationV1Api)
        .readNamespacedRole({ name: "nope", namespace: target }),
    ),
    // Slack replay markers (rendered only with notifications.config).
    p("webhook", "leases", "create", () =>
      import("@kubernetes/client-node").then(({ CoordinationV1Api }) =>
        webhook.makeApiClient(CoordinationV1Api).createNamespacedLease({
          namespace: ns,
          dryRun: "All",
          body: { metadata: { name: "slack-replay-probe" } },
        }),
      ),
    ),
    p("controller", "leases", "get", () =>
      import("@kubernetes/client-node").then(({ CoordinationV1Api }) =>
        controller.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: "nope", namespace: ns }),
      ),
    ),
    p("controller", "secrets", "create", () =>
      controller.makeApiClient(CoreV1Api).createNamespacedSecret({
        namespace: ns,
        dryRun: "All",
        body: { metadata: { name: "probe-secret" } },
      }),
    ),
    p("controller", "secrets", "get", () =>
      controller
        .makeApiClient(CoreV1Api)
        .readNamespacedSecret({ name: "countersign-fingerprint-key", namespace: ns }),
    ),
  ];
}

function stubCertManagerCrds(): string {
  const crd = (kind: string, plural: string) => `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: ${plural}.cert-manager.io }
spec:
  group: cert-manager.io
  scope: Namespaced
  names: { kind: ${kind}, plural: ${plural}, singular: ${kind.toLowerCase()} }
  versions:
    - name: v1
      served: true
      storage: true
      schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
`;
  return `${crd("Certificate", "certificates")}---\n${crd("Issuer", "issuers")}`;
}
