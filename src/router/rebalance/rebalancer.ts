/**
 * Rebalancing and anti-entropy, driven by the router: when its ring changes (and periodically),
 * every entry moves to the nodes that own it under the placement in use, without losing or
 * resurrecting concurrent writes. The owners of an entry are the replicas of its shard
 * (src/cluster/placement.ts: rendezvous hashing over the ring's members, per collection, with
 * the collection's shard count and replication factor, {@link RebalanceHost.layout}); a
 * collection from before shards is one shard and migrates that way. A run that moves shards
 * first streams every gained shard to its new replica as a file (file_phase.ts, shard_move.ts:
 * the receiver loads the image without re-inserting), then does step 2 below only for the shard
 * units still needing it (catch-up and losers); a collection whose files did not all arrive, a
 * 1-shard one, and an anti-entropy run get the full point pass described below.
 *
 * Correctness rests on versions, not on ordering (proto/vector_db.proto, "Versions"): every
 * write carries a version, and nodes apply puts, deletes, hints and copies last-writer-wins with
 * durable tombstones. A copy can therefore be sent at any time, any number of times, from any
 * holder; it never overwrites a newer value or brings back a deleted point. The decisions are
 * pure functions in src/router/rebalance/plan.ts.
 *
 * A run (from the settled ring, the last whose placement is complete, to the ring in use):
 *
 * 1. **Old writes drain.** Wait (up to {@link DRAIN_WAIT_TIMEOUTS} node timeouts) until no
 *    write planned on an older ring is in flight: such a write lands on old owners only, after
 *    their scan maybe, and would be missed. If they do not drain the run fails (and is retried).
 * 2. **Scan and copy.** Each node of the ring in use is scanned, collection by collection (a
 *    *transfer*; at most `transfers_max` at once), in pages of ascending ids, live points and
 *    tombstones with their versions. Each entry goes, through `CopyBatch`, to its shard's other
 *    replicas under the placement in use. A target that lacks the collection (its creation still in its hint
 *    queue) is retried for up to {@link COLLECTION_WAIT_MS}.
 * 3. **Prune.** Once every transfer succeeded, each node forgets the entries it sent but does
 *    not own (`Prune`, conditional on the version scanned: a newer write that arrived since is
 *    kept for the next run); a shard unit a node lost and the file phase synced by digests is
 *    emptied wholesale instead (`ShardDrop`, conditional on its root digest, file_phase.ts
 *    `settleDrop`). Then the ring in use becomes the settled ring.
 *
 * A run that fails is retried every {@link RETRY_DELAY_MS} (growing to
 * {@link RETRY_DELAY_MAX_MS}), never settled half-done: until it succeeds, reads ask the owners
 * under every ring since the settled one ({@link Rebalancer.readers}) and take the newest
 * version. A ring change aborts a run at its next page; the next run starts over on the newest
 * ring. With `anti_entropy_interval_ms`, a run is also started that long after the last one
 * settled, with no ring change: it repairs replicas that diverged for any reason (a hint
 * discarded, a node restored from an old disk). When the host gives digest ports
 * ({@link RebalanceHost.digest}) and the ring is still the settled one, that run goes **by
 * digests** (digest_sync.ts): per shard, the replicas compare a root digest and exchange only
 * the buckets that differ, so an unchanged cluster costs a few dozen bytes per shard replica
 * instead of every entry. A digest run that cannot finish (a replica fails, a collection is
 * missing somewhere, replicas still disagree after it) falls back to the full scan below, in
 * the same run. Digest runs do not prune entries off non-owners; ring changes still scan.
 *
 * Membership events handled: a node that **joins** receives its ranges from every node that
 * holds them; a node declared **dead** has its ranges re-replicated from the surviving holders,
 * but only after `dead_grace_ms` ({@link DEFAULT_DEAD_GRACE_MS}; a ring change that only removes
 * dead nodes waits that long instead of `delay_ms`): a node restarted (SIGTERM, then started on
 * its data directory) or one that crashed and returns within the grace still holds its entries,
 * so the run that follows its return copies only the writes it missed (they were routed to the
 * ring without it meanwhile) and moves nothing else. Meanwhile the ring in use leaves it out
 * (writes succeed on the others, hints queued before stay queued for it) and reads ask the
 * owners under every ring since the settled one, so nothing is missed; the price is that its
 * ranges have one replica fewer for up to the grace. A node that **left** on purpose
 * (`client drain`) hands off: it keeps serving
 * Transfer calls, the router keeps its channel open and scans it first in each run as a source
 * only ({@link RebalanceHost.sources}), and once the run settled its entries are on their owners
 * and forgotten there, so the node exits (src/node/drain_wait.ts). Forgetting needs an owner
 * that took the copy: nothing is pruned from a ring with fewer nodes than RF. While a move is unsettled the router keeps joining nodes off the ring for
 * up to {@link JOIN_WAIT_MAX_MS} (src/router/core.ts, followRing), so rings pile up mostly through
 * failures.
 *
 * Costs and limits: a run reads every entry of every node of the ring and sends it to its RF-1
 * other owners (RF when the holder is not an owner); nodes skip copies they already hold before
 * logging them. Prune lists are kept in memory (at most {@link PRUNE_IDS_MAX} ids in a run,
 * beyond which pruning is skipped that run). A router that restarts knows no settled ring: it
 * takes its first ring as settled, and the periodic anti-entropy run repairs what it missed.
 * Several routers each rebalance; with versions that is safe, only wasteful.
 *
 * @module
 */

