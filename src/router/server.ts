/**
 * The router: serves `vectordb.VectorDB` in front of the storage nodes, placing points with a
 * consistent-hash ring (member ids are the nodes' addresses), replicating writes, merging
 * searches, and keeping replicas complete with durable hinted handoff. Decisions come from the
 * pure modules plan.ts, shards.ts and handoff.ts; this module does the IO.
 *
 * | RPC                         | what the router does                                            |
 * | --------------------------- | --------------------------------------------------------------- |
 * | Put, Delete                 | to the point's owners in parallel; success per consistency      |
 * | PutBatch                    | each owner gets one PutBatch of the points it owns              |
 * | Get                         | asks all holders at once; highest version wins; read repair     |
 * | Search                      | nodes covering the ring (k, caller's ef); merged, deduped       |
 * | Create/DropCollection       | to every node; success per consistency over all nodes           |
 * | ListCollections             | union over the nodes that answered                              |
 * | Stats                       | per node (with hint counts), collections summed                 |
 * | Members                     | gossip: the router's gossip view; static: the nodes and itself  |
 *
 * Membership. Static (`nodes` only): the ring is the given addresses, fixed. Gossip (`join`):
 * the router is a gossip member with role "router" (it owns no ring positions) and its ring
 * follows the storage nodes that gossip reports alive or suspect ({@link RingFollower}); a
 * static node (`nodes` given too) stays on the ring until gossip reports it in some state, so
 * a partial view while joining does not shrink the ring (see `ringNodes` in plan.ts). Ring
 * member ids are ALWAYS the nodes' addresses (host:port as advertised), never their gossip
 * ids: a router switching from its static list to gossip, or a static router next to a
 * gossiping one, then places every point on the same nodes, and hint queues
 * (`hints/<address>/`) are found again whichever way the router was started. (A node that
 * comes back under a new address is thus a new ring member.) When a node appears, its hint log is opened, a channel to it opened and
 * the creation of every collection the other nodes have is queued for it (see
 * `#copyCatalog`); then the new ring is published. When it leaves the ring (dead or left),
 * its channel is closed but its hint log stays open with its pending hints, which are
 * replayed when it comes back; a node off the ring with nothing pending has its hint log
 * closed after {@link LINK_RETIRE_MS}. With gossip, entries move when the ring changes
 * (rebalance.ts): each node's entries are copied, versioned, to their owners under the new ring
 * and, once all succeeded, forgotten by nodes that no longer own them; Stats reports the
 * progress. Meanwhile Get also asks the owners under the rings since the last settled one and
 * takes the highest version. Static rings never change, so nothing moves. Each request plans on
 * one ring snapshot; writes count themselves in flight on it, so a rebalance can wait for the
 * writes planned on older rings.
 *
 * Versions. The router stamps every put, batch and delete with a version from its hybrid
 * logical clock (unless the client gave one) and sends the same version to every owner and into
 * every hint; nodes apply last-writer-wins with durable tombstones (proto/vector_db.proto,
 * "Versions"). So replicas converge whatever order direct writes, hints, copies and read repairs
 * arrive in, and concurrent writes to one id resolve the same way on every replica (the higher
 * version wins). Get asks every node that may hold the point and returns the highest version;
 * owners that answered with an older one get the newest by a background copy (read repair, at
 * most {@link READ_REPAIRS_MAX} in flight).
 *
 * Write path and hints. A write is sent to every owner at once (an owner with pending hints
 * gets it through its hint queue instead, see handoff.ts). The reply waits until every owner
 * has settled. Owners that failed with an availability error (UNAVAILABLE, DEADLINE_EXCEEDED,
 * CANCELLED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN, ABORTED) get a durable hint when at least
 * one owner acknowledged the write, whether or not the consistency level was met: a write that
 * reached some replica must reach all of them, or replicas diverge for good. If a hint cannot
 * be stored (queue full) the client gets RESOURCE_EXHAUSTED, never success, so after recovery
 * no ACKNOWLEDGED write is missing from any owner. Definitive node errors (INVALID_ARGUMENT,
 * NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION…) are not hinted; when the write fails they are
 * passed through as they are.
 *
 * Ordering. For each node, the order in which the router accepts writes for it is the order in
 * which the node applies them, for writes a client issues one after another (after the
 * previous reply): (1) the reply to W1 comes only after W1 is acknowledged by, or durably
 * queued for, every owner; (2) while a node has queued hints, later writes for it are queued
 * behind them, and replay delivers in queue order, one at a time; (3) the queue counts as empty
 * only after the delivered watermark is durable. Whatever the delivery order, the version decides
 * the outcome: a direct write that timed out and is applied later than its replayed copy, or an
 * old hint delivered after a newer write, changes nothing.
 *
 * Replay runs in the background: every 100 ms each node's handoff state is ticked; a node
 * believed down is retried every `retry_interval_ms` (500 ms); while it answers, its queue is
 * drained continuously in batches of {@link REPLAY_BATCH} hints, each batch's delivery recorded
 * durably once.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { join } from "node:path";
import process from "node:process";
import { ApiClient, describeGrpcError, isServiceError } from "../api/client.ts";
import type { Consistency } from "../common/limits.ts";
import {
  CHANNEL_OPTIONS,
  type CollectionInfo,
  type CollectionStats,
  type MethodName,
  type NodeStats,
  type Point,
  type SearchResult,
  type UnaryMethod,
  type VectorDBHandlers,
  type VectorDBMethods,
  vectorDbService,
} from "../api/proto.ts";
import {
  validateCollectionName,
  validateCreateCollectionRequest,
  validatePointRef,
  validatePutBatchRequest,
  validatePutRequest,
  validateSearchRequest,
  ValidationError,
} from "../api/validate.ts";
import { GossipAgent, RingFollower } from "../cluster/gossip_agent.ts";
import { addGossipService, GrpcGossipTransport } from "../cluster/gossip_transport.ts";
import { HashRing } from "../cluster/ring.ts";
import { decodeRecord, type WalRecord } from "../common/records.ts";
import { HintDelivery } from "./hints/delivery.ts";
import { type Hint, HintLog, HintQueueFullError } from "./hints/hint_log.ts";
import {
  decideBatch,
  decideWrite,
  mergeSearchResults,
  newestRead,
  type ReadAnswer,
  ringNodes,
  searchCoverage,
  searchRetryTargets,
  searchTargets,
  splitBatch,
} from "./plan.ts";
import { ringShards } from "../cluster/ring_shards.ts";
import {
  JOIN_WAIT_MAX_MS,
  MissingCollectionError,
  Rebalancer,
  type TransferEntry,
  type TransferPort,
} from "./rebalance/rebalancer.ts";
import { TransferClient } from "../api/transfer.ts";
import { VersionClock } from "../common/version.ts";

/** Software version reported by Stats. */
export const ROUTER_VERSION = "0.1.0";
/** Hints delivered between two durable watermark updates. */
export const REPLAY_BATCH = 64;
/** Period of the background loop that ticks every node's handoff state. */
export const TICK_INTERVAL_MS = 100;
/** Longest pause between a node channel's reconnect attempts. */
export const RECONNECT_BACKOFF_MAX_MS = 1000;
/**
 * A node off the ring with no pending hints keeps its hint log open this long (a request
 * planned on an older ring may still queue a hint for it), then the log is closed.
 */
export const LINK_RETIRE_MS = 30_000;
/** Longest a node that left is kept as a rebalancing source (its hand-off). */
export const LEAVER_TTL_MS = 5 * 60_000;
/** Default period of anti-entropy runs (gossip mode). */
export const DEFAULT_ANTI_ENTROPY_INTERVAL_MS = 10 * 60_000;
/** Read repairs in flight at once; beyond, a stale replica waits for anti-entropy. */
export const READ_REPAIRS_MAX = 64;
/** Most log lines about a full hint queue per node per 10 s. */
const FULL_LOG_INTERVAL_MS = 10_000;

