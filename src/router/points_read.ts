/**
 * The router's logical Scroll and Count: every id once, although it is stored on RF replicas,
 * decided by the newest version among them.
 *
 * Each storage node pages its entries in ascending id order (`compareIds`: integer ids, then
 * string ids), live points AND tombstones with
 * their versions (`vectordb.internal.Transfer/Entries`, src/node/points_read.ts). The router
 * merges those streams ({@link EntryMerge}, pure): for every id, the entry with the highest
 * version across the nodes decides (at equal versions a live point beats a tombstone, as Get's
 * `newestRead` does), so a replica that missed a delete cannot bring the point back, and a point
 * held by two replicas counts once.
 *
 * **Paging across nodes.** Nodes page independently. A merged id is final only when every node
 * that may still hold it has listed past it: the merge consumes ids up to the smallest last-id
 * among the nodes whose page was full (not `done`); nodes that reached their end bound nothing.
 * Nodes whose buffer is consumed are asked for their next page, and so on. Memory is one page
 * per node, whatever the collection's size.
 *
 * **Which nodes, and coverage.** As Search (plan.ts): every node believed up plus the owners of
 * shards with no owner believed up ({@link searchTargets}), then a second round for shards still
 * uncovered ({@link searchRetryTargets}). A node that fails part-way is dropped from the merge
 * and from the answered set; a node without the collection (NOT_FOUND) answered with nothing.
 * Coverage is {@link searchCoverage} over the nodes that answered to the end of what was read:
 * `partial` when some shard had no such owner, so points may be missing (or a count low). The
 * shards are the collection's (its replica sets under the placement) when the router passes
 * its catalog ({@link EntryReadDeps.layout}).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { describeGrpcError, isServiceError, type ResponseOf } from "../api/client.ts";
import { encodeCursor, type ValidScroll } from "../api/points_read.ts";
import type { ScrollPoint } from "../api/proto.ts";
import type { EntriesRequest, EntriesResponse } from "../api/transfer.ts";
import type { ValidSearch } from "../api/validate.ts";
import { compareIds, formatId, idToWire, type PointId } from "../common/point_id.ts";
import { DEFAULT_COLLECTION, ENTRIES_LIMIT_MAX, SCROLL_PAGE_BYTES_MAX } from "../common/limits.ts";
import { isNotFound, isTransient, type NodePort, RouterStatusError } from "./node_port.ts";
import type { NodeTable } from "./node_table.ts";
import { type SearchCoverage, searchCoverage, searchRetryTargets, searchTargets } from "./plan.ts";
import type { RingView } from "./ring_view.ts";
import type { ShardLayout } from "../cluster/placement.ts";

/** One node's page as the merge reads it (an Entries reply). */
export type EntryPage = Pick<
  EntriesResponse,
  "ids" | "versions" | "deleted" | "vectors" | "dimension" | "done" | "matched" | "payloads"
>;

/** Thrown for a page that breaks the Entries contract (unsorted ids, list lengths differ). */
export class EntryPageError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "EntryPageError";
  }
}

/** What the merge decided for one id. */
export interface MergedEntry {
  id: PointId;
  version: number;
  deleted: boolean;
  /** The winning entry's vector (a view into its page), when the pages carry vectors. */
  vector: ArrayLike<number> | null;
  /**
   * The WINNING entry's filter verdict: live and matching (pages without `matched` flags: every
   * live entry matches). A stale replica's matching copy never makes an id match.
   */
  matched: boolean;
  /** The winning entry's payload JSON text, when the pages carry payloads ("" for none). */
  payload: string;
}

/** One node's stream in a merge: its current page and position. */
class NodeStream {
  page: EntryPage | null = null;
  /** Next entry of `page`. */
  at = 0;
  /** Offset in `page.vectors` of the next live entry's vector. */
  vector_at = 0;
  /** Index in `page.payloads` of the next live entry's payload. */
  payload_at = 0;
  /** Last id listed by this node so far (the `after_id` of its next page); null: none yet. */
  last: PointId | null = null;

  constructor(readonly node: string) {}

  /** True once the node has listed its last entry and the merge consumed it. */
  get finished(): boolean {
    return this.page !== null && this.page.done && this.at >= this.page.ids.length;
  }

