/** Server-side apply of manifests (CRDs, sample policies, webhook configurations). */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadYaml,
  PatchStrategy,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";

export const FIELD_MANAGER = "countersign";

/** Parses a multi-document YAML string into objects, skipping empty documents. */
export function parseManifests(text: string, source = "<input>"): KubernetesObject[] {
  const out: KubernetesObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${source}: invalid YAML: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as KubernetesObject | null;
    if (value == null) continue;
    if (typeof value !== "object" || !value.apiVersion || !value.kind) {
      throw new Error(`${source}: every document needs apiVersion and kind`);
    }
    out.push(value);
  }
  return out;
}

export function readManifestDir(dir: string): KubernetesObject[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"))
    .sort()
    .flatMap((f) => parseManifests(readFileSync(join(dir, f), "utf8"), join(dir, f)));
}

export async function applyObjects(
  kc: KubeConfig,
  objects: KubernetesObject[],
  fieldManager = FIELD_MANAGER,
): Promise<KubernetesObject[]> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  const applied: KubernetesObject[] = [];
  for (const obj of objects) {
    // The client serializes built-in kinds through its typed models, which drop keys they do
    // not know by their wire names (a CRD's `x-kubernetes-validations` and
    // `x-kubernetes-preserve-unknown-fields`); loading the object into the model first keeps them.
    const typed = loadYaml<KubernetesObject>(JSON.stringify(obj));
    applied.push(
      await client.patch(typed, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
    );
  }
  return applied;
}

/** Applies every CRD in `dir` and waits until the API server reports them Established. */
export async function installCrds(kc: KubeConfig, dir: string, timeoutMs = 30_000): Promise<string[]> {
  const crds = readManifestDir(dir).filter((o) => o.kind === "CustomResourceDefinition");
  await applyObjects(kc, crds);
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const names = crds.map((c) => c.metadata?.name ?? "");
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const crd = await api.readCustomResourceDefinition({ name });
      const established = crd.status?.conditions?.some(
        (c) => c.type === "Established" && c.status === "True",
      );
      if (established) {
        // Established, but the new resource's storage may still answer 429 for a moment.
        const { group, names: n, versions } = crd.spec;
        const version = versions.find((v) => v.storage)?.name ?? versions[0]!.name;
        const listable = await custom
          .listClusterCustomObject({ group, version, plural: n.plural, limit: 1 })
          .then(
            () => true,
            () => false,
          );
        if (listable) break;
      }
      if (Date.now() > deadline) throw new Error(`CRD ${name} was not Established within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return names;
}
