/**
 * The console's live inbox sends deltas, not the whole table (issue 14 leftover), pure parts:
 * what changed between the snapshot a page has and the current one — counts, new or changed
 * rows, the order — while the countdown and age the page ticks itself are no change at all.
 */
import { describe, expect, it } from "vitest";
import { gitopsGroups, inboxView } from "../../src/console/inbox.js";
import { type InboxSnapshot, inboxDelta, inboxSnapshot } from "../../src/console/render.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { approvalRequest, at, decision } from "../fixtures/approval-request.js";

function pendingAt(name: string, created: number): ApprovalRequest {
  const ar = approvalRequest({}, { phase: "Pending" });
  return { ...ar, metadata: { ...ar.metadata, name, creationTimestamp: at(created) } };
}

const snap = (items: ApprovalRequest[], now: Date): InboxSnapshot =>
  inboxSnapshot(inboxView(items, {}, now), {}, gitopsGroups(items, now), now);

describe("console inbox deltas", () => {
  const a = pendingAt("a", 0);
  const b = pendingAt("b", 10);

  it("a page that has nothing yet gets the whole fragment; an unchanged inbox gets nothing", () => {
    const s = snap([a, b], at(20));
    expect(inboxDelta(undefined, s)).toBe("full");
    expect(inboxDelta(s, snap([a, b], at(20)))).toBeUndefined();
  });

  it("time passing is no change: the page ticks countdowns and ages itself", () => {
    const early = snap([a, b], at(20));
    const later = snap([a, b], at(95));
    expect(later.rows[0]!.html).not.toBe(early.rows[0]!.html); // the rendered texts did move
    expect(later.rows[0]!.html).toContain('data-age="2026-01-01T00:00:10.000Z"');
    expect(inboxDelta(early, later)).toBeUndefined();
  });

  it("a decision on one request sends that row only", () => {
    const approvedOnce = { ...b, spec: { ...b.spec, decisions: [decision("root", "Approve")] } };
    approvedOnce.spec.approval = { ...b.spec.approval, requiredApprovals: 2 };
    const before = snap([a, { ...b, spec: { ...b.spec, approval: approvedOnce.spec.approval } }], at(20));
    const d = inboxDelta(before, snap([a, approvedOnce], at(21)));
    expect(d).not.toBe("full");
    expect(Object.keys((d as { rows: object }).rows)).toEqual(["prod/b"]);
    expect(d).not.toHaveProperty("order");
    expect(d).not.toHaveProperty("head");
  });

  it("a new request sends its row, the new order and the counts; a decided one only the order and counts", () => {
    const c = pendingAt("c", 30);
    const two = snap([a, b], at(40));
    const three = snap([a, b, c], at(40));
    const added = inboxDelta(two, three) as Exclude<ReturnType<typeof inboxDelta>, "full" | undefined>;
    expect(added.order).toEqual(["prod/c", "prod/b", "prod/a"]);
    expect(Object.keys(added.rows)).toEqual(["prod/c"]);
    expect(added.head).toContain('<strong id="pending-count">3</strong>');
    const gone = inboxDelta(
      three,
      snap([a, c, { ...b, status: { phase: "Denied" } }], at(41)),
    ) as typeof added;
    expect(gone.order).toEqual(["prod/c", "prod/a"]);
    expect(gone.rows).toEqual({});
    expect(gone.head).toContain('<strong id="pending-count">2</strong>');
  });

  it("the table appearing or going is a whole swap", () => {
    const none = snap([], at(40));
    expect(inboxDelta(none, snap([a], at(40)))).toBe("full");
    expect(inboxDelta(snap([a], at(40)), none)).toBe("full");
  });

  it("with 1000 pending, one new request costs a row, not the table", () => {
    const many = Array.from({ length: 1000 }, (_, i) => pendingAt(`r-${i}`, i));
    const before = snap(many, at(2000));
    const after = snap([...many, pendingAt("new", 1500)], at(2001));
    const d = JSON.stringify(inboxDelta(before, after));
    expect(after.full.length).toBeGreaterThan(400_000);
    // The order (1001 keys) dominates; the table is 20x larger.
    expect(d.length * 20).toBeLessThan(after.full.length);
  });
});
