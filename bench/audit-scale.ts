/**
 * Evidence at scale: time and peak RSS of `kubectl approvals audit --for KIND/NAME` over a
 * namespace holding 5k / 20k / 50k / 100k realistic AuditRecords (bench/audit-generator.ts),
 * created through a real API server (this project's control-plane harness), before (one
 * unpaged LIST filtered on the client, as the plugin did) and after (label-selected, paged).
 * Each measurement is a fresh process running the compiled plugin (bench/audit-for-child.mjs).
 *
 * Run under the test lock (it starts a control plane and writes 100k objects):
 *   flock /tmp/cs-test.lock npm run bench:audit -- [--sizes 5000,20000,50000,100000] [--runs 2]
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../src/controlplane/binaries.js";
import { ControlPlane } from "../src/controlplane/control-plane.js";
import type { AuditRecord } from "../src/resources/audit-record.js";
import { createRecords, generateRecords } from "./audit-generator.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "5000,20000,50000,100000" },
    runs: { type: "string", default: "2" },
    concurrency: { type: "string", default: "24" },
    "skip-before-above": { type: "string", default: "200000" },
  },
});
const sizes = values.sizes.split(",").map(Number);
const runs = Number(values.runs);
const NS = "evidence";

interface Sample {
  ms: number;
  wallMs: number;
  rssMiB: number;
  lines: number;
}

function measure(mode: "before" | "after", kubeconfig: string, target: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(
      process.execPath,
      [join(REPO_ROOT, "bench", "audit-for-child.mjs"), mode, kubeconfig, NS, target],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      const wallMs = performance.now() - t0;
      if (code !== 0) return reject(new Error(`${mode} exited ${code}: ${out}`));
      resolve({ ...(JSON.parse(out.trim().split("\n").at(-1)!) as Omit<Sample, "wallMs">), wallMs });
    });
  });
}

const best = (xs: Sample[]): Sample => xs.reduce((a, b) => (b.ms < a.ms ? b : a));
const f1 = (n: number) => n.toFixed(1);

async function main(): Promise<void> {
  const cp = await ControlPlane.start({ controllerManager: false });
  try {
    await cp.ensureNamespace(NS);
    const gen = generateRecords({ namespace: NS, count: Math.max(...sizes), targets: 2000, seed: 42 });
    const first = gen.next().value as AuditRecord;
    const a = first.spec.action as { kind: string; name: string };
    const target = `${a.kind.toLowerCase()}/${a.name}`;
    let have = 0;
    const rows: Record<string, string | number>[] = [];
    for (const size of sizes) {
      const t0 = performance.now();
      const batch = (function* () {
        if (have === 0) yield first;
        for (let i = have === 0 ? 1 : 0; i < size - have; i++) {
          const n = gen.next();
          if (n.done) return;
          yield n.value;
        }
      })();
      const head = await createRecords(cp.adminKubeConfig(), batch, {
        concurrency: Number(values.concurrency),
        onProgress: (n) => n % 10000 === 0 && process.stdout.write(`  … ${have + n} records\n`),
      });
      have = head.sequence + 1;
      const secs = (performance.now() - t0) / 1000;
      console.log(
        `${have} records in ${NS} (created ${head.created} in ${secs.toFixed(0)} s, ${(head.created / secs).toFixed(0)}/s); target ${target}`,
      );
      const after: Sample[] = [];
      const before: Sample[] = [];
      for (let r = 0; r < runs; r++) {
        after.push(await measure("after", cp.adminKubeconfigPath, target));
        if (size <= Number(values["skip-before-above"]))
          before.push(await measure("before", cp.adminKubeconfigPath, target));
      }
      const A = best(after);
      const B = before.length ? best(before) : undefined;
      if (B && B.lines !== A.lines)
        console.log(`  WARNING: before found ${B.lines} records, after ${A.lines}`);
      rows.push({
        records: have,
        found: A.lines,
        "before s": B ? (B.ms / 1000).toFixed(2) : "-",
        "before MiB": B ? f1(B.rssMiB) : "-",
        "after s": (A.ms / 1000).toFixed(3),
        "after MiB": f1(A.rssMiB),
        "after process s": (A.wallMs / 1000).toFixed(2),
        "time ratio": B ? `${(B.ms / A.ms).toFixed(0)}x` : "-",
        "RSS ratio": B ? `${(B.rssMiB / A.rssMiB).toFixed(1)}x` : "-",
      });
      console.table(rows.slice(-1));
    }
    console.log("\naudit --for, best of", runs, "runs each (s: the command; process s: node start to exit):");
    console.table(rows);
    console.log(
      `machine: ${readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, ${cpus().length} cores, node ${process.version}`,
    );
  } finally {
    await cp.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
