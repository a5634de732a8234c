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
    const ca = { COUNTERSIGN_ADMISSION_CLIENT_CA_FILE: "/etc/countersign/admission-client/ca.crt" };
    expect(parseSettings(["webhook"], { ...ca, COUNTERSIGN_IDENTITIES: "a, b" }).identities).toEqual([
      "a",
      "b",
    ]);
    expect(parseSettings(["all"], ca)).toMatchObject({
      port: 8443,
      apiPort: 8444,
      admissionAuth: "client-cert",
    });
    expect(parseSettings(["all"], ca)).toMatchObject({ healthPort: 8081, maxInFlightReviews: 128 });
    expect(
      parseSettings(["webhook", "--health-port", "0"], { ...ca, COUNTERSIGN_MAX_IN_FLIGHT_REVIEWS: "16" }),
    ).toMatchObject({ healthPort: 0, maxInFlightReviews: 16 });
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
    expect(() => parseSettings(["webhook", "--max-in-flight-reviews", "0"], {})).toThrow(
      /--max-in-flight-reviews: "0" is not a whole number of at least 1/,
    );
    expect(() => parseSettings(["webhook", "--max-in-flight-reviews", "2.5"], {})).toThrow(
      /--max-in-flight-reviews/,
    );
    expect(() => parseSettings(["webhook", "--health-port", "8443"], {})).toThrow(
      /--port and --health-port must differ/,
    );
  });

  it("refuses to serve admission to unauthenticated callers unless told the port is fenced", () => {
    // The safe default: client-cert mode, and it needs the CA of the API server's client certificate.
    expect(() => parseSettings(["webhook"], {})).toThrow(/--admission-client-ca-file/);
    expect(() => parseSettings(["all"], {})).toThrow(/--admission-auth=network/);
    // The controller serves no admission, so it needs none.
    expect(parseSettings(["controller"], {}).mode).toBe("controller");
    const s = parseSettings(
      [
        "webhook",
        "--admission-client-ca-file",
        "/ca.pem",
        "--admission-client-names",
        "kube-apiserver, apiserver-2",
      ],
      {},
    );
    expect(s).toMatchObject({
      admissionAuth: "client-cert",
      admissionClientCaFile: "/ca.pem",
      admissionClientNames: ["kube-apiserver", "apiserver-2"],
    });
    expect(parseSettings(["webhook"], { COUNTERSIGN_ADMISSION_AUTH: "network" }).admissionAuth).toBe(
      "network",
    );
    expect(() => parseSettings(["webhook", "--admission-auth", "none"], {})).toThrow(
      /--admission-auth must be client-cert or network, not "none"/,
    );
    expect(() =>
      parseSettings(["webhook", "--admission-auth", "network", "--admission-client-ca-file", "/ca.pem"], {}),
    ).toThrow(/apply only to --admission-auth=client-cert/);
  });

  it("serves admission, the approval API and metrics on separate ports", () => {
    const net = { COUNTERSIGN_ADMISSION_AUTH: "network" };
    expect(parseSettings(["webhook", "--api-port", "0"], net).apiPort).toBe(0);
    expect(() => parseSettings(["webhook", "--api-port", "8443"], net)).toThrow(
      /--port and --api-port must differ \(both 8443\)/,
    );
    expect(() => parseSettings(["webhook", "--metrics-port", "8444"], net)).toThrow(
      /--api-port and --metrics-port must differ/,
    );
    expect(() => parseSettings(["webhook", "--api-port", "x"], net)).toThrow(/--api-port: "x" is not a port/);
  });
});
