import { inject } from "vitest";
import { ControlPlane } from "../../src/controlplane/control-plane.js";

let attached: Promise<ControlPlane> | undefined;

/** The control plane the integration run's global setup started. */
export function attachControlPlane(): Promise<ControlPlane> {
  attached ??= ControlPlane.attach(inject("controlPlaneDir"));
  return attached;
}

/** A namespace name unique to this test run, so tests never see each other's objects. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}
