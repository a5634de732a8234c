/**
 * Countersign's two HTTPS listeners (TLS 1.2+).
 *
 *   admission  POST /validate (the gate, a lean handler below), GET /healthz, GET /readyz.
 *              Only the API server may call /validate: in client-cert mode the caller's TLS
 *              client certificate must be signed by the configured CA (and carry an allowed
 *              name); anyone else gets 403 before the body is read. Health stays open for probes.
 *   api        the approval API (/api/v1) and Slack interactivity (/slack/interactions), plus
 *              /healthz and /readyz; never /validate, so exposing it (an Ingress) never
 *              exposes admission.
 *
 * The admission listener speaks HTTP/2 (ALPN h2, HTTP/1.1 still accepted): the API server's
 * webhook client multiplexes every call over one connection instead of opening a TLS connection
 * per concurrent call beyond the idle ones it keeps (issue 13: under load HTTP/1.1 made it
 * handshake for 17–32% of the calls, each with a client-certificate check).
 *
 * Metrics have their own plain-HTTP port (src/metrics). Bad input — wrong content type,
 * malformed JSON, an oversized body, a review of the wrong shape — gets a clear 4xx; nothing
 * is changed and the process keeps serving.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  createSecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Session,
} from "node:http2";
import { createServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Server, TLSSocket } from "node:tls";
import express, { type NextFunction, type Request, type Response } from "express";
import type { Logger } from "../logging/logger.js";
import { admissionConnections, admissionUnauthenticated } from "../metrics/metrics.js";
import { type AdmissionAuth, type ClientCheck, checkAdmissionClient } from "./client-auth.js";
import { AuditAnnotation, DecisionValue, type HandlerDeps, handleAdmission } from "./handler.js";
import { parseAdmissionReview, ReviewError, reviewResponse } from "./review.js";

export const VALIDATE_PATH = "/validate";
/** Default body limit: an object and its old version can each approach the API server's 3 MiB limit. */
export const DEFAULT_BODY_LIMIT_BYTES = 7 * 1024 * 1024;
/**
 * An idle connection is closed after this long. Above the idle timeout of the API server's
 * client (Go's, 90 s), so the client closes first: a server closing an idle HTTP/1.1 connection
 * just as the client sends a POST on it fails that call (Go retries no POST), which a
 * failurePolicy of Fail turns into a denial.
 */
export const IDLE_TIMEOUT_MS = 120_000;
/**
 * An HTTP/2 connection is asked to end (GOAWAY, in-flight calls finish) after this long, so an
 * API server's calls spread again over the webhook's replicas behind a Service: HTTP/2 keeps
 * them all on one connection, which a Service balances once, when it opens.
 */
export const MAX_CONNECTION_AGE_MS = 5 * 60_000;
/** nghttp2's per-connection memory cap, MiB: several reviews of a few MiB may be in flight on one connection. */
const HTTP2_MAX_SESSION_MEMORY_MIB = 64;

/** A request/response on the admission listener: HTTP/2 (the API server) or HTTP/1.1. */
type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

export interface ServingTls {
  certPem: string;
  keyPem: string;
}

interface ListenOptions {
  tls: ServingTls;
  port: number;
  host?: string;
  isReady: () => boolean;
}

export interface AdmissionServerOptions extends HandlerDeps, ListenOptions {
  /** Who may call /validate (see client-auth.ts). */
  auth: AdmissionAuth;
  bodyLimitBytes?: number;
}

export interface ApiServerOptions extends ListenOptions {
  logger: Logger;
  /** The approval HTTP API, mounted at /api/v1 when given. */
  api?: express.Router;
  /** Slack interactivity, mounted at /slack/interactions when given. */
  slack?: express.Router;
}

export interface RunningListener {
  server: Server;
  port: number;
  /** Swaps the serving certificate without restarting (new connections use it). */
  setTls(tls: ServingTls): void;
  stop(): Promise<void>;
}

export interface RunningAdmissionListener extends RunningListener {
  /** Swaps the admission client CA bundle (client-cert mode; new connections use it). */
  setClientCa(pem: string): void;
}

function problem(res: Response, status: number, message: string): void {
  res
    .status(status)
    .type("application/json")
    .send(JSON.stringify({ error: message }));
}

function healthRoutes(app: express.Express, isReady: () => boolean): void {
  app.get("/healthz", (_req, res) => {
    res.type("text/plain").send("ok");
  });
  app.get("/readyz", (_req, res) => {
    if (isReady()) res.type("text/plain").send("ok");
    else res.status(503).type("text/plain").send("policy cache not synced yet");
  });
}

