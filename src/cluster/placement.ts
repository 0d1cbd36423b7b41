/**
 * Shards and their placement, as pure functions of the membership: no IO, no clock, no
 * consensus. Every router and every node computes the same answer from the same member list.
 *
 * - A collection has `shard_number` shards (S). A point's shard is its id's stable hash modulo
 *   S ({@link shardOf}, src/common/shard.ts, shared with the storage layer).
 * - Each shard is a replica set of `replication_factor` (R) members, chosen by rendezvous
 *   (highest random weight) hashing: every member gets a score, a hash of
 *   `(collection, shard, member)`, and the R highest scores hold the shard, within the load
 *   bound below. Ties (never seen in practice with 32-bit scores, but possible) go to the
 *   smaller member id. The first replica is the shard's primary.
 * - Bounded loads: plain rendezvous hashing balances only on average; with few shards it can
 *   stack them (3 shards of RF 2 on 3 members all land on the same two members one time in
 *   nine, leaving the third idle). So each member holds at most
 *   `cap = ceil(S × R / N)` replicas of a collection: shards are placed in order 0 .. S-1, each
 *   taking the R highest-scoring members still under the cap ({@link shardReplicasAll}). With
 *   S × R a multiple of N every member holds exactly `cap`.
 * - Why rendezvous: when a member joins, a shard moves to it mostly where the newcomer's score
 *   beats one of the current R best (about R/(N+1) of the shards, each losing one replica; the
 *   cap moves a few more); when a member leaves, mostly the shards it held change. No virtual
 *   nodes or ring state are needed: the member list is the whole input.
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
 * The replicas of every shard of `collection` (indexed by shard), each the `rf` highest
 * {@link shardScore}s among the members still under the load cap (module comment), highest
 * first; all members when there are fewer than `rf`.
 */
export function shardReplicasAll(
  collection: string,
  shard_number: number,
  members: readonly string[],
  rf: number,
): string[][] {
  const n = members.length;
  const want = Math.min(rf, n);
  const cap = n === 0 ? 0 : Math.ceil((shard_number * want) / n);
  const left = new Array<number>(n).fill(cap); // replicas each member may still take
  const out: string[][] = [];
  const order = members.map((_, i) => i);
  for (let s = 0; s < shard_number; s++) {
    const score = members.map((m) => shardScore(collection, s, m));
    order.sort((a, b) =>
      score[b] - score[a] || (members[a] < members[b] ? -1 : members[a] > members[b] ? 1 : 0)
    );
    const picked: number[] = [];
    for (const i of order) {
      if (picked.length === want) break;
      if (left[i] === 0) continue;
      // Take i only if the rest of this shard and every later shard can still be placed.
      left[i]--;
      picked.push(i);
      if (!completable(left, picked, want, shard_number - s - 1, want)) {
        picked.pop();
        left[i]++;
      }
    }
    // Never short of replicas: the bound yields before the replication factor does.
    for (const i of order) {
      if (picked.length === want) break;
      if (!picked.includes(i)) picked.push(i);
    }
    out.push(picked.map((i) => members[i]));
  }
  return out;
}

/**
 * Whether the current shard (holding `picked`, needing `want`) and `later` more shards of `rf`
 * distinct members each fit in the capacities `left`: the current shard takes the unpicked
 * members with the most room (best for the later ones), then the later shards fit iff
 * Σ min(left, later) ≥ later × rf (each member serves a shard at most once).
 */
function completable(
  left: readonly number[],
  picked: readonly number[],
  want: number,
  later: number,
  rf: number,
): boolean {
  const room = left.slice();
  const free = room.map((_, i) => i).filter((i) => !picked.includes(i) && room[i] > 0);
  free.sort((a, b) => room[b] - room[a]);
  const need = want - picked.length;
  if (free.length < need) return false;
  for (let k = 0; k < need; k++) room[free[k]]--;
  let sum = 0;
  for (const r of room) sum += Math.min(r, later);
  return sum >= later * rf;
}

/**
 * The replicas of point `id`'s shard in `shards`, a collection's replica lists as
 * {@link Placement.shards} returns them (its length is the shard count). A request over many
 * ids resolves `shards` once and calls this per id: no cache key is built per id.
 */
export function ownersIn(shards: readonly (readonly string[])[], id: PointId): readonly string[] {
  return shards[shardOf(id, shards.length)];
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
      all = shardReplicasAll(
        collection,
        layout.shard_number,
        this.members,
        layout.replication_factor,
      );
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
