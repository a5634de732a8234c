/**
 * The console's decision surfaces, pure rendering: break-glass is offered on a request page only
 * to a member of the rule's break-glass groups (issue 14 item 2), and a group page shows every
 * member's whole diff and says the grouping is the objects' own unverified claim (red team 11 F2).
 */
import { describe, expect, it } from "vitest";
import type { RequestGroup } from "../../src/console/inbox.js";
import { groupBody, groupPage, groupsPage, type PageContext, requestPage } from "../../src/console/render.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { approvalRequest, T0 } from "../fixtures/approval-request.js";

const ctx = (groups: string[]): PageContext => ({
  nonce: "n0nce",
  csrf: "csrf-token",
  user: "olga@example.com",
  groups,
  cluster: "https://127.0.0.1:6443",
  now: T0,
});

function withName(name: string, diff: string, extra: Partial<ApprovalRequest["spec"]> = {}): ApprovalRequest {
  const ar = approvalRequest({ diff, ...extra }, { phase: "Pending" });
  return { ...ar, metadata: { ...ar.metadata, name } };
}

describe("console: break-glass on the request page", () => {
  const offered = withName("r1", "data.password: <redacted>", {
    approval: {
      ...approvalRequest().spec.approval,
      requiredApprovals: 2,
      breakGlass: { groups: ["sre-oncall"] },
    },
  });

  it("offers a member the break-glass form: its own reason, the flag, the phase-bound button", () => {
    const page = requestPage(ctx(["system:authenticated", "sre-oncall"]), offered, undefined).text;
    expect(page).toContain('id="break-glass-form"');
    expect(page).toContain('<input type="hidden" name="breakGlass" value="1">');
    expect(page).toContain('id="break-glass-reason" name="reason"');
    expect(page).toContain("at least 20 visible characters");
    expect(page).toMatch(
      /<button class="deny" name="decision" value="Approve" data-when="Pending">Break the glass<\/button>/,
    );
    expect(page).toContain("whatever its 2 required approvals");
  });

  it("tells a non-member who may, and offers no form", () => {
    const page = requestPage(ctx(["countersign:approvers"]), offered, undefined).text;
    expect(page).not.toContain("break-glass-form");
    expect(page).not.toContain('name="breakGlass"');
    expect(page).toContain("members of sre-oncall; you are not in it");
  });

  it("says nothing of break-glass when the rule offers none", () => {
    const page = requestPage(ctx(["sre-oncall"]), withName("r2", "x: 1"), undefined).text;
    expect(page).not.toMatch(/break-glass/i);
  });

  it("marks a break-glass decision in the request's decisions", () => {
    const decided = withName("r3", "x: 1");
    decided.spec.decisions = [
      {
        approver: "olga@example.com",
        decision: "Approve",
        breakGlass: true,
        reason: "payments down, rolling back",
      },
    ];
    expect(requestPage(ctx([]), decided, undefined).text).toContain(
      "Approve (BREAK-GLASS)</strong> by olga@example.com",
    );
  });
});

describe("console: a group page shows every member's diff (red team 11 F2)", () => {
  const harmless = withName("harmless", "data.color: blue → green");
  const dangerous = withName(
    "dangerous",
    'subjects[1]: + {"kind":"ServiceAccount","name":"ops-bot"}\nroleRef.name: view → cluster-admin <script>x</script>',
  );
  const huge = withName("huge", "…", { diffTruncated: true });
  const g: RequestGroup = {
    key: "k",
    requester: "system:serviceaccount:ai:bot",
    tool: "argocd",
    app: "payments",
    requests: [harmless, dangerous, huge],
    pending: 3,
  };

  it("renders each member's whole diff under its row, escaped, with its own id", () => {
    const body = groupBody(g, T0).text;
    expect(body).toContain("data.color: blue → green");
    expect(body).toContain("roleRef.name: view → cluster-admin &lt;script&gt;x&lt;/script&gt;");
    expect(body).not.toContain("<script>x");
    expect(body).toContain("Too large to show in full: cannot be approved.");
    const ids = [...body.matchAll(/<pre class="diff" id="([^"]+)"/g)].map((m) => m[1]);
    expect(ids).toHaveLength(2);
    expect(new Set(ids).size).toBe(2);
    // Every diff is open: nothing to expand before it can be read.
    expect(body.match(/<details open>/g)).toHaveLength(2);
  });

  it("says on the group and groups pages that the grouping is the objects' own, unverified claim", () => {
    for (const page of [groupPage(ctx([]), g).text, groupsPage(ctx([]), [g]).text]) {
      expect(page).toContain("Grouped by what the objects claim");
      expect(page).toContain("the agent too");
    }
    expect(groupPage(ctx([]), g).text).toContain("its approval covers exactly the diff shown under it");
  });

  it("names the labels or annotations the members' claim rests on", () => {
    const claimed = (ar: ApprovalRequest, marker: string): ApprovalRequest => ({
      ...ar,
      spec: { ...ar.spec, gitops: { tool: "argocd", app: "payments", marker } },
    });
    const page = groupPage(ctx([]), {
      ...g,
      requests: [
        claimed(harmless, "argocd.argoproj.io/tracking-id"),
        claimed(dangerous, "app.kubernetes.io/instance"),
        claimed(huge, "argocd.argoproj.io/tracking-id"),
      ],
    }).text;
    expect(page).toContain(
      '<dd id="group-markers">argocd.argoproj.io/tracking-id, app.kubernetes.io/instance</dd>',
    );
  });
});
