/**
 * Fuzzed input on every listener Countersign serves: the admission listener (as the API
 * server, with its client certificate), the approval API (with a valid bearer token) and
 * Slack interactivity (validly signed, so the payload parser is reached). Malformed and
 * truncated JSON, wrong types at every field of an AdmissionReview, 10,000-deep nesting,
 * bodies at and over the limit, wrong content types, slow partial bodies, many idle
 * connections. Every answer is a clear 4xx (or, for a parseable review, an AdmissionReview
 * that does not allow the gated action), never a 5xx or a crash, and the next good request
 * is answered. Peak RSS of this process (Countersign runs in it) is printed.
 */
import { createHmac } from "node:crypto";
import { Agent, request } from "node:https";
import { connect, type TLSSocket } from "node:tls";
import { CustomObjectsApi } from "@kubernetes/client-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_BODY_LIMIT_BYTES } from "../../src/admission/server.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { gvr, POLICY_PLURAL } from "../../src/resources/group.js";
import { agentsIn, approvalPolicy, matching, requireApproval } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import { asApiServer, startTestCountersign, type TestCountersign } from "../support/countersign.js";
import { applyPolicies } from "../support/scenario.js";

const SIGNING = "fuzz-signing-secret";
const agentsNs = uniqueName("fuzz-agents");
const ns = uniqueName("fuzz");
const policyName = uniqueName("fuzz-policy");
let cp: ControlPlane;
let cs: TestCountersign;
let admissionPort: number;
let apiPort: number;
let token: string;
let agentUser: string;

/** Every answer seen, by listener and status; and the peak RSS while fuzzing. */
const tally = new Map<string, number>();
let inputs = 0;
let peakRss = 0;
const rssTimer = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 25);

interface Reply {
  status: number;
  body: string;
}

const keepAlive = new Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: false });

function send(
  port: number,
  opts: {
    method?: string;
    path: string;
    headers?: Record<string, string | number>;
    body?: string | Buffer;
    asApiServer?: boolean;
    listener: string;
  },
): Promise<Reply> {
  inputs++;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: opts.method ?? "POST",
        path: opts.path,
        headers: opts.headers ?? {},
        ...(opts.asApiServer
          ? { ...asApiServer(cp), rejectUnauthorized: false, agent: false }
          : { agent: keepAlive }),
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const key = `${opts.listener} ${res.statusCode}`;
          tally.set(key, (tally.get(key) ?? 0) + 1);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
        });
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("no answer within 30 s")));
    req.end(opts.body);
  });
}

/** The API server's agent: one TLS session with its client certificate, kept alive. */
let apiServerAgent: Agent;
function review(body: string | Buffer, headers: Record<string, string | number> = {}): Promise<Reply> {
  inputs++;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: admissionPort,
        method: "POST",
        path: "/validate?timeout=10s",
        headers: { "content-type": "application/json", ...headers },
        agent: apiServerAgent,
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const key = `admission ${res.statusCode}`;
          tally.set(key, (tally.get(key) ?? 0) + 1);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
        });
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("no answer within 30 s")));
    req.end(body);
  });
}

/** A review the gate must refuse: the covered agent creating a ConfigMap in the gated namespace (dry run: nothing is created). */
function goodReview(uid = "fuzz-0"): Record<string, unknown> {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid,
      kind: { group: "", version: "v1", kind: "ConfigMap" },
      resource: { group: "", version: "v1", resource: "configmaps" },
      requestKind: { group: "", version: "v1", kind: "ConfigMap" },
      requestResource: { group: "", version: "v1", resource: "configmaps" },
      name: "target",
      namespace: ns,
      operation: "CREATE",
      userInfo: {
        username: agentUser,
        uid: "0b6f1c1e-0000-4000-8000-000000000000",
        groups: ["system:serviceaccounts", `system:serviceaccounts:${agentsNs}`, "system:authenticated"],
        extra: { "authentication.kubernetes.io/pod-name": ["agent-pod"] },
      },
      object: {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "target", namespace: ns, labels: { app: "x" }, annotations: { note: "y" } },
        data: { key: "value", other: "v2" },
      },
      oldObject: null,
      dryRun: true,
      options: { apiVersion: "meta.k8s.io/v1", kind: "CreateOptions" },
    },
  };
}

