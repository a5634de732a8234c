// One `kubectl approvals audit --for` in its own process, for bench/audit-scale.ts: prints one
// JSON line {ms, rssMiB, lines} — ms from just before the command to its output, and the
// process's peak RSS. Plain JS against the compiled plugin (dist/, as bin/kubectl-approvals
// runs it), so no loader is in the measurement.
//   node bench/audit-for-child.mjs after|before KUBECONFIG NAMESPACE KIND/NAME
// `before` is the algorithm the plugin used until the target labels: one unpaged LIST of the
// namespace's AuditRecords, filtered on the client (kept here, verbatim in effect, to compare).
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";

const [mode, kubeconfig, namespace, target] = process.argv.slice(2);
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);

async function before() {
  const { visible } = await import("../dist/approvals/visible.js");
  const [kindOrResource, name] = target.split("/");
  const k = kindOrResource.toLowerCase();
  const api = kc.makeApiClient(CustomObjectsApi);
  const out = await api.listNamespacedCustomObject({
    group: "countersign.io",
    version: "v1alpha1",
    namespace,
    plural: "auditrecords",
  });
  const records = out.items.filter((r) => {
    const a = r.spec.action;
    const kinds = [
      a?.kind?.toLowerCase(),
      a?.resource?.toLowerCase(),
      a?.resource?.toLowerCase().replace(/s$/, ""),
    ];
    return a?.name === name && kinds.includes(k);
  });
  records.sort((a, b) =>
    a.spec.time < b.spec.time ? -1 : a.spec.time > b.spec.time ? 1 : a.spec.sequence - b.spec.sequence,
  );
  const lines = [`Audit trail for ${target}:`];
  for (const r of records) {
    const s = r.spec;
    lines.push(
      `  ${s.time}  ${s.event.padEnd(9)}  ${s.actor?.username ?? "?"}${s.actor?.via ? ` via ${s.actor.via}` : ""}  [${r.metadata.namespace}/${s.approvalRequest.name}]`,
    );
  }
  return lines.map((l) => visible(l)).join("\n");
}

async function after() {
  const { auditFor } = await import("../dist/plugin/commands.js");
  return auditFor(kc, target, namespace);
}

// Load the code first (module loading is not what is compared), then time the command.
const run = mode === "before" ? before : after;
if (mode === "before") await import("../dist/approvals/visible.js");
else await import("../dist/plugin/commands.js");
const t0 = performance.now();
const text = await run();
const ms = performance.now() - t0;
const lines = text.split("\n").filter((l) => l.includes("[")).length;
process.stdout.write(`${JSON.stringify({ ms, rssMiB: process.resourceUsage().maxRSS / 1024, lines })}\n`);
