/** Reading and conditionally writing ApprovalRequests (thin I/O shared by the gate, controller and API). */
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { isConflict, isNotFound } from "../kube/errors.js";
import { API_GROUP, API_VERSION } from "../policy/types.js";
import {
  APPROVAL_REQUEST_PLURAL,
  type ApprovalRequest,
  type ApprovalRequestStatus,
  type Decision,
} from "./request.js";

export async function getApprovalRequest(
  api: CustomObjectsApi,
  namespace: string,
  name: string,
): Promise<ApprovalRequest | undefined> {
  try {
    return (await api.getNamespacedCustomObject({
      group: API_GROUP,
      version: API_VERSION,
      namespace,
      plural: APPROVAL_REQUEST_PLURAL,
      name,
    })) as ApprovalRequest;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * Replaces the status of the request as read (its resourceVersion is the precondition), so of
 * concurrent writers exactly one wins. "conflict" when someone changed it first or it is gone.
 */
export async function replaceStatus(
  api: CustomObjectsApi,
  ar: ApprovalRequest,
  status: ApprovalRequestStatus,
): Promise<ApprovalRequest | "conflict"> {
  try {
    return (await api.replaceNamespacedCustomObjectStatus({
      group: API_GROUP,
      version: API_VERSION,
      namespace: ar.metadata.namespace,
      plural: APPROVAL_REQUEST_PLURAL,
      name: ar.metadata.name,
      body: { ...ar, status },
    })) as ApprovalRequest;
  } catch (err) {
    if (isConflict(err) || isNotFound(err)) return "conflict";
    throw err;
  }
}

/**
 * Appends a decision with a JSON patch. "add …/-" appends to the list as the server has it, so
 * concurrent deciders both land; when the list did not exist yet and another decision created
 * it meanwhile, the webhook refuses the replacement as not append-only and the caller re-reads.
 */
export async function appendDecision(
  api: CustomObjectsApi,
  ar: ApprovalRequest,
  entry: Decision,
): Promise<ApprovalRequest> {
  const patch = ar.spec.decisions
    ? [{ op: "add", path: "/spec/decisions/-", value: entry }]
    : [{ op: "add", path: "/spec/decisions", value: [entry] }];
  return (await api.patchNamespacedCustomObject(
    {
      group: API_GROUP,
      version: API_VERSION,
      namespace: ar.metadata.namespace,
      plural: APPROVAL_REQUEST_PLURAL,
      name: ar.metadata.name,
      body: patch,
    },
    setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
  )) as ApprovalRequest;
}

/** Whether a failed decision write should be retried after re-reading the request. */
export function isDecisionRace(status: { code: number; message?: string } | undefined): boolean {
  return status !== undefined && (status.code === 409 || /append-only/.test(status.message ?? ""));
}
