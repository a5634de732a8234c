/**
 * The single binary: `countersign webhook | controller | all`.
 *
 *   webhook     serves admission (/validate, only to the API server) on --port and the approval
 *               API + Slack interactivity on --api-port; TLS from the webhook Secret (reloaded)
 *   controller  leader-elected reconciler, policy status, and the webhook certificates
 *   all         both in one process (small clusters, development)
 *
 * Every flag has an environment variable (COUNTERSIGN_<FLAG>, upper-case, dashes as
 * underscores), so the chart can configure it either way.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { AdmissionregistrationV1Api, KubeConfig } from "@kubernetes/client-node";
import {
  ADMISSION_AUTH_MODES,
  type AdmissionAuth,
  type AdmissionAuthMode,
  assertCertificatePem,
  parseAllowedNames,
} from "./admission/client-auth.js";
import { DEFAULT_HEALTH_PORT } from "./admission/health-server.js";
import { DEFAULT_MAX_IN_FLIGHT_REVIEWS } from "./admission/load-shed.js";
import { type RunningCountersign, startCountersign } from "./app.js";
import { TlsSecretWatcher } from "./certs/webhook-certs.js";
import { describeKubeError, isNotFound } from "./kube/errors.js";
import { componentLogger } from "./logging/logger.js";
import { startMetricsServer } from "./metrics/metrics.js";
import { parseNotificationConfig } from "./notify/messages.js";
import { parseDurationSeconds } from "./policy/compile.js";

export const USAGE = `Usage: countersign <webhook|controller|all|uninstall> [flags]

  uninstall   delete the ValidatingWebhookConfiguration (the chart's pre-delete hook)

Flags (or environment variables COUNTERSIGN_<FLAG>):
  --port N                     admission HTTPS port: POST /validate for the API server, /healthz, /readyz (default 8443)
  --api-port N                 approval API + Slack interactivity HTTPS port (default 8444; 0 turns it off)
  --admission-auth MODE        who may call /validate (default client-cert):
                                 client-cert  the API server's TLS client certificate must be signed by
                                              --admission-client-ca-file (required in this mode)
                                 network      no certificate check; only when a NetworkPolicy limits the
                                              admission port to the API server's addresses
  --admission-client-ca-file FILE  PEM CA bundle for the API server's webhook client certificate (re-read
                               every --tls-reload-interval)
  --admission-client-names A,B only these client certificate names (CN or DNS SAN) may call /validate
  --install-namespace NS       where Countersign runs (default $POD_NAMESPACE, else countersign-system)
  --tls-secret NAME            Secret with the webhook certificate (default countersign-webhook-tls)
  --tls-cert-file / --tls-key-file   use these files instead of the Secret
  --manage-certificates BOOL   controller writes and rotates the TLS Secret and caBundle (default true;
                               false when cert-manager manages them)
  --service-name NAME          the webhook Service (default countersign-webhook)
  --webhook-configuration NAME the ValidatingWebhookConfiguration (default countersign)
  --identities A,B             Countersign's other usernames (e.g. the controller's service account)
  --retention DURATION         keep finished ApprovalRequests this long (default 24h)
  --lease-duration DURATION    leader-election lease (default 15s)
  --tls-reload-interval DURATION  how often the webhook re-reads its TLS Secret (default 30s)
  --metrics-port N             plain-HTTP Prometheus /metrics port (default 9090; 0 turns it off)
  --health-port N              plain-HTTP probe port: GET /healthz, /readyz (default 8081; 0 turns it off;
                               the admission port answers them too, but over TLS, slower under load)
  --max-in-flight-reviews N    gated reviews (a RequireApproval rule matched) one webhook works on at
                               once; the excess is refused at once, fail closed, as "overloaded" (default 128)
  --notifications-config FILE  notification routes and Slack interactivity (YAML; \${VAR} from the environment)
  --kubeconfig PATH            default: in-cluster, else $KUBECONFIG / ~/.kube/config`;

const FLAGS = {
  port: { type: "string" },
  "api-port": { type: "string" },
  "admission-auth": { type: "string" },
  "admission-client-ca-file": { type: "string" },
  "admission-client-names": { type: "string" },
  "install-namespace": { type: "string" },
  "tls-secret": { type: "string" },
  "tls-cert-file": { type: "string" },
  "tls-key-file": { type: "string" },
  "manage-certificates": { type: "string" },
  "service-name": { type: "string" },
  "webhook-configuration": { type: "string" },
  identities: { type: "string" },
  retention: { type: "string" },
  "lease-duration": { type: "string" },
  "tls-reload-interval": { type: "string" },
  "metrics-port": { type: "string" },
  "health-port": { type: "string" },
  "max-in-flight-reviews": { type: "string" },
  "notifications-config": { type: "string" },
  kubeconfig: { type: "string" },
  help: { type: "boolean" },
} as const;

export class UsageError extends Error {}

export interface Settings {
  mode: "webhook" | "controller" | "all" | "uninstall";
  port: number;
  /** 0: the approval API and Slack interactivity are not served. */
  apiPort: number;
  admissionAuth: AdmissionAuthMode;
  admissionClientCaFile?: string;
  admissionClientNames: string[];
  installNamespace: string;
  tlsSecret: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  manageCertificates: boolean;
  serviceName: string;
  webhookConfiguration: string;
  identities: string[];
  retentionSeconds: number;
  leaseDurationSeconds: number;
  tlsReloadSeconds: number;
  metricsPort: number;
  /** 0: probes only on the admission port. */
  healthPort: number;
  maxInFlightReviews: number;
  notificationsConfig?: string;
  kubeconfig?: string;
}

