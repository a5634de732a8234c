/** Helpers for reading errors thrown by @kubernetes/client-node. */
import { ApiException } from "@kubernetes/client-node";

export interface KubeStatus {
  code: number;
  reason?: string;
  message?: string;
  /** The Status's details.causes: which field was invalid, and why (`reason`: FieldValueInvalid, ...). */
  causes?: { reason?: string; field?: string; message?: string }[];
}

/** Extracts the HTTP status and the API server's Status message from a client error, if there is one. */
export function kubeStatusOf(err: unknown): KubeStatus | undefined {
  if (err instanceof ApiException) {
    const body = typeof err.body === "string" ? safeJson(err.body) : err.body;
    const status =
      body && typeof body === "object"
        ? (body as { reason?: string; message?: string; details?: { causes?: KubeStatus["causes"] } })
        : {};
    const causes = Array.isArray(status.details?.causes) ? status.details.causes : undefined;
    return { code: err.code, reason: status.reason, message: status.message, ...(causes ? { causes } : {}) };
  }
  return undefined;
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return { message: s };
  }
}

export function isStatus(err: unknown, code: number): boolean {
  return kubeStatusOf(err)?.code === code;
}

export const isNotFound = (err: unknown) => isStatus(err, 404);
export const isAlreadyExists = (err: unknown) =>
  isStatus(err, 409) && kubeStatusOf(err)?.reason === "AlreadyExists";
export const isConflict = (err: unknown) => isStatus(err, 409) && kubeStatusOf(err)?.reason === "Conflict";

/** A one-line description of a client error for logs and CLI output. */
export function describeKubeError(err: unknown): string {
  const status = kubeStatusOf(err);
  if (status)
    return `${status.code}${status.reason ? ` ${status.reason}` : ""}: ${status.message ?? "no message"}`;
  return err instanceof Error ? err.message : String(err);
}
