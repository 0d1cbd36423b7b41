/**
 * A cluster of storage nodes and a router as real processes (Node 20 through tsx, like
 * production) on free loopback ports, with a temporary data directory.
 *
 * ```ts
 * await withCluster({ nodes: 3, replication_factor: 2 }, async (c) => {
 *   const api = c.api(c.routerAddr);
 *   await api.call("Put", { id: 1, vector: [0.1, 0.2] });
 *   await c.killNode(0);        // SIGKILL
 *   await c.startNode(0);       // same port and data directory
 * });
 * ```
 *
 * Static by default: the router gets `--nodes`. With `gossip: true` every node is started with
 * `--join` of all the others and the router with `--join` of the nodes and NO `--nodes`: its
 * ring follows gossip. `addNode()` starts one more node (joining the others) on a new port.
 *
 * `withCluster` ALWAYS stops every process it started (SIGTERM, then SIGKILL after 5 s) and
 * removes the directory, and prints the processes' last log lines when the body throws.
 * Every process is waited for up to 60 s to print `READY`.
 *
 * Runtime-neutral (node: APIs only).
 * @module
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "../src/api/client.ts";
import type { ClientSecurity } from "../src/api/security.ts";
import { freePort } from "./ports.ts";
import { type ChildProc, ProcGroup, type Signal } from "./process.ts";
import {
  NODE_ENTRY,
  nodeFlags,
  prepareUserDir,
  ROUTER_ENTRY,
  routerFlags,
  type RunAs,
  spawnServer,
} from "./servers.ts";

/**
 * The router's node timeout in a {@link TestCluster} unless the options give one. Above the
 * router's default (2000), which a loaded test machine exceeds: the first CreateCollection
 * (12 shards) timed out on all three nodes at 2 s with load 10+ on 2 cores. Tests never make a
 * live node slow on purpose (a killed node fails its calls at once, whatever the timeout), so a
 * longer timeout only changes how long a merely slow node is waited for. Below the 10 s the
 * tests' own clients and the CLI give a call, so the router's answer still comes first.
 */
export const TEST_NODE_TIMEOUT_MS = 8_000;

/**
 * The deadline of a {@link TestCluster.api} client unless the caller gives one: above
 * {@link TEST_NODE_TIMEOUT_MS}, so that a router call that waits out one node timeout is still
 * answered (with the router's error or partial result, not the client's DEADLINE_EXCEEDED).
 */
export const TEST_CLIENT_TIMEOUT_MS = 20_000;

/** Options of a {@link TestCluster}; every one has a default. */
export interface ClusterOptions {
  /** Storage nodes; default 3. */
  nodes?: number;
  /** Default 2. */
  replication_factor?: number;
  /** Default "quorum". */
  consistency?: "one" | "quorum" | "all";
  /**
   * The router's `--node-timeout-ms`; default {@link TEST_NODE_TIMEOUT_MS} (8000), not the
   * router's own 2000.
   */
  node_timeout_ms?: number;
  /** Default 200. */
  retry_interval_ms?: number;
  /** Nodes join each other; the router joins them instead of getting `--nodes`. */
  gossip?: boolean;
  /** Further router flags, e.g. `["--dead-grace-s", "2"]`; default none. */
  router_args?: string[];
  /** Further flags of every node, e.g. `["--cluster-secret-file", F]`; default none. */
  node_args?: string[];
  /**
   * Serve the HTTP/JSON API on a free port per process (`--http-port`; see
   * {@link TestCluster.nodeHttpPorts}); default false (`--http-port 0`).
   */
  http?: boolean;
  /** Called with every output line of every process (`name`: `router`, `node-<port>`). */
  on_line?: (name: string, line: string, stream: "stdout" | "stderr") => void;
}

/**
 * Optional process placement of a {@link TestCluster} (all default to the behaviour without
 * them: every process on 127.0.0.1, as the caller's user). Used by `scripts/faults/chaos.ts` to
 * give each process its own loopback address and user, so iptables owner rules can cut its
 * links.
 */
