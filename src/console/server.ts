/**
 * `kubectl approvals ui`: the approver's inbox, a local web console on 127.0.0.1.
 *
 * Like `kubectl proxy`, it talks to the cluster only as the caller (their kubeconfig): no new
 * login, no new secret, nothing in the cluster. It watches the ApprovalRequests the caller may
 * list (cluster-wide, else each namespace they may list them in) and pushes changes to open
 * pages as server-sent events. Decisions go through the plugin's own decision path
 * (`decide` / `revoke` in plugin/commands.ts, as `kubectl approve`), so the webhook's guard
 * judges each one and its refusal is shown as the guard words it.
 *
 * Access: a one-time token in the printed URL is exchanged for an HttpOnly SameSite=Strict
 * cookie (session.ts); every request must name the listener in Host (DNS rebinding); a POST
 * must come from the console's own Origin and carry the session's form token.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  CoreV1Api,
  type Informer,
  type KubeConfig,
  makeInformer,
  type ObjectCache,
} from "@kubernetes/client-node";
import { describeKubeError, kubeStatusOf } from "../kube/errors.js";
import { restartOnError } from "../kube/informers.js";
import { componentLogger, type Logger } from "../logging/logger.js";
import {
  auditTrail,
  auditVerify,
  decide,
  listAuditRecords,
  oldestFirst,
  PluginError,
  revoke,
  whoAmI,
} from "../plugin/commands.js";
import { type ApprovalRequest, DecisionKind } from "../resources/approval-request.js";
import type { AuditRecord } from "../resources/audit-record.js";
import { CountersignClient } from "../resources/client.js";
import type { Html } from "./html.js";
import { gitopsGroups, groupOf, type InboxFilter, inboxView, keyOf, type RequestGroup } from "./inbox.js";
import { checkLoopbackPeer, peerCheckAvailable } from "./peer-user.js";
import {
  type Flash,
  groupBody,
  groupId,
  groupPage,
  groupsBody,
  groupsPage,
  type HistoryQuery,
  historyPage,
  type InboxSnapshot,
  inboxDelta,
  inboxPage,
  inboxSnapshot,
  messagePage,
  type PageContext,
  requestPage,
  requestState,
  signedOutPage,
} from "./render.js";
import { hostAllowed, originAllowed, type Session, Sessions, sameSecret } from "./session.js";

const BODY_LIMIT = 64 * 1024;
const HEARTBEAT_MS = 15_000;
const BROADCAST_DEBOUNCE_MS = 100;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export interface ConsoleOptions {
  kc: KubeConfig;
  /** 0 (default): a free port. */
  port?: number;
  /** Where to look when the caller may list ApprovalRequests neither cluster-wide nor namespaces. */
  namespaces?: string[];
  now?: () => Date;
  log?: Logger;
}

export interface RunningConsole {
  /** The URL to open once: it carries the one-time token. */
  loginUrl: string;
  origin: string;
  port: number;
  user: string;
  /** Namespaces watched (undefined: cluster-wide). */
  namespaces?: string[];
  notes: string[];
  close(): Promise<void>;
}

type View =
  | { kind: "inbox"; filter: InboxFilter }
  | { kind: "request"; key: string }
  | { kind: "groups" }
  | { kind: "group"; id: string };

interface Subscriber {
  res: ServerResponse;
  view: View;
  /** The inbox as this page last got it: later changes go out as deltas (render.inboxDelta). */
  inbox?: InboxSnapshot;
}

type ArInformer = Informer<ApprovalRequest> & ObjectCache<ApprovalRequest>;

/** Which ApprovalRequests the caller may list: all, or these namespaces (with a note why). */
async function scopeOf(
  kc: KubeConfig,
  fallback: string[],
): Promise<{ namespaces?: string[]; notes: string[] }> {
  const requests = CountersignClient.fromKubeConfig(kc).approvalRequests;
  const forbidden = (err: unknown) => kubeStatusOf(err)?.code === 403;
  try {
    await requests.listPage(undefined, { limit: 1 });
    return { notes: [] };
  } catch (err) {
    if (!forbidden(err)) throw err;
  }
  let candidates = fallback;
  const notes = ["You may not list ApprovalRequests cluster-wide;"];
  try {
    const list = await kc.makeApiClient(CoreV1Api).listNamespace();
    candidates = list.items.map((n) => n.metadata?.name ?? "").filter(Boolean);
  } catch (err) {
    if (!forbidden(err)) throw err;
    notes.push("nor namespaces;");
  }
  const allowed: string[] = [];
  for (let i = 0; i < candidates.length; i += 10) {
    const batch = candidates.slice(i, i + 10);
    const ok = await Promise.all(
      batch.map((namespace) =>
        requests.listPage(namespace, { limit: 1 }).then(
          () => true,
          (err: unknown) => {
            if (forbidden(err)) return false;
            throw err;
          },
        ),
      ),
    );
    allowed.push(...batch.filter((_, j) => ok[j]));
  }
  notes.push(
    allowed.length
      ? `showing the ${allowed.length} namespace(s) where you may: ${allowed.join(", ")}.`
      : "and in none of the namespaces checked. Ask for get/list/watch on approvalrequests.countersign.io.",
  );
  return { namespaces: allowed, notes: [notes.join(" ")] };
}

