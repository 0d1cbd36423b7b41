/**
 * The router core: everything the router decides and does, with IO outside. Storage nodes are
 * reached through a {@link NodePort}, time through a {@link RouterClock}, hint queues are opened
 * by the caller; the core never touches a socket, a file or a real timer. The gRPC shell
 * (router.ts, service.ts) feeds it decoded, validated requests, and a seeded simulation
 * (tests/sim/router_sim_test.ts) drives the very same object over a lossy simulated network.
 *
 * | part                  | file              | job                                          |
 * | --------------------- | ----------------- | -------------------------------------------- |
 * | {@link Replication}   | replication.ts    | write fan-out, consistency, hints, Get, repair |
 * | {@link HintReplay}    | hints/replay.ts   | hint delivery and probes, per node           |
 * | {@link Scatter}       | scatter.ts        | Search, ListCollections, per-node Stats      |
 * | `routerScroll`, `routerCount` | points_read.ts | Scroll, Count (merged across replicas), SearchBatch |
 * | {@link NodeTable}     | node_table.ts     | per-node hint queue and delivery state       |
 * | {@link RingView}      | ring_view.ts      | the ring a request plans on                  |
 * | {@link ClusterBackups} | backups.ts       | Backup, ListBackups, Restore, DeleteBackup on every node |
 * | {@link RouterCore.followRing} | this file | following the ring (static list or gossip)   |
 *
 * Following the ring: the shell computes the target member list (plan.ts `ringNodes`) and calls
 * {@link RouterCore.followRing}. A node that appears gets its hint queue opened and its channels
 * opened and, when it joins a ring that already had members, a queued creation of every
 * collection the others have; then the new view is published. A node that leaves the ring has
 * its channels closed (kept open while it hands its entries off, after leaving on purpose) but
 * keeps its hint queue with its pending hints until it comes back. While a move is unsettled,
 * nodes joining wait off the ring (rebalance/rebalancer.ts) for a while, except nodes of the
 * settled ring coming back (a restart): they hold their ranges. A change that only removes
 * dead nodes tells rebalancing so: it waits out a grace before re-replicating their ranges.
 *
 * @module
 */
import type { RecallMonitor, RecallSample } from "./recall_monitor.ts";
import * as grpc from "@grpc/grpc-js";
import { describeGrpcError, isServiceError, type ResponseOf } from "../api/client.ts";
import { logicalCounts } from "./logical_stats.ts";
import type { CollectionInfo } from "../api/proto.ts";
import type { PointId } from "../common/point_id.ts";
import {
  validateCreateCollectionRequest,
  type ValidCollection,
  type ValidPointRef,
  type ValidPut,
  type ValidPutBatch,
  type ValidSearch,
} from "../api/validate.ts";
import type { Consistency } from "../common/limits.ts";
import type { WalRecord } from "../common/records.ts";
import { VersionClock } from "../common/version.ts";
import type { HintQueue } from "./hints/queue.ts";
import { HintReplay } from "./hints/replay.ts";
import { ClusterBackups } from "./backups.ts";
import { Background, type NodePort, type RouterClock, RouterStatusError } from "./node_port.ts";
import { type NodeState, NodeTable } from "./node_table.ts";
import { JOIN_WAIT_MAX_MS, type RingRef, type TransferPort } from "./rebalance/rebalancer.ts";
import type { DigestPort } from "./rebalance/digest_sync.ts";
import { createRecord, Replication } from "./replication.ts";
import { makeView, type RingView, WriteViews } from "./ring_view.ts";
import { Scatter, type SearchOptions } from "./scatter.ts";
import type { ValidScroll } from "../api/points_read.ts";
import {
  type EntryReadDeps,
  routerCount,
  routerMatchingIds,
  routerScroll,
  runSearchBatch,
  type ScrollFilter,
} from "./points_read.ts";
import type {
  ValidDeleteBatch,
  ValidDeleteByFilter,
  ValidFieldIndex,
  ValidGetBatch,
} from "../api/points_read.ts";
import { BATCH_POINTS_MAX, DEFAULT_COLLECTION, LAYOUT_CONFLICTS_MAX } from "../common/limits.ts";
import { Catalog } from "./catalog.ts";
import type { Placement, ShardLayout } from "../cluster/placement.ts";

/** How long a collection no node reported is not looked up again (a negative cache). */
export const LAYOUT_MISS_TTL_MS = 2000;
/** Most names in the negative cache (cleared as a whole when full). */
const LAYOUT_MISSES_MAX = 1024;

/** A Search as the router runs it: `filter_json` the filter's text for the nodes ("" none). */
export type RouterSearch = ValidSearch & { filter_json?: string };

/** Pause before a failed ring update (a hint queue that would not open) is tried again. */
export const RING_RETRY_MS = 1000;

