/**
 * A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on
 * loopback, the envtest approach: generated CA, serving and client certificates, RBAC
 * authorization, a service-account issuer and signing key, an admin kubeconfig, and an
 * admission configuration under which kube-apiserver presents a client certificate (from
 * its own webhook-client CA) to every admission webhook, so webhooks can authenticate it.
 *
 * Used by the integration tests and by `npm run dev`. Child processes are started
 * with a parent-death signal (setpriv --pdeathsig) and killed on process exit, so
 * a crashed or interrupted test run leaves no orphan API server behind.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { applyObjects, installCrds } from "../kube/apply.js";
import { isAlreadyExists } from "../kube/errors.js";
import { kubeConfigFromSpec, writeKubeconfig } from "../kube/kubeconfig.js";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  createSigningKeyPair,
  issueCertificate,
  type KeyPairPem,
  loadCertificateAuthority,
} from "../pki/certificates.js";
import { type ControlPlaneBinaries, controlPlaneBinaries, REPO_ROOT } from "./binaries.js";

export const SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local";
const READY_TIMEOUT_MS = 90_000;
/** The kube-controller-manager controllers the harness runs. */
const CONTROLLERS = [
  "namespace-controller",
  "garbage-collector-controller",
  "clusterrole-aggregation-controller",
  "serviceaccount-controller",
  "serviceaccount-token-controller",
  "root-ca-certificate-publisher-controller",
];
const STOP_TIMEOUT_MS = 10_000;

export interface ControlPlaneOptions {
  /** Where certs, kubeconfigs, data and logs go. Default: a fresh temp dir, removed on stop. */
  dir?: string;
  /** Install the CRDs from this directory once ready. Default: the repo's `crds/`. `false` skips. */
  crdDir?: string | false;
  /** Extra kube-apiserver flags (e.g. feature gates). */
  extraApiServerArgs?: string[];
  /**
   * Run kube-controller-manager (namespace deletion, garbage collection, RBAC aggregation,
   * `default` service accounts). Default true.
   */
  controllerManager?: boolean;
  /** Progress messages (start-up steps); default: silent. */
  log?: (message: string) => void;
}

const STATE_FILE = "state.json";

interface ControlPlaneState {
  apiServerPort: number;
  etcdUrl: string;
  startupMs: number;
  pid: number;
}

/** The PKI with which the API server authenticates itself to admission webhooks. */
export interface WebhookClientPki {
  /** The CA a webhook verifies the API server's client certificate against. */
  ca: CertificateAuthority;
  /** The certificate kube-apiserver presents to webhooks (tools that play the API server use it too). */
  client: KeyPairPem;
  /** The client certificate's common name. */
  name: string;
}

export const WEBHOOK_CLIENT_NAME = "kube-apiserver-webhook-client";

/** The files kube-apiserver reads to present a client certificate to admission webhooks. Pure. */
export function admissionClientConfig(files: { clientCert: string; clientKey: string; kubeconfig: string }): {
  admissionConfiguration: string;
  kubeconfig: string;
} {
  const plugin = (name: string) =>
    [
      `  - name: ${name}`,
      "    configuration:",
      "      apiVersion: apiserver.config.k8s.io/v1",
      "      kind: WebhookAdmissionConfiguration",
      `      kubeConfigFile: ${JSON.stringify(files.kubeconfig)}`,
    ].join("\n");
  return {
    admissionConfiguration: [
      "apiVersion: apiserver.config.k8s.io/v1",
      "kind: AdmissionConfiguration",
      "plugins:",
      plugin("ValidatingAdmissionWebhook"),
      plugin("MutatingAdmissionWebhook"),
      "",
    ].join("\n"),
    // "*" is the default match: this user is presented to every webhook host.
    kubeconfig: [
      "apiVersion: v1",
      "kind: Config",
      "users:",
      '  - name: "*"',
      "    user:",
      `      client-certificate: ${JSON.stringify(files.clientCert)}`,
      `      client-key: ${JSON.stringify(files.clientKey)}`,
      "",
    ].join("\n"),
  };
}

