/**
 * The router's catalog of collection layouts: for each collection it knows, how many shards it
 * has and how many replicas each shard has ({@link ShardLayout}). Routing a write or a search
 * needs the layout before any node is asked; the nodes hold the truth (each node stores the
 * layout with the collection, `CollectionInfo.shard_number` / `replication_factor`), and a
 * router fills its catalog from creations it routes and from the nodes' ListCollections.
 *
 * | source                                   | layout                                          |
 * | ---------------------------------------- | ----------------------------------------------- |
 * | a CreateCollection the router routes     | as asked; 0 shards: the ring's node count at creation (1 .. SHARDS_MAX); 0 replicas: `default_rf` |
 * | a node's CollectionInfo with shards      | as reported; replication_factor 0: `default_rf` |
 * | a node's CollectionInfo without shards   | a collection from before shards: 1 shard, `default_rf` replicas |
 *
 * Pure: no IO. Bounded: at most `collections_max` entries (a node holds at most that many
 * collections); learning one more evicts nothing and is refused with false.
 *
 * @example
 * ```ts
 * import { Catalog } from "./catalog.ts";
 * const c = new Catalog({ default_rf: 2 });
 * const v = c.chooseForCreate({ name: "docs", dimension: 4, metric: "l2", m: 16, ef_construction: 200 }, 3);
 * // v.shard_number 3, v.replication_factor 2; c.get("docs") is that layout
 * ```
 * @module
 */
import type { ShardLayout } from "../cluster/placement.ts";
import type { ValidCollection } from "../api/validate.ts";
import { REPLICATION_FACTOR_MAX, SHARDS_MAX } from "../common/limits.ts";

/** Collections a catalog holds at most (a storage node's own bound). */
export const CATALOG_COLLECTIONS_MAX = 1024;

/** What a node reports of a collection's layout (CollectionInfo fields; 0 or absent: unset). */
export interface LayoutInfo {
  name: string;
  shard_number?: number;
  replication_factor?: number;
}

/** Options of {@link Catalog}. */
export interface CatalogOptions {
  /** Replicas per shard when a collection does not say (the router's --replication-factor). */
  default_rf: number;
  collections_max?: number;
}

/** Collection name → layout (see the module comment). */
export class Catalog {
  readonly #layouts = new Map<string, ShardLayout>();
  readonly #default_rf: number;
  readonly #max: number;

  constructor(options: CatalogOptions) {
    this.#default_rf = Math.min(Math.max(1, options.default_rf), REPLICATION_FACTOR_MAX);
    this.#max = options.collections_max ?? CATALOG_COLLECTIONS_MAX;
  }

  /** The layout of a collection from before shards (and of one no node reported yet). */
  get legacy(): ShardLayout {
    return { shard_number: 1, replication_factor: this.#default_rf };
  }

  /** The known layout of `collection`, or undefined. */
  get(collection: string): ShardLayout | undefined {
    return this.#layouts.get(collection);
  }

  /** The layout a node's CollectionInfo describes (module comment's table). */
  layoutOf(info: LayoutInfo): ShardLayout {
    const s = info.shard_number ?? 0;
    const r = info.replication_factor ?? 0;
    return {
      shard_number: s >= 1 && s <= SHARDS_MAX ? s : 1,
      replication_factor: r >= 1 && r <= REPLICATION_FACTOR_MAX ? r : this.#default_rf,
    };
  }

  /** Records `info`'s layout; false when the catalog is full and `info` is new. */
  learn(info: LayoutInfo): boolean {
    return this.set(info.name, this.layoutOf(info));
  }

  /** Records a layout; false when the catalog is full and `collection` is new. */
  set(collection: string, layout: ShardLayout): boolean {
    if (!this.#layouts.has(collection) && this.#layouts.size >= this.#max) return false;
    this.#layouts.set(collection, layout);
    return true;
  }

  /** Forgets `collection` (dropped). */
  drop(collection: string): void {
    this.#layouts.delete(collection);
  }

  /** Every known collection's name, sorted. */
  names(): string[] {
    return [...this.#layouts.keys()].sort();
  }

  /**
   * A creation with its layout filled in: shard_number 0/absent becomes `ring_nodes` (clamped to
   * 1 .. SHARDS_MAX), replication_factor 0/absent the default. The layout is recorded.
   */
  chooseForCreate(v: ValidCollection, ring_nodes: number): ValidCollection {
    const shard_number = v.shard_number ??
      Math.min(Math.max(1, Math.floor(ring_nodes)), SHARDS_MAX);
    const replication_factor = v.replication_factor ?? this.#default_rf;
    const out = { ...v, shard_number, replication_factor };
    this.set(v.name, { shard_number, replication_factor });
    return out;
  }
}