/** The answer to a parseable review is a clear 4xx, or a review (same uid) that does not allow the gated action. */
function expectRefused(r: Reply, uid: string | undefined, what: string): void {
  if (r.status >= 400 && r.status < 500) {
    expect(JSON.parse(r.body), what).toMatchObject({ error: expect.any(String) });
    return;
  }
  expect(r.status, `${what}: ${r.body.slice(0, 300)}`).toBe(200);
  const out = JSON.parse(r.body) as {
    response: { uid: string; allowed: boolean; status?: { message?: string } };
  };
  if (uid !== undefined) expect(out.response.uid, what).toBe(uid);
  expect(out.response.allowed, `${what}: ${r.body.slice(0, 300)}`).toBe(false);
}

async function stillServes(): Promise<void> {
  const r = await review(JSON.stringify(goodReview("after")));
  expectRefused(r, "after", "the next good review");
  expect(JSON.parse(r.body).response.status.message).toMatch(/needs (a human )?approval/);
  expect((await send(apiPort, { method: "GET", path: "/healthz", listener: "api" })).status).toBe(200);
}

/** Every path into a JSON value (objects and arrays), for replacing it. */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (v === null || typeof v !== "object") return [];
  const out: (string | number)[][] = [];
  for (const [k, child] of Object.entries(v)) {
    const p = [...prefix, Array.isArray(v) ? Number(k) : k];
    out.push(p, ...paths(child, p));
  }
  return out;
}

function replaced(v: unknown, path: (string | number)[], value: unknown): unknown {
  const copy = structuredClone(v) as Record<string | number, unknown>;
  let at = copy;
  for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  at[path[path.length - 1]!] = value;
  return copy;
}

/** null, boolean, number, string, array or object. */
function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** One value of every JSON type (and a few shapes of each): a field gets those of the other types. */
const WRONG_VALUES: unknown[] = [null, 0, -1, 1.5, true, false, "", "x", [], {}, [1, "a"], { a: { b: [] } }];

function deep(depth: number): string {
  return `${"[".repeat(depth)}${"]".repeat(depth)}`;
}

function slackSigned(body: string, ts = Math.floor(Date.now() / 1000)): Record<string, string> {
  return {
    "content-type": "application/x-www-form-urlencoded",
    "x-slack-request-timestamp": String(ts),
    "x-slack-signature": `v0=${createHmac("sha256", SIGNING).update(`v0:${ts}:${body}`).digest("hex")}`,
  };
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const agent = await cp.serviceAccountIdentity(agentsNs, "fuzzer");
  token = agent.token;
  agentUser = agent.username;
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: uniqueName("cs-fuzz"),
    webhookName: "countersign-fuzz-test",
    controller: false,
    notifications: {
      routes: [],
      defaultRoutes: [],
      slack: { signingSecret: SIGNING, users: { U_FUZZ: { username: "fuzz@example.com", groups: [] } } },
    },
  });
  admissionPort = cs.replicas[0]!.admissionPort;
  apiPort = cs.replicas[0]!.apiPort!;
  apiServerAgent = new Agent({
    keepAlive: true,
    maxSockets: 4,
    ...asApiServer(cp),
    rejectUnauthorized: false,
  });
  await applyPolicies(cp, cs, [
    approvalPolicy(policyName, {
      subjects: agentsIn(agentsNs),
      match: [matching(["CREATE", "UPDATE", "DELETE"], ["configmaps"], [ns])],
      rules: [requireApproval("all", { groups: ["fuzz-approvers"], ttl: "1h" })],
    }),
  ]);
  await stillServes();
}, 120_000);