/** What the core needs to know of rebalancing (null in static mode). */
export interface RebalanceHooks {
  /** A move is unsettled. */
  readonly busy: boolean;
  /** The ring changed; `deaths_only`: it only lost nodes declared dead (not left on purpose). */
  changed(view: RingRef, deaths_only: boolean): void;
  /** The nodes of the last ring whose placement is complete (they hold their ranges). */
  settledNodes(): readonly string[];
  /** Who may hold the newest version of `id` in `collection` while a move is unsettled. */
  readers(collection: string, layout: ShardLayout, id: PointId): string[];
  /**
   * The placement a search reads from: the settled one while a move is unsettled (its replicas
   * hold complete shards), else the one in use.
   */
  readPlacement(): Placement;
  /**
   * A rebalancing run settled since this router started: every entry then sits on its shard's
   * replicas, collections from before shards included (they lay on hash-ring owners before).
   */
  readonly migrated?: boolean;
  /**
   * Starts an anti-entropy run now; after a cluster restore with `scan` (every entry read: the
   * restored entries lie where the backup's ring put them). Absent: none is started.
   */
  antiEntropy?(options?: { scan?: boolean }): boolean;
}

/** Options of {@link RouterCore}. */
export interface RouterCoreOptions {
  nodes: NodePort;
  clock: RouterClock;
  openHints(address: string): Promise<HintQueue>;
  log(message: string): void;
  replication_factor: number;
  consistency: Consistency;
  node_timeout_ms: number;
  retry_interval_ms: number;
  /** Deadline of a Search's second round (waits for reconnecting channels). */
  retry_timeout_ms: number;
  vnodes_per_member?: number;
  /** A message for "no storage node yet" (gossip mode names its seeds). */
  no_nodes_message?: string;
  /** Search replica selection and hedging (scatter.ts; defaults DEFAULT_SEARCH_OPTIONS). */
  search?: Partial<SearchOptions>;
}

/** What {@link RouterCore.followRing} did. */
export interface RingUpdate {
  added: string[];
  removed: string[];
  /** When set, the update should be tried again at this time (clock ms). */
  retry_at_ms: number;
}

/** The router core (see the module comment). */
export class RouterCore {
  readonly table: NodeTable;
  readonly replication: Replication;
  readonly replay: HintReplay;
  readonly scatter: Scatter;
  readonly backups: ClusterBackups;
  readonly background: Background;
  readonly writes = new WriteViews();
  /** Stamps write versions (see "Versions" in proto/vector_db.proto), from the core's clock. */
  readonly versions: VersionClock;
  #view: RingView;
  #stopping = false;
  #rebalance: RebalanceHooks | null = null;
  /** The recall monitor fed by {@link search} (set by the router; null: none). */
  recall: RecallMonitor | null = null;
  /** Nodes kept off the ring while a move is unsettled, since when (clock ms). */
  readonly #join_waiting = new Map<string, number>();
  /** Collection layouts (shards, replicas) the router routes by (catalog.ts). */
  readonly catalog: Catalog;
  /** The ListCollections refresh in flight, shared by every request that waits for it. */
  #refreshing: Promise<boolean> | null = null;
  /** Collections no node reported at the last refresh, until when (clock ms). */
  readonly #misses = new Map<string, number>();
  /**
   * Collections whose nodes reported two different layouts at the last catalog refresh (two
   * routers with different ring sizes created it at once: each node kept the first creation it
   * got), with the message naming both. Writes to them are refused with FAILED_PRECONDITION
   * (routed by either layout, points would land on replicas that the other nodes' shards do
   * not own) until a refresh finds the nodes agreeing, or the collection is dropped.
   */
  readonly #conflicts = new Map<string, string>();

  constructor(readonly options: RouterCoreOptions) {
    const log = options.log;
    this.versions = new VersionClock(() => options.clock.now_ms());
    this.catalog = new Catalog({ default_rf: options.replication_factor });
    this.background = new Background(log);
    this.table = new NodeTable({
      openHints: options.openHints,
      clock: options.clock,
      log,
      background: this.background,
      retry_interval_ms: options.retry_interval_ms,
    });
    this.replay = new HintReplay({
      nodes: options.nodes,
      clock: options.clock,
      log,
      background: this.background,
      node_timeout_ms: options.node_timeout_ms,
      retry_interval_ms: options.retry_interval_ms,
      stopped: () => this.#stopping,
    });
    this.replication = new Replication({
      nodes: options.nodes,
      table: this.table,
      clock: options.clock,
      versions: this.versions,
      background: this.background,
      log,
      consistency: options.consistency,
      node_timeout_ms: options.node_timeout_ms,
      queued: (s) => this.replay.tick(s),
      readers: (c, layout, id) => this.#readers(c, layout, id),
    });
    this.scatter = new Scatter({
      nodes: options.nodes,
      table: this.table,
      retry_timeout_ms: options.retry_timeout_ms,
      clock: options.clock,
      replication_factor: options.replication_factor,
      search: options.search,
      layout: (collection) => this.layout(collection),
      search_placement: () => this.searchPlacement(),
    });
    this.backups = new ClusterBackups({
      nodes: options.nodes,
      log,
      node_timeout_ms: options.node_timeout_ms,
      antiEntropy: () => this.#rebalance?.antiEntropy?.({ scan: true }) ?? false,
    });
    this.#view = this.#makeView([]);
  }

  /** Connects rebalancing (gossip mode). */
  setRebalance(hooks: RebalanceHooks): void {
    this.#rebalance = hooks;
  }

