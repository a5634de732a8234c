import { describe, expect, it } from "vitest";
import { guardWrite } from "../../src/approvals/decision-guard.js";
import { archivedRecordName, GENESIS_HASH, hashRecord, verifyChain } from "../../src/audit/chain.js";
import { LABEL_TARGET_NAME, targetLabels } from "../../src/audit/target-labels.js";
import { exportedFor, parseExportedLog, verifyAnchoredChain } from "../../src/audit/verify.js";
import { chainsOf } from "../../src/plugin/commands.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import type { AuditCheckpoint, AuditRecord, AuditRecordSpec } from "../../src/resources/audit-record.js";

const NS = "prod";
const events = ["Requested", "Approved", "Consumed", "Executed"] as const;

/** A chain of n records: request r<i/4>, events in order, properly linked and hashed. */
function chain(n: number): AuditRecord[] {
  const out: AuditRecord[] = [];
  let prev = GENESIS_HASH;
  for (let i = 0; i < n; i++) {
    const event = events[i % 4]!;
    const request = `delete-secrets-s${Math.floor(i / 4)}`;
    const content: Omit<AuditRecordSpec, "hash"> = {
      sequence: i,
      event,
      time: `2026-01-01T00:00:${String(i).padStart(2, "0")}Z`,
      approvalRequest: { name: request },
      reason: `step ${i}`,
      previousHash: prev,
    };
    const spec = { ...content, hash: hashRecord(content) };
    out.push({
      apiVersion: "countersign.io/v1alpha1",
      kind: "AuditRecord",
      metadata: { name: `${request}.${event.toLowerCase()}`, namespace: NS },
      spec,
    });
    prev = spec.hash;
  }
  return out;
}

function checkpointOf(records: AuditRecord[], extra: Partial<AuditCheckpoint["spec"]> = {}): AuditCheckpoint {
  const last = records[records.length - 1];
  return {
    apiVersion: "countersign.io/v1alpha1",
    kind: "AuditCheckpoint",
    metadata: { name: "audit-chain", namespace: NS },
    spec: {
      chain: "c-1",
      head: last
        ? { sequence: last.spec.sequence, hash: last.spec.hash, record: last.metadata.name }
        : { sequence: -1, hash: GENESIS_HASH },
      ...extra,
    },
  };
}

function exportOf(records: AuditRecord[], chainId = "c-1"): string {
  return [
    "not json at all",
    JSON.stringify({ level: "info", message: "something else" }),
    ...records.map((r) =>
      JSON.stringify({
        level: "info",
        message: "audit record",
        auditRecord: `${NS}/${r.metadata.name}`,
        namespace: NS,
        chain: chainId,
        sequence: r.spec.sequence,
        event: r.spec.event,
        spec: r.spec,
      }),
    ),
  ].join("\n");
}

/** Re-links and re-hashes records from index i on (what an attacker with etcd access can do). */
function rehash(records: AuditRecord[], from: number): void {
  let prev = from === 0 ? GENESIS_HASH : records[from - 1]!.spec.hash;
  for (let i = from; i < records.length; i++) {
    const { hash: _h, ...content } = records[i]!.spec;
    content.previousHash = prev;
    content.sequence = i;
    records[i]!.spec = { ...content, hash: hashRecord(content) };
    prev = records[i]!.spec.hash;
  }
}

const problems = (r: { findings: { sequence?: number; record?: string; problem: string }[] }) =>
  r.findings.map((f) => `${f.sequence ?? "-"} ${f.record ?? "-"}: ${f.problem}`);