afterAll(async () => {
  clearInterval(rssTimer);
  keepAlive.destroy();
  apiServerAgent?.destroy();
  await cs?.stop();
  await cp
    ?.adminKubeConfig()
    .makeApiClient(CustomObjectsApi)
    .deleteClusterCustomObject({
      ...gvr(POLICY_PLURAL),
      name: policyName,
    })
    .catch(() => {});
  const summary = [...tally.entries()].sort().map(([k, n]) => `${k}: ${n}`);
  console.log(
    `[fuzz] ${inputs} inputs; answers by listener and status: ${summary.join(", ")}; peak RSS of the test process ${Math.round(peakRss / 2 ** 20)} MiB`,
  );
});

describe("admission listener", () => {
  it("random bytes and random JSON values: 400 naming the problem", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
        const r = await review(Buffer.from(bytes));
        expect(r.status).toBe(400);
      }),
      { numRuns: 300 },
    );
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), async (v) => {
        const r = await review(JSON.stringify(v));
        expect(r.status).toBe(400);
        expect(JSON.parse(r.body).error).toMatch(/AdmissionReview|JSON/);
      }),
      { numRuns: 300 },
    );
    await stillServes();
  }, 120_000);

  it("every truncation of a valid review: 400", async () => {
    const full = JSON.stringify(goodReview());
    for (let n = 0; n < full.length - 1; n += 3) {
      const r = await review(full.slice(0, n));
      expect(r.status, `cut at ${n}`).toBe(400);
    }
    await stillServes();
  }, 120_000);

  it("a wrong type at every field of the review: a clear 400, or a review that refuses the gated action", async () => {
    // Regression (issue 12): a string where userInfo.username, an object or dryRun belongs got
    // past parsing unchecked.
    const base = goodReview();
    let n = 0;
    for (const path of paths(base)) {
      const original = path.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], base);
      for (const value of WRONG_VALUES.filter((v) => jsonType(v) !== jsonType(original))) {
        const uid = `wrong-${n++}`;
        const body = replaced(base, path, value) as { request?: { uid?: unknown } };
        if (path.join(".") !== "request.uid" && typeof body.request === "object" && body.request)
          body.request.uid = uid;
        const r = await review(JSON.stringify(body));
        expectRefused(r, undefined, `${path.join(".")} = ${JSON.stringify(value)}`);
        if (r.status === 200)
          expect(JSON.parse(r.body).response.uid).toBe((body.request as { uid: unknown }).uid);
      }
    }
    await stillServes();
  }, 180_000);

  it("10,000-deep nesting: in the object, the review refuses naming the limit; as the whole body, 400", async () => {
    const body = JSON.stringify(goodReview("deep")).replace('"data":{', `"deep":${deep(10_000)},"data":{`);
    const r = await review(body);
    expectRefused(r, "deep", "10,000-deep object");
    // Regression (issue 12): policies' CEL conversion recursed 10,000 levels and overflowed the
    // stack (an "internal error"); now refused before any policy sees it, naming the limit.
    expect(JSON.parse(r.body).response.status.message).toMatch(/nests deeper than 1000 levels/);
    const deepObjects = JSON.stringify(goodReview("deep-2")).replace(
      '"data":{',
      `"deep":${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)},"data":{`,
    );
    const r2 = await review(deepObjects);
    expectRefused(r2, "deep-2", "10,000-deep objects");
    expect(JSON.parse(r2.body).response.status.message).toMatch(/nests deeper than 1000 levels/);
    expect((await review(deep(10_000))).status).toBe(400);
    const objects = `${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}`;
    expect((await review(objects)).status).toBe(400);
    await stillServes();
  }, 60_000);

  it("bodies at the limit are read; one byte over, 413 (declared or streamed)", async () => {
    const json = JSON.stringify(goodReview("at-limit"));
    const at = Buffer.alloc(DEFAULT_BODY_LIMIT_BYTES, " ");
    at.write(json, 0);
    expectRefused(await review(at), "at-limit", "a body of exactly the limit");
    const over = Buffer.alloc(DEFAULT_BODY_LIMIT_BYTES + 1, " ");
    over.write(json, 0);
    expect((await review(over)).status).toBe(413);
    // Streamed (chunked, no content-length): counted as it arrives.
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: admissionPort,
          method: "POST",
          path: "/validate",
          headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
          agent: apiServerAgent,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      for (let i = 0; i <= DEFAULT_BODY_LIMIT_BYTES / 65_536; i++) req.write(Buffer.alloc(65_536, " "));
      req.end();
    });
    inputs++;
    expect(chunked).toBe(413);
    await stillServes();
  }, 120_000);

  it("wrong content types: 415; wrong paths and methods: 404; no client certificate: 403", async () => {
    const json = JSON.stringify(goodReview("ct"));
    for (const type of [
      "text/plain",
      "application/xml",
      "application/x-www-form-urlencoded",
      "multipart/form-data",
      "application/json-patch+json",
      "",
    ]) {
      const r = await review(json, { "content-type": type });
      expect(r.status, type).toBe(415);
    }
    expectRefused(
      await review(json, { "content-type": "Application/JSON; charset=utf-8" }),
      "ct",
      "JSON with a charset",
    );
    for (const [method, path] of [
      ["GET", "/validate"],
      ["PUT", "/validate"],
      ["POST", "/"],
      ["POST", "/validate/../x"],
      ["DELETE", "/healthz"],
    ] as const) {
      // (No body on GET/DELETE: Node's client would send it unframed, breaking its own connection.)
      const r = await send(admissionPort, {
        method,
        path,
        headers: { "content-type": "application/json" },
        ...(method === "GET" || method === "DELETE" ? {} : { body: json }),
        asApiServer: true,
        listener: "admission",
      });
      expect(r.status, `${method} ${path}`).toBe(404);
    }
    const anon = await send(admissionPort, {
      path: "/validate",
      headers: { "content-type": "application/json" },
      body: json,
      listener: "admission",
    });
    expect(anon.status).toBe(403);
    await stillServes();
  }, 60_000);
});

