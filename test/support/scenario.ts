/**
 * The setup integration files repeat, written once: agents and approvers with their RBAC,
 * applying a policy and waiting until Countersign serves it, reading what the API server
 * refused, the approval HTTP API, and HTTPS receivers for notifications.
 */
import type { IncomingHttpHeaders } from "node:http";
import { createServer, request } from "node:https";
import type { AddressInfo } from "node:net";
import { type KubernetesObject, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { createCertificateAuthority, issueCertificate } from "../../src/pki/certificates.js";
import type { ApprovalPolicy } from "../../src/resources/approval-policy.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { CountersignClient } from "../../src/resources/client.js";
import {
  APPROVER_CLUSTER_ROLE,
  eventually,
  grantServiceAccount,
  type TestCountersign,
} from "./countersign.js";

/** What the API server refused `p` with (its Status message); throws if `p` succeeded. */
export async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return kubeStatusOf(err)?.message ?? (err instanceof Error ? err.message : String(err));
  }
  throw new Error("expected the API server to refuse");
}

/** Whether `p` succeeded, and the refusal's message when it did not. */
export async function outcome<T>(
  p: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, error: kubeStatusOf(err)?.message ?? (err as Error).message };
  }
}

/** Runs an agent's call: the API server's refusal message, or "" when it went through. */
export async function attempt(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return "";
  } catch (err) {
    const s = kubeStatusOf(err);
    if (!s) throw err;
    return s.message ?? "";
  }
}

/** The ApprovalRequest a Countersign message names, in any state; throws when it names none. */
export function requestNameIn(message: string): string {
  const m = /ApprovalRequest [a-z0-9-]+\/([a-z0-9-]+) /.exec(message);
  if (!m) throw new Error(`no ApprovalRequest named in: ${message}`);
  return m[1]!;
}

/**
 * The name of the ApprovalRequest a gate denial names: one it created, or (unless
 * `createdOnly`) one that is pending; undefined when the message names none.
 */
export function requestNamed(message: string, createdOnly = false): string | undefined {
  const re = createdOnly
    ? /ApprovalRequest \S+\/(\S+) was created/
    : /ApprovalRequest \S+\/(\S+) (was created|is pending)/;
  return re.exec(message)?.[1];
}

/**
 * Retries `write` (an agent's call) until the gate's denial names a request it created, and
 * returns that request's name.
 */
export function untilRequestCreated(write: () => Promise<unknown>, timeoutMs = 15_000): Promise<string> {
  return eventually(
    async () => {
      try {
        await write();
        return undefined;
      } catch (err) {
        return requestNamed(kubeStatusOf(err)?.message ?? "", true);
      }
    },
    timeoutMs,
    "ApprovalRequest created",
  );
}

/**
 * `write` (an agent's call) is denied by the gate: the ApprovalRequest the denial names (created
 * or pending), once the reconciler has written its first status, so what follows races with nothing.
 */
export async function deniedRequest(
  cp: ControlPlane,
  namespace: string,
  write: () => Promise<unknown>,
): Promise<string> {
  const message = await rejection(write());
  const name = requestNamed(message);
  if (!name) throw new Error(`unexpected denial: ${message}`);
  await eventually(
    async () => (await approvalRequestsIn(cp, namespace).phase(name)) !== undefined,
    10_000,
    "first status",
  );
  return name;
}

/** Reads ApprovalRequests of `namespace` as the admin; `get` throws when the request does not exist. */
export function approvalRequestsIn(cp: ControlPlane, namespace: string) {
  const client = CountersignClient.fromKubeConfig(cp.adminKubeConfig()).approvalRequests;
  return {
    client,
    async get(name: string): Promise<ApprovalRequest> {
      const ar = await client.get(namespace, name);
      if (!ar) throw new Error(`ApprovalRequest ${namespace}/${name} not found`);
      return ar;
    },
    async phase(name: string): Promise<string | undefined> {
      return (await client.get(namespace, name))?.status?.phase;
    },
    list: () => client.list(namespace),
  };
}

/** Applies `policies` and waits until every replica's policy cache serves each of them. */
export async function applyPolicies(
  cp: ControlPlane,
  cs: TestCountersign,
  policies: ApprovalPolicy[],
  timeoutMs = 10_000,
): Promise<void> {
  await cp.apply(policies as KubernetesObject[]);
  const names = policies.map((p) => p.metadata.name);
  await eventually(
    async () => cs.replicas.every((r) => names.every((n) => r.policies.list().some((p) => p.name === n))),
    timeoutMs,
    `policy ${names.join(", ")}`,
  );
}