/** Options of {@link Router.start}. */
export interface RouterOptions {
  /** Address to bind; default 127.0.0.1. */
  host?: string;
  /** Port to serve on (0 picks a free one). */
  port: number;
  /**
   * Static storage node addresses, host:port (ring member ids are addresses). May be empty
   * when `join` is given; with `join`, each stays on the ring until gossip reports it.
   */
  nodes: string[];
  /** Gossip seeds, host:port: the router joins the cluster as a member with role "router". */
  join?: string[];
  /** Address other members reach the router at; default `<host>:<bound port>`. */
  advertise?: string;
  /** Gossip member id; default `router@<advertise>`. */
  node_id?: string;
  replication_factor: number;
  /** Default write consistency. */
  consistency: Consistency;
  /** Deadline of each call to a node. */
  node_timeout_ms: number;
  /** Router data directory (hint logs under `hints/`). */
  data_dir: string;
  hints_max?: number;
  hint_bytes_max?: number;
  retry_interval_ms?: number;
  /** Virtual nodes per member; default the ring's. */
  vnodes_per_member?: number;
  /** Rebalancing (gossip only): most transfers at once; default 2. */
  transfers_max?: number;
  /** Rebalancing: ring stability before transfers start; default 500 ms. */
  rebalance_delay_ms?: number;
  /**
   * Gossip only: an anti-entropy run (every node's entries to all their owners) this long after
   * the last settled one; default {@link DEFAULT_ANTI_ENTROPY_INTERVAL_MS}, 0 never.
   */
  anti_entropy_interval_ms?: number;
  logger?: (message: string) => void;
}

/** A gRPC status error to send to the client. */
export class RouterStatusError extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
    this.name = "RouterStatusError";
  }
}

/** gRPC codes that say "the node did not (certainly) apply this; try again later". */
const TRANSIENT_CODES: ReadonlySet<number> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.ABORTED,
]);

/** Whether a node call's error is an availability problem (as opposed to a verdict). */
export function isTransient(error: unknown): boolean {
  return !isServiceError(error) || TRANSIENT_CODES.has(error.code);
}

/** The status a handler error maps to. */
export function toStatus(error: unknown): { code: grpc.status; details: string } {
  if (error instanceof ValidationError) {
    return { code: grpc.status.INVALID_ARGUMENT, details: error.message };
  }
  if (error instanceof RouterStatusError) return { code: error.code, details: error.message };
  if (error instanceof HintQueueFullError) {
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: error.message };
  }
  if (isServiceError(error)) return { code: error.code, details: error.details || error.message };
  return { code: grpc.status.INTERNAL, details: (error as Error)?.message ?? String(error) };
}

/** One storage node as the router holds it. */
interface NodeLink {
  address: string;
  /** Its channel: closed while the node is off the ring, replaced when it comes back. */
  client: ApiClient;
  /** Its `vectordb.internal.Transfer` client (rebalancing), closed and replaced with `client`. */
  transfer: TransferClient;
  /** Whether the node is on the router's ring (and its channel open). */
  active: boolean;
  /** When it went off the ring (an idle link is retired {@link LINK_RETIRE_MS} later). */
  inactive_since_ms: number;
  /**
   * When it left the cluster on purpose (gossip `left`) while its channel stayed open for the
   * hand-off: it is scanned as a source, never a target, until a run settles or
   * {@link LEAVER_TTL_MS} passes; 0 when not leaving.
   */
  leaving_since_ms: number;
  handoff: HintDelivery;
  hints: HintLog;
  /** Writes refused because its hint queue was full. */
  refused: number;
  /** Hints discarded because the node rejected them for good. */
  discarded: number;
  last_full_log_ms: number;
  last_error: string;
}

/** The ring the router routes with; replaced as a whole, never mutated, one per request. */
interface RingView {
  /** Ring members: storage node addresses, sorted. */
  nodes: string[];
  ring: HashRing;
  shards: string[][];
  /** Writes planned on this ring still in flight (rebalancing waits for older rings' ones). */
  writes: number;
}

/** How one owner settled a write. */
type OwnerResult<R> =
  | { kind: "acked"; response: R }
  | { kind: "queued" }
  | { kind: "unreached"; error: unknown }
  | { kind: "rejected"; error: unknown };

function sanitize(address: string): string {
  return address.replace(/[^A-Za-z0-9_.-]/g, "_");
}

function maxSeq(values: (string | number | undefined)[]): string {
  let best = 0n;
  for (const v of values) {
    if (v === undefined || v === "") continue;
    const b = BigInt(v);
    if (b > best) best = b;
  }
  return best.toString();
}

const HOST_PORT = /^[^\s:]+:\d{1,5}$/;

/** The router. Create with {@link Router.start}. */
export class Router {
  readonly address: string;
  readonly options: Required<
    Omit<
      RouterOptions,
      | "vnodes_per_member"
      | "logger"
      | "join"
      | "advertise"
      | "node_id"
      | "transfers_max"
      | "rebalance_delay_ms"
      | "anti_entropy_interval_ms"
    >
  >;
  /** Gossip seeds (empty: static mode). */
  readonly join: readonly string[];
  /** The router's gossip membership, when it joined a cluster (`join`); else null. */
  readonly agent: GossipAgent | null;
  readonly #server: grpc.Server;
  readonly #links = new Map<string, NodeLink>();
  readonly #log: (message: string) => void;
  readonly #vnodes: number | undefined;
  readonly #started_ms = Date.now();
  readonly #background = new Set<Promise<void>>();
  /** Hint logs of retired links still closing, by address. */
  readonly #retiring = new Map<string, Promise<void>>();
  #view: RingView;
  /** Views with writes in flight. */
  readonly #writing = new Set<RingView>();
  #follower: RingFollower | null = null;
  /** Moves points when the ring changes (gossip only); null in static mode. */
  #rebalancer: Rebalancer | null = null;
  readonly #static: ReadonlySet<string>;
  /** Static node addresses gossip has reported (from then on gossip decides for them). */
  readonly #seen = new Set<string>();
  #reconcile_wanted = false;
  #reconciling = false;
  /** When a failed ring update is tried again (0: none due). */
  #reconcile_retry_ms = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  #stopping = false;
  /** Stamps write versions (see "Versions" in proto/vector_db.proto). */
  readonly #clock = new VersionClock();
  /** Nodes kept off the ring while a move is unsettled, since when (ms). */
  readonly #join_waiting = new Map<string, number>();
  #repairs_in_flight = 0;

  private constructor(
    address: string,
    options: Router["options"],
    join: readonly string[],
    server: grpc.Server,
    agent: GossipAgent | null,
    vnodes_per_member: number | undefined,
    log: (message: string) => void,
  ) {
    this.address = address;
    this.options = options;
    this.join = join;
    this.#server = server;
    this.agent = agent;
    this.#vnodes = vnodes_per_member;
    this.#log = log;
    this.#static = new Set(options.nodes);
    this.#view = this.#makeView([]);
  }

  /** The current ring (member ids are node addresses). */
  get ring(): HashRing {
    return this.#view.ring;
  }

  /** The current ring's shards (see shards.ts). */
  get shards(): string[][] {
    return this.#view.shards;
  }

  /** Storage nodes on the current ring (addresses), sorted. */
  get nodes(): string[] {
    return this.#view.nodes;
  }

