/**
 * AdmissionReview (admission.k8s.io/v1) parsing and responses. Pure: a malformed review
 * yields a ReviewError with a clear message and HTTP status, never an exception.
 */
import type { AdmissionRequest } from "../resources/admission.js";

export const ADMISSION_API_VERSION = "admission.k8s.io/v1";

export class ReviewError extends Error {
  constructor(
    readonly httpStatus: number,
    message: string,
  ) {
    super(message);
  }
}

const OPERATIONS = new Set(["CREATE", "UPDATE", "DELETE", "CONNECT"]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validates the shape of a decoded AdmissionReview and returns its request. */
export function parseAdmissionReview(body: unknown): AdmissionRequest {
  if (!isObject(body)) throw new ReviewError(400, "body must be a JSON AdmissionReview object");
  if (body.apiVersion !== ADMISSION_API_VERSION || body.kind !== "AdmissionReview") {
    throw new ReviewError(
      400,
      `expected apiVersion ${ADMISSION_API_VERSION}, kind AdmissionReview; got apiVersion ${JSON.stringify(body.apiVersion ?? null)}, kind ${JSON.stringify(body.kind ?? null)}`,
    );
  }
  const req = body.request;
  if (!isObject(req)) throw new ReviewError(400, "AdmissionReview.request is missing");
  if (typeof req.uid !== "string" || req.uid === "")
    throw new ReviewError(400, "request.uid must be a non-empty string");
  if (typeof req.operation !== "string" || !OPERATIONS.has(req.operation)) {
    throw new ReviewError(400, "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT");
  }
  const res = req.resource;
  if (!isObject(res) || typeof res.resource !== "string" || typeof res.version !== "string") {
    throw new ReviewError(400, "request.resource must have group, version and resource");
  }
  if (typeof res.group !== "string") res.group = "";
  if (!isObject(req.kind) || typeof req.kind.kind !== "string")
    throw new ReviewError(400, "request.kind is missing");
  if (!isObject(req.userInfo)) throw new ReviewError(400, "request.userInfo is missing");
  const ui = req.userInfo;
  if (
    ui.groups !== undefined &&
    !(Array.isArray(ui.groups) && ui.groups.every((g) => typeof g === "string"))
  ) {
    throw new ReviewError(400, "request.userInfo.groups must be a list of strings");
  }
  for (const f of ["username", "uid"] as const) {
    if (ui[f] !== undefined && typeof ui[f] !== "string")
      throw new ReviewError(400, `request.userInfo.${f} must be a string`);
  }
  if (
    ui.extra !== undefined &&
    !(
      isObject(ui.extra) &&
      Object.values(ui.extra).every((v) => Array.isArray(v) && v.every((x) => typeof x === "string"))
    )
  ) {
    throw new ReviewError(400, "request.userInfo.extra must map names to lists of strings");
  }
  for (const f of ["name", "namespace", "subResource", "requestSubResource"] as const) {
    if (req[f] !== undefined && typeof req[f] !== "string")
      throw new ReviewError(400, `request.${f} must be a string`);
  }
  if (typeof res.subresource !== "undefined" && typeof res.subresource !== "string")
    throw new ReviewError(400, "request.resource.subresource must be a string");
  for (const f of ["group", "version"] as const) {
    if (req.kind[f] !== undefined && typeof req.kind[f] !== "string")
      throw new ReviewError(400, `request.kind.${f} must be a string`);
  }
  for (const f of ["requestKind", "requestResource"] as const) {
    const v = req[f];
    if (v === undefined || v === null) continue;
    if (!isObject(v) || Object.values(v).some((x) => typeof x !== "string"))
      throw new ReviewError(400, `request.${f} must be an object of strings`);
  }
  // The objects are what the API server decoded: an object, or absent (null) for the side
  // an operation does not have. Anything else is not a review the API server sends.
  for (const f of ["object", "oldObject", "options"] as const) {
    if (req[f] !== undefined && req[f] !== null && !isObject(req[f]))
      throw new ReviewError(400, `request.${f} must be an object or null`);
  }
  if (req.dryRun !== undefined && req.dryRun !== null && typeof req.dryRun !== "boolean")
    throw new ReviewError(400, "request.dryRun must be a boolean");
  return req as unknown as AdmissionRequest;
}

export interface ReviewResponse {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: "AdmissionReview";
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; reason?: string; message: string };
    auditAnnotations?: Record<string, string>;
    warnings?: string[];
  };
}

export function reviewResponse(
  uid: string,
  allowed: boolean,
  message: string | undefined,
  auditAnnotations: Record<string, string>,
  warnings?: string[],
): ReviewResponse {
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: "AdmissionReview",
    response: {
      uid,
      allowed,
      ...(allowed
        ? {}
        : { status: { code: 403, reason: "Forbidden", message: message ?? "denied by Countersign" } }),
      auditAnnotations,
      ...(warnings?.length ? { warnings } : {}),
    },
  };
}
