/**
 * The chaos harness's cluster: its own control plane (so the API server and etcd can be
 * killed and restarted), two webhook replicas and two leader-elected controller replicas as
 * real child processes (SIGKILL is a crash), a TCP balancer in front of the webhook replicas
 * (the API server reaches whichever replica is up, as through a Service; TLS passes through,
 * so the API server's client certificate is still verified by the replica), approvers and
 * agent service accounts.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { webhookConfiguration } from "../../src/admission/registration.js";
import { ControlPlane } from "../../src/controlplane/control-plane.js";
import { isAlreadyExists } from "../../src/kube/errors.js";
import { createCertificateAuthority, issueCertificate } from "../../src/pki/certificates.js";
import { approverIdentity, countersignIdentity } from "../support/countersign.js";
import type { WorkerConfig } from "./worker.js";

const HERE = dirname(fileURLToPath(import.meta.url));
export const INSTALL_NAMESPACE = "countersign-system";
export const AGENTS_NAMESPACE = "chaos-agents";
export const AGENT_ROLE = "chaos-agent";
export const APPROVER_GROUP = "countersign:approvers";
export const WEBHOOK_NAME = "countersign-chaos";
const WORKER_START_TIMEOUT_MS = 90_000;
/** How long heal() keeps retrying a replica that will not start. */
const HEAL_TIMEOUT_MS = 120_000;
/** The worker, bundled once per harness (esbuild, packages external): a restart is then node + its packages, not a TypeScript compile. */
const WORKER_BUNDLE = resolve(HERE, "../../dist/chaos/worker.mjs");

export async function bundleWorker(): Promise<string> {
  const { build } = await import("esbuild");
  await build({
    entryPoints: [join(HERE, "worker.ts")],
    outfile: WORKER_BUNDLE,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "error",
  });
  return WORKER_BUNDLE;
}

export interface Agent {
  name: string;
  username: string;
  kc: KubeConfig;
}

export interface Approver {
  username: string;
  kc: KubeConfig;
}

export type Role = "webhook" | "controller";

interface Replica {
  role: Role;
  index: number;
  /** Its own proxy to the API server (faults: stall or refuse this replica's API calls). */
  proxy?: FaultProxy;
  kubeconfig?: string;
  child?: ChildProcess;
  admissionPort?: number;
  /** Milliseconds the last start took (process spawn to informers synced / controller started). */
  startMs?: number;
}

/** A TCP balancer: each connection goes to a random replica that is up; none up: refused. */
class Balancer {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly backends: () => number[]) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      const ports = this.backends();
      if (ports.length === 0) {
        client.destroy();
        return;
      }
      const port = ports[Math.floor(Math.random() * ports.length)]!;
      const upstream = connect(port, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.once("close", () => this.sockets.delete(s));
      }
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("error", drop);
      upstream.on("error", drop);
      client.on("close", drop);
      upstream.on("close", drop);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", () => r()));
    const addr = this.server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

export type ApiFault = "pass" | "stall" | "refuse";

/**
 * One replica's road to the API server: a TCP proxy that passes bytes, stalls them (accepts,
 * holds everything: a slow or hung API server), or refuses (drops every connection: an
 * unreachable one). TLS passes through, so the replica still verifies the API server.
 */
