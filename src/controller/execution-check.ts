/**
 * The execution check (the reconciler's last step for a Consumed request): shortly after the
 * webhook admitted an approved action, read its target and judge whether it took effect
 * (lifecycle.judgeExecution), emit an Event saying so, and record the verdict. This step is the
 * only writer of status.execution; it writes once, conditional on the resourceVersion read.
 */
import type { KubernetesObject, KubernetesObjectApi } from "@kubernetes/client-node";
import type { FingerprintKey } from "../approvals/fingerprint.js";
import { type ExecutionResult, judgeExecution } from "../approvals/lifecycle.js";
import { describeKubeError, isNotFound } from "../kube/errors.js";
import { kubeTime } from "../kube/time.js";
import type { Logger } from "../logging/logger.js";
import type { ApprovalRequest } from "../resources/approval-request.js";
import type { ApprovalRequestClient } from "../resources/client.js";
import { EventReason } from "../resources/event-reasons.js";

export interface ExecutionCheckOptions {
  requests: ApprovalRequestClient;
  objects: KubernetesObjectApi;
  /** The webhook's fingerprint key: a Secret's objectHash is keyed with it. */
  fingerprintKey?: FingerprintKey;
  now: () => Date;
  emit: (
    ar: ApprovalRequest,
    reason: string,
    message: string,
    type: "Normal" | "Warning",
    log: Logger,
  ) => Promise<void>;
}

export class ExecutionCheck {
  constructor(private readonly opts: ExecutionCheckOptions) {}

  async check(ar: ApprovalRequest, log: Logger): Promise<void> {
    const a = ar.spec.action;
    let target: KubernetesObject | undefined;
    let verdict: ExecutionResult;
    if (a.operation === "CONNECT" || a.subResource || !a.kind || (a.operation === "CREATE" && !a.name)) {
      verdict = judgeExecution(ar, undefined);
    } else {
      try {
        target = await this.opts.objects.read({
          apiVersion: a.group ? `${a.group}/${a.version}` : a.version,
          kind: a.kind,
          metadata: { name: a.name, ...(a.namespace ? { namespace: a.namespace } : {}) },
        });
        verdict = judgeExecution(ar, target, this.opts.fingerprintKey);
      } catch (err) {
        verdict = isNotFound(err)
          ? judgeExecution(ar, undefined)
          : { result: "Unknown", message: `could not read the target: ${describeKubeError(err)}` };
      }
    }
    const checkedAt = kubeTime(this.opts.now());
    const status = {
      ...ar.status,
      execution: { result: verdict.result, message: verdict.message, checkedAt },
    };
    // The Event first (deterministic name, so a retry after a crash does not repeat it), then
    // the status that records the check as done.
    if (verdict.result === "NotExecuted") {
      await this.opts.emit(
        ar,
        EventReason.NotExecuted,
        `The approved action did not take effect (${verdict.message}). The approval is used; the requester must request again.`,
        "Warning",
        log,
      );
    } else if (verdict.result === "Executed") {
      await this.opts.emit(
        ar,
        EventReason.Executed,
        `The approved action took effect: ${verdict.message}.`,
        "Normal",
        log,
      );
    }
    if ((await this.opts.requests.replaceStatus(ar, status)) === "conflict") return;
    log.info("execution checked", { result: verdict.result, detail: verdict.message });
  }
}
