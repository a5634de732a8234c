/**
 * End to end, beside Kubernetes' own ValidatingAdmissionPolicy: an agent (a service account)
 * PATCHes ConfigMaps through a real API server (this project's control-plane harness) at fixed
 * rates, under each admission layout in turn, in one run:
 *
 *   - no admission;
 *   - N ValidatingAdmissionPolicies, each with 3 matchConditions and 4 validations;
 *   - one ValidatingAdmissionPolicy with the same 3 matchConditions and all 4N validations;
 *   - Countersign with N ApprovalPolicies (3 matchConditions and 4 Deny rules each, the same
 *     expressions negated), its webhook registered as in production (client-certificate auth).
 *
 * for N = 10 and 100 and rates 100 and 300 req/s. Every request is allowed (nothing the
 * policies check is true), so what is measured is what each layout adds to an allowed write.
 * Added latency per request comes from the API server's own metrics (mean of
 * apiserver_admission_step_admission_duration_seconds{type="validate"} over the load, minus
 * the no-admission mean; for Countersign also apiserver_admission_webhook_admission_duration_seconds),
 * end-to-end p50/p99 from the agent's side. Prints the ratios the goal is stated in.
 *
 * Countersign runs compiled (dist/, built by the npm script), in this process.
 * Run: npm run bench:e2e [-- --n 10,100 --rates 100,300 --seconds 8 --layouts none,vap,countersign,vaps]
 * (starts a control plane: hold the test lock, `flock /tmp/cs-test.lock npm run bench:e2e`)
 */
import { readdirSync, readFileSync } from "node:fs";
import { request } from "node:https";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { AdmissionregistrationV1Api } from "@kubernetes/client-node";
import { rawClient } from "./audit-generator.js";
// Countersign compiled, as production runs it (see compiled.ts).
import {
  ControlPlane,
  createCertificateAuthority,
  GATE_WEBHOOK_NAME,
  isNotFound,
  issueCertificate,
  registry,
  startCountersign,
  webhookConfiguration,
} from "./compiled.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "10,100" },
    rates: { type: "string", default: "100,300" },
    seconds: { type: "string", default: "8" },
    /** Which layouts to run (none, vap, countersign, vaps); all by default. */
    layouts: { type: "string", default: "none,vap,countersign,vaps" },
  },
});
const NS_LIST = values.n.split(",").map(Number);
const RATES = values.rates.split(",").map(Number);
const SECONDS = Number(values.seconds);
const LAYOUTS = new Set(values.layouts.split(","));
const AGENTS = "ai-agents";
const TARGET_NS = "prod";
const OBJECTS = 16;
const LABEL = { "bench.countersign.io/e2e": "true" };
const WEBHOOK = "countersign-bench-e2e";

/** The 3 match conditions of policy i (true for the benchmark's agent and objects). */
function matchConditions(i: number) {
  return [
    {
      name: "agents",
      expression: `request.userInfo.username.startsWith("system:serviceaccount:${AGENTS}:")`,
    },
    { name: "prod", expression: `request.namespace in ["${TARGET_NS}", "prod-${i}"]` },
    {
      name: "not-skipped",
      expression: `!has(object.metadata.labels) || !("skip-${i}" in object.metadata.labels)`,
    },
  ];
}

/** The 4 checks of policy i, as VAP validations (true = allowed). */
function validations(i: number) {
  return [
    { expression: `!has(object.data) || !("bench-probe-${i}" in object.data)`, message: `probe ${i}` },
    { expression: `!has(object.data) || size(object.data) < ${100 + i}`, message: `too many keys (${i})` },
    { expression: `object.metadata.name.size() < ${200 + i}`, message: `name too long (${i})` },
    {
      expression: `!has(object.metadata.annotations) || !("bench.countersign.io/deny-${i}" in object.metadata.annotations)`,
      message: `denied by annotation (${i})`,
    },
  ];
}

/** The same 4 checks as Countersign Deny rules (true = denied). */
function denyRules(i: number) {
  return [
    { name: "probe", condition: `has(object.data) && "bench-probe-${i}" in object.data` },
    { name: "too-many-keys", condition: `has(object.data) && size(object.data) >= ${100 + i}` },
    { name: "name-too-long", condition: `object.metadata.name.size() >= ${200 + i}` },
    {
      name: "annotation",
      condition: `has(object.metadata.annotations) && "bench.countersign.io/deny-${i}" in object.metadata.annotations`,
    },
  ].map((r) => ({ ...r, action: "Deny", message: `${r.name} (${i})` }));
}

