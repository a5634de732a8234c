/**
 * Red team 11 F6b, the pure part: when a break-glass approval is about to be used it must still
 * be offered, by the policy's rule as it is now, to a group its approver was in when deciding,
 * and be younger than BREAK_GLASS_USE_SECONDS (group membership is only checked when it is given).
 */
import { describe, expect, it } from "vitest";
import { BREAK_GLASS_USE_SECONDS, breakGlassLapse } from "../../src/approvals/lifecycle.js";
import { at, decision } from "../fixtures/approval-request.js";

const given = decision("olga", "Approve", {
  breakGlass: true,
  groups: ["system:authenticated", "sre-oncall"],
  time: at(0).toISOString(),
  reason: "checkout is down; rolling back now",
});

describe("break-glass approval at use time", () => {
  it("stands while the rule still names one of the approver's recorded groups and it is recent", () => {
    expect(breakGlassLapse(given, ["sre-oncall"], at(60))).toBeUndefined();
    expect(
      breakGlassLapse(given, ["db-oncall", "sre-oncall"], at(BREAK_GLASS_USE_SECONDS - 1)),
    ).toBeUndefined();
  });

  it("lapses when the rule no longer offers break-glass, or not to the approver's groups", () => {
    expect(breakGlassLapse(given, undefined, at(60))).toBe("the policy's rule no longer offers break-glass");
    expect(breakGlassLapse(given, [], at(60))).toBe("the policy's rule no longer offers break-glass");
    expect(breakGlassLapse(given, ["db-oncall"], at(60))).toBe(
      "the policy's rule no longer names a break-glass group olga was in when deciding (it names db-oncall)",
    );
  });

  it("lapses once it is BREAK_GLASS_USE_SECONDS old, or when its time is unknown", () => {
    expect(breakGlassLapse(given, ["sre-oncall"], at(BREAK_GLASS_USE_SECONDS))).toMatch(
      /usable for 15 minutes only \(group membership is checked only when it is given\)/,
    );
    const { time: _t, ...untimed } = given;
    expect(breakGlassLapse(untimed, ["sre-oncall"], at(60))).toMatch(/an unknown time/);
  });

  it("counts from when the controller recorded it Approved when the decider dated it later (red team 14)", () => {
    // Dated 2 minutes ahead (the guard's clock-skew allowance), recorded Approved at 0.
    const ahead = { ...given, time: at(120).toISOString() };
    const approvedAt = at(0).toISOString();
    expect(breakGlassLapse(ahead, ["sre-oncall"], at(BREAK_GLASS_USE_SECONDS + 60))).toBeUndefined();
    expect(breakGlassLapse(ahead, ["sre-oncall"], at(BREAK_GLASS_USE_SECONDS), approvedAt)).toMatch(
      /usable for 15 minutes only/,
    );
    expect(breakGlassLapse(given, ["sre-oncall"], at(60), approvedAt)).toBeUndefined();
  });
});
