/**
 * `kubectl approvals ui` in a real headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core) against the real API server and webhook (issue 14, item 1): the agent is
 * denied, the inbox shows the request live (no reload), the approver approves with a reason
 * on the request page, the agent's retry passes once, the history shows the trail and the
 * chain check. Also as attacks: a hostile agent's text stays text in the browser, a
 * non-approver's click is refused with the guard's own words, and the console refuses
 * requests without its cookie, a reused sign-in link, a foreign Host and a foreign Origin.
 *
 * Screenshots of the inbox and the request page go to the test's temporary directory, and to
 * docs/ with COUNTERSIGN_SCREENSHOTS=docs.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { groupId } from "../../src/console/render.js";
import { type RunningConsole, startConsole } from "../../src/console/server.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { runCli } from "../../src/plugin/cli.js";
import { decide, PluginError } from "../../src/plugin/commands.js";
import { APPROVERS_GROUP, deleteGuard, requireApproval } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  eventually,
  grantServiceAccount,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import {
  agentIdentity,
  applyPolicies,
  approvalRequestsIn,
  rejection,
  requestNamed,
  untilRefused,
} from "../support/scenario.js";

const CHROMIUM = "/usr/bin/chromium";
const agentsNs = uniqueName("ui-agents");
const ns = uniqueName("ui-prod");
const policyName = uniqueName("ui-guard");
const XSS = `<img src=x onerror="window.__pwned=1">"><script>window.__pwned=2</script>`;
const shots = mkdtempSync(join(tmpdir(), "countersign-console-"));
const toDocs = process.env.COUNTERSIGN_SCREENSHOTS === "docs";

let cp: ControlPlane;
let cs: TestCountersign;
let agent: KubeConfig;
let alice: KubeConfig;
let dave: KubeConfig; // in the approvers group, may read and patch requests, lacks RBAC verb approve
let consoleAlice: RunningConsole;
let consoleDave: RunningConsole;
let browser: Browser;
const timings: Record<string, number> = {};
/** The two requests of one Argo CD sync (application "payments") the first test opens. */
const synced: string[] = [];
/** Any alert/confirm/prompt a page opened (an injected script would). */
const dialogs: string[] = [];

const _custom = () => cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
const core = () => cp.adminKubeConfig().makeApiClient(CoreV1Api);

const getAr = (name: string) => approvalRequestsIn(cp, ns).get(name);

async function secret(
  name: string,
  annotations: Record<string, string>,
  labels: Record<string, string> = {},
) {
  await core().createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name, annotations, labels }, stringData: { password: "hunter2-never-shown" } },
  });
}

const agentDelete = (name: string) =>
  agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name, namespace: ns });

/** The agent tries to delete; returns the ApprovalRequest named in the denial. */
async function denied(name: string): Promise<string> {
  const message = await rejection(agentDelete(name));
  const request = requestNamed(message);
  if (!request) throw new Error(`unexpected denial: ${message}`);
  return request;
}

/** A raw HTTP request to the console (headers as given: what another local process could send). */
function raw(
  c: RunningConsole,
  path: string,
  headers: Record<string, string>,
  method = "GET",
  body?: string,
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: "127.0.0.1", port: c.port, path, method, headers }, (res) => {
      let d = "";
      res.on("data", (chunk) => (d += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: d, headers: res.headers }));
    });
    r.on("error", reject);
    r.end(body);
  });
}

async function signIn(c: RunningConsole): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await page.goto(c.loginUrl);
  return page;
}

/** The flash line after a decision (or what the page shows instead, to say why not). */
async function flashAfterClick(page: Page, button: string): Promise<string> {
  await page.getByRole("button", { name: button }).click();
  try {
    await page.locator("#flash").waitFor({ timeout: 20_000 });
  } catch {
    throw new Error(
      `no result shown after ${button}; at ${page.url()}: ${await page.locator("body").innerText()}`,
    );
  }
  return (await page.locator("#flash").textContent()) ?? "";
}

