/** Kubernetes Events, best-effort: the ApprovalRequest and the AuditRecords are the record. */
import { createHash } from "node:crypto";
import type { CoreV1Api } from "@kubernetes/client-node";
import type { Logger } from "../logging/logger.js";
import { describeKubeError, isAlreadyExists } from "./errors.js";

export interface EventTarget {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
}

export interface EventSpec {
  target: EventTarget;
  reason: string;
  message: string;
  type: "Normal" | "Warning";
  /** "webhook" or "controller". */
  component: string;
  instance: string;
  /**
   * A key that makes the Event's name deterministic (so a restarted controller re-emitting
   * the same transition finds it exists instead of adding another); omit for a fresh name.
   */
  dedupeKey?: string;
  /** Where the Event goes when the target is cluster-scoped (target.namespace ""): "default". */
  eventNamespace?: string;
  now: Date;
}

export function eventTargetOf(obj: {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid?: string };
}): EventTarget {
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    name: obj.metadata.name,
    namespace: obj.metadata.namespace,
    ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}),
  };
}

export async function emitEvent(core: CoreV1Api, e: EventSpec, log: Logger): Promise<void> {
  const { target } = e;
  const namespace = target.namespace || e.eventNamespace || "default";
  const metadata = e.dedupeKey
    ? {
        name: `${target.name.slice(0, 200)}.countersign.${createHash("sha256").update(e.dedupeKey).digest("hex").slice(0, 16)}`,
        namespace,
      }
    : { generateName: `${target.name.slice(0, 200)}.`, namespace };
  try {
    await core.createNamespacedEvent({
      namespace,
      body: {
        metadata,
        involvedObject: target,
        reason: e.reason,
        message: e.message.slice(0, 1024),
        type: e.type,
        source: { component: `countersign-${e.component}` },
        reportingComponent: `countersign.io/${e.component}`,
        reportingInstance: e.instance,
        firstTimestamp: e.now,
        lastTimestamp: e.now,
        count: 1,
      },
    });
  } catch (err) {
    if (!isAlreadyExists(err))
      log.warn("could not emit event", { reason: e.reason, error: describeKubeError(err) });
  }
}
