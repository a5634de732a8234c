/**
 * A policy that got past apply-time validation (created while Countersign's webhook was not
 * registered) is not enforced, and says why in its status — naming the field.
 */
import { CustomObjectsApi } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { componentLogger } from "../../src/logging/logger.js";
import { PolicyCache } from "../../src/policy/policy-cache.js";
import type { ApprovalPolicy } from "../../src/resources/approval-policy.js";
import { gvr, POLICY_PLURAL } from "../../src/resources/group.js";
import { approvalPolicy } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import { eventually } from "../support/countersign.js";

const G = gvr(POLICY_PLURAL);
let cp: ControlPlane;
let cache: PolicyCache;
const name = uniqueName("status-policy");

beforeAll(async () => {
  cp = await attachControlPlane();
  cache = new PolicyCache({
    kubeConfig: cp.adminKubeConfig(),
    logger: componentLogger("policy-status-test"),
    writeStatus: true,
    lookups: false,
  });
  await cache.start();
});

afterAll(async () => {
  await cache.stop();
  await cp
    .adminKubeConfig()
    .makeApiClient(CustomObjectsApi)
    .deleteClusterCustomObject({ ...G, name })
    .catch(() => undefined);
});

describe("policy status", () => {
  it("reports Ready=False with the field for invalid CEL, skips the policy, and Ready=True once fixed", async () => {
    const custom = cp.adminKubeConfig().makeApiClient(CustomObjectsApi);
    await custom.createClusterCustomObject({
      ...G,
      body: approvalPolicy(name, {
        subjects: { users: ["bot"] },
        rules: [{ name: "r", action: "Deny", condition: "request.nmae == 'x'" }],
      }),
    });
    const get = async () => (await custom.getClusterCustomObject({ ...G, name })) as ApprovalPolicy;
    const invalid = await eventually(
      async () => {
        const p = await get();
        const ready = p.status?.conditions?.find((c) => c.type === "Ready");
        return ready?.status === "False" ? ready : undefined;
      },
      10_000,
      "Ready=False",
    );
    expect(invalid.reason).toBe("InvalidPolicy");
    expect(invalid.message).toMatch(/spec\.rules\[0\]\.condition: request has no field 'nmae'/);
    expect(cache.list().some((p) => p.name === name)).toBe(false);

    const p = await get();
    p.spec.rules[0]!.condition = "request.name == 'x'";
    await custom.replaceClusterCustomObject({ ...G, name, body: p });
    const ok = await eventually(
      async () => {
        const q = await get();
        const ready = q.status?.conditions?.find((c) => c.type === "Ready");
        return ready?.status === "True" ? q : undefined;
      },
      10_000,
      "Ready=True",
    );
    expect(ok.status?.observedGeneration).toBe(ok.metadata.generation);
    expect(cache.list().some((x) => x.name === name)).toBe(true);
  });
});
