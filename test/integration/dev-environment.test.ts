/**
 * `npm run dev -- --demo`: the dev environment's whole story with the real kubectl and the
 * kubectl plugins, on its own control plane: denied → approved → allowed once → audit.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../src/controlplane/binaries.js";

describe("npm run dev", () => {
  it("runs the end-to-end story: agent denied, kubectl approve, retried once, audit trail verified", async () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-dev-"));
    try {
      const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          ["--import", "tsx", join(REPO_ROOT, "src", "dev", "main.ts"), "--demo", "--exit", "--dir", dir],
          {
            env: { ...process.env, COUNTERSIGN_LOG_LEVEL: "warn" },
            cwd: REPO_ROOT,
          },
        );
        let text = "";
        child.stdout.on("data", (c) => (text += c));
        child.stderr.on("data", (c) => (text += c));
        child.on("exit", (code) => resolve({ code, text }));
      });
      expect(out.text).toMatch(/denied the request: Countersign: this action needs a human approval/);
      expect(out.text).toMatch(/approved prod\/delete-secrets-db-creds-[0-9a-f]{12} \(1\/1 approvals\)/);
      expect(out.text).toMatch(/secret "db-creds" deleted/);
      expect(out.text).toMatch(/Approved\s+alice@example.com via kubectl/);
      expect(out.text).toMatch(/prod: OK, \d+ records, chain intact/);
      // What Countersign shows an approver never contains the Secret's value.
      const show = out.text.slice(out.text.indexOf("$ kubectl approvals show"));
      const showBlock = show.slice(0, show.indexOf("\n$ ", 1));
      expect(showBlock).toContain("Secret values redacted");
      expect(showBlock).not.toContain("s3cr3t");
      expect(out.code, out.text.slice(-2000)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