  get view(): RingView {
    return this.#view;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  #makeView(nodes: string[]): RingView {
    return makeView(nodes, this.options.replication_factor, this.options.vnodes_per_member);
  }

  /** The current ring; UNAVAILABLE when it has no storage node. */
  routable(): RingView {
    const view = this.#view;
    if (view.nodes.length > 0) return view;
    throw new RouterStatusError(
      grpc.status.UNAVAILABLE,
      this.options.no_nodes_message ?? "The router has no storage node",
    );
  }

  // ----- collection layouts -----

  /**
   * The shard layout of `collection`: the catalog's; for a name it does not know, after one
   * ListCollections of the ring's nodes (shared by concurrent callers; a name no node reported
   * is not looked up again for {@link LAYOUT_MISS_TTL_MS}); still unknown, the layout of a
   * collection from before shards (1 shard, the router's replication factor), which is what the
   * implicit "default" collection and every pre-shard collection are. UNAVAILABLE when the
   * catalog does not know it and no node answered the lookup.
   */
  async layout(collection: string): Promise<ShardLayout> {
    const known = this.catalog.get(collection);
    if (known !== undefined) return known;
    const now_ms = this.options.clock.now_ms();
    const miss_until = this.#misses.get(collection);
    if (miss_until === undefined || miss_until <= now_ms) {
      if (miss_until !== undefined) this.#misses.delete(collection);
      const answered = await this.#refreshCatalog();
      const found = this.catalog.get(collection);
      if (found !== undefined) return found;
      if (!answered && this.#view.nodes.length > 0) {
        // Guessing the pre-shard layout here could send a write to the wrong replicas.
        throw new RouterStatusError(
          grpc.status.UNAVAILABLE,
          `Cannot learn the layout of collection "${collection}": no storage node answered ` +
            "ListCollections",
        );
      }
      if (this.#misses.size >= LAYOUT_MISSES_MAX) this.#misses.clear();
      this.#misses.set(collection, this.options.clock.now_ms() + LAYOUT_MISS_TTL_MS);
    }
    return this.catalog.legacy;
  }

  /**
   * The layout a WRITE of `collection` is routed with: {@link layout}'s, but never a guess for
   * a collection no node reported (it may exist with more shards on nodes the lookup missed, or
   * be created through another router a moment later: points routed under a guessed layout
   * would land on replicas that do not own them). The implicit default collection, which nodes
   * make on its first Put, is the one collection written with the pre-shard layout unseen.
   * NOT_FOUND naming the collection otherwise, as the nodes answer; a name looked up in vain
   * less than {@link LAYOUT_MISS_TTL_MS} ago is not looked up again.
   */
  async writeLayout(collection: string): Promise<ShardLayout> {
    const layout = await this.layout(collection);
    this.#checkConflict(collection);
    if (this.catalog.get(collection) !== undefined) return layout;
    // No storage node: routable() answers UNAVAILABLE, which says more than NOT_FOUND.
    if (collection === DEFAULT_COLLECTION || this.#view.nodes.length === 0) return layout;
    throw new RouterStatusError(
      grpc.status.NOT_FOUND,
      `Collection "${collection}" does not exist (no storage node reported it)`,
    );
  }

  /** The collections whose nodes disagree on their layout, each with its message (sorted). */
  layoutConflicts(): string[] {
    return [...this.#conflicts.values()].sort();
  }

  /** FAILED_PRECONDITION when `collection`'s nodes disagree on its layout (see #conflicts). */
  #checkConflict(collection: string): void {
    const conflict = this.#conflicts.get(collection);
    if (conflict !== undefined) {
      throw new RouterStatusError(grpc.status.FAILED_PRECONDITION, conflict);
    }
  }

  /**
   * One ListCollections of the ring's nodes into the catalog (concurrent callers share it);
   * resolves with whether some node answered.
   */
  #refreshCatalog(): Promise<boolean> {
    if (this.#refreshing !== null) return this.#refreshing;
    const nodes = this.#view.nodes;
    const run = Promise.allSettled(
      nodes.map((a) =>
        this.options.nodes.call(a, "ListCollections", {}, {
          timeout_ms: this.options.node_timeout_ms,
        })
      ),
    ).then((settled) => {
      let answered = false;
      const seen = new Map<string, { node: string; layout: ShardLayout }>();
      const conflicts = new Map<string, string>();
      settled.forEach((s, i) => {
        if (s.status !== "fulfilled") return;
        answered = true;
        this.#learn(s.value.collections);
        for (const c of s.value.collections) {
          if ((c.shard_number ?? 0) < 1) continue;
          const layout = this.catalog.layoutOf(c);
          const first = seen.get(c.name);
          if (first === undefined) seen.set(c.name, { node: nodes[i], layout });
          else if (!conflicts.has(c.name) && !sameLayout(first.layout, layout)) {
            conflicts.set(
              c.name,
              `Collection "${c.name}" has two layouts: node ${first.node} reports ` +
                `${describeLayout(first.layout)}, node ${nodes[i]} ${describeLayout(layout)} ` +
                "(created at once through routers with different ring sizes?); writes to it " +
                "are refused until it is dropped and created again",
            );
          }
        }
      });
      for (const name of seen.keys()) {
        const conflict = conflicts.get(name);
        if (conflict === undefined) this.#conflicts.delete(name);
        else {
          if (this.#conflicts.get(name) !== conflict) this.options.log(`ERROR ${conflict}`);
          if (this.#conflicts.size >= LAYOUT_CONFLICTS_MAX) this.#conflicts.clear();
          this.#conflicts.set(name, conflict);
        }
      }
      return answered;
    }).finally(() => {
      this.#refreshing = null;
    });
    this.#refreshing = run;
    return run;
  }

  /**
   * Learns layouts from nodes' CollectionInfo. A node that reports a layout is believed; one
   * that reports none (a node from before shards, or a collection made before them) teaches the
   * legacy layout only for a collection the catalog does not know yet.
   */
  #learn(infos: readonly CollectionInfo[]): void {
    for (const c of infos) {
      if ((c.shard_number ?? 0) >= 1) this.catalog.learn(c);
      else if (this.catalog.get(c.name) === undefined) this.catalog.learn(c);
      this.#misses.delete(c.name);
    }
  }

  /**
   * Who may hold the newest version of `id` (null: its owners). A collection from before shards
   * (one shard) kept its points on their hash-ring owners: until a rebalancing run settled since
   * this router started (never without rebalancing, in static mode) those are asked too, so its
   * points stay readable by id while the first run moves them to the shard's replicas.
   */
  #readers(collection: string, layout: ShardLayout, id: PointId): string[] | null {
    const r = this.#rebalance?.readers(collection, layout, id) ?? null;
    if (layout.shard_number !== 1 || this.#rebalance?.migrated === true) return r;
    const view = this.#view;
    const out = r ?? [...view.placement.owners(collection, layout, id)];
    for (const o of view.ring.owners(id, layout.replication_factor)) {
      if (!out.includes(o)) out.push(o);
    }
    return out;
  }

  /**
   * The placement a search reads from: while a move is unsettled the settled one (its nodes
   * hold complete shards), else the current ring's.
   */
  searchPlacement(): Placement {
    return this.#rebalance?.readPlacement() ?? this.#view.placement;
  }

  // ----- requests -----

  /**
   * Runs `fn` with the layout of `collection`: at once (no await before the node calls start)
   * when the catalog knows it, else after {@link layout}. A write takes its view inside `fn`,
   * so it counts itself in flight on the ring it plans on before anything else awaits
   * (rebalancing drains writes planned on older rings).
   */
  #withLayout<T>(
    collection: string,
    fn: (layout: ShardLayout) => Promise<T>,
    write = false,
  ): Promise<T> {
    const known = this.catalog.get(collection);
    if (known === undefined) {
      return (write ? this.writeLayout(collection) : this.layout(collection)).then(fn);
    }
    try {
      if (write) this.#checkConflict(collection);
      return fn(known);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * A write routed with the catalog's layout of `collection` ({@link #withLayout}). Each node
   * request carries the layout's shard_number; a node holding the collection with another shard
   * count refuses it (FAILED_PRECONDITION, {@link isStaleLayout}): the catalog entry is stale
   * (the collection was dropped and made again with another layout, say), so it is refreshed
   * from the nodes and the write is routed once more with what they report.
   */
  #layoutWrite<T>(collection: string, fn: (layout: ShardLayout) => Promise<T>): Promise<T> {
    return this.#withLayout(collection, fn, true).catch(async (e) => {
      if (!isStaleLayout(e)) throw e;
      const was = this.catalog.get(collection);
      await this.#refreshCatalog();
      this.options.log(
        `WARNING a node refused a write of "${collection}" routed with ${
          was === undefined ? "no layout" : describeLayout(was)
        } (${describeGrpcError(e)}); refreshed the catalog and routing it again`,
      );
      return await this.#withLayout(collection, fn, true);
    });
  }

  put(v: ValidPut): Promise<ResponseOf<"Put">> {
    return this.#layoutWrite(v.collection, (layout) => {
      const view = this.routable();
      return this.writes.counted(view, () => this.replication.put(view, layout, v));
    });
  }

  putBatch(v: ValidPutBatch): Promise<ResponseOf<"PutBatch">> {
    return this.#layoutWrite(v.collection, (layout) => {
      const view = this.routable();
      return this.writes.counted(view, () => this.replication.putBatch(view, layout, v));
    });
  }

  delete(v: ValidPointRef): Promise<ResponseOf<"Delete">> {
    return this.#layoutWrite(v.collection, (layout) => {
      const view = this.routable();
      return this.writes.counted(view, () => this.replication.delete(view, layout, v));
    });
  }

  get(v: ValidPointRef): Promise<ResponseOf<"Get">> {
    return this.#withLayout(
      v.collection,
      (layout) => this.replication.get(this.routable(), layout, v),
    );
  }

  async search(v: RouterSearch): Promise<ResponseOf<"Search">> {
    const answer = await this.scatter.search(this.routable(), v);
    this.#offerRecall(v, answer);
    return answer;
  }

  /** Each search scattered as {@link search}, a bounded number at once, in request order. */
  async searchBatch(list: readonly RouterSearch[]): Promise<ResponseOf<"SearchBatch">> {
    const view = this.routable();
    const results = await runSearchBatch(list, async (v) => {
      const answer = await this.scatter.search(view, v);
      this.#offerRecall(v, answer);
      return answer;
    });
    return { results };
  }

  /** Offers an answered graph search to the recall monitor (an exact one has recall 1). */
  #offerRecall(v: RouterSearch, answer: ResponseOf<"Search">): void {
    if (this.recall === null || v.exact === true) return;
    // The sample (a copy of the ids) is built only for the searches drawn.
    if (!this.recall.draw(answer.partial === true)) return;
    this.recall.take({
      collection: v.collection,
      vector: v.vector,
      k: v.k,
      ef: v.ef,
      filter_json: v.filter_json ?? "",
      ids: answer.results.map((r) => r.id),
    });
  }

  /**
   * The exact top-k ids of a sampled search (SearchRequest.exact on the nodes covering the
   * ring); not counted as a client search. Throws when the answer is partial: its truth is
   * incomplete.
   */
  async exactIds(s: RecallSample): Promise<(string | number)[]> {
    const answer = await this.scatter.search(this.routable(), {
      vector: s.vector,
      k: s.k,
      ef: 0,
      collection: s.collection,
      with_payload: false,
      with_vector: false,
      filter_json: s.filter_json,
      exact: true,
    }, false);
    if (answer.partial) throw new Error("the exact search missed shards");
    return answer.results.map((r) => r.id);
  }

  /** A logical page of points: each id once, newest version decides (points_read.ts). */
  scroll(v: ValidScroll, filter: ScrollFilter = {}): Promise<ResponseOf<"Scroll">> {
    return routerScroll(this.#entryDeps(), this.routable(), v, filter);
  }

  /** The logical number of live points (matching `filter` when given) (points_read.ts). */
  count(collection: string, filter = ""): Promise<ResponseOf<"Count">> {
    return routerCount(this.#entryDeps(), this.routable(), collection, filter);
  }

  /** Points by id, the newest version among the replicas each (replication.ts). */
  getBatch(v: ValidGetBatch): Promise<ResponseOf<"GetBatch">> {
    return this.#withLayout(
      v.collection,
      (layout) => this.replication.getBatch(this.routable(), layout, v),
    );
  }

  /** Deletes ids at one version on their owners (replication.ts). */
  deleteBatch(v: ValidDeleteBatch): Promise<ResponseOf<"DeleteBatch">> {
    return this.#layoutWrite(v.collection, (layout) => {
      const view = this.routable();
      return this.writes.counted(view, () => this.replication.deleteBatch(view, layout, v));
    });
  }

  /**
   * Resolves the logical ids matching the filter (as Count sees them), then deletes them as
   * DeleteBatches of BATCH_POINTS_MAX ids, all at ONE version (stamped once, before the first).
   * A failed chunk fails the call; the chunks before it stay deleted (a retry deletes the rest).
   */
  async deleteByFilter(v: ValidDeleteByFilter): Promise<ResponseOf<"DeleteByFilter">> {
    const version = this.replication.stamp(v.version);
    try {
      return await this.#deleteByFilter(v, version);
    } catch (e) {
      // As #layoutWrite: a node refused the stale layout; refreshed, the same deletes (same
      // version) are routed again.
      if (!isStaleLayout(e)) throw e;
      await this.#refreshCatalog();
      this.options.log(
        `WARNING a node refused a DeleteByFilter of "${v.collection}" (${
          describeGrpcError(e)
        }); refreshed the catalog and routing it again`,
      );
      return await this.#deleteByFilter(v, version);
    }
  }

  async #deleteByFilter(
    v: ValidDeleteByFilter,
    version: number,
  ): Promise<ResponseOf<"DeleteByFilter">> {
    const layout = await this.writeLayout(v.collection);
    const view = this.routable();
    let deleted = 0;
    await routerMatchingIds(
      this.#entryDeps(),
      view,
      v.collection,
      v.filter_json,
      BATCH_POINTS_MAX,
      async (ids) => {
        await this.writes.counted(view, () =>
          this.replication.deleteBatch(view, layout, {
            collection: v.collection,
            ids,
            consistency: v.consistency,
            version,
          }));
        deleted += ids.length;
      },
    );
    return { deleted: String(deleted), version: String(version) };
  }

  /** CreateFieldIndex on every node of the ring (replication.ts). */
  async createFieldIndex(v: ValidFieldIndex): Promise<ResponseOf<"CreateFieldIndex">> {
    const r = await this.replication.fieldIndex(this.routable().nodes, v, true);
    return { created: r.changed };
  }

  /** DropFieldIndex on every node of the ring (replication.ts). */
  async dropFieldIndex(v: ValidFieldIndex): Promise<ResponseOf<"DropFieldIndex">> {
    const r = await this.replication.fieldIndex(this.routable().nodes, v, false);
    return { dropped: r.changed };
  }

  #entryDeps(): EntryReadDeps {
    return {
      nodes: this.options.nodes,
      table: this.table,
      retry_timeout_ms: this.options.retry_timeout_ms,
      layout: (collection) => this.layout(collection),
    };
  }

  /**
   * CreateCollection on every node of the ring, with its layout filled in (catalog.ts
   * `chooseForCreate`: shard_number 0 → the ring's node count now, replication_factor 0 → the
   * router's): every node stores it, so every router learns the same layout. A collection that
   * already existed keeps the layout its nodes report (or, when they report none, the one the
   * catalog knew, else the pre-shard layout).
   */
  async createCollection(v: ValidCollection): Promise<ResponseOf<"CreateCollection">> {
    const nodes = this.routable().nodes;
    const before = this.catalog.get(v.name);
    // Create-if-absent re-issued (after the ring grew, or through a router with another
    // --replication-factor): what the client left unset is what the nodes report, so they
    // answer created:false rather than ALREADY_EXISTS for a layout the client never asked.
    if (v.shard_number === undefined || v.replication_factor === undefined) {
      const reported = await this.#reportedLayout(nodes, v.name);
      if (reported !== undefined) {
        v = {
          ...v,
          shard_number: v.shard_number ?? reported.shard_number,
          replication_factor: v.replication_factor ?? reported.replication_factor,
        };
      }
    }
    const filled = this.catalog.chooseForCreate(v, nodes.length);
    let answer: ResponseOf<"CreateCollection">;
    try {
      answer = await this.replication.createCollection(nodes, filled);
    } catch (e) {
      // Not created: the catalog must not keep a layout no node may hold.
      if (before === undefined) this.catalog.drop(v.name);
      else this.catalog.set(v.name, before);
      throw e;
    }
    const info = answer.collection;
    if (info !== null && info !== undefined && (info.shard_number ?? 0) >= 1) {
      this.catalog.learn(info);
    } else if (!answer.created) {
      // It existed already, on nodes that do not report layouts.
      if (before !== undefined) this.catalog.set(v.name, before);
      else this.catalog.set(v.name, this.catalog.legacy);
    }
    this.#misses.delete(v.name);
    // Another router may have created it at once with another layout (a different ring size):
    // a refresh compares what the nodes now report and refuses writes if they disagree.
    this.background.track("catalog refresh", this.#refreshCatalog());
    return answer;
  }

  /**
   * The layout the first of `nodes` that has `name` reports (the pre-shard layout for a node
   * that reports none); undefined when none answered with it.
   */
  async #reportedLayout(nodes: readonly string[], name: string): Promise<ShardLayout | undefined> {
    const settled = await Promise.allSettled(
      nodes.map((a) =>
        this.options.nodes.call(a, "ListCollections", {}, {
          timeout_ms: this.options.node_timeout_ms,
        })
      ),
    );
    for (const s of settled) {
      if (s.status !== "fulfilled") continue;
      const c = s.value.collections.find((c) => c.name === name);
      if (c !== undefined) return this.catalog.layoutOf(c);
    }
    return undefined;
  }

  async dropCollection(name: string): Promise<ResponseOf<"DropCollection">> {
    this.recall?.forget(name);
    const answer = await this.replication.dropCollection(this.routable().nodes, name);
    this.catalog.drop(name);
    this.#conflicts.delete(name);
    return answer;
  }

  /**
   * The union of the nodes' collections; the catalog learns their layouts, and a collection
   * whose nodes report no layout (nodes from before shards) is shown with the catalog's.
   */
  async listCollections(): Promise<ResponseOf<"ListCollections">> {
    const answer = await this.scatter.listCollections(this.routable().nodes);
    this.#learn(answer.collections);
    for (const c of answer.collections) {
      if ((c.shard_number ?? 0) >= 1) continue;
      const l = this.catalog.get(c.name);
      if (l === undefined) continue;
      c.shard_number = l.shard_number;
      c.replication_factor = l.replication_factor;
    }
    return answer;
  }

  /** Backup `name` of `collection` on every node of the ring, or on none (backups.ts). */
  async backup(collection: string, name: string): Promise<ResponseOf<"Backup">> {
    return { backup: await this.backups.backup(this.routable().nodes, collection, name) };
  }

  listBackups(): Promise<ResponseOf<"ListBackups">> {
    return this.backups.list(this.routable().nodes);
  }

  /**
   * Restore (backups.ts). The new collection gets the layout its nodes report, else that of the
   * collection the backup was taken of (when this router knows it): its points then move to
   * that layout's placement in the anti-entropy run the restore starts.
   */
  async restore(backup: string, collection: string): Promise<ResponseOf<"Restore">> {
    const nodes = this.routable().nodes;
    const r = await this.backups.restore(nodes, backup, collection);
    this.#misses.delete(collection);
    if ((r.collection?.shard_number ?? 0) >= 1) {
      this.catalog.learn({ ...r.collection!, name: collection });
      return r;
    }
    try {
      const list = await this.backups.list(nodes);
      const source = list.backups.find((b) => b.name === backup)?.collection?.name;
      const layout = source === undefined ? undefined : this.catalog.get(source);
      if (layout !== undefined) this.catalog.set(collection, layout);
    } catch (e) {
      this.options.log(
        `WARNING restored collection "${collection}" takes the pre-shard layout: ` +
          `${(e as Error).message}`,
      );
    }
    return r;
  }

  deleteBackup(name: string): Promise<ResponseOf<"DeleteBackup">> {
    return this.backups.delete(this.routable().nodes, name);
  }

  /**
   * Each ring node's Stats, and the collections with logical counts (logical_stats.ts: per
   * shard from the replicas the placement reads use, not summed over replicas).
   */
  async nodeStats(): ReturnType<Scatter["nodeStats"]> {
    const r = await this.scatter.nodeStats(this.#view.nodes);
    const placement = this.searchPlacement();
    logicalCounts(
      r.collections,
      r.per.filter((n) => n.error === "").map((n) => ({
        address: n.address,
        collections: n.collections,
      })),
      (c) => this.catalog.get(c) ?? this.catalog.legacy,
      (c, l, k) => placement.replicas(c, l, k),
    );
    return r;
  }

  /** Whether each ring node was reachable at the last call (static-mode Members). */
  reachable(address: string): boolean {
    return this.table.find(address)?.delivery.reachable ?? false;
  }

  /** Pending hints per node, nodes off the ring included. */
  pendingHints(): Map<string, number> {
    return this.table.pendingHints();
  }

  // ----- rebalancing's view of the nodes -----

  /** The Transfer port of a node on the ring or handing off; null otherwise. */
  transfer(address: string): TransferPort | null {
    const s = this.table.find(address);
    if (s === undefined || (!s.active && s.leaving_since_ms === 0)) return null;
    return this.options.nodes.transfer(address);
  }

  /** The digest port of a node on the ring; null otherwise (or when the port has none). */
  digest(address: string): DigestPort | null {
    const s = this.table.find(address);
    if (s === undefined || !s.active) return null;
    return this.options.nodes.digest?.(address) ?? null;
  }

  /** Nodes that left on purpose and still wait for their hand-off. */
  leavers(): string[] {
    return this.table.leavers((s) => this.#closeChannels(s));
  }

  /** Their hand-off is over: close their channels. */
  handedOff(nodes: readonly string[]): void {
    for (const a of nodes) {
      const s = this.table.find(a);
      if (s === undefined || s.active || s.leaving_since_ms === 0) continue;
      this.options.log(`node ${a}: hand-off over`);
      this.#closeChannels(s);
    }
  }

  /** Resolves once no write planned on a ring other than `view` is in flight, or after `ms`. */
  drainOlderWrites(view: RingRef, ms: number): Promise<boolean> {
    return this.writes.drainOlder(view as RingView, ms, this.options.clock, () => this.#stopping);
  }

  // ----- background -----

  /** Periodic work (every 100 ms in production): hint delivery, probes, retiring idle nodes. */
  tick(): void {
    if (this.#stopping) return;
    for (const s of this.table.all()) this.replay.tick(s);
    this.table.retireIdle();
  }

  /** Stops: no new background work; waits for running work; closes hint queues and channels. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.background.drain();
    await this.table.closeAll();
    for (const s of this.table.all()) {
      if (s.active || s.leaving_since_ms > 0) this.#closeChannels(s);
      s.active = false;
    }
  }

  // ----- following the ring -----

  /**
   * Makes the ring equal to `target` (storage node addresses): see the module comment. `left`
   * names the nodes that left on purpose (their channels stay open for the hand-off). With
   * `strict`, a hint queue that cannot be opened throws; otherwise that node stays off the ring
   * and the update asks to be tried again.
   */
  async followRing(
    target: readonly string[],
    left: ReadonlySet<string>,
    strict: boolean,
  ): Promise<RingUpdate> {
    const { clock, log, nodes } = this.options;
    const before = this.#view.nodes;
    const prev = new Set(before);
    const ready: string[] = [];
    let retry_at_ms = 0;
    for (const address of target) {
      let state = this.table.find(address);
      if (state === undefined) {
        try {
          state = await this.table.open(address);
        } catch (e) {
          if (strict) throw e;
          log(
            `ERROR cannot open the hint queue of node ${address}, leaving it off the ring: ` +
              `${(e as Error).message}`,
          );
          retry_at_ms = clock.now_ms() + RING_RETRY_MS;
          continue;
        }
        if (this.#stopping) {
          await state.hints.close();
          return { added: [], removed: [], retry_at_ms: 0 };
        }
        nodes.open(address);
        this.table.add(state);
      } else if (!state.active) {
        if (state.leaving_since_ms > 0) this.#closeChannels(state);
        nodes.open(address);
        state.active = true;
      }
      ready.push(address);
    }
    const now_ms = clock.now_ms();
    for (const a of this.#join_waiting.keys()) if (!ready.includes(a)) this.#join_waiting.delete(a);
    if (this.#rebalance?.busy && prev.size > 0) {
      // A node of the settled ring that returns (a restart, a short crash) still holds its
      // ranges: it goes back on the ring at once, and the run then copies only what it missed.
      const settled = new Set(this.#rebalance.settledNodes());
      const waiting = ready.filter((a) => {
        if (prev.has(a) || settled.has(a)) return false;
        const since = this.#join_waiting.get(a) ?? now_ms;
        this.#join_waiting.set(a, since);
        return now_ms - since < JOIN_WAIT_MAX_MS;
      });
      if (waiting.length > 0) {
        ready.splice(0, ready.length, ...ready.filter((a) => !waiting.includes(a)));
        retry_at_ms = now_ms + 500;
        if (ready.length === before.length) return { added: [], removed: [], retry_at_ms };
      }
    }
    const joined = prev.size > 0 ? ready.filter((a) => !prev.has(a)) : [];
    if (joined.length > 0) await this.#copyCatalog(joined, ready.filter((a) => prev.has(a)));
    const next = new Set(ready);
    const removed = before.filter((a) => !next.has(a));
    const added = ready.filter((a) => !prev.has(a));
    if (removed.length + added.length === 0) return { added, removed, retry_at_ms };
    for (const a of added) this.#join_waiting.delete(a);
    this.#view = this.#makeView(ready);
    // Start-up (the first nodes): learn the layouts of the collections they hold.
    if (before.length === 0) this.background.track("catalog refresh", this.#refreshCatalog());
    this.#rebalance?.changed(this.#view, added.length === 0 && !removed.some((a) => left.has(a)));
    for (const a of removed) {
      const s = this.table.find(a);
      if (s === undefined || !s.active) continue;
      s.active = false;
      s.inactive_since_ms = now_ms;
      if (left.has(a) && this.#rebalance !== null) {
        // Left on purpose: it waits for its entries to be copied to their owners (hand-off),
        // so its channels stay open for the rebalancer to scan it.
        s.leaving_since_ms = now_ms;
        log(`node ${a} left the cluster; handing its entries off to their owners`);
      } else {
        this.#closeChannels(s);
      }
    }
    log(
      `ring: ${ready.length} storage nodes [${ready.join(", ")}]` +
        (added.length > 0 ? `; added ${added.join(", ")}` : "") +
        (removed.length > 0
          ? `; removed ${removed.join(", ")} (hint queues kept until they return)`
          : ""),
    );
    if (ready.length < this.options.replication_factor) {
      log(
        `WARNING ${ready.length} storage nodes on the ring, fewer than the replication factor ` +
          `${this.options.replication_factor}`,
      );
    }
    return { added, removed, retry_at_ms };
  }

  /** Closes a node's channels (it is off the ring and not leaving). */
  #closeChannels(s: NodeState): void {
    s.leaving_since_ms = 0;
    this.options.nodes.close(s.address);
  }

  /**
   * Queues, for each node new to the ring, a creation of every collection the nodes already
   * on it report (delivered before any write routed to the new node, through its hint
   * queue; a node that has the collection answers "created: false"). Points are NOT copied.
   */
  async #copyCatalog(joined: string[], sources: string[]): Promise<void> {
    const { log, nodes } = this.options;
    const settled = await Promise.allSettled(
      sources.map((a) => nodes.call(a, "ListCollections", {})),
    );
    const byName = new Map<string, CollectionInfo>();
    for (const s of settled) {
      if (s.status !== "fulfilled") continue;
      this.#learn(s.value.collections);
      for (const c of s.value.collections) if (!byName.has(c.name)) byName.set(c.name, c);
    }
    // The newcomer gets each collection with its layout (nodes from before shards do not
    // report it; the catalog knows it when this router created it).
    for (const [name, c] of byName) {
      const l = this.catalog.get(name);
      const legacy = this.catalog.legacy;
      if (
        (c.shard_number ?? 0) < 1 && l !== undefined &&
        (l.shard_number !== legacy.shard_number ||
          l.replication_factor !== legacy.replication_factor)
      ) {
        byName.set(name, { ...c, ...l });
      }
    }
    if (sources.length > 0 && settled.every((s) => s.status === "rejected")) {
      log(
        `WARNING no node answered ListCollections; ${joined.join(", ")} will lack the ` +
          `collections created before it joined`,
      );
    }
    const records: WalRecord[] = [];
    for (const c of byName.values()) {
      try {
        records.push(createRecord(validateCreateCollectionRequest(c)));
      } catch (e) {
        log(`WARNING not copying collection "${c.name}": ${(e as Error).message}`);
      }
    }
    if (records.length === 0) return;
    for (const a of joined) {
      const state = this.table.get(a);
      let queued = 0;
      for (const r of records) {
        const res = await this.replication.enqueue(state, r, false);
        if (res.kind !== "rejected") queued++;
      }
      log(`node ${a} joined the ring: queued ${queued} collection creations for it`);
    }
  }
}

function sameLayout(a: ShardLayout, b: ShardLayout): boolean {
  return a.shard_number === b.shard_number && a.replication_factor === b.replication_factor;
}

/**
 * Whether `e` is a node's refusal of a write routed with another shard count than the node's
 * (src/node/service.ts `checkShardNumber`): the router's layout of the collection is stale.
 */
export function isStaleLayout(e: unknown): boolean {
  return isServiceError(e) && e.code === grpc.status.FAILED_PRECONDITION &&
    /as the request's shard_number says/.test(e.details ?? e.message);
}

function describeLayout(l: ShardLayout): string {
  return `shard_number ${l.shard_number} replication_factor ${l.replication_factor}`;
}
