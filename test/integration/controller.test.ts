/**
 * The reconciler under failure, through a real kube-apiserver: crashes between its steps,
 * two replicas with leader election, garbage collection after the retention.
 */
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { AdmissionregistrationV1Api, CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyChain } from "../../src/audit/chain.js";
import { ApprovalRequestReconciler } from "../../src/controller/reconciler.js";
import type { ControlPlane } from "../../src/controlplane/control-plane.js";
import { kubeStatusOf } from "../../src/kube/errors.js";
import { componentLogger } from "../../src/logging/logger.js";
import { createCertificateAuthority, issueCertificate } from "../../src/pki/certificates.js";
import { decide, listAuditRecords } from "../../src/plugin/commands.js";
import { APPROVERS_GROUP, deleteGuard, requireApproval } from "../fixtures/approval-policy.js";
import { attachControlPlane, uniqueName } from "../support/control-plane.js";
import {
  approverIdentity,
  countersignIdentity,
  eventually,
  startTestCountersign,
  type TestCountersign,
} from "../support/countersign.js";
import {
  agentIdentity,
  applyPolicies,
  approvalRequestsIn,
  requestNamed,
  untilRefused,
} from "../support/scenario.js";

const agentsNs = uniqueName("agents");
const ns = uniqueName("ops");
const installNamespace = uniqueName("cs-ctl");
const LEASE_SECONDS = 3;
let cp: ControlPlane;
let cs: TestCountersign;
let self: KubeConfig;
let agent: KubeConfig;
let alice: KubeConfig;
const controllers: ApprovalRequestReconciler[] = [];

function newController(
  name: string,
  extra: Partial<ConstructorParameters<typeof ApprovalRequestReconciler>[0]> = {},
): ApprovalRequestReconciler {
  const c = new ApprovalRequestReconciler({
    kubeConfig: self,
    installNamespace,
    identity: name,
    username: `system:serviceaccount:${installNamespace}:countersign`,
    leaseDurationSeconds: LEASE_SECONDS,
    retentionSeconds: 3600,
    logger: componentLogger("controller", { replica: name }),
    siemLogger: componentLogger("audit", { replica: name }),
    ...extra,
  });
  controllers.push(c);
  return c;
}

const requests = () => approvalRequestsIn(cp, ns);
const getAr = (name: string) => requests().client.get(ns, name);

async function requestDelete(secret: string): Promise<string> {
  await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedSecret({ namespace: ns, body: { metadata: { name: secret }, stringData: { k: "v" } } });
  try {
    await agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: secret, namespace: ns });
  } catch (err) {
    const name = requestNamed(kubeStatusOf(err)?.message ?? "", true);
    if (name) return name;
    throw err;
  }
  throw new Error("expected a denial");
}

async function waitLeader(
  cs: ApprovalRequestReconciler[],
  timeoutMs = 15_000,
): Promise<ApprovalRequestReconciler> {
  return eventually(
    async () => {
      const leaders = cs.filter((c) => c.isLeader());
      expect(leaders.length).toBeLessThanOrEqual(1);
      return leaders[0];
    },
    timeoutMs,
    "a leader",
  );
}

beforeAll(async () => {
  cp = await attachControlPlane();
  await cp.ensureNamespace(ns);
  await cp.ensureNamespace(installNamespace);
  self = await countersignIdentity(cp, installNamespace);
  const id = await agentIdentity(cp, agentsNs, "ops-bot", {
    target: ns,
    resources: ["secrets"],
    verbs: ["get", "delete"],
  });
  agent = id.kubeConfig;
  alice = await approverIdentity(cp, "alice@example.com", [APPROVERS_GROUP]);
  // The webhook only: controllers are started by the tests themselves.
  cs = await startTestCountersign(cp, {
    subjects: { serviceAccountNamespaces: [agentsNs] },
    installNamespace,
    webhookName: "countersign-controller-test",
    controller: false,
  });
  await applyPolicies(cp, cs, [
    deleteGuard(uniqueName("ops-guard"), {
      agents: agentsNs,
      namespace: ns,
      rules: [
        requireApproval(
          "short",
          { groups: [APPROVERS_GROUP], ttl: "2s" },
          "request.name.startsWith('short-')",
        ),
        requireApproval(
          "deletes",
          { groups: [APPROVERS_GROUP], ttl: "1h" },
          "!request.name.startsWith('short-')",
        ),
      ],
    }),
  ]);
  // (a DELETE of an object that does not exist never reaches admission, so probe a real one)
  await cp
    .adminKubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedSecret({ namespace: ns, body: { metadata: { name: "probe" } } });
  await untilRefused(
    () =>
      agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: "probe", namespace: ns, dryRun: "All" }),
    /needs approval/,
  );
});

afterAll(async () => {
  for (const c of controllers) await c.stop(false);
  await cs?.stop();
});

