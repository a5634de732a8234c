/**
 * The policy unit tests once more, on @bufbuild/cel's interpreter instead of the lowered
 * closures (src/policy/cel-lower.ts): both paths must pass the same tests.
 */
import { setCelLowering } from "../../src/policy/cel.js";

setCelLowering(false);
await import("./policy.test.js");