async function shot(page: Page, file: string): Promise<void> {
  const png = await page.screenshot({ fullPage: false });
  writeFileSync(join(shots, file), png);
  if (toDocs) writeFileSync(join("docs", file), png);
  expect(png.subarray(1, 4).toString()).toBe("PNG");
  expect(png.length).toBeGreaterThan(10_000);
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  const id = await agentIdentity(cp, agentsNs, "deploy-bot", {
    target: ns,
    resources: ["secrets"],
    verbs: ["get", "list", "delete"],
  });
  agent = id.kubeConfig;
  alice = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);
  dave = await approverIdentity(cp, "dave@example.com", [APPROVERS_GROUP], false);
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace: uniqueName("ui-cs"),
    webhookName: "countersign-console-test",
  });
  await applyPolicies(cp, cs, [
    deleteGuard(policyName, {
      agents: agentsNs,
      namespace: ns,
      rules: [
        {
          ...requireApproval("secret-deletes", { groups: [APPROVERS_GROUP], ttl: "30m" }),
          message: "Deleting a production Secret needs a human.",
        },
      ],
    }),
  ]);
  await secret("canary", {});
  await untilRefused(() =>
    agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: "canary", namespace: ns, dryRun: "All" }),
  );
  let t0 = Date.now();
  browser = await chromium.launch({ executablePath: CHROMIUM });
  timings.browserLaunchMs = Date.now() - t0;
  t0 = Date.now();
  consoleAlice = await startConsole({ kc: alice });
  timings.consoleStartMs = Date.now() - t0;
  consoleDave = await startConsole({ kc: dave });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await consoleAlice?.close();
  await consoleDave?.close();
  await cs?.stop();
  console.log(`[console] timings ${JSON.stringify(timings)}; screenshots in ${shots}`);
});

