/**
 * Whether a decider holds RBAC verb approve / deny / revoke on one ApprovalRequest: a
 * SubjectAccessReview as the caller, cached for a few seconds (I/O; the decision rules are
 * decisions.ts's). Used by the webhook's decision guard, the gate's re-check when an approval
 * is used, and the HTTP API / Slack decision service.
 */
import { AuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";
import type { UserInfo } from "../resources/admission.js";
import { canonicalJson } from "../resources/canonical-json.js";
import { API_GROUP, APPROVAL_REQUEST_PLURAL } from "../resources/group.js";

const SAR_CACHE_MS = 5000;

/** SubjectAccessReview as the caller, cached briefly: may this user approve/deny/revoke here? */
export class RbacChecker {
  private readonly api: AuthorizationV1Api;
  private readonly cache = new Map<string, { at: number; allowed: boolean; reason: string }>();

  constructor(
    kc: KubeConfig,
    private readonly now: () => number = Date.now,
  ) {
    this.api = kc.makeApiClient(AuthorizationV1Api);
  }

  async allowed(
    user: UserInfo,
    verb: string,
    namespace: string,
    name: string,
  ): Promise<{ allowed: boolean; reason: string }> {
    const key = canonicalJson([
      user.username,
      user.uid,
      user.groups ?? [],
      user.extra ?? {},
      verb,
      namespace,
      name,
    ]);
    const hit = this.cache.get(key);
    if (hit && this.now() - hit.at < SAR_CACHE_MS) return hit;
    const review = await this.api.createSubjectAccessReview({
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: user.username ?? "",
          ...(user.uid ? { uid: user.uid } : {}),
          groups: user.groups ?? [],
          ...(user.extra ? { extra: user.extra } : {}),
          resourceAttributes: { group: API_GROUP, resource: APPROVAL_REQUEST_PLURAL, verb, namespace, name },
        },
      },
    });
    const result = {
      at: this.now(),
      allowed: review.status?.allowed === true,
      reason: review.status?.reason ?? "",
    };
    if (this.cache.size > 1000) this.cache.clear();
    this.cache.set(key, result);
    return result;
  }
}