export interface Identity {
  /** Path of a kubeconfig file for this identity. */
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  username: string;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const child of running) child.kill("SIGKILL");
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() =>
        addr && typeof addr === "object" ? resolvePort(addr.port) : reject(new Error("no port")),
      );
    });
  });
}

/** Fails with a clear message when something already listens on `port`. */
async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((resolveFree, reject) => {
    const srv = createServer();
    srv.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new Error(
              `port 127.0.0.1:${port} is already in use; stop whatever listens there or pick another port`,
            )
          : err,
      ),
    );
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolveFree()));
  });
}

function tail(path: string, lines = 25): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A process this ControlPlane started: how to start it again and how to tell it is ready. */
interface ManagedProcess {
  name: string;
  child: ChildProcess;
  log: string;
  bin: string;
  args: string[];
  ready?: () => Promise<boolean>;
}

/** The control-plane processes a test may stop and start again (fault injection). */
export type RestartableProcess = "etcd" | "kube-apiserver";

export class ControlPlane {
  private processes: ManagedProcess[] = [];
  private stopped = false;
  private attached = false;

  private constructor(
    readonly dir: string,
    private readonly ownsDir: boolean,
    readonly binaries: ControlPlaneBinaries,
    readonly ca: CertificateAuthority,
    readonly apiServerPort: number,
    readonly etcdUrl: string,
    readonly adminKubeconfigPath: string,
    /** How the API server authenticates to admission webhooks. */
    readonly webhookClient: WebhookClientPki,
    /** Milliseconds from start() to a ready API server with CRDs installed. */
    public startupMs: number,
  ) {}

  get server(): string {
    return `https://127.0.0.1:${this.apiServerPort}`;
  }

  get caPem(): string {
    return this.ca.certPem;
  }

  /** API server audit log (JSON lines), with the auditAnnotations webhooks return. */
  get auditLogPath(): string {
    return join(this.dir, "audit.log");
  }

