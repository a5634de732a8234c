/**
 * Evidence at scale, through the real API server: AuditRecords carry labels naming their
 * target, so `kubectl approvals audit --for KIND/NAME` is answered by a label-selected LIST
 * (the server sends the target's records, not the namespace's trail); records written before
 * the labels existed are still found; verify reads a chain a page at a time; and the first
 * write in a namespace finds its chain head without listing the namespace's records.
 */
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { beforeAll, describe, expect, it } from "vitest";
import winston from "winston";
import { createRecords, generateRecords } from "../../bench/audit-generator.js";
import { LABEL_TARGET_KIND, LABEL_TARGET_NAME, targetLabelValue } from "../../src/audit/target-labels.js";
import { AuditWriter, findUnanchoredHead } from "../../src/audit/writer.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { newListStats } from "../../src/kube/list-pages.js";
import { runCli } from "../../src/plugin/cli.js";
import { auditFor, auditVerify, listAuditRecords } from "../../src/plugin/commands.js";
import type { AuditCheckpoint, AuditRecord } from "../../src/resources/audit-record.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import { countersignIdentity } from "../support/countersign.js";

const G = { group: "countersign.io", version: "v1alpha1" };
const installNamespace = uniqueName("cs-scale");
let cp: ControlPlane;
let self: KubeConfig;
let writer: AuditWriter;
let kubeconfigPath: string;

const silent = winston.createLogger({ silent: true });

function action(kind: string, resource: string, name: string) {
  return {
    operation: "DELETE",
    group: "",
    version: "v1",
    resource,
    subResource: "",
    namespace: "x",
    name,
    kind,
    summary: `delete ${kind} ${name}`,
  };
}

beforeAll(async () => {
  cp = await attachControlPlane();
  self = await countersignIdentity(cp, installNamespace);
  writer = new AuditWriter(self, silent);
  kubeconfigPath = (await cp.serviceAccountIdentity(installNamespace, "countersign")).kubeconfigPath;
});

