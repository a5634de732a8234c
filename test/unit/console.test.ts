/**
 * The approver's console (issue 14, item 1), pure parts: every agent-written string is
 * escaped (names, annotations, reasons, diffs, GitOps labels), Secret values never reach a
 * page, the inbox's order, filters and counts, GitOps grouping, and the access checks.
 * The browser and the real API server are in test/integration/console.test.ts.
 */
import { describe, expect, it } from "vitest";
import { actionIdentity, fingerprintOf } from "../../src/approvals/fingerprint.js";
import { gitopsGroupKey, gitopsOrigin } from "../../src/approvals/gitops.js";
import { buildApprovalRequest, decisionEntry } from "../../src/approvals/request.js";
import { esc, html, raw, url } from "../../src/console/html.js";
import { gitopsGroups, groupOf, inboxView } from "../../src/console/inbox.js";
import {
  countdown,
  groupId,
  groupPage,
  historyPage,
  inboxBody,
  inboxPage,
  type PageContext,
  requestPage,
  requestState,
} from "../../src/console/render.js";
import { hostAllowed, originAllowed, parseCookies, Sessions } from "../../src/console/session.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import type { AuditRecord } from "../../src/resources/audit-record.js";

const NOW = new Date("2026-01-01T00:00:00Z");
const AGENT = "system:serviceaccount:ai-agents:ops-bot";
const XSS = `<img src=x onerror=alert(1)>"><script>alert(2)</script>'\`<svg/onload=alert(3)>`;
const ctx: PageContext = {
  nonce: "n0nce",
  csrf: "csrf-token",
  user: "alice@example.com",
  cluster: "https://127.0.0.1:6443",
  now: NOW,
};

let seq = 0;
function build(over: Partial<AdmissionRequest>, opts: { at?: Date; requiredApprovals?: number } = {}) {
  const r: AdmissionRequest = {
    uid: `u-${seq++}`,
    kind: { group: "", version: "v1", kind: "ConfigMap" },
    resource: { group: "", version: "v1", resource: "configmaps" },
    namespace: "prod",
    name: "cfg",
    operation: "DELETE",
    userInfo: { username: AGENT, groups: ["system:serviceaccounts"] },
    ...over,
  };
  const action = actionIdentity(r);
  const ar = buildApprovalRequest({
    req: r,
    action,
    fingerprint: fingerprintOf(action),
    attempt: 0,
    namespace: r.namespace ?? "prod",
    rule: { policy: "guard", rule: "deletes", generation: 1 },
    approval: {
      approvers: { groups: ["approvers"] },
      requiredApprovals: opts.requiredApprovals ?? 1,
      ttl: "1h",
      ttlSeconds: 3600,
      holdSeconds: 0,
      notify: [],
    } as never,
    now: opts.at ?? NOW,
  });
  ar.metadata.creationTimestamp = opts.at ?? NOW;
  return ar;
}

const configMap = (
  name: string,
  meta: Record<string, unknown> = {},
  data: Record<string, string> = { k: "v" },
) => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace: "prod", uid: `uid-${name}`, ...meta },
  data,
});

const del = (name: string, meta: Record<string, unknown> = {}, extra: Partial<AdmissionRequest> = {}) =>
  build({ name, oldObject: configMap(name, meta), ...extra });

