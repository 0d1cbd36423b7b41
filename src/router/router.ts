/**
 * The router process's lifecycle: binds the gRPC port, builds the {@link RouterCore} over real
 * channels ({@link GrpcNodeLinks}), the real clock and hint logs on disk, joins gossip when asked,
 * follows the ring, runs the 100 ms tick, wires rebalancing, and stops in order. Decisions live
 * in the core (core.ts and the files its table names); this file only does IO and wiring.
 *
 * Membership. Static (`nodes` only): the ring is the given addresses, fixed. Gossip (`join`):
 * the router is a gossip member with role "router" (it owns no ring positions) and its ring
 * follows the storage nodes that gossip reports alive or suspect ({@link RingFollower}); a
 * static node (`nodes` given too) stays on the ring until gossip reports it in some state, so a
 * partial view while joining does not shrink the ring (plan.ts `ringNodes`). Ring member ids
 * are ALWAYS the nodes' addresses (host:port as advertised), never their gossip ids: a router
 * switching from its static list to gossip, or a static router next to a gossiping one, then
 * places every point on the same nodes, and hint queues (`hints/<address>/`) are found again
 * whichever way the router was started. With gossip, entries move when the ring changes
 * (rebalance/rebalancer.ts); Stats reports the progress. The data directory is locked for the
 * router's lifetime (io/dir_lock.ts): a second router on it fails to start, naming the first.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { join } from "node:path";
import process from "node:process";
import { describeGrpcError } from "../api/client.ts";
import { CHANNEL_OPTIONS, type VectorDBMethods, vectorDbService } from "../api/proto.ts";
import { UnaryGuard } from "../api/unary.ts";
import { ServerHealth } from "../api/health.ts";
import { HttpApi } from "../api/http.ts";
import { type ServerMetrics, serverMetrics } from "../api/server_metrics.ts";
import { addGossipMetrics } from "../cluster/gossip_metrics.ts";
import { addRouterMetrics } from "./metrics.ts";
import { addReflection, REFLECTED_SERVICES } from "../api/reflection.ts";
import { channelSetup, SecurityConfig } from "../api/security.ts";
import type { Consistency } from "../common/limits.ts";
import { GossipAgent, RingFollower } from "../cluster/gossip_agent.ts";
import { addGossipService, GrpcGossipTransport } from "../cluster/gossip_transport.ts";
import { acquireDirLock, type DirLock } from "../io/dir_lock.ts";
import { SOFTWARE_VERSION } from "../common/software_version.ts";
import { RouterCore } from "./core.ts";
import { HintLog } from "./hints/hint_log.ts";
import { SYSTEM_CLOCK } from "./node_port.ts";
import { GrpcNodeLinks, RECONNECT_BACKOFF_MAX_MS } from "./node_links.ts";
import { ringNodes } from "./plan.ts";
import { Rebalancer } from "./rebalance/rebalancer.ts";
import { retryTimeoutMs, type SearchOptions } from "./scatter.ts";
import { ROUTER_IN_FLIGHT_MAX, routerHandlers, toStatus } from "./service.ts";
import { RecallMonitor } from "./recall_monitor.ts";

/** Software version reported by Stats (package.json's, through src/common). */
export const ROUTER_VERSION = SOFTWARE_VERSION;
/** Period of the background loop that ticks every node's hint delivery. */
export const TICK_INTERVAL_MS = 100;
/** Default period of anti-entropy runs (gossip mode). */
export const DEFAULT_ANTI_ENTROPY_INTERVAL_MS = 10 * 60_000;
/** Default share of searches the recall monitor samples (`--recall-sample-rate`). */
export const DEFAULT_RECALL_SAMPLE_RATE = 0.01;
/** Default recall@k under which the monitor warns (`--recall-warn-below`). */
export const DEFAULT_RECALL_WARN_BELOW = 0.9;

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
  /** Rebalancing: bandwidth of shard files moved (bytes/s, 0 no limit); default 128 MiB/s. */
  transfer_bytes_per_s?: number;
  /** Rebalancing: ring stability before transfers start; default 500 ms. */
  rebalance_delay_ms?: number;
  /**
   * Gossip only: an anti-entropy run (every node's entries to all their owners) this long after
   * the last settled one; default {@link DEFAULT_ANTI_ENTROPY_INTERVAL_MS}, 0 never.
   */
  anti_entropy_interval_ms?: number;
  /**
   * Gossip only: a node declared dead has its ranges re-replicated this long after, unless it
   * returns first (a restart); default {@link DEFAULT_DEAD_GRACE_MS}, 0 at once.
   */
  dead_grace_ms?: number;
  /**
   * Authentication and TLS (api/security.ts): API keys for clients, the cluster secret's proof
   * on calls to nodes and gossip, TLS credentials. Default {@link SecurityConfig.insecure}.
   */
  security?: SecurityConfig;
  /** Most client calls served at once; default {@link ROUTER_IN_FLIGHT_MAX}. */
  in_flight_max?: number;
  /** Port of the HTTP/JSON API (api/http.ts) on `host`; 0 or absent: none. */
  http_port?: number;
  /**
   * Collect Prometheus metrics, served at `GET /metrics` on the HTTP port (router/metrics.ts).
   * Default false (main.ts's `--metrics` defaults to true).
   */
  metrics?: boolean;
  /** Recall monitor (recall_monitor.ts): share of searches sampled (0 off; default 0.01). */
  recall_sample_rate?: number;
  /** Recall monitor: warn when a collection's rolling recall@k is below this (default 0.9). */
  recall_warn_below?: number;
  /** Search replica selection and hedging (scatter.ts `SearchOptions`; `--search-*` flags). */
  search?: Partial<SearchOptions>;
  logger?: (message: string) => void;
}