import type { PointId } from "../../common/point_id.ts";
import type { Placement, ShardLayout } from "../../cluster/placement.ts";
import { readSet, routeEntry } from "./plan.ts";
import { type DigestPort, digestRun, type ShardReplicas } from "./digest_sync.ts";
import {
  type FileDrop,
  type FilePrune,
  type ScanUnit,
  settleDrop,
  shardFilePhase,
} from "./file_phase.ts";
import {
  ByteBucket,
  DEFAULT_TRANSFER_BYTES_PER_S,
  type ShardFilePort,
  type ShardMoveProgress,
} from "./shard_move.ts";

/** Entries per Scan page (and so at most per CopyBatch). */
export const PAGE_POINTS = 512;
/** Most transfers (one node × one collection) at once, by default. */
export const DEFAULT_TRANSFERS_MAX = 2;
/** Ring stability required before a run starts, by default. */
export const DEFAULT_DELAY_MS = 500;
/** How long a target may lack a collection (its creation queued) before the copy fails. */
export const COLLECTION_WAIT_MS = 30_000;
/** Node timeouts to wait for writes planned on older rings to finish. */
export const DRAIN_WAIT_TIMEOUTS = 5;
/** First pause before a failed run is tried again; doubles up to {@link RETRY_DELAY_MAX_MS}. */
export const RETRY_DELAY_MS = 1000;
/** Longest pause between attempts of a failing run. */
export const RETRY_DELAY_MAX_MS = 10_000;
/** Most ids kept for pruning in one run. */
export const PRUNE_IDS_MAX = 16_000_000;
/** Longest a joining node waits off the ring while a move is unsettled. */
export const JOIN_WAIT_MAX_MS = 60_000;
/**
 * How long a ring change that only removes dead nodes waits before its run, by default: a
 * restart or a short crash comes back within it and nothing is re-replicated.
 */
export const DEFAULT_DEAD_GRACE_MS = 30_000;

/** A ring as the rebalancer sees it. */
export interface RingRef {
  /** Storage node addresses, sorted. */
  nodes: string[];
  /** The shard placement over `nodes`. */
  placement: Placement;
}

/** One entry of a node: a live point or a tombstone, with the version of its last write. */
export interface TransferEntry {
  id: PointId;
  version: number;
  deleted: boolean;
  /** The vector (empty for a tombstone). */
  vector: ArrayLike<number>;
  /** A live entry's payload as compact JSON text; "" or absent for none. */
  payload?: string;
}

/** One Scan page. */
export interface ScanPage {
  entries: TransferEntry[];
  /** The cursor of the next page: the last id scanned (order of `compareIds`). */
  next_after: PointId;
  done: boolean;
}

/** The collection does not exist on the node asked. */
export class MissingCollectionError extends Error {
  override name = "MissingCollectionError";
}

/**
 * What the rebalancer needs of one node: the node side of src/node/transfer_service.ts.
 * Each method throws {@link MissingCollectionError} when the node lacks the collection.
 */
export interface TransferPort {
  /** With `shard`: only that shard's unit (a node may list every entry instead; harmless). */
  scan(
    collection: string,
    after: PointId,
    from_start: boolean,
    limit: number,
    shard?: number,
  ): Promise<ScanPage>;
  copy(collection: string, entries: TransferEntry[]): Promise<{ applied: number; skipped: number }>;
  /** Forgets each id whose held version is at most the given one; resolves with the count. */
  prune(collection: string, ids: PointId[], versions: number[]): Promise<number>;
  /** Shard images and installs (src/router/rebalance/shard_move.ts); absent: points only. */
  files?: ShardFilePort;
}