export interface ClusterPlacement {
  /** Loopback host of node `i` (binds there; its address is `host:port`). Default 127.0.0.1. */
  node_host?: (i: number) => string;
  /** Loopback host of the router. Default 127.0.0.1. */
  router_host?: string;
  /**
   * User to run node `i` as (needs root; undefined: the caller's user). Its data directory is
   * created and given to that user, and the cluster directory is made world-traversable.
   */
  node_user?: (i: number) => RunAs | undefined;
  /** User to run the router as (same rules). */
  router_user?: RunAs;
}

/** A running cluster. */
export class TestCluster {
  readonly nodePorts: number[];
  readonly nodeAddrs: string[];
  readonly routerPort: number;
  readonly routerAddr: string;
  /** The current process of each node; null before its first start. */
  nodes: (ChildProc | null)[];
  router: ChildProc | null = null;
  /** With `http`: each node's HTTP API port (0: off). */
  nodeHttpPorts: number[] = [];
  /** With `http`: the router's HTTP API port (0: off). */
  routerHttpPort = 0;
  /** Every process started, earlier starts of a node included (for {@link log}). */
  readonly procs: ProcGroup = new ProcGroup();
  readonly #clients: ApiClient[] = [];

  private constructor(
    readonly dir: string,
    readonly options: Required<ClusterOptions>,
    readonly placement: ClusterPlacement,
    nodePorts: number[],
    routerPort: number,
  ) {
    this.nodePorts = nodePorts;
    this.nodeAddrs = nodePorts.map((p, i) => `${this.nodeHost(i)}:${p}`);
    this.routerPort = routerPort;
    this.routerAddr = `${placement.router_host ?? "127.0.0.1"}:${routerPort}`;
    this.nodes = nodePorts.map(() => null);
  }

  /** A cluster in `dir` on free ports; nothing is started yet (see {@link startAll}). */
  static async create(
    dir: string,
    options: ClusterOptions = {},
    placement: ClusterPlacement = {},
  ): Promise<TestCluster> {
    const o: Required<ClusterOptions> = {
      nodes: options.nodes ?? 3,
      replication_factor: options.replication_factor ?? 2,
      consistency: options.consistency ?? "quorum",
      node_timeout_ms: options.node_timeout_ms ?? TEST_NODE_TIMEOUT_MS,
      retry_interval_ms: options.retry_interval_ms ?? 200,
      gossip: options.gossip ?? false,
      router_args: options.router_args ?? [],
      node_args: options.node_args ?? [],
      http: options.http ?? false,
      on_line: options.on_line ?? (() => {}),
    };
    const host = (i: number) => placement.node_host?.(i) ?? "127.0.0.1";
    const nodePorts = await Promise.all(
      Array.from({ length: o.nodes }, (_, i) => freePort(host(i))),
    );
    const routerPort = await freePort(placement.router_host ?? "127.0.0.1");
    const cluster = new TestCluster(dir, o, placement, nodePorts, routerPort);
    if (o.http) {
      cluster.nodeHttpPorts = await Promise.all(nodePorts.map((_, i) => freePort(host(i))));
      cluster.routerHttpPort = await freePort(placement.router_host ?? "127.0.0.1");
    }
    return cluster;
  }

  /** The host node `i` binds (see {@link ClusterPlacement.node_host}). */
  nodeHost(i: number): string {
    return this.placement.node_host?.(i) ?? "127.0.0.1";
  }

  /** Starts every node, then the router, each waited for until ready. */
  async startAll(): Promise<void> {
    await Promise.all(this.nodePorts.map((_, i) => this.startNode(i)));
    await this.startRouter();
  }

  /** Starts node `i` (on its port and data directory) and waits until it is ready. */
  async startNode(i: number): Promise<void> {
    if (this.nodes[i] !== null && !this.nodes[i]!.exited) {
      throw new Error(`Node ${i} is already running`);
    }
    const port = this.nodePorts[i];
    const dataDir = `${this.dir}/node-${port}`;
    const user = this.placement.node_user?.(i);
    if (user !== undefined) await prepareUserDir(this.dir, dataDir, user);
    const p = spawnServer({
      name: `node-${port}`,
      entry: NODE_ENTRY,
      flags: nodeFlags({
        port,
        data_dir: dataDir,
        host: this.placement.node_host === undefined ? undefined : this.nodeHost(i),
        join: this.options.gossip ? this.nodeAddrs.filter((_, j) => j !== i) : undefined,
        extra: [
          ...this.options.node_args,
          ...(this.nodeHttpPorts[i] ? ["--http-port", String(this.nodeHttpPorts[i])] : []),
        ],
      }),
      user,
      home: dataDir,
      group: this.procs,
      on_line: (line, stream) => this.options.on_line(`node-${port}`, line, stream),
    });
    this.nodes[i] = p;
    await p.ready;
  }

