/**
 * Verifies one audit chain against everything that anchors it, pure: the records' own
 * linkage and hashes, the checkpoint's head (a cut tail, a re-hashed chain, records the
 * checkpoint does not cover), the sequences the ApprovalRequests list for their records, and
 * the exported JSON-lines log (the SIEM export) when given. Every finding names the sequence
 * and, when anything still knows it, the record.
 */

import type { ApprovalRequest } from "../resources/approval-request.js";
import type { AuditCheckpoint, AuditRecord, AuditRecordSpec, ChainHead } from "../resources/audit-record.js";
import { canonicalJson } from "../resources/canonical-json.js";
import { archivedRecordName, verifyChain } from "./chain.js";

/** One record line of the exported log (the writer's SIEM line). */
export interface ExportedRecord {
  namespace: string;
  chain?: string;
  record: string;
  spec: AuditRecordSpec;
  /** 1-based line number in the file. */
  line: number;
}

export interface ChainUnderTest {
  /** How the report names the chain: "prod", or "archive of prod (uid …) in countersign-system". */
  label: string;
  /** The namespace the records were written in (for an archive: the deleted namespace). */
  origin: string;
  records: readonly AuditRecord[];
  checkpoint?: AuditCheckpoint;
  /** The chain's ApprovalRequests (their status lists where their records are). */
  requests?: readonly ApprovalRequest[];
  /** Set for an archived chain: its copies are named archivedRecordName(origin, uid, original). */
  archiveUid?: string;
  /** The exported log's lines for this chain (see exportedFor); undefined: no log given. */
  exported?: readonly ExportedRecord[];
}

export interface Finding {
  sequence?: number;
  record?: string;
  problem: string;
}

export interface ChainReport {
  findings: Finding[];
  notes: string[];
  /** The head the chain is checked against (the checkpoint's, else the newest record's). */
  head?: ChainHead;
}

const MAX_LISTED = 50;

/** Parses an exported log: JSON lines, the writer's record lines kept, everything else skipped. */
export function parseExportedLog(text: string): { records: ExportedRecord[]; skipped: number } {
  const records: ExportedRecord[] = [];
  let skipped = 0;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (!raw) continue;
    let o: unknown;
    try {
      o = JSON.parse(raw);
    } catch {
      skipped++;
      continue;
    }
    const l = o as { auditRecord?: unknown; namespace?: unknown; chain?: unknown; spec?: unknown };
    const spec = l.spec as AuditRecordSpec | undefined;
    if (
      typeof l.auditRecord !== "string" ||
      typeof l.namespace !== "string" ||
      !spec ||
      typeof spec !== "object" ||
      typeof spec.sequence !== "number" ||
      typeof spec.hash !== "string"
    ) {
      skipped++;
      continue;
    }
    records.push({
      namespace: l.namespace,
      ...(typeof l.chain === "string" ? { chain: l.chain } : {}),
      record: l.auditRecord.slice(l.auditRecord.indexOf("/") + 1),
      spec,
      line: i + 1,
    });
  }
  return { records, skipped };
}

/** The exported lines of one chain: by chain id, or by namespace for lines without one. */
export function exportedFor(
  all: readonly ExportedRecord[],
  origin: string,
  chain: string | undefined,
): ExportedRecord[] {
  return all.filter((e) => (e.chain && chain ? e.chain === chain : e.namespace === origin));
}

function changedFields(a: AuditRecordSpec, b: AuditRecordSpec): string[] {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.filter(
    (k) =>
      canonicalJson((a as unknown as Record<string, unknown>)[k]) !==
      canonicalJson((b as unknown as Record<string, unknown>)[k]),
  );
}