  /** True when the merge needs this node's next page before it can go on. */
  get hungry(): boolean {
    return this.page === null || (!this.page.done && this.at >= this.page.ids.length);
  }
}

/**
 * A k-way merge of per-node entry streams (see the module comment); pure, no IO. Feed each node
 * a page ({@link feed}) whenever {@link hungry} lists it, then {@link step}.
 */
export class EntryMerge {
  readonly #streams = new Map<string, NodeStream>();

  /** `nodes`: the nodes whose streams are merged; `after`: where the pages start (null: 0). */
  constructor(nodes: readonly string[], readonly after: PointId | null) {
    for (const n of nodes) this.#streams.set(n, new NodeStream(n));
  }

  /** The nodes still in the merge. */
  get nodes(): string[] {
    return [...this.#streams.keys()];
  }

  /** Nodes whose next page is needed, with the id to page after (null: from `after`). */
  hungry(): { node: string; after: PointId | null }[] {
    const out: { node: string; after: PointId | null }[] = [];
    for (const s of this.#streams.values()) {
      if (s.hungry) out.push({ node: s.node, after: s.last ?? this.after });
    }
    return out;
  }

  /** Gives `node` its next page (checked: ids ascending above what it listed, lists aligned). */
  feed(node: string, page: EntryPage): void {
    const s = this.#streams.get(node);
    if (s === undefined) throw new EntryPageError(`Node ${node} is not in the merge`);
    const n = page.ids.length;
    if (page.versions.length !== n || page.deleted.length !== n) {
      throw new EntryPageError(
        `Node ${node} sent ${n} ids with ${page.versions.length} versions and ` +
          `${page.deleted.length} deleted flags`,
      );
    }
    if (n === 0 && !page.done) {
      throw new EntryPageError(`Node ${node} sent an empty page that is not its last`);
    }
    let prev = s.last ?? this.after;
    let live = 0;
    for (let i = 0; i < n; i++) {
      if (prev !== null && !(compareIds(page.ids[i], prev) > 0)) {
        throw new EntryPageError(
          `Node ${node} listed id ${formatId(page.ids[i])} after ${formatId(prev)}: ids must ` +
            "ascend",
        );
      }
      prev = page.ids[i];
      if (!page.deleted[i]) live++;
    }
    const matched = page.matched ?? [];
    if (matched.length !== 0 && matched.length !== n) {
      throw new EntryPageError(`Node ${node} sent ${matched.length} matched flags for ${n} ids`);
    }
    const payloads = page.payloads ?? [];
    if (payloads.length !== 0 && payloads.length !== live) {
      throw new EntryPageError(
        `Node ${node} sent ${payloads.length} payloads for ${live} live entries`,
      );
    }
    if (page.vectors.length !== 0 && page.vectors.length !== live * page.dimension) {
      throw new EntryPageError(
        `Node ${node} sent ${page.vectors.length} vector values for ${live} live entries of ` +
          `dimension ${page.dimension}`,
      );
    }
    s.page = page;
    s.at = 0;
    s.vector_at = 0;
    s.payload_at = 0;
    if (n > 0) s.last = page.ids[n - 1];
  }

  /** Removes a node that failed: the merge goes on without it. */
  drop(node: string): void {
    this.#streams.delete(node);
  }

  /** True when every node's stream is consumed to its end. */
  get finished(): boolean {
    for (const s of this.#streams.values()) if (!s.finished) return false;
    return true;
  }

  /**
   * The largest id up to which every stream has listed, so merged ids up to it are final:
   * the smallest last-id (`compareIds`) among streams whose page was full; null (no bound)
   * when all are `done`.
   */
  bound(): PointId | null {
    let bound: PointId | null = null;
    for (const s of this.#streams.values()) {
      if (s.hungry) {
        throw new EntryPageError(`Node ${s.node} needs its next page before the merge goes on`);
      }
      if (!s.page!.done && (bound === null || compareIds(s.last!, bound) < 0)) bound = s.last!;
    }
    return bound;
  }

  /**
   * Merges every entry up to {@link bound}, ascending by id, calling `visit` once per id with the
   * winning entry; stops early (leaving the rest unconsumed) when `visit` returns false.
   * Returns false when stopped early. The entry object is reused for every id (a Count visits
   * millions): `visit` must copy what it keeps. A vector is only cut out of its page for the
   * winner.
   */
  step(visit: (e: MergedEntry) => boolean): boolean {
    const bound = this.bound();
    const streams = [...this.#streams.values()];
    const e: MergedEntry = {
      id: 0,
      version: 0,
      deleted: false,
      vector: null,
      matched: false,
      payload: "",
    };
    while (true) {
      let id: PointId | null = null;
      for (const s of streams) {
        const p = s.page!;
        if (s.at < p.ids.length && (id === null || compareIds(p.ids[s.at], id) < 0)) {
          id = p.ids[s.at];
        }
      }
      if (id === null || (bound !== null && compareIds(id, bound) > 0)) return true;
      let found = false;
      let page: EntryPage | null = null;
      let vector_at = -1;
      for (const s of streams) {
        const p = s.page!;
        if (s.at >= p.ids.length || p.ids[s.at] !== id) continue;
        const version = p.versions[s.at];
        const deleted = p.deleted[s.at];
        const at = !deleted && p.vectors.length > 0 ? s.vector_at : -1;
        if (at >= 0) s.vector_at += p.dimension;
        const payload_at = !deleted && p.payloads !== undefined && p.payloads.length > 0
          ? s.payload_at++
          : -1;
        const flags = p.matched;
        const matched = !deleted &&
          (flags === undefined || flags.length === 0 ? true : flags[s.at] === true);
        s.at++;
        if (!found || version > e.version || (version === e.version && e.deleted && !deleted)) {
          found = true;
          e.version = version;
          e.deleted = deleted;
          e.matched = matched;
          e.payload = payload_at >= 0 ? p.payloads![payload_at] : "";
          page = p;
          vector_at = at;
        }
      }
      e.id = id;
      e.vector = vector_at < 0
        ? null
        : subarray(page!.vectors, vector_at, vector_at + page!.dimension);
      if (!visit(e)) return false;
    }
  }
}

function subarray(values: ArrayLike<number>, from: number, to: number): ArrayLike<number> {
  if (Array.isArray(values)) return values.slice(from, to);
  return (values as Float32Array).subarray(from, to);
}

// ----------------------------------------------------------------------------- the driver

/** What {@link readEntries} needs. */
export interface EntryReadDeps {
  nodes: NodePort;
  table: NodeTable;
  /** Deadline of the second round, which waits for reconnecting channels. */
  retry_timeout_ms: number;
  /**
   * A collection's shard layout (the router's catalog). Coverage is then counted per shard of
   * the placement (a shard is read when one of its replicas answered); absent: per ring shard.
   */
  layout?: (collection: string) => Promise<ShardLayout>;
}

/** One logical read: which collection, from where, how big each node's pages are. */
export interface EntryRead {
  collection: string;
  /** Ids above this one (`compareIds`); null: from the start. */
  after: PointId | null;
  /** Entries per node page, 1 .. ENTRIES_LIMIT_MAX. */
  page_limit: number;
  with_vector: boolean;
  /** A filter's JSON text for the nodes (sets each entry's `matched`); "" for none. */
  filter?: string;
  /** Ask for the live entries' payloads. */
  with_payload?: boolean;
  /** Called per merged id, ascending; return false to stop reading. */
  visit: (e: MergedEntry) => boolean;
  /** What the read is, for messages: "Scroll", "Count". */
  what: string;
}

/**
 * Reads the merged entries of a collection across `view`'s nodes (see the module comment) until
 * `visit` stops it or every node is read to its end. Resolves with the coverage; rejects with
 * NOT_FOUND when every node that answered lacks the collection, UNAVAILABLE when none
 * answered, or the first verdict (a non-transient error) a node gave.
 */
export async function readEntries(
  deps: EntryReadDeps,
  view: RingView,
  read: EntryRead,
): Promise<SearchCoverage> {
  const { nodes, table } = deps;
  const shards = deps.layout === undefined
    ? view.shards
    : view.placement.shards(read.collection, await deps.layout(read.collection));
  const page_limit = Math.max(1, Math.min(ENTRIES_LIMIT_MAX, read.page_limit));
  const down = new Set<string>();
  for (const s of table.all()) if (!s.delivery.reachable) down.add(s.address);
  const asked = new Set<string>();
  /** Nodes that answered (or lack the collection) and have not failed since. */
  const answered = new Set<string>();
  /** Nodes in the merge: those that answered a first page. */
  const first = new Map<string, EntriesResponse>();
  let notFound: unknown = null;
  /** Nodes that answered NOT_FOUND (they lack the collection). */
  const missing = new Set<string>();
  const errors: string[] = [];

  const request = (after: PointId | null): EntriesRequest => ({
    collection: read.collection,
    after_id: after === null ? 0 : idToWire(after).id,
    after_string_id: after === null ? "" : idToWire(after).string_id,
    from_start: after === null,
    limit: page_limit,
    with_vector: read.with_vector,
    filter: read.filter ?? "",
    with_payload: read.with_payload ?? false,
  });
  /** Fetches one page of each of `targets`; failed ones are returned with their errors. */
  const fetch = async (
    targets: { node: string; after: PointId | null }[],
    wait_for_ready: boolean,
  ) => {
    const settled = await Promise.allSettled(targets.map((t) =>
      nodes.entries(
        t.node,
        request(t.after),
        wait_for_ready ? { wait_for_ready, timeout_ms: deps.retry_timeout_ms } : {},
      )
    ));
    return settled.map((s, i) => {
      const node = targets[i].node;
      const state = table.find(node);
      if (state !== undefined) table.observe(state, s.status === "fulfilled" ? null : s.reason);
      if (s.status === "fulfilled") return { node, page: s.value, error: null };
      if (isNotFound(s.reason)) {
        notFound ??= s.reason;
        missing.add(node);
        // No such collection there: the node answered, with nothing.
        return { node, page: emptyPage(), error: null };
      }
      if (!isTransient(s.reason)) throw s.reason;
      errors.push(`${node}: ${describeGrpcError(s.reason)}`);
      return { node, page: null, error: s.reason };
    });
  };

  const round = async (targets: string[], wait_for_ready: boolean) => {
    for (const t of targets) asked.add(t);
    const got = await fetch(targets.map((node) => ({ node, after: read.after })), wait_for_ready);
    for (const g of got) {
      if (g.page === null) continue;
      answered.add(g.node);
      first.set(g.node, g.page);
    }
  };
  await round(searchTargets(view.nodes, shards, down), false);
  const retry = searchRetryTargets(view.nodes, shards, answered, asked);
  if (retry.length > 0) await round(retry, true);
  if (answered.size === 0) {
    throw new RouterStatusError(
      grpc.status.UNAVAILABLE,
      `No storage node answered the ${read.what} (${asked.size} asked): ${errors.join("; ")}`,
    );
  }
  if (missing.size === answered.size && read.collection !== DEFAULT_COLLECTION) {
    // Every node that answered lacks the collection. (The default collection exists only after
    // its first Put: before that it reads as empty, as on a storage node.)
    throw notFound;
  }

  const merge = new EntryMerge([...first.keys()], read.after);
  for (const [node, page] of first) merge.feed(node, page);
  while (merge.step(read.visit)) {
    if (merge.finished) break;
    const got = await fetch(merge.hungry(), false);
    for (const g of got) {
      if (g.page === null) {
        merge.drop(g.node);
        answered.delete(g.node);
      } else merge.feed(g.node, g.page);
    }
  }
  return searchCoverage(shards, answered);
}

function emptyPage(): EntriesResponse {
  return { ids: [], versions: [], deleted: [], vectors: [], dimension: 0, done: true };
}

/** A node error as `{code, details}` for wrapping (grpc-js error or the router's own). */
export function statusOf(e: unknown): { code: grpc.status; details: string } | null {
  if (e instanceof RouterStatusError) return { code: e.code, details: e.message };
  if (isServiceError(e)) return { code: e.code, details: e.details || e.message };
  return null;
}

// ----------------------------------------------------------------------------- the RPCs

/**
 * The router's Scroll: up to `limit` live points above the cursor, each id once (the newest
 * version decides); the page also stops once its vectors hold SCROLL_PAGE_BYTES_MAX.
 * `next_cursor` is "" only when the merge found no further live point.
 */
export async function routerScroll(
  deps: EntryReadDeps,
  view: RingView,
  v: ValidScroll,
  filter: ScrollFilter = {},
): Promise<ResponseOf<"Scroll">> {
  const points: ScrollPoint[] = [];
  let last: PointId | null = null;
  let bytes = 0;
  let more = false;
  const coverage = await readEntries(deps, view, {
    collection: v.collection,
    after: v.after,
    // One more than the page, so the merge can tell whether a point follows it.
    page_limit: v.limit + 1,
    with_vector: v.with_vector,
    filter: filter.filter,
    with_payload: filter.with_payload,
    what: "Scroll",
    visit: (e) => {
      if (e.deleted || !e.matched) return true;
      if (points.length >= v.limit || bytes >= SCROLL_PAGE_BYTES_MAX) {
        more = true;
        return false;
      }
      last = e.id;
      points.push({
        ...idToWire(e.id),
        vector: v.with_vector && e.vector !== null ? Array.from(e.vector) : [],
        version: String(e.version),
        ...(filter.with_payload ? { payload: e.payload } : {}),
      });
      if (e.vector !== null) bytes += e.vector.length * 4;
      if (filter.with_payload) bytes += e.payload.length;
      return true;
    },
  });
  // The cursor of a string id is "v1s:" and the id as JSON; of an integer id "v1:" and digits.
  const next_cursor = more && last !== null ? encodeCursor(last) : "";
  return { points, next_cursor, ...coverage };
}

/** The filter part of a Scroll (router-side fields; "" / false: none). */
export interface ScrollFilter {
  filter?: string;
  with_payload?: boolean;
}

/**
 * The router's Count: distinct ids whose newest entry among the replicas is live (and, with a
 * filter, matches it: the newest entry's verdict decides).
 */
export async function routerCount(
  deps: EntryReadDeps,
  view: RingView,
  collection: string,
  filter = "",
): Promise<ResponseOf<"Count">> {
  let count = 0;
  const coverage = await readEntries(deps, view, {
    collection,
    after: null,
    page_limit: ENTRIES_LIMIT_MAX,
    with_vector: false,
    filter,
    what: "Count",
    visit: (e) => {
      if (!e.deleted && e.matched) count++;
      return true;
    },
  });
  return { count: String(count), ...coverage };
}

/**
 * The logical ids matching `filter` (as {@link routerCount} counts them), ascending, handed to
 * `chunk` in lists of at most `chunk_size` (awaited before reading on). Resolves with how
 * many ids were handed over, and the coverage.
 */
export async function routerMatchingIds(
  deps: EntryReadDeps,
  view: RingView,
  collection: string,
  filter: string,
  chunk_size: number,
  chunk: (ids: PointId[]) => Promise<void>,
): Promise<{ ids: number; coverage: SearchCoverage }> {
  // Every matching id is resolved first (the proto's "resolved, then deleted": the merge's
  // visit cannot await a write), then handed over chunk by chunk.
  const all: PointId[] = [];
  let total = 0;
  const coverage = await readEntries(deps, view, {
    collection,
    after: null,
    page_limit: ENTRIES_LIMIT_MAX,
    with_vector: false,
    filter,
    what: "DeleteByFilter",
    visit: (e) => {
      if (!e.deleted && e.matched) all.push(e.id);
      return true;
    },
  });
  for (let i = 0; i < all.length; i += chunk_size) {
    const part = all.slice(i, i + chunk_size);
    await chunk(part);
    total += part.length;
  }
  return { ids: total, coverage };
}

/** Searches of one SearchBatch the router runs at once. */
export const SEARCH_BATCH_CONCURRENCY = 8;

/**
 * Runs each search of a batch with `search` (the router's scatter-gather Search), at most
 * `concurrency` at once, and answers in request order. The first failure fails the batch, its
 * message prefixed with the search it came from (`searches[3]: ...`), its status kept.
 */
export async function runSearchBatch<R>(
  searches: readonly ValidSearch[],
  search: (v: ValidSearch) => Promise<R>,
  concurrency = SEARCH_BATCH_CONCURRENCY,
): Promise<R[]> {
  const results: R[] = new Array(searches.length);
  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (failed === null && next < searches.length) {
      const i = next++;
      try {
        results[i] = await search(searches[i]);
      } catch (e) {
        const s = statusOf(e);
        failed ??= s === null ? e : new RouterStatusError(s.code, `searches[${i}]: ${s.details}`);
      }
    }
  };
  const workers = Math.max(1, Math.min(concurrency, searches.length));
  await Promise.all(Array.from({ length: workers }, worker));
  if (failed !== null) throw failed;
  return results;
}