/** The API listener's routes: approval API, Slack, health; 404 (naming the right port) for the rest. */
export function createApiApp(opts: ApiServerOptions): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  healthRoutes(app, opts.isReady);
  if (opts.api) app.use("/api/v1", opts.api);
  if (opts.slack) app.use("/slack/interactions", opts.slack);
  app.use(VALIDATE_PATH, (_req, res) =>
    problem(
      res,
      404,
      "not found; admission is served only on the admission port, to the Kubernetes API server",
    ),
  );
  app.use((_req, res) =>
    problem(
      res,
      404,
      "not found; this port serves /api/v1 (see /api/v1/openapi.json), /slack/interactions, GET /healthz and GET /readyz",
    ),
  );
  // Body-parser errors (oversized, malformed JSON) from the mounted routers and anything
  // unexpected end here.
  app.use(
    (
      err: Error & { status?: number; type?: string; limit?: number },
      _req: Request,
      res: Response,
      _next: NextFunction,
    ) => {
      if (err.type === "entity.too.large") {
        problem(res, 413, `request body is larger than the ${err.limit} byte limit`);
      } else if (err.type === "entity.parse.failed") {
        problem(res, 400, "request body is not valid JSON");
      } else if (err.status && err.status >= 400 && err.status < 500) {
        problem(res, err.status, err.message);
      } else {
        opts.logger.error("unexpected error in API listener", { error: err.message });
        problem(res, 500, "internal error; nothing was changed");
      }
    },
  );
  return app;
}

/** The API server's webhook timeout when a review does not say (Kubernetes' default). */
const DEFAULT_ADMISSION_TIMEOUT_SECONDS = 10;
/** Answer this long before the API server's webhook timeout runs out (at most a quarter of it). */
export const ANSWER_MARGIN_MS = 1500;

/**
 * How long the API server waits for this review: its `?timeout=` (a Go duration in whole
 * seconds, e.g. "12s"), else Kubernetes' default of 10 s. Bounded to 1..30 s. Pure.
 */
export function admissionTimeoutMs(url: string | undefined): number {
  const m = /[?&]timeout=(\d+)s(?:&|$)/.exec(url ?? "");
  const seconds = m ? Number(m[1]) : DEFAULT_ADMISSION_TIMEOUT_SECONDS;
  return Math.min(30, Math.max(1, seconds)) * 1000;
}

/**
 * POST /validate without express's router and body-parser: the admission hot path reads the
 * body with a hard size limit, checks the content type, parses once and answers. Measured in
 * bench/gate.ts: express's generic body handling cost more than the policy evaluation itself.
 */
export function validateHandler(opts: AdmissionServerOptions) {
  const limit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const reply = (res: AnyResponse, status: number, body: string) =>
    send(res, status, "application/json", body);
  const fail = (res: AnyResponse, status: number, message: string) =>
    reply(res, status, JSON.stringify({ error: message }));
  return (req: AnyRequest, res: AnyResponse): void => {
    const arrived = Date.now();
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/json") {
      req.resume();
      fail(res, 415, `content type must be application/json, got ${req.headers["content-type"] ?? "none"}`);
      return;
    }
    const declared = Number(req.headers["content-length"] ?? Number.NaN);
    if (declared > limit) {
      req.resume();
      fail(res, 413, `request body is larger than the ${limit} byte limit`);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (c: Buffer) => {
      if (tooLarge) return;
      size += c.length;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
        return;
      }
      chunks.push(c);
    });
    req.on("error", () => res.destroy());
    req.on("end", () => {
      if (tooLarge) {
        fail(res, 413, `request body is larger than the ${limit} byte limit`);
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(
          chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8"),
        );
      } catch {
        fail(res, 400, "request body is not valid JSON");
        return;
      }
      let admission: ReturnType<typeof parseAdmissionReview>;
      try {
        admission = parseAdmissionReview(body);
      } catch (err) {
        const status = err instanceof ReviewError ? err.httpStatus : 400;
        opts.logger.warn("rejected malformed AdmissionReview", { error: (err as Error).message });
        fail(res, status, `invalid AdmissionReview: ${(err as Error).message}`);
        return;
      }
      // Answer before the API server gives up (its ?timeout=, less a margin), so a slow
      // Kubernetes API reaches the requester as Countersign's clear refusal, not as an opaque
      // webhook timeout; the gate uses no approval past that point.
      const timeoutMs = admissionTimeoutMs(req.url);
      const answerBy = arrived + timeoutMs - Math.min(ANSWER_MARGIN_MS, timeoutMs / 4);
      let answered = false;
      const timer = setTimeout(
        () => {
          answered = true;
          opts.logger.warn("no decision before the API server's timeout; refused", {
            admissionUID: admission.uid,
          });
          reply(
            res,
            200,
            JSON.stringify(
              reviewResponse(
                admission.uid,
                false,
                "Countersign could not decide this request in time: the Kubernetes API did not answer it quickly enough (is the API server overloaded or unreachable?). Nothing was changed and no approval was used. Retry in a few seconds.",
                { [AuditAnnotation.Decision]: DecisionValue.Error },
              ),
            ),
          );
        },
        Math.max(0, answerBy - Date.now()),
      );
      handleAdmission(admission, opts, answerBy).then(
        (response) => {
          clearTimeout(timer);
          if (!answered) reply(res, 200, JSON.stringify(response));
        },
        (err: unknown) => {
          clearTimeout(timer);
          if (answered) return;
          opts.logger.error("unexpected error in admission handler", {
            admissionUID: admission.uid,
            error: String(err),
          });
          // Fail closed with an answer the API server relays as it is (a 500 would reach the
          // requester as an opaque "failed calling webhook").
          reply(
            res,
            200,
            JSON.stringify(
              reviewResponse(
                admission.uid,
                false,
                "Countersign could not decide this request (an internal error, logged with its admission uid); nothing was changed. Retry shortly; if it persists, tell a cluster admin.",
                { [AuditAnnotation.Decision]: DecisionValue.Error },
              ),
            ),
          );
        },
      );
    });
  };
}

