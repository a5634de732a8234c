/**
 * Labels on every AuditRecord that identify the object its action targeted, so "who authorized
 * this change?" (`kubectl approvals audit --for KIND/NAME`) is a label-selected LIST the API
 * server answers, not a scan of the namespace's whole trail. Pure.
 *
 * A label value is at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric.
 * A value that does not fit (a 253-character name, a name with ':') is replaced by
 * `sha256.<first 40 hex digits of its sha256>`. A label is an index, never the evidence:
 * readers compare the record's full spec.action values before they show a record, so two
 * values sharing a label (a hash collision, or a name spelled like a hash) cost one extra
 * record on the wire and nothing else.
 *
 * Every record the writer appends carries LABEL_TARGET_NAME (empty when the action has no
 * name), so records without it are exactly those written before these labels existed; readers
 * find those with a second, paged `!countersign.io/target-name` LIST (see auditFor).
 */
import { createHash } from "node:crypto";

export const LABEL_TARGET_NAME = "countersign.io/target-name";
/** The target's kind, lowercased (e.g. `secret`). */
export const LABEL_TARGET_KIND = "countersign.io/target-kind";
/** The target's resource, lowercased plural (e.g. `secrets`). */
export const LABEL_TARGET_RESOURCE = "countersign.io/target-resource";
/** The target's API group (empty for the core group). */
export const LABEL_TARGET_GROUP = "countersign.io/target-group";

const MAX_LABEL_VALUE = 63;
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?$/;

/** `text` itself when it is a valid label value, else `sha256.<40 hex>` of it. */
export function targetLabelValue(text: string): string {
  if (text.length <= MAX_LABEL_VALUE && LABEL_VALUE.test(text)) return text;
  return `sha256.${createHash("sha256").update(text).digest("hex").slice(0, 40)}`;
}

interface ActionLike {
  kind?: unknown;
  resource?: unknown;
  group?: unknown;
  name?: unknown;
}

const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** The target labels of a record whose spec.action is `action` (absent: an empty target name). */
export function targetLabels(action: ActionLike | undefined): Record<string, string> {
  const labels: Record<string, string> = { [LABEL_TARGET_NAME]: targetLabelValue(str(action?.name)) };
  if (!action) return labels;
  const kind = str(action.kind).toLowerCase();
  const resource = str(action.resource).toLowerCase();
  if (kind) labels[LABEL_TARGET_KIND] = targetLabelValue(kind);
  if (resource) labels[LABEL_TARGET_RESOURCE] = targetLabelValue(resource);
  if (typeof action.group === "string") labels[LABEL_TARGET_GROUP] = targetLabelValue(action.group);
  return labels;
}

/** The selector of the records whose target is named `name` (any kind; compare kinds client-side). */
export function targetNameSelector(name: string): string {
  return `${LABEL_TARGET_NAME}=${targetLabelValue(name)}`;
}

/** The selector of the records written before target labels existed. */
export const UNLABELLED_SELECTOR = `!${LABEL_TARGET_NAME}`;

/**
 * Does a record's action target KIND/NAME as `audit --for` spells it? KIND is a kind or a
 * resource, singular or plural, any case; NAME is compared in full. Pure.
 */
export function actionTargets(action: ActionLike | undefined, kindOrResource: string, name: string): boolean {
  if (!action || action.name !== name) return false;
  const k = kindOrResource.toLowerCase();
  const kind = str(action.kind).toLowerCase();
  const resource = str(action.resource).toLowerCase();
  return (
    (kind !== "" && kind === k) || (resource !== "" && (resource === k || resource.replace(/s$/, "") === k))
  );
}
