/**
 * The AuditRecord hash chain, pure. Records in one namespace are ordered by `sequence`;
 * each carries the hash of the one before (`previousHash`) and its own `hash` over its
 * canonical content, so an edited, removed, reordered or inserted record breaks the chain.
 */
import { createHash } from "node:crypto";
import type { AuditEvent, AuditRecord, AuditRecordSpec } from "../resources/audit-record.js";
import { canonicalJson } from "../resources/canonical-json.js";
import { LABEL_TARGET_NAME, targetLabels } from "./target-labels.js";

export const GENESIS_HASH = "0".repeat(64);
export function hashRecord(spec: Omit<AuditRecordSpec, "hash">): string {
  const { hash: _ignored, ...content } = spec as AuditRecordSpec;
  return createHash("sha256").update(canonicalJson(content)).digest("hex");
}

/** Deterministic, so writing a record twice (after a crash) finds the first one. */
export function auditRecordName(approvalRequestName: string, event: AuditEvent): string {
  return `${approvalRequestName}.${event.toLowerCase()}`;
}

/** Where a deleted namespace's chain is archived: one checkpoint per namespace incarnation (uid). */
export function archiveCheckpointName(namespace: string, uid: string): string {
  return `archive.${namespace}.${uid}`;
}

/** The archived copy of a record: same spec (so it verifies), a name unique in the install namespace. */
export function archivedRecordName(namespace: string, uid: string, record: string): string {
  const name = `${namespace}.${uid.slice(0, 8)}.${record}`;
  if (name.length <= 253) return name;
  const h = createHash("sha256").update(record).digest("hex").slice(0, 16);
  return `${name.slice(0, 253 - 17)}.${h}`;
}

export interface ChainProblem {
  sequence?: number;
  record?: string;
  problem: string;
}

/** Verifies one namespace's chain. Returns the problems found (empty when intact). */
export function verifyChain(records: readonly AuditRecord[]): ChainProblem[] {
  const problems: ChainProblem[] = [];
  const sorted = [...records].sort((a, b) => a.spec.sequence - b.spec.sequence);
  let previous = GENESIS_HASH;
  let expectedSeq = sorted[0]?.spec.sequence ?? 0;
  if (sorted.length > 0 && expectedSeq !== 0) {
    problems.push({
      sequence: 0,
      problem: `the chain starts at sequence ${expectedSeq}, not 0: earlier records are missing`,
    });
  }
  for (const r of sorted) {
    const where = { sequence: r.spec.sequence, record: r.metadata.name };
    if (r.spec.sequence !== expectedSeq) {
      problems.push({
        ...where,
        problem: `sequence ${r.spec.sequence} follows ${expectedSeq - 1}: a record is missing or duplicated`,
      });
    }
    if (r.spec.previousHash !== previous) {
      problems.push({
        ...where,
        problem:
          "previousHash does not match the record before it (a record was removed, inserted or edited)",
      });
    }
    const actual = hashRecord(r.spec);
    if (actual !== r.spec.hash)
      problems.push({ ...where, problem: "content does not match its hash (the record was changed)" });
    // The target labels are an index outside the hash: a relabelled record would drop out of
    // `audit --for` while its hash still held, so they are recomputed from the hashed action.
    // (A record with no target-name label at all is found by the unlabelled fallback query.)
    const labels = r.metadata.labels ?? {};
    if (labels[LABEL_TARGET_NAME] !== undefined) {
      for (const [key, value] of Object.entries(targetLabels(r.spec.action))) {
        if (labels[key] !== value)
          problems.push({
            ...where,
            problem: `label ${key} is ${JSON.stringify(labels[key] ?? null)}, not ${JSON.stringify(value)} as its action says (the record was relabelled, so audit --for could miss it)`,
          });
      }
    }
    previous = r.spec.hash;
    expectedSeq = r.spec.sequence + 1;
  }
  return problems;
}