describe("the reconciler", () => {
  for (const step of ["audit", "events", "status"] as const) {
    it(`a crash right after the ${step} step of a decision, then a restart, leaves one complete chain, no duplicate Events, the right phase`, async () => {
      const first = newController(`crash-${step}-a`);
      await first.start();
      await waitLeader([first]);
      const name = await requestDelete(uniqueName(`crash-${step}`));
      await eventually(async () => (await getAr(name))?.status?.phase === "Pending", 10_000, "Pending");

      let crashed!: () => void;
      const crash = new Promise<void>((r) => (crashed = r));
      let armed = true;
      (first as unknown as { opts: { afterStep?: (s: string, k: string) => void } }).opts.afterStep = (
        s,
        key,
      ) => {
        if (armed && s === step && key === `${ns}/${name}`) {
          armed = false;
          crashed();
          throw new Error(`injected crash after ${step}`);
        }
      };
      await decide(alice, ns, name, "Approve", `crash test ${step}`);
      await crash;
      await first.stop(false); // the lease is not released: the successor waits for it to expire

      const second = newController(`crash-${step}-b`);
      const t0 = Date.now();
      await second.start();
      await waitLeader([second]);
      expect(Date.now() - t0).toBeLessThan((LEASE_SECONDS + 4) * 1000);
      await eventually(
        async () => (await getAr(name))?.status?.phase === "Approved",
        15_000,
        "Approved after restart",
      );

      const records = (await listAuditRecords(self, ns)).filter((r) => r.spec.approvalRequest.name === name);
      expect(records.map((r) => r.spec.event).sort()).toEqual(["Approved", "Requested"]);
      expect(verifyChain(await listAuditRecords(self, ns))).toEqual([]);
      const events = await cp
        .adminKubeConfig()
        .makeApiClient(CoreV1Api)
        .listNamespacedEvent({ namespace: ns });
      const approvedEvents = events.items.filter(
        (e) => e.involvedObject.name === name && e.reason === "Approved",
      );
      expect(approvedEvents).toHaveLength(1);
      await second.stop(true);
    });
  }

  it("with two replicas exactly one leads; when it dies the other takes over within the lease time", async () => {
    const a = newController("replica-a");
    const b = newController("replica-b");
    await a.start();
    await b.start();
    const leader = await waitLeader([a, b]);
    const follower = leader === a ? b : a;
    await new Promise((r) => setTimeout(r, 1500));
    expect([a, b].filter((c) => c.isLeader())).toHaveLength(1);
    const name = await requestDelete(uniqueName("ha"));
    await eventually(
      async () => (await getAr(name))?.status?.phase === "Pending",
      10_000,
      "Pending by the leader",
    );

    const killedAt = Date.now();
    await leader.stop(false);
    await waitLeader([follower], (LEASE_SECONDS + 5) * 1000);
    const takeover = Date.now() - killedAt;
    expect(takeover).toBeLessThan((LEASE_SECONDS + 3) * 1000);
    await decide(alice, ns, name, "Approve", "after failover");
    await eventually(
      async () => (await getAr(name))?.status?.phase === "Approved",
      10_000,
      "Approved by the new leader",
    );
    console.log(`[countersign] leader failover took ${takeover} ms (lease ${LEASE_SECONDS}s)`);
    await follower.stop(true);
  });

  it("collects finished requests after the retention, only once their audit records exist", async () => {
    const c = newController("gc", { retentionSeconds: 2 });
    try {
      await c.start();
      await waitLeader([c]);
      const backlog = (await requests().client.list(undefined)).length;
      const startedAt = Date.now();
      const name = await requestDelete(uniqueName("short"));
      const expiresAt = Date.parse((await getAr(name))!.spec.approval.expiresAt);
      // This controller leads for the whole cluster: it first works through every request the
      // earlier test files left behind (garbage-collecting the finished ones after its 2 s
      // retention), so its own request can wait in that queue; the wait names what it last saw.
      let seen: unknown;
      await eventually(
        async () => {
          const ar = await getAr(name);
          seen = { leader: c.isLeader(), status: ar?.status };
          return ar?.status?.phase === "Expired";
        },
        45_000,
        "Expired",
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last seen ${JSON.stringify(seen)}`);
      });
      console.log(
        `[countersign] GC test: its own request Expired ${Date.now() - startedAt} ms after creation, with ${backlog} earlier requests in the cluster`,
      );
      await eventually(async () => (await getAr(name)) === undefined, 45_000, "garbage-collected");
      const goneAfter = Date.now() - expiresAt;
      expect(goneAfter).toBeGreaterThanOrEqual(2000);
      const records = (await listAuditRecords(self, ns)).filter((r) => r.spec.approvalRequest.name === name);
      expect(records.map((r) => r.spec.event).sort()).toEqual(["Expired", "Requested"]);
      expect(verifyChain(await listAuditRecords(self, ns))).toEqual([]);
    } finally {
      // Release the lease even when an assertion failed, so the next test's controller can lead.
      await c.stop(true);
    }
  }, 120_000);
});

describe("execution check", () => {
  it("records Executed when the approved delete happened, and NotExecuted when a later admission step refused it", async () => {
    const c = newController("exec");
    await c.start();
    await waitLeader([c]);
    // Another team's validating webhook that refuses deletes of "doomed-*" secrets. Validating
    // webhooks are called in parallel, so Countersign admits (and uses the approval) while this
    // one makes the delete fail. (An in-tree ValidatingAdmissionPolicy would not do: it runs
    // before the webhooks, and a denial there never reaches Countersign.)
    const ca = await createCertificateAuthority("doom-ca");
    const tls = await issueCertificate(ca, {
      commonName: "doom",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    const doomServer = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const review = JSON.parse(body);
        const name: string = review.request.name ?? "";
        const allowed = !name.startsWith("doomed-");
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            apiVersion: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: {
              uid: review.request.uid,
              allowed,
              ...(allowed ? {} : { status: { code: 403, message: "doomed secrets are kept" } }),
            },
          }),
        );
      });
    });
    await new Promise<void>((r) => doomServer.listen(0, "127.0.0.1", () => r()));
    const doomWebhook = uniqueName("doom");
    await cp.apply([
      {
        apiVersion: "admissionregistration.k8s.io/v1",
        kind: "ValidatingWebhookConfiguration",
        metadata: { name: doomWebhook },
        webhooks: [
          {
            name: "doom.example.com",
            admissionReviewVersions: ["v1"],
            sideEffects: "None",
            failurePolicy: "Fail",
            clientConfig: {
              url: `https://127.0.0.1:${(doomServer.address() as AddressInfo).port}/`,
              caBundle: Buffer.from(ca.certPem).toString("base64"),
            },
            rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["DELETE"], resources: ["secrets"] }],
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } },
          },
        ],
      },
    ] as never);
    await new Promise((r) => setTimeout(r, 1500)); // let the API server pick up the new webhook

    const ok = await requestDelete(uniqueName("fine"));
    const doomedSecret = uniqueName("doomed");
    // Both webhooks refuse this first attempt; the API server reports one of the two messages,
    // and Countersign has created the request either way.
    await cp
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedSecret({ namespace: ns, body: { metadata: { name: doomedSecret } } });
    await agent
      .makeApiClient(CoreV1Api)
      .deleteNamespacedSecret({ name: doomedSecret, namespace: ns })
      .catch(() => undefined);
    const doomed = await eventually(
      async () => {
        return (await requests().list()).find((i) => i.spec.action.name === doomedSecret)?.metadata.name;
      },
      10_000,
      "doomed request",
    );
    for (const name of [ok, doomed]) {
      await decide(alice, ns, name, "Approve", "go");
      await eventually(async () => (await getAr(name))?.status?.phase === "Approved", 10_000, "Approved");
    }
    const okSecret = (await getAr(ok))!.spec.action.name;
    await agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: okSecret, namespace: ns });
    const refused = await eventually(
      async () => {
        try {
          await agent.makeApiClient(CoreV1Api).deleteNamespacedSecret({ name: doomedSecret, namespace: ns });
          return undefined;
        } catch (err) {
          const m = kubeStatusOf(err)?.message ?? "";
          return /doomed secrets are kept/.test(m) ? m : undefined;
        }
      },
      10_000,
      "VAP refusal",
    );
    expect(refused).toMatch(/doomed secrets are kept/);

    await eventually(
      async () => (await getAr(ok))?.status?.execution?.result === "Executed",
      15_000,
      "Executed",
    );
    const notExecuted = await eventually(
      async () => {
        const ar = await getAr(doomed);
        return ar?.status?.execution?.result === "NotExecuted" ? ar : undefined;
      },
      15_000,
      "NotExecuted",
    );
    expect(notExecuted.status?.phase).toBe("Consumed");
    expect(notExecuted.status?.execution?.message).toMatch(/still exists/);
    const events = await cp.adminKubeConfig().makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: ns });
    expect(
      events.items.some(
        (e) =>
          e.involvedObject.name === doomed &&
          e.reason === "ApprovedActionNotExecuted" &&
          e.type === "Warning",
      ),
    ).toBe(true);
    await eventually(
      async () => {
        const events = (await listAuditRecords(self, ns))
          .filter((r) => r.spec.approvalRequest.name === doomed)
          .map((r) => r.spec.event);
        return events.includes("NotExecuted");
      },
      10_000,
      "NotExecuted audit record",
    );
    expect(verifyChain(await listAuditRecords(self, ns))).toEqual([]);
    await cp
      .adminKubeConfig()
      .makeApiClient(AdmissionregistrationV1Api)
      .deleteValidatingWebhookConfiguration({ name: doomWebhook });
    doomServer.close();
    await c.stop(true);
  });
});
