/**
 * Realistic AuditRecords for the evidence-at-scale benchmark (bench/audit-scale.ts) and the
 * integration tests of label-selected, paged reads: one namespace's chain of requests by AI
 * agents against a few thousand targets, each request leaving Requested, then Approved /
 * Denied / Expired, and for approved ones Consumed and Executed, with the fields the
 * controller writes (requester, actor, action with summary, agent context with a prompt,
 * policy, fingerprint), properly chained and hashed, labelled as the writer labels them
 * (or, with `legacy`, as records written before the target labels existed).
 *
 * Records are created directly (not through the append protocol, which takes six calls per
 * record): the chain is computed here and the checkpoint written at its head.
 */
import { createHash } from "node:crypto";
import { Agent, request } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import { GENESIS_HASH, hashRecord } from "../src/audit/chain.js";
import { targetLabels } from "../src/audit/target-labels.js";
import {
  type AuditEvent,
  type AuditRecord,
  type AuditRecordSpec,
  LABEL_APPROVAL_REQUEST,
  LABEL_EVENT,
} from "../src/resources/audit-record.js";

/** Kinds agents touch, with their resource and group. */
const KINDS = [
  { kind: "Deployment", resource: "deployments", group: "apps", version: "v1" },
  { kind: "Secret", resource: "secrets", group: "", version: "v1" },
  { kind: "ConfigMap", resource: "configmaps", group: "", version: "v1" },
  { kind: "StatefulSet", resource: "statefulsets", group: "apps", version: "v1" },
  { kind: "RoleBinding", resource: "rolebindings", group: "rbac.authorization.k8s.io", version: "v1" },
  { kind: "Pod", resource: "pods", group: "", version: "v1" },
  { kind: "Service", resource: "services", group: "", version: "v1" },
  { kind: "CronJob", resource: "cronjobs", group: "batch", version: "v1" },
] as const;
const APPS = ["payments", "checkout", "ledger", "search", "identity", "billing", "orders", "catalog"];
const AGENTS = ["ops-bot", "deploy-agent", "sre-copilot", "cost-optimizer"];
const APPROVERS = ["alice@example.com", "bob@example.com", "carol@example.com", "dan@example.com"];

/** A small seeded PRNG (mulberry32): the same seed generates the same records. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Target {
  kind: string;
  resource: string;
  group: string;
  version: string;
  name: string;
}

/** Target number `i` of a namespace (stable, so a benchmark can ask for one it generated). */
export function targetOf(i: number): Target {
  const k = KINDS[i % KINDS.length]!;
  const app = APPS[Math.floor(i / KINDS.length) % APPS.length]!;
  return { ...k, name: `${app}-${k.resource.replace(/s$/, "")}-${i}` };
}

export interface GenerateOptions {
  namespace: string;
  /** Sequence of the first record (continue an existing chain), and the hash before it. */
  from?: { sequence: number; previousHash: string };
  count: number;
  /** How many distinct targets the requests spread over. */
  targets?: number;
  seed?: number;
  /** Without target labels (records written before they existed). */
  legacy?: boolean;
  /** Record name prefix (unique per generation run). */
  prefix?: string;
}

