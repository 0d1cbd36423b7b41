/**
 * The ids of some digest buckets of one shard unit, gathered once per paging of BucketEntries
 * (src/node/transfer_service.ts) and reused by the pages after the first.
 *
 * Why: a page of BucketEntries wants the unit's entries of a few buckets (the ones whose digests
 * differ), ascending after a cursor. Without this, every page walked the unit's whole id order
 * from the cursor, hashing every id to find the few of those buckets; and under writes the
 * unit's cached id order is rebuilt (O(n log n)) between pages. With it, the first page of a
 * paging (no cursor) walks the id order once and keeps the ids of the requested buckets, sorted;
 * the following pages binary-search that list: O(log k + page) each.
 *
 * A gather is a moment's view: ids written after it in those buckets are not in it (the caller
 * finds a forgotten id holds nothing and skips it; a new one waits for the next anti-entropy
 * run, which starts a new paging and so a new gather). So a gather is used only by pages that
 * continue it (cursor inside it, same unit, same buckets), for at most {@link GATHER_TTL_MS}.
 *
 * Memory is bounded: at most {@link GATHERS_MAX} gathers are kept (the oldest goes first), and
 * one over {@link GATHER_IDS_MAX} ids is not kept (its pages fall back to the walk), so the
 * cache holds at most GATHERS_MAX × GATHER_IDS_MAX ids (4 bytes each for uint32 ids: 32 MiB at
 * worst, typically a few KiB: a differing bucket holds ~n/1024 ids).
 *
 * @module
 */
import { bucketOf } from "../common/digest.ts";
import type { PointId } from "../common/point_id.ts";
import { IdList } from "../storage/collection.ts";

/** Gathers kept at once (concurrent anti-entropy pagings of different shards or buckets). */
export const GATHERS_MAX = 8;
/** Largest gather kept, in ids. */
export const GATHER_IDS_MAX = 1 << 20;
/** How long a gather serves the pages that continue it. */
export const GATHER_TTL_MS = 60_000;

/** The unit part {@link BucketGatherCache} reads. */
export interface GatherSource {
  sortedIds(): IdList;
}

interface Gather {
  unit: GatherSource;
  ids: IdList;
  made_ms: number;
}

/** The mask's buckets as a key (the set bits, in order). */
function maskKey(mask: Uint8Array): string {
  const on: number[] = [];
  for (let k = 0; k < mask.length; k++) if (mask[k] === 1) on.push(k);
  return on.join(",");
}

/** The ids of `unit` whose bucket is in `mask`, in the unit's id order (see module comment). */
export function gatherBuckets(unit: GatherSource, mask: Uint8Array): IdList {
  const all = unit.sortedIds();
  const u32: number[] = [];
  const others: PointId[] = [];
  for (let i = 0; i < all.length; i++) {
    const id = all.at(i);
    if (mask[bucketOf(id)] !== 1) continue;
    if (i < all.u32.length) u32.push(id as number);
    else others.push(id);
  }
  return new IdList(Uint32Array.from(u32), others);
}

/** The kept gathers, keyed by an opaque name (collection and shard) and the bucket set. */
export class BucketGatherCache {
  private readonly gathers = new Map<string, Gather>();
  /** Gathers made (walks of a whole unit), for tests and metrics. */
  made = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** Gathers kept now. */
  get size(): number {
    return this.gathers.size;
  }

  /**
   * The ids of `mask`'s buckets of `unit` for one page: a new gather for a first page (`after`
   * null), else the kept one when it continues that paging; null when none is kept (too large,
   * expired, evicted, or another unit or bucket set): the caller walks the unit.
   */
  idsFor(name: string, unit: GatherSource, mask: Uint8Array, after: PointId | null): IdList | null {
    const key = `${name}\0${maskKey(mask)}`;
    const t = this.now();
    if (after !== null) {
      const g = this.gathers.get(key);
      if (g === undefined || g.unit !== unit || t - g.made_ms > GATHER_TTL_MS) return null;
      return g.ids;
    }
    const ids = gatherBuckets(unit, mask);
    this.made++;
    this.gathers.delete(key);
    if (ids.length <= GATHER_IDS_MAX) {
      this.gathers.set(key, { unit, ids, made_ms: t });
      // Insertion order is age order: the first key is the oldest.
      while (this.gathers.size > GATHERS_MAX) {
        this.gathers.delete(this.gathers.keys().next().value!);
      }
    }
    return ids;
  }

  /** Drops the gather of `name` and `mask` (its paging reached the end). */
  done(name: string, mask: Uint8Array): void {
    this.gathers.delete(`${name}\0${maskKey(mask)}`);
  }
}
