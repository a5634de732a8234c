import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  actionIdentity,
  canonicalObject,
  fingerprintOf,
  isNoOpUpdate,
  transitionHash,
  transitionOf,
} from "../../src/approvals/fingerprint.js";
import { FINGERPRINT_KEY_FIELD, keyFromSecretData } from "../../src/approvals/fingerprint-key.js";
import { judgeExecution } from "../../src/approvals/lifecycle.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import type { ApprovalRequest } from "../../src/resources/approval-request.js";
import { canonicalJson } from "../../src/resources/canonical-json.js";

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const b64 = (s: string) => Buffer.from(s).toString("base64");

const secret = (pin: string, uid = "s-uid") => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: {
    name: "db",
    namespace: "prod",
    uid,
    annotations: {
      "kubectl.kubernetes.io/last-applied-configuration": `{"data":{"pin":"${b64(pin)}"}}`,
    },
  },
  type: "Opaque",
  data: { pin: b64(pin) },
});

const secretReq = (over: Partial<AdmissionRequest>): AdmissionRequest => ({
  uid: "u",
  kind: { group: "", version: "v1", kind: "Secret" },
  resource: { group: "", version: "v1", resource: "secrets" },
  namespace: "prod",
  name: "db",
  operation: "CREATE",
  userInfo: { username: "system:serviceaccount:ai-agents:ops-bot" },
  ...over,
});

/** Every hash of one request as stored in an ApprovalRequest / AuditRecord. */
function storedHashes(r: AdmissionRequest, key: Uint8Array) {
  const t = transitionOf(r, key);
  const a = actionIdentity(r, t, key);
  return { objectHash: a.objectHash, transitionHash: a.transitionHash, fingerprint: fingerprintOf(a) };
}

const PINS = Array.from({ length: 10_000 }, (_, i) => String(i).padStart(4, "0"));

describe("Secret values are keyed before hashing (red team 9, finding 5)", () => {
  const key = randomBytes(32);
  const real = secretReq({ object: secret("4711") });
  const stored = storedHashes(real, key);

  it("a 4-digit Secret value cannot be recovered from the stored hashes without the key", () => {
    const found: string[] = [];
    const otherKey = randomBytes(32);
    for (const pin of PINS) {
      const guess = secretReq({ object: secret(pin) });
      // The old, unkeyed scheme ...
      if (sha256(canonicalJson(canonicalObject(guess.object))) === stored.objectHash)
        found.push(`plain ${pin}`);
      // ... and keyed with anything but the install's key.
      const g = storedHashes(guess, otherKey);
      if (g.objectHash === stored.objectHash) found.push(`objectHash ${pin}`);
      if (g.transitionHash === stored.transitionHash) found.push(`transitionHash ${pin}`);
      if (g.fingerprint === stored.fingerprint) found.push(`fingerprint ${pin}`);
      // The transition hashed without keying (the old scheme) does not match either.
      const plainT = { before: null, after: canonicalObject(guess.object) };
      if (transitionHash(plainT) === stored.transitionHash) found.push(`plain transition ${pin}`);
    }
    expect(found).toEqual([]);
    // 10,000 guesses x 5 hashes: ~1 s idle, past the 10 s unit default once on a machine loaded 10 deep.
  }, 60_000);

  it("with the key the hashes are deterministic and still bind the value", () => {
    expect(storedHashes(secretReq({ object: secret("4711") }), key)).toEqual(stored);
    const other = storedHashes(secretReq({ object: secret("4712") }), key);
    expect(other.objectHash).not.toBe(stored.objectHash);
    expect(other.transitionHash).not.toBe(stored.transitionHash);
    expect(other.fingerprint).not.toBe(stored.fingerprint);
  });

  it("the keyed transition carries no value and no plain hash of one", () => {
    const t = JSON.stringify(transitionOf(real, key));
    expect(t).not.toContain(b64("4711"));
    expect(t).not.toContain("4711");
    expect(t).not.toContain(sha256(b64("4711")));
    expect(t).toContain("hmac-sha256:");
  });

  it("a Secret UPDATE is a no-op only when the values are equal", () => {
    const same = secretReq({ operation: "UPDATE", oldObject: secret("4711"), object: secret("4711") });
    const changed = secretReq({ operation: "UPDATE", oldObject: secret("4711"), object: secret("4712") });
    expect(isNoOpUpdate(same, key)).toBe(true);
    expect(isNoOpUpdate(changed, key)).toBe(false);
    expect(isNoOpUpdate(changed)).toBe(false);
  });

  it("the controller's execution check of a Secret UPDATE uses the same key", () => {
    const upd = secretReq({ operation: "UPDATE", oldObject: secret("4711"), object: secret("4712") });
    const a = actionIdentity(upd, undefined, key);
    const ar = { spec: { action: { ...a, kind: "Secret", summary: "" } } } as unknown as ApprovalRequest;
    expect(judgeExecution(ar, secret("4712"), key).result).toBe("Executed");
    expect(judgeExecution(ar, secret("4711"), key).result).toBe("NotExecuted");
    expect(judgeExecution(ar, secret("4712"), randomBytes(32)).result).toBe("NotExecuted");
  });

  it("a key Secret without 32 bytes of key is refused with a clear error", () => {
    expect(() => keyFromSecretData(undefined)).toThrow(/countersign-fingerprint-key.*Delete the Secret/);
    expect(() => keyFromSecretData({ [FINGERPRINT_KEY_FIELD]: b64("short") })).toThrow(/32 random bytes/);
    const k = randomBytes(32);
    expect(Buffer.from(keyFromSecretData({ [FINGERPRINT_KEY_FIELD]: k.toString("base64") }))).toEqual(k);
  });
});
