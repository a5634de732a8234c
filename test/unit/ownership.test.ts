import { describe, expect, it } from "vitest";
import {
  actionDiff,
  actionIdentity,
  fingerprintOf,
  isNoOpUpdate,
  ownershipOf,
} from "../../src/approvals/fingerprint.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";

const entry = (
  manager: string,
  operation: string,
  fields: Record<string, unknown>,
  time = "2026-01-01T00:00:00Z",
) => ({
  manager,
  operation,
  apiVersion: "v1",
  time,
  fieldsType: "FieldsV1",
  fieldsV1: fields,
});

const cm = (managedFields: unknown[], data = { mode: "safe", safety: "on" }) => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name: "mf", namespace: "prod", uid: "u1", resourceVersion: "5", managedFields },
  data,
});

const req = (oldObject: unknown, object: unknown): AdmissionRequest => ({
  uid: "r",
  kind: { group: "", version: "v1", kind: "ConfigMap" },
  resource: { group: "", version: "v1", resource: "configmaps" },
  namespace: "prod",
  name: "mf",
  operation: "UPDATE",
  userInfo: { username: "system:serviceaccount:agents:ops-bot" },
  oldObject,
  object,
});

const gitops = entry("gitops", "Apply", { "f:data": { "f:mode": {} } });
const human = entry("human-kubectl", "Update", { "f:data": { "f:safety": {} } });
const forged = entry("gitops", "Apply", { "f:data": { "f:mode": {}, "f:safety": {} } });
const fp = (r: AdmissionRequest) => fingerprintOf(actionIdentity(r));

describe("field ownership is bound (red team 9, finding 3)", () => {
  it("a managedFields-only rewrite is not a no-op and is shown one line per manager", () => {
    const r = req(cm([gitops, human]), cm([forged]));
    expect(isNoOpUpdate(r)).toBe(false);
    expect(actionDiff(r)).toBe(
      [
        '(field ownership) "gitops" (Apply, v1): now owns data.safety',
        '(field ownership) "human-kubectl" (Update, v1): no longer owns data.safety',
      ].join("\n"),
    );
  });

  it("order of entries and their time do not matter: a re-apply that changes nothing is a no-op", () => {
    const later = { ...human, time: "2026-02-02T00:00:00Z" };
    const r = req(cm([gitops, human]), cm([later, gitops]));
    expect(isNoOpUpdate(r)).toBe(true);
    expect(ownershipOf(cm([gitops, human, human]), false)).toHaveLength(2);
  });

  it("the fingerprint binds ownership: the same content with other owners is another action", () => {
    const content = req(cm([gitops, human]), cm([gitops, human], { mode: "unsafe", safety: "on" }));
    const plusOwner = req(cm([gitops, human]), cm([forged], { mode: "unsafe", safety: "on" }));
    expect(fp(content)).not.toBe(fp(plusOwner));
  });

  it("status field ownership (controllers' status writes) does not count unless the write changes status", () => {
    const st = (f: Record<string, unknown>) => entry("deploy-controller", "Update", { "f:status": f }, "t");
    const r = req(
      cm([gitops, st({ "f:replicas": {} })]),
      cm([gitops, st({ "f:replicas": {}, "f:unavailableReplicas": {} })]),
    );
    expect(isNoOpUpdate(r)).toBe(true);
  });
});