function ranges(xs: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    out.push(i === j ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return out.join(", ");
}

export function verifyAnchoredChain(c: ChainUnderTest): ChainReport {
  const findings: Finding[] = verifyChain(c.records).map((p) => ({ ...p }));
  const notes: string[] = [];
  const bySeq = new Map<number, AuditRecord[]>();
  for (const r of c.records) bySeq.set(r.spec.sequence, [...(bySeq.get(r.spec.sequence) ?? []), r]);
  const newest = Math.max(-1, ...c.records.map((r) => r.spec.sequence));
  /** What the checkpoint, the requests and the log say each sequence's record is called. */
  const knownName = new Map<number, string>();

  // The checkpoint: the head every record up to which must exist, and nothing beyond it.
  let head: ChainHead | undefined;
  if (!c.checkpoint) {
    if (c.records.length > 0) {
      findings.push({
        problem:
          "no AuditCheckpoint anchors this chain (deleted?): a removed tail cannot be ruled out from the cluster alone; verify with --against the exported log",
      });
    }
  } else {
    head = { ...c.checkpoint.spec.head };
    const p = c.checkpoint.spec.pending;
    if (p) {
      const r = c.records.find((x) => x.metadata.name === p.record);
      if (r && r.spec.hash === p.hash && r.spec.sequence === head.sequence + 1) {
        head = { sequence: r.spec.sequence, hash: p.hash, record: p.record, time: r.spec.time };
        notes.push(
          `the append of ${p.record} (sequence ${r.spec.sequence}) was interrupted after the record was written; the next append completes it`,
        );
      }
    }
    if (head.record && head.sequence >= 0) knownName.set(head.sequence, head.record);
    const atHead = bySeq.get(head.sequence) ?? [];
    if (head.sequence >= 0 && atHead.length > 0 && !atHead.some((r) => r.spec.hash === head!.hash)) {
      findings.push({
        sequence: head.sequence,
        record: atHead[0]!.metadata.name,
        problem: `does not match the checkpoint's head hash: the record was changed or replaced (and the chain re-hashed)`,
      });
    }
    for (const r of c.records) {
      if (r.spec.sequence > head.sequence) {
        findings.push({
          sequence: r.spec.sequence,
          record: r.metadata.name,
          problem: `is beyond the checkpoint's head (sequence ${head.sequence}): it was not appended by Countersign`,
        });
      }
    }
  }

  // The requests: each names the sequence of each of its records.
  for (const ar of c.requests ?? []) {
    for (const ref of ar.status?.auditRecords ?? []) {
      if (!knownName.has(ref.sequence)) knownName.set(ref.sequence, ref.record);
      const at = bySeq.get(ref.sequence) ?? [];
      if (at.length === 0) continue; // reported as missing below
      if (
        !at.some(
          (r) =>
            r.metadata.name === ref.record &&
            r.spec.event === ref.event &&
            r.spec.approvalRequest.name === ar.metadata.name,
        )
      ) {
        findings.push({
          sequence: ref.sequence,
          record: at[0]!.metadata.name,
          problem: `ApprovalRequest ${ar.metadata.name} lists its ${ref.event} record ${ref.record} at this sequence, but the record there is ${at[0]!.metadata.name} (${at[0]!.spec.event} of ${at[0]!.spec.approvalRequest.name})`,
        });
      }
    }
  }

  // The exported log: every line must match the record at its sequence.
  let logNewest = -1;
  if (c.exported) {
    const logBySeq = new Map<number, ExportedRecord>();
    for (const e of c.exported) {
      logBySeq.set(e.spec.sequence, e);
      logNewest = Math.max(logNewest, e.spec.sequence);
      if (!knownName.has(e.spec.sequence)) knownName.set(e.spec.sequence, e.record);
    }
    const nameOf = (logged: string) =>
      c.archiveUid ? archivedRecordName(c.origin, c.archiveUid, logged) : logged;
    for (const [seq, e] of [...logBySeq.entries()].sort((a, b) => a[0] - b[0])) {
      const at = bySeq.get(seq) ?? [];
      if (at.length === 0) continue; // missing: below
      const expected = nameOf(e.record);
      const same = at.find((r) => r.metadata.name === expected && r.spec.hash === e.spec.hash);
      if (same && changedFields(same.spec, e.spec).length === 0) continue;
      const r = at.find((x) => x.metadata.name === expected) ?? at[0]!;
      const fields = changedFields(r.spec, e.spec);
      findings.push({
        sequence: seq,
        record: r.metadata.name,
        problem:
          r.metadata.name !== expected
            ? `differs from the exported log (line ${e.line}): the log has ${e.record} at this sequence`
            : `differs from the exported log (line ${e.line}): ${fields.join(", ")} changed`,
      });
    }
    const unlogged = c.records
      .filter((r) => r.spec.sequence < logNewest && !logBySeq.has(r.spec.sequence))
      .map((r) => r.spec.sequence);
    if (unlogged.length > 0) {
      notes.push(
        `sequence(s) ${ranges(unlogged.sort((a, b) => a - b))} are not in the exported log (a lost log line; they are chained to records the log has)`,
      );
    }
    if (c.exported.length === 0) notes.push("the exported log has no records of this chain");
  }

  // Missing records: every sequence up to the newest anyone knows of must exist.
  const listed = (c.requests ?? []).flatMap((ar) => (ar.status?.auditRecords ?? []).map((r) => r.sequence));
  const last = Math.max(newest, head?.sequence ?? -1, logNewest, ...listed);
  const missing: number[] = [];
  for (let s = 0; s <= last; s++) if (!bySeq.has(s)) missing.push(s);
  if (missing.length > 0) {
    const where =
      head && missing.includes(head.sequence) ? ` (the checkpoint's head is ${head.sequence})` : "";
    const tail = missing[0]! > newest;
    for (const s of missing.slice(0, MAX_LISTED)) {
      const name = knownName.get(s);
      findings.push({
        sequence: s,
        ...(name ? { record: name } : {}),
        problem: `is missing${tail ? ": the chain's tail was cut" : ""}${where}`,
      });
    }
    if (missing.length > MAX_LISTED)
      findings.push({
        problem: `… and ${missing.length - MAX_LISTED} more missing sequences (${ranges(missing)})`,
      });
  }
  return { findings, notes, ...(head ? { head } : {}) };
}
