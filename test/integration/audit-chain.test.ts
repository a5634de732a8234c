/**
 * The anchored audit chain, attacked through the real API server and etcd: the checkpoint
 * (head sequence and hash, written with a resourceVersion precondition) catches a cut tail,
 * the requests' status catches removed records, and the exported JSON-lines log catches a
 * record rewritten and re-hashed directly in etcd. Concurrent writers never fork a chain.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import winston from "winston";
import { GENESIS_HASH, hashRecord, verifyChain } from "../../src/audit/chain.js";
import { AuditWriter, SIEM_MESSAGE } from "../../src/audit/writer.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { runCli } from "../../src/plugin/cli.js";
import { decide, listAuditRecords } from "../../src/plugin/commands.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import type { AuditCheckpoint, AuditRecord, AuditRecordSpec } from "../../src/resources/audit-record.js";
import {
  APPROVAL_REQUEST_PLURAL,
  AUDIT_CHECKPOINT_PLURAL,
  AUDIT_PLURAL,
  gvr,
} from "../../src/resources/group.js";
import { APPROVERS_GROUP, deleteGuard } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  countersignIdentity,
  eventually,
  grantServiceAccount,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import { applyPolicies, untilRequestCreated } from "../support/scenario.js";

const agentsNs = uniqueName("agents");
const installNamespace = uniqueName("cs-chain");
let cp: ControlPlane;
let cs: TestCountersign;
let self: KubeConfig;
let agent: KubeConfig;
let alice: KubeConfig;
let auditorKubeconfig: string;
const dir = mkdtempSync(join(tmpdir(), "countersign-chain-"));

/** A writer like the controller's, its SIEM lines going to `file` (the exported log). */
function writer(file: string): AuditWriter {
  const siem = winston.createLogger({
    level: "info",
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    defaultMeta: { app: "countersign", component: "audit" },
    transports: [new winston.transports.File({ filename: file })],
  });
  return new AuditWriter(self, siem);
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const etcdKey = (plural: string, ns: string, name: string) =>
  `/registry/countersign.io/${plural}/${ns}/${name}`;

async function etcdGet<T>(key: string): Promise<T> {
  const res = (await (
    await fetch(`${cp.etcdUrl}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: b64(key) }) })
  ).json()) as { kvs?: { value: string }[] };
  return JSON.parse(Buffer.from(res.kvs![0]!.value, "base64").toString("utf8")) as T;
}

async function etcdPut(key: string, value: unknown): Promise<void> {
  await fetch(`${cp.etcdUrl}/v3/kv/put`, {
    method: "POST",
    body: JSON.stringify({ key: b64(key), value: b64(JSON.stringify(value)) }),
  });
}

async function etcdDelete(key: string, prefix = false): Promise<void> {
  // range_end = key + 1 on the last byte: every key with this prefix
  const end = prefix
    ? `${key.slice(0, -1)}${String.fromCharCode(key.charCodeAt(key.length - 1) + 1)}`
    : undefined;
  await fetch(`${cp.etcdUrl}/v3/kv/deleterange`, {
    method: "POST",
    body: JSON.stringify({ key: b64(key), ...(end ? { range_end: b64(end) } : {}) }),
  });
}

async function verify(ns: string, against?: string): Promise<{ code: number; out: string; err: string }> {
  return runCli(
    [
      "audit",
      "verify",
      "-n",
      ns,
      "--kubeconfig",
      auditorKubeconfig,
      ...(against ? ["--against", against] : []),
    ],
    "kubectl-approvals",
  );
}

async function checkpoint(ns: string): Promise<AuditCheckpoint> {
  return (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    ...gvr(AUDIT_CHECKPOINT_PLURAL),
    namespace: ns,
    name: "audit-chain",
  })) as AuditCheckpoint;
}

/** Appends n records for made-up requests in ns. */
async function appendRecords(w: AuditWriter, ns: string, n: number, prefix: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    await w.append({
      namespace: ns,
      name: `${prefix}-${i}.requested`,
      content: {
        event: "Requested",
        time: "2026-01-01T00:00:00Z",
        approvalRequest: { name: `${prefix}-${i}` },
        reason: `record ${i} of ${prefix}`,
      },
    });
  }
}

async function requestDelete(ns: string, secret: string): Promise<string> {
  await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedSecret({ namespace: ns, body: { metadata: { name: secret }, stringData: { k: "v" } } });
  return untilRequestCreated(() =>
    agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: secret, namespace: ns }),
  );
}

beforeAll(async () => {
  cp = await attachControlPlane();
  self = await countersignIdentity(cp, installNamespace);
  agent = (await cp.serviceAccountIdentity(agentsNs, "bot")).kubeConfig;
  alice = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);
  auditorKubeconfig = (await cp.userIdentity("alice@example.com", [APPROVERS_GROUP])).kubeconfigPath;
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace,
    webhookName: uniqueName("countersign-chain"),
  });
});

afterAll(async () => {
  await cs?.stop();
});

describe("the anchored audit chain", () => {
  it("two writers in different processes appending concurrently build one linear chain, no fork, no duplicate", async () => {
    const ns = uniqueName("race");
    await cp.ensureNamespace(ns);
    const a = writer(join(dir, "race-a.log"));
    const b = writer(join(dir, "race-b.log"));
    await Promise.all([
      appendRecords(a, ns, 15, "a"),
      appendRecords(b, ns, 15, "b"),
      // both also write the same ten records: each lands once
      appendRecords(a, ns, 10, "shared"),
      appendRecords(b, ns, 10, "shared"),
    ]);
    const records = await listAuditRecords(self, ns);
    expect(records).toHaveLength(40);
    expect(records.map((r) => r.spec.sequence).sort((x, y) => x - y)).toEqual([...Array(40).keys()]);
    expect(verifyChain(records)).toEqual([]);
    const head = (await checkpoint(ns)).spec;
    expect(head.head.sequence).toBe(39);
    expect(head.pending).toBeUndefined();
    const out = await verify(ns);
    expect(out.code, out.out).toBe(0);
    expect(out.out).toMatch(/OK, 40 records, chain intact, checkpoint head 39/);
  });

  it("an append interrupted between its steps is completed by the next writer, and never reads as tampering", async () => {
    const ns = uniqueName("crash");
    await cp.ensureNamespace(ns);
    const w = writer(join(dir, "crash.log"));
    await appendRecords(w, ns, 3, "before");
    // A writer claimed sequence 3 and created its record, then crashed before advancing the head.
    const cpt = await checkpoint(ns);
    const content: Omit<AuditRecordSpec, "hash"> = {
      sequence: 3,
      event: "Requested",
      time: "2026-01-01T00:00:00Z",
      approvalRequest: { name: "crashed" },
      previousHash: cpt.spec.head.hash,
    };
    const spec = { ...content, hash: hashRecord(content) };
    const custom = self.makeApiClient(CustomObjectsApi);
    await custom.replaceNamespacedCustomObject({
      ...gvr(AUDIT_CHECKPOINT_PLURAL),
      namespace: ns,
      name: "audit-chain",
      body: {
        ...cpt,
        spec: { ...cpt.spec, pending: { record: "crashed.requested", hash: spec.hash, spec } },
      },
    });
    await custom.createNamespacedCustomObject({
      ...gvr(AUDIT_PLURAL),
      namespace: ns,
      body: {
        apiVersion: "countersign.io/v1alpha1",
        kind: "AuditRecord",
        metadata: { name: "crashed.requested" },
        spec,
      },
    });
    const mid = await verify(ns);
    expect(mid.code, mid.out).toBe(0);
    expect(mid.out).toMatch(/interrupted after the record was written/);
    await appendRecords(w, ns, 1, "after");
    const records = await listAuditRecords(self, ns);
    expect(records.find((r) => r.metadata.name === "after-0.requested")?.spec.sequence).toBe(4);
    expect((await checkpoint(ns)).spec.head).toMatchObject({ sequence: 4, record: "after-0.requested" });
    expect((await verify(ns)).code).toBe(0);
  });

  it("the checkpoint and records are Countersign's: nobody else (not even system:masters) edits or deletes them", async () => {
    const ns = uniqueName("guarded");
    await cp.ensureNamespace(ns);
    await appendRecords(writer(join(dir, "guarded.log")), ns, 1, "g");
    const admin = cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    const cpt = await checkpoint(ns);
    const refused = async (p: Promise<unknown>) =>
      p.then(
        () => "allowed",
        (err: unknown) => kubeStatusOf(err)?.message ?? String(err),
      );
    expect(
      await refused(
        admin.deleteNamespacedCustomObject({
          ...gvr(AUDIT_CHECKPOINT_PLURAL),
          namespace: ns,
          name: "audit-chain",
        }),
      ),
    ).toMatch(/AuditCheckpoints anchor the audit trail and are written only by Countersign/);
    expect(
      await refused(
        admin.replaceNamespacedCustomObject({
          ...gvr(AUDIT_CHECKPOINT_PLURAL),
          namespace: ns,
          name: "audit-chain",
          body: { ...cpt, spec: { ...cpt.spec, head: { sequence: -1, hash: GENESIS_HASH } } },
        }),
      ),
    ).toMatch(/written only by Countersign|never moves back/);
    // Even Countersign's own identity cannot move a head back (CRD rule).
    expect(
      await refused(
        self.makeApiClient(CustomObjectsApi).replaceNamespacedCustomObject({
          ...gvr(AUDIT_CHECKPOINT_PLURAL),
          namespace: ns,
          name: "audit-chain",
          body: { ...cpt, spec: { ...cpt.spec, head: { sequence: -1, hash: GENESIS_HASH } } },
        }),
      ),
    ).toMatch(/the chain head never moves back/);
  });

  describe("through the controller, attacked in etcd", () => {
    const ns = uniqueName("prod");
    const names: string[] = [];
    let exported: string;

    beforeAll(async () => {
      await cp.ensureNamespace(ns);
      await grantServiceAccount(cp, ns, { namespace: agentsNs, name: "bot" }, ["secrets"], ["get", "delete"]);
      await applyPolicies(cp, cs, [
        deleteGuard(uniqueName("chain-policy"), { agents: agentsNs, namespace: ns }),
      ]);
      for (const secret of ["s1", "s2", "s3"]) {
        const name = await requestDelete(ns, secret);
        await decide(alice, ns, name, "Approve", `rotate ${secret}`);
        names.push(name);
      }
      // The controller's SIEM lines, as a log shipper would have exported them: re-built here
      // from the records while they are intact (the in-process controller logs to stderr).
      await eventually(
        async () => {
          const ars = await Promise.all(
            names.map(
              async (n) =>
                (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
                  ...gvr(APPROVAL_REQUEST_PLURAL),
                  namespace: ns,
                  name: n,
                })) as ApprovalRequest,
            ),
          );
          return ars.every((ar) => ar.status?.phase === "Approved" && ar.status.auditRecords?.length === 2);
        },
        15_000,
        "requests Approved, each listing its two records",
      );
      const chainId = (await checkpoint(ns)).spec.chain;
      const records = (await listAuditRecords(self, ns)).sort((a, b) => a.spec.sequence - b.spec.sequence);
      exported = join(dir, "exported.jsonl");
      writeFileSync(
        exported,
        `${records
          .map((r) =>
            JSON.stringify({
              level: "info",
              message: SIEM_MESSAGE,
              auditRecord: `${ns}/${r.metadata.name}`,
              namespace: ns,
              chain: chainId,
              sequence: r.spec.sequence,
              event: r.spec.event,
              spec: r.spec,
            }),
          )
          .join("\n")}\n`,
      );
    });

    it("each request's status names where its records sit; verify is OK against the checkpoint and the exported log", async () => {
      const ar = (await self.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
        ...gvr(APPROVAL_REQUEST_PLURAL),
        namespace: ns,
        name: names[0]!,
      })) as ApprovalRequest;
      expect(ar.status?.auditRecords?.map((r) => r.event)).toEqual(["Requested", "Approved"]);
      const out = await verify(ns, exported);
      expect(out.code, out.out).toBe(0);
      expect(out.out).toMatch(/OK, 6 records, chain intact, checkpoint head 5, exported log 6 lines/);
    });

    it("the newest record removed directly in etcd: verify exits 1 naming it", async () => {
      const head = (await checkpoint(ns)).spec.head;
      await etcdDelete(etcdKey("auditrecords", ns, head.record!));
      const out = await eventually(
        async () => {
          const r = await verify(ns);
          return r.code === 1 ? r : undefined;
        },
        10_000,
        "cut tail detected",
      );
      expect(out.out).toMatch(/TAMPERED/);
      expect(out.out).toContain(
        `sequence ${head.sequence} (${head.record}): is missing: the chain's tail was cut`,
      );
    });

    it("every record removed in etcd: verify exits 1 naming each, from the checkpoint and the requests", async () => {
      const all = await listAuditRecords(self, ns);
      await etcdDelete(etcdKey("auditrecords", ns, ""), true);
      const out = await eventually(
        async () => {
          const r = await verify(ns);
          return r.code === 1 && !/records, chain intact/.test(r.out) && /0 records/.test(r.out)
            ? r
            : undefined;
        },
        10_000,
        "all records gone, detected",
      );
      for (const r of all)
        expect(out.out).toContain(`sequence ${r.spec.sequence} (${r.metadata.name}): is missing`);
      // Checkpoint removed too: the requests and the exported log still tell.
      await etcdDelete(etcdKey("auditcheckpoints", ns, "audit-chain"));
      const withLog = await eventually(
        async () => {
          const r = await verify(ns, exported);
          return r.code === 1 && !/checkpoint head/.test(r.out) ? r : undefined;
        },
        10_000,
        "checkpoint gone, detected",
      );
      const withoutLog = await verify(ns);
      expect(withoutLog.code).toBe(1);
      for (const r of all) {
        expect(withLog.out).toContain(`sequence ${r.spec.sequence} (${r.metadata.name}): is missing`);
        expect(withoutLog.out).toContain(`sequence ${r.spec.sequence} (${r.metadata.name}): is missing`);
      }
    });
  });

  it("a record rewritten in etcd with the chain re-hashed and the checkpoint moved: detected against the exported log", async () => {
    const ns = uniqueName("rehash");
    await cp.ensureNamespace(ns);
    const logFile = join(dir, "rehash.log");
    await appendRecords(writer(logFile), ns, 6, "r");
    await eventually(
      async () => readFileSync(logFile, "utf8").trim().split("\n").length === 6,
      5000,
      "log lines",
    );
    const records = (await listAuditRecords(self, ns)).sort((a, b) => a.spec.sequence - b.spec.sequence);
    // The attacker edits record 2, re-hashes 2..5 and moves the checkpoint's head to match.
    let previous = records[1]!.spec.hash;
    for (const r of records.slice(2)) {
      const key = etcdKey("auditrecords", ns, r.metadata.name);
      const stored = await etcdGet<AuditRecord>(key);
      const { hash: _h, ...content } = stored.spec;
      if (r.spec.sequence === 2) content.reason = "approved by the CEO (forged)";
      content.previousHash = previous;
      stored.spec = { ...content, hash: hashRecord(content) };
      previous = stored.spec.hash;
      await etcdPut(key, stored);
    }
    const cpKey = etcdKey("auditcheckpoints", ns, "audit-chain");
    const storedCp = await etcdGet<AuditCheckpoint>(cpKey);
    storedCp.spec.head.hash = previous;
    await etcdPut(cpKey, storedCp);
    // Consistent in the cluster: only the exported log can tell.
    await eventually(
      async () => (await checkpoint(ns)).spec.head.hash === previous && (await verify(ns)).code === 0,
      10_000,
      "re-hashed chain verifies on its own",
    );
    const out = await verify(ns, logFile);
    expect(out.code).toBe(1);
    expect(out.out).toContain(
      `sequence 2 (r-2.requested): differs from the exported log (line 3): hash, reason changed`,
    );
    for (const seq of [3, 4, 5])
      expect(out.out).toContain(`sequence ${seq} (r-${seq}.requested): differs from the exported log`);
  });
});
