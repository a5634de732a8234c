/**
 * A decision write that lost a race is recognised by its Status (code, reason, causes), never
 * by the words of its message: 409 Conflict, or the CRD's 422 Invalid for spec.decisions (a
 * first `add /spec/decisions` that replaced a list another decision had created).
 */
import { ApiException } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { isDecisionRace } from "../../src/resources/client.js";

/** The Status the API server sends when the CRD's append-only rule refuses the write. */
const appendOnlyStatus = {
  kind: "Status",
  apiVersion: "v1",
  status: "Failure",
  code: 422,
  reason: "Invalid",
  message:
    'ApprovalRequest.countersign.io "r" is invalid: spec.decisions: Invalid value: "array": decisions are append-only; an existing decision cannot be changed or removed',
  details: {
    name: "r",
    group: "countersign.io",
    kind: "ApprovalRequest",
    causes: [
      {
        reason: "FieldValueInvalid",
        message:
          'Invalid value: "array": decisions are append-only; an existing decision cannot be changed or removed',
        field: "spec.decisions",
      },
    ],
  },
};

describe("decision races", () => {
  it("kubeStatusOf keeps the Status's causes", () => {
    const status = kubeStatusOf(new ApiException(422, "Invalid", JSON.stringify(appendOnlyStatus), {}));
    expect(status).toMatchObject({
      code: 422,
      reason: "Invalid",
      causes: [{ reason: "FieldValueInvalid", field: "spec.decisions" }],
    });
    expect(isDecisionRace(status)).toBe(true);
  });

  it("a race is a 409 Conflict or a 422 whose cause is spec.decisions itself", () => {
    expect(isDecisionRace({ code: 409, reason: "Conflict" })).toBe(true);
    expect(
      isDecisionRace({
        code: 422,
        reason: "Invalid",
        causes: [{ reason: "FieldValueInvalid", field: "spec.decisions" }],
      }),
    ).toBe(true);
  });

  it("the words alone make no race; nor does another invalid field or refusal", () => {
    // Before, any message saying "append-only" counted, e.g. the webhook guard's 403.
    expect(
      isDecisionRace({
        code: 403,
        reason: "Forbidden",
        message: "Countersign: decisions are append-only; the decision by alice cannot be changed or removed",
      }),
    ).toBe(false);
    expect(isDecisionRace({ code: 422, reason: "Invalid", message: appendOnlyStatus.message })).toBe(false);
    // An invalid decision (a too-long reason) is the caller's to fix, not a race.
    expect(
      isDecisionRace({
        code: 422,
        reason: "Invalid",
        causes: [{ reason: "FieldValueTooLong", field: "spec.decisions[0].reason" }],
      }),
    ).toBe(false);
    expect(
      isDecisionRace({
        code: 422,
        reason: "Invalid",
        causes: [{ reason: "FieldValueTooMany", field: "spec.decisions" }],
      }),
    ).toBe(false);
    expect(isDecisionRace({ code: 409, reason: "AlreadyExists" })).toBe(false);
    expect(isDecisionRace(undefined)).toBe(false);
  });
});
