/**
 * kubectl plugins: `kubectl approve`, `kubectl deny`, `kubectl approvals`. The command comes
 * from the executable's name (kubectl-approve, ...) or, when run directly, the first argument.
 * Uses the kubeconfig like kubectl: $KUBECONFIG or ~/.kube/config, --kubeconfig, --context,
 * -n/--namespace (default: the context's namespace, else "default").
 */

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { visible } from "../approvals/visible.js";
import { startConsole } from "../console/server.js";
import { describeKubeError } from "../kube/errors.js";
import {
  auditFor,
  auditVerify,
  decide,
  formatList,
  listRequests,
  PluginError,
  revoke,
  showRequest,
} from "./commands.js";
import { doctor } from "./doctor.js";

const USAGE = `Usage:
  kubectl approve NAME [-n NAMESPACE] [--reason TEXT]
  kubectl approve NAME [-n NAMESPACE] --break-glass --reason "WHY IT CANNOT WAIT (20+ characters)"
      emergency: alone approves a request whose policy names your group for break-glass; a
      Warning Event, every notification route and the audit trail say so
  kubectl deny NAME [-n NAMESPACE] [--reason TEXT]
  kubectl approvals list [-n NAMESPACE | -A] [--all]
  kubectl approvals show NAME [-n NAMESPACE]
  kubectl approvals revoke NAME [-n NAMESPACE] --reason TEXT
      withdraw an Approved, not yet used approval (approvers only; RBAC verb revoke)
  kubectl approvals audit verify [-n NAMESPACE | -A] [--against EXPORTED-LOG.jsonl]
  kubectl approvals audit --for KIND/NAME [-n NAMESPACE | -A]
  kubectl approvals doctor       ways around the gate, the bindings that grant them, and fixes
                                 (exit code 1 when any exist)
  kubectl approvals ui [--port N] [--open] [-n NAMESPACE]
      the approver's inbox in your browser, on 127.0.0.1 as you (your kubeconfig); prints a
      one-time sign-in URL (--open also opens it); -n is where to look if you may not list
      namespaces; Ctrl-C stops it
Common flags: --kubeconfig PATH, --context NAME
Exit codes: 0 done, 1 refused or failed (the reason is printed), 2 usage error`;

/** How a long-running command (the console) talks while it runs. */
export interface CliIo {
  print(line: string): void;
  /** Resolves when the command should stop (Ctrl-C). */
  stopped: Promise<void>;
}

function processIo(): CliIo {
  return {
    print: (line) => process.stdout.write(`${visible(line)}\n`),
    stopped: new Promise((resolve) => {
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    }),
  };
}

/** Opens `url` in the desktop's browser (only when asked: --open). */
function openBrowser(url: string): void {
  const [cmd, args] =
    process.platform === "darwin"
      ? ["open", [url]]
      : process.platform === "win32"
        ? ["cmd", ["/c", "start", "", url]]
        : ["xdg-open", [url]];
  try {
    const child = spawn(cmd, args, { stdio: "ignore", detached: true });
    child.on("error", () => undefined);
    child.unref();
  } catch {
    // Printing the URL is enough.
  }
}

