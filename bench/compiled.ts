/**
 * Countersign as production runs it: the compiled JavaScript in dist/ (`npm run build` first),
 * typed by its sources. Benches that time Countersign's own CPU load it from here, because
 * under tsx every function gets a name-keeping wrapper and the same request costs several
 * times more (measured: 200 vs 40 µs per decision with 70 expressions). Import nothing that
 * registers metrics from src/ beside it: both copies would register the same metric names.
 */
const load = async <T>(path: string): Promise<T> =>
  (await import(new URL(`../dist/${path}`, import.meta.url).href)) as T;

export const { startCountersign } = await load<typeof import("../src/app.js")>("app.js");
export const { GATE_WEBHOOK_NAME, webhookConfiguration } =
  await load<typeof import("../src/admission/registration.js")>("admission/registration.js");
export const { ControlPlane } = await load<typeof import("../src/controlplane/control-plane.js")>(
  "controlplane/control-plane.js",
);
export const { isNotFound } = await load<typeof import("../src/kube/errors.js")>("kube/errors.js");
export const { createCertificateAuthority, issueCertificate } =
  await load<typeof import("../src/pki/certificates.js")>("pki/certificates.js");
export const { registry } = await load<typeof import("../src/metrics/metrics.js")>("metrics/metrics.js");
