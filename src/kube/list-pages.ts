/**
 * Paged LISTs of custom objects (limit/continue), yielded a page at a time so a caller can
 * process a large collection (100k AuditRecords) in bounded memory: no single response body
 * holds the collection (near 200k records one body passes V8's string limit), and nothing is
 * kept unless the caller keeps it.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { API_GROUP, API_VERSION } from "../resources/group.js";

/** Objects per page: small enough to keep a page's body a few MB, large enough to keep round trips few. */
export const DEFAULT_PAGE_SIZE = 500;

export interface ListPagesArgs {
  plural: string;
  /** Omitted: every namespace (a cluster-wide LIST). */
  namespace?: string | undefined;
  labelSelector?: string;
  limit?: number;
  /** Counts what the server sent (tests and benchmarks assert on it). */
  stats?: ListStats;
}

export interface ListStats {
  /** LIST calls made (one per page). */
  pages: number;
  /** Objects the server returned, before any client-side filtering. */
  items: number;
}

export function newListStats(): ListStats {
  return { pages: 0, items: 0 };
}

/** Yields each page's items of a LIST of countersign.io objects, following continue tokens. */
export async function* listPages<T>(api: CustomObjectsApi, args: ListPagesArgs): AsyncGenerator<T[]> {
  const base = {
    group: API_GROUP,
    version: API_VERSION,
    plural: args.plural,
    limit: args.limit ?? DEFAULT_PAGE_SIZE,
    ...(args.labelSelector ? { labelSelector: args.labelSelector } : {}),
  };
  let token: string | undefined;
  do {
    const page = (
      args.namespace === undefined
        ? await api.listClusterCustomObject({ ...base, ...(token ? { _continue: token } : {}) })
        : await api.listNamespacedCustomObject({
            ...base,
            namespace: args.namespace,
            ...(token ? { _continue: token } : {}),
          })
    ) as { items?: T[]; metadata?: { _continue?: string; continue?: string } };
    const items = page.items ?? [];
    if (args.stats) {
      args.stats.pages++;
      args.stats.items += items.length;
    }
    yield items;
    token = page.metadata?.continue || page.metadata?._continue || undefined;
  } while (token);
}

/** Every item of a paged LIST, collected (for callers that need the whole set at once). */
export async function listAll<T>(api: CustomObjectsApi, args: ListPagesArgs): Promise<T[]> {
  const out: T[] = [];
  for await (const page of listPages<T>(api, args)) for (const item of page) out.push(item);
  return out;
}
