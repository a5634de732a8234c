/**
 * Which GitOps application an object says it belongs to, from the marks Argo CD and Flux leave
 * on the objects they apply. Pure.
 *
 * Recorded on an ApprovalRequest (spec.gitops) so that approvers can see one sync's requests
 * together (the console's groups). It is the object's own claim: the object's author (possibly
 * the agent) writes these labels and annotations, so it only groups; every request is still
 * shown, decided and bound on its own, and groups never mix requesters.
 *
 *  - Argo CD, annotation tracking: `argocd.argoproj.io/tracking-id: <app>:<group>/<Kind>:<ns>/<name>`
 *    (`<app>` is `<app-namespace>_<app-name>` for Applications outside Argo CD's namespace);
 *  - Argo CD, label tracking: `argocd.argoproj.io/instance`, else `app.kubernetes.io/instance`;
 *  - Flux: `kustomize.toolkit.fluxcd.io/name` + `/namespace` (a Kustomization),
 *    `helm.toolkit.fluxcd.io/name` + `/namespace` (a HelmRelease); the revision from
 *    `kustomize.toolkit.fluxcd.io/checksum` (label or annotation) when present.
 * Argo CD writes no revision onto the objects it applies, so its groups are per application.
 */
import { type GitOpsOrigin, GitOpsTool } from "../resources/approval-request.js";

export const ARGOCD_TRACKING_ID = "argocd.argoproj.io/tracking-id";
export const ARGOCD_INSTANCE = "argocd.argoproj.io/instance";
export const APP_INSTANCE = "app.kubernetes.io/instance";
export const FLUX_KUSTOMIZE_NAME = "kustomize.toolkit.fluxcd.io/name";
export const FLUX_KUSTOMIZE_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace";
export const FLUX_KUSTOMIZE_CHECKSUM = "kustomize.toolkit.fluxcd.io/checksum";
export const FLUX_HELM_NAME = "helm.toolkit.fluxcd.io/name";
export const FLUX_HELM_NAMESPACE = "helm.toolkit.fluxcd.io/namespace";

/** Bounds, as the CRD declares them. */
export const GITOPS_APP_MAX = 512;
export const GITOPS_REVISION_MAX = 253;

const strings = (v: unknown): Record<string, string> => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, s] of Object.entries(v)) if (typeof s === "string" && s.trim()) out[k] = s.trim();
  return out;
};

const bounded = (s: string, max: number) => (s.length > max ? s.slice(0, max) : s);

/** The GitOps origin an object claims, or undefined. `obj` is any Kubernetes object (or not). */
export function gitopsOrigin(obj: unknown): GitOpsOrigin | undefined {
  const meta = typeof obj === "object" && obj !== null ? (obj as { metadata?: unknown }).metadata : undefined;
  if (typeof meta !== "object" || meta === null) return undefined;
  const labels = strings((meta as { labels?: unknown }).labels);
  const annotations = strings((meta as { annotations?: unknown }).annotations);
  const found = fluxOrigin(labels, annotations) ?? argoOrigin(labels, annotations);
  if (!found) return undefined;
  return {
    ...found,
    app: bounded(found.app, GITOPS_APP_MAX),
    ...(found.revision ? { revision: bounded(found.revision, GITOPS_REVISION_MAX) } : {}),
  };
}

function fluxOrigin(
  labels: Record<string, string>,
  annotations: Record<string, string>,
): GitOpsOrigin | undefined {
  const revision = labels[FLUX_KUSTOMIZE_CHECKSUM] ?? annotations[FLUX_KUSTOMIZE_CHECKSUM];
  const ks = labels[FLUX_KUSTOMIZE_NAME];
  if (ks) {
    const ns = labels[FLUX_KUSTOMIZE_NAMESPACE];
    return {
      tool: GitOpsTool.Flux,
      app: `Kustomization ${ns ? `${ns}/` : ""}${ks}`,
      marker: FLUX_KUSTOMIZE_NAME,
      ...(revision ? { revision } : {}),
    };
  }
  const hr = labels[FLUX_HELM_NAME];
  if (hr) {
    const ns = labels[FLUX_HELM_NAMESPACE];
    return { tool: GitOpsTool.Flux, app: `HelmRelease ${ns ? `${ns}/` : ""}${hr}`, marker: FLUX_HELM_NAME };
  }
  return undefined;
}

function argoOrigin(
  labels: Record<string, string>,
  annotations: Record<string, string>,
): GitOpsOrigin | undefined {
  const tracking = annotations[ARGOCD_TRACKING_ID];
  if (tracking) {
    const head = tracking.split(":")[0] ?? "";
    // "<app-namespace>_<app-name>" names an Application outside Argo CD's own namespace.
    const i = head.indexOf("_");
    const app = i > 0 ? `${head.slice(0, i)}/${head.slice(i + 1)}` : head;
    if (app) return { tool: GitOpsTool.ArgoCD, app, marker: ARGOCD_TRACKING_ID };
  }
  for (const key of [ARGOCD_INSTANCE, APP_INSTANCE]) {
    const app = labels[key];
    if (app) return { tool: GitOpsTool.ArgoCD, app, marker: key };
  }
  return undefined;
}

/** The key one group shares: the same requester, tool, application and revision. */
export function gitopsGroupKey(requester: string, origin: GitOpsOrigin): string {
  return JSON.stringify([requester, origin.tool, origin.app, origin.revision ?? ""]);
}