  /** Starts the router and waits until it is ready. */
  async startRouter(): Promise<void> {
    const o = this.options;
    const dataDir = `${this.dir}/router`;
    const user = this.placement.router_user;
    if (user !== undefined) await prepareUserDir(this.dir, dataDir, user);
    this.router = spawnServer({
      name: "router",
      entry: ROUTER_ENTRY,
      flags: routerFlags({
        port: this.routerPort,
        ...(o.gossip ? { join: this.nodeAddrs } : { nodes: this.nodeAddrs }),
        replication_factor: o.replication_factor,
        consistency: o.consistency,
        node_timeout_ms: o.node_timeout_ms,
        retry_interval_ms: o.retry_interval_ms,
        data_dir: dataDir,
        host: this.placement.router_host,
        extra: [
          ...o.router_args,
          ...(this.routerHttpPort ? ["--http-port", String(this.routerHttpPort)] : []),
        ],
      }),
      user,
      home: dataDir,
      group: this.procs,
      on_line: (line, stream) => o.on_line("router", line, stream),
    });
    await this.router.ready;
  }

  /** Starts one more node on a new port (joining the others with `gossip`); its index. */
  async addNode(): Promise<number> {
    const i = this.nodes.length;
    const port = await freePort(this.nodeHost(i));
    this.nodePorts.push(port);
    this.nodeAddrs.push(`${this.nodeHost(i)}:${port}`);
    this.nodes.push(null);
    await this.startNode(i);
    return i;
  }

  /** Sends node `i` a signal (SIGKILL by default) and waits for it to exit. */
  async killNode(i: number, signal: Signal = "SIGKILL"): Promise<void> {
    const p = this.nodes[i];
    if (p === null) throw new Error(`Node ${i} was never started`);
    p.signal(signal);
    await p.done;
  }

  /**
   * A client of `addr` (with an API key or TLS: `security`), closed by {@link stop}; each call's
   * deadline is `timeout_ms` (default {@link TEST_CLIENT_TIMEOUT_MS}).
   */
  api(addr: string, timeout_ms = TEST_CLIENT_TIMEOUT_MS, security?: ClientSecurity): ApiClient {
    const c = new ApiClient(addr, { timeout_ms, security });
    this.#clients.push(c);
    return c;
  }

  /** Stops everything: clients, router, nodes (SIGTERM, then SIGKILL). */
  async stop(): Promise<void> {
    for (const c of this.#clients) c.close();
    await this.procs.stopAll();
  }

  /** Every process's kept output. */
  log(): string {
    return this.procs.log();
  }
}

/** What {@link withStarted} needs of a set of processes. */
export interface Startable {
  startAll(): Promise<void>;
  stop(): Promise<void>;
  log(): string;
}

/**
 * Creates processes in a fresh temporary directory (`prefix…`), starts them, runs `fn`, and
 * always stops them and removes the directory; prints their output when anything throws.
 */
export async function withStarted<C extends Startable>(
  prefix: string,
  create: (dir: string) => Promise<C>,
  fn: (c: C) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  let c: C | null = null;
  try {
    c = await create(dir);
    await c.startAll();
    await fn(c);
  } catch (e) {
    console.error(`--- process logs (${dir}) ---\n${c?.log() ?? ""}\n--- end of process logs ---`);
    throw e;
  } finally {
    await c?.stop();
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

/** Starts a cluster (nodes first, then the router), runs `fn`, and always tears it down. */
export function withCluster(
  options: ClusterOptions,
  fn: (cluster: TestCluster) => Promise<void>,
): Promise<void> {
  return withStarted("vectordb_cluster_", (dir) => TestCluster.create(dir, options), fn);
}