const rules = [{ apiGroups: [""], apiVersions: ["v1"], operations: ["UPDATE"], resources: ["configmaps"] }];

function vap(
  name: string,
  conditions: ReturnType<typeof matchConditions>,
  checks: ReturnType<typeof validations>,
) {
  return [
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicy",
      metadata: { name, labels: LABEL },
      spec: {
        failurePolicy: "Fail",
        matchConstraints: { resourceRules: rules },
        matchConditions: conditions,
        validations: checks,
      },
    },
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicyBinding",
      metadata: { name, labels: LABEL },
      spec: { policyName: name, validationActions: ["Deny"] },
    },
  ];
}

function approvalPolicy(i: number) {
  return {
    apiVersion: "countersign.io/v1alpha1",
    kind: "ApprovalPolicy",
    metadata: { name: `bench-e2e-${String(i).padStart(3, "0")}`, labels: LABEL },
    spec: {
      subjects: { serviceAccounts: [{ namespace: AGENTS }] },
      match: [{ operations: ["UPDATE"], apiGroups: [""], resources: ["configmaps"] }],
      matchConditions: matchConditions(i),
      rules: denyRules(i),
    },
  };
}

interface Metrics {
  stepSum: number;
  stepCount: number;
  webhookSum: number;
  webhookCount: number;
}

function parseMetrics(text: string): Metrics {
  const m: Metrics = { stepSum: 0, stepCount: 0, webhookSum: 0, webhookCount: 0 };
  const STEP = "apiserver_admission_step_admission_duration_seconds";
  const WEBHOOK = "apiserver_admission_webhook_admission_duration_seconds";
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const name = line.slice(0, line.search(/[{ ]/));
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (!line.includes('operation="UPDATE"')) continue;
    if (name === `${STEP}_sum` && line.includes('type="validate"')) m.stepSum += v;
    else if (name === `${STEP}_count` && line.includes('type="validate"')) m.stepCount += v;
    else if (name === `${WEBHOOK}_sum` && line.includes(`name="${GATE_WEBHOOK_NAME}"`)) m.webhookSum += v;
    else if (name === `${WEBHOOK}_count` && line.includes(`name="${GATE_WEBHOOK_NAME}"`)) m.webhookCount += v;
  }
  return m;
}

interface LoadResult {
  count: number;
  errors: number;
  shed: number;
  seconds: number;
  p50: number;
  p99: number;
  max: number;
}

interface Row {
  layout: string;
  n: number | "-";
  rate: number;
  result: LoadResult;
  /** Mean validating-admission step per UPDATE, ms (API server metric). */
  stepMs: number;
  /** Mean Countersign webhook call, ms (API server metric); NaN when not registered. */
  webhookMs: number;
  /** kube-apiserver CPU time per UPDATE, ms (/proc): robust against other load on the machine. */
  apiCpuMs: number;
  /** Countersign's CPU per UPDATE, ms: CPU time of the main thread (its event loop) in this process. */
  csCpuMs: number;
  /** New TLS connections the API server opened to the admission listener per webhook call. */
  connsPerCall: number;
  /** Protocols of those connections (h2, http/1.1), with counts. */
  protocols: string;
}

/** TLS connections Countersign's admission listener accepted so far, by protocol (its metric). */
async function admissionConnections(): Promise<Map<string, number>> {
  const metric = registry.getSingleMetric("countersign_admission_connections_total");
  const values = metric ? (await metric.get()).values : [];
  return new Map(values.map((v) => [String(v.labels.protocol), v.value]));
}

/** CPU time of this process's main thread (Countersign's event loop), ms (/proc schedstat, ns). */
function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8");
  return Number(stat.split(" ")[0]) / 1e6;
}

/** The pid of the kube-apiserver listening on `port` (found in /proc). */
function apiServerPid(port: number): number {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmd.includes("kube-apiserver") && cmd.includes(`--secure-port=${port}\0`)) return Number(entry);
    } catch {
      // exited meanwhile
    }
  }
  throw new Error(`no kube-apiserver process for port ${port}`);
}

