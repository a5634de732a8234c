/** The parts of admission.k8s.io/v1 Countersign reads, and who a request comes from. Pure. */

export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface GroupVersionResource {
  group: string;
  version: string;
  resource: string;
}

/** The parts of an AdmissionRequest (admission.k8s.io/v1) the gate reads. */
export interface AdmissionRequest {
  uid: string;
  kind: { group: string; version: string; kind: string };
  resource: GroupVersionResource;
  subResource?: string;
  requestKind?: { group: string; version: string; kind: string };
  requestResource?: GroupVersionResource;
  requestSubResource?: string;
  name?: string;
  namespace?: string;
  operation: "CREATE" | "UPDATE" | "DELETE" | "CONNECT";
  userInfo: UserInfo;
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
  options?: unknown;
}

export const SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:";

/** The ServiceAccount a username names (system:serviceaccount:NS:NAME), or undefined. */
export function serviceAccountOf(
  username: string | undefined,
): { namespace: string; name: string } | undefined {
  if (!username?.startsWith(SERVICE_ACCOUNT_PREFIX)) return undefined;
  const rest = username.slice(SERVICE_ACCOUNT_PREFIX.length);
  const i = rest.indexOf(":");
  if (i <= 0 || i === rest.length - 1) return undefined;
  return { namespace: rest.slice(0, i), name: rest.slice(i + 1) };
}