/** What the rebalancer needs from the router. */
export interface RebalanceHost {
  log(message: string): void;
  /** The transfer port of a node on the current ring, or null. */
  transfer(address: string): TransferPort | null;
  /**
   * The digest port of a node on the current ring, or null; absent: anti-entropy runs scan
   * (see the module comment).
   */
  digest?: (address: string) => DigestPort | null;
  /**
   * Nodes off the ring that left on purpose and still serve their entries (a hand-off): each
   * run scans them first, as sources only. Default none.
   */
  sources?: () => string[];
  /**
   * Called when a run settled with these hand-off sources: their hand-off is over (scanned
   * completely, or gone mid-scan), so the router may close their channels.
   */
  handedOff?: (nodes: string[]) => void;
  /** Names of the collections the given nodes report (union). */
  collections(nodes: readonly string[]): Promise<string[]>;
  /** A collection's shard layout (the router's catalog; a collection from before shards: 1). */
  layout(collection: string): Promise<ShardLayout>;
  /** The ring in use now. */
  current(): RingRef;
  /** Resolves once no write planned on a ring other than `ring` is in flight, or after `ms`. */
  drainOlderWrites(ring: RingRef, ms: number): Promise<boolean>;
  node_timeout_ms: number;
  /** Timers (a simulation passes its own); default `setTimeout`. */
  sleep?: (ms: number) => Promise<void>;
  /** Describes an error for logs; default its message. */
  describe?: (error: unknown) => string;
}

/** Options of {@link Rebalancer}. */
export interface RebalancerOptions {
  transfers_max?: number;
  delay_ms?: number;
  page_points?: number;
  /** Start an anti-entropy run this long after the last settled one; 0 (default) never. */
  anti_entropy_interval_ms?: number;
  /**
   * A ring change that only removes dead nodes starts its run this long after the first such
   * change, not `delay_ms` after the last (default {@link DEFAULT_DEAD_GRACE_MS}).
   */
  dead_grace_ms?: number;
  /** Bandwidth of shard files moved, all moves together (bytes/s; 0: no limit). */
  transfer_bytes_per_s?: number;
}

/** Progress counters (cumulative since the router started, except the first three). */
export interface RebalanceStats {
  rebalancing: boolean;
  transfers_active: number;
  transfers_pending: number;
  transfers_done: number;
  transfers_failed: number;
  points_scanned: number;
  /** Entries a target applied (it held an older version or none). */
  points_copied: number;
  points_pruned: number;
  rebalances_done: number;
  /** Shard files (shard_move.ts): moves running, done and failed, bytes moved in all. */
  shard_moves_active: number;
  shard_moves_done: number;
  shard_moves_failed: number;
  shard_bytes_moved: number;
  /** The moves running now, with their progress. */
  shard_moves: ShardMoveProgress[];
  /**
   * Losers' shard units emptied wholesale (ShardDrop), drops refused because the unit had been
   * written since its root was read (each then re-synced and retried, or pruned), and the
   * entries dropped.
   */
  shard_drops_done: number;
  shard_drops_refused: number;
  points_dropped: number;
}

class Aborted extends Error {
  override name = "Aborted";
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The router's rebalancing driver (see the module comment). */
export class Rebalancer {
  readonly transfers_max: number;
  readonly delay_ms: number;
  readonly page_points: number;
  readonly anti_entropy_interval_ms: number;
  readonly dead_grace_ms: number;
  readonly stats: RebalanceStats = {
    rebalancing: false,
    transfers_active: 0,
    transfers_pending: 0,
    transfers_done: 0,
    transfers_failed: 0,
    points_scanned: 0,
    points_copied: 0,
    points_pruned: 0,
    rebalances_done: 0,
    shard_moves_active: 0,
    shard_moves_done: 0,
    shard_moves_failed: 0,
    shard_bytes_moved: 0,
    shard_moves: [],
    shard_drops_done: 0,
    shard_drops_refused: 0,
    points_dropped: 0,
  };
  /** Shared by every shard file move (`transfer_bytes_per_s`). */
  readonly bucket: ByteBucket;
  readonly #host: RebalanceHost;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #describe: (error: unknown) => string;
  /** The last ring whose placement is complete; null before the first ring. */
  #settled: RingRef | null = null;
  /** A ring whose copies all landed in a run that has not settled yet (pruning, or retrying a prune). */
  #readable: RingRef | null = null;
  /** Rings published since the settled one, oldest first (the last is the current one). */
  #chain: RingRef[] = [];
  /** Bumped on every ring change; a run stops when it no longer matches. */
  #generation = 0;
  #running: Promise<void> | null = null;
  #wanted = false;
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** When the pending timer fires, if it waits out a dead node's grace; else null. */
  #grace_due_ms: number | null = null;
  #anti_entropy_timer: ReturnType<typeof setTimeout> | null = null;
  /** The next run is a periodic anti-entropy one with no ring change: try digests first. */
  #digest_wanted = false;
  /** Anti-entropy runs done by digests, and their bytes (logged with each run). */
  digest_runs = 0;
  /** Since the settled ring (file_phase.ts): shard units filled, and collections copied whole. */
  readonly #touched = new Map<string, ScanUnit & { shard: number }>();
  readonly #copiedWhole = new Set<string>();
  /** An anti-entropy run was asked for: the next run is the full point pass. */
  #fullWanted = false;
  /**
   * Scans asked for ({@link antiEntropy} with `scan`) and the last one a settled run covered: a
   * run skips digests and the file phase while `#scan_done < #scan_asked`, and the placement is
   * not reported settled before a run that started after the last ask succeeds. Counters, not a
   * flag, so an ask during a run is not cleared by that run's end.
   */
  #scan_asked = 0;
  #scan_done = 0;

