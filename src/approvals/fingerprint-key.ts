/**
 * The per-install fingerprint key (see FingerprintKey in fingerprint.ts): a Secret in the
 * install namespace that only Countersign can read. Whichever process starts first creates it
 * (create; AlreadyExists → read); the webhook and the controller read it at start-up.
 *
 * If the Secret is deleted or its key changed, Secret fingerprints and objectHashes change:
 * open requests for Secrets no longer match and agents get new requests (fail safe).
 */
import { randomBytes } from "node:crypto";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { isAlreadyExists, isNotFound } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";
import type { FingerprintKey } from "./fingerprint.js";

export const FINGERPRINT_KEY_SECRET = "countersign-fingerprint-key";
export const FINGERPRINT_KEY_FIELD = "key";
const KEY_BYTES = 32;

/** The key from a Secret's data, or an error that says what is wrong. Pure. */
export function keyFromSecretData(data: Record<string, string> | undefined): FingerprintKey {
  const encoded = data?.[FINGERPRINT_KEY_FIELD];
  const key = typeof encoded === "string" ? Buffer.from(encoded, "base64") : Buffer.alloc(0);
  if (key.length < KEY_BYTES) {
    throw new Error(
      `Secret ${FINGERPRINT_KEY_SECRET} has no usable data.${FINGERPRINT_KEY_FIELD} (need at least ${KEY_BYTES} random bytes, base64). Delete the Secret and restart Countersign to create a new key (open requests for Secrets will be re-requested).`,
    );
  }
  return key;
}

/** Reads the install's fingerprint key, creating it if no process has yet. */
export async function loadFingerprintKey(
  kc: KubeConfig,
  namespace: string,
  log: Logger,
): Promise<FingerprintKey> {
  const core = kc.makeApiClient(CoreV1Api);
  const read = async () =>
    keyFromSecretData((await core.readNamespacedSecret({ name: FINGERPRINT_KEY_SECRET, namespace })).data);
  try {
    return await read();
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  try {
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: {
          name: FINGERPRINT_KEY_SECRET,
          labels: { "app.kubernetes.io/managed-by": "countersign" },
        },
        type: "Opaque",
        data: { [FINGERPRINT_KEY_FIELD]: randomBytes(KEY_BYTES).toString("base64") },
      },
    });
    log.info("created the fingerprint key", { secret: `${namespace}/${FINGERPRINT_KEY_SECRET}` });
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
  }
  return read();
}