class FaultProxy {
  private server?: Server;
  private readonly pairs = new Set<{ a: Socket; b: Socket; held: [Socket, Buffer][] }>();
  mode: ApiFault = "pass";
  port = 0;
  constructor(private readonly target: number) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      if (this.mode === "refuse") {
        client.destroy();
        return;
      }
      const upstream = connect(this.target, "127.0.0.1");
      const pair = { a: client, b: upstream, held: [] as [Socket, Buffer][] };
      this.pairs.add(pair);
      const forward = (to: Socket) => (d: Buffer) => {
        if (this.mode === "stall") pair.held.push([to, d]);
        else to.write(d);
      };
      client.on("data", forward(upstream));
      upstream.on("data", forward(client));
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      for (const s of [client, upstream]) {
        s.on("error", drop);
        s.on("close", drop);
      }
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", () => r()));
    const addr = this.server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
  }

  set(mode: ApiFault): void {
    this.mode = mode;
    for (const pair of this.pairs) {
      if (mode === "refuse") {
        pair.a.destroy();
        pair.b.destroy();
      } else if (mode === "pass") {
        for (const [to, d] of pair.held.splice(0)) if (!to.destroyed) to.write(d);
      }
    }
  }

  async stop(): Promise<void> {
    for (const p of this.pairs) {
      p.a.destroy();
      p.b.destroy();
    }
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

export class ChaosCluster {
  readonly replicas: Replica[] = [
    { role: "webhook", index: 0 },
    { role: "webhook", index: 1 },
    { role: "controller", index: 0 },
    { role: "controller", index: 1 },
  ];
  private balancer = new Balancer(() =>
    this.replicas
      .filter((r) => r.role === "webhook" && r.child && r.admissionPort)
      .map((r) => r.admissionPort!),
  );
  private files!: {
    kubeconfig: string;
    cert: string;
    key: string;
    clientCa: string;
    logs: string;
    worker: string;
  };
  agents: Agent[] = [];
  approvers: Approver[] = [];
  /** Milliseconds each API server restart took until it was ready again. */
  readonly apiServerRestarts: number[] = [];
  readonly etcdRestarts: number[] = [];
  /**
   * Every fault on this shared cluster, whichever schedule (lane) caused it: from when to when
   * (to: undefined while it lasts). A schedule's liveness check names the ones that overlap a
   * late request (with --parallel, another lane's faults go on after this lane's heal).
   */
  readonly faultLog: { what: string; from: number; to?: number }[] = [];
  private readonly openFaults = new Map<string, { what: string; from: number; to?: number }>();

  private faultBegins(key: string, what: string): void {
    if (this.openFaults.has(key)) return;
    const f = { what, from: Date.now() };
    this.faultLog.push(f);
    this.openFaults.set(key, f);
  }

  private faultEnds(key: string): void {
    const f = this.openFaults.get(key);
    if (f) f.to = Date.now();
    this.openFaults.delete(key);
  }

  /** The faults (any lane's) that were on at some time in [from, to]. */
  faultsDuring(from: number, to: number): string[] {
    return this.faultLog
      .filter((f) => f.from <= to && (f.to === undefined || f.to >= from))
      .map(
        (f) =>
          `${f.what} ${new Date(f.from).toISOString().slice(11, 23)}–${f.to ? new Date(f.to).toISOString().slice(11, 23) : "…"}`,
      );
  }

  private constructor(
    readonly cp: ControlPlane,
    readonly leaseDurationSeconds: number,
    private readonly log: (m: string) => void,
  ) {}

  static async start(
    opts: { leaseDurationSeconds?: number; log?: (m: string) => void; agents?: number } = {},
  ): Promise<ChaosCluster> {
    const log = opts.log ?? (() => {});
    const t0 = Date.now();
    // No kube-controller-manager: nothing here needs namespace deletion or GC, and it saves a core.
    const cp = await ControlPlane.start({ controllerManager: false });
    const c = new ChaosCluster(cp, opts.leaseDurationSeconds ?? 3, log);
    try {
      await c.setUp(opts.agents ?? 3);
    } catch (err) {
      await c.stop();
      throw err;
    }
    log(`chaos cluster ready in ${Date.now() - t0} ms (control plane ${cp.startupMs} ms) at ${cp.server}`);
    return c;
  }

  private async setUp(agentCount: number): Promise<void> {
    const cp = this.cp;
    const dir = join(cp.dir, "chaos");
    mkdirSync(join(dir, "logs"), { recursive: true });
    await cp.ensureNamespace(INSTALL_NAMESPACE);
    await countersignIdentity(cp, INSTALL_NAMESPACE);
    const ca = await createCertificateAuthority("countersign-chaos-webhook-ca");
    const tls = await issueCertificate(ca, {
      commonName: "countersign",
      ipAddresses: ["127.0.0.1"],
      dnsNames: ["localhost"],
      usage: "server",
    });
    this.files = {
      kubeconfig: join(cp.dir, "identities", `sa-${INSTALL_NAMESPACE}-countersign.kubeconfig`),
      cert: join(dir, "tls.crt"),
      key: join(dir, "tls.key"),
      clientCa: join(dir, "client-ca.crt"),
      logs: join(dir, "logs"),
      worker: await bundleWorker(),
    };
    writeFileSync(this.files.cert, tls.certPem);
    writeFileSync(this.files.key, tls.keyPem, { mode: 0o600 });
    writeFileSync(this.files.clientCa, cp.webhookClient.ca.certPem);

    const kubeconfigText = readFileSync(this.files.kubeconfig, "utf8");
    for (const r of this.replicas) {
      r.proxy = new FaultProxy(cp.apiServerPort);
      await r.proxy.start();
      r.kubeconfig = join(dir, `${r.role}-${r.index}.kubeconfig`);
      writeFileSync(r.kubeconfig, kubeconfigText.replaceAll(cp.server, `https://127.0.0.1:${r.proxy.port}`), {
        mode: 0o600,
      });
    }
    for (let i = 0; i < agentCount; i++) {
      const id = await cp.serviceAccountIdentity(AGENTS_NAMESPACE, `agent-${i}`, {
        expirationSeconds: 24 * 3600,
      });
      this.agents.push({ name: `agent-${i}`, username: id.username, kc: id.kubeConfig });
    }
    const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    try {
      await rbac.createClusterRole({
        body: {
          metadata: { name: AGENT_ROLE },
          rules: [
            {
              apiGroups: [""],
              resources: ["configmaps"],
              verbs: ["get", "list", "create", "update", "patch", "delete"],
            },
          ],
        },
      });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    for (const u of ["alice@example.com", "bob@example.com"]) {
      this.approvers.push({ username: u, kc: await approverIdentity(cp, u, [APPROVER_GROUP]) });
    }
    await this.balancer.start();
    await Promise.all(this.replicas.map((r) => this.startReplica(r.role, r.index)));
    await cp.apply([
      webhookConfiguration({
        name: WEBHOOK_NAME,
        caBundlePem: ca.certPem,
        url: `https://127.0.0.1:${this.balancer.port}`,
        installNamespace: INSTALL_NAMESPACE,
        subjects: { serviceAccountNamespaces: [AGENTS_NAMESPACE] },
      }) as never,
    ]);
  }

  /** A namespace for one schedule, where the agents may write ConfigMaps. */
  async tenantNamespace(name: string): Promise<void> {
    await this.cp.ensureNamespace(name);
    const rbac = this.cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    try {
      await rbac.createNamespacedRoleBinding({
        namespace: name,
        body: {
          metadata: { name: AGENT_ROLE },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: AGENT_ROLE },
          subjects: this.agents.map((a) => ({
            kind: "ServiceAccount",
            name: a.name,
            namespace: AGENTS_NAMESPACE,
          })),
        },
      });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  replica(role: Role, index: number): Replica {
    return this.replicas.find((r) => r.role === role && r.index === index)!;
  }

  isUp(role: Role, index: number): boolean {
    return this.replica(role, index).child !== undefined;
  }

  /** Starts one replica as a child process; resolves when it is serving (webhook) or started (controller). */
  async startReplica(role: Role, index: number): Promise<void> {
    const r = this.replica(role, index);
    if (r.child) return;
    const t0 = Date.now();
    const cfg: WorkerConfig = {
      role,
      replica: `${role}-${index}`,
      kubeconfigPath: r.kubeconfig ?? this.files.kubeconfig,
      installNamespace: INSTALL_NAMESPACE,
      ...(role === "webhook"
        ? { tlsCertFile: this.files.cert, tlsKeyFile: this.files.key, clientCaFile: this.files.clientCa }
        : { leaseDurationSeconds: this.leaseDurationSeconds, retentionSeconds: 24 * 3600 }),
    };
    const out = openSync(join(this.files.logs, `${role}-${index}.log`), "a");
    const child = spawn(process.execPath, [this.files.worker], {
      env: {
        ...process.env,
        CHAOS_WORKER: JSON.stringify(cfg),
        COUNTERSIGN_LOG_LEVEL: process.env.CHAOS_WORKER_LOG_LEVEL ?? "warn",
      },
      stdio: ["ignore", out, out, "ipc"],
    });
    r.child = child;
    const exitedEarly = new Promise<never>((_, reject) =>
      child.once("exit", (code, signal) =>
        reject(
          new Error(
            `${role}-${index} exited before it was ready (${code ?? signal}); see ${this.files.logs}`,
          ),
        ),
      ),
    );
    exitedEarly.catch(() => {});
    child.once("exit", () => {
      if (r.child === child) {
        r.child = undefined;
        r.admissionPort = undefined;
      }
    });
    const ready = new Promise<{ admissionPort?: number }>((resolve) =>
      child.on("message", (m: { ready?: boolean; admissionPort?: number }) => {
        if (m.ready) resolve(m);
      }),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${role}-${index} was not ready within ${WORKER_START_TIMEOUT_MS} ms`)),
        WORKER_START_TIMEOUT_MS,
      );
    });
    try {
      const m = await Promise.race([ready, exitedEarly, timeout]);
      if (m.admissionPort) r.admissionPort = m.admissionPort;
      this.faultEnds(`down ${role}-${index}`);
      r.startMs = Date.now() - t0;
      this.log(`${role}-${index} up in ${r.startMs} ms`);
    } catch (err) {
      child.kill("SIGKILL");
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL (a crash: no lease release, no graceful close) or SIGTERM (a clean stop). */
  async killReplica(role: Role, index: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const r = this.replica(role, index);
    const child = r.child;
    if (!child) return;
    r.admissionPort = undefined; // the balancer stops routing new connections to it at once
    this.faultBegins(`down ${role}-${index}`, `${role}-${index} down (${signal})`);
    const exited = new Promise<void>((res) => child.once("exit", () => res()));
    child.kill(signal);
    const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
    this.log(`${role}-${index} killed (${signal})`);
  }

  async restartApiServer(signal: NodeJS.Signals = "SIGKILL"): Promise<number> {
    const t0 = Date.now();
    this.faultBegins("kube-apiserver", `kube-apiserver restart (${signal})`);
    await this.cp.restartProcess("kube-apiserver", signal);
    // Ready is /readyz; custom resources may still answer 429 while their storage initializes.
    const custom = this.cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await custom.listClusterCustomObject({
          group: "countersign.io",
          version: "v1alpha1",
          plural: "approvalrequests",
          limit: 1,
        });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const ms = Date.now() - t0;
    this.faultEnds("kube-apiserver");
    this.apiServerRestarts.push(ms);
    this.log(`kube-apiserver restarted (${signal}) in ${ms} ms`);
    return ms;
  }

  /** Stalls or refuses one replica's connections to the API server ("pass" ends the fault). */
  apiFault(role: Role, index: number, mode: ApiFault): void {
    this.replica(role, index).proxy?.set(mode);
    const key = `api ${role}-${index}`;
    this.faultEnds(key);
    if (mode !== "pass") this.faultBegins(key, `${role}-${index} → API server ${mode}`);
    this.log(`${role}-${index} → API server: ${mode}`);
  }

  async restartEtcd(signal: NodeJS.Signals = "SIGKILL"): Promise<number> {
    const t0 = Date.now();
    this.faultBegins("etcd", `etcd restart (${signal})`);
    await this.cp.restartProcess("etcd", signal);
    this.faultEnds("etcd");
    const ms = Date.now() - t0;
    this.etcdRestarts.push(ms);
    this.log(`etcd restarted (${signal}) in ${ms} ms`);
    return ms;
  }

  /**
   * Starts every replica that is down (the end of a schedule: the system is healed). A start
   * can fail while the API server is unreachable for it (another lane's fault, a restart that
   * is still under way): it is retried for up to HEAL_TIMEOUT_MS before the heal gives up.
   */
  async heal(): Promise<void> {
    for (const r of this.replicas)
      if (r.proxy && r.proxy.mode !== "pass") this.apiFault(r.role, r.index, "pass");
    const deadline = Date.now() + HEAL_TIMEOUT_MS;
    await Promise.all(
      this.replicas
        .filter((r) => !r.child)
        .map(async (r) => {
          for (let attempt = 1; ; attempt++) {
            try {
              return await this.startReplica(r.role, r.index);
            } catch (err) {
              if (Date.now() > deadline) throw err;
              this.log(
                `heal: ${r.role}-${r.index} did not start (attempt ${attempt}: ${err instanceof Error ? err.message : String(err)}); retrying`,
              );
              await new Promise((res) => setTimeout(res, 1000));
            }
          }
        }),
    );
  }

  /** Copies the replicas' logs to `dir` (kept after the control plane's temp dir is removed). */
  keepLogs(dir: string): void {
    mkdirSync(dir, { recursive: true });
    cpSync(this.files.logs, dir, { recursive: true });
  }

  core(): CoreV1Api {
    return this.cp.adminKubeConfig().makeApiClient(CoreV1Api);
  }

  async stop(): Promise<void> {
    await Promise.all(this.replicas.map((r) => this.killReplica(r.role, r.index, "SIGTERM")));
    await this.balancer.stop();
    for (const r of this.replicas) await r.proxy?.stop();
    await this.cp.stop();
  }
}
