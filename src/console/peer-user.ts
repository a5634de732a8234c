/**
 * Who is on the other end of a loopback connection (Linux). Browsers send a 127.0.0.1 cookie to
 * every port of 127.0.0.1, so a local server run by another OS user (an agent sandboxed away
 * from the approver's kubeconfig) can collect the console's session cookie when the approver's
 * browser visits it, and replay it from its own client (red-team 11 F5). The console therefore
 * serves only connections opened by its own OS user: the kernel's socket table names the owner
 * of the client end.
 */
import { readFileSync } from "node:fs";

export type PeerCheck = { ok: true } | { ok: false; reason: string };

/** The socket tables the kernel exposes; tests may point elsewhere. */
const TABLES = ["/proc/net/tcp", "/proc/net/tcp6"];

/** Parses a /proc/net/tcp{,6} table: the owner uid of the socket bound to localPort, connected to remotePort. */
export function ownerOfSocket(table: string, localPort: number, remotePort: number): number | undefined {
  const lines = table.split("\n");
  for (let i = 1; i < lines.length; i++) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
    const f = lines[i]!.trim().split(/\s+/);
    if (f.length < 8) continue;
    const local = Number.parseInt(f[1]!.slice(f[1]!.lastIndexOf(":") + 1), 16);
    const remote = Number.parseInt(f[2]!.slice(f[2]!.lastIndexOf(":") + 1), 16);
    if (local === localPort && remote === remotePort) return Number(f[7]);
  }
  return undefined;
}

/**
 * Whether the client end of a loopback connection (its port `clientPort`, connected to our
 * `serverPort`) belongs to `uid`. Where the table cannot be read (not Linux), the check is
 * reported as not possible: the caller decides (the console warns at start and serves).
 */
export function checkLoopbackPeer(
  clientPort: number,
  serverPort: number,
  uid: number,
  read: (path: string) => string = (p) => readFileSync(p, "utf8"),
): PeerCheck | undefined {
  let readable = false;
  for (const path of TABLES) {
    let table: string;
    try {
      table = read(path);
    } catch {
      continue;
    }
    readable = true;
    const owner = ownerOfSocket(table, clientPort, serverPort);
    if (owner === undefined) continue;
    return owner === uid
      ? { ok: true }
      : {
          ok: false,
          reason: `the connection belongs to OS user ${owner}, not to the user who started the console (${uid})`,
        };
  }
  return readable ? { ok: false, reason: "the connection's owner could not be found" } : undefined;
}

/** Whether this platform lets the console check its peers. */
export function peerCheckAvailable(read: (path: string) => string = (p) => readFileSync(p, "utf8")): boolean {
  return TABLES.some((p) => {
    try {
      read(p);
      return true;
    } catch {
      return false;
    }
  });
}
