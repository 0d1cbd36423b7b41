/**
 * A point's shard: the one function every router and storage node must agree on, in `common`
 * so that the storage layer (which splits a collection into shard replicas) and the cluster
 * layer (which places shards on members, src/cluster/placement.ts) share it.
 *
 * @example
 * ```ts
 * import { shardOf } from "./shard.ts";
 * console.log(shardOf(7, 1)); // 0: one shard holds everything
 * console.log(shardOf("doc-7", 4) < 4); // true
 * ```
 * @module
 */
import { hashPointId } from "./hash.ts";
import type { PointId } from "./point_id.ts";

/**
 * The shard of point `id` in a collection of `shard_number` shards: 0 .. shard_number - 1, its
 * id's stable hash ({@link hashPointId}, pinned by hash_test.ts) modulo the shard count. Never
 * change it: it decides where every stored point lives.
 */
export function shardOf(id: PointId, shard_number: number): number {
  if (shard_number === 1) return 0;
  return (hashPointId(id) >>> 0) % shard_number;
}