describe("anchored chain verification", () => {
  it("an intact chain with its checkpoint and matching exported log has no findings", () => {
    const records = chain(8);
    const log = parseExportedLog(exportOf(records));
    expect(log.skipped).toBe(2);
    const report = verifyAnchoredChain({
      label: NS,
      origin: NS,
      records,
      checkpoint: checkpointOf(records),
      exported: exportedFor(log.records, NS, "c-1"),
    });
    expect(report.findings).toEqual([]);
    expect(report.head?.sequence).toBe(7);
  });

  it("a removed last record is reported, named from the checkpoint", () => {
    const records = chain(6);
    const cp = checkpointOf(records);
    const report = verifyAnchoredChain({
      label: NS,
      origin: NS,
      records: records.slice(0, 5),
      checkpoint: cp,
    });
    expect(problems(report)).toEqual([
      "5 delete-secrets-s1.approved: is missing: the chain's tail was cut (the checkpoint's head is 5)",
    ]);
  });

  it("all records removed: every sequence is reported, named by the requests' status", () => {
    const records = chain(4);
    const ar = {
      metadata: { name: "delete-secrets-s0", namespace: NS },
      status: {
        auditRecords: records.map((r) => ({
          event: r.spec.event,
          sequence: r.spec.sequence,
          record: r.metadata.name,
        })),
      },
    } as unknown as ApprovalRequest;
    const report = verifyAnchoredChain({
      label: NS,
      origin: NS,
      records: [],
      checkpoint: checkpointOf(records),
      requests: [ar],
    });
    expect(report.findings.map((f) => f.record)).toEqual(records.map((r) => r.metadata.name));
    expect(report.findings.every((f) => /is missing/.test(f.problem))).toBe(true);
    // the checkpoint gone too: the requests alone still name every record
    const alone = verifyAnchoredChain({ label: NS, origin: NS, records: [], requests: [ar] });
    expect(alone.findings.map((f) => f.record)).toEqual(records.map((r) => r.metadata.name));
  });

  it("records without a checkpoint, and records beyond the checkpoint's head, are findings", () => {
    const records = chain(3);
    expect(problems(verifyAnchoredChain({ label: NS, origin: NS, records }))).toEqual([
      expect.stringMatching(/no AuditCheckpoint anchors this chain/),
    ]);
    const report = verifyAnchoredChain({
      label: NS,
      origin: NS,
      records,
      checkpoint: checkpointOf(records.slice(0, 2)),
    });
    expect(problems(report)).toEqual([
      "2 delete-secrets-s0.consumed: is beyond the checkpoint's head (sequence 1): it was not appended by Countersign",
    ]);
  });

  it("a record rewritten and the rest re-hashed passes the chain and the checkpoint, but not the exported log", () => {
    const original = chain(8);
    const exported = parseExportedLog(exportOf(original)).records;
    const forged = structuredClone(original);
    forged[2]!.spec.reason = "approved by the CEO";
    rehash(forged, 2);
    const cp = checkpointOf(forged); // the attacker rewrote the checkpoint too
    expect(verifyAnchoredChain({ label: NS, origin: NS, records: forged, checkpoint: cp }).findings).toEqual(
      [],
    );
    const report = verifyAnchoredChain({
      label: NS,
      origin: NS,
      records: forged,
      checkpoint: cp,
      exported: exportedFor(exported, NS, "c-1"),
    });
    expect(problems(report)[0]).toBe(
      "2 delete-secrets-s0.consumed: differs from the exported log (line 5): hash, reason changed",
    );
    expect(report.findings.map((f) => f.sequence)).toEqual([2, 3, 4, 5, 6, 7]);
  });

  it("the head record re-hashed in place no longer matches the checkpoint", () => {
    const records = chain(4);
    const cp = checkpointOf(records);
    records[3]!.spec.reason = "nothing happened";
    rehash(records, 3);
    expect(problems(verifyAnchoredChain({ label: NS, origin: NS, records, checkpoint: cp }))).toEqual([
      "3 delete-secrets-s0.executed: does not match the checkpoint's head hash: the record was changed or replaced (and the chain re-hashed)",
    ]);
  });

  it("an append interrupted after its record was written is a note, not tampering", () => {
    const records = chain(5);
    const last = records[4]!;
    const cp = checkpointOf(records.slice(0, 4), {
      pending: { record: last.metadata.name, hash: last.spec.hash, spec: last.spec },
    });
    const report = verifyAnchoredChain({ label: NS, origin: NS, records, checkpoint: cp });
    expect(report.findings).toEqual([]);
    expect(report.notes.join()).toMatch(/interrupted after the record was written/);
  });

  it("a request whose listed record is a different one is reported", () => {
    const records = chain(2);
    const ar = {
      metadata: { name: "delete-secrets-s0", namespace: NS },
      status: { auditRecords: [{ event: "Approved", sequence: 0, record: "delete-secrets-s0.approved" }] },
    } as unknown as ApprovalRequest;
    const report = verifyAnchoredChain({
      label: NS,
      origin: NS,
      records,
      checkpoint: checkpointOf(records),
      requests: [ar],
    });
    expect(problems(report)[0]).toMatch(
      /^0 delete-secrets-s0.requested: ApprovalRequest delete-secrets-s0 lists its Approved record/,
    );
  });

  it("groups live chains and archives (by the archive uid label)", () => {
    const live = chain(2);
    const archived = chain(3).map((r) => ({
      ...r,
      metadata: {
        name: archivedRecordName("gone", "uid-1", r.metadata.name),
        namespace: "countersign-system",
        labels: { "countersign.io/archived-from": "gone", "countersign.io/archive-uid": "uid-1" },
      },
    }));
    const archiveCp: AuditCheckpoint = {
      ...checkpointOf(chain(3)),
      metadata: { name: "archive.gone.uid-1", namespace: "countersign-system" },
    };
    archiveCp.spec.archive = {
      namespace: "gone",
      uid: "uid-1",
      archivedAt: "2026-01-01T00:00:00Z",
      records: 3,
    };
    const chains = chainsOf([...live, ...archived], [checkpointOf(live), archiveCp], []);
    expect(chains.map((c) => [c.label, c.origin, c.records.length])).toEqual([
      ["archive of gone (deleted; uid uid-1) in countersign-system", "gone", 3],
      [NS, NS, 2],
    ]);
    for (const c of chains) expect(verifyAnchoredChain(c).findings).toEqual([]);
    // the archive against the log lines written under the records' original names
    const archive = chains[0]!;
    archive.exported = exportedFor(parseExportedLog(exportOf(chain(3))).records, "gone", "c-1");
    expect(archive.exported).toHaveLength(3);
    expect(verifyAnchoredChain(archive).findings).toEqual([]);
  });
});

