/**
 * Pages of one collection in ascending id order, as a storage node answers them: the public
 * Scroll (live points only) and the internal `Transfer.Entries` (live points AND tombstones with
 * their versions, which the router merges across replicas; see src/router/points_read.ts).
 *
 * Both walk {@link Collection.sortedIds} (the collection's ids, sorted once and kept until a
 * write changes them) from a binary search for the page start, so a page costs O(log n + page)
 * while nobody writes, and one sort after each write otherwise. Nothing is kept per client: a
 * page starts wherever its cursor says.
 *
 * @module
 */
import type { EntriesWireResponse } from "../api/transfer.ts";
import type { ScrollPoint } from "../api/proto.ts";
import { encodeCursor } from "../api/points_read.ts";
import { SCROLL_PAGE_BYTES_MAX } from "../common/limits.ts";
import type { IdList } from "../storage/collection.ts";
import type { ShardedCollection as Collection } from "../storage/sharded_collection.ts";
import { idToWire, type PointId } from "../common/point_id.ts";
import type { Filter } from "../common/filter.ts";
import { payloadText } from "../common/payload.ts";

/** An Entries page stops once its vectors hold this many bytes (as a Scan page does). */
export const ENTRIES_PAGE_BYTES_MAX = 4 * 2 ** 20;

/** First position in `ids` whose id is above `after` in `compareIds` order (0 for null). */
export function upperBound(ids: IdList, after: PointId | null): number {
  return ids.upperBound(after);
}

/** One Scroll page of a node's own points. */
export interface ScrollPage {
  points: ScrollPoint[];
  /** "" when no live point follows the last one listed. */
  next_cursor: string;
}

/**
 * Up to `limit` live points with ids above `after` (null: from the start), ascending; the page
 * also stops once its vectors hold {@link SCROLL_PAGE_BYTES_MAX}. `next_cursor` is "" only when
 * no live point follows, so a client never needs an extra empty call at the end.
 */
export function scrollPage(
  c: Collection,
  after: PointId | null,
  limit: number,
  with_vector: boolean,
  filter: Filter | null = null,
  with_payload = false,
): ScrollPage {
  const ids = c.sortedIds();
  const matches = c.matcher(filter);
  const points: ScrollPoint[] = [];
  let bytes = 0;
  let lastAt = -1;
  let i = upperBound(ids, after);
  for (; i < ids.length && points.length < limit && bytes < SCROLL_PAGE_BYTES_MAX; i++) {
    if (!matches(ids.at(i))) continue; // a tombstone or a point the filter leaves out
    const e = c.getEntry(ids.at(i));
    if (e.vector === null) continue;
    const p: ScrollPoint = {
      ...idToWire(ids.at(i)),
      vector: with_vector ? Array.from(e.vector) : [],
      version: String(e.version),
    };
    if (with_vector) bytes += e.vector.byteLength;
    if (with_payload) {
      const bytesOf = c.getPayload(ids.at(i));
      if (bytesOf !== null) {
        p.payload = payloadText(bytesOf);
        bytes += bytesOf.length;
      }
    }
    points.push(p);
    lastAt = i;
  }
  // Whether another matching point follows (a run of tombstones may end the collection). With
  // a filter this may test the rest of the collection; it stops at the first match.
  let more = false;
  for (; i < ids.length && !more; i++) more = matches(ids.at(i));
  const last = points.length > 0 ? ids.at(lastAt) : null;
  return { points, next_cursor: more && last !== null ? encodeCursor(last) : "" };
}

/**
 * Up to `limit` entries (live points and tombstones) with ids above `after` (null: from the
 * start), ascending, as parallel lists in wire form: the integer ids in `ids` (bigints as decimal
 * strings), then the string ids in `string_ids` (`compareIds` lists every integer first), with
 * `versions`, `deleted` and `matched` over the two in that order; with `with_vector`, the vectors
 * of the live ones, and the page stops once they hold {@link ENTRIES_PAGE_BYTES_MAX} (after at
 * least one entry).
 */
export function entriesPage(
  c: Collection,
  after: PointId | null,
  limit: number,
  with_vector: boolean,
  filter: Filter | null = null,
  with_payload = false,
): EntriesWireResponse {
  const matches = c.matcher(filter);
  const ids = c.sortedIds();
  const out: EntriesWireResponse = {
    ids: [],
    string_ids: [],
    versions: [],
    deleted: [],
    vectors: [],
    dimension: c.config.dimension,
    done: false,
    matched: [],
  };
  if (with_payload) out.payloads = [];
  let bytes = 0;
  let i = upperBound(ids, after);
  for (; i < ids.length && out.versions.length < limit && bytes < ENTRIES_PAGE_BYTES_MAX; i++) {
    const id = ids.at(i);
    const e = c.getEntry(id);
    if (e.vector === null && !e.deleted) continue; // no entry (cannot happen with fresh ids)
    if (typeof id === "string") out.string_ids.push(id);
    else out.ids.push(typeof id === "bigint" ? id.toString() : id);
    out.versions.push(e.version);
    out.deleted.push(e.deleted);
    out.matched!.push(e.vector !== null && matches(ids.at(i)));
    if (with_vector && e.vector !== null) {
      for (let j = 0; j < e.vector.length; j++) out.vectors.push(e.vector[j]);
      bytes += e.vector.byteLength;
    }
    if (with_payload && e.vector !== null) {
      const p = c.getPayload(ids.at(i));
      out.payloads!.push(payloadText(p));
      bytes += p?.length ?? 0;
    }
  }
  out.done = i >= ids.length;
  return out;
}
