/**
 * Who may drive the console: the holder of the one-time login token, from then on by an
 * HttpOnly SameSite=Strict session cookie; only under the Host names of the loopback listener
 * (DNS rebinding); state-changing requests only from the console's own origin and with the
 * session's form token (CSRF, also from other local ports, which count as the same site).
 * Pure except for the random numbers it is given.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";

const SESSION_IDLE_MS = 12 * 60 * 60 * 1000;

export const sameSecret = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/** The Host header values the listener answers to. */
export function allowedHosts(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`];
}

export function hostAllowed(host: string | undefined, port: number): boolean {
  return host !== undefined && allowedHosts(port).includes(host.toLowerCase());
}

/**
 * A state-changing request must come from a page of this console: its Origin is this
 * listener's (a missing Origin is refused: every browser sends one on POST), and the fetch
 * metadata, when the browser sends it, says same-origin.
 */
export function originAllowed(
  headers: { origin?: string; host?: string; "sec-fetch-site"?: string },
  port: number,
): boolean {
  if (!hostAllowed(headers.host, port)) return false;
  if (headers.origin !== `http://${headers.host?.toLowerCase()}`) return false;
  const site = headers["sec-fetch-site"];
  return site === undefined || site === "same-origin";
}

export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i <= 0) continue;
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

export interface Session {
  id: string;
  csrf: string;
  lastSeen: number;
  flashes: Map<string, { ok: boolean; lines: string[] }>;
}

export class Sessions {
  /** The one-time login token; undefined once used. */
  private token: string | undefined;
  private readonly sessions = new Map<string, Session>();
  /** Cookie names are per port: browsers share cookies across the ports of one host. */
  readonly cookieName: string;

  constructor(
    port: number,
    private readonly random: (bytes: number) => string = (n) => randomBytes(n).toString("base64url"),
  ) {
    this.token = random(32);
    this.cookieName = `countersign_console_${port}`;
  }

  /** The token to put in the printed URL (only before it is used). */
  loginToken(): string | undefined {
    return this.token;
  }

  /** Exchanges the one-time token for a session; undefined if it is wrong or already used. */
  login(token: string | undefined, now: number): Session | undefined {
    if (this.token === undefined || token === undefined || !sameSecret(token, this.token)) return undefined;
    this.token = undefined;
    const s: Session = { id: this.random(32), csrf: this.random(24), lastSeen: now, flashes: new Map() };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The session a Cookie header carries, if valid (and not idle for 12 hours). */
  fromCookie(cookieHeader: string | undefined, now: number): Session | undefined {
    const id = parseCookies(cookieHeader)[this.cookieName];
    if (!id) return undefined;
    for (const s of this.sessions.values()) {
      if (!sameSecret(s.id, id)) continue;
      if (now - s.lastSeen > SESSION_IDLE_MS) {
        this.sessions.delete(s.id);
        return undefined;
      }
      s.lastSeen = now;
      return s;
    }
    return undefined;
  }

  setCookie(s: Session): string {
    return `${this.cookieName}=${s.id}; Path=/; HttpOnly; SameSite=Strict`;
  }

  newId(): string {
    return this.random(12);
  }
}
