import { describe, expect, it } from "vitest";
import { checkDecision } from "../../src/approvals/decisions.js";
import {
  breakGlassApproval,
  computePhase,
  isBreakGlass,
  usableApproval,
  visibleLength,
} from "../../src/approvals/lifecycle.js";
import { expectedAuditEvents } from "../../src/controller/approval-request-plan.js";
import { type NotificationConfig, routesFor, webhookMessage } from "../../src/notify/messages.js";
import { compilePolicy } from "../../src/policy/compile.js";
import type { ApprovalRequest, Decision } from "../../src/resources/approval-request.js";
import { approvalPolicy, requireApproval } from "../fixtures/approval-policy.js";
import { approvalRequest, REQUESTER } from "../fixtures/approval-request.js";

const NOW = new Date("2026-01-01T00:10:00Z");
const REASON = "prod is down, customers cannot log in";

/** A request for three approvals from group approvers that the group sre-oncall may break-glass. */
function ar(decisions: Decision[], status?: ApprovalRequest["status"]): ApprovalRequest {
  const base = approvalRequest();
  return approvalRequest(
    {
      fingerprint: "f".repeat(64),
      requester: { username: REQUESTER },
      approval: {
        ...base.spec.approval,
        approvers: { groups: ["approvers"] },
        requiredApprovals: 3,
        breakGlass: { groups: ["sre-oncall"] },
      },
      decisions,
    },
    status,
  );
}

const glass = (over: Partial<Decision> = {}): Decision => ({
  approver: "olga",
  groups: ["sre-oncall"],
  decision: "Approve",
  reason: REASON,
  breakGlass: true,
  ...over,
});

describe("break-glass in the lifecycle", () => {
  it("one valid break-glass approval approves a request that needs three", () => {
    const r = ar([glass()]);
    expect(isBreakGlass(r.spec, glass())).toBe(true);
    const phase = computePhase(r, NOW);
    expect(phase).toMatchObject({ phase: "Approved", reason: "BreakGlass" });
    expect(phase.message).toMatch(/break-glass approval by olga: prod is down/);
    expect(expectedAuditEvents(r, "Approved")).toEqual(["Requested", "Approved"]);
    const approved = ar([glass()], { phase: "Approved" });
    expect(usableApproval(approved, "f".repeat(64), NOW)).toEqual({ usable: true });
  });

  it("counts nothing extra for a mark that does not hold: short reason, other groups, the requester, unmarked", () => {
    for (const d of [
      glass({ reason: "too short, sorry" }),
      glass({ groups: ["approvers"] }),
      glass({ approver: "system:serviceaccount:ai:bot" }),
      glass({ breakGlass: false }),
    ]) {
      expect(isBreakGlass(ar([d]).spec, d)).toBe(false);
      expect(computePhase(ar([d]), NOW).phase).toBe("Pending");
    }
    expect(
      usableApproval(ar([glass({ reason: "short" })], { phase: "Approved" }), "f".repeat(64), NOW),
    ).toMatchObject({ usable: false, why: "it has 1 of 3 required approvals" });
  });

  it("notifies every route, whatever the rule's notify list and the routes' event filters, saying break-glass", () => {
    const config: NotificationConfig = {
      routes: [
        { name: "approvers", type: "webhook", url: "https://a.example" },
        { name: "security", type: "webhook", url: "https://s.example", events: ["Requested"] },
      ],
      defaultRoutes: ["approvers"],
    } as NotificationConfig;
    const r = ar([glass()], { phase: "Approved" });
    expect(breakGlassApproval(r.spec)?.approver).toBe("olga");
    expect(routesFor(r, "Approved", config).map((x) => x.name)).toEqual(["approvers", "security"]);
    expect(webhookMessage(r, "Approved")).toMatchObject({ breakGlass: true, decidedBy: `olga: ${REASON}` });
    // An ordinary approval keeps to the configured routes.
    const normal = ar([{ approver: "a", decision: "Approve" }], { phase: "Approved" });
    expect(routesFor(normal, "Approved", config).map((x) => x.name)).toEqual(["approvers"]);
  });

  it("a policy cannot make machines or everyone a break-glass group", () => {
    const policy = (groups: string[]) =>
      compilePolicy(
        approvalPolicy(
          "p",
          {
            subjects: { groups: ["agents"] },
            rules: [requireApproval("r", { groups: ["approvers"], breakGlass: { groups } })],
          },
          1,
        ),
      );
    expect(policy(["sre-oncall"])).toMatchObject({ ok: true });
    for (const g of ["system:authenticated", "system:serviceaccounts:ai", "system:masters"])
      expect(policy([g])).toMatchObject({ ok: false });
  });
});

describe("break-glass reason: only visible characters count", () => {
  // Red-team finding: 20 zero-width spaces passed a `.trim().length >= 20` check.
  const invisible = [
    ["zero-width spaces (Cf)", "\u200B".repeat(20)],
    ["other format characters (Cf)", "\u200C\u200D\u2060\uFEFF\u202E\u2066\u00AD".repeat(4)],
    ["controls (Cc)", "\u0001\u0007\u001B\u007F\u0085".repeat(5)],
    ["space runs (Zs) around a few letters", `ok${"\u3000\u00A0\u2003 ".repeat(10)}go${"\u2009".repeat(20)}`],
    ["blank letters and combining marks", "\u3164\u2800\u115F\u0301\u034F".repeat(5)],
  ] as const;

  it.each(invisible)("%s do not make a reason", (_, reason) => {
    expect(visibleLength(reason)).toBeLessThan(20);
    const d = glass({ reason });
    expect(isBreakGlass(ar([d]).spec, d)).toBe(false);
    expect(computePhase(ar([d]), NOW)).toMatchObject({ phase: "Pending" });
    expect(breakGlassApproval(ar([d]).spec)).toBeUndefined();
  });

  it("counts what a reader sees: one per character, one per whitespace run between words", () => {
    expect(visibleLength("  urgent!  ")).toBe(7);
    expect(visibleLength("a \u200B\u3000 b")).toBe(3);
    expect(visibleLength("e\u0301t\u00E9")).toBe(3);
    expect(visibleLength(REASON)).toBe(REASON.length);
    // Invisible padding around a real reason neither helps nor hurts it.
    const padded = glass({ reason: `\u200B${REASON}\u200B` });
    expect(isBreakGlass(ar([padded]).spec, padded)).toBe(true);
  });

  it("the decision check refuses it with break-glass-reason and the visible count", () => {
    const olga = { username: "olga", uid: "u-olga", groups: ["sre-oncall"] };
    const r = checkDecision({
      request: ar([]),
      decider: olga,
      decision: {
        ...glass({ reason: "\u200B".repeat(25) }),
        uid: "u-olga",
        via: "kubectl",
        time: "2026-01-01T00:10:00Z",
      },
      now: NOW,
      writtenBy: "decider",
    });
    expect(r).toMatchObject({ ok: false, refusal: { code: "break-glass-reason", length: 0 } });
  });
});
