/** Informers that keep running: client-node stops an informer on a watch error; restart it. */
import type { Informer, KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "../logging/logger.js";
import { describeKubeError } from "./errors.js";

const RESTART_DELAY_MS = 1000;

export function restartOnError<T extends KubernetesObject>(
  informer: Informer<T>,
  name: string,
  log: Logger,
  stopped: () => boolean,
): void {
  informer.on("error", (err: unknown) => {
    if (stopped()) return;
    log.warn("informer stopped; restarting", { informer: name, error: describeKubeError(err) });
    setTimeout(() => {
      if (stopped()) return;
      informer
        .start()
        .catch((e: unknown) => log.error("informer restart failed", { informer: name, error: String(e) }));
    }, RESTART_DELAY_MS);
  });
}
