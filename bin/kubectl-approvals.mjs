#!/usr/bin/env node
// kubectl plugin shim: runs the compiled CLI (npm run build), which reads the command from this file's name.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const cli = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "plugin", "cli.js");
if (!existsSync(cli)) {
  console.error(`countersign: ${cli} is missing; run "npm run build" in the countersign package first`);
  process.exit(1);
}
const { main } = await import(cli);
await main();
