/**
 * Red-team 11 F7: before the first LIST of ApprovalPolicies the cache is empty, and an empty
 * policy set allows everything. A webhook reached before it is ready (anything that does not
 * route by readiness) must fail closed, not open.
 */
import { KubeConfig } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { handleAdmission } from "../../src/admission/handler.js";
import { componentLogger } from "../../src/logging/logger.js";
import { PolicyCache } from "../../src/policy/policy-cache.js";

function unsyncedCache(): PolicyCache {
  const kc = new KubeConfig();
  // Never contacted: the cache is not started.
  kc.loadFromOptions({
    clusters: [{ name: "c", server: "https://127.0.0.1:1", skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return new PolicyCache({ kubeConfig: kc, logger: componentLogger("policy-cache") });
}

const request = (username: string) =>
  ({
    uid: "uid-1",
    kind: { group: "", version: "v1", kind: "Secret" },
    resource: { group: "", version: "v1", resource: "secrets" },
    namespace: "prod",
    name: "db",
    operation: "DELETE",
    userInfo: { username, groups: ["system:serviceaccounts"] },
    oldObject: { metadata: { name: "db", namespace: "prod" } },
  }) as never;

describe("admission before the policy cache has synced", () => {
  const deps = (policies: PolicyCache) =>
    ({
      policies,
      gate: undefined,
      rbac: undefined,
      logger: componentLogger("admission"),
      countersignUsers: new Set(["system:serviceaccount:countersign:countersign"]),
    }) as never;

  it("denies an agent's request, saying Countersign is starting and to retry", async () => {
    const review = await handleAdmission(request("system:serviceaccount:agents:bot"), deps(unsyncedCache()));
    expect(review.response.uid).toBe("uid-1");
    expect(review.response.allowed).toBe(false);
    expect(review.response.status?.message).toMatch(/starting.*not loaded yet.*Nothing was changed.*Retry/);
  });
});
