/**
 * Every ApprovalRequest in memory (an informer), for the gate: by (namespace, requester) for
 * the flood cap (issue 10), and by name so a retry reads its request without an API call
 * (issue 13). Requests this process has just created are added at once (the informer may lag
 * a burst by a few milliseconds). The cache may be stale; the gate never admits on what it
 * read here alone (gate.ts: consuming is a conditional write against the API server).
 */
import { type Informer, type KubeConfig, makeInformer, type ObjectCache } from "@kubernetes/client-node";
import { restartOnError } from "../kube/informers.js";
import type { Logger } from "../logging/logger.js";
import { type ApprovalRequest, Phase } from "../resources/approval-request.js";
import { CountersignClient } from "../resources/client.js";
import { effectivePhase } from "./lifecycle.js";

/** Whether a request still holds a slot: Pending, or Approved and not yet used, and unexpired. Pure. */
export function isOpen(ar: ApprovalRequest, now: Date): boolean {
  const phase = effectivePhase(ar, now);
  return phase === Phase.Pending || phase === Phase.Approved;
}

/** The open requests among `requests`, oldest first. Pure. */
export function openRequests(requests: Iterable<ApprovalRequest>, now: Date): ApprovalRequest[] {
  return [...requests]
    .filter((ar) => isOpen(ar, now))
    .sort((a, b) => (a.spec.approval.expiresAt < b.spec.approval.expiresAt ? -1 : 1));
}

/** The message a capped requester reads: how many, which ones, and how to free a slot. Pure. */
export function cappedMessage(args: {
  username: string;
  namespace: string;
  open: readonly ApprovalRequest[];
  limit: number;
  policy: string;
  rule: string;
}): string {
  const { open, namespace } = args;
  const shown = open.slice(0, 5).map((ar) => ar.metadata.name);
  const more = open.length > shown.length ? ` and ${open.length - shown.length} more` : "";
  const earliest = open[0]?.spec.approval.expiresAt;
  return (
    `Countersign: ${args.username} already has ${open.length} open ApprovalRequests in namespace ${namespace} ` +
    `(the limit is ${args.limit}, ApprovalPolicy ${args.policy}, rule ${args.rule}): ${shown.join(", ")}${more}. ` +
    `Nothing was created and nothing was changed. A slot frees when an approver decides one ` +
    `(kubectl approve|deny NAME -n ${namespace}), when an approved one is used by retrying its action, ` +
    `or when one expires${earliest ? ` (the first at ${earliest})` : ""}. ` +
    `See them: kubectl approvals list -n ${namespace}`
  );
}

/** True when `a` is known to be an older version than `b` (etcd resourceVersions are integers). */
function olderThan(a: ApprovalRequest, b: ApprovalRequest): boolean {
  const ra = Number(a.metadata.resourceVersion);
  const rb = Number(b.metadata.resourceVersion);
  return Number.isFinite(ra) && Number.isFinite(rb) && ra < rb;
}

const key = (namespace: string, username: string) => `${namespace}\u0000${username}`;

export class OpenRequestIndex {
  private readonly informer: Informer<ApprovalRequest> & ObjectCache<ApprovalRequest>;
  private readonly byRequester = new Map<string, Map<string, ApprovalRequest>>();
  private readonly byName = new Map<string, ApprovalRequest>();
  private stopped = false;
  private synced = false;

  constructor(kc: KubeConfig, log: Logger) {
    const requests = CountersignClient.fromKubeConfig(kc).approvalRequests;
    this.informer = makeInformer<ApprovalRequest>(kc, requests.informerPath, requests.listForInformer);
    this.informer.on("add", (ar) => this.note(ar));
    this.informer.on("update", (ar) => this.note(ar));
    this.informer.on("delete", (ar) => this.forget(ar));
    restartOnError(this.informer, "approvalrequests", log, () => this.stopped);
  }

  async start(): Promise<void> {
    await this.informer.start();
    this.synced = true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();
  }

  isSynced(): boolean {
    return this.synced;
  }

  /**
   * Records a request (from the informer, or one this process just created). Its
   * managedFields are dropped first (in the informer's copy too: the same object): nothing here
   * reads them, they were half of a cached request's heap (5.2 -> 2.5 KiB, bench:memory), and a status write
   * from this copy keeps the stored ones (the API server keeps managedFields a write omits).
   */
  note(ar: ApprovalRequest): void {
    const meta = ar.metadata as { managedFields?: unknown };
    if (meta.managedFields) delete meta.managedFields;
    const nameKey = key(ar.metadata.namespace, ar.metadata.name);
    const known = this.byName.get(nameKey);
    if (!known || !olderThan(ar, known)) this.byName.set(nameKey, ar);
    const username = ar.spec?.requester?.username;
    if (!username) return;
    const k = key(ar.metadata.namespace, username);
    let m = this.byRequester.get(k);
    if (!m) {
      m = new Map();
      this.byRequester.set(k, m);
    }
    const prev = m.get(ar.metadata.name);
    // Keep the newer of two versions (a just-created object may race its own informer event).
    if (!prev || !olderThan(ar, prev)) m.set(ar.metadata.name, ar);
  }

  private forget(ar: ApprovalRequest): void {
    this.byName.delete(key(ar.metadata.namespace, ar.metadata.name));
    const username = ar.spec?.requester?.username;
    if (!username) return;
    const k = key(ar.metadata.namespace, username);
    const m = this.byRequester.get(k);
    m?.delete(ar.metadata.name);
    if (m?.size === 0) this.byRequester.delete(k);
  }

  /** The request as this cache last saw it (undefined: not seen, or deleted). In memory. */
  get(namespace: string, name: string): ApprovalRequest | undefined {
    return this.byName.get(key(namespace, name));
  }

  /** The requester's open requests in the namespace, oldest first. In memory. */
  open(namespace: string, username: string, now: Date): ApprovalRequest[] {
    return openRequests(this.byRequester.get(key(namespace, username))?.values() ?? [], now);
  }
}