describe("AuditRecords at scale", () => {
  const ns = uniqueName("evidence");
  const OTHERS = 400;
  const secret = "db-creds";

  beforeAll(async () => {
    await cp.ensureNamespace(ns);
    // 400 records of other targets (as the writer labels them), 2 of them written before
    // target labels existed for our secret, then 3 appended by the writer for it and one
    // for a ConfigMap of the same name.
    const others = [...generateRecords({ namespace: ns, count: OTHERS, targets: 100, prefix: "other" })];
    const legacy = others.slice(0, 2).map((r, i) => ({
      ...r,
      metadata: {
        name: `legacy-${i}.requested`,
        namespace: ns,
        labels: { "countersign.io/event": "Requested" },
      },
      spec: {
        ...r.spec,
        approvalRequest: { name: `legacy-${i}` },
        action: action("Secret", "secrets", secret),
      },
    }));
    await createRecords(self, [...legacy, ...others.slice(2)], { concurrency: 16 });
    for (const event of ["Requested", "Approved", "Consumed"] as const) {
      await writer.append({
        namespace: ns,
        name: `rotate-db-creds.${event.toLowerCase()}`,
        content: {
          event,
          time: "2026-02-01T10:00:00Z",
          approvalRequest: { name: "rotate-db-creds" },
          action: action("Secret", "secrets", secret),
        },
      });
    }
    await writer.append({
      namespace: ns,
      name: "cm-db-creds.requested",
      content: {
        event: "Requested",
        time: "2026-02-01T10:00:00Z",
        approvalRequest: { name: "cm-db-creds" },
        action: action("ConfigMap", "configmaps", secret),
      },
    });
  });

  it("the writer labels each record with its target (kind, resource, group, name)", async () => {
    const r = (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      ...G,
      namespace: ns,
      plural: "auditrecords",
      name: "rotate-db-creds.approved",
    })) as AuditRecord;
    expect(r.metadata.labels).toMatchObject({
      [LABEL_TARGET_NAME]: secret,
      [LABEL_TARGET_KIND]: "secret",
      "countersign.io/target-resource": "secrets",
      "countersign.io/target-group": "",
    });
  });

  it("audit --for finds the target's records among 400 others: the server sends only records of that name, plus the unlabelled ones", async () => {
    const stats = newListStats();
    const out = await auditFor(self, `secret/${secret}`, ns, { stats });
    // 3 labelled records of the secret, the ConfigMap of the same name (compared away on the
    // client), and the 2 unlabelled records (found by the fallback LIST): 6 sent, 400+ not.
    expect(stats.items).toBe(6);
    expect(stats.pages).toBe(2);
    expect((await listAuditRecords(self, ns)).length).toBe(OTHERS + 4);
    const lines = out.split("\n").filter((l) => /^\s{2}\S/.test(l) && /\[/.test(l));
    expect(lines).toHaveLength(5);
    expect(out).toContain(`${ns}/rotate-db-creds]`);
    expect(out).not.toMatch(/cm-db-creds/);
    expect(out).toContain(`${ns}/legacy-0]`);
    expect(out).toContain(`${ns}/legacy-1]`);
    // The same through the CLI, with a kind spelled as the resource.
    const cli = await runCli(
      ["audit", "--for", `secrets/${secret}`, "-n", ns, "--kubeconfig", kubeconfigPath],
      "kubectl-approvals",
    );
    expect(cli.code, cli.err).toBe(0);
    expect(cli.out.split("\n").filter((l) => /\[/.test(l))).toHaveLength(5);
    // The ConfigMap of the same name is its own trail.
    expect(await auditFor(self, `configmap/${secret}`, ns)).toMatch(/cm-db-creds/);
  });

  it("a generated target among the 400 is found with one selected page and its records only", async () => {
    const all = await listAuditRecords(self, ns);
    const t = all.find((r) => r.metadata.name.startsWith("other-10-"))!.spec.action as {
      kind: string;
      name: string;
    };
    const expected = all.filter((r) => (r.spec.action as { name?: string } | undefined)?.name === t.name);
    expect(expected.length).toBeGreaterThan(0);
    const stats = newListStats();
    const out = await auditFor(self, `${t.kind}/${t.name}`, ns, { stats });
    expect(stats.items).toBe(expected.length + 2); // + the 2 unlabelled records, compared away
    expect(out.split("\n").filter((l) => /\[/.test(l))).toHaveLength(expected.length);
  });

  it("a name longer than a label value is selected by its hash and compared in full", async () => {
    const long = `cfg-${"a".repeat(200)}`;
    const sibling = `${long.slice(0, -1)}b`;
    for (const name of [long, sibling]) {
      await writer.append({
        namespace: ns,
        name: `long-${name.slice(-1)}.requested`,
        content: {
          event: "Requested",
          time: "2026-02-01T11:00:00Z",
          approvalRequest: { name: `long-${name.slice(-1)}` },
          action: action("ConfigMap", "configmaps", name),
        },
      });
    }
    const r = (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      ...G,
      namespace: ns,
      plural: "auditrecords",
      name: "long-a.requested",
    })) as AuditRecord;
    expect(r.metadata.labels?.[LABEL_TARGET_NAME]).toBe(targetLabelValue(long));
    expect(targetLabelValue(long)).toMatch(/^sha256\./);
    const stats = newListStats();
    const out = await auditFor(self, `configmap/${long}`, ns, { stats });
    expect(out).toMatch(/\/long-a\]/);
    expect(out).not.toMatch(/\/long-b\]/);
    expect(stats.items).toBe(1 + 2);
  });

  it("verify reads the chain a page at a time (continue tokens) and finds it intact", async () => {
    const chainNs = uniqueName("paged");
    await cp.ensureNamespace(chainNs);
    await createRecords(self, generateRecords({ namespace: chainNs, count: 60, prefix: "p" }));
    const stats = newListStats();
    const { ok, report } = await auditVerify(self, chainNs, undefined, { pageSize: 7, stats });
    expect(report).toMatch(/OK, 60 records, chain intact, checkpoint head 59/);
    expect(ok).toBe(true);
    // 60 records in pages of 7, then the checkpoint and the (empty) requests.
    expect(stats.pages).toBe(Math.ceil(60 / 7) + 1 + 1);
  });

  it("the first write in a fresh namespace finds the chain empty with one LIST of at most one record", async () => {
    const fresh = uniqueName("fresh");
    await cp.ensureNamespace(fresh);
    const stats = newListStats();
    expect(await findUnanchoredHead(self.makeApiClient(CustomObjectsApi), fresh, stats)).toBeUndefined();
    expect(stats).toEqual({ pages: 1, items: 0 });
  });

  it("the first write in a namespace holding unanchored records continues the chain from the newest one", async () => {
    const old = uniqueName("unanchored");
    await cp.ensureNamespace(old);
    // Records written before checkpoints existed: no checkpoint, legacy labels.
    await createRecords(self, generateRecords({ namespace: old, count: 30, legacy: true, prefix: "u" }), {
      checkpoint: false,
    });
    const newest = (await listAuditRecords(self, old)).sort((a, b) => b.spec.sequence - a.spec.sequence)[0]!;
    const { record } = await writer.append({
      namespace: old,
      name: "after.requested",
      content: { event: "Requested", time: "2026-02-01T12:00:00Z", approvalRequest: { name: "after" } },
    });
    expect(record.spec.sequence).toBe(30);
    expect(record.spec.previousHash).toBe(newest.spec.hash);
    const checkpoint = (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      ...G,
      namespace: old,
      plural: "auditcheckpoints",
      name: "audit-chain",
    })) as AuditCheckpoint;
    expect(checkpoint.spec.anchoredAt?.sequence).toBe(29);
    expect(checkpoint.spec.head).toMatchObject({ sequence: 30, record: "after.requested" });
    const { ok, report } = await auditVerify(self, old);
    expect(report).toMatch(/OK, 31 records, chain intact/);
    expect(ok).toBe(true);
  });
});