export async function runCli(
  argv: string[],
  invokedAs: string,
  io: () => CliIo = processIo,
): Promise<{ code: number; out: string; err: string }> {
  let args = argv;
  let command = invokedAs.replace(/^kubectl-/, "").replace(/\.(m?js|ts)$/, "");
  if (!["approve", "deny", "approvals"].includes(command)) {
    command = args[0] ?? "";
    args = args.slice(1);
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (err) {
    return { code: 2, out: "", err: `${(err as Error).message}\n${USAGE}` };
  }
  const { values, positionals } = parsed;
  if (values.help) return { code: 0, out: USAGE, err: "" };
  const kc = new KubeConfig();
  try {
    if (values.kubeconfig) kc.loadFromFile(values.kubeconfig);
    else kc.loadFromDefault();
    if (values.context) kc.setCurrentContext(values.context);
  } catch (err) {
    return { code: 1, out: "", err: `cannot load kubeconfig: ${(err as Error).message}` };
  }
  const contextNs = kc.getContextObject(kc.getCurrentContext())?.namespace;
  const allNs = values["all-namespaces"] === true;
  const namespace = values.namespace ?? contextNs ?? "default";
  const now = new Date();
  try {
    switch (command) {
      case "approve":
      case "deny": {
        const name = positionals[0];
        if (!name || positionals.length > 1)
          return { code: 2, out: "", err: `kubectl ${command} takes one NAME\n${USAGE}` };
        const breakGlass = values["break-glass"] === true;
        if (breakGlass && command !== "approve")
          return { code: 2, out: "", err: `--break-glass goes with kubectl approve only\n${USAGE}` };
        const out = await decide(
          kc,
          namespace,
          name,
          command === "approve" ? "Approve" : "Deny",
          values.reason,
          now,
          breakGlass,
        );
        return { code: 0, out, err: "" };
      }
      case "approvals": {
        const [sub, ...rest] = positionals;
        if (sub === "list") {
          return {
            code: 0,
            out: formatList(await listRequests(kc, allNs ? undefined : namespace), now, values.all === true),
            err: "",
          };
        }
        if (sub === "revoke") {
          if (!rest[0] || rest.length > 1)
            return { code: 2, out: "", err: `kubectl approvals revoke takes one NAME\n${USAGE}` };
          if (!values.reason?.trim())
            return {
              code: 2,
              out: "",
              err: `kubectl approvals revoke needs --reason TEXT: the requester and the audit trail are told why\n${USAGE}`,
            };
          return { code: 0, out: await revoke(kc, namespace, rest[0], values.reason, now), err: "" };
        }
        if (sub === "show" && rest[0])
          return { code: 0, out: await showRequest(kc, namespace, rest[0], now), err: "" };
        if (sub === "audit" && rest[0] === "verify") {
          let log: string | undefined;
          if (values.against) {
            try {
              log = readFileSync(values.against, "utf8");
            } catch (err) {
              return {
                code: 2,
                out: "",
                err: `cannot read --against ${values.against}: ${(err as Error).message}`,
              };
            }
          }
          const { ok, report } = await auditVerify(kc, allNs ? undefined : namespace, log);
          return { code: ok ? 0 : 1, out: report, err: "" };
        }
        if (sub === "ui") {
          const port = values.port === undefined ? 0 : Number(values.port);
          if (!Number.isInteger(port) || port < 0 || port > 65535)
            return {
              code: 2,
              out: "",
              err: `--port takes a port number (0-65535), not ${values.port}\n${USAGE}`,
            };
          const c = await startConsole({
            kc,
            port,
            namespaces: values.namespace ? [values.namespace] : contextNs ? [contextNs] : ["default"],
          });
          const { print, stopped } = io();
          print(`Countersign console for ${c.user}: open this link once (it signs this browser in):`);
          print(`  ${c.loginUrl}`);
          for (const n of c.notes) print(n);
          print("Ctrl-C stops it.");
          if (values.open) openBrowser(c.loginUrl);
          await stopped;
          await c.close();
          return { code: 0, out: "", err: "" };
        }
        if (sub === "doctor") {
          const { ok, report } = await doctor(kc);
          return { code: ok ? 0 : 1, out: report, err: "" };
        }
        if (sub === "audit" && values.for) {
          return { code: 0, out: await auditFor(kc, values.for, allNs ? undefined : namespace), err: "" };
        }
        return { code: 2, out: "", err: USAGE };
      }
      default:
        return { code: 2, out: "", err: USAGE };
    }
  } catch (err) {
    if (err instanceof PluginError) return { code: 1, out: "", err: `error: ${err.message}` };
    return { code: 1, out: "", err: `error: ${describeKubeError(err)}` };
  }
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      namespace: { type: "string", short: "n" },
      "all-namespaces": { type: "boolean", short: "A" },
      all: { type: "boolean" },
      reason: { type: "string" },
      "break-glass": { type: "boolean" },
      for: { type: "string" },
      against: { type: "string" },
      port: { type: "string" },
      open: { type: "boolean" },
      kubeconfig: { type: "string" },
      context: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

/** Entry point for the executables in bin/. */
export async function main(): Promise<void> {
  const { code, out, err } = await runCli(process.argv.slice(2), basename(process.argv[1] ?? ""));
  // Last line of defence for every command (the formatters escape field by field already):
  // no terminal escape, bidi override or zero-width character reaches the terminal.
  if (out) process.stdout.write(`${visible(out, { newlines: true })}\n`);
  if (err) process.stderr.write(`${visible(err, { newlines: true })}\n`);
  process.exitCode = code;
}

if (process.argv[1] && /(^|\/)cli\.(ts|js)$/.test(process.argv[1])) void main();
