/**
 * How long the console takes to render its pages from memory (no I/O): the inbox (full page
 * and the live fragment pushed on every change) with N pending requests, and one request page.
 * Run: npx tsx bench/console-render.ts [N]
 */
import { actionIdentity, fingerprintOf } from "../src/approvals/fingerprint.js";
import { buildApprovalRequest } from "../src/approvals/request.js";
import type { Html } from "../src/console/html.js";
import { gitopsGroups, inboxView } from "../src/console/inbox.js";
import { inboxBody, inboxPage, type PageContext, requestPage } from "../src/console/render.js";
import type { AdmissionRequest } from "../src/resources/admission.js";
import type { ApprovalRequest } from "../src/resources/approval-request.js";

const N = Number(process.argv[2] ?? 1000);
const NOW = new Date();
const items: ApprovalRequest[] = [];
for (let i = 0; i < N; i++) {
  const ns = `team-${i % 20}`;
  const req: AdmissionRequest = {
    uid: `u${i}`,
    kind: { group: "", version: "v1", kind: "ConfigMap" },
    resource: { group: "", version: "v1", resource: "configmaps" },
    namespace: ns,
    name: `config-${i}`,
    operation: "DELETE",
    userInfo: { username: `system:serviceaccount:agents:bot-${i % 7}` },
    oldObject: {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: `config-${i}`,
        namespace: ns,
        uid: `uid-${i}`,
        annotations: {
          "countersign.io/reason": `cleanup of stale configuration ${i}`,
          "argocd.argoproj.io/tracking-id": `app-${i % 5}:/ConfigMap:${ns}/config-${i}`,
        },
      },
      data: Object.fromEntries(Array.from({ length: 20 }, (_, k) => [`key-${k}`, "v".repeat(200)])),
    },
  };
  const action = actionIdentity(req);
  const ar = buildApprovalRequest({
    req,
    action,
    fingerprint: fingerprintOf(action),
    attempt: 0,
    namespace: ns,
    rule: { policy: "guard", rule: "deletes", generation: 1 },
    approval: {
      approvers: { groups: ["approvers"] },
      requiredApprovals: 1,
      ttl: "1h",
      ttlSeconds: 3600,
      holdSeconds: 0,
      notify: [],
    } as never,
    now: NOW,
  });
  ar.metadata.creationTimestamp = new Date(NOW.getTime() - i * 1000);
  items.push(ar);
}
const ctx: PageContext = { nonce: "n", csrf: "c", user: "alice", cluster: "https://cluster", now: NOW };

function time(label: string, render: () => Html, runs: number): void {
  render();
  const t0 = performance.now();
  let out: Html | undefined;
  for (let i = 0; i < runs; i++) out = render();
  const ms = (performance.now() - t0) / runs;
  console.log(`${label}: ${ms.toFixed(2)} ms, ${Math.round((out?.text.length ?? 0) / 1024)} KiB`);
}

time(
  `inbox page, ${N} pending`,
  () => inboxPage(ctx, inboxView(items, {}, NOW), {}, gitopsGroups(items, NOW), []),
  20,
);
time(
  `inbox live fragment, ${N} pending`,
  () => inboxBody(inboxView(items, {}, NOW), {}, gitopsGroups(items, NOW), NOW),
  20,
);
time("request page (20 values of 200 characters)", () => requestPage(ctx, items[0]!, undefined), 200);