function sanitize(address: string): string {
  return address.replace(/[^A-Za-z0-9_.-]/g, "_");
}

const HOST_PORT = /^[^\s:]+:\d{1,5}$/;

/** The checked, defaulted options. */
export interface RouterConfig {
  host: string;
  port: number;
  nodes: string[];
  join: string[];
  replication_factor: number;
  consistency: Consistency;
  node_timeout_ms: number;
  data_dir: string;
  hints_max: number;
  hint_bytes_max: number;
  retry_interval_ms: number;
}

/** Checks and defaults {@link RouterOptions}; throws RangeError naming the bad value. */
export function routerConfig(
  options: RouterOptions,
  log: (message: string) => void,
): RouterConfig {
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
  return {
    host: options.host ?? "127.0.0.1",
    port: options.port,
    nodes,
    join,
    replication_factor: join.length === 0 ? Math.min(rf, nodes.length) : rf,
    consistency: options.consistency,
    node_timeout_ms: options.node_timeout_ms,
    data_dir: options.data_dir,
    hints_max: options.hints_max ?? 100_000,
    hint_bytes_max: options.hint_bytes_max ?? 256 * 2 ** 20,
    retry_interval_ms: options.retry_interval_ms ?? 500,
  };
}

/** The router process. Create with {@link Router.start}. */
export class Router {
  readonly address: string;
  readonly config: RouterConfig;
  /** The router's gossip membership, when it joined a cluster (`join`); else null. */
  readonly agent: GossipAgent | null;
  readonly core: RouterCore;
  readonly #server: grpc.Server;
  /** grpc.health.v1.Health's statuses: SERVING from the end of start() until stop() begins. */
  readonly health: ServerHealth;
  readonly #links: GrpcNodeLinks;
  readonly #log: (message: string) => void;
  readonly #started_ms = Date.now();
  readonly #static: ReadonlySet<string>;
  /** Static node addresses gossip has reported (from then on gossip decides for them). */
  readonly #seen = new Set<string>();
  #follower: RingFollower | null = null;
  /** Moves points when the ring changes (gossip only); null in static mode. */
  #rebalancer: Rebalancer | null = null;
  #reconcile_wanted = false;
  #reconciling = false;
  /** When a ring update is tried again (0: none due). */
  #reconcile_retry_ms = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  #stopping = false;
  /** The HTTP/JSON API, when `http_port` was given. */
  #http: HttpApi | null = null;
  /** The HTTP API's bound port; 0 when it is off. */
  http_port = 0;
  /** The data directory's lock, released by {@link stop}. */
  #lock: DirLock | null = null;

