// The child of bench/memory.ts: starts the webhook role from a compiled build (as production
// runs it, no tsx) against the given cluster, waits for its informers to sync, runs a full GC
// and reports its memory to the parent. Args: BUILD_DIR KUBECONFIG_PATH.

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";

const [buildDir, kubeconfigPath] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(resolve(buildDir, p)).href);
const { startCountersign } = await load("app.js");
const { createCertificateAuthority, issueCertificate } = await load("pki/certificates.js");
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const ca = await createCertificateAuthority("bench-memory");
const tls = await issueCertificate(ca, { commonName: "bench", ipAddresses: ["127.0.0.1"], usage: "server" });
const started = performance.now();
const cs = await startCountersign({
  kubeConfig: kc,
  installNamespace: "countersign-system",
  replica: "bench-memory",
  webhook: { tls, admissionPort: 0, admissionAuth: { mode: "network" }, host: "127.0.0.1" },
});
const syncSeconds = (performance.now() - started) / 1000;
for (let i = 0; i < 3; i++) {
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, 200));
}
const m = process.memoryUsage();
const list = await kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({
  group: "countersign.io",
  version: "v1alpha1",
  plural: "approvalrequests",
  limit: 1,
});
process.send?.({
  rssMiB: m.rss / 2 ** 20,
  heapUsedMiB: m.heapUsed / 2 ** 20,
  requests: Number(list.metadata?.remainingItemCount ?? 0) + list.items.length,
  syncSeconds,
});
await cs.stop();
process.exit(0);
