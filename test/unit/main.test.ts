import { describe, expect, it } from "vitest";
import { parseSettings, UsageError } from "../../src/main.js";

describe("countersign entry point settings", () => {
  it("reads modes, flags and COUNTERSIGN_* variables", () => {
    const s = parseSettings(["controller", "--retention", "48h"], {
      COUNTERSIGN_LEASE_DURATION: "10s",
      POD_NAMESPACE: "cs",
    });
    expect(s).toMatchObject({
      mode: "controller",
      retentionSeconds: 172800,
      leaseDurationSeconds: 10,
      installNamespace: "cs",
      manageCertificates: true,
    });
    expect(parseSettings(["webhook"], { COUNTERSIGN_IDENTITIES: "a, b" }).identities).toEqual(["a", "b"]);
    expect(parseSettings(["all"], {}).port).toBe(8443);
    expect(parseSettings(["uninstall"], {}).mode).toBe("uninstall");
  });

  it("explains bad input instead of starting", () => {
    expect(() => parseSettings([], {})).toThrow(UsageError);
    expect(() => parseSettings(["serve"], {})).toThrow(/webhook, controller, all or uninstall, not "serve"/);
    expect(() => parseSettings(["webhook", "--port", "99999"], {})).toThrow(/--port/);
    expect(() => parseSettings(["webhook", "--retention", "1d"], {})).toThrow(
      /--retention: "1d" is not a duration/,
    );
    expect(() => parseSettings(["webhook", "--tls-cert-file", "a"], {})).toThrow(/go together/);
    expect(() => parseSettings(["webhook", "--bogus"], {})).toThrow(/bogus/);
  });
});