  adminKubeConfig(): KubeConfig {
    return loadKubeConfigFile(this.adminKubeconfigPath);
  }

  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const log = options.log ?? (() => {});
    const t0 = Date.now();
    const binaries = await controlPlaneBinaries();
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), "countersign-cp-"));
    mkdirSync(dir, { recursive: true });
    installExitHook();

    // PKI: one CA signs the API server's serving cert and every client cert.
    const ca = await createCertificateAuthority("countersign-controlplane-ca");
    const serving = await issueCertificate(ca, {
      commonName: "kube-apiserver",
      dnsNames: ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
      ipAddresses: ["127.0.0.1", "10.0.0.1"],
      usage: "server",
    });
    const admin = await issueCertificate(ca, {
      commonName: "countersign-admin",
      organizations: ["system:masters"],
      usage: "client",
    });
    // A separate CA for the client certificate kube-apiserver presents to webhooks: a webhook
    // that trusts it trusts nothing else (not the cluster's users, whose certs the main CA signs).
    const webhookClientCa = await createCertificateAuthority("countersign-webhook-client-ca");
    const webhookClientCert = await issueCertificate(webhookClientCa, {
      commonName: WEBHOOK_CLIENT_NAME,
      dnsNames: [WEBHOOK_CLIENT_NAME],
      usage: "client",
    });
    const saKeys = await createSigningKeyPair();
    const files = {
      ca: join(dir, "ca.crt"),
      servingCert: join(dir, "apiserver.crt"),
      servingKey: join(dir, "apiserver.key"),
      saPub: join(dir, "sa.pub"),
      saKey: join(dir, "sa.key"),
      auditPolicy: join(dir, "audit-policy.yaml"),
      webhookClientCa: join(dir, "webhook-client-ca.crt"),
      webhookClientCaKey: join(dir, "webhook-client-ca.key"),
      webhookClientCert: join(dir, "webhook-client.crt"),
      webhookClientKey: join(dir, "webhook-client.key"),
      webhookClientKubeconfig: join(dir, "webhook-client.kubeconfig"),
      admissionConfig: join(dir, "admission-config.yaml"),
    };
    writeFileSync(files.ca, ca.certPem);
    writeFileSync(files.servingCert, serving.certPem);
    writeFileSync(files.servingKey, serving.keyPem, { mode: 0o600 });
    writeFileSync(files.saPub, saKeys.publicKeyPem);
    writeFileSync(files.saKey, saKeys.privateKeyPem, { mode: 0o600 });
    writeFileSync(files.webhookClientCa, webhookClientCa.certPem);
    writeFileSync(files.webhookClientCaKey, webhookClientCa.keyPem, { mode: 0o600 });
    writeFileSync(files.webhookClientCert, webhookClientCert.certPem);
    writeFileSync(files.webhookClientKey, webhookClientCert.keyPem, { mode: 0o600 });
    const admissionFiles = admissionClientConfig({
      clientCert: files.webhookClientCert,
      clientKey: files.webhookClientKey,
      kubeconfig: files.webhookClientKubeconfig,
    });
    writeFileSync(files.webhookClientKubeconfig, admissionFiles.kubeconfig, { mode: 0o600 });
    writeFileSync(files.admissionConfig, admissionFiles.admissionConfiguration);
    // Metadata level for writes is enough to see who did what and the webhook's audit annotations.
    writeFileSync(
      files.auditPolicy,
      [
        "apiVersion: audit.k8s.io/v1",
        "kind: Policy",
        "omitStages: [RequestReceived]",
        "rules:",
        "  - level: None",
        "    verbs: [get, list, watch]",
        "  - level: Metadata",
        "",
      ].join("\n"),
    );

    const [etcdClientPort, etcdPeerPort, apiServerPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const adminKubeconfigPath = writeKubeconfig(join(dir, "admin.kubeconfig"), {
      server: `https://127.0.0.1:${apiServerPort}`,
      caPem: ca.certPem,
      user: "countersign-admin",
      credentials: { clientCertificatePem: admin.certPem, clientKeyPem: admin.keyPem },
    });

    const cp = new ControlPlane(
      dir,
      ownsDir,
      binaries,
      ca,
      apiServerPort,
      etcdUrl,
      adminKubeconfigPath,
      { ca: webhookClientCa, client: webhookClientCert, name: WEBHOOK_CLIENT_NAME },
      0,
    );
    try {
      log(`starting etcd on ${etcdUrl}`);
      await assertPortFree(etcdClientPort);
      cp.spawnChild(
        "etcd",
        binaries.etcd,
        [
          "--name=countersign",
          `--data-dir=${join(dir, "etcd")}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
          `--initial-cluster=countersign=http://127.0.0.1:${etcdPeerPort}`,
          "--unsafe-no-fsync",
          "--log-level=warn",
        ],
        () => getOk(`${etcdUrl}/health`),
      );
      await cp.waitFor("etcd", 30_000);

      log(`starting kube-apiserver on https://127.0.0.1:${apiServerPort}`);
      await assertPortFree(apiServerPort);
      cp.spawnChild(
        "kube-apiserver",
        binaries.kubeApiserver,
        [
          `--etcd-servers=${etcdUrl}`,
          "--bind-address=127.0.0.1",
          "--advertise-address=127.0.0.1",
          `--secure-port=${apiServerPort}`,
          `--cert-dir=${join(dir, "apiserver-certs")}`,
          `--tls-cert-file=${files.servingCert}`,
          `--tls-private-key-file=${files.servingKey}`,
          `--client-ca-file=${files.ca}`,
          "--authorization-mode=RBAC",
          `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
          `--service-account-key-file=${files.saPub}`,
          `--service-account-signing-key-file=${files.saKey}`,
          "--service-cluster-ip-range=10.0.0.0/24",
          "--allow-privileged=true",
          `--admission-control-config-file=${files.admissionConfig}`,
          `--audit-policy-file=${files.auditPolicy}`,
          `--audit-log-path=${join(dir, "audit.log")}`,
          "--audit-log-format=json",
          "--profiling=false",
          ...(options.extraApiServerArgs ?? []),
        ],
        () =>
          getOk(`https://127.0.0.1:${apiServerPort}/readyz`, {
            ca: ca.certPem,
            cert: admin.certPem,
            key: admin.keyPem,
          }),
      );
      await cp.waitFor("kube-apiserver", READY_TIMEOUT_MS);
      if (options.controllerManager !== false) await cp.startControllerManager(files, log);
      const crdDir = options.crdDir === undefined ? join(REPO_ROOT, "crds") : options.crdDir;
      if (crdDir !== false && existsSync(crdDir)) {
        const names = await installCrds(cp.adminKubeConfig(), crdDir);
        log(`installed CRDs: ${names.join(", ")}`);
      }
      cp.startupMs = Date.now() - t0;
      writeFileSync(join(dir, "ca.key"), ca.keyPem, { mode: 0o600 });
      const state: ControlPlaneState = { apiServerPort, etcdUrl, startupMs: cp.startupMs, pid: process.pid };
      writeFileSync(join(dir, STATE_FILE), JSON.stringify(state, null, 2));
      log(`control plane ready in ${cp.startupMs} ms`);
      return cp;
    } catch (err) {
      await cp.stop();
      throw err;
    }
  }

  /**
   * Attaches to a control plane another process started (its `dir`), e.g. the one the test
   * run's global setup started. Identity helpers work; stop() leaves the processes alone.
   */
  static async attach(dir: string): Promise<ControlPlane> {
    const statePath = join(dir, STATE_FILE);
    if (!existsSync(statePath)) throw new Error(`no control plane state at ${statePath}; is it running?`);
    const state = JSON.parse(readFileSync(statePath, "utf8")) as ControlPlaneState;
    const ca = await loadCertificateAuthority(
      readFileSync(join(dir, "ca.crt"), "utf8"),
      readFileSync(join(dir, "ca.key"), "utf8"),
    );
    const webhookClientCa = await loadCertificateAuthority(
      readFileSync(join(dir, "webhook-client-ca.crt"), "utf8"),
      readFileSync(join(dir, "webhook-client-ca.key"), "utf8"),
    );
    const cp = new ControlPlane(
      dir,
      false,
      await controlPlaneBinaries(),
      ca,
      state.apiServerPort,
      state.etcdUrl,
      join(dir, "admin.kubeconfig"),
      {
        ca: webhookClientCa,
        client: {
          certPem: readFileSync(join(dir, "webhook-client.crt"), "utf8"),
          keyPem: readFileSync(join(dir, "webhook-client.key"), "utf8"),
        },
        name: WEBHOOK_CLIENT_NAME,
      },
      state.startupMs,
    );
    cp.attached = true;
    return cp;
  }

  /**
   * kube-controller-manager with the controllers a real cluster's API objects depend on:
   * namespace deletion, garbage collection, ClusterRole aggregation (the built-in admin/edit/
   * view roles), `default` service accounts and the root CA ConfigMap. Each controller acts as
   * its own service account (--use-service-account-credentials), as in kubeadm clusters.
   */
  private async startControllerManager(
    files: { ca: string; saKey: string },
    log: (message: string) => void,
  ): Promise<void> {
    const cert = await issueCertificate(this.ca, {
      commonName: "system:kube-controller-manager",
      usage: "client",
    });
    const kubeconfig = writeKubeconfig(join(this.dir, "controller-manager.kubeconfig"), {
      server: this.server,
      caPem: this.ca.certPem,
      user: "system:kube-controller-manager",
      credentials: { clientCertificatePem: cert.certPem, clientKeyPem: cert.keyPem },
    });
    const port = await freePort();
    log(`starting kube-controller-manager (${CONTROLLERS.join(", ")})`);
    this.spawnChild("kube-controller-manager", this.binaries.kubeControllerManager, [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      "--bind-address=127.0.0.1",
      `--secure-port=${port}`,
      `--cert-dir=${join(this.dir, "controller-manager-certs")}`,
      "--leader-elect=false",
      "--use-service-account-credentials=true",
      `--service-account-private-key-file=${files.saKey}`,
      `--root-ca-file=${files.ca}`,
      `--controllers=${CONTROLLERS.join(",")}`,
      "--profiling=false",
    ]);
    // Ready when its controllers act: the `default` service account exists (the ServiceAccount
    // admission plugin needs it for pods) and the aggregated `edit` role has its rules.
    const kc = this.adminKubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    this.processes.find((p) => p.name === "kube-controller-manager")!.ready = async () => {
      await core.readNamespacedServiceAccount({ name: "default", namespace: "default" });
      return ((await rbac.readClusterRole({ name: "edit" })).rules ?? []).length > 0;
    };
    await this.waitFor("kube-controller-manager", READY_TIMEOUT_MS);
  }

  private spawnChild(name: string, bin: string, args: string[], ready?: () => Promise<boolean>): void {
    const child = this.launch(name, bin, args);
    this.processes.push({
      name,
      child,
      log: join(this.dir, `${name}.log`),
      bin,
      args,
      ...(ready ? { ready } : {}),
    });
  }

  private launch(name: string, bin: string, args: string[]): ChildProcess {
    const logPath = join(this.dir, `${name}.log`);
    const fd = openSync(logPath, "a");
    // setpriv --pdeathsig: the kernel kills the child if this process dies without cleaning up.
    const useSetpriv = existsSync("/usr/bin/setpriv");
    const child = useSetpriv
      ? spawn("/usr/bin/setpriv", ["--pdeathsig", "SIGKILL", "--", bin, ...args], {
          stdio: ["ignore", fd, fd],
        })
      : spawn(bin, args, { stdio: ["ignore", fd, fd] });
    running.add(child);
    child.once("exit", () => running.delete(child));
    return child;
  }

  /**
   * Stops one control-plane process (fault injection: SIGKILL is a crash, SIGTERM a clean
   * stop) and waits until it has exited. Only for a control plane this process started.
   */
  async stopProcess(name: RestartableProcess, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const entry = this.managed(name);
    const { child } = entry;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  /** Starts a stopped process again with the same command line; resolves once it is ready. */
  async startProcess(name: RestartableProcess): Promise<void> {
    const entry = this.managed(name);
    if (entry.child.exitCode === null && entry.child.signalCode === null) return;
    entry.child = this.launch(name, entry.bin, entry.args);
    await this.waitFor(name, READY_TIMEOUT_MS);
  }

  /** Stops and starts one process; returns the milliseconds until it was ready again. */
  async restartProcess(name: RestartableProcess, signal: NodeJS.Signals = "SIGKILL"): Promise<number> {
    const t0 = Date.now();
    await this.stopProcess(name, signal);
    await this.startProcess(name);
    return Date.now() - t0;
  }

  private managed(name: string): ManagedProcess {
    if (this.attached)
      throw new Error(`cannot restart ${name}: this control plane belongs to another process`);
    const entry = this.processes.find((p) => p.name === name);
    if (!entry || this.stopped) throw new Error(`${name} is not running under this control plane`);
    return entry;
  }

  private async waitFor(name: string, timeoutMs: number): Promise<void> {
    const entry = this.processes.find((p) => p.name === name);
    const probe = entry?.ready ?? (async () => true);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (entry && entry.child.exitCode !== null) {
        throw new Error(
          `${name} exited during start-up (exit code ${entry.child.exitCode}). Last lines of ${entry.log}:\n${tail(entry.log)}`,
        );
      }
      if (await probe().catch(() => false)) return;
      await sleep(100);
    }
    throw new Error(
      `${name} was not ready within ${timeoutMs / 1000}s. Last lines of ${entry?.log}:\n${tail(entry?.log ?? "")}`,
    );
  }

  /** Stops the controller-manager, the API server, then etcd, and removes the temp dir it created. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped || this.attached) return;
    this.stopped = true;
    for (const { child } of [...this.processes].reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Applies objects with server-side apply as the admin. */
  async apply(objects: KubernetesObject[]): Promise<KubernetesObject[]> {
    return applyObjects(this.adminKubeConfig(), objects);
  }

  async ensureNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
    const core = this.adminKubeConfig().makeApiClient(CoreV1Api);
    try {
      await core.createNamespace({ body: { metadata: { name, labels } } });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  /**
   * An identity of a service account (what an AI agent runs as): ensures the namespace and
   * service account exist, requests a token through the TokenRequest API, writes a kubeconfig.
   */
  async serviceAccountIdentity(
    namespace: string,
    name: string,
    options: { labels?: Record<string, string>; kubeconfigPath?: string; expirationSeconds?: number } = {},
  ): Promise<Identity & { token: string }> {
    await this.ensureNamespace(namespace);
    const core = this.adminKubeConfig().makeApiClient(CoreV1Api);
    try {
      await core.createNamespacedServiceAccount({
        namespace,
        body: { metadata: { name, labels: options.labels ?? {} } },
      });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    const tr = await core.createNamespacedServiceAccountToken({
      namespace,
      name,
      body: { spec: { audiences: [], expirationSeconds: options.expirationSeconds ?? 3600 } },
    });
    const token = tr.status?.token;
    if (!token) throw new Error(`TokenRequest for ${namespace}/${name} returned no token`);
    const username = `system:serviceaccount:${namespace}:${name}`;
    const spec = {
      server: this.server,
      caPem: this.caPem,
      user: username,
      credentials: { token },
      namespace,
    };
    const kubeconfigPath = writeKubeconfig(
      options.kubeconfigPath ?? join(this.dir, "identities", `sa-${namespace}-${name}.kubeconfig`),
      spec,
    );
    return { kubeconfigPath, kubeConfig: kubeConfigFromSpec(spec), username, token };
  }

  /** An identity of a user with a client certificate (CN=username, O=groups), e.g. a human approver. */
  async userIdentity(
    username: string,
    groups: string[] = [],
    options: { kubeconfigPath?: string } = {},
  ): Promise<Identity> {
    const cert = await issueCertificate(this.ca, {
      commonName: username,
      organizations: groups,
      usage: "client",
    });
    const spec = {
      server: this.server,
      caPem: this.caPem,
      user: username,
      credentials: { clientCertificatePem: cert.certPem, clientKeyPem: cert.keyPem },
    };
    const kubeconfigPath = writeKubeconfig(
      options.kubeconfigPath ??
        join(this.dir, "identities", `user-${username.replace(/[^\w.-]/g, "_")}.kubeconfig`),
      spec,
    );
    return { kubeconfigPath, kubeConfig: kubeConfigFromSpec(spec), username };
  }
}

export function loadKubeConfigFile(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

/** GET url and report whether it answered 200 (never throws); https with the given TLS options. */
function getOk(
  url: string,
  tls: { ca: string; cert: string; key: string } | undefined = undefined,
): Promise<boolean> {
  return new Promise((resolveOk) => {
    const onResponse = (res: IncomingMessage) => {
      res.resume();
      resolveOk(res.statusCode === 200);
    };
    const req = tls
      ? httpsRequest(url, { ...tls, timeout: 2000 }, onResponse)
      : httpRequest(url, { timeout: 2000 }, onResponse);
    req.on("error", () => resolveOk(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}