  constructor(host: RebalanceHost, options: RebalancerOptions) {
    this.#host = host;
    this.#sleep = host.sleep ?? realSleep;
    this.#describe = host.describe ?? ((e) => (e as Error)?.message ?? String(e));
    this.transfers_max = options.transfers_max ?? DEFAULT_TRANSFERS_MAX;
    this.delay_ms = options.delay_ms ?? DEFAULT_DELAY_MS;
    this.page_points = options.page_points ?? PAGE_POINTS;
    this.anti_entropy_interval_ms = options.anti_entropy_interval_ms ?? 0;
    this.dead_grace_ms = options.dead_grace_ms ?? DEFAULT_DEAD_GRACE_MS;
    this.bucket = new ByteBucket(options.transfer_bytes_per_s ?? DEFAULT_TRANSFER_BYTES_PER_S);
    if (!(this.dead_grace_ms >= 0)) {
      throw new RangeError(
        `Rebalance option dead_grace_ms ${this.dead_grace_ms} must be 0 or more`,
      );
    }
    for (
      const [n, v] of [["transfers_max", this.transfers_max], ["page_points", this.page_points]]
    ) {
      if (!Number.isInteger(v) || (v as number) < 1) {
        throw new RangeError(`Rebalance option ${n} ${v} must be a positive integer`);
      }
    }
    if (!(this.anti_entropy_interval_ms >= 0)) {
      throw new RangeError(
        `Rebalance option anti_entropy_interval_ms ${this.anti_entropy_interval_ms} must be ` +
          `0 or more`,
      );
    }
  }

  /** The settled ring (null before the first one). */
  get settled(): RingRef | null {
    return this.#settled;
  }

