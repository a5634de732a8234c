/**
 * The policy decision alone, in process (no HTTP, no API server): the 50 benchmark policies
 * (bench/policies.ts; 10 cover the agent, 60 CEL evaluations per allowed request) decided for
 * the benchmark's Deployment UPDATE, on @bufbuild/cel's interpreter and on the lowered
 * closures (src/policy/cel-lower.ts), with the JSON parse of the review the handler does
 * anyway as the yardstick. Prints µs per request and the ratios.
 *
 * Run: npm run bench:decide   (options: --seconds N per measurement, --covering N)
 */
import { parseArgs } from "node:util";
import { setCelLowering } from "../src/policy/cel.js";
import { compilePolicy } from "../src/policy/compile.js";
import { decide } from "../src/policy/evaluate.js";
import { PolicySet } from "../src/policy/policy-set.js";
import type { AdmissionRequest } from "../src/resources/admission.js";
import type { ApprovalPolicy } from "../src/resources/approval-policy.js";
import { benchPolicies, review } from "./policies.js";

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "2" }, covering: { type: "string", default: "10" } },
});
const seconds = Number(values.seconds);
const covering = Number(values.covering);

const compiled = benchPolicies(covering).map((p) => {
  const r = compilePolicy(p as ApprovalPolicy);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
});
const set = new PolicySet(compiled);
const body = review("u1", {});
const lowered = compiled.flatMap((p) => [
  ...p.matchConditions,
  ...p.variables.map((v) => v.expression),
  ...p.rules.flatMap((r) => (r.condition ? [r.condition] : [])),
]);
const loweredShare = lowered.filter((e) => e.lowered).length / lowered.length;

/** µs per call of fn, measured for `seconds` after a warm-up. */
function measure(fn: () => void): number {
  const until = performance.now() + 300;
  while (performance.now() < until) fn();
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
  }
  return ((performance.now() - start) * 1000) / n;
}

let sink: unknown;
const parseOnly = measure(() => {
  sink = JSON.parse(body);
});
const run = () => {
  const req = JSON.parse(body).request as AdmissionRequest;
  const d = decide(req, set, {});
  if (d.kind !== "allow") throw new Error(`expected allow, got ${JSON.stringify(d)}`);
  sink = d;
};
setCelLowering(false);
const interpreted = measure(run);
setCelLowering(true);
const loweredUs = measure(run);
void sink;

const evaluations = covering * 6;
console.table({
  "JSON.parse of the review only": { "µs/request": parseOnly.toFixed(1) },
  "parse + decide, interpreter": {
    "µs/request": interpreted.toFixed(1),
    "µs/evaluation": ((interpreted - parseOnly) / evaluations).toFixed(3),
  },
  "parse + decide, lowered": {
    "µs/request": loweredUs.toFixed(1),
    "µs/evaluation": ((loweredUs - parseOnly) / evaluations).toFixed(3),
  },
});
console.log(
  `${covering} covering policies, ${evaluations} CEL evaluations per request; ${(100 * loweredShare).toFixed(0)}% of expressions lowered`,
);
console.log(
  `decide: lowered is ${((interpreted - parseOnly) / (loweredUs - parseOnly)).toFixed(1)}x faster than the interpreter (parse excluded); whole request ${(interpreted / loweredUs).toFixed(1)}x`,
);