/** Polls until `probe` (an agent's dry-run) is refused with a message matching `pattern`. */
export async function untilRefused(
  probe: () => Promise<unknown>,
  pattern = /needs (a human )?approval/,
  timeoutMs = 15_000,
): Promise<void> {
  await eventually(
    async () => pattern.test(await rejection(probe()).catch(() => "")),
    timeoutMs,
    "webhook active",
  );
}

/**
 * An agent: service account `name` in `namespace`, allowed `verbs` on core-group `resources`
 * in `target`.
 */
export async function agentIdentity(
  cp: ControlPlane,
  namespace: string,
  name: string,
  grant: { target: string; resources: string[]; verbs: string[] },
  options: Parameters<ControlPlane["serviceAccountIdentity"]>[2] = {},
) {
  const id = await cp.serviceAccountIdentity(namespace, name, options);
  await grantServiceAccount(cp, grant.target, { namespace, name }, grant.resources, grant.verbs);
  return id;
}

/**
 * Binds the approver ClusterRole to service account `sa`: in `namespace` (a RoleBinding), or
 * cluster-wide (a ClusterRoleBinding) when `namespace` is undefined; the binding is `bindingName`.
 */
export async function bindApproverRole(
  cp: ControlPlane,
  namespace: string | undefined,
  sa: { namespace: string; name: string },
  bindingName: string,
): Promise<void> {
  const rbac = cp.adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);
  const body = {
    metadata: { name: bindingName },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: APPROVER_CLUSTER_ROLE },
    subjects: [{ kind: "ServiceAccount", name: sa.name, namespace: sa.namespace }],
  };
  if (namespace === undefined) await rbac.createClusterRoleBinding({ body });
  else await rbac.createNamespacedRoleBinding({ namespace, body });
}

export interface ApiAnswer {
  status: number;
  /** The error's reason code (decisions.ts), when refused. */
  reason?: string;
  message: string;
  // biome-ignore lint/suspicious/noExplicitAny: the JSON body as the API sent it
  json: any;
}

export interface HttpsAnswer {
  status: number;
  body: string;
}

/**
 * One HTTPS call to 127.0.0.1:`port` (a listener of a test replica: its certificate is not
 * checked). `tls` is the client certificate to present, e.g. asApiServer(cp).
 */
export function httpsCall(
  port: number | undefined,
  opts: {
    path: string;
    method?: string;
    body?: string | undefined;
    headers?: Record<string, string>;
    tls?: { cert?: string; key?: string };
  },
): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: opts.path,
        method: opts.method ?? "POST",
        rejectUnauthorized: false,
        ...opts.tls,
        headers: opts.headers ?? {},
      },
      (res) => {
        let data = "";
        res.on("data", (c) => (data += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** A call to replica `port`'s approval HTTP API as the bearer of `token` (POST when `body`). */
export async function approvalApi(
  port: number | undefined,
  path: string,
  token: string,
  body?: object,
): Promise<ApiAnswer> {
  const res = await httpsCall(port, {
    path: `/api/v1${path}`,
    method: body ? "POST" : "GET",
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = res.body ? JSON.parse(res.body) : {};
  return {
    status: res.status,
    reason: json.error?.reason,
    message: json.error?.message ?? json.message ?? "",
    json,
  };
}

export interface ServerTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** A new CA `caName` and a server certificate from it for 127.0.0.1. */
export async function receiverTls(caName: string): Promise<ServerTls> {
  const ca = await createCertificateAuthority(caName);
  const tls = await issueCertificate(ca, {
    commonName: "receiver",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  return { caPem: ca.certPem, certPem: tls.certPem, keyPem: tls.keyPem };
}

export interface ReceivedCall {
  path: string;
  body: string;
  headers: IncomingHttpHeaders;
}

export interface Receiver {
  /** https://127.0.0.1:PORT (no path). */
  base: string;
  caPem: string;
  /** What it answered 200 to, in order. */
  received: ReceivedCall[];
  close(): Promise<void>;
}

/**
 * An HTTPS receiver (a notification route's far end) on 127.0.0.1. It answers 200 and keeps
 * the call, unless `respond` returns another status (then the call is not kept).
 */
export async function startReceiver(
  tls: ServerTls,
  respond?: (call: ReceivedCall) => number | undefined,
): Promise<Receiver> {
  const received: ReceivedCall[] = [];
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const call = { path: req.url ?? "", body, headers: req.headers };
      const status = respond?.(call) ?? 200;
      if (status === 200) received.push(call);
      res.writeHead(status).end(status === 200 ? "ok" : "try later");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    base: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    caPem: tls.caPem,
    received,
    async close() {
      server.close();
      server.closeAllConnections();
    },
  };
}
