import { describe, expect, it } from "vitest";
import {
  actionTargets,
  LABEL_TARGET_GROUP,
  LABEL_TARGET_KIND,
  LABEL_TARGET_NAME,
  LABEL_TARGET_RESOURCE,
  targetLabels,
  targetLabelValue,
  targetNameSelector,
} from "../../src/audit/target-labels.js";

const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?$/;

describe("AuditRecord target labels", () => {
  it("a name that is a valid label value is used as it is", () => {
    expect(targetLabelValue("db-creds")).toBe("db-creds");
    expect(targetLabelValue("a.b_c-1")).toBe("a.b_c-1");
    expect(targetLabelValue("")).toBe("");
  });

  it("a name too long or outside the label charset is hashed to a valid, stable label value", () => {
    const long = `cm-${"x".repeat(250)}`;
    for (const name of [long, "system:controller:foo", "-leading", "trailing.", "x".repeat(64)]) {
      const v = targetLabelValue(name);
      expect(v).toMatch(/^sha256\.[0-9a-f]{40}$/);
      expect(v.length).toBeLessThanOrEqual(63);
      expect(v).toMatch(LABEL_VALUE);
      expect(targetLabelValue(name)).toBe(v);
    }
    // Two long names that share their first 63 characters still get different labels.
    expect(targetLabelValue(`${"y".repeat(63)}-a`)).not.toBe(targetLabelValue(`${"y".repeat(63)}-b`));
  });

  it("labels name, kind, resource and group of the action's target; no action: an empty target name", () => {
    expect(
      targetLabels({
        kind: "Secret",
        resource: "secrets",
        group: "",
        name: "db-creds",
        summary: "x",
      } as never),
    ).toEqual({
      [LABEL_TARGET_NAME]: "db-creds",
      [LABEL_TARGET_KIND]: "secret",
      [LABEL_TARGET_RESOURCE]: "secrets",
      [LABEL_TARGET_GROUP]: "",
    });
    expect(targetLabels(undefined)).toEqual({ [LABEL_TARGET_NAME]: "" });
    // A CREATE with a generated name: still marked as labelled (an empty name).
    expect(targetLabels({ kind: "Pod", resource: "pods", group: "", name: "" })[LABEL_TARGET_NAME]).toBe("");
    expect(targetNameSelector("db-creds")).toBe(`${LABEL_TARGET_NAME}=db-creds`);
  });

  it("compares the full name and accepts the kind or the resource, singular or plural, any case", () => {
    const a = { kind: "Deployment", resource: "deployments", name: "api" };
    for (const k of ["deployment", "Deployment", "deployments", "DEPLOYMENTS"])
      expect(actionTargets(a, k, "api")).toBe(true);
    expect(actionTargets(a, "secret", "api")).toBe(false);
    expect(actionTargets(a, "deployment", "api2")).toBe(false);
    const long = "z".repeat(100);
    expect(actionTargets({ ...a, name: long }, "deployment", long)).toBe(true);
    expect(actionTargets({ ...a, name: `${long}x` }, "deployment", long)).toBe(false);
    expect(actionTargets(undefined, "deployment", "api")).toBe(false);
    // A record without a kind (older shape) is still matched by resource.
    expect(actionTargets({ resource: "secrets", name: "s" }, "secret", "s")).toBe(true);
  });
});
