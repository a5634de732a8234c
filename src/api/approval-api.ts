/**
 * The approval HTTP API (served by the webhook, under /api/v1): list, get, approve, deny, revoke.
 * Callers authenticate with a Kubernetes bearer token (TokenReview) and are authorized as
 * themselves (SubjectAccessReview); decisions go through the same DecisionService rules as
 * every other path. The OpenAPI document is at /api/v1/openapi.json.
 */
import { createHash } from "node:crypto";
import { AuthenticationV1Api, type KubeConfig } from "@kubernetes/client-node";
import express, { type NextFunction, type Request, type Response, type Router } from "express";
import type { DecisionService } from "../approvals/decision-service.js";
import { effectivePhase } from "../approvals/lifecycle.js";
import type { RbacChecker } from "../approvals/rbac-checker.js";
import { describeKubeError } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";
import type { UserInfo } from "../resources/admission.js";
import type { ApprovalRequest, DecisionKind } from "../resources/approval-request.js";
import { CountersignClient } from "../resources/client.js";
import { OPENAPI_DOCUMENT } from "./openapi.js";

const TOKEN_CACHE_MS = 10_000;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export interface ApprovalApiOptions {
  kubeConfig: KubeConfig;
  rbac: RbacChecker;
  decisions: DecisionService;
  logger: Logger;
}

interface Authed extends Request {
  user?: UserInfo;
}

function fail(res: Response, status: number, message: string, reason?: string): void {
  res.status(status).json({ error: { code: status, message, ...(reason ? { reason } : {}) } });
}

/** The view of an ApprovalRequest the API returns (everything a decider needs, nothing else). */
export function approvalRequestView(ar: ApprovalRequest, now: Date) {
  const s = ar.spec;
  return {
    namespace: ar.metadata.namespace,
    name: ar.metadata.name,
    phase: effectivePhase(ar, now),
    createdAt: ar.metadata.creationTimestamp,
    requester: s.requester,
    action: s.action,
    ...(s.diff ? { diff: s.diff } : {}),
    ...(s.agentContext ? { agentContext: s.agentContext } : {}),
    policy: s.policy,
    approval: s.approval,
    decisions: s.decisions ?? [],
    ...(ar.status?.execution ? { execution: ar.status.execution } : {}),
  };
}

