/**
 * The webhook's HTTPS server (TLS 1.2+): /validate for the gate (a lean handler, below),
 * and through express /healthz, /readyz (ready once the policy cache has synced), the
 * approval API and Slack interactivity. Bad input — wrong content type,
 * malformed JSON, an oversized body, a review of the wrong shape — gets a clear 4xx;
 * nothing is changed and the process keeps serving.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import express, { type NextFunction, type Request, type Response } from "express";
import { type HandlerDeps, handleAdmission } from "./handler.js";
import { parseAdmissionReview, ReviewError } from "./review.js";

export const VALIDATE_PATH = "/validate";
/** Default body limit: an object and its old version can each approach the API server's 3 MiB limit. */
export const DEFAULT_BODY_LIMIT_BYTES = 7 * 1024 * 1024;

export interface WebhookServerOptions extends HandlerDeps {
  tls: { certPem: string; keyPem: string };
  port: number;
  host?: string;
  bodyLimitBytes?: number;
  isReady: () => boolean;
  /** The approval HTTP API, mounted at /api/v1 when given. */
  api?: express.Router;
  /** Slack interactivity, mounted at /slack/interactions when given. */
  slack?: express.Router;
}

function problem(res: Response, status: number, message: string): void {
  res
    .status(status)
    .type("application/json")
    .send(JSON.stringify({ error: message }));
}

export function createWebhookApp(opts: WebhookServerOptions): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.get("/healthz", (_req, res) => {
    res.type("text/plain").send("ok");
  });
  app.get("/readyz", (_req, res) => {
    if (opts.isReady()) res.type("text/plain").send("ok");
    else res.status(503).type("text/plain").send("policy cache not synced yet");
  });
  if (opts.api) app.use("/api/v1", opts.api);
  if (opts.slack) app.use("/slack/interactions", opts.slack);
  // POST /validate never reaches express: startWebhookServer hands it to validateHandler.
  app.use((_req, res) =>
    problem(
      res,
      404,
      "not found; the webhook serves POST /validate, GET /healthz, GET /readyz, and /api/v1 (see /api/v1/openapi.json)",
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
        opts.logger.error("unexpected error in webhook", { error: err.message });
        problem(res, 500, "internal error; nothing was changed");
      }
    },
  );
  return app;
}

/**
 * POST /validate without express's router and body-parser: the admission hot path reads the
 * body with a hard size limit, checks the content type, parses once and answers. Measured in
 * bench/gate.ts: express's generic body handling cost more than the policy evaluation itself.
 */
export function validateHandler(opts: WebhookServerOptions) {
  const limit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const reply = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  };
  const fail = (res: ServerResponse, status: number, message: string) =>
    reply(res, status, JSON.stringify({ error: message }));
  return (req: IncomingMessage, res: ServerResponse): void => {
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
      handleAdmission(admission, opts).then(
        (response) => reply(res, 200, JSON.stringify(response)),
        (err: unknown) => {
          opts.logger.error("unexpected error in admission handler", {
            admissionUID: admission.uid,
            error: String(err),
          });
          fail(res, 500, "internal error; nothing was changed");
        },
      );
    });
  };
}

export async function startWebhookServer(
  opts: WebhookServerOptions,
): Promise<{ server: Server; port: number }> {
  const app = createWebhookApp(opts);
  const validate = validateHandler(opts);
  const server = createServer(
    { cert: opts.tls.certPem, key: opts.tls.keyPem, minVersion: "TLSv1.2" },
    (req, res) => {
      // The API server calls /validate?timeout=12s: match the path, not the whole URL.
      const path = req.url?.split("?", 1)[0];
      if (req.method === "POST" && path === VALIDATE_PATH) validate(req, res);
      else app(req, res);
    },
  );
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new Error(`webhook port ${opts.port} is already in use; pick another with --port`)
          : err,
      ),
    );
    server.listen(opts.port, opts.host ?? "0.0.0.0", () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
