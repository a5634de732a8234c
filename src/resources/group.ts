/**
 * Countersign's API group and version, and the plural of each of its custom resources, written
 * once (crds/*.yaml are the source of truth). `gvr(plural)` is the `{group, version, plural}`
 * triple the Kubernetes client's CustomObjectsApi takes.
 */

export const API_GROUP = "countersign.io";
export const API_VERSION = "v1alpha1";
export const API_GROUP_VERSION = `${API_GROUP}/${API_VERSION}`;

export const APPROVAL_REQUEST_PLURAL = "approvalrequests";
export const POLICY_PLURAL = "approvalpolicies";
export const AUDIT_PLURAL = "auditrecords";
export const AUDIT_CHECKPOINT_PLURAL = "auditcheckpoints";

export type Plural =
  | typeof APPROVAL_REQUEST_PLURAL
  | typeof POLICY_PLURAL
  | typeof AUDIT_PLURAL
  | typeof AUDIT_CHECKPOINT_PLURAL;

/** The `{group, version, plural}` of one of Countersign's resources. */
export function gvr(plural: Plural): { group: string; version: string; plural: Plural } {
  return { group: API_GROUP, version: API_VERSION, plural };
}

/** The URL path an informer watches for one resource across all namespaces. */
export function clusterPath(plural: Plural): string {
  return `/apis/${API_GROUP}/${API_VERSION}/${plural}`;
}

/** The URL path of one resource's collection in `namespace`. */
export function namespacedPath(plural: Plural, namespace: string): string {
  return `/apis/${API_GROUP}/${API_VERSION}/namespaces/${namespace}/${plural}`;
}
