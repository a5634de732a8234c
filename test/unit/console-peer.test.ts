/**
 * Red-team 11 F5: the console serves only connections opened by its own OS user. The attack:
 * another local user (an agent kept away from the approver's kubeconfig) holds a copy of the
 * session cookie and connects to the console over loopback.
 */
import { execFile } from "node:child_process";
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkLoopbackPeer, ownerOfSocket } from "../../src/console/peer-user.js";

// Async: the server under test answers in this process, so the client must not block it.
const run = promisify(execFile);
const client = (port: number) => `require("net").connect(${port},"127.0.0.1").on("data",()=>process.exit(0))`;

describe("the console's loopback peer check", () => {
  let server: Server;
  let port: number;
  const verdicts: (ReturnType<typeof checkLoopbackPeer> | "none")[] = [];
  beforeAll(async () => {
    server = createServer((socket) => {
      verdicts.push(checkLoopbackPeer(socket.remotePort!, port, process.getuid!()) ?? "none");
      socket.end("bye");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("parses the kernel's table: the owner of the client end", () => {
    const table = [
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
      "   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 2 1",
      "   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1",
    ].join("\n");
    expect(ownerOfSocket(table, 0xc350, 0x1f90)).toBe(1001);
    expect(ownerOfSocket(table, 0x1f90, 0xc350)).toBe(0);
    expect(ownerOfSocket(table, 1, 2)).toBeUndefined();
  });

  it("accepts a connection from its own OS user", async () => {
    const before = verdicts.length;
    await run(process.execPath, ["-e", client(port)], { timeout: 10_000 });
    expect(verdicts[before]).toEqual({ ok: true });
  });

  it.runIf(process.getuid?.() === 0)(
    "refuses a connection from another OS user (nobody, via setpriv)",
    async () => {
      const before = verdicts.length;
      const nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
      await run("setpriv", [...nobody, process.execPath, "-e", client(port)], { timeout: 10_000 });
      expect(verdicts[before]).toMatchObject({ ok: false, reason: expect.stringMatching(/OS user 65534/) });
    },
  );
});