describe("the guard and namespace deletion", () => {
  const del = (username: string, resource: string): AdmissionRequest =>
    ({
      uid: "u",
      kind: { group: "countersign.io", version: "v1alpha1", kind: "X" },
      resource: { group: "countersign.io", version: "v1alpha1", resource },
      operation: "DELETE",
      namespace: NS,
      name: "x",
      userInfo: { username },
    }) as AdmissionRequest;

  it("sends the namespace controller's deletes to the archive check, and refuses everyone else", () => {
    const none = new Set<string>();
    for (const resource of ["auditrecords", "auditcheckpoints", "approvalrequests"]) {
      expect(
        guardWrite(del("system:serviceaccount:kube-system:namespace-controller", resource), none, new Date()),
      ).toEqual({ allowed: "needs-archive", namespace: NS });
      expect(guardWrite(del("system:serviceaccount:ai:bot", resource), none, new Date()).allowed).toBe(false);
    }
    expect(
      guardWrite(del("system:serviceaccount:ai:bot", "auditcheckpoints"), none, new Date()),
    ).toMatchObject({
      message: expect.stringMatching(/AuditCheckpoints anchor the audit trail/),
    });
  });

  it("refuses a finalizer or owner reference on an ApprovalRequest from anyone but Countersign", () => {
    const ar = { metadata: { name: "x", namespace: NS }, spec: { fingerprint: "f" } };
    for (const extra of [{ finalizers: ["example.com/hold"] }, { ownerReferences: [{ uid: "u" }] }]) {
      const req = {
        ...del("alice@example.com", "approvalrequests"),
        operation: "UPDATE",
        oldObject: ar,
        object: { ...ar, metadata: { ...ar.metadata, ...extra } },
      } as AdmissionRequest;
      expect(guardWrite(req, new Set<string>(), new Date())).toMatchObject({
        allowed: false,
        message: expect.stringMatching(/only Countersign sets an ApprovalRequest's finalizers/),
      });
    }
  });
});

describe("target labels are checked against the hashed action (red-team 11 F3)", () => {
  const labelled = (): AuditRecord[] =>
    chain(2).map((r) => {
      const action = {
        operation: "DELETE",
        group: "",
        version: "v1",
        resource: "secrets",
        kind: "Secret",
        name: "db",
        namespace: NS,
      };
      const content = { ...r.spec, action } as Omit<AuditRecordSpec, "hash">;
      delete (content as { hash?: string }).hash;
      return {
        ...r,
        metadata: { ...r.metadata, labels: targetLabels(action) },
        spec: { ...content, hash: hashRecord(content) },
      };
    });
  const relink = (records: AuditRecord[]): AuditRecord[] => {
    let prev = GENESIS_HASH;
    return records.map((r) => {
      const content = { ...r.spec, previousHash: prev } as Omit<AuditRecordSpec, "hash">;
      delete (content as { hash?: string }).hash;
      const spec = { ...content, hash: hashRecord(content) } as AuditRecordSpec;
      prev = spec.hash;
      return { ...r, spec };
    });
  };

  it("passes records whose labels match their action", () => {
    expect(verifyChain(relink(labelled()))).toEqual([]);
  });

  it("names a record relabelled to drop out of audit --for Secret/db", () => {
    const records = relink(labelled());
    records[1]!.metadata.labels = { ...records[1]!.metadata.labels, [LABEL_TARGET_NAME]: "something-else" };
    expect(verifyChain(records)).toEqual([
      expect.objectContaining({
        sequence: 1,
        problem: expect.stringMatching(/label countersign.io\/target-name .*relabelled/),
      }),
    ]);
  });
});