function send(res: AnyResponse, status: number, contentType: string, body: string): void {
  (res as ServerResponse).writeHead(status, {
    "content-type": contentType,
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/** Checked peers by connection: an HTTP/1.1 socket or an HTTP/2 session. */
const verifiedPeers = new WeakMap<object, ClientCheck>();

/**
 * Refuses a /validate call from anyone but the API server, before its body is read: 403,
 * a warning and a metric. The body is discarded (bounded), never parsed.
 */
function refuseUnauthenticated(
  req: AnyRequest,
  res: AnyResponse,
  opts: AdmissionServerOptions,
  limit: number,
): boolean {
  const socket = req.socket as TLSSocket;
  // A connection's peer is fixed at its handshake: check it once per connection (the API
  // server keeps its connections alive), not once per review. An HTTP/2 request's `socket` is a
  // new proxy per request: key on its session, which is the connection.
  const connection: object = ("stream" in req ? req.stream.session : undefined) ?? socket;
  let check = verifiedPeers.get(connection);
  const first = !check;
  if (!check) {
    check = checkAdmissionClient(opts.auth, {
      authorized: socket.authorized,
      authorizationError: socket.authorizationError,
      certificate: opts.auth.mode === "client-cert" ? socket.getPeerCertificate() : undefined,
    });
    verifiedPeers.set(connection, check);
  }
  if (check.ok) return false;
  admissionUnauthenticated.inc({ reason: check.code });
  // One line per refused connection (the metric counts every call): a refused HTTP/2 peer may
  // already have sent many streams before it reads the GOAWAY below.
  if (first)
    opts.logger.warn("refused an AdmissionReview from a caller that is not the API server", {
      reason: check.code,
      detail: check.reason,
      remoteAddress: socket.remoteAddress,
    });
  let drained = 0;
  req.on("data", (c: Buffer) => {
    drained += c.length;
    if (drained > limit) req.destroy();
  });
  req.on("error", () => {});
  // Close the refused caller's connection after the 403, so each refusal costs it a TLS
  // handshake again: HTTP/1.1 by its header; HTTP/2 by a GOAWAY (streams already open are
  // answered, no new one is accepted). Left open, one HTTP/2 connection could send thousands of
  // refused calls a second to the thread that serves the API server's reviews (red team 14).
  if (req.httpVersionMajor === 1) res.setHeader("connection", "close");
  else if ("stream" in req) {
    const session = req.stream.session;
    res.once("finish", () => session?.close());
  }
  send(
    res,
    403,
    "application/json",
    JSON.stringify({ error: `forbidden: ${check.reason}; nothing was created or consumed` }),
  );
  return true;
}

async function listen(server: Server, port: number, host: string | undefined, flag: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new Error(`port ${port} is already in use; pick another with ${flag}`)
          : err,
      ),
    );
    server.listen(port, host ?? "0.0.0.0", () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** Closes the listener and every open connection (HTTP/1.1 or HTTP/2, idle or not). */
function stopServer(server: Server, connections: Set<Socket>): Promise<void> {
  return new Promise<void>((r) => {
    server.close(() => r());
    for (const c of connections) c.destroy();
  });
}

/** Keeps the set of a listener's open TCP connections, for stop(). */
function trackConnections(server: Server): Set<Socket> {
  const open = new Set<Socket>();
  server.on("connection", (c: Socket) => {
    open.add(c);
    c.once("close", () => open.delete(c));
  });
  return open;
}

/** The admission listener: POST /validate (authenticated), GET /healthz, GET /readyz. */
export async function startAdmissionServer(opts: AdmissionServerOptions): Promise<RunningAdmissionListener> {
  const limit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const validate = validateHandler(opts);
  const clientCert = opts.auth.mode === "client-cert";
  let tls = opts.tls;
  let clientCaPem = opts.auth.mode === "client-cert" ? opts.auth.clientCaPem : undefined;
  const context = () => ({
    cert: tls.certPem,
    key: tls.keyPem,
    minVersion: "TLSv1.2" as const,
    ...(clientCaPem ? { ca: clientCaPem } : {}),
  });
  const server = createSecureServer(
    {
      ...context(),
      // rejectUnauthorized: false so health probes (no certificate) still work and a refused
      // caller reads why; /validate itself checks the verified peer below.
      requestCert: clientCert,
      rejectUnauthorized: false,
      allowHTTP1: true,
      maxSessionMemory: HTTP2_MAX_SESSION_MEMORY_MIB,
    },
    (req, res) => {
      // The API server calls /validate?timeout=12s: match the path, not the whole URL.
      const path = req.url?.split("?", 1)[0];
      if (path === VALIDATE_PATH && req.method === "POST") {
        if (!refuseUnauthenticated(req, res, opts, limit)) validate(req, res);
        return;
      }
      req.resume();
      if (req.method === "GET" && path === "/healthz") send(res, 200, "text/plain", "ok");
      else if (req.method === "GET" && path === "/readyz") {
        if (opts.isReady()) send(res, 200, "text/plain", "ok");
        else send(res, 503, "text/plain", "policy cache not synced yet");
      } else {
        send(
          res,
          404,
          "application/json",
          JSON.stringify({
            error:
              "not found; the admission port serves POST /validate (to the API server), GET /healthz and GET /readyz; the approval API and Slack interactivity are on the API port",
          }),
        );
      }
    },
  );
  // HTTP/2 sessions and HTTP/1.1 connections alike: closed after IDLE_TIMEOUT_MS without traffic.
  server.setTimeout(IDLE_TIMEOUT_MS);
  server.on("session", (session: ServerHttp2Session) => {
    // A caller TLS did not verify gets one stream at a time (nghttp2 refuses the excess at once,
    // whether or not the client honours the setting) and its first refusal closes the
    // connection: one refused call per handshake, as on HTTP/1.1.
    if (clientCert && !(session.socket as TLSSocket).authorized)
      session.settings({ maxConcurrentStreams: 1 });
    const age = setTimeout(() => session.close(), MAX_CONNECTION_AGE_MS);
    age.unref();
    session.once("close", () => clearTimeout(age));
  });
  server.on("secureConnection", (socket: TLSSocket) =>
    admissionConnections.inc({ protocol: socket.alpnProtocol || "http/1.1" }),
  );
  const connections = trackConnections(server);
  const port = await listen(server, opts.port, opts.host, "--port");
  return {
    server,
    port,
    setTls(next) {
      tls = next;
      server.setSecureContext(context());
    },
    setClientCa(pem) {
      if (!clientCert) return;
      clientCaPem = pem;
      server.setSecureContext(context());
    },
    stop: () => stopServer(server, connections),
  };
}

/** The API listener: approval API, Slack interactivity, health. */
export async function startApiServer(opts: ApiServerOptions): Promise<RunningListener> {
  const app = createApiApp(opts);
  const context = (tls: ServingTls) => ({
    cert: tls.certPem,
    key: tls.keyPem,
    minVersion: "TLSv1.2" as const,
  });
  const server = createServer(context(opts.tls), app);
  server.keepAliveTimeout = IDLE_TIMEOUT_MS;
  const connections = trackConnections(server);
  const port = await listen(server, opts.port, opts.host, "--api-port");
  return {
    server,
    port,
    setTls(next) {
      server.setSecureContext(context(next));
    },
    stop: () => stopServer(server, connections),
  };
}
