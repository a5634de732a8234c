/**
 * Replay protection for Slack interactions that every webhook replica shares. A signed
 * Slack request is accepted once: the first replica to see a signature creates a marker
 * Lease in the install namespace whose name is derived from the signature; creating it again
 * fails with AlreadyExists, on this replica or any other, and that is a replay.
 *
 * Markers outlive the signature's validity: Slack's timestamp may be up to five minutes in
 * the past or future, so a marker is kept for twice that window and then swept (a periodic
 * LIST by label, off every request path; any replica may sweep, NotFound is fine).
 */
import { createHash } from "node:crypto";
import { CoordinationV1Api, type KubeConfig } from "@kubernetes/client-node";
import { isAlreadyExists, isNotFound } from "../kube/errors.js";
import type { Logger } from "../logging/logger.js";

export const REPLAY_MARKER_LABEL = "countersign.io/replay-marker";
export const REPLAY_MARKER_PREFIX = "slack-replay-";
/** How far a Slack request's timestamp may be from our clock (Slack's own recommendation). */
export const SLACK_MAX_SKEW_SECONDS = 300;

/** A signature is valid for ±SLACK_MAX_SKEW_SECONDS around its timestamp: keep markers that long twice. */
export const REPLAY_MARKER_TTL_SECONDS = 2 * SLACK_MAX_SKEW_SECONDS;
const SWEEP_INTERVAL_MS = 60_000;

/** The marker's name for a signature: deterministic, a valid DNS label, no secret material. Pure. */
export function replayMarkerName(signature: string): string {
  return `${REPLAY_MARKER_PREFIX}${createHash("sha256").update(signature).digest("hex").slice(0, 40)}`;
}

export interface ReplayGuard {
  /** True the first time a signature is claimed (by any replica), false for a replay. Throws when unsure. */
  claim(signature: string): Promise<boolean>;
  stop(): void;
}

/** A single process's memory (unit tests, tools); replicas do not share it. */
export function memoryReplayGuard(now: () => number = () => Date.now() / 1000): ReplayGuard {
  const seen = new Map<string, number>();
  return {
    async claim(signature) {
      for (const [sig, t] of seen) if (now() - t > REPLAY_MARKER_TTL_SECONDS) seen.delete(sig);
      if (seen.has(signature)) return false;
      seen.set(signature, now());
      return true;
    },
    stop() {},
  };
}

export class KubeReplayGuard implements ReplayGuard {
  private readonly leases: CoordinationV1Api;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    kubeConfig: KubeConfig,
    private readonly namespace: string,
    private readonly replica: string,
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.leases = kubeConfig.makeApiClient(CoordinationV1Api);
  }

  async claim(signature: string): Promise<boolean> {
    try {
      await this.leases.createNamespacedLease({
        namespace: this.namespace,
        body: {
          metadata: {
            name: replayMarkerName(signature),
            labels: { [REPLAY_MARKER_LABEL]: "slack" },
          },
          // creationTimestamp (set by the API server) is what the sweep reads.
          spec: { holderIdentity: this.replica },
        },
      });
      return true;
    } catch (err) {
      if (isAlreadyExists(err)) return false;
      throw err;
    }
  }

  /** Deletes expired markers now and every minute after. */
  startSweeping(): void {
    const tick = () => {
      this.sweep().catch((err: unknown) =>
        this.logger.warn("could not sweep Slack replay markers; retrying", {
          error: err instanceof Error ? err.message : String(err),
        }),
      );
    };
    tick();
    this.timer = setInterval(tick, SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  async sweep(): Promise<number> {
    const list = await this.leases.listNamespacedLease({
      namespace: this.namespace,
      labelSelector: `${REPLAY_MARKER_LABEL}=slack`,
    });
    const cutoff = this.now().getTime() - REPLAY_MARKER_TTL_SECONDS * 1000;
    let deleted = 0;
    for (const lease of list.items) {
      const created = lease.metadata?.creationTimestamp;
      if (!created || new Date(created).getTime() > cutoff) continue;
      try {
        await this.leases.deleteNamespacedLease({ name: lease.metadata!.name!, namespace: this.namespace });
        deleted++;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return deleted;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
