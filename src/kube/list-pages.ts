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
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
  limit?: number | undefined;
  /** Counts what the server sent (tests and benchmarks assert on it). */
  stats?: ListStats | undefined;
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

export interface Page<T> {
  items: T[];
  /** Pass to the next listPage; absent on the last page. */
  continue?: string;
}

/** One page of a LIST of countersign.io objects, from `token` (the first page without one). */
export async function listPage<T>(
  api: CustomObjectsApi,
  args: ListPagesArgs,
  token?: string | undefined,
): Promise<Page<T>> {
  const query = {
    group: API_GROUP,
    version: API_VERSION,
    plural: args.plural,
    limit: args.limit ?? DEFAULT_PAGE_SIZE,
    ...(args.labelSelector ? { labelSelector: args.labelSelector } : {}),
    ...(args.fieldSelector ? { fieldSelector: args.fieldSelector } : {}),
    ...(token ? { _continue: token } : {}),
  };
  const page = (
    args.namespace === undefined
      ? await api.listClusterCustomObject(query)
      : await api.listNamespacedCustomObject({ ...query, namespace: args.namespace })
  ) as { items?: T[]; metadata?: { _continue?: string; continue?: string } };
  const items = page.items ?? [];
  if (args.stats) {
    args.stats.pages++;
    args.stats.items += items.length;
  }
  const next = page.metadata?.continue || page.metadata?._continue || undefined;
  return { items, ...(next ? { continue: next } : {}) };
}

/**
 * Yields each page's items of a LIST of countersign.io objects, following continue tokens:
 * the one paging loop (the typed client in resources/client.ts pages through it too).
 */
export async function* listPages<T>(api: CustomObjectsApi, args: ListPagesArgs): AsyncGenerator<T[]> {
  let token: string | undefined;
  do {
    const page = await listPage<T>(api, args, token);
    yield page.items;
    token = page.continue;
  } while (token);
}

/** Every item of a paged LIST, collected (for callers that need the whole set at once). */
export async function listAll<T>(api: CustomObjectsApi, args: ListPagesArgs): Promise<T[]> {
  const out: T[] = [];
  for await (const page of listPages<T>(api, args)) for (const item of page) out.push(item);
  return out;
}