  /**
   * The placement whose replicas hold complete shards: the settled one while a move is
   * unsettled, else the one in use (a search reads from it).
   */
  readPlacement(): Placement {
    const current = this.#host.current();
    // Once a run's copies all landed, the ring it moved to holds every entry (see #run).
    if (this.#readable !== null && this.#readable === current) return current.placement;
    if (this.#settled !== null && this.stats.rebalancing) return this.#settled.placement;
    return current.placement;
  }

  /**
   * The nodes a read of `id` in `collection` should ask: its owners under the placement in use
   * and, while a move is unsettled, under the settled placement and every one published since
   * (one of them may hold the newest version still). Current owners first.
   */
  readers(collection: string, layout: ShardLayout, id: PointId): string[] {
    const list: Placement[] = [];
    if (this.#settled !== null && this.stats.rebalancing) list.push(this.#settled.placement);
    for (const r of this.#chain) list.push(r.placement);
    const current = this.#host.current().placement;
    if (list.length === 0 || list[list.length - 1] !== current) list.push(current);
    return readSet(list, collection, layout, id);
  }

  /**
   * Called after a ring was published. `deaths_only`: the change only removed nodes declared
   * dead (none joined, none left on purpose); when the ring is then the settled one minus some
   * nodes, the run waits out `dead_grace_ms`, counted from the first such change (a later one
   * does not extend it; any other change ends it).
   */
  changed(ring: RingRef, deaths_only = false): void {
    if (this.#stopped) return;
    if (this.#settled === null) {
      if (ring.nodes.length > 0) {
        this.#settled = ring;
        this.#armAntiEntropy();
      }
      return;
    }
    this.#generation++;
    this.#chain.push(ring);
    this.stats.rebalancing = true;
    this.#digest_wanted = false;
    // Only while the ring in use is the settled one minus dead nodes: a move already owed
    // (a node joined) is not held back by a death.
    const settled = new Set(this.#settled.nodes);
    if (deaths_only && this.dead_grace_ms > 0 && ring.nodes.every((n) => settled.has(n))) {
      const now = Date.now();
      const due = this.#grace_due_ms ?? now + this.dead_grace_ms;
      if (this.#grace_due_ms === null) {
        this.#host.log(
          `rebalance: a node is dead; re-replicating its ranges in ${this.dead_grace_ms} ms ` +
            `unless it returns first`,
        );
      }
      this.#schedule(Math.max(0, due - now));
      this.#grace_due_ms = due;
      return;
    }
    this.#schedule(this.delay_ms);
  }

  /** Whether a run waits out a dead node's grace (see {@link changed}). */
  get inGrace(): boolean {
    return this.#grace_due_ms !== null;
  }

  /**
   * Starts an anti-entropy run now (no ring change needed); for tests and operators. With `scan`
   * the run reads every entry of every node (no digests, no file phase): needed when entries may
   * sit on nodes that are not their shard's replicas (a cluster restore into a changed ring),
   * which digests, comparing only a shard's replicas, cannot see. False when no run will come:
   * stopped, or no ring seen yet (nothing placed, so nothing to move).
   */
  antiEntropy(options: { scan?: boolean } = {}): boolean {
    if (this.#stopped || this.#settled === null) return false;
    if (options.scan === true) this.#scan_asked++;
    // A dead node's grace is pending: its run comes then (and is the same full run).
    if (this.#grace_due_ms !== null) return true;
    this.#fullWanted = true;
    if (!this.stats.rebalancing) {
      this.#generation++;
      this.#chain.push(this.#host.current());
      this.stats.rebalancing = true;
      this.#digest_wanted = this.#host.digest !== undefined;
    }
    this.#schedule(0);
    return true;
  }

  /** Stops: the running transfer ends at its next page. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#generation++;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#anti_entropy_timer !== null) clearTimeout(this.#anti_entropy_timer);
    await this.#running;
  }

  /**
   * Whether a move is unsettled and not just waiting out a dead node's grace (the router then
   * defers nodes joining the ring; during a grace a joining node ends it and the run starts).
   */
  get busy(): boolean {
    return this.stats.rebalancing && this.#grace_due_ms === null;
  }

  /** Resolves when the placement is settled (for tests), or rejects after `timeout_ms`. */
  async idle(timeout_ms: number): Promise<void> {
    const deadline = Date.now() + timeout_ms;
    while (this.stats.rebalancing) {
      if (Date.now() > deadline) throw new Error(`Rebalance still running after ${timeout_ms} ms`);
      await realSleep(50);
    }
  }

  #armAntiEntropy(): void {
    if (this.anti_entropy_interval_ms <= 0 || this.#stopped) return;
    if (this.#anti_entropy_timer !== null) clearTimeout(this.#anti_entropy_timer);
    this.#anti_entropy_timer = setTimeout(() => {
      this.#anti_entropy_timer = null;
      this.antiEntropy();
    }, this.anti_entropy_interval_ms);
  }

  #schedule(ms: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#grace_due_ms = null;
    if (ms <= 0 && this.#host.sleep !== undefined) {
      // Simulations run without real timers.
      this.#kick();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#grace_due_ms = null;
      this.#kick();
    }, ms);
  }

  #kick(): void {
    this.#wanted = true;
    if (this.#running !== null) return;
    this.#running = (async () => {
      let attempt = 0;
      let last_generation = -1;
      while (this.#wanted && !this.#stopped) {
        this.#wanted = false;
        const generation = this.#generation;
        if (generation !== last_generation) attempt = 0;
        last_generation = generation;
        attempt++;
        let outcome: "done" | "failed" | "aborted";
        try {
          outcome = await this.#run(generation);
        } catch (e) {
          this.#host.log(`ERROR rebalance: ${(e as Error)?.stack ?? e}`);
          outcome = "failed";
        }
        if (outcome === "failed" && !this.#stopped && generation === this.#generation) {
          const wait = Math.min(RETRY_DELAY_MAX_MS, RETRY_DELAY_MS * 2 ** (attempt - 1));
          this.#host.log(`rebalance: attempt ${attempt} failed; retrying in ${wait} ms`);
          await this.#sleep(wait);
          this.#wanted = true;
        }
      }
    })().finally(() => {
      this.#running = null;
      if (this.#wanted && !this.#stopped) this.#kick();
    });
  }

  /** One run to the current ring. */
  async #run(generation: number): Promise<"done" | "failed" | "aborted"> {
    const host = this.#host;
    const to = host.current();
    const t0 = Date.now();
    const drained = await host.drainOlderWrites(to, DRAIN_WAIT_TIMEOUTS * host.node_timeout_ms);
    if (this.#stopped || generation !== this.#generation) return "aborted";
    if (!drained) {
      host.log("WARNING rebalance: writes planned on an older ring still in flight");
      return "failed";
    }
    const check = () => {
      if (this.#stopped || generation !== this.#generation) throw new Aborted("ring changed");
    };
    // Nodes handing off (they left on purpose) are scanned first, as sources only.
    const leavers = (host.sources?.() ?? []).filter((n) => !to.nodes.includes(n));
    // Read before listing collections: an ask that lands while they are listed may be for one
    // the listing missed (a restore just made), so this run cannot count as its scan.
    const scan_target = this.#scan_asked;
    const collections = await host.collections([...to.nodes, ...leavers]);
    const scan = this.#scan_done < scan_target;
    // A scan asked for goes without digests; either way this run spends the wish.
    const digests = this.#digest_wanted && !scan;
    this.#digest_wanted = false;
    if (digests) {
      // Not after an unsettled move (an attempt since the settled ring filled units or copied
      // whole collections): nodes may hold strays that only a scan finds and forgets.
      const same = this.#settled !== null && leavers.length === 0 &&
        this.#settled.nodes.join(",") === to.nodes.join(",") && this.#touched.size === 0 &&
        this.#copiedWhole.size === 0;
      if (same && await this.#byDigests(to, collections, t0)) {
        if (this.#stopped || generation !== this.#generation) return "aborted";
        this.#settle(to, scan_target);
        return "done";
      }
      if (this.#stopped || generation !== this.#generation) return "aborted";
    }
    // Shards gained move as files first (file_phase.ts); the collections they covered then
    // need only the units listed, the others every unit.
    let covered = new Map<string, ScanUnit[]>();
    let filePrunes: FilePrune[] = [];
    let fileDrops: FileDrop[] = [];
    if (this.#settled !== null && !this.#fullWanted && !scan) {
      try {
        const r = await shardFilePhase(this.#filePhase(to, leavers, collections, check));
        covered = r.covered;
        filePrunes = r.prunes;
        fileDrops = r.drops;
      } catch (e) {
        if (e instanceof Aborted) return "aborted";
        throw e;
      }
    }
    const units: ScanUnit[] = [];
    for (const collection of collections) units.push(...(covered.get(collection) ?? []));
    for (const node of [...leavers, ...to.nodes]) {
      for (const collection of collections) {
        if (!covered.has(collection)) units.push({ node, collection });
      }
    }
    for (const collection of collections) {
      if (!covered.has(collection)) this.#copiedWhole.add(collection);
    }
    /** Leavers whose scan failed (they exited): their entries stay where they are. */
    const gone = new Set<string>();
    host.log(
      `rebalance: to ring [${to.nodes.join(", ")}]; ${units.length} transfers ` +
        `(${to.nodes.length} nodes x ${collections.length} collections), at most ` +
        `${this.transfers_max} at once`,
    );
    /** Entries each node may forget, per collection: ids and the versions scanned. */
    const prune = new Map<string, Map<string, { ids: PointId[]; versions: number[] }>>();
    let pruneIds = 0;
    let pruneOverflow = false;
    // Losers' entries of shards synced by digests (file_phase.ts), forgotten with the rest.
    for (const f of filePrunes) {
      if (pruneIds + f.ids.length > PRUNE_IDS_MAX) {
        pruneOverflow = true;
        break;
      }
      pruneIds += f.ids.length;
      let m = prune.get(f.node);
      if (m === undefined) prune.set(f.node, m = new Map());
      const had = m.get(f.collection);
      if (had === undefined) m.set(f.collection, { ids: [...f.ids], versions: [...f.versions] });
      else {
        for (let i = 0; i < f.ids.length; i++) {
          had.ids.push(f.ids[i]);
          had.versions.push(f.versions[i]);
        }
      }
    }
    let failed = 0;
    let copied = 0;
    let scanned = 0;
    this.stats.transfers_pending = units.length;
    const transfer = async (u: ScanUnit) => {
      const port = host.transfer(u.node);
      if (port === null) throw new Error(`no channel to ${u.node}`);
      const layout = await host.layout(u.collection);
      // Forgetting an entry is safe only once it reached an owner; with fewer nodes than the
      // collection's RF on the ring (a cluster shutting down) nothing is forgotten.
      const may_prune = to.nodes.length >= layout.replication_factor;
      let after: PointId = 0;
      let first = true;
      const forget = { ids: [] as PointId[], versions: [] as number[] };
      for (;;) {
        check();
        let page: ScanPage;
        try {
          page = await port.scan(u.collection, after, first, this.page_points, u.shard);
        } catch (e) {
          // A node without the collection holds none of its entries.
          if (e instanceof MissingCollectionError) return;
          throw e;
        }
        first = false;
        this.stats.points_scanned += page.entries.length;
        scanned += page.entries.length;
        const per = new Map<string, TransferEntry[]>();
        const pagePrune: TransferEntry[] = [];
        for (const e of page.entries) {
          const r = routeEntry(to.placement, u.collection, layout, u.node, e.id);
          for (const t of r.targets) {
            let list = per.get(t);
            if (list === undefined) per.set(t, list = []);
            list.push(e);
          }
          if (r.prune && may_prune && r.targets.length > 0) pagePrune.push(e);
        }
        await Promise.all([...per].map(async ([target, entries]) => {
          const n = await this.#copy(target, u.collection, entries, check);
          this.stats.points_copied += n;
          copied += n;
        }));
        // Every copy of this page landed: the holder may forget what it does not own.
        for (const e of pagePrune) {
          forget.ids.push(e.id);
          forget.versions.push(e.version);
        }
        if (page.done) break;
        after = page.next_after;
      }
      if (forget.ids.length > 0) {
        if (pruneIds + forget.ids.length > PRUNE_IDS_MAX) pruneOverflow = true;
        else {
          pruneIds += forget.ids.length;
          let m = prune.get(u.node);
          if (m === undefined) prune.set(u.node, m = new Map());
          // Several units of one collection (one per shard) add up.
          const had = m.get(u.collection);
          if (had === undefined) m.set(u.collection, forget);
          else {
            for (let i = 0; i < forget.ids.length; i++) {
              had.ids.push(forget.ids[i]);
              had.versions.push(forget.versions[i]);
            }
          }
        }
      }
    };
    let next = 0;
    let aborted = false;
    const worker = async () => {
      while (next < units.length && !aborted) {
        const u = units[next++];
        this.stats.transfers_pending--;
        this.stats.transfers_active++;
        try {
          await transfer(u);
          this.stats.transfers_done++;
        } catch (e) {
          if (e instanceof Aborted) {
            aborted = true;
          } else if (leavers.includes(u.node) && !(e as Error)?.message?.startsWith("CopyBatch")) {
            // A node that left and already exited: nothing more to take from it (its entries
            // have other replicas, unless RF is 1).
            gone.add(u.node);
            host.log(
              `WARNING rebalance: hand-off scan of ${u.node} ended early: ${this.#describe(e)}`,
            );
          } else {
            failed++;
            this.stats.transfers_failed++;
            host.log(
              `ERROR rebalance: transfer of "${u.collection}" from ${u.node} failed: ` +
                this.#describe(e),
            );
          }
        } finally {
          this.stats.transfers_active--;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.transfers_max, units.length) }, worker));
    this.stats.transfers_pending = 0;
    if (aborted || this.#stopped || generation !== this.#generation) {
      host.log(`rebalance: run aborted by a ring change after ${Date.now() - t0} ms`);
      return "aborted";
    }
    if (failed > 0) return "failed";
    // Every entry is on its owners under `to` (copies done, writes routed to `to` since), so
    // searches may read `to`'s replicas now, before the losers forget theirs: reading the old
    // placement while it is pruned would miss the pruned entries.
    this.#readable = to;
    let pruned = 0;
    let dropped = 0;
    let pruneFailed = false;
    // Losers' units of shards synced by digests are emptied wholesale first (file_phase.ts
    // `settleDrop`); a unit written since its root was read is synced again, or its entries
    // join the prune lists. Nodes in parallel, each node's units in order.
    const dropsByNode = new Map<string, FileDrop[]>();
    for (const d of fileDrops) {
      let list = dropsByNode.get(d.node);
      if (list === undefined) dropsByNode.set(d.node, list = []);
      list.push(d);
    }
    const dropContext = { ...this.#filePhase(to, leavers, collections, check) };
    await Promise.all([...dropsByNode.values()].map(async (list) => {
      for (const d of list) {
        try {
          const r = await settleDrop(dropContext, d);
          this.stats.shard_drops_refused += r.refused;
          if (r.prune === null) {
            this.stats.shard_drops_done++;
            this.stats.points_dropped += r.dropped;
            dropped += r.dropped;
            continue;
          }
          const f = r.prune;
          if (pruneIds + f.ids.length > PRUNE_IDS_MAX) {
            pruneOverflow = true;
            continue;
          }
          pruneIds += f.ids.length;
          let m = prune.get(f.node);
          if (m === undefined) prune.set(f.node, m = new Map());
          const had = m.get(f.collection);
          if (had === undefined) m.set(f.collection, { ids: f.ids, versions: f.versions });
          else {
            for (let i = 0; i < f.ids.length; i++) {
              had.ids.push(f.ids[i]);
              had.versions.push(f.versions[i]);
            }
          }
        } catch (e) {
          if (e instanceof Aborted) return;
          // The unit stays whole; the run does not settle, so the next attempt drops it.
          host.log(
            `WARNING rebalance: dropping shard ${d.shard} of "${d.collection}" on ${d.node} ` +
              `failed: ${this.#describe(e)}`,
          );
          pruneFailed = true;
          return;
        }
      }
    }));
    if (this.#stopped || generation !== this.#generation) return "aborted";
    {
      // Nodes prune in parallel (each node's pages in order): a node dropping whole shards
      // forgets many entries, and nodes do it independently.
      await Promise.all([...prune].map(async ([node, byCollection]) => {
        const port = host.transfer(node);
        if (port === null) return;
        for (const [collection, list] of byCollection) {
          for (let i = 0; i < list.ids.length; i += this.page_points) {
            if (this.#stopped || generation !== this.#generation) return;
            try {
              const n = await port.prune(
                collection,
                list.ids.slice(i, i + this.page_points),
                list.versions.slice(i, i + this.page_points),
              );
              pruned += n;
              this.stats.points_pruned += n;
            } catch (e) {
              // The entries stay; the run does not settle, so the next attempt prunes them
              // (settling would leave them to resurface once their tombstones are collected).
              host.log(`WARNING rebalance: prune on ${node} failed: ${this.#describe(e)}`);
              pruneFailed = true;
              break;
            }
          }
        }
      }));
    }
    if (this.#stopped || generation !== this.#generation) return "aborted";
    if (pruneFailed || pruneOverflow) {
      // Not settled: entries left on non-owners would outlive their deletes' tombstones (the
      // tombstone grace) and be copied back by a later scan. The retry prunes the rest.
      host.log(
        `WARNING rebalance: ${pruned} pruned, ${dropped} dropped, but ` +
          (pruneOverflow ? `over ${PRUNE_IDS_MAX} ids were listed` : "a prune failed") +
          `; not settling, the next attempt prunes the rest`,
      );
      return "failed";
    }
    const handed = leavers.filter((n) => !gone.has(n));
    if (leavers.length > 0) host.handedOff?.(leavers);
    this.#settle(to, scan_target);
    host.log(
      `rebalance: settled on [${to.nodes.join(", ")}] in ${Date.now() - t0} ms: ` +
        `${scanned} entries scanned, ${copied} copies applied, ${pruned} pruned, ` +
        `${dropped} dropped with their shard units` +
        (leavers.length > 0 ? `; handed off from [${handed.join(", ")}]` : ""),
    );
    return "done";
  }

  /**
   * A run to `to` succeeded (by digests or in full): the placement is settled there, and the
   * scans asked up to `scan_target` (read at the run's start) are done. The placement still
   * reads as rebalancing if a scan was asked since: that run is scheduled.
   */
  #settle(to: RingRef, scan_target: number): void {
    this.#settled = to;
    this.#chain = [];
    this.#touched.clear();
    this.#copiedWhole.clear();
    this.#fullWanted = false;
    this.#scan_done = scan_target;
    this.stats.rebalancing = this.#scan_done < this.#scan_asked;
    this.stats.rebalances_done++;
    this.#armAntiEntropy();
  }

  /** What the file phase of a run to `to` needs (file_phase.ts). */
  #filePhase(
    to: RingRef,
    leavers: string[],
    collections: string[],
    check: () => void,
  ): Parameters<typeof shardFilePhase>[0] {
    const host = this.#host;
    const deadline = Date.now() + COLLECTION_WAIT_MS;
    return {
      settled: this.#settled!,
      to,
      chain: this.#chain,
      exclude: this.#copiedWhole,
      touched: this.#touched,
      leavers,
      collections,
      layout: (c) => host.layout(c),
      files: (n) => host.transfer(n)?.files ?? null,
      transfers_max: this.transfers_max,
      digest: host.digest === undefined ? undefined : (n) => host.digest!(n),
      page_points: this.page_points,
      mayPrune: (layout) => to.nodes.length >= layout.replication_factor,
      counted: (copied) => {
        this.stats.points_copied += copied;
      },
      bucket: this.bucket,
      stats: this.stats,
      check,
      beginWait: async (e) => {
        if (!(e instanceof MissingCollectionError) || Date.now() >= deadline) return false;
        await this.#sleep(200);
        return true;
      },
      isAbort: (e) => e instanceof Aborted,
      log: (m) => host.log(m),
      describe: this.#describe,
    };
  }

  /**
   * An anti-entropy run by digests over every shard of `collections` on the ring `to`; true
   * when every shard's replicas agree at its end (else the caller scans).
   */
  async #byDigests(to: RingRef, collections: string[], t0: number): Promise<boolean> {
    const host = this.#host;
    const shards: ShardReplicas[] = [];
    for (const collection of collections) {
      const layout = await host.layout(collection);
      for (let shard = 0; shard < layout.shard_number; shard++) {
        const replicas = to.placement.replicas(collection, layout, shard);
        if (replicas.length > 1) shards.push({ collection, shard, replicas });
      }
    }
    const r = await digestRun((a) => host.digest?.(a) ?? null, shards, {
      page_limit: this.page_points,
      concurrency: this.transfers_max,
      describe: this.#describe,
    });
    this.stats.points_copied += r.entries_copied;
    this.digest_runs++;
    const ok = r.failed.length === 0 && r.shards_converged === r.shards;
    host.log(
      `rebalance: anti-entropy by digests over ${r.shards} shard replica sets in ` +
        `${Date.now() - t0} ms: ${r.shards_equal} equal, ${r.buckets_differing} buckets ` +
        `differed, ${r.entries_read} entries read, ${r.entries_copied} copies applied, ` +
        `${r.bytes} bytes` +
        (ok ? "" : `; ${r.failed.length} replicas failed or replicas still differ: scanning`),
    );
    for (const f of r.failed.slice(0, 3)) {
      host.log(`WARNING rebalance: digest sync with ${f.node} failed: ${f.error}`);
    }
    return ok;
  }

  /** Copies entries to `target`, waiting for a collection still being created there. */
  async #copy(
    target: string,
    collection: string,
    entries: TransferEntry[],
    check: () => void,
  ): Promise<number> {
    const deadline = Date.now() + COLLECTION_WAIT_MS;
    for (;;) {
      check();
      const port = this.#host.transfer(target);
      if (port === null) throw new Error(`target ${target} is no longer on the ring`);
      try {
        return (await port.copy(collection, entries)).applied;
      } catch (e) {
        if (e instanceof MissingCollectionError && Date.now() < deadline) {
          await this.#sleep(200);
          continue;
        }
        throw new Error(`CopyBatch to ${target}: ${this.#describe(e)}`);
      }
    }
  }
}
