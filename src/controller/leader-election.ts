/**
 * Leader election with a coordination.k8s.io Lease, like client-go's: acquire the lease when
 * it is free or its holder stopped renewing for leaseDuration; renew every renewInterval
 * with a conditional update; stop leading as soon as a renewal fails past the deadline.
 */
import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from "@kubernetes/client-node";
import { describeKubeError, isAlreadyExists, isConflict, isNotFound } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";

export interface LeaderElectionOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  renewIntervalMs?: number;
  logger: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private stopped = false;
  private lastRenew = 0;
  private readonly durationS: number;
  private readonly renewMs: number;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.api = opts.kubeConfig.makeApiClient(CoordinationV1Api);
    this.durationS = opts.leaseDurationSeconds ?? 15;
    this.renewMs = opts.renewIntervalMs ?? Math.max(500, (this.durationS * 1000) / 3);
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    void this.tick();
  }

  /** Stops campaigning; when leading, releases the lease so another replica takes over at once. */
  async stop(release = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.leading) {
      this.setLeading(false);
      if (release) {
        try {
          const lease = await this.api.readNamespacedLease({
            name: this.opts.name,
            namespace: this.opts.namespace,
          });
          if (lease.spec?.holderIdentity === this.opts.identity) {
            lease.spec.holderIdentity = undefined;
            lease.spec.acquireTime = undefined;
            lease.spec.renewTime = undefined;
            await this.api.replaceNamespacedLease({
              name: this.opts.name,
              namespace: this.opts.namespace,
              body: lease,
            });
          }
        } catch {
          // best effort: the lease expires on its own
        }
      }
    }
  }

  private setLeading(on: boolean): void {
    if (on === this.leading) return;
    this.leading = on;
    this.opts.logger.info(on ? "started leading" : "stopped leading", {
      lease: `${this.opts.namespace}/${this.opts.name}`,
    });
    if (on) this.opts.onStartedLeading();
    else this.opts.onStoppedLeading();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      const ok = await this.tryAcquireOrRenew();
      if (ok) this.lastRenew = Date.now();
      if (ok) this.setLeading(true);
      else if (this.leading && Date.now() - this.lastRenew > this.durationS * 1000) this.setLeading(false);
      else if (!ok && this.leading) this.setLeading(false);
    } catch (err) {
      this.opts.logger.warn("lease update failed", { error: describeKubeError(err) });
      if (this.leading && Date.now() - this.lastRenew > this.durationS * 1000 * 0.8) this.setLeading(false);
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.renewMs);
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const now = new V1MicroTime();
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: this.durationS,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
        });
        return true;
      } catch (e) {
        if (isAlreadyExists(e)) return false;
        throw e;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity;
    const renewed = spec.renewTime ? new Date(spec.renewTime as unknown as string).getTime() : 0;
    const duration = (spec.leaseDurationSeconds ?? this.durationS) * 1000;
    const expired = !holder || Date.now() > renewed + duration;
    if (holder !== identity && !expired) return false;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: this.durationS,
      renewTime: now,
      ...(holder !== identity
        ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }
        : {}),
    };
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body: lease });
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }
}
