/**
 * The ValidatingWebhookConfiguration (used by `npm run dev`, the tests and the chart).
 * Only the selected subjects ever reach the gate (matchConditions), system namespaces and
 * Countersign's own namespace are excluded, dry runs have no side effects, and calls fail
 * closed only for the selected subjects.
 */
import type { V1ValidatingWebhookConfiguration } from "@kubernetes/client-node";
import { API_GROUP } from "../resources/group.js";
import { VALIDATE_PATH } from "./server.js";

export const GATE_WEBHOOK_NAME = "gate.countersign.io";
/** Writes to the excluded namespaces' own Namespace objects (see webhookConfiguration). */
export const NAMESPACES_WEBHOOK_NAME = "namespaces.gate.countersign.io";
export const POLICY_WEBHOOK_NAME = "policies.countersign.io";
export const GUARD_WEBHOOK_NAME = "guard.countersign.io";
export const SYSTEM_NAMESPACES = ["kube-system", "kube-public", "kube-node-lease"];
/** Under the API server's 30 s cap, and above the longest policy hold (8 s). */
export const WEBHOOK_TIMEOUT_SECONDS = 12;

export interface SelectedSubjects {
  users?: string[];
  groups?: string[];
  /** Every service account in these namespaces. */
  serviceAccountNamespaces?: string[];
}

export interface WebhookRegistration {
  name: string;
  caBundlePem: string;
  /** Either a URL (dev, tests) or an in-cluster Service. */
  url?: string;
  service?: { namespace: string; name: string; port?: number };
  installNamespace: string;
  subjects: SelectedSubjects;
  excludedNamespaces?: string[];
  failurePolicy?: "Fail" | "Ignore";
}

const celString = (s: string) => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
const celList = (xs: string[]) => `[${xs.map(celString).join(", ")}]`;

/** The CEL matchCondition that selects the covered subjects. */
export function subjectsMatchCondition(s: SelectedSubjects): string {
  const parts: string[] = [];
  if (s.users?.length) parts.push(`request.userInfo.username in ${celList(s.users)}`);
  if (s.groups?.length) parts.push(`request.userInfo.groups.exists(g, g in ${celList(s.groups)})`);
  for (const ns of s.serviceAccountNamespaces ?? []) {
    parts.push(`request.userInfo.username.startsWith(${celString(`system:serviceaccount:${ns}:`)})`);
  }
  if (parts.length === 0)
    throw new Error("the webhook must select at least one user, group or service-account namespace");
  return parts.join(" || ");
}

export function webhookConfiguration(r: WebhookRegistration): V1ValidatingWebhookConfiguration {
  const clientConfig = {
    caBundle: Buffer.from(r.caBundlePem).toString("base64"),
    ...(r.url
      ? { url: `${r.url.replace(/\/$/, "")}${VALIDATE_PATH}` }
      : { service: { ...r.service!, path: VALIDATE_PATH, port: r.service?.port ?? 443 } }),
  };
  const excluded = [...new Set([...SYSTEM_NAMESPACES, r.installNamespace, ...(r.excludedNamespaces ?? [])])];
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name: r.name, labels: { "app.kubernetes.io/part-of": "countersign" } },
    webhooks: [
      {
        name: GATE_WEBHOOK_NAME,
        admissionReviewVersions: ["v1"],
        clientConfig,
        sideEffects: "NoneOnDryRun",
        failurePolicy: r.failurePolicy ?? "Fail",
        timeoutSeconds: WEBHOOK_TIMEOUT_SECONDS,
        matchPolicy: "Equivalent",
        namespaceSelector: {
          matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "NotIn", values: excluded }],
        },
        rules: [
          {
            operations: ["CREATE", "UPDATE", "DELETE", "CONNECT"],
            apiGroups: ["*"],
            apiVersions: ["*"],
            resources: ["*/*"], // every resource and subresource
            scope: "*",
          },
        ],
        matchConditions: [
          { name: "selected-subjects", expression: subjectsMatchCondition(r.subjects) },
          // Countersign's own resources are guarded by dedicated webhooks, never gated.
          {
            name: "not-countersign-resources",
            expression: `request.resource.group != ${celString(API_GROUP)}`,
          },
          // Leases, events and token reviews are the cluster's heartbeat; never gate them.
          {
            name: "not-cluster-heartbeat",
            expression:
              "!(request.resource.resource in ['leases', 'events', 'tokenreviews', 'subjectaccessreviews', 'selfsubjectreviews', 'selfsubjectaccessreviews'])",
          },
        ],
      },
      {
        // Red team 9 finding 7: for a Namespace object the namespaceSelector above is evaluated
        // against that Namespace's own labels, so writes to the excluded namespaces themselves
        // (deleting kube-system or Countersign's own namespace, relabelling them) never reached
        // the gate. They are sent here, for the selected subjects only, and gated like any action.
        name: NAMESPACES_WEBHOOK_NAME,
        admissionReviewVersions: ["v1"],
        clientConfig,
        sideEffects: "NoneOnDryRun",
        failurePolicy: r.failurePolicy ?? "Fail",
        timeoutSeconds: WEBHOOK_TIMEOUT_SECONDS,
        matchPolicy: "Equivalent",
        rules: [
          {
            operations: ["UPDATE", "DELETE"],
            apiGroups: [""],
            apiVersions: ["*"],
            resources: ["namespaces", "namespaces/*"],
            scope: "Cluster",
          },
        ],
        matchConditions: [
          { name: "selected-subjects", expression: subjectsMatchCondition(r.subjects) },
          { name: "excluded-namespaces", expression: `request.name in ${JSON.stringify(excluded)}` },
        ],
      },
      {
        name: POLICY_WEBHOOK_NAME,
        admissionReviewVersions: ["v1"],
        clientConfig,
        sideEffects: "NoneOnDryRun", // records each change in the audit trail
        failurePolicy: "Fail",
        timeoutSeconds: 5,
        // Every write, by anyone: validated, refused for covered subjects, and recorded.
        rules: [
          {
            operations: ["CREATE", "UPDATE", "DELETE"],
            apiGroups: [API_GROUP],
            apiVersions: ["*"],
            resources: ["approvalpolicies", "approvalpolicies/status"],
            scope: "Cluster",
          },
        ],
      },
      {
        // Decisions, status and the audit trail: for every user, in every namespace.
        name: GUARD_WEBHOOK_NAME,
        admissionReviewVersions: ["v1"],
        clientConfig,
        sideEffects: "None",
        failurePolicy: "Fail",
        timeoutSeconds: 5,
        rules: [
          {
            operations: ["CREATE", "UPDATE", "DELETE"],
            apiGroups: [API_GROUP],
            apiVersions: ["*"],
            resources: ["approvalrequests", "approvalrequests/status", "auditrecords", "auditcheckpoints"],
            scope: "Namespaced",
          },
        ],
      },
    ],
  };
}
