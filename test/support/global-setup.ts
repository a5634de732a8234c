/**
 * Starts one real control plane (etcd, kube-apiserver, kube-controller-manager on loopback)
 * for all integration tests and stops it afterwards. Test files attach to it with `attachControlPlane()`.
 */
import type { TestProject } from "vitest/node";
import { ControlPlane } from "../../src/controlplane/control-plane.js";

declare module "vitest" {
  export interface ProvidedContext {
    controlPlaneDir: string;
  }
}

let cp: ControlPlane | undefined;

export async function setup(project: TestProject): Promise<void> {
  // Webhooks with a Service clientConfig are reached through EndpointSlices (there is no
  // kube-proxy here): the chart tests publish the locally running webhook that way.
  cp = await ControlPlane.start({ extraApiServerArgs: ["--enable-aggregator-routing=true"] });
  console.log(
    `[countersign] control plane (etcd + kube-apiserver + kube-controller-manager) ready in ${cp.startupMs} ms at ${cp.server}`,
  );
  project.provide("controlPlaneDir", cp.dir);
}

export async function teardown(): Promise<void> {
  const t0 = Date.now();
  await cp?.stop();
  console.log(`[countersign] control plane stopped in ${Date.now() - t0} ms`);
}