function watchRequests(kc: KubeConfig, namespace: string | undefined): ArInformer {
  const source = CountersignClient.fromKubeConfig(kc).approvalRequests.informerSource(namespace);
  return makeInformer<ApprovalRequest>(kc, source.path, source.list);
}

function readBody(req: IncomingMessage): Promise<URLSearchParams> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) {
        reject(new Error("request body too large"));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(new URLSearchParams(Buffer.concat(chunks).toString("utf8"))));
    req.on("error", reject);
  });
}

function securityHeaders(res: ServerResponse, nonce: string): void {
  res.setHeader(
    "Content-Security-Policy",
    `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`,
  );
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("X-Frame-Options", "DENY");
  // Not no-referrer: with it, browsers send "Origin: null" on form posts, which the CSRF check refuses.
  res.setHeader("Referrer-Policy", "same-origin");
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
}

export async function startConsole(opts: ConsoleOptions): Promise<RunningConsole> {
  const { kc } = opts;
  const now = opts.now ?? (() => new Date());
  const log = opts.log ?? componentLogger("console");
  const me = await whoAmI(kc);
  const cluster = kc.getCurrentCluster()?.server ?? kc.getCurrentContext();
  const scope = await scopeOf(kc, opts.namespaces ?? []);
  const informers: ArInformer[] = scope.namespaces
    ? scope.namespaces.map((ns) => watchRequests(kc, ns))
    : [watchRequests(kc, undefined)];
  let stopped = false;
  const subscribers = new Set<Subscriber>();
  let pendingBroadcast: NodeJS.Timeout | undefined;

  const items = (): ApprovalRequest[] => informers.flatMap((i) => i.list());
  const cached = (ns: string, name: string): ApprovalRequest | undefined => {
    for (const i of informers) {
      const ar = i.get(name, ns);
      if (ar) return ar;
    }
    return undefined;
  };

  const fragment = (view: View): { id: string; html: Html } | undefined => {
    const t = now();
    const all = items();
    switch (view.kind) {
      case "inbox":
        return undefined; // sent as deltas (send)
      case "request": {
        const [ns, name] = view.key.split("/") as [string, string];
        const ar = cached(ns, name);
        return ar ? { id: "state", html: requestState(ar, t) } : undefined;
      }
      case "groups":
        return { id: "groups", html: groupsBody(gitopsGroups(all, t)) };
      case "group": {
        const g = gitopsGroups(all, t).find((x) => groupId(x.key) === view.id);
        return g ? { id: "group", html: groupBody(g, t) } : undefined;
      }
    }
  };

  const send = (s: Subscriber) => {
    if (s.view.kind === "inbox") {
      // The inbox sends what changed (rows, order, counts), not the whole table again.
      const t = now();
      const all = items();
      const snap = inboxSnapshot(inboxView(all, s.view.filter, t), s.view.filter, gitopsGroups(all, t), t);
      const delta = inboxDelta(s.inbox, snap);
      s.inbox = snap;
      if (delta === "full")
        s.res.write(`event: swap\ndata: ${JSON.stringify({ id: "inbox", html: snap.full })}\n\n`);
      else if (delta) s.res.write(`event: rows\ndata: ${JSON.stringify({ id: "inbox", ...delta })}\n\n`);
      return;
    }
    const f = fragment(s.view);
    if (f) s.res.write(`event: swap\ndata: ${JSON.stringify({ id: f.id, html: f.html.text })}\n\n`);
  };

  const broadcast = () => {
    if (pendingBroadcast) return;
    pendingBroadcast = setTimeout(() => {
      pendingBroadcast = undefined;
      for (const s of subscribers) {
        try {
          send(s);
        } catch (err) {
          log.warn("console: event stream write failed", { error: String(err) });
        }
      }
    }, BROADCAST_DEBOUNCE_MS);
  };

  for (const [i, inf] of informers.entries()) {
    inf.on("add", broadcast);
    inf.on("update", broadcast);
    inf.on("delete", broadcast);
    restartOnError(inf, `console-approvalrequests-${scope.namespaces?.[i] ?? "all"}`, log, () => stopped);
  }
  await Promise.all(informers.map((i) => i.start()));

  const heartbeat = setInterval(() => {
    for (const s of subscribers) s.res.write(": keep-alive\n\n");
  }, HEARTBEAT_MS);

  let port = 0;
  let sessions: Sessions | undefined;

  const ctxFor = (session: Session, nonce: string, flash?: Flash): PageContext => ({
    nonce,
    csrf: session.csrf,
    user: me.username,
    groups: me.groups,
    cluster,
    now: now(),
    ...(flash ? { flash } : {}),
  });

  const page = (res: ServerResponse, status: number, body: Html | string) => {
    res.statusCode = status;
    res.setHeader("Content-Type", "text/html; charset=utf-8");
    res.end(typeof body === "string" ? body : body.text);
  };

  const redirect = (res: ServerResponse, location: string) => {
    res.statusCode = 303;
    res.setHeader("Location", location);
    res.end();
  };

  /** Stores a flash for the next page of this session and returns the redirect target. */
  const withFlash = (session: Session, location: string, flash: Flash): string => {
    const id = sessions!.newId();
    session.flashes.set(id, flash);
    if (session.flashes.size > 20) session.flashes.delete(session.flashes.keys().next().value!);
    return `${location}${location.includes("?") ? "&" : "?"}flash=${encodeURIComponent(id)}`;
  };

  const takeFlash = (session: Session, id: string | null): Flash | undefined => {
    if (!id) return undefined;
    const f = session.flashes.get(id);
    session.flashes.delete(id);
    return f;
  };

  const requestOrFetch = async (ns: string, name: string): Promise<ApprovalRequest | undefined> =>
    cached(ns, name) ?? (await CountersignClient.fromKubeConfig(kc).approvalRequests.get(ns, name));

  /** One decision through the plugin's decision path; the outcome as a line (refusals verbatim). */
  const decideOne = async (
    ns: string,
    name: string,
    decision: string,
    reason: string | undefined,
    breakGlass = false,
  ): Promise<{ ok: boolean; line: string }> => {
    try {
      if (decision === DecisionKind.Revoke && !breakGlass)
        return { ok: true, line: await revoke(kc, ns, name, reason ?? "", now()) };
      if (decision === DecisionKind.Approve || decision === DecisionKind.Deny)
        return { ok: true, line: await decide(kc, ns, name, decision, reason, now(), breakGlass) };
      return { ok: false, line: `unknown decision "${decision}"` };
    } catch (err) {
      const line = err instanceof PluginError ? err.message : describeKubeError(err);
      log.info("console: decision refused", { approvalRequest: `${ns}/${name}`, decision });
      return { ok: false, line: `${ns}/${name}: ${line}` };
    }
  };

  const history = async (
    q: HistoryQuery,
  ): Promise<{ records?: AuditRecord[]; verify?: { ok: boolean; report: string } }> => {
    if (!q.request && !q.object) return {};
    const ns = q.namespace || undefined;
    const records = q.request
      ? (await listAuditRecords(kc, ns))
          .filter((r) => r.spec.approvalRequest.name === q.request)
          .sort(oldestFirst)
      : await auditTrail(kc, q.object!, ns);
    return { records, verify: await auditVerify(kc, ns) };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const nonce = randomBytes(16).toString("base64");
    securityHeaders(res, nonce);
    if (!hostAllowed(req.headers.host, port)) {
      page(
        res,
        421,
        signedOutPage("Wrong host", `This console answers only to 127.0.0.1:${port} and localhost:${port}.`),
      );
      return;
    }
    const u = new URL(req.url ?? "/", `http://${req.headers.host}`);
    const path = u.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const t = now().getTime();
    if (path[0] === "login" && path.length === 1 && req.method === "GET") {
      const s = sessions!.login(u.searchParams.get("token") ?? undefined, t);
      if (!s) {
        page(
          res,
          403,
          signedOutPage(
            "Link used or wrong",
            "This sign-in link was already used or is wrong. Each link works once: run kubectl approvals ui again for a new one.",
          ),
        );
        return;
      }
      log.info("console: signed in", { user: me.username });
      res.setHeader("Set-Cookie", sessions!.setCookie(s));
      redirect(res, "/");
      return;
    }
    const session = sessions!.fromCookie(req.headers.cookie, t);
    if (!session) {
      page(
        res,
        401,
        signedOutPage(
          "Not signed in",
          "Open the link kubectl approvals ui printed (it works once), in this browser.",
        ),
      );
      return;
    }
    if (req.method === "POST") {
      let form: URLSearchParams;
      try {
        form = await readBody(req);
      } catch (err) {
        page(res, 413, messagePage(ctxFor(session, nonce), "Too large", String((err as Error).message)));
        return;
      }
      if (
        !originAllowed(req.headers as Record<string, string>, port) ||
        !sameSecret(form.get("csrf") ?? "", session.csrf)
      ) {
        page(
          res,
          403,
          messagePage(
            ctxFor(session, nonce),
            "Refused",
            "This form did not come from this console's own page (Origin or form token). Nothing was recorded.",
          ),
        );
        return;
      }
      const reason = form.get("reason")?.trim() || undefined;
      const decision = form.get("decision") ?? "";
      if (path[0] === "r" && path.length === 4 && path[3] === "decide") {
        const [, ns, name] = path as [string, string, string];
        if (!DNS_LABEL.test(ns) || !DNS_SUBDOMAIN.test(name)) return notFound(res, session, nonce);
        // Break-glass only from a request's own page (never a group's "approve selected").
        const out = await decideOne(ns, name, decision, reason, form.get("breakGlass") === "1");
        redirect(
          res,
          withFlash(session, `/r/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`, {
            ok: out.ok,
            lines: [out.line],
          }),
        );
        return;
      }
      if (path[0] === "groups" && path.length === 3 && path[2] === "decide") {
        const id = path[1]!;
        const selected = form.getAll("request");
        const all = items();
        const group = gitopsGroups(all, now()).find((g) => groupId(g.key) === id);
        if (!group) return notFound(res, session, nonce);
        if (decision !== DecisionKind.Approve && decision !== DecisionKind.Deny) {
          redirect(
            res,
            withFlash(session, `/groups/${id}`, { ok: false, lines: [`unknown decision "${decision}"`] }),
          );
          return;
        }
        if (selected.length === 0) {
          redirect(
            res,
            withFlash(session, `/groups/${id}`, {
              ok: false,
              lines: ["Nothing selected: tick the requests to decide."],
            }),
          );
          return;
        }
        const lines: string[] = [];
        let ok = true;
        for (const key of selected) {
          // Only members of this group: a forged form cannot reach other requests through it.
          const ar = group.requests.find((r) => keyOf(r) === key);
          if (!ar) {
            ok = false;
            lines.push(`${key}: not in this group; not decided`);
            continue;
          }
          const out = await decideOne(ar.metadata.namespace, ar.metadata.name, decision, reason);
          ok &&= out.ok;
          lines.push(out.line);
        }
        redirect(res, withFlash(session, `/groups/${id}`, { ok, lines }));
        return;
      }
      return notFound(res, session, nonce);
    }
    if (req.method !== "GET") {
      res.statusCode = 405;
      res.setHeader("Allow", "GET, POST");
      res.end();
      return;
    }
    const flash = takeFlash(session, u.searchParams.get("flash"));
    const ctx = ctxFor(session, nonce, flash);
    const q = (k: string) => u.searchParams.get(k) || undefined;
    if (path.length === 0) {
      const filter: InboxFilter = {
        ...(q("namespace") ? { namespace: q("namespace") } : {}),
        ...(q("requester") ? { requester: q("requester") } : {}),
        ...(q("policy") ? { policy: q("policy") } : {}),
        ...(q("all") ? { all: true } : {}),
      };
      const all = items();
      page(
        res,
        200,
        inboxPage(ctx, inboxView(all, filter, ctx.now), filter, gitopsGroups(all, ctx.now), scope.notes),
      );
      return;
    }
    if (path[0] === "events" && path.length === 1) {
      const view: View = q("request")
        ? { kind: "request", key: q("request")! }
        : q("group")
          ? { kind: "group", id: q("group")! }
          : q("view") === "groups"
            ? { kind: "groups" }
            : {
                kind: "inbox",
                filter: {
                  ...(q("namespace") ? { namespace: q("namespace") } : {}),
                  ...(q("requester") ? { requester: q("requester") } : {}),
                  ...(q("policy") ? { policy: q("policy") } : {}),
                  ...(q("all") ? { all: true } : {}),
                },
              };
      res.writeHead(200, {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-store",
        Connection: "keep-alive",
      });
      res.write("retry: 2000\n\n");
      const sub: Subscriber = { res, view };
      subscribers.add(sub);
      // What changed between the page's render and this stream's start.
      send(sub);
      req.on("close", () => subscribers.delete(sub));
      return;
    }
    if (path[0] === "r" && path.length === 3) {
      const [, ns, name] = path as [string, string, string];
      if (!DNS_LABEL.test(ns) || !DNS_SUBDOMAIN.test(name)) return notFound(res, session, nonce);
      let ar: ApprovalRequest | undefined;
      try {
        ar = await requestOrFetch(ns, name);
      } catch (err) {
        page(res, 502, messagePage(ctx, "Cannot read the request", describeKubeError(err)));
        return;
      }
      if (!ar) return notFound(res, session, nonce, flash);
      page(res, 200, requestPage(ctx, ar, groupOf(ar, gitopsGroups(items(), ctx.now))));
      return;
    }
    if (path[0] === "groups" && path.length === 1) {
      page(res, 200, groupsPage(ctx, gitopsGroups(items(), ctx.now)));
      return;
    }
    if (path[0] === "groups" && path.length === 2) {
      const g: RequestGroup | undefined = gitopsGroups(items(), ctx.now).find(
        (x) => groupId(x.key) === path[1],
      );
      if (!g) {
        page(res, 404, messagePage(ctx, "No such group", "Nothing in this group is pending any more."));
        return;
      }
      page(res, 200, groupPage(ctx, g));
      return;
    }
    if (path[0] === "history" && path.length === 1) {
      const hq: HistoryQuery = {
        ...(q("namespace") ? { namespace: q("namespace") } : {}),
        ...(q("request") ? { request: q("request") } : {}),
        ...(q("object") ? { object: q("object") } : {}),
      };
      try {
        const h = await history(hq);
        page(res, 200, historyPage(ctx, hq, h.records, h.verify));
      } catch (err) {
        const message = err instanceof PluginError ? err.message : describeKubeError(err);
        page(
          res,
          kubeStatusOf(err)?.code === 403 ? 403 : 400,
          historyPage({ ...ctx, flash: { ok: false, lines: [message] } }, hq, undefined, undefined),
        );
      }
      return;
    }
    return notFound(res, session, nonce, flash);
  };

  const notFound = (res: ServerResponse, session: Session, nonce: string, flash?: Flash) =>
    page(
      res,
      404,
      messagePage(
        ctxFor(session, nonce, flash),
        "Not found",
        "No such page or request (it may have been garbage-collected after its retention).",
      ),
    );

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error("console: request failed", { error: describeKubeError(err) });
      if (!res.headersSent) {
        res.statusCode = 500;
        res.setHeader("Content-Type", "text/plain; charset=utf-8");
      }
      res.end("internal error; see the console's log");
    });
  });
  // Only the OS user who started the console may use it: a session cookie for 127.0.0.1 is
  // sent to every local port, so another local user could replay one (see peer-user.ts).
  const uid = process.getuid?.();
  if (uid === undefined || !peerCheckAvailable()) {
    log.warn(
      "console: this platform does not say which OS user opened a connection; any local user holding the session cookie could use the console",
    );
  } else {
    server.on("connection", (socket) => {
      const check = checkLoopbackPeer(socket.remotePort ?? 0, port, uid);
      if (check && !check.ok) {
        log.warn("console: refused a connection from another OS user", { reason: check.reason });
        socket.destroy();
      }
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  sessions = new Sessions(port);
  const origin = `http://127.0.0.1:${port}`;
  log.info("console: listening", { origin, user: me.username, namespaces: scope.namespaces ?? "all" });
  return {
    loginUrl: `${origin}/login?token=${sessions.loginToken()}`,
    origin,
    port,
    user: me.username,
    ...(scope.namespaces ? { namespaces: scope.namespaces } : {}),
    notes: scope.notes,
    async close() {
      stopped = true;
      clearInterval(heartbeat);
      if (pendingBroadcast) clearTimeout(pendingBroadcast);
      for (const s of subscribers) s.res.end();
      subscribers.clear();
      await Promise.all(informers.map((i) => i.stop()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