export function approvalApi(opts: ApprovalApiOptions): Router {
  const router = express.Router();
  const authn = opts.kubeConfig.makeApiClient(AuthenticationV1Api);
  const requests = CountersignClient.fromKubeConfig(opts.kubeConfig).approvalRequests;
  const tokens = new Map<string, { at: number; user: UserInfo | undefined; reason: string }>();

  router.get("/openapi.json", (_req, res) => {
    res.json(OPENAPI_DOCUMENT);
  });

  // Authentication: a Kubernetes bearer token, checked by the API server (TokenReview).
  router.use(async (req: Authed, res: Response, next: NextFunction) => {
    const header = req.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) {
      fail(
        res,
        401,
        "send a Kubernetes bearer token: Authorization: Bearer <token> (e.g. kubectl create token <serviceaccount>)",
      );
      return;
    }
    const key = createHash("sha256").update(m[1]!).digest("hex");
    let hit = tokens.get(key);
    if (!hit || Date.now() - hit.at > TOKEN_CACHE_MS) {
      try {
        const review = await authn.createTokenReview({
          body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token: m[1]! } },
        });
        const u = review.status?.user;
        hit = {
          at: Date.now(),
          user:
            review.status?.authenticated && u?.username
              ? {
                  username: u.username,
                  ...(u.uid ? { uid: u.uid } : {}),
                  groups: u.groups ?? [],
                  ...(u.extra ? { extra: u.extra } : {}),
                }
              : undefined,
          reason: review.status?.error ?? "",
        };
      } catch (err) {
        opts.logger.error("TokenReview failed", { error: describeKubeError(err) });
        fail(res, 503, "could not verify the token right now; retry shortly");
        return;
      }
      if (tokens.size > 1000) tokens.clear();
      tokens.set(key, hit);
    }
    if (!hit.user) {
      fail(res, 401, `the token was not accepted by the API server${hit.reason ? `: ${hit.reason}` : ""}`);
      return;
    }
    req.user = hit.user;
    next();
  });

  const authorize = async (
    req: Authed,
    res: Response,
    verb: string,
    namespace: string,
    name: string,
  ): Promise<boolean> => {
    try {
      const r = await opts.rbac.allowed(req.user!, verb, namespace, name);
      if (r.allowed) return true;
      fail(
        res,
        403,
        `${req.user!.username} may not ${verb} approvalrequests.countersign.io${namespace ? ` in namespace ${namespace}` : " in all namespaces"}${r.reason ? ` (${r.reason})` : ""}`,
      );
    } catch (err) {
      opts.logger.error("SubjectAccessReview failed", { error: describeKubeError(err) });
      fail(res, 503, "could not check your permissions right now; retry shortly");
    }
    return false;
  };

  const validNames = (req: Request, res: Response): { namespace: string; name: string } | undefined => {
    const namespace = String(req.params.namespace ?? "");
    const name = String(req.params.name ?? "");
    if (!DNS_LABEL.test(namespace) || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > 253) {
      fail(res, 400, "namespace and name must be valid Kubernetes names");
      return undefined;
    }
    return { namespace, name };
  };

  router.get("/approvalrequests", async (req: Authed, res: Response) => {
    const namespace = typeof req.query.namespace === "string" ? req.query.namespace : "";
    if (namespace && !DNS_LABEL.test(namespace))
      return fail(res, 400, "namespace must be a valid Kubernetes name");
    if (!(await authorize(req, res, "list", namespace, ""))) return;
    const list = { items: await requests.list(namespace || undefined) };
    const now = new Date();
    const phase = typeof req.query.phase === "string" ? req.query.phase : undefined;
    const items = list.items
      .map((ar) => approvalRequestView(ar, now))
      .filter((v) => !phase || v.phase === phase);
    res.json({ items });
  });

  router.get("/namespaces/:namespace/approvalrequests/:name", async (req: Authed, res: Response) => {
    const id = validNames(req, res);
    if (!id || !(await authorize(req, res, "get", id.namespace, id.name))) return;
    const ar = await opts.decisions.get(id.namespace, id.name);
    if (!ar) return fail(res, 404, `ApprovalRequest ${id.namespace}/${id.name} not found`);
    res.json(approvalRequestView(ar, new Date()));
  });

  const decide = (decision: DecisionKind) => [
    express.json({ limit: "16kb", strict: true }),
    async (req: Authed, res: Response) => {
      const id = validNames(req, res);
      if (!id) return;
      const body = (req.body ?? {}) as { reason?: unknown; breakGlass?: unknown };
      if (body.reason !== undefined && typeof body.reason !== "string")
        return fail(res, 400, "reason must be a string");
      if (body.breakGlass !== undefined && typeof body.breakGlass !== "boolean")
        return fail(res, 400, "breakGlass must be true or false");
      if (decision === "Revoke" && !(body.reason as string | undefined)?.trim())
        return fail(res, 400, "reason is required to revoke: the requester and the audit trail are told why");
      const out = await opts.decisions.decide(
        id.namespace,
        id.name,
        req.user!,
        decision,
        body.reason as string | undefined,
        "api",
        body.breakGlass === true,
      );
      if (!out.ok) return fail(res, out.status, out.message, out.code);
      res.json({
        message: out.message,
        approvalRequest: approvalRequestView(out.approvalRequest, new Date()),
      });
    },
  ];
  router.post("/namespaces/:namespace/approvalrequests/:name/approve", ...decide("Approve"));
  router.post("/namespaces/:namespace/approvalrequests/:name/deny", ...decide("Deny"));
  router.post("/namespaces/:namespace/approvalrequests/:name/revoke", ...decide("Revoke"));

  router.use((_req: Request, res: Response) => fail(res, 404, "no such endpoint; see /api/v1/openapi.json"));
  // Errors from body parsing (malformed JSON, too large) and anything unexpected.
  router.use(
    (err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
      if (err.type === "entity.parse.failed") return fail(res, 400, "request body is not valid JSON");
      if (err.type === "entity.too.large") return fail(res, 413, "request body is too large");
      opts.logger.error("approval API error", { error: err.message });
      fail(res, 500, "internal error; nothing was changed");
    },
  );
  return router;
}