/** Parses flags and COUNTERSIGN_* variables into settings; bad values give a UsageError. Pure. */
export function parseSettings(argv: string[], env: Record<string, string | undefined>): Settings {
  const { values, positionals } = parseArgs({
    args: argv,
    options: FLAGS,
    allowPositionals: true,
    strict: true,
  });
  if (values.help) throw new UsageError(USAGE);
  const mode = positionals[0];
  if (mode !== "webhook" && mode !== "controller" && mode !== "all" && mode !== "uninstall") {
    throw new UsageError(
      `the first argument must be webhook, controller, all or uninstall${mode ? `, not "${mode}"` : ""}\n\n${USAGE}`,
    );
  }
  const get = (flag: keyof typeof FLAGS): string | undefined => {
    const v = values[flag];
    if (typeof v === "string") return v;
    return env[`COUNTERSIGN_${flag.toUpperCase().replace(/-/g, "_")}`];
  };
  const duration = (flag: keyof typeof FLAGS, fallback: string): number => {
    const text = get(flag) ?? fallback;
    const s = parseDurationSeconds(text);
    if (s === undefined || s <= 0)
      throw new UsageError(`--${flag}: "${text}" is not a duration like 30s, 15m or 24h`);
    return s;
  };
  const portOf = (flag: "port" | "api-port" | "metrics-port" | "health-port", fallback: string): number => {
    const n = Number(get(flag) ?? fallback);
    if (!Number.isInteger(n) || n < 0 || n > 65535)
      throw new UsageError(`--${flag}: "${get(flag)}" is not a port number`);
    return n;
  };
  const port = portOf("port", "8443");
  const apiPort = portOf("api-port", "8444");
  const metricsPort = portOf("metrics-port", "9090");
  const healthPort = portOf("health-port", String(DEFAULT_HEALTH_PORT));
  const inFlightText = get("max-in-flight-reviews") ?? String(DEFAULT_MAX_IN_FLIGHT_REVIEWS);
  const maxInFlightReviews = Number(inFlightText);
  if (!/^\d+$/.test(inFlightText) || maxInFlightReviews < 1)
    throw new UsageError(`--max-in-flight-reviews: "${inFlightText}" is not a whole number of at least 1`);
  if (mode === "webhook" || mode === "all") {
    const clash = [
      ["--port", port],
      ["--api-port", apiPort],
      ["--metrics-port", metricsPort],
      ["--health-port", healthPort],
    ].filter(([, p]) => p !== 0);
    for (let i = 0; i < clash.length; i++)
      for (let j = i + 1; j < clash.length; j++)
        if (clash[i]![1] === clash[j]![1])
          throw new UsageError(`${clash[i]![0]} and ${clash[j]![0]} must differ (both ${clash[i]![1]})`);
  }
  const retentionSeconds = duration("retention", "24h");
  const leaseDurationSeconds = duration("lease-duration", "15s");
  const tlsReloadSeconds = duration("tls-reload-interval", "30s");
  const certFile = get("tls-cert-file");
  const keyFile = get("tls-key-file");
  if (Boolean(certFile) !== Boolean(keyFile))
    throw new UsageError("--tls-cert-file and --tls-key-file go together");
  const authText = (get("admission-auth") ?? "client-cert").toLowerCase();
  if (!(ADMISSION_AUTH_MODES as readonly string[]).includes(authText))
    throw new UsageError(`--admission-auth must be ${ADMISSION_AUTH_MODES.join(" or ")}, not "${authText}"`);
  const admissionAuth = authText as AdmissionAuthMode;
  const clientCaFile = get("admission-client-ca-file");
  const clientNames = parseAllowedNames(get("admission-client-names"));
  if ((mode === "webhook" || mode === "all") && admissionAuth === "client-cert" && !clientCaFile) {
    throw new UsageError(
      "the admission endpoint must authenticate its caller: give --admission-client-ca-file (the CA that signs the client certificate kube-apiserver presents through its admission configuration; see the README's Security model), or --admission-auth=network if a NetworkPolicy limits the admission port to the API server",
    );
  }
  if (admissionAuth === "network" && (clientCaFile || clientNames.length > 0)) {
    throw new UsageError(
      "--admission-client-ca-file and --admission-client-names apply only to --admission-auth=client-cert",
    );
  }
  const manage = (get("manage-certificates") ?? "true").toLowerCase();
  if (!["true", "false"].includes(manage))
    throw new UsageError(`--manage-certificates must be true or false`);
  return {
    mode,
    port,
    apiPort,
    admissionAuth,
    ...(clientCaFile ? { admissionClientCaFile: clientCaFile } : {}),
    admissionClientNames: clientNames,
    installNamespace: get("install-namespace") ?? env.POD_NAMESPACE ?? "countersign-system",
    tlsSecret: get("tls-secret") ?? "countersign-webhook-tls",
    ...(certFile ? { tlsCertFile: certFile } : {}),
    ...(keyFile ? { tlsKeyFile: keyFile } : {}),
    manageCertificates: manage === "true",
    serviceName: get("service-name") ?? "countersign-webhook",
    webhookConfiguration: get("webhook-configuration") ?? "countersign",
    identities: (get("identities") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    retentionSeconds,
    leaseDurationSeconds,
    tlsReloadSeconds,
    metricsPort,
    healthPort,
    maxInFlightReviews,
    ...(get("notifications-config") ? { notificationsConfig: get("notifications-config")! } : {}),
    ...(get("kubeconfig") ? { kubeconfig: get("kubeconfig")! } : {}),
  };
}

function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault(); // in-cluster service account when running in a pod
  return kc;
}

