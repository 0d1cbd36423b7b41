/**
 * The router's Stats counts a collection's points logically: each point once, not once per
 * replica. A node reports, per collection, its live points and tombstones in total and (for a
 * collection of more than one shard) per shard unit; the router sums over shards, for each
 * shard the largest figure among the nodes the placement names as its replicas (those that
 * answered). Replicas of a shard agree once rebalancing and hints caught up; while one lags,
 * the largest is the closest to the truth (a lagging replica misses points, it does not invent
 * them). A shard none of whose replicas answered is counted from any node that reported it
 * (e.g. a node still holding it before a move settled), else 0. The figure summed over every
 * node, each replica counting, stays available as `replica_count`, and each node's own figures
 * in StatsResponse.nodes.
 *
 * @example
 * ```ts
 * // RF 2, one shard, both replicas report 100,000 points: count 100000, replica_count 200000.
 * ```
 * @module
 */
import type { CollectionStats } from "../api/proto.ts";
import type { ShardLayout } from "../cluster/placement.ts";

/** One node's answer: its address and its collections (as its Stats reports them). */
export interface NodeCollections {
  address: string;
  collections: readonly CollectionStats[];
}

/** Per shard of one collection on one node: live points and tombstones. */
function perShard(c: CollectionStats, shard_number: number): { count: bigint; tombs: bigint }[] {
  const out = Array.from({ length: shard_number }, () => ({ count: -1n, tombs: -1n }));
  if (c.shards !== undefined && c.shards.length > 0) {
    for (const s of c.shards) {
      if (s.shard >= 0 && s.shard < shard_number) {
        out[s.shard] = { count: BigInt(s.count), tombs: BigInt(s.tombstones ?? 0) };
      }
    }
  } else if (shard_number === 1) {
    // A 1-shard collection reports its one unit as its totals.
    out[0] = { count: BigInt(c.count), tombs: BigInt(c.tombstones ?? 0) };
  }
  return out;
}

/**
 * Sets `count` and `tombstones` of each summed collection in `sums` to their logical figures
 * (module comment) and `replica_count` to the sum over nodes it had. `layout` gives a
 * collection's layout, `replicas` the nodes of a shard under the placement reads use.
 */
export function logicalCounts(
  sums: CollectionStats[],
  answers: readonly NodeCollections[],
  layout: (collection: string) => ShardLayout,
  replicas: (collection: string, layout: ShardLayout, shard: number) => readonly string[],
): void {
  for (const sum of sums) {
    const l = layout(sum.name);
    const held = new Map<string, { count: bigint; tombs: bigint }[]>();
    for (const a of answers) {
      const c = a.collections.find((x) => x.name === sum.name);
      if (c !== undefined) held.set(a.address, perShard(c, l.shard_number));
    }
    let count = 0n;
    let tombs = 0n;
    for (let k = 0; k < l.shard_number; k++) {
      const owners = replicas(sum.name, l, k).filter((n) => held.has(n));
      const from = owners.length > 0 ? owners : [...held.keys()];
      let bestCount = 0n;
      let bestTombs = 0n;
      for (const n of from) {
        const s = held.get(n)![k];
        if (s.count > bestCount) bestCount = s.count;
        if (s.tombs > bestTombs) bestTombs = s.tombs;
      }
      count += bestCount;
      tombs += bestTombs;
    }
    sum.replica_count = sum.count;
    sum.count = count.toString();
    sum.tombstones = tombs.toString();
  }
}