  /**
   * Binds the port, opens the hint logs of the static nodes, joins gossip when `join` is
   * given, and starts the background loop.
   */
  static async start(options: RouterOptions): Promise<Router> {
    const log = options.logger ?? ((m: string) => console.error(m));
    const nodes = [...new Set(options.nodes)];
    const join = [...new Set(options.join ?? [])];
    if (nodes.length === 0 && join.length === 0) {
      throw new RangeError("The router needs at least one storage node or gossip seed");
    }
    for (const n of nodes) {
      if (!HOST_PORT.test(n)) {
        throw new RangeError(`Node address ${JSON.stringify(n)} must be host:port`);
      }
    }
    for (const n of join) {
      if (!HOST_PORT.test(n)) {
        throw new RangeError(`Seed address ${JSON.stringify(n)} must be host:port`);
      }
    }
    if (options.advertise !== undefined && !HOST_PORT.test(options.advertise)) {
      throw new RangeError(
        `Advertised address ${JSON.stringify(options.advertise)} must be host:port`,
      );
    }
    const rf = options.replication_factor;
    if (!Number.isInteger(rf) || rf < 1) {
      throw new RangeError(`Replication factor ${rf} must be a positive integer`);
    }
    // A static ring never grows, so a larger factor is cut to its size; a gossip ring may.
    if (join.length === 0 && rf > nodes.length) {
      log(
        `WARNING replication factor ${rf} exceeds the ${nodes.length} nodes; using ${nodes.length}`,
      );
    }
    if (!Number.isFinite(options.node_timeout_ms) || options.node_timeout_ms <= 0) {
      throw new RangeError(`Node timeout ${options.node_timeout_ms} ms must be positive`);
    }
    const full = {
      host: options.host ?? "127.0.0.1",
      port: options.port,
      nodes,
      replication_factor: join.length === 0 ? Math.min(rf, nodes.length) : rf,
      consistency: options.consistency,
      node_timeout_ms: options.node_timeout_ms,
      data_dir: options.data_dir,
      hints_max: options.hints_max ?? 100_000,
      hint_bytes_max: options.hint_bytes_max ?? 256 * 2 ** 20,
      retry_interval_ms: options.retry_interval_ms ?? 500,
    };
    const server = new grpc.Server(CHANNEL_OPTIONS);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(
        `${full.host}:${full.port}`,
        grpc.ServerCredentials.createInsecure(),
        (err, bound) => (err ? reject(err) : resolve(bound)),
      );
    });
    const address = `${full.host}:${port}`;
    let agent: GossipAgent | null = null;
    if (join.length > 0) {
      const advertise = options.advertise ?? address;
      agent = new GossipAgent({
        id: options.node_id ?? `router@${advertise}`,
        address: advertise,
        role: "router",
        seeds: join,
        transport: new GrpcGossipTransport(),
        logger: log,
      });
      addGossipService(server, agent);
    }
    const router = new Router(
      address,
      { ...full, port },
      join,
      server,
      agent,
      options.vnodes_per_member,
      log,
    );
    if (agent !== null) {
      router.#rebalancer = new Rebalancer({
        log,
        transfer: (a) => router.#transferPort(a),
        sources: () => router.#leavers(),
        handedOff: (nodes) => {
          for (const a of nodes) {
            const l = router.#links.get(a);
            if (l === undefined || l.active || l.leaving_since_ms === 0) continue;
            router.#log(`node ${a}: hand-off over`);
            router.#closeChannels(l);
          }
        },
        collections: (nodes) => router.#collectionNames(nodes),
        current: () => router.#view,
        drainOlderWrites: (view, ms) => router.#drainOlderWrites(view as RingView, ms),
        node_timeout_ms: full.node_timeout_ms,
        describe: describeGrpcError,
      }, {
        replication_factor: full.replication_factor,
        transfers_max: options.transfers_max,
        delay_ms: options.rebalance_delay_ms,
        anti_entropy_interval_ms: options.anti_entropy_interval_ms ??
          DEFAULT_ANTI_ENTROPY_INTERVAL_MS,
      });
    }
    try {
      // The static nodes' links; a hint log that cannot be opened stops the start.
      await router.#reconcileOnce(true);
    } catch (e) {
      server.forceShutdown();
      agent?.stop();
      await router.#closeLinks();
      throw e;
    }
    server.addService(vectorDbService, router.handlers());
    if (agent !== null) {
      router.#follower = new RingFollower(agent, { vnodes_per_member: options.vnodes_per_member });
      // After the follower's own listener: every event (a static node seen dead included).
      agent.onChange((e) => {
        const role = e.member.meta.role === "router" ? "router" : "node";
        log(
          `${role} ${e.member.id} (${e.member.address}) ${e.type}, incarnation ` +
            `${e.member.incarnation}`,
        );
        router.#scheduleReconcile();
      });
      agent.start();
    }
    router.#timer = setInterval(() => router.#tickAll(), TICK_INTERVAL_MS);
    router.#tickAll();
    return router;
  }

  /**
   * Leaves the cluster (others see the router `left`), stops serving, lets replays finish
   * their current hint, closes hint logs and channels.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    await this.#rebalancer?.stop();
    if (this.agent !== null) {
      await this.agent.leave();
      this.#follower?.close();
      this.agent.stop();
    }
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, 5000);
      this.#server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    while (this.#background.size > 0) await Promise.allSettled([...this.#background]);
    await this.#closeLinks();
  }

  async #closeLinks(): Promise<void> {
    await Promise.allSettled([...this.#retiring.values()]);
    for (const l of this.#links.values()) {
      await l.hints.close();
      if (l.active || l.leaving_since_ms > 0) this.#closeChannels(l);
      l.active = false;
    }
  }

  /** Pending hints per node (for tests and logs), nodes off the ring included. */
  pendingHints(): Map<string, number> {
    return new Map([...this.#links].map(([a, l]) => [a, l.hints.pending]));
  }

  /** The rebalancing driver (gossip only), for tests. */
  get rebalancer(): Rebalancer | null {
    return this.#rebalancer;
  }

  /** Names of the collections `nodes` report (union; nodes that fail are skipped). */
  async #collectionNames(nodes: readonly string[]): Promise<string[]> {
    const settled = await Promise.allSettled(
      nodes.map((n) => this.#link(n).client.call("ListCollections", {})),
    );
    const names = new Set<string>();
    for (const s of settled) {
      if (s.status === "fulfilled") { for (const c of s.value.collections) names.add(c.name); }
    }
    return [...names].sort();
  }

  /** Waits until no write planned on a view other than `view` is in flight; false on timeout. */
  async #drainOlderWrites(view: RingView, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      let busy = false;
      for (const v of this.#writing) if (v !== view && v.writes > 0) busy = true;
      if (!busy) return true;
      if (Date.now() >= deadline || this.#stopping) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Runs a write planned on `view`, counting it in flight (see {@link #drainOlderWrites}). */
  async #counted<T>(view: RingView, fn: () => Promise<T>): Promise<T> {
    view.writes++;
    this.#writing.add(view);
    try {
      return await fn();
    } finally {
      if (--view.writes === 0) this.#writing.delete(view);
    }
  }

  // ----- the ring: static list or gossip -----

  #makeView(nodes: string[]): RingView {
    const ring = new HashRing({ members: nodes, vnodes_per_member: this.#vnodes });
    return { nodes, ring, shards: ringShards(ring, this.options.replication_factor), writes: 0 };
  }

  /** The current ring; UNAVAILABLE when it has no storage node (gossip not joined yet). */
  #routable(): RingView {
    const view = this.#view;
    if (view.nodes.length > 0) return view;
    throw new RouterStatusError(
      grpc.status.UNAVAILABLE,
      this.agent !== null
        ? `The router knows no storage node yet: gossip through ${this.join.join(",")} has ` +
          `not reported any`
        : "The router has no storage node",
    );
  }

  /** Runs {@link #reconcileOnce} in the background, one at a time, until nothing changed. */
  #scheduleReconcile(): void {
    if (this.#stopping) return;
    this.#reconcile_wanted = true;
    if (this.#reconciling) return;
    this.#reconciling = true;
    const run = (async () => {
      try {
        while (this.#reconcile_wanted && !this.#stopping) {
          this.#reconcile_wanted = false;
          await this.#reconcileOnce(false);
        }
      } finally {
        this.#reconciling = false;
      }
    })().catch((e) => this.#log(`ERROR updating the ring: ${(e as Error)?.stack ?? e}`))
      .finally(() => this.#background.delete(run));
    this.#background.add(run);
  }

  /**
   * Makes the ring equal to {@link ringNodes} of the static list and the gossip view: opens a
   * link (hint log and channel) for each node that appears, reopens the channel of one that
   * comes back, queues the collections the other nodes have for each node new to the ring,
   * then publishes the new ring and closes the channels of nodes that left it. A node off
   * the ring keeps its hint log (and its pending hints) until it returns. With `strict`, a
   * hint log that cannot be opened throws; otherwise the node stays off the ring and the
   * update is tried again a second later.
   */
  async #reconcileOnce(strict: boolean): Promise<void> {
    if (this.agent !== null) {
      for (const m of this.agent.members()) {
        if (m.meta.role === "node" && this.#static.has(m.address)) this.#seen.add(m.address);
      }
    }
    const target = ringNodes(this.options.nodes, this.#follower?.nodes() ?? [], this.#seen);
    const before = this.#view.nodes;
    const prev = new Set(before);
    const ready: string[] = [];
    for (const address of target) {
      let link = this.#links.get(address);
      if (link === undefined) {
        try {
          link = await this.#openLink(address);
        } catch (e) {
          if (strict) throw e;
          this.#log(
            `ERROR cannot open the hint log of node ${address}, leaving it off the ring: ` +
              `${(e as Error).message}`,
          );
          this.#reconcile_retry_ms = Date.now() + 1000;
          continue;
        }
        if (this.#stopping) {
          await link.hints.close();
          link.client.close();
          return;
        }
        this.#links.set(address, link);
      } else if (!link.active) {
        if (link.leaving_since_ms > 0) this.#closeChannels(link);
        link.client = this.#newClient(address);
        link.transfer = this.#newTransferClient(address);
        link.active = true;
      }
      ready.push(address);
    }
    // While a move is unsettled, nodes joining wait off the ring (rebalance.ts), for a while.
    const now_ms = Date.now();
    for (const a of this.#join_waiting.keys()) if (!ready.includes(a)) this.#join_waiting.delete(a);
    if (this.#rebalancer?.busy && prev.size > 0) {
      const waiting = ready.filter((a) => {
        if (prev.has(a)) return false;
        const since = this.#join_waiting.get(a) ?? now_ms;
        this.#join_waiting.set(a, since);
        return now_ms - since < JOIN_WAIT_MAX_MS;
      });
      if (waiting.length > 0) {
        ready.splice(0, ready.length, ...ready.filter((a) => !waiting.includes(a)));
        this.#reconcile_retry_ms = Date.now() + 500;
        if (ready.length === before.length) return;
      }
    }
    const joined = prev.size > 0 ? ready.filter((a) => !prev.has(a)) : [];
    if (joined.length > 0) await this.#copyCatalog(joined, ready.filter((a) => prev.has(a)));
    const next = new Set(ready);
    const removed = before.filter((a) => !next.has(a));
    const added = ready.filter((a) => !prev.has(a));
    if (removed.length + added.length === 0) return;
    for (const a of added) this.#join_waiting.delete(a);
    this.#view = this.#makeView(ready);
    this.#rebalancer?.changed(this.#view);
    const now = Date.now();
    const left = new Set(
      (this.agent?.members() ?? []).filter((m) => m.state === "left").map((m) => m.address),
    );
    for (const a of removed) {
      const l = this.#links.get(a);
      if (l === undefined || !l.active) continue;
      l.active = false;
      l.inactive_since_ms = now;
      if (left.has(a) && this.#rebalancer !== null) {
        // Left on purpose: it waits for its entries to be copied to their owners (hand-off),
        // so its channel stays open for the rebalancer to scan it.
        l.leaving_since_ms = now;
        this.#log(`node ${a} left the cluster; handing its entries off to their owners`);
      } else {
        this.#closeChannels(l);
      }
    }
    this.#log(
      `ring: ${ready.length} storage nodes [${ready.join(", ")}]` +
        (added.length > 0 ? `; added ${added.join(", ")}` : "") +
        (removed.length > 0
          ? `; removed ${removed.join(", ")} (hint queues kept until they return)`
          : ""),
    );
    if (ready.length < this.options.replication_factor) {
      this.#log(
        `WARNING ${ready.length} storage nodes on the ring, fewer than the replication factor ` +
          `${this.options.replication_factor}`,
      );
    }
  }

  /**
   * Queues, for each node new to the ring, a creation of every collection the nodes already
   * on it report (delivered before any write routed to the new node, through its hint
   * queue; a node that has the collection answers "created: false"). Points are NOT copied.
   */
  async #copyCatalog(joined: string[], sources: string[]): Promise<void> {
    const settled = await Promise.allSettled(
      sources.map((a) => this.#links.get(a)!.client.call("ListCollections", {})),
    );
    const byName = new Map<string, CollectionInfo>();
    for (const s of settled) {
      if (s.status !== "fulfilled") continue;
      for (const c of s.value.collections) if (!byName.has(c.name)) byName.set(c.name, c);
    }
    if (sources.length > 0 && settled.every((s) => s.status === "rejected")) {
      this.#log(
        `WARNING no node answered ListCollections; ${joined.join(", ")} will lack the ` +
          `collections created before it joined`,
      );
    }
    const records: WalRecord[] = [];
    for (const c of byName.values()) {
      try {
        const v = validateCreateCollectionRequest(c);
        records.push({
          kind: "create_collection",
          collection: v.name,
          dimension: v.dimension,
          metric: v.metric,
          m: v.m,
          ef_construction: v.ef_construction,
        });
      } catch (e) {
        this.#log(`WARNING not copying collection "${c.name}": ${(e as Error).message}`);
      }
    }
    if (records.length === 0) return;
    for (const a of joined) {
      const link = this.#links.get(a)!;
      let queued = 0;
      for (const r of records) {
        const res = await this.#enqueue(link, r, false);
        if (res.kind !== "rejected") queued++;
      }
      this.#log(`node ${a} joined the ring: queued ${queued} collection creations for it`);
    }
  }

  /** Closes a link's channels (it is off the ring and not leaving). */
  #closeChannels(link: NodeLink): void {
    link.leaving_since_ms = 0;
    link.client.close();
    link.transfer.close();
  }

  /** Nodes that left on purpose and still wait for their hand-off; expired ones are closed. */
  #leavers(): string[] {
    const now = Date.now();
    const out: string[] = [];
    for (const [a, l] of this.#links) {
      if (l.active || l.leaving_since_ms === 0) continue;
      if (now - l.leaving_since_ms > LEAVER_TTL_MS) {
        this.#log(`node ${a} left ${LEAVER_TTL_MS} ms ago; no longer waiting for its hand-off`);
        this.#closeChannels(l);
        continue;
      }
      out.push(a);
    }
    return out.sort();
  }

  #newClient(address: string): ApiClient {
    return new ApiClient(address, {
      timeout_ms: this.options.node_timeout_ms,
      client_options: {
        "grpc.initial_reconnect_backoff_ms": 200,
        "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_MAX_MS,
        "grpc.min_reconnect_backoff_ms": 100,
      },
    });
  }

  #newTransferClient(address: string): TransferClient {
    return new TransferClient(address, this.options.node_timeout_ms, {
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_MAX_MS,
      "grpc.min_reconnect_backoff_ms": 100,
    });
  }

  async #openLink(address: string): Promise<NodeLink> {
    await this.#retiring.get(address);
    const o = this.options;
    const hints = await HintLog.open(
      address,
      join(o.data_dir, "hints", sanitize(address)),
      { hints_max: o.hints_max, hint_bytes_max: o.hint_bytes_max, logger: this.#log },
    );
    return {
      address,
      client: this.#newClient(address),
      transfer: this.#newTransferClient(address),
      active: true,
      inactive_since_ms: 0,
      leaving_since_ms: 0,
      hints,
      handoff: new HintDelivery(address, {
        retry_interval_ms: o.retry_interval_ms,
        pending: hints.pending,
      }),
      refused: 0,
      discarded: 0,
      last_full_log_ms: 0,
      last_error: "",
    };
  }

  /** Closes the hint log of a node off the ring with nothing pending, after a grace period. */
  #retireIdle(now: number): void {
    for (const [address, link] of this.#links) {
      if (
        link.active || link.leaving_since_ms > 0 || link.hints.pending > 0 ||
        link.handoff.busy || now - link.inactive_since_ms < LINK_RETIRE_MS
      ) continue;
      this.#links.delete(address);
      const closing = link.hints.close()
        .catch((e) => this.#log(`ERROR closing the hint log of ${address}: ${e}`))
        .finally(() => {
          this.#retiring.delete(address);
          this.#background.delete(closing);
        });
      this.#retiring.set(address, closing);
      this.#background.add(closing);
    }
  }

  // ----- handlers -----

  /** The gRPC handlers. */
  handlers(): VectorDBHandlers {
    const unary = <K extends MethodName>(
      fn: (req: VectorDBMethods[K]["request"]) => Promise<VectorDBMethods[K]["response"]>,
    ): grpc.handleUnaryCall<VectorDBMethods[K]["request"], VectorDBMethods[K]["response"]> =>
    (call, callback) => {
      if (this.#stopping) {
        callback({ code: grpc.status.UNAVAILABLE, details: "The router is shutting down" });
        return;
      }
      fn(call.request).then(
        (res) => callback(null, res),
        (e) => {
          const s = toStatus(e);
          if (s.code === grpc.status.INTERNAL) {
            this.#log(`internal error: ${(e as Error)?.stack ?? e}`);
          }
          callback({ code: s.code, details: s.details });
        },
      );
    };
    return {
      Put: unary<"Put">((r) => this.#put(r)),
      PutBatch: unary<"PutBatch">((r) => this.#putBatch(r)),
      Get: unary<"Get">((r) => this.#get(r)),
      Delete: unary<"Delete">((r) => this.#delete(r)),
      Search: unary<"Search">((r) => this.#search(r)),
      CreateCollection: unary<"CreateCollection">((r) => this.#createCollection(r)),
      DropCollection: unary<"DropCollection">((r) => this.#dropCollection(r)),
      ListCollections: unary<"ListCollections">(() => this.#listCollections()),
      Stats: unary<"Stats">(() => this.#stats()),
      Members: unary<"Members">(() => Promise.resolve(this.#members())),
      Drain: unary<"Drain">(() =>
        Promise.reject(
          new RouterStatusError(
            grpc.status.FAILED_PRECONDITION,
            "Drain is answered by storage nodes, not the router: call the node's own address " +
              "(client --addr HOST:PORT drain)",
          ),
        )
      ),
    };
  }

  async #put(req: VectorDBMethods["Put"]["request"]): Promise<VectorDBMethods["Put"]["response"]> {
    const v = validatePutRequest(req);
    const view = this.#routable();
    return await this.#counted(view, () => this.#putOn(view, v));
  }

  async #putOn(
    view: RingView,
    v: ReturnType<typeof validatePutRequest>,
  ): Promise<VectorDBMethods["Put"]["response"]> {
    const consistency = v.consistency ?? this.options.consistency;
    const owners = view.ring.owners(v.id, this.options.replication_factor);
    const version = this.#stamp(v.version);
    const record: WalRecord = {
      kind: "put",
      collection: v.collection,
      id: v.id,
      vector: Float32Array.from(v.vector),
      version,
    };
    const request = { id: v.id, vector: v.vector, collection: v.collection, version };
    const results = await this.#write(owners, "Put", () => request, record);
    const acked = this.#ackedSet(results);
    const d = decideWrite(owners, acked, consistency, `the put of id ${v.id}`);
    if (!d.ok) this.#failWrite(results, d.message);
    const primary = results.get(owners[0]);
    return {
      ok: true,
      seq: primary?.kind === "acked" ? String(primary.response.seq ?? "0") : "0",
      replicas_acked: d.acked,
      version: String(version),
    };
  }

  async #putBatch(
    req: VectorDBMethods["PutBatch"]["request"],
  ): Promise<VectorDBMethods["PutBatch"]["response"]> {
    const v = validatePutBatchRequest(req);
    const view = this.#routable();
    return await this.#counted(view, () => this.#putBatchOn(view, v));
  }

  async #putBatchOn(
    view: RingView,
    v: ReturnType<typeof validatePutBatchRequest>,
  ): Promise<VectorDBMethods["PutBatch"]["response"]> {
    const consistency = v.consistency ?? this.options.consistency;
    const split = splitBatch(view.ring, this.options.replication_factor, v.points);
    const owners = [...split.per_owner.keys()];
    const dimension = v.points[0].vector.length;
    const version = this.#stamp(v.version);
    const results = await this.#write(
      owners,
      "PutBatch",
      (o) => ({ points: split.per_owner.get(o)!, collection: v.collection, version }),
      (o) => batchRecord(v.collection, dimension, split.per_owner.get(o)!, version),
    );
    const d = decideBatch(split.owner_sets, this.#ackedSet(results), consistency);
    if (!d.ok) this.#failWrite(results, d.message);
    const seqs = [...results.values()].map((r) => r.kind === "acked" ? r.response.seq : undefined);
    return { count: v.points.length, seq: maxSeq(seqs), version: String(version) };
  }

  async #delete(
    req: VectorDBMethods["Delete"]["request"],
  ): Promise<VectorDBMethods["Delete"]["response"]> {
    const v = validatePointRef(req);
    const view = this.#routable();
    return await this.#counted(view, () => this.#deleteOn(view, v));
  }

  async #deleteOn(
    view: RingView,
    v: ReturnType<typeof validatePointRef>,
  ): Promise<VectorDBMethods["Delete"]["response"]> {
    const consistency = v.consistency ?? this.options.consistency;
    const owners = view.ring.owners(v.id, this.options.replication_factor);
    const version = this.#stamp(v.version);
    const record: WalRecord = { kind: "delete", collection: v.collection, id: v.id, version };
    const request = { id: v.id, collection: v.collection, version };
    const results = await this.#write(owners, "Delete", () => request, record);
    // A node without the collection has nothing to delete: that is an acknowledgement.
    for (const [o, r] of results) {
      if (
        r.kind === "rejected" && isServiceError(r.error) && r.error.code === grpc.status.NOT_FOUND
      ) {
        if ([...results.values()].some((x) => x.kind === "acked")) {
          results.set(o, {
            kind: "acked",
            response: { deleted: false, seq: "0", version: String(version) },
          });
        }
      }
    }
    const d = decideWrite(owners, this.#ackedSet(results), consistency, `the delete of id ${v.id}`);
    if (!d.ok) this.#failWrite(results, d.message);
    let deleted = false;
    for (const r of results.values()) if (r.kind === "acked" && r.response.deleted) deleted = true;
    const primary = results.get(owners[0]);
    return {
      deleted,
      seq: primary?.kind === "acked" ? String(primary.response.seq ?? "0") : "0",
      version: String(version),
    };
  }

  /**
   * Asks every node that may hold the newest version of the point (its owners, and while a move
   * is unsettled its owners under the rings since the settled one) and answers with the highest
   * version; owners on the current ring that answered with an older one are repaired in the
   * background (read repair, a versioned copy: it can never overwrite anything newer).
   */
  async #get(req: VectorDBMethods["Get"]["request"]): Promise<VectorDBMethods["Get"]["response"]> {
    const v = validatePointRef(req);
    const view = this.#routable();
    const rf = this.options.replication_factor;
    const owners = view.ring.owners(v.id, rf);
    const askers = (this.#rebalancer?.readers(v.id) ?? owners).filter((a) => {
      const l = this.#links.get(a);
      return l !== undefined && l.active;
    });
    const settled = await Promise.allSettled(
      askers.map((a) => this.#link(a).client.call("Get", { id: v.id, collection: v.collection })),
    );
    let verdict: unknown = null;
    let notFound: unknown = null;
    const errors: string[] = [];
    const answers: ReadAnswer[] = [];
    const responses: VectorDBMethods["Get"]["response"][] = [];
    settled.forEach((s, i) => {
      const link = this.#link(askers[i]);
      if (s.status === "rejected") {
        this.#observe(link, s.reason);
        if (isTransient(s.reason)) errors.push(`${askers[i]}: ${describeGrpcError(s.reason)}`);
        else if (isServiceError(s.reason) && s.reason.code === grpc.status.NOT_FOUND) {
          // The node lacks the collection: it holds no version of the point.
          notFound ??= s.reason;
        } else verdict ??= s.reason;
        return;
      }
      this.#observe(link, null);
      answers.push({
        node: askers[i],
        version: Number(s.value.version ?? 0),
        found: s.value.found,
      });
      responses.push(s.value);
    });
    const pick = newestRead(answers, owners);
    if (pick.index < 0) {
      if (verdict !== null) throw verdict;
      if (notFound !== null) throw notFound;
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `None of the ${askers.length} nodes holding id ${v.id} answered: ${errors.join("; ")}`,
      );
    }
    const newest = responses[pick.index];
    if (pick.version > 0) this.#clock.observe(pick.version);
    if (pick.stale.length > 0) {
      this.#readRepair(v.collection, v.id, newest, pick.version, pick.stale);
    }
    return newest;
  }

  /** Sends the newest version of a point to owners that answered with an older one. */
  #readRepair(
    collection: string,
    id: number,
    newest: VectorDBMethods["Get"]["response"],
    version: number,
    owners: string[],
  ): void {
    for (const o of owners) {
      if (this.#repairs_in_flight >= READ_REPAIRS_MAX) return;
      const port = this.#transferPort(o);
      if (port === null) continue;
      this.#repairs_in_flight++;
      const entry: TransferEntry = {
        id,
        version,
        deleted: newest.deleted === true,
        vector: newest.found ? newest.vector : [],
      };
      const run = port.copy(collection, [entry]).then(
        () => {},
        (e) => this.#log(`WARNING read repair of id ${id} on ${o} failed: ${describeGrpcError(e)}`),
      ).finally(() => {
        this.#repairs_in_flight--;
        this.#background.delete(run);
      });
      this.#background.add(run);
    }
  }

  /** A write's version: the client's, observed, or a fresh stamp of the router's clock. */
  #stamp(given: number | undefined): number {
    if (given !== undefined && given > 0) {
      this.#clock.observe(given);
      return given;
    }
    return this.#clock.next();
  }

  /** The rebalancer's view of a node's Transfer service; null when off the ring. */
  #transferPort(address: string): TransferPort | null {
    const l = this.#links.get(address);
    if (l === undefined || (!l.active && l.leaving_since_ms === 0)) return null;
    const client = l.transfer;
    const missing = (e: unknown) => {
      if (isServiceError(e) && e.code === grpc.status.NOT_FOUND) {
        throw new MissingCollectionError(describeGrpcError(e));
      }
      throw e;
    };
    return {
      scan: async (collection, after_id, from_start, limit) => {
        const page = await client.call("Scan", { collection, after_id, from_start, limit })
          .catch(missing);
        return {
          entries: page.points.map((p) => ({
            id: p.id,
            version: p.version, // TransferClient already made it a number
            deleted: p.deleted === true,
            vector: p.vector,
          })),
          next_after_id: page.next_after_id,
          done: page.done,
        };
      },
      copy: async (collection, entries) => {
        const points = entries.map((e) => ({
          id: e.id,
          // An entry from before versions (0) travels as 1, the oldest: any real write wins.
          version: String(Math.max(1, e.version)),
          deleted: e.deleted,
          vector: e.deleted ? [] : Array.from(e.vector),
        }));
        const r = await client.call("CopyBatch", { collection, points }).catch(missing);
        return { applied: r.applied, skipped: r.skipped };
      },
      prune: async (collection, ids, versions) => {
        const r = await client.call("Prune", {
          collection,
          ids,
          versions: versions.map(String),
        }).catch(missing);
        return r.deleted;
      },
    };
  }

  async #search(
    req: VectorDBMethods["Search"]["request"],
  ): Promise<VectorDBMethods["Search"]["response"]> {
    const v = validateSearchRequest(req);
    const view = this.#routable();
    const down = new Set<string>();
    for (const [a, l] of this.#links) if (!l.handoff.reachable) down.add(a);
    const request = { vector: v.vector, k: v.k, ef: v.ef, collection: v.collection };
    const answered = new Set<string>();
    const asked = new Set<string>();
    const lists: SearchResult[][] = [];
    let verdict: unknown = null;
    let notFound: unknown = null;
    const errors: string[] = [];
    const round = async (targets: string[], wait_for_ready: boolean) => {
      for (const t of targets) asked.add(t);
      const settled = await Promise.allSettled(
        targets.map((t) =>
          wait_for_ready
            ? callWaitingForReady(this.#link(t).client, "Search", request, this.#retryTimeoutMs())
            : this.#link(t).client.call("Search", request)
        ),
      );
      settled.forEach((s, i) => {
        const link = this.#link(targets[i]);
        if (s.status === "fulfilled") {
          this.#observe(link, null);
          answered.add(targets[i]);
          lists.push(s.value.results);
          return;
        }
        this.#observe(link, s.reason);
        if (isTransient(s.reason)) {
          errors.push(`${targets[i]}: ${describeGrpcError(s.reason)}`);
        } else if (isServiceError(s.reason) && s.reason.code === grpc.status.NOT_FOUND) {
          // The node has no such collection: it answered, with nothing.
          answered.add(targets[i]);
          notFound ??= s.reason;
        } else {
          verdict ??= s.reason;
        }
      });
    };
    await round(searchTargets(view.nodes, view.shards, down), false);
    // A node believed down may be back while its channel still waits out its reconnect
    // backoff (up to 1 s); the second round waits for the channel, for a bounded time.
    const retry = searchRetryTargets(view.nodes, view.shards, answered, asked);
    if (retry.length > 0 && verdict === null) await round(retry, true);
    if (verdict !== null) throw verdict;
    if (lists.length === 0) {
      if (notFound !== null) throw notFound;
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `No storage node answered the search (${asked.size} asked): ${errors.join("; ")}`,
      );
    }
    const results = mergeSearchResults(lists, v.k);
    const coverage = searchCoverage(view.shards, answered);
    return { results, ...coverage };
  }

  async #createCollection(
    req: VectorDBMethods["CreateCollection"]["request"],
  ): Promise<VectorDBMethods["CreateCollection"]["response"]> {
    const v = validateCreateCollectionRequest(req);
    const nodes = this.#routable().nodes;
    const record: WalRecord = {
      kind: "create_collection",
      collection: v.name,
      dimension: v.dimension,
      metric: v.metric,
      m: v.m,
      ef_construction: v.ef_construction,
    };
    const results = await this.#write(nodes, "CreateCollection", () => v, record);
    const d = decideWrite(
      nodes,
      this.#ackedSet(results),
      this.options.consistency,
      `the creation of collection "${v.name}"`,
    );
    if (!d.ok) this.#failWrite(results, d.message);
    let created = false;
    let collection: CollectionInfo | null = null;
    for (const r of results.values()) {
      if (r.kind !== "acked") continue;
      created ||= r.response.created;
      collection ??= r.response.collection ?? null;
    }
    return { created, collection };
  }

  async #dropCollection(
    req: VectorDBMethods["DropCollection"]["request"],
  ): Promise<VectorDBMethods["DropCollection"]["response"]> {
    const name = validateCollectionName(req.name, "name");
    const nodes = this.#routable().nodes;
    const record: WalRecord = { kind: "drop_collection", collection: name };
    const results = await this.#write(nodes, "DropCollection", () => ({ name }), record);
    let dropped = false;
    let anyAck = false;
    for (const r of results.values()) {
      if (r.kind === "acked") {
        anyAck = true;
        dropped ||= r.response.dropped;
      }
    }
    // A node without the collection has nothing to drop: an acknowledgement, unless none had it.
    for (const [o, r] of results) {
      if (
        anyAck && r.kind === "rejected" && isServiceError(r.error) &&
        r.error.code === grpc.status.NOT_FOUND
      ) {
        results.set(o, { kind: "acked", response: { dropped: false } });
      }
    }
    const d = decideWrite(
      nodes,
      this.#ackedSet(results),
      this.options.consistency,
      `the drop of collection "${name}"`,
    );
    if (!d.ok) this.#failWrite(results, d.message);
    return { dropped };
  }

  async #listCollections(): Promise<VectorDBMethods["ListCollections"]["response"]> {
    const nodes = this.#routable().nodes;
    const settled = await Promise.allSettled(
      nodes.map((n) => this.#link(n).client.call("ListCollections", {})),
    );
    const byName = new Map<string, CollectionInfo>();
    const errors: string[] = [];
    settled.forEach((s, i) => {
      const link = this.#link(nodes[i]);
      if (s.status === "rejected") {
        this.#observe(link, s.reason);
        errors.push(`${nodes[i]}: ${describeGrpcError(s.reason)}`);
        return;
      }
      this.#observe(link, null);
      for (const c of s.value.collections) if (!byName.has(c.name)) byName.set(c.name, c);
    });
    if (errors.length === nodes.length) {
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `No storage node answered ListCollections: ${errors.join("; ")}`,
      );
    }
    const collections = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { collections };
  }

  async #stats(): Promise<VectorDBMethods["Stats"]["response"]> {
    const nodes = this.#view.nodes;
    const settled = await Promise.allSettled(
      nodes.map((n) => this.#link(n).client.call("Stats", {})),
    );
    const sums = new Map<string, CollectionStats>();
    const per: (NodeStats & { hints_pending: string; hints_refused: string })[] = [];
    settled.forEach((s, i) => {
      const link = this.#link(nodes[i]);
      const hints = {
        hints_pending: String(link.hints.pending),
        hints_refused: String(link.refused),
      };
      if (s.status === "rejected") {
        this.#observe(link, s.reason);
        per.push({
          node_id: "",
          address: nodes[i],
          collections: [],
          uptime_ms: 0,
          rss_bytes: 0,
          heap_used_bytes: 0,
          error: describeGrpcError(s.reason),
          ...hints,
        });
        return;
      }
      this.#observe(link, null);
      const r = s.value;
      per.push({
        node_id: r.node_id,
        address: nodes[i],
        collections: r.collections,
        uptime_ms: r.uptime_ms,
        rss_bytes: r.rss_bytes,
        heap_used_bytes: r.heap_used_bytes,
        error: "",
        ...hints,
      });
      for (const c of r.collections) {
        const sum = sums.get(c.name);
        if (sum === undefined) {
          sums.set(c.name, { ...c });
          continue;
        }
        sum.count = (BigInt(sum.count) + BigInt(c.count)).toString();
        sum.memory_bytes = (BigInt(sum.memory_bytes) + BigInt(c.memory_bytes)).toString();
        sum.wal_bytes = (BigInt(sum.wal_bytes) + BigInt(c.wal_bytes)).toString();
        sum.last_snapshot_seq = maxSeq([sum.last_snapshot_seq, c.last_snapshot_seq]);
        sum.last_snapshot_time_ms = maxSeq([sum.last_snapshot_time_ms, c.last_snapshot_time_ms]);
      }
    });
    // Nodes off the ring whose hints wait for them to come back.
    for (const [address, link] of this.#links) {
      if (link.active || link.hints.pending === 0) continue;
      per.push({
        node_id: "",
        address,
        collections: [],
        uptime_ms: 0,
        rss_bytes: 0,
        heap_used_bytes: 0,
        error: "not on the ring (dead or left); its hints wait for it to come back",
        hints_pending: String(link.hints.pending),
        hints_refused: String(link.refused),
      });
    }
    const mem = process.memoryUsage();
    return {
      node_id: this.agent?.id ?? `router@${this.address}`,
      collections: [...sums.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
      uptime_ms: Date.now() - this.#started_ms,
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      version: ROUTER_VERSION,
      is_router: true,
      nodes: per,
      ...this.#rebalanceStats(),
    };
  }

  #rebalanceStats() {
    const s = this.#rebalancer?.stats;
    return {
      rebalancing: s?.rebalancing ?? false,
      transfers_active: s?.transfers_active ?? 0,
      transfers_pending: s?.transfers_pending ?? 0,
      transfers_done: String(s?.transfers_done ?? 0),
      transfers_failed: String(s?.transfers_failed ?? 0),
      points_scanned: String(s?.points_scanned ?? 0),
      points_copied: String(s?.points_copied ?? 0),
      points_pruned: String(s?.points_pruned ?? 0),
      // With versions every copy is safe, so no point is ever left unresolved.
      points_unresolved: "0",
      rebalances_done: String(s?.rebalances_done ?? 0),
    };
  }

  /**
   * With gossip: the agent's view (every member with its state and incarnation, routers
   * flagged). Without: the ring's nodes, alive or dead as the router last reached them, and
   * the router itself.
   */
  #members(): VectorDBMethods["Members"]["response"] {
    if (this.agent !== null) {
      const members = this.agent.members().map((m) => ({
        id: m.id,
        address: m.address,
        state: m.state,
        incarnation: m.incarnation,
        is_router: m.meta.role === "router",
      }));
      return { members, self_id: this.agent.id };
    }
    const members = this.#view.nodes.map((address) => ({
      id: address,
      address,
      state: this.#link(address).handoff.reachable ? "alive" : "dead",
      incarnation: 0,
      is_router: false,
    }));
    const self = `router@${this.address}`;
    members.push({
      id: self,
      address: this.address,
      state: "alive",
      incarnation: 0,
      is_router: true,
    });
    members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { members, self_id: self };
  }

  // ----- writes -----

  /**
   * Sends a write to every owner (or its hint queue) and waits for all of them to settle;
   * then durably hints the owners that were unreachable, when some owner acknowledged.
   */
  async #write<K extends MethodName>(
    owners: readonly string[],
    method: K,
    requestFor: (owner: string) => VectorDBMethods[K]["request"],
    record: WalRecord | ((owner: string) => WalRecord),
  ): Promise<Map<string, OwnerResult<VectorDBMethods[K]["response"]>>> {
    const recordFor = typeof record === "function" ? record : () => record;
    const settled = await Promise.all(owners.map(async (o) => {
      const link = this.#link(o);
      if (link.handoff.route() === "queue") {
        return await this.#enqueue(link, recordFor(o), true) as OwnerResult<
          VectorDBMethods[K]["response"]
        >;
      }
      try {
        const request = requestFor(o);
        const response = await link.client.call(method, request, {
          timeout_ms: writeTimeoutMs(this.options.node_timeout_ms, request),
        });
        this.#observe(link, null);
        return { kind: "acked", response } as const;
      } catch (e) {
        this.#observe(link, e);
        if (isTransient(e)) return { kind: "unreached", error: e } as const;
        return { kind: "rejected", error: e } as const;
      }
    }));
    const results = new Map<string, OwnerResult<VectorDBMethods[K]["response"]>>();
    owners.forEach((o, i) => results.set(o, settled[i]));
    const reached = settled.some((r) => r.kind === "acked" || r.kind === "queued");
    if (reached) {
      const late = owners.filter((o) => results.get(o)!.kind === "unreached");
      const hinted = await Promise.all(late.map((o) => {
        this.#log(
          `${method} to ${o} failed (${
            describeGrpcError((results.get(o) as { error: unknown }).error)
          }); queuing a hint`,
        );
        return this.#enqueue(this.#link(o), recordFor(o), false);
      }));
      late.forEach((o, i) => results.set(o, hinted[i] as OwnerResult<never>));
    }
    // An owner that neither has the write nor a durable hint of it would miss it for good: such
    // a write is never acknowledged, whatever the consistency level.
    for (const [o, r] of results) {
      if (r.kind !== "rejected" || isServiceError(r.error)) continue;
      const acked = [...results.values()].filter((x) => x.kind === "acked").length;
      const why = `${method} reached ${acked} of ${owners.length} owners but could not be ` +
        `queued for ${o}: ${(r.error as Error).message}`;
      throw new RouterStatusError(
        r.error instanceof HintQueueFullError
          ? grpc.status.RESOURCE_EXHAUSTED
          : grpc.status.UNAVAILABLE,
        why,
      );
    }
    return results;
  }

  /**
   * Appends a hint for `link`; with `wait`, waits up to the node timeout for its delivery when
   * the node is reachable. Returns "acked" only when the hint was delivered in that time.
   */
  async #enqueue(
    link: NodeLink,
    record: WalRecord,
    wait: boolean,
  ): Promise<OwnerResult<{ seq?: string }>> {
    let hint: Hint;
    try {
      const before = link.hints.pending;
      const appended = link.hints.append(record);
      // A refused append (queue full) is not queued; an accepted one is, at once, in order.
      const queued = link.hints.pending === before + 1;
      if (queued) link.handoff.receive({ type: "enqueued", count: 1 }, Date.now());
      hint = await appended.catch((e) => {
        // The hint WAL failed; the hint log dropped the entry again.
        if (queued) link.handoff.receive({ type: "removed", count: 1 }, Date.now());
        throw e;
      });
    } catch (e) {
      if (e instanceof HintQueueFullError) {
        link.refused++;
        const now = Date.now();
        if (now - link.last_full_log_ms >= FULL_LOG_INTERVAL_MS) {
          link.last_full_log_ms = now;
          this.#log(
            `ERROR ${e.message}; ${link.refused} writes refused so far. The node must come back ` +
              `(or be repaired) before writes it owns can succeed again`,
          );
        }
      } else {
        this.#log(`ERROR cannot store a hint for ${link.address}: ${(e as Error).message}`);
      }
      return { kind: "rejected", error: e };
    }
    this.#tick(link);
    if (wait && link.active && link.handoff.waitForDelivery()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const delivered = await Promise.race([
        hint.delivery,
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), this.options.node_timeout_ms);
        }),
      ]);
      clearTimeout(timer);
      if (delivered) return { kind: "acked", response: {} };
    }
    return { kind: "queued" };
  }

  #ackedSet(results: Map<string, OwnerResult<unknown>>): Set<string> {
    const acked = new Set<string>();
    for (const [o, r] of results) if (r.kind === "acked") acked.add(o);
    return acked;
  }

  /** Throws the error a failed write reports: a node's verdict if any, else UNAVAILABLE. */
  #failWrite(results: Map<string, OwnerResult<unknown>>, message: string): never {
    for (const r of results.values()) {
      if (r.kind === "rejected" && isServiceError(r.error)) throw r.error;
    }
    const reasons = [...results]
      .filter(([, r]) => r.kind === "unreached" || r.kind === "queued")
      .map(([o, r]) =>
        r.kind === "unreached" ? `${o}: ${describeGrpcError(r.error)}` : `${o}: hint queued`
      );
    throw new RouterStatusError(
      grpc.status.UNAVAILABLE,
      reasons.length > 0 ? `${message} (${reasons.join("; ")})` : message,
    );
  }

  /** Deadline of a call that waits for a reconnecting channel: the reconnect backoff cap. */
  #retryTimeoutMs(): number {
    return Math.min(this.options.node_timeout_ms, RECONNECT_BACKOFF_MAX_MS + 200);
  }

  #link(address: string): NodeLink {
    const l = this.#links.get(address);
    if (l === undefined) {
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `Node ${address} is no longer one of the router's nodes`,
      );
    }
    return l;
  }

  /** Records the outcome of a direct call for the node's reachability. */
  #observe(link: NodeLink, error: unknown): void {
    const ok = error === null || !isTransient(error);
    const was = link.handoff.reachable;
    link.handoff.receive({ type: "direct_result", ok }, Date.now());
    if (was && !ok) {
      link.last_error = describeGrpcError(error);
      this.#log(`node ${link.address} is unreachable: ${link.last_error}`);
    } else if (!was && ok) {
      this.#log(`node ${link.address} is reachable again`);
    }
  }

  // ----- background: replay and probes -----

  #tickAll(): void {
    const now = Date.now();
    for (const link of this.#links.values()) this.#tick(link);
    this.#retireIdle(now);
    if (this.#reconcile_retry_ms !== 0 && now >= this.#reconcile_retry_ms) {
      this.#reconcile_retry_ms = 0;
      this.#scheduleReconcile();
    }
  }

  /** Ticks a node's handoff state; nodes off the ring wait (their channel is closed). */
  #tick(link: NodeLink): void {
    if (this.#stopping || !link.active) return;
    const action = link.handoff.tick(Date.now());
    if (action === "none") return;
    const run = action === "replay" ? this.#replay(link) : this.#probe(link);
    const tracked = run.catch((e) => this.#log(`ERROR ${action} of ${link.address}: ${e}`))
      .finally(() => this.#background.delete(tracked));
    this.#background.add(tracked);
  }

  async #probe(link: NodeLink): Promise<void> {
    let ok = false;
    try {
      await link.client.call("ListCollections", {}, {
        timeout_ms: Math.min(this.options.node_timeout_ms, this.options.retry_interval_ms),
      });
      ok = true;
    } catch (e) {
      ok = !isTransient(e);
    }
    if (ok) this.#log(`node ${link.address} is reachable again`);
    link.handoff.receive({ type: "probe_result", ok }, Date.now());
  }

  async #replay(link: NodeLink): Promise<void> {
    const wasReachable = link.handoff.reachable;
    let ok = true;
    let delivered = 0;
    try {
      while (!this.#stopping) {
        const batch = link.hints.peek(REPLAY_BATCH);
        if (batch.length === 0) break;
        for (const hint of batch) {
          const outcome = await this.#deliver(link, hint);
          if (outcome === "retry") {
            ok = false;
            break;
          }
          link.hints.markDelivered(hint.seq, outcome === "delivered");
          delivered++;
        }
        const removed = await link.hints.commit();
        link.handoff.receive({ type: "removed", count: removed }, Date.now());
        if (!ok) break;
      }
    } catch (e) {
      ok = false;
      this.#log(`ERROR replaying hints to ${link.address}: ${(e as Error)?.stack ?? e}`);
    } finally {
      link.handoff.receive({ type: "replay_stopped", ok }, Date.now());
    }
    if (delivered > 0) {
      this.#log(
        `replayed ${delivered} hints to ${link.address}; ${link.hints.pending} still pending`,
      );
    } else if (!ok && wasReachable) {
      this.#log(
        `node ${link.address} did not take hints; retrying every ` +
          `${this.options.retry_interval_ms} ms`,
      );
    }
    // More may have been queued while the last commit ran. Only after progress: hints still
    // being made durable are pending but not yet peekable, and re-ticking on them at once
    // would recurse without end (their append, or the 100 ms tick, starts the next replay).
    if (ok && delivered > 0 && link.hints.pending > 0) this.#tick(link);
  }

  /** Sends one hint; "retry" when the node is unavailable. */
  async #deliver(link: NodeLink, hint: Hint): Promise<"delivered" | "discarded" | "retry"> {
    const r = decodeRecord(hint.type, hint.payload);
    try {
      switch (r.kind) {
        case "put":
          await link.client.call("Put", {
            id: r.id,
            vector: Array.from(r.vector),
            collection: r.collection,
            version: String(r.version),
          });
          break;
        case "delete":
          await link.client.call("Delete", {
            id: r.id,
            collection: r.collection,
            version: String(r.version),
          });
          break;
        case "put_batch": {
          // The router stamps one version per batch; a batch with several goes point by point.
          const version = r.versions.length > 0 ? r.versions[0] : 0;
          if (r.versions.some((x) => x !== version)) {
            for (let i = 0; i < r.ids.length; i++) {
              await link.client.call("Put", {
                id: r.ids[i],
                vector: Array.from(r.vectors.subarray(i * r.dimension, (i + 1) * r.dimension)),
                collection: r.collection,
                version: String(r.versions[i]),
              });
            }
            break;
          }
          const points: Point[] = [];
          for (let i = 0; i < r.ids.length; i++) {
            points.push({
              id: r.ids[i],
              vector: Array.from(r.vectors.subarray(i * r.dimension, (i + 1) * r.dimension)),
            });
          }
          await link.client.call("PutBatch", {
            points,
            collection: r.collection,
            version: String(version),
          }, {
            timeout_ms: writeTimeoutMs(this.options.node_timeout_ms, { points }),
          });
          break;
        }
        case "create_collection":
          await link.client.call("CreateCollection", {
            name: r.collection,
            dimension: r.dimension,
            metric: r.metric,
            m: r.m,
            ef_construction: r.ef_construction,
          });
          break;
        case "drop_collection":
          await link.client.call("DropCollection", { name: r.collection });
          break;
      }
      return "delivered";
    } catch (e) {
      if (isTransient(e)) return "retry";
      const benign = isServiceError(e) && e.code === grpc.status.NOT_FOUND &&
        (r.kind === "delete" || r.kind === "drop_collection");
      if (!benign) {
        link.discarded++;
        this.#log(
          `WARNING hint ${hint.seq} (${r.kind} in "${r.collection}") for ${link.address} was ` +
            `rejected and is discarded: ${describeGrpcError(e)}`,
        );
      }
      return benign ? "delivered" : "discarded";
    }
  }
}

