/**
 * Rebalancing decisions, as pure functions of placements: where an entry found on a node must
 * be copied, whether that node may forget it afterwards, and which nodes a read must ask while a
 * move is unsettled. No IO, no clock; the router's driver (src/router/rebalance/rebalancer.ts)
 * scans the nodes and performs what this decides, and tests/sim/rebalance_sim_test.ts drives
 * the driver itself over simulated nodes.
 *
 * The owners of an entry are the replicas of its shard: `placement.owners(collection, layout,
 * id)` (src/cluster/placement.ts), where the layout (shard count, replication factor) is the
 * collection's. A collection from before shards is one shard of the router's replication
 * factor, placed the same way (that is the migration: its points move to that shard's replicas).
 *
 * Why this is so little: every write carries a version and every node applies writes, copies
 * and hints last-writer-wins, tombstones included (see "Versions" in proto/vector_db.proto and
 * src/storage/collection.ts). Copying an entry to a node can therefore never undo a newer write
 * or resurrect a delete, and copying it twice is harmless. So a move is plain anti-entropy:
 * every node of the placement now in use sends every entry it holds (live points and
 * tombstones) to the entry's other owners under that placement; once all those copies
 * succeeded, each owner holds the newest version any reachable node had, and the nodes that no
 * longer own an entry may forget it (only if they still hold the version they sent: a newer one
 * that arrived meanwhile stays, for the next run to place). Entries still move point by point;
 * moving whole shard replicas as files is a later step (issue 14, must-have 4).
 *
 * Reads during a move. Until a run succeeds, the newest version of a point may sit only on a
 * node that owned it under an earlier placement (the settled one or one published since). A
 * read therefore asks the owners under every one of those placements and the current one
 * ({@link readSet}) and takes the highest version.
 *
 * @example
 * ```ts
 * import { Placement } from "../../cluster/placement.ts";
 * import { readSet, routeEntry } from "./plan.ts";
 *
 * const layout = { shard_number: 3, replication_factor: 2 };
 * const before = new Placement(["a:1", "b:1", "c:1"]);
 * const after = new Placement(["a:1", "b:1", "c:1", "d:1"]);
 * const r = routeEntry(after, "docs", layout, "a:1", 42);
 * // r.targets: the other owners of 42 under `after`; r.prune: "a:1" no longer owns 42.
 * const askers = readSet([before, after], "docs", layout, 42); // owners under either
 * ```
 * @module
 */

import type { Placement, ShardLayout } from "../../cluster/placement.ts";
import type { PointId } from "../../common/point_id.ts";

/** What to do with one entry found on one node. */
export interface EntryRoute {
  /** The entry's owners under the placement in use, except the holder: copy it to each. */
  targets: string[];
  /** True when the holder does not own the entry: it may forget it once every copy landed. */
  prune: boolean;
}

/**
 * Where an entry of `collection` (with `layout`) with `id`, found on `holder`, goes under
 * placement `to`.
 */
export function routeEntry(
  to: Placement,
  collection: string,
  layout: ShardLayout,
  holder: string,
  id: PointId,
): EntryRoute {
  const owners = to.owners(collection, layout, id);
  const targets: string[] = [];
  let owned = false;
  for (const o of owners) {
    if (o === holder) owned = true;
    else targets.push(o);
  }
  return { targets, prune: !owned };
}

/**
 * The nodes a read of `id` in `collection` asks: its owners under each of `placements` (the
 * settled placement, those published since, and the one in use), without repeats, in replica
 * order of the LAST placement first (the current owners, primary first), then the older ones'.
 */
export function readSet(
  placements: readonly Placement[],
  collection: string,
  layout: ShardLayout,
  id: PointId,
): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (let i = placements.length - 1; i >= 0; i--) {
    for (const o of placements[i].owners(collection, layout, id)) {
      if (seen.has(o)) continue;
      seen.add(o);
      out.push(o);
    }
  }
  return out;
}
