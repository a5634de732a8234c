/**
 * Locates (and on first use builds) the control-plane binaries through
 * hack/controlplane/build.sh, which caches them by version outside the repo.
 */
import { execFile } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface ControlPlaneBinaries {
  kubeApiserver: string;
  kubeControllerManager: string;
  kubectl: string;
  etcd: string;
  helm: string;
}

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BUILD_SCRIPT = join(REPO_ROOT, "hack", "controlplane", "build.sh");

let cached: Promise<ControlPlaneBinaries> | undefined;

export function controlPlaneBinaries(): Promise<ControlPlaneBinaries> {
  cached ??= locate();
  return cached;
}

async function locate(): Promise<ControlPlaneBinaries> {
  let stdout: string;
  try {
    ({ stdout } = await run("bash", [BUILD_SCRIPT, "--print-env"], {
      maxBuffer: 1 << 20,
      timeout: 60 * 60 * 1000,
    }));
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(
      `could not build or locate the control-plane binaries (${BUILD_SCRIPT}):\n${stderr || String(err)}`,
    );
  }
  const env = Object.fromEntries(
    stdout
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  const need = (k: string) => {
    const v = env[k];
    if (!v) throw new Error(`${BUILD_SCRIPT} --print-env did not print ${k}`);
    return v;
  };
  return {
    kubeApiserver: need("KUBE_APISERVER"),
    kubeControllerManager: need("KUBE_CONTROLLER_MANAGER"),
    kubectl: need("KUBECTL"),
    etcd: need("ETCD"),
    helm: need("HELM"),
  };
}