describe("approval API", () => {
  const auth = () => ({ authorization: `Bearer ${token}` });
  it("malformed bodies, wrong types, deep nesting, oversized bodies, wrong content types and names: always 4xx", async () => {
    const path = `/api/v1/namespaces/${ns}/approvalrequests/nothing-here/approve`;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 1024 }).map((b) => Buffer.from(b)),
          fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
          fc.jsonValue().map((v) => JSON.stringify({ reason: v })),
        ),
        async (body) => {
          const r = await send(apiPort, {
            path,
            headers: { ...auth(), "content-type": "application/json" },
            body,
            listener: "api",
          });
          expect(r.status, r.body).toBeGreaterThanOrEqual(400);
          expect(r.status, r.body).toBeLessThan(500);
        },
      ),
      { numRuns: 300 },
    );
    for (const body of [deep(10_000), JSON.stringify({ reason: "x".repeat(20_000) })]) {
      const r = await send(apiPort, {
        path,
        headers: { ...auth(), "content-type": "application/json" },
        body,
        listener: "api",
      });
      expect(r.status, r.body).toBeGreaterThanOrEqual(400);
      expect(r.status, r.body).toBeLessThan(500);
    }
    for (const type of ["text/plain", "application/xml", ""]) {
      const r = await send(apiPort, {
        path,
        headers: { ...auth(), "content-type": type },
        body: '{"reason":"x"}',
        listener: "api",
      });
      expect(r.status, type).toBeGreaterThanOrEqual(400);
      expect(r.status, type).toBeLessThan(500);
    }
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }), async (a, b) => {
        const r = await send(apiPort, {
          path: `/api/v1/namespaces/${encodeURIComponent(a)}/approvalrequests/${encodeURIComponent(b)}/deny`,
          headers: { ...auth(), "content-type": "application/json" },
          body: "{}",
          listener: "api",
        });
        expect(r.status, r.body).toBeGreaterThanOrEqual(400);
        expect(r.status, r.body).toBeLessThan(500);
      }),
      { numRuns: 150 },
    );
    const anon = await send(apiPort, {
      path,
      headers: { "content-type": "application/json" },
      body: "{}",
      listener: "api",
    });
    expect(anon.status).toBe(401);
    await stillServes();
  }, 180_000);
});

