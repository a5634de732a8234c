/**
 * Prometheus metrics (served on a plain-HTTP port, /metrics): admission latency by decision,
 * decisions by policy and outcome, no-op updates let through, pending requests, time to decision.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "countersign_process_" });

export const admissionDuration = new Histogram({
  name: "countersign_admission_duration_seconds",
  help: "Time to answer an AdmissionReview, by decision (allowed, denied, approval-required, approval-consumed, ...).",
  labelNames: ["decision"] as const,
  buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const admissionDecisions = new Counter({
  name: "countersign_admission_decisions_total",
  help: "Admission decisions by policy (empty when no policy matched) and outcome.",
  labelNames: ["policy", "outcome"] as const,
  registers: [registry],
});

export const admissionUnauthenticated = new Counter({
  name: "countersign_admission_unauthenticated_total",
  help: "AdmissionReviews refused before reading the body because the caller was not the API server, by reason (no-certificate, untrusted-certificate, name-not-allowed).",
  labelNames: ["reason"] as const,
  registers: [registry],
});

export const admissionConnections = new Counter({
  name: "countersign_admission_connections_total",
  help: "TLS connections accepted by the admission listener, by negotiated protocol (h2, http/1.1). The API server multiplexes its calls over HTTP/2; a steady climb means TLS handshakes per call.",
  labelNames: ["protocol"] as const,
  registers: [registry],
});

export const slackReplaysRefused = new Counter({
  name: "countersign_slack_replays_refused_total",
  help: "Slack interactions refused because another request with the same signature was already seen (by any replica).",
  registers: [registry],
});

export const noOpUpdates = new Counter({
  name: "countersign_noop_updates_total",
  help: "UPDATEs a RequireApproval rule matched that changed nothing the fingerprint binds (old and new canonical objects identical), allowed without an ApprovalRequest, by policy.",
  labelNames: ["policy"] as const,
  registers: [registry],
});

export const admissionShed = new Counter({
  name: "countersign_admission_shed_total",
  help: "Gated AdmissionReviews refused at once because this replica already had --max-in-flight-reviews gated reviews in flight (fail closed: nothing changed, no request opened), by policy.",
  labelNames: ["policy"] as const,
  registers: [registry],
});

let inFlightSource: (() => number) | undefined;
/** The admission listener registers how to count its gated reviews in flight. */
export function setGatedInFlightSource(fn: (() => number) | undefined): void {
  inFlightSource = fn;
}

export const admissionGatedInFlight = new Gauge({
  name: "countersign_admission_gated_in_flight",
  help: "Gated AdmissionReviews (a RequireApproval rule matched) this replica is working on now; past --max-in-flight-reviews the excess is shed.",
  registers: [registry],
  collect() {
    if (inFlightSource) this.set(inFlightSource());
  },
});

let pendingSource: (() => number) | undefined;
/** The controller registers how to count Pending requests (from its informer cache). */
export function setPendingSource(fn: (() => number) | undefined): void {
  pendingSource = fn;
}

export const pendingRequests = new Gauge({
  name: "countersign_approval_requests_pending",
  help: "ApprovalRequests waiting for a decision (as seen by this controller replica's cache).",
  registers: [registry],
  collect() {
    if (pendingSource) this.set(pendingSource());
  },
});

export const timeToDecision = new Histogram({
  name: "countersign_approval_time_to_decision_seconds",
  help: "From an ApprovalRequest's creation to its decision, by outcome (Approved, Denied, Expired).",
  labelNames: ["outcome"] as const,
  buckets: [5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600],
  registers: [registry],
});

export const approvalRequestsCapped = new Counter({
  name: "countersign_approval_requests_capped_total",
  help: "Actions refused because their requester already had the maximum of open ApprovalRequests in the namespace (nothing was created), by policy.",
  labelNames: ["policy"] as const,
  registers: [registry],
});

/** Serves /metrics over plain HTTP (scraped inside the cluster network). */
export async function startMetricsServer(
  port: number,
  host = "0.0.0.0",
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.method === "GET" && req.url === "/metrics") {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end("metrics unavailable");
        },
      );
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found; metrics are at /metrics");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new Error(`metrics port ${port} is already in use; pick another with --metrics-port`)
          : err,
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
