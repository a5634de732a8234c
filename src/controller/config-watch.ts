/**
 * Kubernetes never sends a ValidatingWebhookConfiguration's own changes to a webhook, so no
 * webhook can refuse the deletion of Countersign's. The controller (leader) watches its
 * webhook configurations instead (label app.kubernetes.io/part-of=countersign) and turns a
 * change of their webhooks, or their deletion, into an AuditRecord in the install namespace
 * and a Warning Event: switching the gate off leaves a trace. The caBundle, which Countersign
 * rotates itself, is not part of what counts as a change.
 */
import { createHash } from "node:crypto";
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type Informer,
  type KubeConfig,
  makeInformer,
  type ObjectCache,
  type V1ValidatingWebhookConfiguration,
} from "@kubernetes/client-node";
import { type ConfigAuditor, type WebhookConfigState, webhookConfigChange } from "../audit/config-audit.js";
import { describeKubeError } from "../kube/errors.js";
import { emitEvent } from "../kube/events.js";
import { restartOnError } from "../kube/informers.js";
import type { Logger } from "../logging/logger.js";
import { canonicalJson } from "../resources/canonical-json.js";
import { EventReason } from "../resources/event-reasons.js";

export const PART_OF_SELECTOR = "app.kubernetes.io/part-of=countersign";
/** What decides which requests reach Countersign, without the rotating caBundle. Pure. */
export function webhookConfigState(c: V1ValidatingWebhookConfiguration): WebhookConfigState {
  const webhooks = (c.webhooks ?? []).map((w) => {
    const { caBundle: _ca, ...clientConfig } = w.clientConfig ?? {};
    return { ...w, clientConfig };
  });
  return {
    name: c.metadata?.name ?? "",
    ...(c.metadata?.uid ? { uid: c.metadata.uid } : {}),
    ...(c.metadata?.generation !== undefined ? { generation: c.metadata.generation } : {}),
    hash: createHash("sha256").update(canonicalJson(webhooks)).digest("hex"),
  };
}

export interface ConfigWatchOptions {
  kubeConfig: KubeConfig;
  auditor: ConfigAuditor;
  isLeader: () => boolean;
  /** Countersign's own username (the actor of the records: it observed the change). */
  username: string;
  instance: string;
  logger: Logger;
}

export class WebhookConfigWatch {
  private readonly informer: Informer<V1ValidatingWebhookConfiguration> &
    ObjectCache<V1ValidatingWebhookConfiguration>;
  private readonly core: CoreV1Api;
  private readonly known = new Map<string, WebhookConfigState>();
  private stopped = false;

  constructor(private readonly opts: ConfigWatchOptions) {
    const api = opts.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.informer = makeInformer<V1ValidatingWebhookConfiguration>(
      opts.kubeConfig,
      "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
      () => api.listValidatingWebhookConfiguration({ labelSelector: PART_OF_SELECTOR }),
      PART_OF_SELECTOR,
    );
    this.informer.on("add", (c) => this.observe(c));
    this.informer.on("update", (c) => this.observe(c));
    this.informer.on("delete", (c) => this.observe(c, true));
    restartOnError(this.informer, "validatingwebhookconfigurations", opts.logger, () => this.stopped);
  }

  async start(): Promise<void> {
    await this.informer.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();
  }

  private observe(c: V1ValidatingWebhookConfiguration, deleted = false): void {
    const state = webhookConfigState(c);
    const before = this.known.get(state.name);
    if (deleted) this.known.delete(state.name);
    else this.known.set(state.name, state);
    if (!before) return; // first sight (start-up or a new configuration): the baseline
    if (!deleted && before.hash === state.hash && before.uid === state.uid) return;
    void this.record(before, deleted ? undefined : state);
  }

  private async record(before: WebhookConfigState, after: WebhookConfigState | undefined): Promise<void> {
    if (!this.opts.isLeader()) return;
    const change = webhookConfigChange(before, after, this.opts.username, new Date());
    const log = this.opts.logger.child({ webhookConfiguration: before.name });
    log.warn(
      after
        ? "Countersign's webhook configuration changed"
        : "Countersign's webhook configuration was deleted",
    );
    try {
      await this.opts.auditor.record(change);
    } catch (err) {
      log.error("could not record the webhook configuration change", { error: describeKubeError(err) });
    }
    await emitEvent(
      this.core,
      {
        target: {
          apiVersion: "admissionregistration.k8s.io/v1",
          kind: "ValidatingWebhookConfiguration",
          name: before.name,
          namespace: "",
          ...(before.uid ? { uid: before.uid } : {}),
        },
        reason: after ? EventReason.WebhookConfigurationChanged : EventReason.WebhookConfigurationDeleted,
        message: change.content.reason ?? "",
        type: "Warning",
        component: "controller",
        instance: this.opts.instance,
        dedupeKey: change.name,
        now: new Date(),
      },
      log,
    );
  }
}