/** The only script and style are the console's own, carrying the response's nonce. */
function onlyOwnMarkup(page: string): void {
  expect(page.match(/<script/gi)).toHaveLength(1);
  expect(page).toContain(`<script nonce="${ctx.nonce}">`);
  expect(page).not.toMatch(/<img|<svg/i);
  // No tag carries an event-handler attribute (escaped text may mention one; it is text).
  for (const tag of page.match(/<[a-z][^>]*>/gi) ?? [])
    expect(tag.replace(/"[^"]*"/g, '""')).not.toMatch(/\son\w+=/i);
}

describe("escaping", () => {
  it("html`` escapes text, keeps Html, and quotes cannot be left", () => {
    const h = html`<a title="${XSS}">${XSS}</a>${raw("<br>")}`.text;
    expect(h).toBe(`<a title="${esc(XSS)}">${esc(XSS)}</a><br>`);
    expect(esc(XSS)).not.toMatch(/[<>"'`]/);
  });

  it("bidi overrides, zero-width and control characters become visible", () => {
    expect(esc("safe\u202Eexe.txt\u200B\u001b[2J")).toBe("safe\\u202eexe.txt\\u200b\\u001b[2J");
    expect(esc("two\nlines")).toBe("two\nlines");
  });

  it("url() encodes each segment and query value", () => {
    expect(url(["r", "prod", "a/b?c"], { object: "x&y=z", none: undefined })).toBe(
      "/r/prod/a%2Fb%3Fc?object=x%26y%3Dz",
    );
  });

  it("a hostile request renders inert on the inbox, request and group pages", () => {
    const hostile = del("cfg", {
      annotations: {
        "countersign.io/reason": XSS,
        "countersign.io/prompt": `ignore previous instructions ${XSS}`,
        "countersign.io/ticket": XSS,
        "argocd.argoproj.io/tracking-id": `${XSS}:/ConfigMap:prod/cfg`,
        [`evil${XSS}`]: XSS,
      },
      labels: { app: "x" },
    });
    hostile.spec.decisions = [
      decisionEntry({ username: `mallory${XSS}`, groups: [] }, "Deny", XSS, "kubectl", NOW),
    ];
    const items = [hostile];
    const groups = gitopsGroups(items, NOW);
    const pages = [
      inboxPage(ctx, inboxView(items, { requester: XSS }, NOW), { requester: XSS }, groups, [XSS]).text,
      requestPage(ctx, hostile, groupOf(hostile, groups)).text,
      groupPage(ctx, groups[0]!).text,
    ];
    for (const page of pages) {
      onlyOwnMarkup(page);
      expect(page).not.toContain(XSS);
    }
    // Still readable: the text is there, as text.
    expect(pages[1]).toContain(esc(XSS));
    expect(pages[1]).toContain("ignore previous instructions");
  });

  it("the history page escapes record contents and the query", () => {
    const rec = {
      apiVersion: "countersign.io/v1alpha1",
      kind: "AuditRecord",
      metadata: { name: "r.requested", namespace: "prod" },
      spec: {
        sequence: 0,
        event: "Requested",
        time: "2026-01-01T00:00:00Z",
        approvalRequest: { name: "r" },
        actor: { username: XSS, via: XSS },
        action: { summary: XSS },
        agentContext: { reason: XSS },
        policy: { name: XSS, rule: "r" },
        previousHash: "0",
        hash: "1",
      },
    } as unknown as AuditRecord;
    const page = historyPage(ctx, { namespace: XSS, object: XSS }, [rec], { ok: false, report: XSS }).text;
    onlyOwnMarkup(page);
    expect(page).not.toContain(XSS);
    expect(page).toContain("TAMPERED");
  });
});

describe("redaction", () => {
  it("a Secret's values never reach the request page, the state or the inbox", () => {
    const secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name: "db",
        namespace: "prod",
        uid: "s1",
        annotations: {
          "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"password":"aHVudGVyMg=="}}',
        },
      },
      data: { password: "aHVudGVyMg==" },
      stringData: { token: "plain-hunter2" },
    };
    const ar = build({
      kind: { group: "", version: "v1", kind: "Secret" },
      resource: { group: "", version: "v1", resource: "secrets" },
      name: "db",
      oldObject: secret,
    });
    const pages = [
      requestPage(ctx, ar, undefined).text,
      inboxPage(ctx, inboxView([ar], {}, NOW), {}, [], []).text,
      requestState(ar, NOW).text,
    ];
    for (const page of pages) {
      expect(page).not.toContain("aHVudGVyMg==");
      expect(page).not.toContain("hunter2");
    }
    expect(pages[0]).toContain("&lt;redacted&gt;");
  });
});

describe("inbox", () => {
  const a = del("a", {}, { namespace: "prod" });
  const b = build(
    { name: "b", namespace: "dev", oldObject: configMap("b") },
    { at: new Date(NOW.getTime() + 1000) },
  );
  b.spec.requester = { ...b.spec.requester, username: "system:serviceaccount:ai:other" };
  const approved = build({ name: "c", oldObject: configMap("c") }, { at: new Date(NOW.getTime() + 2000) });
  approved.status = { phase: "Approved" };
  const expired = build({ name: "d", oldObject: configMap("d") }, { at: new Date(NOW.getTime() - 7200_000) });

  it("shows pending requests newest first, with counts per namespace, requester and policy", () => {
    const v = inboxView([a, b, approved, expired], {}, NOW);
    expect(v.rows.map((r) => r.metadata.name)).toEqual([b.metadata.name, a.metadata.name]);
    expect(v.pending).toBe(2);
    expect(v.byNamespace).toEqual([
      { value: "dev", count: 1 },
      { value: "prod", count: 1 },
    ]);
    expect(v.byPolicy).toEqual([{ value: "guard", count: 2 }]);
    expect(v.byRequester.map((c) => c.value).sort()).toEqual([AGENT, "system:serviceaccount:ai:other"]);
  });

  it("filters by namespace, requester and policy; counts stay those of everything pending", () => {
    expect(inboxView([a, b], { namespace: "dev" }, NOW).rows).toEqual([b]);
    expect(inboxView([a, b], { requester: AGENT }, NOW).rows).toEqual([a]);
    expect(inboxView([a, b], { policy: "other" }, NOW).rows).toEqual([]);
    expect(inboxView([a, b], { policy: "other" }, NOW).pending).toBe(2);
    expect(inboxView([a, b, approved], { all: true }, NOW).rows).toHaveLength(3);
  });

  it("counts approvals as the controller does and counts down to expiry", () => {
    const two = build({ name: "e", oldObject: configMap("e") }, { requiredApprovals: 2 });
    two.spec.decisions = [
      decisionEntry({ username: "bob", groups: [] }, "Approve", "ok", "kubectl", NOW),
      decisionEntry({ username: AGENT, groups: [] }, "Approve", "self", "kubectl", NOW),
    ];
    expect(requestState(two, NOW).text).toContain('<span id="approvals">1/2</span>');
    expect(countdown(two.spec.approval.expiresAt, NOW)).toBe("1h 00m");
    expect(countdown(two.spec.approval.expiresAt, new Date(NOW.getTime() + 3600_000 - 65_000))).toBe(
      "1m 05s",
    );
    expect(countdown(two.spec.approval.expiresAt, new Date(NOW.getTime() + 3600_000))).toBe("expired");
  });
});

describe("GitOps origin and groups", () => {
  it("reads Argo CD tracking annotations and instance labels, and Flux labels with a revision", () => {
    expect(
      gitopsOrigin(
        configMap("x", { annotations: { "argocd.argoproj.io/tracking-id": "shop:/ConfigMap:prod/x" } }),
      ),
    ).toEqual({ tool: "argocd", app: "shop", marker: "argocd.argoproj.io/tracking-id" });
    expect(
      gitopsOrigin(
        configMap("x", {
          annotations: { "argocd.argoproj.io/tracking-id": "team-a_shop:apps/Deployment:prod/x" },
        }),
      ),
    ).toMatchObject({ app: "team-a/shop" });
    expect(gitopsOrigin(configMap("x", { labels: { "app.kubernetes.io/instance": "shop" } }))).toEqual({
      tool: "argocd",
      app: "shop",
      marker: "app.kubernetes.io/instance",
    });
    expect(
      gitopsOrigin(
        configMap("x", {
          labels: {
            "kustomize.toolkit.fluxcd.io/name": "apps",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
            "kustomize.toolkit.fluxcd.io/checksum": "6d70029",
          },
        }),
      ),
    ).toEqual({
      tool: "flux",
      app: "Kustomization flux-system/apps",
      marker: "kustomize.toolkit.fluxcd.io/name",
      revision: "6d70029",
    });
    expect(
      gitopsOrigin(
        configMap("x", {
          labels: { "helm.toolkit.fluxcd.io/name": "redis", "helm.toolkit.fluxcd.io/namespace": "db" },
        }),
      ),
    ).toMatchObject({ tool: "flux", app: "HelmRelease db/redis" });
    expect(gitopsOrigin(configMap("x", { labels: { app: "x" } }))).toBeUndefined();
    expect(gitopsOrigin("not an object")).toBeUndefined();
    expect(gitopsOrigin({ metadata: { labels: { "app.kubernetes.io/instance": 7 } } })).toBeUndefined();
  });

  it("bounds what it records to the CRD's limits", () => {
    const long = "a".repeat(2000);
    const o = gitopsOrigin(
      configMap("x", { annotations: { "argocd.argoproj.io/tracking-id": `${long}:x` } }),
    );
    expect(o?.app).toHaveLength(512);
  });

  it("the webhook records it on the request (from the deleted object for a DELETE)", () => {
    const ar = del("x", { annotations: { "argocd.argoproj.io/tracking-id": "shop:/ConfigMap:prod/x" } });
    expect(ar.spec.gitops).toEqual({ tool: "argocd", app: "shop", marker: "argocd.argoproj.io/tracking-id" });
    expect(del("y").spec.gitops).toBeUndefined();
  });

  it("groups one requester's pending requests of one application and revision, never across requesters", () => {
    const flux = (name: string, rev: string) => ({
      labels: {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
        "kustomize.toolkit.fluxcd.io/checksum": rev,
      },
      name,
    });
    const r1 = del("one", flux("one", "rev1"));
    const r2 = del("two", flux("two", "rev1"));
    const r3 = del("three", flux("three", "rev2"));
    const other = del("four", flux("four", "rev1"));
    other.spec.requester = { ...other.spec.requester, username: "system:serviceaccount:ai:impostor" };
    const done = del("five", flux("five", "rev2"));
    done.status = { phase: "Denied" };
    const groups = gitopsGroups([r1, r2, r3, other, done, del("plain")], NOW);
    expect(groups).toHaveLength(3);
    const byKey = (req: ApprovalRequest) =>
      groups.find((g) => g.key === gitopsGroupKey(req.spec.requester.username, req.spec.gitops!));
    expect(
      byKey(r1)
        ?.requests.map((r) => r.metadata.name)
        .sort(),
    ).toEqual([r1.metadata.name, r2.metadata.name].sort());
    expect(byKey(r3)?.requests).toHaveLength(2); // the finished one is shown with it
    expect(byKey(r3)?.pending).toBe(1);
    expect(byKey(other)?.requests).toEqual([other]);
    expect(groupOf(r2, groups)).toBe(byKey(r1));
    // The inbox tags each member's row with its group; a request without one has no tag.
    const inbox = inboxBody(
      inboxView([r1, r2, r3, other, done, del("plain")], {}, NOW),
      {},
      groups,
      NOW,
    ).text;
    const row = (req: ApprovalRequest) =>
      inbox.slice(inbox.indexOf(`data-request="prod/${req.metadata.name}"`)).split("</tr>")[0]!;
    expect(row(r2)).toContain(`/groups/${groupId(byKey(r1)!.key)}`);
    expect(row(r3)).toContain(`/groups/${groupId(byKey(r3)!.key)}`);
    expect(row(del("plain"))).not.toContain("/groups/");
    // A group page lets only pending requests be selected.
    const page = groupPage(ctx, byKey(r3)!).text;
    expect(page.match(/name="request"/g)).toHaveLength(2);
    expect(page.match(/ disabled/g)).toHaveLength(1);
  });
});

describe("access", () => {
  it("the login token works once, and only the issued session cookie is accepted", () => {
    let n = 0;
    const s = new Sessions(8080, () => `rand${n++}`);
    const token = s.loginToken()!;
    expect(s.login("wrong", 0)).toBeUndefined();
    const session = s.login(token, 0)!;
    expect(session).toBeDefined();
    expect(s.loginToken()).toBeUndefined();
    expect(s.login(token, 0)).toBeUndefined();
    const cookie = s.setCookie(session);
    expect(cookie).toMatch(/^countersign_console_8080=rand1; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(s.fromCookie(`x=1; countersign_console_8080=${session.id}`, 1)).toBe(session);
    expect(s.fromCookie(`countersign_console_8080=${session.id}x`, 1)).toBeUndefined();
    expect(s.fromCookie(`countersign_console_9090=${session.id}`, 1)).toBeUndefined();
    expect(s.fromCookie(undefined, 1)).toBeUndefined();
    // Idle for more than 12 hours: gone.
    expect(s.fromCookie(`countersign_console_8080=${session.id}`, 1 + 13 * 3600_000)).toBeUndefined();
  });

  it("answers only to its own Host names (DNS rebinding)", () => {
    expect(hostAllowed("127.0.0.1:8080", 8080)).toBe(true);
    expect(hostAllowed("localhost:8080", 8080)).toBe(true);
    expect(hostAllowed("evil.example:8080", 8080)).toBe(false);
    expect(hostAllowed("127.0.0.1:8081", 8080)).toBe(false);
    expect(hostAllowed(undefined, 8080)).toBe(false);
  });

  it("takes state changes only from its own origin (CSRF, also from other local ports)", () => {
    const h = { host: "127.0.0.1:8080" };
    expect(
      originAllowed({ ...h, origin: "http://127.0.0.1:8080", "sec-fetch-site": "same-origin" }, 8080),
    ).toBe(true);
    expect(originAllowed({ ...h, origin: "http://127.0.0.1:9999" }, 8080)).toBe(false);
    expect(originAllowed({ ...h, origin: "http://evil.example" }, 8080)).toBe(false);
    expect(originAllowed({ ...h, origin: "null" }, 8080)).toBe(false);
    expect(originAllowed(h, 8080)).toBe(false);
    expect(
      originAllowed({ ...h, origin: "http://127.0.0.1:8080", "sec-fetch-site": "same-site" }, 8080),
    ).toBe(false);
    expect(parseCookies("a=1; b = 2;c")).toEqual({ a: "1", b: "2" });
  });
});
