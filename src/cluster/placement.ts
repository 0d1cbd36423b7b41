/**
 * Shards and their placement, as pure functions of the membership: no IO, no clock, no
 * consensus. Every router and every node computes the same answer from the same member list.
 *
 * - A collection has `shard_number` shards (S). A point's shard is its id's stable hash modulo
 *   S ({@link shardOf}, src/common/shard.ts, shared with the storage layer).
 * - Each shard is a replica set of `replication_factor` (R) members, chosen by rendezvous
 *   (highest random weight) hashing: every member gets a score, a hash of
 *   `(collection, shard, member)`, and the R highest scores hold the shard
 *   ({@link shardReplicas}). Ties (never seen in practice with 32-bit scores, but possible) go to
 *   the smaller member id. The first replica is the shard's primary.
 * - Why rendezvous: when a member joins, a shard moves to it only where the newcomer's score
 *   beats one of the current R best (about R/(N+1) of the shards, each losing one replica); when
 *   a member leaves, only the shards it held change, each gaining the next best member. No
 *   other shard moves, and no virtual nodes or ring state are needed: the member list is the
 *   whole input.
 * - Including the collection name in the score spreads the primaries of different collections
 *   over different members instead of stacking every collection's shard 0 on one node.
 *
 * A collection made before shards existed has one shard (S = 1) held by R members: its data
 * directory on each node is that shard's replica.
 *
 * @example
 * ```ts
 * import { Placement, shardOf } from "./placement.ts";
 * const p = new Placement(["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"]);
 * const layout = { shard_number: 3, replication_factor: 2 };
 * const shard = shardOf("doc-7", layout.shard_number); // 0, 1 or 2, the same everywhere
 * const owners = p.replicas("docs", layout, shard); // two member ids, primary first
 * console.log(p.owners("docs", layout, "doc-7") === owners); // true (cached)
 * ```
 * @module
 */

import { hashString } from "../common/hash.ts";
import { shardOf } from "../common/shard.ts";
import type { PointId } from "../common/point_id.ts";

export { shardOf };
import { REPLICATION_FACTOR_MAX, SHARDS_MAX } from "../common/limits.ts";

/** A collection's shard layout. */
export interface ShardLayout {
  /** Shards, 1 .. SHARDS_MAX. */
  readonly shard_number: number;
  /** Replicas per shard, 1 .. REPLICATION_FACTOR_MAX (fewer when there are fewer members). */
  readonly replication_factor: number;
}

/** Thrown for a layout outside its bounds or a shard outside the layout. */
export class PlacementError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "PlacementError";
  }
}

/** Checks a layout's bounds (both integers within their limits). */
export function checkLayout(layout: ShardLayout): ShardLayout {
  const { shard_number: s, replication_factor: r } = layout;
  if (!Number.isInteger(s) || s < 1 || s > SHARDS_MAX) {
    throw new PlacementError(`shard_number ${s} is outside 1..${SHARDS_MAX}`);
  }
  if (!Number.isInteger(r) || r < 1 || r > REPLICATION_FACTOR_MAX) {
    throw new PlacementError(`replication_factor ${r} is outside 1..${REPLICATION_FACTOR_MAX}`);
  }
  return layout;
}

/** The rendezvous score of `member` for one shard of one collection (a uint32). */
export function shardScore(collection: string, shard: number, member: string): number {
  // NUL cannot occur in a collection name or an address, so the three parts cannot run together.
  return hashString(`${collection}\u0000${shard}\u0000${member}`) >>> 0;
}

/**
 * The members holding `shard` of `collection`: the `rf` highest {@link shardScore}s (all members
 * when there are fewer), highest first; equal scores by member id.
 */
export function shardReplicas(
  collection: string,
  shard: number,
  members: readonly string[],
  rf: number,
): string[] {
  const scored = members.map((m) => ({ m, s: shardScore(collection, shard, m) }));
  scored.sort((a, b) => b.s - a.s || (a.m < b.m ? -1 : a.m > b.m ? 1 : 0));
  return scored.slice(0, Math.min(rf, scored.length)).map((x) => x.m);
}

/** One shard whose replica set differs between two placements. */
export interface ShardMove {
  shard: number;
  /** Replicas before, primary first. */
  before: readonly string[];
  /** Replicas after, primary first. */
  after: readonly string[];
  /** Members that gain the shard (must receive a copy). */
  gained: string[];
  /** Members that lose it (may forget it once every gainer caught up). */
  lost: string[];
}

/**
 * The placement of every collection's shards over one member list; immutable, replaced as a
 * whole when the membership changes (a request plans on the one current when it starts).
 * Replica lists are computed once per (collection, layout) and shared: callers must not mutate
 * them.
 */
export class Placement {
  /** The members (node addresses), sorted, without repeats. */
  readonly members: readonly string[];
  readonly #cache = new Map<string, readonly (readonly string[])[]>();

  constructor(members: Iterable<string>) {
    this.members = [...new Set(members)].sort();
  }

  /** The replica list of every shard of `collection`, indexed by shard. */
  shards(collection: string, layout: ShardLayout): readonly (readonly string[])[] {
    const key = `${collection}\u0000${layout.shard_number}\u0000${layout.replication_factor}`;
    let all = this.#cache.get(key);
    if (all === undefined) {
      checkLayout(layout);
      const list: string[][] = [];
      for (let s = 0; s < layout.shard_number; s++) {
        list.push(shardReplicas(collection, s, this.members, layout.replication_factor));
      }
      all = list;
      // Bounded by the collections a router knows (COLLECTIONS_MAX) times layouts seen.
      this.#cache.set(key, all);
    }
    return all;
  }

  /** The replicas of `shard`, primary first. */
  replicas(collection: string, layout: ShardLayout, shard: number): readonly string[] {
    if (!Number.isInteger(shard) || shard < 0 || shard >= layout.shard_number) {
      throw new PlacementError(`shard ${shard} is outside 0..${layout.shard_number - 1}`);
    }
    return this.shards(collection, layout)[shard];
  }

  /** The replicas of the shard of point `id`, primary first. */
  owners(collection: string, layout: ShardLayout, id: PointId): readonly string[] {
    return this.shards(collection, layout)[shardOf(id, layout.shard_number)];
  }

  /** The shards of `collection` that `member` holds a replica of, ascending. */
  shardsOf(collection: string, layout: ShardLayout, member: string): number[] {
    const out: number[] = [];
    this.shards(collection, layout).forEach((r, s) => {
      if (r.includes(member)) out.push(s);
    });
    return out;
  }

  /** The shards of `collection` whose replica sets differ from `before`'s, ascending. */
  moves(before: Placement, collection: string, layout: ShardLayout): ShardMove[] {
    const a = before.shards(collection, layout);
    const b = this.shards(collection, layout);
    const out: ShardMove[] = [];
    for (let s = 0; s < layout.shard_number; s++) {
      const gained = b[s].filter((m) => !a[s].includes(m));
      const lost = a[s].filter((m) => !b[s].includes(m));
      if (gained.length > 0 || lost.length > 0) {
        out.push({ shard: s, before: a[s], after: b[s], gained, lost });
      }
    }
    return out;
  }
}
