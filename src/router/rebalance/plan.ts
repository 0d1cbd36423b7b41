/**
 * Rebalancing decisions, as pure functions of rings: where an entry found on a node must be
 * copied, whether that node may forget it afterwards, and which nodes a read must ask while a
 * move is unsettled. No IO, no clock; the router's driver (src/router/rebalance/rebalancer.ts) scans the
 * nodes and performs what this decides, and tests/sim/rebalance_sim_test.ts drives the driver
 * itself over simulated nodes.
 *
 * Why this is so little: every write carries a version and every node applies writes, copies
 * and hints last-writer-wins, tombstones included (see "Versions" in proto/vector_db.proto and
 * src/storage/collection.ts). Copying an entry to a node can therefore never undo a newer write
 * or resurrect a delete, and copying it twice is harmless. So a move is plain anti-entropy:
 * every node of the ring now in use sends every entry it holds (live points and tombstones) to
 * the entry's other owners under that ring; once all those copies succeeded, each owner holds
 * the newest version any reachable node had, and the nodes that no longer own an entry may
 * forget it (only if they still hold the version they sent: a newer one that arrived meanwhile
 * stays, for the next run to place).
 *
 * Reads during a move. Until a run succeeds, the newest version of a point may sit only on a
 * node that owned it under an earlier ring (the settled ring or one published since). A read
 * therefore asks the owners under every one of those rings and the current one
 * ({@link readSet}) and takes the highest version.
 *
 * @example
 * ```ts
 * import { HashRing } from "../../cluster/ring.ts";
 * import { readSet, routeEntry } from "./plan.ts";
 *
 * const before = new HashRing({ members: ["a:1", "b:1", "c:1"] });
 * const after = new HashRing({ members: ["a:1", "b:1", "c:1", "d:1"] });
 * const r = routeEntry(after, 2, "a:1", 42);
 * // r.targets: the other owners of 42 under `after`; r.prune: "a:1" no longer owns 42.
 * const askers = readSet([before, after], 2, 42); // owners under either ring
 * ```
 * @module
 */

import type { HashRing } from "../../cluster/ring.ts";
import type { PointId } from "../../common/point_id.ts";

/** What to do with one entry found on one node. */
export interface EntryRoute {
  /** The entry's owners under the ring in use, except the holder: copy it to each. */
  targets: string[];
  /** True when the holder does not own the entry: it may forget it once every copy landed. */
  prune: boolean;
}

/**
 * Where an entry with `id`, found on `holder`, goes under ring `to` with replication factor
 * `rf`.
 */
export function routeEntry(to: HashRing, rf: number, holder: string, id: PointId): EntryRoute {
  const owners = to.owners(id, rf);
  const targets: string[] = [];
  let owned = false;
  for (const o of owners) {
    if (o === holder) owned = true;
    else targets.push(o);
  }
  return { targets, prune: !owned };
}

/**
 * The nodes a read of `id` asks: its owners under each of `rings` (the settled ring, the rings
 * published since, and the ring in use), without repeats, in ring order of the LAST ring first
 * (the current owners), then the older rings' owners.
 */
export function readSet(rings: readonly HashRing[], rf: number, id: PointId): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (let i = rings.length - 1; i >= 0; i--) {
    for (const o of rings[i].owners(id, rf)) {
      if (seen.has(o)) continue;
      seen.add(o);
      out.push(o);
    }
  }
  return out;
}
