/**
 * Red team 14: the admission listener speaks HTTP/2, where one connection carries any number of
 * calls. A caller without the API server's client certificate (an agent's pod that reaches the
 * Service) is refused, and its connection is then closed, as on HTTP/1.1: otherwise one
 * handshake buys it thousands of refused calls a second on the thread that answers the API
 * server's reviews. The API server's own connection keeps serving many calls.
 */
import { type ClientHttp2Session, connect } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAdmissionListener, startAdmissionServer } from "../../src/admission/server.js";
import { componentLogger } from "../../src/logging/logger.js";
import { createCertificateAuthority, issueCertificate, type KeyPairPem } from "../../src/pki/certificates.js";

let listener: RunningAdmissionListener;
let apiServer: KeyPairPem;

beforeAll(async () => {
  const servingCa = await createCertificateAuthority("serving");
  const clientCa = await createCertificateAuthority("admission-clients");
  apiServer = await issueCertificate(clientCa, { commonName: "kube-apiserver", usage: "client" });
  listener = await startAdmissionServer({
    tls: await issueCertificate(servingCa, {
      commonName: "countersign",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    }),
    port: 0,
    host: "127.0.0.1",
    isReady: () => true,
    auth: { mode: "client-cert", clientCaPem: clientCa.certPem },
    logger: componentLogger("admission-test"),
  } as never);
});

afterAll(async () => {
  await listener?.stop();
});

/** One POST /validate on the session: its status, or the error that ended the stream. */
function post(session: ClientHttp2Session): Promise<number | string> {
  return new Promise((resolve) => {
    let stream: ReturnType<ClientHttp2Session["request"]>;
    try {
      stream = session.request({
        ":method": "POST",
        ":path": "/validate",
        "content-type": "application/json",
      });
    } catch (err) {
      resolve((err as NodeJS.ErrnoException).code ?? String(err));
      return;
    }
    let status = 0;
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", () => {});
    stream.on("end", () => resolve(status));
    stream.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    stream.end("{not json");
  });
}

const closed = (session: ClientHttp2Session) =>
  new Promise<boolean>((resolve) => {
    if (session.closed || session.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), 2000);
    session.once("goaway", () => {
      clearTimeout(timer);
      resolve(true);
    });
    session.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });

describe("HTTP/2 callers without the API server's certificate", () => {
  it("are refused and their connection is closed: no second call rides the same handshake", async () => {
    const session = connect(`https://127.0.0.1:${listener.port}`, { rejectUnauthorized: false });
    session.on("error", () => {});
    try {
      const wasClosed = closed(session);
      expect(await post(session)).toBe(403);
      expect(await wasClosed).toBe(true);
      // The session is over: a further call on it gets no answer from the server (GOAWAY seen).
      expect(await post(session)).not.toBe(403);
    } finally {
      session.destroy();
    }
  });

  it("get one stream at a time: a burst of calls in the first flight yields one refusal, not fifty", async () => {
    const session = connect(`https://127.0.0.1:${listener.port}`, { rejectUnauthorized: false });
    session.on("error", () => {});
    try {
      // Sent at once, before the server's settings can have arrived.
      const answers = await Promise.all(Array.from({ length: 50 }, () => post(session)));
      expect(answers.filter((a) => a === 403).length).toBeLessThanOrEqual(1);
      expect(answers.some((a) => a === 400 || a === 200)).toBe(false);
    } finally {
      session.destroy();
    }
  });

  it("while the API server's connection carries call after call", async () => {
    const session = connect(`https://127.0.0.1:${listener.port}`, {
      rejectUnauthorized: false,
      cert: apiServer.certPem,
      key: apiServer.keyPem,
    });
    try {
      // Malformed bodies: past the certificate check, refused by the body check (400).
      expect(await Promise.all([post(session), post(session), post(session)])).toEqual([400, 400, 400]);
      expect(await post(session)).toBe(400);
      expect(session.closed).toBe(false);
    } finally {
      session.close();
    }
  });
});