describe("the approver's console in a browser", () => {
  it("inbox live → approve with a reason → the retry passes once → history shows the trail", async () => {
    // Other work waiting (an Argo CD sync of two Secrets), so the inbox shows a group.
    const tracking = (n: string) => ({ "argocd.argoproj.io/tracking-id": `payments:/Secret:${ns}/${n}` });
    await secret("old-api-token", {
      ...tracking("old-api-token"),
      "countersign.io/reason": "pruned by sync",
    });
    await secret("old-tls", { ...tracking("old-tls"), "countersign.io/reason": "pruned by sync" });
    const pruneA = await denied("old-api-token");
    synced.push(pruneA, await denied("old-tls"));

    const t0 = Date.now();
    const page = await signIn(consoleAlice);
    await page.locator(`tr[data-request="${ns}/${pruneA}"]`).waitFor();
    timings.inboxLoadMs = Date.now() - t0;
    await page.locator("#live", { hasText: "live" }).waitFor();
    // A marker that a reload would lose.
    await page.evaluate(() => {
      (globalThis as unknown as { __noReload: boolean }).__noReload = true;
    });

    await secret("db-credentials", {
      "countersign.io/reason": "Rotating the database password after the incident; the old Secret must go.",
      "countersign.io/ticket": "OPS-1234",
      "countersign.io/prompt": "Clean up the credentials the incident exposed.",
    });
    const t1 = Date.now();
    const name = await denied("db-credentials");
    const row = page.locator(`tr[data-request="${ns}/${name}"]`);
    await row.waitFor({ timeout: 10_000 });
    timings.liveRowMs = Date.now() - t1;
    expect(await page.evaluate(() => (globalThis as unknown as { __noReload?: boolean }).__noReload)).toBe(
      true,
    );
    // This test's three requests are listed; the page-wide count may also include requests
    // earlier test files left pending in other namespaces (the console sees the whole cluster).
    await expect.poll(() => page.locator(`tr[data-request^="${ns}/"]`).count()).toBe(3);
    expect(Number(await page.locator("#pending-count").textContent())).toBeGreaterThanOrEqual(3);
    await shot(page, "console-inbox.png");

    // The request page, by keyboard: focus the link and press Enter.
    await row.locator("a").first().focus();
    await page.keyboard.press("Enter");
    await page.locator("#diff").waitFor();
    const text = await page.locator("main").innerText();
    expect(text).toContain("system:serviceaccount:" + agentsNs + ":deploy-bot");
    expect(text).toContain("Rotating the database password");
    expect(text).toContain("OPS-1234");
    expect(text).toContain(policyName);
    expect(text).toContain("secret-deletes");
    expect(text).toContain("<redacted>");
    expect(await page.content()).not.toContain("hunter2");
    expect(await page.locator("#approvals").textContent()).toBe("0/1");
    expect(await page.locator("[data-expires]").first().textContent()).toMatch(/^(29|30)m \d\ds$/);
    await page.locator("#reason").fill("Checked with the on-call DBA: the new password is live.");
    await shot(page, "console-request.png");

    expect(await flashAfterClick(page, "Approve")).toMatch(
      new RegExp(`approved ${ns}/${name} \\(1/1 approvals\\): the requester can now retry the action, once`),
    );
    // The controller's Approved arrives live; then Revoke is the button that applies.
    await page.locator('[data-phase="Approved"]').waitFor({ timeout: 15_000 });
    await expect.poll(() => page.getByRole("button", { name: "Revoke" }).isVisible()).toBe(true);
    expect(await page.getByRole("button", { name: "Approve" }).isVisible()).toBe(false);
    const decision = (await getAr(name)).spec.decisions?.[0];
    expect(decision).toMatchObject({
      approver: "alice@example.com",
      decision: "Approve",
      via: "kubectl",
      reason: "Checked with the on-call DBA: the new password is live.",
    });

    // The agent's retry passes, once: the page shows the approval used, live.
    await agentDelete("db-credentials");
    await page.locator('[data-phase="Consumed"]').waitFor({ timeout: 15_000 });
    await secret("db-credentials", {});
    expect(await rejection(agentDelete("db-credentials"))).toMatch(
      /needs (a human )?approval|ApprovalRequest/,
    );

    // History of the request: the trail, and the chain verified.
    await page.locator("#history-link").click();
    await page.locator("#trail").waitFor();
    await eventually(
      async () => {
        await page.reload();
        const events = await page
          .locator("#trail tr[data-event]")
          .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-event")));
        return ["Requested", "Approved", "Consumed"].every((e) => events.includes(e));
      },
      20_000,
      "Requested, Approved and Consumed in the history",
    );
    const history = await page.locator("main").innerText();
    expect(history).toContain("alice@example.com");
    expect(history).toContain("Checked with the on-call DBA");
    expect(await page.locator("#verify h2").innerText()).toContain("intact");
    await page.context().close();
  });

  it("a hostile agent's text stays text, and a click the webhook refuses is shown in the guard's words", async () => {
    await secret("evil", { "countersign.io/reason": XSS, "countersign.io/ticket": XSS });
    const name = await denied("evil");
    const expected = await decide(dave, ns, name, "Approve", "not mine to approve").then(
      () => {
        throw new Error("dave's approval should have been refused");
      },
      (err: unknown) => {
        expect(err).toBeInstanceOf(PluginError);
        return (err as Error).message;
      },
    );
    // Only the webhook can know this (a SubjectAccessReview): the refusal is the guard's.
    expect(expected).toMatch(/denied the request: .*dave@example.com .*lacks RBAC verb "approve"/);

    const page = await signIn(consoleDave);
    await page.locator(`tr[data-request="${ns}/${name}"]`).waitFor();
    await page.goto(`${consoleDave.origin}/r/${ns}/${name}`);
    expect(await page.locator("#agent-context").innerText()).toContain(XSS);
    expect(
      await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned),
    ).toBeUndefined();
    await page.locator("#reason").fill("trying anyway");
    expect(await flashAfterClick(page, "Approve")).toBe(`${ns}/${name}: ${expected}`);
    expect((await getAr(name)).spec.decisions ?? []).toEqual([]);
    expect(dialogs).toEqual([]);
    expect(
      await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned),
    ).toBeUndefined();
    await page.context().close();
  });

  it("a GitOps sync's requests side by side: approve selected decides each on its own; one is revoked", async () => {
    expect(synced).toHaveLength(2);
    // Each console's sign-in link works once: a console of its own for this browser context.
    const c = await startConsole({ kc: alice });
    const page = await signIn(c);
    await page.getByRole("link", { name: "Groups" }).click();
    await page.getByRole("link", { name: "argocd payments" }).click();
    for (const name of synced) await page.locator(`input[name=request][value="${ns}/${name}"]`).waitFor();
    // Red team 11 F2: each member's whole diff is on the page, and the grouping is called a claim.
    await expect.poll(() => page.locator("#group pre.diff").count(), { timeout: 10_000 }).toBe(synced.length);
    for (const name of synced)
      expect(await page.locator(`#diff-${groupId(`${ns}/${name}`)}`).isVisible()).toBe(true);
    expect(await page.locator("#group-caveat").innerText()).toContain("Grouped by what the objects claim");
    // By keyboard: the "select all" box, then the reason, then the button.
    await page.locator("#select-all").focus();
    await page.keyboard.press("Space");
    for (const name of synced)
      expect(await page.locator(`input[name=request][value="${ns}/${name}"]`).isChecked()).toBe(true);
    await page.locator("#reason").fill("Argo CD prune of the payments app, reviewed in PR 981.");
    const flash = await flashAfterClick(page, "Approve selected");
    for (const name of synced) expect(flash).toContain(`approved ${ns}/${name} (1/1 approvals)`);
    for (const name of synced) {
      const ds = (await getAr(name)).spec.decisions ?? [];
      expect(ds).toHaveLength(1);
      expect(ds[0]).toMatchObject({
        approver: "alice@example.com",
        decision: "Approve",
        via: "kubectl",
        reason: "Argo CD prune of the payments app, reviewed in PR 981.",
      });
    }
    // Revoke one of them from its page before the agent uses it.
    const [keep, withdraw] = synced as [string, string];
    await page.goto(`${c.origin}/r/${ns}/${withdraw}`);
    await page.locator('[data-phase="Approved"]').waitFor({ timeout: 15_000 });
    await page.locator("#reason").fill("old-tls is still referenced by the ingress");
    expect(await flashAfterClick(page, "Revoke")).toBe(
      `revoked ${ns}/${withdraw}: the approval can no longer be used`,
    );
    await page.locator('[data-phase="Revoked"]').waitFor({ timeout: 15_000 });
    expect(await rejection(agentDelete("old-tls"))).toMatch(/revoked/);
    await eventually(async () => (await getAr(keep)).status?.phase === "Approved", 15_000, "Approved");
    await agentDelete("old-api-token");
    await page.context().close();
    await c.close();
  });

  it("break-glass from the request page: offered to an on-call member only; a short or invisible reason is refused in the guard's words; one click approves a two-approver request, used once", async () => {
    const oncall = uniqueName("ui-oncall");
    const olga = await approverIdentity(cp, `${uniqueName("olga")}@example.com`, [
      "countersign:approvers",
      oncall,
    ]);
    await grantServiceAccount(
      cp,
      ns,
      { namespace: agentsNs, name: "deploy-bot" },
      ["configmaps"],
      ["delete"],
    );
    const bgPolicy = uniqueName("ui-bg");
    await cp.apply([
      {
        apiVersion: "countersign.io/v1alpha1",
        kind: "ApprovalPolicy",
        metadata: { name: bgPolicy },
        spec: {
          subjects: { serviceAccounts: [{ namespace: agentsNs }] },
          match: [{ operations: ["DELETE"], apiGroups: [""], resources: ["configmaps"], namespaces: [ns] }],
          rules: [
            {
              name: "config-deletes",
              action: "RequireApproval",
              approval: {
                approvers: { groups: ["countersign:approvers"] },
                requiredApprovals: 2,
                breakGlass: { groups: [oncall] },
              },
            },
          ],
        },
      } as never,
    ]);
    await eventually(
      async () => cs.replicas[0]!.policies.list().some((p) => p.name === bgPolicy),
      10_000,
      "policy",
    );
    await core().createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: "feature-flags" }, data: { x: "1" } },
    });
    const agentDeleteCm = () =>
      agent.makeApiClient(CoreV1Api).deleteNamespacedConfigMap({ name: "feature-flags", namespace: ns });
    const message = await eventually(
      async () => {
        const m = await rejection(agentDeleteCm());
        return /ApprovalRequest \S+\/\S+ (was created|is pending)/.test(m) && m;
      },
      15_000,
      "gated",
    );
    const name = /ApprovalRequest \S+\/(\S+) (was created|is pending)/.exec(message)![1]!;

    // Alice approves, but is not on call: no break-glass form, only who may.
    const ca = await startConsole({ kc: alice });
    const pa = await signIn(ca);
    await pa.goto(`${ca.origin}/r/${ns}/${name}`);
    await pa.locator("#break-glass-note").waitFor();
    expect(await pa.locator("#break-glass-form").count()).toBe(0);
    await pa.context().close();
    await ca.close();

    const co = await startConsole({ kc: olga });
    try {
      const page = await signIn(co);
      await page.goto(`${co.origin}/r/${ns}/${name}`);
      await page.locator('[data-phase="Pending"]').waitFor();
      const breakGlass = page.getByRole("button", { name: "Break the glass", exact: true });
      // Too short, then 25 zero-width spaces: refused by the decision rules, nothing recorded.
      for (const reason of ["it is urgent", "\u200B".repeat(25)]) {
        await page.locator("#break-glass-reason").fill(reason);
        // The previous answer's flash goes first, so the wait below sees this click's answer.
        await page.locator("#flash").evaluateAll((els) => {
          for (const e of els) e.remove();
        });
        await breakGlass.click();
        await page.locator("#flash").waitFor({ timeout: 20_000 });
        expect(await page.locator("#flash").innerText()).toMatch(/break-glass.*20/i);
        expect((await getAr(name)).spec.decisions ?? []).toEqual([]);
      }
      const reason = "payments are failing on a bad flag; removing it now";
      await page.locator("#break-glass-reason").fill(reason);
      await breakGlass.click();
      await page
        .locator("#flash", { hasText: `break-glass approved ${ns}/${name}` })
        .waitFor({ timeout: 20_000 });
      await page.locator('[data-phase="Approved"]').waitFor({ timeout: 15_000 });
      expect(await page.locator("#state").innerText()).toContain("Approve (BREAK-GLASS)");
      const ds = (await getAr(name)).spec.decisions ?? [];
      expect(ds).toHaveLength(1);
      expect(ds[0]).toMatchObject({ decision: "Approve", breakGlass: true, via: "kubectl", reason });
      // The agent's retry passes once.
      await eventually(async () => (await getAr(name)).status?.phase === "Approved", 15_000, "Approved");
      await agentDeleteCm();
      await eventually(async () => (await getAr(name)).status?.phase === "Consumed", 15_000, "Consumed");
      await page.context().close();
    } finally {
      await co.close();
    }
  });

  it("kubectl approvals ui prints a one-time link, serves it, and stops on Ctrl-C", async () => {
    const id = await cp.userIdentity("alice@example.com", ["countersign:approvers"]);
    const lines: string[] = [];
    let stop: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => {
      stop = resolve;
    });
    const run = runCli(["ui", "--kubeconfig", id.kubeconfigPath], "kubectl-approvals", () => ({
      print: (l) => lines.push(l),
      stopped,
    }));
    const first = await Promise.race([
      eventually(async () => lines.map((l) => l.trim()).find((l) => l.startsWith("http://127.0.0.1:"))),
      run.then((r) => ({ returnedEarly: r })),
    ]);
    if (typeof first !== "string") throw new Error(`kubectl approvals ui returned: ${JSON.stringify(first)}`);
    const link = first;
    const u = new URL(link);
    const target = { port: Number(u.port) } as RunningConsole;
    const login = await raw(target, u.pathname + u.search, { host: u.host });
    expect(login.status).toBe(303);
    expect((await raw(target, u.pathname + u.search, { host: u.host })).status).toBe(403);
    stop();
    expect(await run).toEqual({ code: 0, out: "", err: "" });
    expect(lines.join("\n")).toContain("alice@example.com");
    const bad = await runCli(
      ["ui", "--port", "http", "--kubeconfig", id.kubeconfigPath],
      "kubectl-approvals",
    );
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--port takes a port number");
  });

  it("refuses requests without its cookie, a used sign-in link, a foreign Host or Origin", async () => {
    const host = { host: `127.0.0.1:${consoleAlice.port}` };
    const noCookie = await raw(consoleAlice, "/", host);
    expect(noCookie.status).toBe(401);
    expect(noCookie.body).not.toContain(ns);
    const used = await raw(
      consoleAlice,
      new URL(consoleAlice.loginUrl).pathname + new URL(consoleAlice.loginUrl).search,
      host,
    );
    expect(used.status).toBe(403);
    expect(used.headers["set-cookie"]).toBeUndefined();

    // A fresh console, signed in through a raw request, to hold a valid cookie here.
    const c = await startConsole({ kc: alice });
    try {
      const login = await raw(c, new URL(c.loginUrl).pathname + new URL(c.loginUrl).search, {
        host: `127.0.0.1:${c.port}`,
      });
      expect(login.status).toBe(303);
      const setCookie = String(login.headers["set-cookie"]);
      expect(setCookie).toMatch(/HttpOnly/);
      expect(setCookie).toMatch(/SameSite=Strict/);
      const cookie = setCookie.split(";")[0]!;
      const ok = await raw(c, "/", { host: `127.0.0.1:${c.port}`, cookie });
      expect(ok.status).toBe(200);
      expect(ok.headers["content-security-policy"]).toMatch(/script-src 'nonce-/);
      // DNS rebinding: the browser would send the attacker's name as Host.
      const rebound = await raw(c, "/", { host: `evil.example:${c.port}`, cookie });
      expect(rebound.status).toBe(421);
      expect(rebound.body).not.toContain(ns);
      // CSRF from another local page: foreign Origin, and a missing form token.
      await secret("csrf-target", {});
      const target = await denied("csrf-target");
      const csrf = /name="csrf" value="([^"]+)"/.exec(
        (await raw(c, `/r/${ns}/${target}`, { host: `127.0.0.1:${c.port}`, cookie })).body,
      )?.[1];
      expect(csrf).toBeTruthy();
      const form = (token: string) => `csrf=${encodeURIComponent(token)}&decision=Approve&reason=forged`;
      const post = (origin: string | undefined, token: string) =>
        raw(
          c,
          `/r/${ns}/${target}/decide`,
          {
            host: `127.0.0.1:${c.port}`,
            cookie,
            "content-type": "application/x-www-form-urlencoded",
            ...(origin ? { origin } : {}),
          },
          "POST",
          form(token),
        );
      expect((await post("http://127.0.0.1:1", csrf!)).status).toBe(403);
      expect((await post(undefined, csrf!)).status).toBe(403);
      expect((await post(`http://127.0.0.1:${c.port}`, "wrong")).status).toBe(403);
      expect((await getAr(target)).spec.decisions ?? []).toEqual([]);
    } finally {
      await c.close();
    }
  });
});
