/**
 * Only the API server may drive admission. These are the attacks an agent's pod can make by
 * speaking to the webhook directly — a forged AdmissionReview in the agent's name — and they
 * must fail: no certificate, or a certificate the API server's webhook-client CA did not sign
 * (a cluster user's), is refused before the review is read, and creates or consumes nothing.
 * The real API server, presenting its client certificate, is still served; the API listener
 * (approval API, Slack) never serves /validate.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { connect as http2Connect } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CoreV1Api, type KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { startAdmissionServer } from "../../src/admission/server.js";
import { REPO_ROOT } from "../../src/controlplane/binaries.js";
import { admissionClientConfig, type ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { componentLogger } from "../../src/logging/logger.js";
import { admissionUnauthenticated } from "../../src/metrics/metrics.js";
import { issueCertificate } from "../../src/pki/certificates.js";
import { decide } from "../../src/plugin/commands.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { APPROVERS_GROUP, deleteGuard, requireApproval } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  asApiServer,
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import { agentIdentity, applyPolicies, approvalRequestsIn, httpsCall } from "../support/scenario.js";

let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let agentUser: string;
let approver: KubeConfig;
let userCert: { cert: string; key: string };
const agentsNs = uniqueName("auth-agents");
const prod = uniqueName("auth-prod");
const policyName = uniqueName("auth-guard");

const post = (
  port: number,
  path: string,
  body: string,
  tls: { cert?: string; key?: string } = {},
  method = "POST",
) => httpsCall(port, { path, method, body, tls, headers: { "content-type": "application/json" } });

/**
 * Several POSTs as streams of ONE HTTP/2 connection; also returns the negotiated ALPN protocol.
 * A stream the server did not serve at all (refused, or cut by its GOAWAY) answers status 0 with
 * the error's code and message as its body.
 */
async function postHttp2(
  port: number,
  bodies: string[],
  tls: { cert?: string; key?: string } = {},
): Promise<{ alpn: string | false | undefined; answers: { status: number; body: string }[] }> {
  const session = http2Connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, ...tls });
  session.on("error", () => {});
  try {
    const answers = await Promise.all(
      bodies.map(
        (body) =>
          new Promise<{ status: number; body: string }>((resolve) => {
            const reject = (err: NodeJS.ErrnoException) =>
              resolve({ status: 0, body: `${err.code ?? ""} ${err.message}` });
            let stream: ReturnType<typeof session.request>;
            try {
              stream = session.request({
                ":method": "POST",
                ":path": "/validate?timeout=10s",
                "content-type": "application/json",
              });
            } catch (err) {
              reject(err as NodeJS.ErrnoException);
              return;
            }
            let status = 0;
            let data = "";
            stream.on("response", (h) => (status = Number(h[":status"])));
            stream.on("data", (c: Buffer) => (data += c.toString()));
            stream.on("end", () => resolve({ status, body: data }));
            stream.on("error", reject);
            stream.end(body);
          }),
      ),
    );
    return { alpn: session.alpnProtocol, answers };
  } finally {
    session.close();
  }
}

const requests = () => approvalRequestsIn(cp, prod).list();

