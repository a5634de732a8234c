/**
 * AuditRecords for changes to Countersign's own configuration (issue 10): every
 * ApprovalPolicy create, spec change and delete, by anyone, recorded by the webhook with the
 * API server's userInfo before the change is admitted; and changes to Countersign's
 * ValidatingWebhookConfigurations, which no webhook can intercept, recorded by the
 * controller when it sees them. All go to the install namespace's chain.
 */
import { createHash } from "node:crypto";
import { kubeTime } from "../kube/time.js";
import type { AdmissionRequest } from "../resources/admission.js";
import { AuditEvent, LABEL_EVENT } from "../resources/audit-record.js";
import { canonicalJson } from "../resources/canonical-json.js";
import { API_GROUP, API_VERSION, POLICY_PLURAL } from "../resources/group.js";
import type { AuditContent, AuditWriter } from "./writer.js";

export const LABEL_CONFIG_OBJECT = "countersign.io/config-object";

interface PolicyLike {
  metadata?: { name?: string; uid?: string; generation?: number; resourceVersion?: string };
  spec?: unknown;
}

/** sha256 of the canonical spec: what an auditor compares between two records. Pure. */
export function specHash(obj: PolicyLike | undefined): string {
  return createHash("sha256")
    .update(canonicalJson(obj?.spec ?? null))
    .digest("hex");
}

/** A label value: at most 63 characters, starting and ending alphanumeric. Pure. */
function labelValue(text: string): string {
  return text
    .slice(0, 63)
    .replace(/[^A-Za-z0-9._-]/g, "-")
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, "");
}

export interface ConfigChange {
  name: string;
  labels: Record<string, string>;
  content: AuditContent;
}

/**
 * What makes a policy change's record name unique, yet the same when the API server calls
 * the webhook again for the same change (it re-validates a DELETE or a patch after a storage
 * conflict, e.g. with a status write): the object's uid for a delete (an object is deleted
 * once), uid + generation + new spec for an update, the admission uid for a create. Pure.
 */
function changeKey(req: AdmissionRequest, newSpecHash: string): string {
  const oldP = req.oldObject as PolicyLike | undefined;
  const uid = oldP?.metadata?.uid ?? "";
  const basis =
    req.operation === "DELETE"
      ? `delete/${uid}`
      : req.operation === "UPDATE"
        ? `update/${uid}/${oldP?.metadata?.generation ?? ""}/${newSpecHash}`
        : `create/${req.uid}`;
  return createHash("sha256").update(basis).digest("hex").slice(0, 20);
}

/**
 * The record for one admitted ApprovalPolicy write, or undefined when nothing the gate reads
 * changes (an update that leaves the spec as it was). Pure.
 */
export function policyChange(req: AdmissionRequest, now: Date): ConfigChange | undefined {
  const oldP = req.oldObject as PolicyLike | undefined;
  const newP = req.object as PolicyLike | undefined;
  const policy = req.name || newP?.metadata?.name || oldP?.metadata?.name || "";
  let event: AuditEvent;
  let summary: string;
  let hash: string;
  switch (req.operation) {
    case "CREATE":
      event = AuditEvent.PolicyCreated;
      hash = specHash(newP);
      summary = `created ApprovalPolicy ${policy} (spec sha256 ${hash.slice(0, 12)})`;
      break;
    case "UPDATE": {
      hash = specHash(newP);
      const before = specHash(oldP);
      if (before === hash) return undefined;
      event = AuditEvent.PolicyUpdated;
      summary = `changed the spec of ApprovalPolicy ${policy} (generation ${oldP?.metadata?.generation ?? "?"}, spec sha256 ${before.slice(0, 12)} → ${hash.slice(0, 12)})`;
      break;
    }
    case "DELETE":
      event = AuditEvent.PolicyDeleted;
      hash = specHash(oldP);
      summary = `deleted ApprovalPolicy ${policy} (generation ${oldP?.metadata?.generation ?? "?"}, spec sha256 ${hash.slice(0, 12)}): it no longer gates anything`;
      break;
    default:
      return undefined;
  }
  const user = req.userInfo;
  return {
    name: `approvalpolicy.${policy.slice(0, 180)}.${event.toLowerCase()}.${changeKey(req, hash)}`,
    labels: { [LABEL_EVENT]: event, [LABEL_CONFIG_OBJECT]: labelValue(`approvalpolicy.${policy}`) },
    content: {
      event,
      time: kubeTime(now),
      approvalRequest: { name: "" },
      actor: {
        username: user.username ?? "",
        ...(user.uid ? { uid: user.uid } : {}),
        groups: (user.groups ?? []).slice(0, 64),
        via: "admission",
      },
      reason: summary,
      action: {
        operation: req.operation,
        group: API_GROUP,
        version: API_VERSION,
        resource: POLICY_PLURAL,
        kind: "ApprovalPolicy",
        name: policy,
        objectHash: hash,
        summary,
      },
    },
  };
}

export interface WebhookConfigState {
  name: string;
  uid?: string;
  generation?: number;
  /** sha256 of the webhooks list (what decides which requests reach Countersign). */
  hash: string;
}

/** The record for a change the controller observed on a webhook configuration. Pure. */
export function webhookConfigChange(
  before: WebhookConfigState,
  after: WebhookConfigState | undefined,
  actorUsername: string,
  now: Date,
): ConfigChange {
  const event = after ? AuditEvent.WebhookConfigurationChanged : AuditEvent.WebhookConfigurationDeleted;
  const summary = after
    ? `ValidatingWebhookConfiguration ${before.name} changed (generation ${before.generation ?? "?"} → ${after.generation ?? "?"}, webhooks sha256 ${before.hash.slice(0, 12)} → ${after.hash.slice(0, 12)}); who changed it is in the API server's audit log`
    : `ValidatingWebhookConfiguration ${before.name} was deleted: Countersign no longer sees any request. Who deleted it is in the API server's audit log`;
  const suffix = createHash("sha256")
    .update(`${before.uid ?? ""}/${before.hash}/${after?.uid ?? ""}/${after?.hash ?? "deleted"}`)
    .digest("hex")
    .slice(0, 16);
  return {
    name: `validatingwebhookconfiguration.${before.name.slice(0, 180)}.${event.toLowerCase()}.${suffix}`,
    labels: {
      [LABEL_EVENT]: event,
      [LABEL_CONFIG_OBJECT]: labelValue(`validatingwebhookconfiguration.${before.name}`),
    },
    content: {
      event,
      time: kubeTime(now),
      approvalRequest: { name: "" },
      actor: { username: actorUsername, via: "controller" },
      reason: summary,
      action: {
        operation: after ? "UPDATE" : "DELETE",
        group: "admissionregistration.k8s.io",
        version: "v1",
        resource: "validatingwebhookconfigurations",
        kind: "ValidatingWebhookConfiguration",
        name: before.name,
        objectHash: after?.hash ?? before.hash,
        summary,
      },
    },
  };
}

/** Writes configuration-change records to the install namespace's chain. */
export class ConfigAuditor {
  constructor(
    private readonly writer: AuditWriter,
    readonly namespace: string,
  ) {}

  /** Appends the change to the install namespace's chain; true if this call wrote it. */
  async record(change: ConfigChange): Promise<boolean> {
    const { created } = await this.writer.append({
      namespace: this.namespace,
      name: change.name,
      labels: change.labels,
      content: change.content,
    });
    return created;
  }
}