/** The admission caller check from settings; reads (and checks) the client CA file. */
export function loadAdmissionAuth(settings: Settings): AdmissionAuth {
  if (settings.admissionAuth === "network") return { mode: "network" };
  const file = settings.admissionClientCaFile!;
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read --admission-client-ca-file ${file}: ${(err as Error).message}`);
  }
  assertCertificatePem(pem, `--admission-client-ca-file ${file}`);
  return { mode: "client-cert", clientCaPem: pem, allowedNames: settings.admissionClientNames };
}

/** Re-reads the client CA file (a mounted Secret/ConfigMap is updated in place) and applies changes. */
function watchClientCa(
  settings: Settings,
  auth: AdmissionAuth,
  apply: (pem: string) => void,
): NodeJS.Timeout | undefined {
  if (auth.mode !== "client-cert") return undefined;
  const log = componentLogger("certificates");
  let current = auth.clientCaPem;
  const timer = setInterval(() => {
    try {
      const next = readFileSync(settings.admissionClientCaFile!, "utf8");
      if (next === current) return;
      assertCertificatePem(next, "--admission-client-ca-file");
      current = next;
      apply(next);
      log.info("admission client CA reloaded", { file: settings.admissionClientCaFile });
    } catch (err) {
      log.warn("could not reload the admission client CA; keeping the previous one", {
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }, settings.tlsReloadSeconds * 1000);
  timer.unref();
  return timer;
}

/** The pre-delete hook: remove the webhook configuration before anything it points at goes away. */
export async function uninstall(settings: Settings): Promise<void> {
  const log = componentLogger("main", { mode: "uninstall" });
  const kc = loadKubeConfig(settings.kubeconfig);
  try {
    await kc
      .makeApiClient(AdmissionregistrationV1Api)
      .deleteValidatingWebhookConfiguration({ name: settings.webhookConfiguration });
    log.info("webhook configuration deleted", { webhookConfiguration: settings.webhookConfiguration });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    log.info("webhook configuration already gone", { webhookConfiguration: settings.webhookConfiguration });
  }
}

export async function run(settings: Settings): Promise<() => Promise<void>> {
  const log = componentLogger("main", { mode: settings.mode });
  const kc = loadKubeConfig(settings.kubeconfig);
  const stops: (() => Promise<void>)[] = [];
  const notifications = settings.notificationsConfig
    ? parseNotificationConfig(readFileSync(settings.notificationsConfig, "utf8"), process.env)
    : undefined;
  if (settings.metricsPort > 0) {
    const metrics = await startMetricsServer(settings.metricsPort);
    stops.push(() => new Promise<void>((r) => metrics.server.close(() => r())));
    log.info("metrics serving", { port: metrics.port });
  }
  const webhookRole = settings.mode !== "controller";
  const controllerRole = settings.mode !== "webhook";
  // TLS from files, or from the Secret the controller role (or cert-manager) keeps, re-read for rotation.
  let running: RunningCountersign | undefined;
  const watcher =
    !webhookRole || (settings.tlsCertFile && settings.tlsKeyFile)
      ? undefined
      : new TlsSecretWatcher(
          kc,
          settings.installNamespace,
          settings.tlsSecret,
          (next) => running?.webhook?.setTls(next),
          componentLogger("certificates"),
          settings.tlsReloadSeconds * 1000,
        );
  const admissionAuth = webhookRole ? loadAdmissionAuth(settings) : undefined;
  running = await startCountersign({
    kubeConfig: kc,
    installNamespace: settings.installNamespace,
    ...(notifications ? { notifications } : {}),
    ...(controllerRole
      ? {
          controller: {
            retentionSeconds: settings.retentionSeconds,
            leaseDurationSeconds: settings.leaseDurationSeconds,
            ...(settings.manageCertificates && !settings.tlsCertFile
              ? {
                  certificates: {
                    secretName: settings.tlsSecret,
                    serviceName: settings.serviceName,
                    webhookConfigurationName: settings.webhookConfiguration,
                  },
                }
              : {}),
          },
        }
      : {}),
    ...(webhookRole && admissionAuth
      ? {
          webhook: {
            tls: watcher
              ? () => watcher.first()
              : {
                  certPem: readFileSync(settings.tlsCertFile!, "utf8"),
                  keyPem: readFileSync(settings.tlsKeyFile!, "utf8"),
                },
            admissionPort: settings.port,
            admissionAuth,
            ...(settings.apiPort > 0 ? { apiPort: settings.apiPort } : {}),
            ...(settings.healthPort > 0 ? { healthPort: settings.healthPort } : {}),
            maxInFlightReviews: settings.maxInFlightReviews,
            extraIdentities: settings.identities,
          },
        }
      : {}),
  });
  const cs = running;
  watcher?.start();
  const webhook = cs.webhook;
  const caReload =
    webhook && admissionAuth
      ? watchClientCa(settings, admissionAuth, (pem) => webhook.setAdmissionClientCa(pem))
      : undefined;
  stops.unshift(async () => {
    watcher?.stop();
    if (caReload) clearInterval(caReload);
    await cs.stop();
  });
  if (cs.controller) log.info("controller started", { identity: cs.identity });
  if (webhook) {
    log.info("webhook serving", {
      admissionPort: webhook.admissionPort,
      apiPort: webhook.apiPort ?? "off",
      healthPort: webhook.healthPort ?? "off",
      admissionAuth: settings.admissionAuth,
      identity: cs.identity,
    });
    if (settings.admissionAuth === "network") {
      log.warn(
        "admission callers are not authenticated (--admission-auth=network): only a NetworkPolicy that limits the admission port to the API server keeps other pods from driving /validate",
      );
    }
  }
  return async () => {
    for (const s of stops) await s();
  };
}

async function main(): Promise<void> {
  let settings: Settings;
  try {
    settings = parseSettings(process.argv.slice(2), process.env);
  } catch (err) {
    const help = process.argv.includes("--help");
    (help ? console.log : console.error)(err instanceof Error ? err.message : String(err));
    process.exit(help ? 0 : 2);
  }
  const log = componentLogger("main", { mode: settings.mode });
  if (settings.mode === "uninstall") {
    try {
      await uninstall(settings);
      process.exit(0);
    } catch (err) {
      log.error("uninstall failed", { error: describeKubeError(err) });
      process.exit(1);
    }
  }
  let stop: () => Promise<void>;
  try {
    stop = await run(settings);
  } catch (err) {
    log.error("could not start", { error: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

if (process.argv[1] && /(^|\/)main\.(ts|js)$/.test(process.argv[1])) void main();