/** Polls for `ms` and fails if the condition ever holds (something appeared that must not). */
async function never(what: string, fn: () => Promise<boolean>, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) throw new Error(`${what} appeared`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A forged review: the agent's identity, deleting a Secret the policy gates. */
async function forgedDelete(secretName: string, uid: string): Promise<string> {
  const secret = await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .readNamespacedSecret({ name: secretName, namespace: prod });
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid,
      kind: { group: "", version: "v1", kind: "Secret" },
      resource: { group: "", version: "v1", resource: "secrets" },
      name: secretName,
      namespace: prod,
      operation: "DELETE",
      userInfo: {
        username: agentUser,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${agentsNs}`],
      },
      oldObject: secret,
      dryRun: false,
    },
  });
}

async function agentDelete(name: string): Promise<{ ok: boolean; message: string }> {
  try {
    await agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name, namespace: prod });
    return { ok: true, message: "" };
  } catch (err) {
    const s = kubeStatusOf(err);
    if (!s) throw err;
    return { ok: false, message: s.message ?? "" };
  }
}

async function refusals(reason: string): Promise<number> {
  const m = await admissionUnauthenticated.get();
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(prod);
  const id = await agentIdentity(cp, agentsNs, "ops-bot", {
    target: prod,
    resources: ["secrets"],
    verbs: ["get", "delete"],
  });
  agent = id.kubeConfig;
  agentUser = id.username;
  approver = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);
  // A cluster user's client certificate: valid for the API server, not for admission.
  const mallory = await issueCertificate(cp.ca, { commonName: "mallory", usage: "client" });
  userCert = { cert: mallory.certPem, key: mallory.keyPem };
  cs = await startTestCountersign(cp, { subjects: { serviceAccountNamespaces: [agentsNs] } });
  await applyPolicies(cp, cs, [
    deleteGuard(policyName, {
      agents: agentsNs,
      namespace: prod,
      rules: [
        requireApproval("deletes-in-prod", { groups: [APPROVERS_GROUP], requiredApprovals: 1, ttl: "1h" }),
      ],
    }),
  ]);
  const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
  for (const name of ["forged-target", "approved-target", "canary"]) {
    const body: V1Secret = { metadata: { name }, stringData: { password: "hunter2" } };
    await core.createNamespacedSecret({ namespace: prod, body });
  }
  await eventually(
    async () => {
      try {
        await agent
          .makeApiClient(CoreV1Api)
          .deleteNamespacedSecret({ name: "canary", namespace: prod, dryRun: "All" });
        return false;
      } catch {
        return true;
      }
    },
    15_000,
    "webhook active",
  );
});

afterAll(async () => {
  await cs?.stop();
});

describe("admission answers only the API server", () => {
  it("a forged review without a client certificate is refused (403) and creates no ApprovalRequest", async () => {
    const before = await refusals("no-certificate");
    const out = await post(
      cs.replicas[0]!.admissionPort,
      "/validate",
      await forgedDelete("forged-target", "forged-1"),
    );
    expect(out.status).toBe(403);
    expect(JSON.parse(out.body).error).toMatch(
      /no client certificate: only the Kubernetes API server may call \/validate/,
    );
    expect(JSON.parse(out.body).error).toMatch(/nothing was created or consumed/);
    expect(await refusals("no-certificate")).toBe(before + 1);
    await never("an ApprovalRequest for the forged review", async () =>
      (await requests()).some((r) => r.spec.action.name === "forged-target"),
    );
  });

  it("a forged review with a cluster user's client certificate (another CA) is refused and creates nothing", async () => {
    const before = await refusals("untrusted-certificate");
    const out = await post(
      cs.replicas[0]!.admissionPort,
      "/validate?timeout=10s",
      await forgedDelete("forged-target", "forged-2"),
      userCert,
    );
    expect(out.status).toBe(403);
    expect(JSON.parse(out.body).error).toMatch(
      /"mallory" is not signed by the configured admission client CA/,
    );
    expect(await refusals("untrusted-certificate")).toBe(before + 1);
    await never("an ApprovalRequest for the forged review", async () =>
      (await requests()).some((r) => r.spec.action.name === "forged-target"),
    );
  });

  it("a forged review cannot consume an approval; the agent's real retry through the API server does, once", async () => {
    const denied = await agentDelete("approved-target");
    expect(denied.ok).toBe(false);
    const ar = await eventually(
      async () => (await requests()).find((r) => r.spec.action.name === "approved-target"),
      10_000,
      "ApprovalRequest",
    );
    await decide(approver, prod, ar.metadata.name, "Approve", "ok");
    const read = async () =>
      (await requests()).find((r) => r.metadata.name === ar.metadata.name) as ApprovalRequest;
    await eventually(async () => (await read()).status?.phase === "Approved", 10_000, "Approved");

    const forged = await forgedDelete("approved-target", "steal-1");
    for (const tls of [{}, userCert]) {
      const out = await post(cs.replicas[0]!.admissionPort, "/validate", forged, tls);
      expect(out.status).toBe(403);
    }
    // Still Approved and unconsumed, for a while.
    await never("the approval consumed by a forged review", async () => {
      const now = await read();
      return now.status?.phase !== "Approved" || now.status?.consumed !== undefined;
    });

    // The real agent, through the API server: allowed exactly once.
    expect((await agentDelete("approved-target")).ok).toBe(true);
    const consumed = await read();
    expect(consumed.status?.phase).toBe("Consumed");
    expect(consumed.status?.consumed?.admissionUID).toBeTruthy();
    expect(consumed.status?.consumed?.admissionUID).not.toBe("steal-1");
  });

  it("health endpoints stay open for probes; everything else on the admission port is 404", async () => {
    const port = cs.replicas[0]!.admissionPort;
    expect((await post(port, "/readyz", "", {}, "GET")).status).toBe(200);
    expect((await post(port, "/healthz", "", {}, "GET")).status).toBe(200);
    const api = await post(port, "/api/v1/approvalrequests", "", asApiServer(cp), "GET");
    expect(api.status).toBe(404);
    expect(JSON.parse(api.body).error).toMatch(/approval API and Slack interactivity are on the API port/);
  });

  it("the API listener never serves admission, not even to the API server's certificate", async () => {
    const port = cs.replicas[0]!.apiPort!;
    expect(port).not.toBe(cs.replicas[0]!.admissionPort);
    const body = await forgedDelete("forged-target", "via-api-port");
    for (const path of ["/validate", "/validate?timeout=10s"]) {
      const out = await post(port, path, body, asApiServer(cp));
      expect(out.status).toBe(404);
      expect(JSON.parse(out.body).error).toMatch(/admission is served only on the admission port/);
    }
    await never("an ApprovalRequest from the API port", async () =>
      (await requests()).some((r) => r.spec.action.name === "forged-target"),
    );
  });

  it("the API server itself, presenting its client certificate, is served", async () => {
    const before = (await requests()).length;
    const out = await agentDelete("forged-target");
    expect(out.ok).toBe(false);
    expect(out.message).toMatch(/needs a human approval/);
    await eventually(
      async () => (await requests()).length === before + 1,
      10_000,
      "the real request's ApprovalRequest",
    );
  });
});

describe("hack/kind/admission-client.sh (what kind-config.yaml mounts; kind itself is not run here)", () => {
  it("writes the harness's admission configuration, a client certificate an admission listener accepts, and the chart's ConfigMap", async () => {
    const out = mkdtempSync(join(tmpdir(), "cs-kind-admission-"));
    await promisify(execFile)(
      "bash",
      [join(REPO_ROOT, "hack/kind/admission-client.sh"), out, "cs", "cs-ns"],
      {
        env: { ...process.env, NODE_DIR: "/etc/kubernetes/countersign" },
      },
    );
    const read = (f: string) => readFileSync(join(out, f), "utf8");
    // The same AdmissionConfiguration and "*" kubeconfig the test API server runs with.
    const expected = admissionClientConfig({
      clientCert: "/etc/kubernetes/countersign/webhook-client.crt",
      clientKey: "/etc/kubernetes/countersign/webhook-client.key",
      kubeconfig: "/etc/kubernetes/countersign/webhook-client.kubeconfig",
    });
    expect(parse(read("admission-config.yaml"))).toEqual(parse(expected.admissionConfiguration));
    expect(parse(read("webhook-client.kubeconfig"))).toEqual(parse(expected.kubeconfig));
    const configMap = parse(read("admission-client-ca-configmap.yaml"));
    expect(configMap.metadata).toEqual({ name: "cs-countersign-admission-client-ca", namespace: "cs-ns" });
    expect(configMap.data["ca.crt"]).toBe(read("webhook-client-ca.crt"));

    // An admission listener trusting the script's CA lets the script's client certificate
    // through (a bad body then gets 400, not 403) and refuses the harness API server's.
    const serving = await issueCertificate(cp.ca, { commonName: "kind-check", usage: "server" });
    const listener = await startAdmissionServer({
      tls: serving,
      port: 0,
      host: "127.0.0.1",
      isReady: () => true,
      auth: { mode: "client-cert", clientCaPem: read("webhook-client-ca.crt") },
      logger: componentLogger("admission-test"),
    } as never);
    try {
      const kindClient = { cert: read("webhook-client.crt"), key: read("webhook-client.key") };
      expect((await post(listener.port, "/validate", "{not json", kindClient)).status).toBe(400);
      expect((await post(listener.port, "/validate", "{not json", asApiServer(cp))).status).toBe(403);
    } finally {
      await listener.stop();
    }
  });

  it("over HTTP/2 (what the API server negotiates) every stream is checked like a connection: no or a foreign certificate is refused", async () => {
    const serving = await issueCertificate(cp.ca, { commonName: "h2-check", usage: "server" });
    const listener = await startAdmissionServer({
      tls: serving,
      port: 0,
      host: "127.0.0.1",
      isReady: () => true,
      auth: { mode: "client-cert", clientCaPem: cp.webhookClient.ca.certPem },
      logger: componentLogger("admission-test"),
    } as never);
    try {
      const bodies = ["{not json", "{not json", "{not json"];
      // The API server's certificate: HTTP/2 is negotiated and every stream reaches the body check (400).
      const served = await postHttp2(listener.port, bodies, asApiServer(cp));
      expect(served.alpn).toBe("h2");
      expect(served.answers.map((a) => a.status)).toEqual([400, 400, 400]);
      // No certificate, or a cluster user's: no stream of the connection is served, though
      // another connection (the API server's) was accepted before. The first is refused (403)
      // before its body is read, and the connection ends with it: the others are not taken at
      // all (one stream at a time for an unverified peer, then GOAWAY; red team 14).
      for (const tls of [{}, userCert]) {
        const refused = await postHttp2(listener.port, bodies, tls);
        expect(refused.alpn).toBe("h2");
        const answered = refused.answers.filter((a) => a.status !== 0);
        expect(answered.map((a) => a.status)).toEqual([403]);
        expect(JSON.parse(answered[0]!.body).error).toMatch(/forbidden/);
        for (const a of refused.answers.filter((x) => x.status === 0))
          expect(a.body).toMatch(/REFUSED_STREAM|GOAWAY/);
      }
      // HTTP/1.1 is still served on the same port (health probes, older clients).
      expect((await post(listener.port, "/validate", "{not json", asApiServer(cp))).status).toBe(400);
      expect((await post(listener.port, "/validate", "{not json")).status).toBe(403);
    } finally {
      await listener.stop();
    }
  });

  it("pins the client certificate's names, and picks up a new client CA without a restart", async () => {
    const serving = await issueCertificate(cp.ca, { commonName: "pin-check", usage: "server" });
    // A certificate from the right CA but for another name (e.g. another component's client).
    const other = await issueCertificate(cp.webhookClient.ca, {
      commonName: "not-the-apiserver",
      usage: "client",
    });
    const otherTls = { cert: other.certPem, key: other.keyPem };
    const userCa = { certPem: cp.ca.certPem };
    const listener = await startAdmissionServer({
      tls: serving,
      port: 0,
      host: "127.0.0.1",
      isReady: () => true,
      // Starts out trusting the wrong CA (the cluster's client CA).
      auth: { mode: "client-cert", clientCaPem: userCa.certPem, allowedNames: [cp.webhookClient.name] },
      logger: componentLogger("admission-test"),
    } as never);
    try {
      const refused = await post(listener.port, "/validate", "{not json", asApiServer(cp));
      expect(refused.status).toBe(403);
      expect(JSON.parse(refused.body).error).toMatch(/not signed by the configured admission client CA/);
      listener.setClientCa(cp.webhookClient.ca.certPem);
      // New connections verify against the new CA: the API server passes (400: the body is bad)...
      expect((await post(listener.port, "/validate", "{not json", asApiServer(cp))).status).toBe(400);
      // ...and a certificate from the same CA with a name that is not pinned does not.
      const pinned = await post(listener.port, "/validate", "{not json", otherTls);
      expect(pinned.status).toBe(403);
      expect(JSON.parse(pinned.body).error).toMatch(
        /"not-the-apiserver" is not one of the allowed admission client names/,
      );
    } finally {
      await listener.stop();
    }
  });
});
