/**
 * Where the router places a collection's points, for tests and scripts that check which node
 * holds what: the collection's shard layout as the router's ListCollections reports it (a
 * collection it does not list, such as the implicit "default" before its first write, has the
 * pre-shard layout: 1 shard, the router's replication factor), and the shard placement
 * (src/cluster/placement.ts) over the given storage nodes.
 *
 * @module
 */
import type { ApiClient } from "../src/api/client.ts";
import { Placement, type ShardLayout } from "../src/cluster/placement.ts";
import type { PointId } from "../src/common/point_id.ts";

/** A collection's placement over some nodes: `owners(id)`, primary first. */
export interface CollectionPlacement {
  layout: ShardLayout;
  placement: Placement;
  owners(id: PointId): readonly string[];
}

/** The layout of `collection` as the router reports it (see the module comment). */
export async function layoutOf(
  router: ApiClient,
  collection: string,
  router_rf: number,
): Promise<ShardLayout> {
  const { collections } = await router.call("ListCollections", {});
  const c = collections.find((x) => x.name === collection);
  const s = c?.shard_number ?? 0;
  const r = c?.replication_factor ?? 0;
  return { shard_number: s >= 1 ? s : 1, replication_factor: r >= 1 ? r : router_rf };
}

/** The placement of `collection` over `nodes` (addresses), its layout from the router. */
export async function placementOf(
  router: ApiClient,
  collection: string,
  nodes: readonly string[],
  router_rf: number,
): Promise<CollectionPlacement> {
  return placementWith(collection, await layoutOf(router, collection, router_rf), nodes);
}

/** The placement of `collection` with a known `layout` over `nodes`. */
export function placementWith(
  collection: string,
  layout: ShardLayout,
  nodes: readonly string[],
): CollectionPlacement {
  const placement = new Placement(nodes);
  return { layout, placement, owners: (id) => placement.owners(collection, layout, id) };
}
