/**
 * An index of compiled policies by subject, so a request only visits the policies that
 * could cover its user (by username, group or service-account namespace, plus the
 * label-selector policies). Pure; rebuilt by the policy cache whenever a policy changes.
 */

import { serviceAccountOf, type UserInfo } from "../resources/admission.js";
import type { CompiledPolicy } from "./compile.js";

export class PolicySet {
  /** All valid policies, sorted by name (the evaluation order). */
  readonly policies: readonly CompiledPolicy[];
  private readonly byUser = new Map<string, number[]>();
  private readonly byGroup = new Map<string, number[]>();
  private readonly byServiceAccountNamespace = new Map<string, number[]>();
  private readonly bySelector: number[] = [];

  constructor(policies: readonly CompiledPolicy[]) {
    this.policies = [...policies].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const add = (map: Map<string, number[]>, key: string, i: number) => {
      const list = map.get(key);
      if (!list) map.set(key, [i]);
      else if (list[list.length - 1] !== i) list.push(i);
    };
    this.policies.forEach((p, i) => {
      for (const u of p.subjects.users ?? []) add(this.byUser, u, i);
      for (const g of p.subjects.groups ?? []) add(this.byGroup, g, i);
      for (const sa of p.subjects.serviceAccounts ?? []) add(this.byServiceAccountNamespace, sa.namespace, i);
      if (Object.keys(p.subjects.serviceAccountSelector?.matchLabels ?? {}).length > 0)
        this.bySelector.push(i);
    });
  }

  get size(): number {
    return this.policies.length;
  }

  /** The policies that may cover this user, in evaluation order (exact matching happens in decide). */
  candidates(user: UserInfo): CompiledPolicy[] {
    const hits: number[] = [];
    const push = (list: number[] | undefined) => {
      if (list) for (const i of list) hits.push(i);
    };
    push(this.byUser.get(user.username ?? ""));
    for (const g of user.groups ?? []) push(this.byGroup.get(g));
    const sa = serviceAccountOf(user.username);
    if (sa) {
      push(this.byServiceAccountNamespace.get(sa.namespace));
      push(this.bySelector);
    }
    if (hits.length === 0) return [];
    hits.sort((a, b) => a - b);
    const out: CompiledPolicy[] = [];
    let last = -1;
    for (const i of hits) {
      if (i !== last) out.push(this.policies[i]!);
      last = i;
    }
    return out;
  }
}
