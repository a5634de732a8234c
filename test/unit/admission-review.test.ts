/**
 * Parsing AdmissionReviews (src/admission/review.ts) on the stored fixtures, and the ApprovalRequest
 * the webhook builds from them: what an approver sees, never a Secret's value.
 */
import { describe, expect, it } from "vitest";
import { parseAdmissionReview, ReviewError } from "../../src/admission/review.js";
import { admissionRequest, admissionReview } from "../fixtures/admission-review.js";
import { requestFor } from "../fixtures/approval-request.js";

describe("AdmissionReview fixtures", () => {
  it("parse as the webhook parses the API server's reviews", () => {
    const del = parseAdmissionReview(admissionReview("delete-secret"));
    expect(del).toMatchObject({ operation: "DELETE", name: "db", namespace: "prod" });
    const scale = parseAdmissionReview(admissionReview("scale-deployment"));
    expect(scale).toMatchObject({
      operation: "UPDATE",
      subResource: "scale",
      resource: { resource: "deployments" },
    });
  });

  it("a review missing its uid or with a bad operation is refused with a clear 400", () => {
    const noUid = admissionReview("delete-secret");
    noUid.request.uid = "";
    expect(() => parseAdmissionReview(noUid)).toThrow(ReviewError);
    expect(() => parseAdmissionReview(noUid)).toThrow(/request.uid/);
    const bad = admissionReview("scale-deployment") as unknown as { request: { operation: string } };
    bad.request.operation = "PATCH";
    expect(() => parseAdmissionReview(bad)).toThrow(/CREATE, UPDATE, DELETE, CONNECT/);
  });

  it("the request built from the Secret delete names the action and the agent's reason, never the value", () => {
    const ar = requestFor(admissionRequest("delete-secret"));
    expect(ar.spec.requester).toMatchObject({
      username: "system:serviceaccount:ai:bot",
      serviceAccount: { namespace: "ai", name: "bot" },
    });
    expect(ar.spec.action).toMatchObject({ operation: "DELETE", resource: "secrets", name: "db" });
    expect(ar.spec.agentContext?.reason).toBe("rotate the database password");
    expect(JSON.stringify(ar)).not.toContain("c2VjcmV0");
  });
});
