/**
 * Red team 14: the probe port is plain HTTP and reachable by anyone who reaches the pod (the
 * agent's pods too). Its thread has a small heap; about 5000 idle connections from one client
 * used to exhaust it, the thread died, the port closed for good, and the kubelet's liveness
 * probe would then restart a webhook whose main loop was fine. Now the thread holds a bounded
 * number of connections, drops the slow ones quickly, and keeps answering once the flood has
 * been dropped.
 */
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  CONNECTION_DEADLINE_MS,
  type RunningHealthServer,
  startHealthServer,
} from "../../src/admission/health-server.js";

let running: RunningHealthServer | undefined;
const held: Socket[] = [];

afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  await running?.stop();
  running = undefined;
});

const probe = (port: number) =>
  new Promise<string>((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/healthz", agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(String(res.statusCode)));
    });
    req.on("timeout", () => {
      req.destroy();
      resolve("timeout");
    });
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });

describe("the health port under a connection flood", () => {
  it("survives 6000 idle half-sent connections and answers probes again once they are dropped", async () => {
    running = await startHealthServer({ port: 0, host: "127.0.0.1", isReady: () => true });
    const port = running.port;
    expect(await probe(port)).toBe("200");
    for (let i = 0; i < 6000; i++) {
      const s = connect(port, "127.0.0.1");
      s.on("error", () => {});
      // Headers that never finish, kept open by the client.
      s.write("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Wait: ");
      held.push(s);
      if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
    }
    // The flood's connections are closed by the server within its deadline; probes answer.
    await new Promise((r) => setTimeout(r, CONNECTION_DEADLINE_MS * 2));
    const answers: string[] = [];
    for (let i = 0; i < 3; i++) {
      answers.push(await probe(port));
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(answers).toEqual(["200", "200", "200"]);
  }, 30_000);
});
