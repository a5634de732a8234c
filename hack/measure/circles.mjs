// Lists the import circles among the .ts files under a folder (default src/): every strongly
// connected component of more than one file, or a file that imports itself. Type-only imports
// count too (a circle of types is still a circle of files). Usage: node hack/measure/circles.mjs [dir]
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(process.argv[2] ?? "src");
const files = [];
const walk = (d) => {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith(".ts")) files.push(p);
  }
};
walk(root);
const edges = new Map();
const spec = /(?:^|\n)\s*(?:import|export)\b[^;]*?from\s*["'](\.[^"']+)["']/g;
for (const f of files) {
  const out = new Set();
  for (const m of readFileSync(f, "utf8").matchAll(spec)) {
    const target = resolve(dirname(f), m[1].replace(/\.js$/, ".ts"));
    if (files.includes(target)) out.add(target);
  }
  edges.set(f, [...out]);
}
// Tarjan's strongly connected components.
let index = 0;
const idx = new Map(), low = new Map(), stack = [], on = new Set(), circles = [];
const visit = (v) => {
  idx.set(v, index); low.set(v, index); index++; stack.push(v); on.add(v);
  for (const w of edges.get(v)) {
    if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
    else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const c = [];
    let w;
    do { w = stack.pop(); on.delete(w); c.push(w); } while (w !== v);
    if (c.length > 1 || edges.get(v).includes(v)) circles.push(c);
  }
};
for (const f of files) if (!idx.has(f)) visit(f);
console.log(`${circles.length} file circle(s) among ${files.length} files`);
for (const c of circles) console.log(`  ${c.map((f) => relative(process.cwd(), f)).sort().join(" <-> ")}`);