/** User + system CPU time of `pid`, ms (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function main(): Promise<void> {
  const cp = await ControlPlane.start({ controllerManager: false });
  const admin = cp.adminKubeConfig();
  const user = admin.getCurrentUser()!;
  const scrapeText = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: cp.apiServerPort,
          path: "/metrics",
          ca: cp.caPem,
          cert: Buffer.from(user.certData!, "base64"),
          key: Buffer.from(user.keyData!, "base64"),
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (body += c));
          res.on("end", () => resolve(body));
        },
      );
      req.on("error", reject);
      req.end();
    });
  const scrape = async (): Promise<Metrics> => parseMetrics(await scrapeText());
  const stops: (() => Promise<void>)[] = [];
  try {
    await cp.ensureNamespace(TARGET_NS);
    await cp.ensureNamespace("countersign-system");
    const agent = await cp.serviceAccountIdentity(AGENTS, "bot", { expirationSeconds: 7200 });
    await cp.apply([
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "bench-configmaps", namespace: TARGET_NS },
        rules: [{ apiGroups: [""], resources: ["configmaps"], verbs: ["get", "patch", "update"] }],
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "bench-configmaps", namespace: TARGET_NS },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "bench-configmaps" },
        subjects: [{ kind: "ServiceAccount", name: "bot", namespace: AGENTS }],
      },
      ...Array.from({ length: OBJECTS }, (_, i) => ({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: `bench-${i}`, namespace: TARGET_NS, labels: { app: "payments" } },
        data: { n: "0", mode: "steady" },
      })),
    ] as never);
    const agentClient = rawClient(agent.kubeConfig);
    stops.push(async () => agentClient.close());
    /** Is a dry-run PATCH that trips policy i's probe denied? (all layouts check it the same way) */
    const probeDenied = async (i: number): Promise<boolean> => {
      const res = await agentClient.call(
        "PATCH",
        `/api/v1/namespaces/${TARGET_NS}/configmaps/bench-0?dryRun=All`,
        { data: { [`bench-probe-${i}`]: "x" } },
        "application/merge-patch+json",
      );
      if (res.status === 200) return false;
      if (res.status === 403 || res.status === 422 || res.status === 400) return true;
      throw new Error(`probe: ${res.status} ${res.body.slice(0, 300)}`);
    };
    const until = async (what: string, fn: () => Promise<boolean>) => {
      const deadline = Date.now() + 60_000;
      while (!(await fn())) {
        if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const active = (n: number) =>
      until("layout active", async () => (await probeDenied(0)) && (await probeDenied(n - 1)));
    const inactive = (n: number) =>
      until("layout gone", async () => !(await probeDenied(0)) && !(await probeDenied(n - 1)));

    const load = (rate: number, onWarm: () => void): Promise<LoadResult> =>
      new Promise((resolve, reject) => {
        const w = new Worker(new URL("./patch-worker.mjs", import.meta.url), {
          workerData: {
            host: "127.0.0.1",
            port: cp.apiServerPort,
            ca: cp.caPem,
            token: agent.token,
            namespace: TARGET_NS,
            objects: OBJECTS,
            rate,
            durationMs: SECONDS * 1000,
            warmupMs: 1500,
          },
        });
        w.on("message", (m: { warm?: boolean; done?: boolean } & LoadResult) => {
          if (m.warm) onWarm();
          if (m.done) resolve(m);
        });
        w.once("error", reject);
      });

    /** Waits until the API server has no mutating request in flight (the last phase drained). */
    const settle = async () => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const line = (await scrapeText())
          .split("\n")
          .find(
            (l) =>
              l.startsWith("apiserver_current_inflight_requests{") && l.includes('request_kind="mutating"'),
          );
        const inflight = Number(line?.slice(line.lastIndexOf(" ") + 1) ?? 0);
        if (inflight <= 0 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      await new Promise((r) => setTimeout(r, 1000));
    };
    const rows: Row[] = [];
    const apiPid = apiServerPid(cp.apiServerPort);
    const measure = async (layout: string, n: number | "-") => {
      for (const rate of RATES) {
        await settle();
        let before: Promise<Metrics> | undefined;
        let conns0 = new Map<string, number>();
        let cpu0 = 0;
        let cs0 = 0;
        const result = await load(rate, () => {
          cpu0 = cpuMs(apiPid);
          cs0 = mainThreadCpuMs();
          void admissionConnections().then((c) => {
            conns0 = c;
          });
          before = scrape();
        });
        const cpu1 = cpuMs(apiPid);
        const csCpu = mainThreadCpuMs() - cs0;
        const conns1 = await admissionConnections();
        const opened = [...conns1]
          .map(([p, v]) => [p, v - (conns0.get(p) ?? 0)] as const)
          .filter(([, v]) => v > 0);
        const conns = opened.reduce((a, [, v]) => a + v, 0);
        const after = await scrape();
        const b = await before!;
        const stepCount = after.stepCount - b.stepCount;
        const webhookCount = after.webhookCount - b.webhookCount;
        const row: Row = {
          layout,
          n,
          rate,
          result,
          stepMs: stepCount > 0 ? ((after.stepSum - b.stepSum) / stepCount) * 1000 : Number.NaN,
          webhookMs:
            webhookCount > 0 ? ((after.webhookSum - b.webhookSum) / webhookCount) * 1000 : Number.NaN,
          apiCpuMs: stepCount > 0 ? (cpu1 - cpu0) / stepCount : Number.NaN,
          csCpuMs: stepCount > 0 ? csCpu / stepCount : Number.NaN,
          connsPerCall: webhookCount > 0 ? conns / webhookCount : Number.NaN,
          protocols: opened.map(([p, v]) => `${p} ${v}`).join(", "),
        };
        rows.push(row);
        console.log(
          `${layout}${n === "-" ? "" : ` (N=${n})`} at ${rate}/s: validate step ${row.stepMs.toFixed(3)} ms${Number.isNaN(row.webhookMs) ? "" : `, webhook ${row.webhookMs.toFixed(3)} ms, ${row.connsPerCall.toFixed(3)} new connections per call${row.protocols ? ` (${row.protocols})` : ""}, since start ${[...conns1].map(([p, v]) => `${p} ${v}`).join(", ")}`}, API server CPU ${row.apiCpuMs.toFixed(3)} ms/req, Countersign process ${row.csCpuMs.toFixed(3)} ms/req, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, ${result.count} requests, ${result.errors} errors${result.shed ? `, ${result.shed} not sent (saturated: over ${rate * 2} unanswered)` : ""}`,
        );
      }
    };

    const deleteVaps = async () => {
      await admin
        .makeApiClient(AdmissionregistrationV1Api)
        .deleteCollectionValidatingAdmissionPolicyBinding({ labelSelector: "bench.countersign.io/e2e=true" });
      await admin
        .makeApiClient(AdmissionregistrationV1Api)
        .deleteCollectionValidatingAdmissionPolicy({ labelSelector: "bench.countersign.io/e2e=true" });
    };

    // Countersign: started once (webhook role), registered only for its own phases.
    const ca = await createCertificateAuthority("bench-e2e");
    const tls = await issueCertificate(ca, {
      commonName: "countersign",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    const cs = await startCountersign({
      kubeConfig: admin,
      installNamespace: "countersign-system",
      replica: "bench-e2e",
      webhook: {
        tls,
        admissionPort: 0,
        admissionAuth: { mode: "client-cert", clientCaPem: cp.webhookClient.ca.certPem },
        host: "127.0.0.1",
      },
    });
    stops.push(() => cs.stop());

    await measure("no admission", "-");
    for (const n of NS_LIST) {
      if (LAYOUTS.has("vap")) {
        await cp.apply(
          vap(
            "bench-e2e-single",
            matchConditions(0),
            Array.from({ length: n }, (_, i) => validations(i)).flat(),
          ) as never,
        );
        await active(n);
        await measure("1 VAP", n);
        await deleteVaps();
        await inactive(n);
      }
      if (LAYOUTS.has("countersign")) {
        await cp.apply(Array.from({ length: n }, (_, i) => approvalPolicy(i)) as never);
        await until(
          "policies compiled",
          async () => cs.policies.list().filter((p) => p.name.startsWith("bench-e2e-")).length === n,
        );
        await cp.apply([
          webhookConfiguration({
            name: WEBHOOK,
            caBundlePem: ca.certPem,
            url: `https://127.0.0.1:${cs.webhook!.admissionPort}`,
            installNamespace: "countersign-system",
            subjects: { serviceAccountNamespaces: [AGENTS] },
          }) as never,
        ]);
        await active(n);
        await measure("Countersign", n);
        try {
          await admin
            .makeApiClient(AdmissionregistrationV1Api)
            .deleteValidatingWebhookConfiguration({ name: WEBHOOK });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
        await inactive(n);
      }

      if (LAYOUTS.has("vaps")) {
        await cp.apply(
          Array.from({ length: n }, (_, i) =>
            vap(`bench-e2e-${i}`, matchConditions(i), validations(i)),
          ).flat() as never,
        );
        await active(n);
        await measure(`${n} VAPs`, n);
        await deleteVaps();
        await inactive(n);
      }
    }

    // Report.
    const none = new Map(rows.filter((r) => r.layout === "no admission").map((r) => [r.rate, r]));
    const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "-");
    console.log(
      "\nAdded per allowed PATCH (API server's validating-admission step, mean, minus no admission):",
    );
    console.table(
      rows.map((r) => ({
        layout: r.layout,
        N: r.n,
        "rate/s": r.rate,
        "step ms": fmt(r.stepMs),
        "added ms": fmt(r.stepMs - (none.get(r.rate)?.stepMs ?? 0)),
        "webhook ms": fmt(r.webhookMs),
        "conns/call": fmt(r.connsPerCall),
        "API server CPU ms": fmt(r.apiCpuMs),
        "Countersign CPU ms": r.layout === "Countersign" ? fmt(r.csCpuMs) : "-",
        "added CPU ms": fmt(
          r.apiCpuMs + (r.layout === "Countersign" ? r.csCpuMs : 0) - (none.get(r.rate)?.apiCpuMs ?? 0),
        ),
        "p50 ms": r.result.p50.toFixed(1),
        "p99 ms": r.result.p99.toFixed(1),
        "req/s": Math.round(r.result.count / r.result.seconds),
        errors: r.result.errors,
        "not sent": r.result.shed,
      })),
    );
    const added = (layout: string, n: number, rate: number) => {
      const r = rows.find((x) => x.layout === layout && x.n === n && x.rate === rate);
      return r ? r.stepMs - (none.get(rate)?.stepMs ?? 0) : Number.NaN;
    };
    const addedCpu = (layout: string, n: number, rate: number) => {
      const r = rows.find((x) => x.layout === layout && x.n === n && x.rate === rate);
      return r
        ? r.apiCpuMs + (layout === "Countersign" ? r.csCpuMs : 0) - (none.get(rate)?.apiCpuMs ?? 0)
        : Number.NaN;
    };
    console.log("Ratios (added CPU per request: API server, plus Countersign's process for Countersign):");
    for (const rate of RATES) {
      for (const n of NS_LIST) {
        console.log(
          `  ${rate}/s, N=${n}: Countersign / 1 VAP = ${(addedCpu("Countersign", n, rate) / addedCpu("1 VAP", n, rate)).toFixed(2)}, Countersign / ${n} VAPs = ${(addedCpu("Countersign", n, rate) / addedCpu(`${n} VAPs`, n, rate)).toFixed(2)}`,
        );
      }
      if (NS_LIST.length >= 2) {
        const [lo, hi] = [NS_LIST[0]!, NS_LIST[NS_LIST.length - 1]!];
        console.log(
          `  ${rate}/s, N ${lo} → ${hi}: Countersign ×${(addedCpu("Countersign", hi, rate) / addedCpu("Countersign", lo, rate)).toFixed(2)}, 1 VAP ×${(addedCpu("1 VAP", hi, rate) / addedCpu("1 VAP", lo, rate)).toFixed(2)}, N VAPs ×${(addedCpu(`${hi} VAPs`, hi, rate) / addedCpu(`${lo} VAPs`, lo, rate)).toFixed(2)}`,
        );
      }
    }
    console.log("Ratios (added latency):");
    for (const rate of RATES) {
      for (const n of NS_LIST) {
        console.log(
          `  ${rate}/s, N=${n}: Countersign / 1 VAP = ${(added("Countersign", n, rate) / added("1 VAP", n, rate)).toFixed(2)}, Countersign / ${n} VAPs = ${(added("Countersign", n, rate) / added(`${n} VAPs`, n, rate)).toFixed(2)}`,
        );
      }
      if (NS_LIST.length >= 2) {
        const [lo, hi] = [NS_LIST[0]!, NS_LIST[NS_LIST.length - 1]!];
        console.log(
          `  ${rate}/s, N ${lo} → ${hi}: Countersign ×${(added("Countersign", hi, rate) / added("Countersign", lo, rate)).toFixed(2)}, 1 VAP ×${(added("1 VAP", hi, rate) / added("1 VAP", lo, rate)).toFixed(2)}, N VAPs ×${(added(`${hi} VAPs`, hi, rate) / added(`${lo} VAPs`, lo, rate)).toFixed(2)}`,
        );
      }
    }
    console.log("Goal: Countersign / 1 VAP < 1 at N=10, and Countersign flat from N=10 to N=100.");
    console.log(
      `load average at the end: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
    );
    console.log(
      `machine: ${readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, ${cpus().length} cores, node ${process.version}; API server, etcd, Countersign and the load generator share it`,
    );
  } finally {
    for (const s of stops) await s().catch(() => undefined);
    await cp.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