  private constructor(
    address: string,
    config: RouterConfig,
    server: grpc.Server,
    health: ServerHealth,
    agent: GossipAgent | null,
    options: RouterOptions,
    log: (message: string) => void,
  ) {
    this.address = address;
    this.config = config;
    this.#server = server;
    this.health = health;
    this.agent = agent;
    this.#log = log;
    this.#static = new Set(config.nodes);
    this.#links = new GrpcNodeLinks(
      config.node_timeout_ms,
      (options.security ?? SecurityConfig.insecure()).peers,
    );
    this.core = new RouterCore({
      nodes: this.#links,
      clock: SYSTEM_CLOCK,
      openHints: (a) =>
        HintLog.open(a, join(config.data_dir, "hints", sanitize(a)), {
          hints_max: config.hints_max,
          hint_bytes_max: config.hint_bytes_max,
          logger: log,
        }),
      log,
      replication_factor: config.replication_factor,
      consistency: config.consistency,
      node_timeout_ms: config.node_timeout_ms,
      retry_interval_ms: config.retry_interval_ms,
      retry_timeout_ms: retryTimeoutMs(config.node_timeout_ms, RECONNECT_BACKOFF_MAX_MS),
      vnodes_per_member: options.vnodes_per_member,
      search: options.search,
      no_nodes_message: agent !== null
        ? `The router knows no storage node yet: gossip through ${config.join.join(",")} has ` +
          `not reported any`
        : undefined,
    });
    const core = this.core;
    core.recall = new RecallMonitor({
      sample_rate: options.recall_sample_rate ?? DEFAULT_RECALL_SAMPLE_RATE,
      warn_below: options.recall_warn_below ?? DEFAULT_RECALL_WARN_BELOW,
    }, {
      exact: (s) => core.exactIds(s),
      random: Math.random,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      warn: (m) => log(`WARNING ${m}`),
    });
  }

  /** The current ring's shards (cluster/ring_shards.ts). */
  get shards(): string[][] {
    return this.core.view.shards;
  }

  /** Pending hints per node, nodes off the ring included. */
  pendingHints(): Map<string, number> {
    return this.core.pendingHints();
  }

  /**
   * Binds the port, opens the hint logs of the static nodes, joins gossip when `join` is
   * given, and starts the background loop.
   */
  static async start(options: RouterOptions): Promise<Router> {
    const log = options.logger ?? ((m: string) => console.error(m));
    const config = routerConfig(options, log);
    // One router per data directory (its hint logs): a second one stops here, naming the first.
    const lock = await acquireDirLock(config.data_dir, { logger: log });
    try {
      const router = await Router.#startLocked(options, config, log);
      router.#lock = lock;
      return router;
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  static async #startLocked(
    options: RouterOptions,
    config: RouterConfig,
    log: (message: string) => void,
  ): Promise<Router> {
    const security = options.security ?? SecurityConfig.insecure(log);
    const server = new grpc.Server(security.serverOptions(CHANNEL_OPTIONS));
    // Before the bind: health answers NOT_SERVING until the first ring reconcile is done.
    const gossip = config.join.length > 0;
    const health = new ServerHealth(
      gossip ? ["vectordb.VectorDB", "vectordb.internal.Gossip"] : ["vectordb.VectorDB"],
    );
    health.addToServer(server);
    addReflection(server, gossip ? REFLECTED_SERVICES.router_gossip : REFLECTED_SERVICES.router);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(
        `${config.host}:${config.port}`,
        security.server_credentials,
        (err, bound) => (err ? reject(err) : resolve(bound)),
      );
    });
    const address = `${config.host}:${port}`;
    let agent: GossipAgent | null = null;
    if (config.join.length > 0) {
      const advertise = options.advertise ?? address;
      agent = new GossipAgent({
        id: options.node_id ?? `router@${advertise}`,
        address: advertise,
        role: "router",
        seeds: config.join,
        transport: new GrpcGossipTransport({
          channel_setup: (address) => channelSetup(security.peers, address),
          interceptors: security.peers.interceptors,
        }),
        logger: log,
      });
      addGossipService(server, agent);
    }
    const router = new Router(address, { ...config, port }, server, health, agent, options, log);
    const core = router.core;
    if (agent !== null) {
      const rebalancer = new Rebalancer({
        log,
        transfer: (a) => core.transfer(a),
        digest: (a) => core.digest(a),
        sources: () => core.leavers(),
        handedOff: (nodes) => core.handedOff(nodes),
        collections: (nodes) => core.scatter.collectionNames(nodes),
        layout: (collection) => core.layout(collection),
        current: () => core.view,
        drainOlderWrites: (view, ms) => core.drainOlderWrites(view, ms),
        node_timeout_ms: config.node_timeout_ms,
        describe: describeGrpcError,
      }, {
        transfers_max: options.transfers_max,
        transfer_bytes_per_s: options.transfer_bytes_per_s,
        delay_ms: options.rebalance_delay_ms,
        anti_entropy_interval_ms: options.anti_entropy_interval_ms ??
          DEFAULT_ANTI_ENTROPY_INTERVAL_MS,
        dead_grace_ms: options.dead_grace_ms,
      });
      router.#rebalancer = rebalancer;
      core.setRebalance({
        get busy() {
          return rebalancer.busy;
        },
        changed: (view, deaths_only) => rebalancer.changed(view, deaths_only),
        settledNodes: () => rebalancer.settled?.nodes ?? [],
        readers: (c, layout, id) => rebalancer.readers(c, layout, id),
        readPlacement: () => rebalancer.readPlacement(),
        get migrated() {
          return rebalancer.stats.rebalances_done > 0;
        },
        antiEntropy: (options) => rebalancer.antiEntropy(options),
      });
    }
    let metrics: ServerMetrics | null = null;
    if (options.metrics === true) {
      metrics = serverMetrics("router", ROUTER_VERSION, security);
      addRouterMetrics(metrics.metrics, core, () => router.#rebalancer?.stats ?? null);
      if (agent !== null) addGossipMetrics(metrics.metrics, agent);
    }
    const guard = new UnaryGuard({
      server_name: "router",
      in_flight_max: options.in_flight_max ?? ROUTER_IN_FLIGHT_MAX,
      closing: () => router.#stopping,
      to_status: toStatus,
      log: (m) => log(m),
      metrics: metrics?.grpc,
    });
    const handlers = routerHandlers(router, guard);
    try {
      // The static nodes' hint logs; one that cannot be opened stops the start.
      await router.#reconcileOnce(true);
      if ((options.http_port ?? 0) !== 0) {
        router.#http = new HttpApi({
          kind: "router",
          handlers,
          security,
          ready: () => health.status("") === "SERVING",
          log,
          metrics: metrics?.metrics ?? null,
          console_state: () => router.consoleState(),
        });
        router.http_port = await router.#http.listen(config.host, options.http_port!);
      }
    } catch (e) {
      await router.#http?.close(0);
      server.forceShutdown();
      agent?.stop();
      await core.stop();
      router.#links.closeAll();
      throw e;
    }
    server.addService(vectorDbService, handlers);
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
    router.#timer = setInterval(() => router.#tick(), TICK_INTERVAL_MS);
    router.#tick();
    health.ready();
    return router;
  }

  /**
   * Leaves the cluster (others see the router `left`), stops serving, lets replays finish
   * their current hint, closes hint logs and channels.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    // Out of rotation at once; Watch streams are ended before tryShutdown (health.ts).
    this.health.notServing(this.health.services);
    if (this.#timer !== null) clearInterval(this.#timer);
    await this.#rebalancer?.stop();
    await this.core.recall?.stop();
    if (this.agent !== null) {
      await this.agent.leave();
      this.#follower?.close();
      this.agent.stop();
    }
    this.health.close();
    await Promise.all([
      this.#http?.close(5000),
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          this.#server.forceShutdown();
          resolve();
        }, 5000);
        this.#server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
    ]);
    await this.core.stop();
    this.#links.closeAll();
    this.#lock?.release();
    this.#lock = null;
  }

  /**
   * What the web console's cluster and recall pages draw besides Members and Stats
   * (`GET /console/state`): each ring member's share of the hash space as primary owner, and
   * the recall monitor's figures (recall null before a collection's first sample).
   */
  consoleState(): Record<string, unknown> {
    const monitor = this.core.recall;
    return {
      ring: [...this.core.view.ring.shares()].map(([address, share]) => ({ address, share })),
      replication_factor: this.config.replication_factor,
      recall: monitor === null ? null : {
        sample_rate: monitor.sample_rate,
        warn_below: monitor.warn_below,
        queued: monitor.queued,
        counts: { ...monitor.counts },
        collections: monitor.figures().map((f) => ({
          ...f,
          recall: Number.isNaN(f.recall) ? null : f.recall,
        })),
      },
      time_ms: Date.now(),
    };
  }

  #tick(): void {
    this.core.tick();
    const now = Date.now();
    if (this.#reconcile_retry_ms !== 0 && now >= this.#reconcile_retry_ms) {
      this.#reconcile_retry_ms = 0;
      this.#scheduleReconcile();
    }
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
    })();
    this.core.background.track("updating the ring", run);
  }

  /** The ring target from the static list and the gossip view, handed to the core. */
  async #reconcileOnce(strict: boolean): Promise<void> {
    const members = this.agent?.members() ?? [];
    for (const m of members) {
      if (m.meta.role === "node" && this.#static.has(m.address)) this.#seen.add(m.address);
    }
    const target = ringNodes(this.config.nodes, this.#follower?.nodes() ?? [], this.#seen);
    const left = new Set(members.filter((m) => m.state === "left").map((m) => m.address));
    const update = await this.core.followRing(target, left, strict);
    if (update.retry_at_ms !== 0) this.#reconcile_retry_ms = update.retry_at_ms;
  }

  /** Stats: the nodes' (with hint counts, collections summed), the router's, rebalancing's. */
  async stats(): Promise<VectorDBMethods["Stats"]["response"]> {
    const { per, collections } = await this.core.nodeStats();
    const mem = process.memoryUsage();
    const s = this.#rebalancer?.stats;
    return {
      node_id: this.agent?.id ?? `router@${this.address}`,
      collections,
      uptime_ms: Date.now() - this.#started_ms,
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      version: ROUTER_VERSION,
      is_router: true,
      nodes: per,
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
      shard_moves_active: s?.shard_moves_active ?? 0,
      shard_moves_done: String(s?.shard_moves_done ?? 0),
      shard_moves_failed: String(s?.shard_moves_failed ?? 0),
      shard_bytes_moved: String(s?.shard_bytes_moved ?? 0),
      shard_drops_done: String(s?.shard_drops_done ?? 0),
      shard_drops_refused: String(s?.shard_drops_refused ?? 0),
      points_dropped: String(s?.points_dropped ?? 0),
      layout_conflicts: this.core.layoutConflicts(),
      shard_moves: (s?.shard_moves ?? []).map((m) => ({
        ...m,
        bytes_done: String(m.bytes_done),
        bytes_total: String(m.bytes_total),
      })),
    };
  }

  /**
   * With gossip: the agent's view (every member with its state and incarnation, routers
   * flagged). Without: the ring's nodes, alive or dead as the router last reached them, and
   * the router itself.
   */
  members(): VectorDBMethods["Members"]["response"] {
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
    const members = this.core.view.nodes.map((address) => ({
      id: address,
      address,
      state: this.core.reachable(address) ? "alive" : "dead",
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
}