/**
 * Deadline of one write to a node. A batch costs the node an index insert per point (about a
 * millisecond each on a busy 2-core machine), so a fixed node timeout that suits single puts
 * would fail every large batch: each point adds {@link BATCH_POINT_TIMEOUT_MS}.
 */
export const BATCH_POINT_TIMEOUT_MS = 5;
export function writeTimeoutMs(base_ms: number, request: unknown): number {
  const points = (request as { points?: unknown[] })?.points;
  return base_ms + (Array.isArray(points) ? points.length * BATCH_POINT_TIMEOUT_MS : 0);
}

/** Like `ApiClient.call`, but the call waits for the channel to connect (up to the deadline). */
function callWaitingForReady<K extends MethodName>(
  client: ApiClient,
  method: K,
  request: VectorDBMethods[K]["request"],
  timeout_ms: number,
): Promise<VectorDBMethods[K]["response"]> {
  const fn = client.raw[method] as unknown as UnaryMethod<
    VectorDBMethods[K]["request"],
    VectorDBMethods[K]["response"]
  >;
  return new Promise((resolve, reject) => {
    fn.call(
      client.raw,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeout_ms, waitForReady: true },
      (error, response) => {
        if (error) reject(error);
        else if (response === undefined) reject(new Error(`${method} returned no response`));
        else resolve(response);
      },
    );
  });
}

function batchRecord(
  collection: string,
  dimension: number,
  points: readonly Point[],
  version: number,
): WalRecord {
  const ids = new Uint32Array(points.length);
  const vectors = new Float32Array(points.length * dimension);
  points.forEach((p, i) => {
    ids[i] = p.id;
    vectors.set(p.vector, i * dimension);
  });
  const versions = new Float64Array(points.length).fill(version);
  return { kind: "put_batch", collection, dimension, ids, vectors, versions };
}
