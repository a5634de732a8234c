/**
 * Input shapes that used to get past parsing unchecked (issue 12, with the fuzz suite in
 * test/integration/fuzz.test.ts): reviews with a wrongly typed field the handler reads, and
 * validly signed Slack payloads that are not objects or carry wrongly typed fields (`null`
 * threw in the handler: a 500). Each is now a clear 400 naming the field.
 */
import { describe, expect, it } from "vitest";
import { parseAdmissionReview, ReviewError } from "../../src/admission/review.js";
import { admissionTimeoutMs } from "../../src/admission/server.js";
import { payloadShapeError } from "../../src/notify/slack-interactions.js";

function review(over: Record<string, unknown> = {}, userInfo: Record<string, unknown> = {}): unknown {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "u1",
      kind: { group: "", version: "v1", kind: "ConfigMap" },
      resource: { group: "", version: "v1", resource: "configmaps" },
      namespace: "ns",
      name: "x",
      operation: "CREATE",
      userInfo: { username: "system:serviceaccount:a:b", groups: ["system:authenticated"], ...userInfo },
      object: { metadata: { name: "x" } },
      oldObject: null,
      dryRun: false,
      ...over,
    },
  };
}

function refusal(body: unknown): string {
  try {
    parseAdmissionReview(body);
  } catch (err) {
    expect(err).toBeInstanceOf(ReviewError);
    expect((err as ReviewError).httpStatus).toBe(400);
    return (err as Error).message;
  }
  throw new Error("expected a ReviewError");
}

describe("AdmissionReview fields the handler reads are type-checked", () => {
  it("accepts what the API server sends (objects or null, optional fields absent)", () => {
    expect(parseAdmissionReview(review()).uid).toBe("u1");
    expect(
      parseAdmissionReview(review({ object: null, oldObject: { a: 1 }, operation: "DELETE" })).operation,
    ).toBe("DELETE");
    expect(parseAdmissionReview(review({ dryRun: undefined, options: null })).uid).toBe("u1");
  });

  it.each([
    [{}, { username: 5 }, /userInfo.username must be a string/],
    [{}, { uid: [] }, /userInfo.uid must be a string/],
    [{}, { extra: { a: "b" } }, /userInfo.extra/],
    [{}, { extra: [] }, /userInfo.extra/],
    [{ object: "x" }, {}, /request.object must be an object or null/],
    [{ oldObject: [1] }, {}, /request.oldObject must be an object or null/],
    [{ options: 1 }, {}, /request.options must be an object or null/],
    [{ dryRun: "yes" }, {}, /request.dryRun must be a boolean/],
    [{ requestKind: { kind: 1 } }, {}, /request.requestKind/],
    [{ requestSubResource: {} }, {}, /request.requestSubResource must be a string/],
    [{ kind: { group: 1, version: "v1", kind: "ConfigMap" } }, {}, /request.kind.group must be a string/],
  ])("%j %j → 400", (over, ui, message) => {
    expect(refusal(review(over, ui))).toMatch(message);
  });
});

describe("Slack interaction payload shapes", () => {
  it("a payload Slack sends passes", () => {
    expect(
      payloadShapeError({
        type: "block_actions",
        user: { id: "U1", username: "u" },
        actions: [{ action_id: "approve", value: "ns/name", block_id: "b" }],
        response_url: "https://hooks.slack.com/x",
      }),
    ).toBeUndefined();
  });

  it.each([
    [null, /not a JSON object/],
    [[1], /not a JSON object/],
    [5, /not a JSON object/],
    [{ type: 1 }, /type must be a string/],
    [{ user: "U1" }, /user must be an object/],
    [{ user: { id: 1 } }, /user must be an object/],
    [{ actions: {} }, /actions must be a list/],
    [{ actions: [null] }, /each action/],
    [{ actions: [{ value: 5 }] }, /each action/],
    [{ actions: [{ block_id: [] }] }, /each action/],
    [{ response_url: {} }, /response_url must be a string/],
  ])("%j → %s", (payload, message) => {
    expect(payloadShapeError(payload)).toMatch(message);
  });
});

describe("the API server's webhook timeout, read from the review's URL", () => {
  it.each([
    ["/validate?timeout=12s", 12_000],
    ["/validate?timeout=5s&x=1", 5_000],
    ["/validate", 10_000],
    ["/validate?timeout=0s", 1_000],
    ["/validate?timeout=999s", 30_000],
    ["/validate?timeout=1m", 10_000],
    [undefined, 10_000],
  ])("%s → %i ms", (url, ms) => {
    expect(admissionTimeoutMs(url)).toBe(ms);
  });
});
