/** Reading and conditionally writing ApprovalRequests (thin I/O shared by the gate, controller and API). */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { isConflict, isNotFound } from "../kube/errors.js";
import { API_GROUP, API_VERSION } from "../policy/types.js";
import { APPROVAL_REQUEST_PLURAL, type ApprovalRequest, type ApprovalRequestStatus } from "./request.js";

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