describe("Slack interactivity", () => {
  const post = (body: string, headers: Record<string, string>) =>
    send(apiPort, { path: "/slack/interactions", headers, body, listener: "slack" });

  it("unsigned or badly signed input: 401; signed but malformed payloads: 200 or 4xx, never 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 512 }), async (s) => {
        const r = await post(s, { "content-type": "application/x-www-form-urlencoded" });
        expect(r.status).toBe(401);
      }),
      { numRuns: 100 },
    );
    const valid = {
      type: "block_actions",
      user: { id: "U_NOBODY", username: "nobody" },
      actions: [{ action_id: "approve", value: `${ns}/nothing-here`, block_id: "b" }],
      response_url: "https://127.0.0.1:1/response",
    };
    const bodies: string[] = [];
    for (const path of paths(valid))
      for (const value of WRONG_VALUES)
        bodies.push(`payload=${encodeURIComponent(JSON.stringify(replaced(valid, path, value)))}`);
    for (const v of fc.sample(fc.jsonValue({ maxDepth: 4 }), { numRuns: 60, seed: 12 }))
      bodies.push(`payload=${encodeURIComponent(JSON.stringify(v))}`);
    bodies.push("payload=", "payload=%7B", "x=1", "", `payload=${encodeURIComponent(deep(10_000))}`);
    // Distinct bodies: the same body signed in the same second is a replay (401, rightly).
    for (const body of new Set(bodies)) {
      const r = await post(body, slackSigned(body));
      expect(r.status, `${decodeURIComponent(body).slice(0, 200)}: ${r.body}`).toBeLessThan(500);
      expect([200, 400, 413], `${decodeURIComponent(body).slice(0, 200)}: ${r.body}`).toContain(r.status);
    }
    const big = `payload=${"x".repeat(70_000)}`;
    expect((await post(big, slackSigned(big))).status).toBe(413);
    const json = JSON.stringify(valid);
    expect((await post(json, { ...slackSigned(json), "content-type": "application/json" })).status).toBe(401);
    await stillServes();
  }, 180_000);
});

describe("slow and idle connections", () => {
  function openTls(port: number): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...asApiServer(cp) }, () =>
        resolve(s),
      );
      s.on("error", reject);
    });
  }

  it("slow partial bodies and 500 idle connections do not stop the next good request", async () => {
    const held: TLSSocket[] = [];
    try {
      // Slow partial bodies: headers and half a review, then nothing.
      const json = JSON.stringify(goodReview("slow"));
      for (let i = 0; i < 20; i++) {
        const s = await openTls(admissionPort);
        s.on("error", () => {});
        s.write(
          `POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${json.length}\r\n\r\n${json.slice(0, json.length / 2)}`,
        );
        held.push(s);
      }
      for (let i = 0; i < 500; i++) {
        const s = await openTls(i % 2 ? admissionPort : apiPort);
        s.on("error", () => {});
        held.push(s);
      }
      inputs += held.length;
      const t0 = performance.now();
      await stillServes();
      const ms = performance.now() - t0;
      console.log(
        `[fuzz] next good review and health check answered in ${Math.round(ms)} ms with ${held.length} idle/slow connections open`,
      );
      expect(ms).toBeLessThan(5_000);
      expect(held.filter((s) => !s.destroyed).length).toBeGreaterThan(0);
    } finally {
      for (const s of held) s.destroy();
    }
    await stillServes();
  }, 120_000);
});