/** Yields `count` chained records, in sequence order. */
export function* generateRecords(o: GenerateOptions): Generator<AuditRecord> {
  const rnd = prng(o.seed ?? 1);
  const targets = o.targets ?? 2000;
  const prefix = o.prefix ?? "req";
  let sequence = o.from?.sequence ?? 0;
  let previousHash = o.from?.previousHash ?? GENESIS_HASH;
  let n = 0;
  let request = 0;
  const t0 = Date.parse("2026-01-05T08:00:00Z");
  while (n < o.count) {
    const t = targetOf(Math.floor(rnd() * targets));
    const agent = AGENTS[Math.floor(rnd() * AGENTS.length)]!;
    const approver = APPROVERS[Math.floor(rnd() * APPROVERS.length)]!;
    const arName = `${prefix}-${request++}-${t.name}`.slice(0, 63).replace(/[^a-z0-9]$/, "x");
    const op = t.kind === "Secret" && rnd() < 0.5 ? "DELETE" : "UPDATE";
    const fingerprint = createHash("sha256").update(`${arName}/${n}`).digest("hex");
    const summary = `${op === "DELETE" ? "delete" : "update"} ${t.kind} ${o.namespace}/${t.name}${op === "UPDATE" ? ` (spec.replicas ${2 + (n % 5)} → ${10 + (n % 40)})` : ""}`;
    const base = {
      approvalRequest: { name: arName, uid: createHash("md5").update(arName).digest("hex") },
      fingerprint,
      requester: {
        username: `system:serviceaccount:ai-agents:${agent}`,
        uid: createHash("md5").update(agent).digest("hex"),
        groups: ["system:serviceaccounts", "system:serviceaccounts:ai-agents", "system:authenticated"],
        serviceAccount: { namespace: "ai-agents", name: agent },
      },
      action: {
        operation: op,
        group: t.group,
        version: t.version,
        resource: t.resource,
        subResource: "",
        namespace: o.namespace,
        name: t.name,
        kind: t.kind,
        objectHash: createHash("sha256").update(`${t.name}/${n}`).digest("hex"),
        transitionHash: createHash("sha256").update(`${t.name}/${n}/t`).digest("hex"),
        summary,
      },
      agentContext: {
        reason: `ticket OPS-${1000 + (request % 9000)}: ${op === "DELETE" ? "rotate leaked credential" : "scale for the evening peak"}`,
        prompt: `You are ${agent}. The on-call asked: "${op === "DELETE" ? `the credential ${t.name} was pasted into a public channel; remove it and let the operator recreate it` : `latency on ${t.name} is above the SLO; scale it out until p99 is under 250ms`}". Plan: inspect ${t.kind.toLowerCase()} ${t.name}, apply the change, watch the rollout.`,
        ticket: `OPS-${1000 + (request % 9000)}`,
        agent,
      },
      policy: { name: `${t.resource}-changes`, rule: op === "DELETE" ? "deletes" : "scale-ups" },
    };
    const outcome = rnd();
    const events: { event: AuditEvent; actor?: AuditRecordSpec["actor"]; reason?: string }[] = [
      { event: "Requested" },
    ];
    if (outcome < 0.7) {
      events.push(
        {
          event: "Approved",
          actor: { username: approver, groups: ["sre"], via: rnd() < 0.6 ? "slack" : "kubectl" },
          reason: "looks right, go ahead",
        },
        { event: "Consumed", actor: { username: base.requester.username, via: "admission" } },
        { event: "Executed", actor: { username: "countersign", via: "controller" } },
      );
    } else if (outcome < 0.9) {
      events.push({
        event: "Denied",
        actor: { username: approver, groups: ["sre"], via: "slack" },
        reason: "not during the freeze",
      });
    } else events.push({ event: "Expired", actor: { username: "countersign", via: "controller" } });
    for (const e of events) {
      if (n >= o.count) break;
      const content: Omit<AuditRecordSpec, "hash"> = {
        ...base,
        sequence,
        event: e.event,
        time: new Date(t0 + sequence * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
        ...(e.actor ? { actor: e.actor } : {}),
        ...(e.reason ? { reason: e.reason } : {}),
        previousHash,
      };
      const spec: AuditRecordSpec = { ...content, hash: hashRecord(content) };
      const labels: Record<string, string> = {
        [LABEL_APPROVAL_REQUEST]: arName,
        [LABEL_EVENT]: e.event,
        ...(o.legacy ? {} : targetLabels(spec.action)),
      };
      yield {
        apiVersion: "countersign.io/v1alpha1",
        kind: "AuditRecord",
        metadata: { name: `${arName}.${e.event.toLowerCase()}`, namespace: o.namespace, labels },
        spec,
      };
      previousHash = spec.hash;
      sequence++;
      n++;
    }
  }
}

/** A minimal HTTPS client for the API server (keep-alive; for creating many objects fast). */
export function rawClient(kc: KubeConfig): {
  call(
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<{ status: number; body: string }>;
  close(): void;
} {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster) throw new Error("kubeconfig has no current cluster");
  const url = new URL(cluster.server);
  const dec = (s?: string) => (s ? Buffer.from(s, "base64") : undefined);
  const agent = new Agent({
    keepAlive: true,
    maxSockets: 64,
    ...(cluster.caData ? { ca: dec(cluster.caData) } : {}),
    ...(user?.certData ? { cert: dec(user.certData) } : {}),
    ...(user?.keyData ? { key: dec(user.keyData) } : {}),
  });
  return {
    call(method, path, body, contentType = "application/json") {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      return new Promise((resolve, reject) => {
        const req = request(
          {
            host: url.hostname,
            port: url.port,
            path,
            method,
            agent,
            headers: {
              accept: "application/json",
              ...(payload ? { "content-type": contentType, "content-length": payload.length } : {}),
              ...(user?.token ? { authorization: `Bearer ${user.token}` } : {}),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
            );
          },
        );
        req.on("error", reject);
        req.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}

/**
 * Creates the records `concurrency` at a time (an existing record of the same name counts as
 * created) and, unless `checkpoint` is false, writes the namespace's checkpoint at the last
 * one. Returns the head.
 */
export async function createRecords(
  kc: KubeConfig,
  records: Iterable<AuditRecord>,
  opts: { concurrency?: number; checkpoint?: boolean; onProgress?: (n: number) => void } = {},
): Promise<{ sequence: number; hash: string; record?: string; created: number }> {
  const client = rawClient(kc);
  const it = records[Symbol.iterator]();
  let last: AuditRecord | undefined;
  let created = 0;
  const worker = async () => {
    for (;;) {
      const next = it.next();
      if (next.done) return;
      const r = next.value;
      if (!last || r.spec.sequence > last.spec.sequence) last = r;
      const ns = r.metadata.namespace;
      for (let attempt = 0; ; attempt++) {
        const res = await client
          .call("POST", `/apis/countersign.io/v1alpha1/namespaces/${ns}/auditrecords`, r)
          .catch((err: unknown) => ({ status: 0, body: String(err) }));
        if (res.status === 201 || res.status === 409) break;
        if (attempt >= 5)
          throw new Error(`creating ${ns}/${r.metadata.name}: ${res.status} ${res.body.slice(0, 300)}`);
        await new Promise((s) => setTimeout(s, 200 * (attempt + 1)));
      }
      created++;
      if (created % 1000 === 0) opts.onProgress?.(created);
    }
  };
  try {
    await Promise.all(Array.from({ length: opts.concurrency ?? 16 }, worker));
    const head = last
      ? { sequence: last.spec.sequence, hash: last.spec.hash, record: last.metadata.name }
      : { sequence: -1, hash: GENESIS_HASH };
    if (opts.checkpoint !== false && last) {
      const ns = last.metadata.namespace;
      const path = `/apis/countersign.io/v1alpha1/namespaces/${ns}/auditcheckpoints`;
      const existing = await client.call("GET", `${path}/audit-chain`);
      if (existing.status === 200) {
        const cp = JSON.parse(existing.body);
        cp.spec.head = { ...head, time: last.spec.time };
        const res = await client.call("PUT", `${path}/audit-chain`, cp);
        if (res.status !== 200) throw new Error(`checkpoint: ${res.status} ${res.body.slice(0, 300)}`);
      } else {
        const res = await client.call("POST", path, {
          apiVersion: "countersign.io/v1alpha1",
          kind: "AuditCheckpoint",
          metadata: { name: "audit-chain", namespace: ns },
          spec: {
            chain: createHash("sha256").update(ns).digest("hex").slice(0, 32),
            head: { ...head, time: last.spec.time },
            anchoredAt: { sequence: -1, time: last.spec.time },
          },
        });
        if (res.status !== 201) throw new Error(`checkpoint: ${res.status} ${res.body.slice(0, 300)}`);
      }
    }
    return { ...head, created };
  } finally {
    client.close();
  }
}
