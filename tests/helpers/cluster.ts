/**
 * Test helper: a cluster of storage nodes and a router as real processes (Node 20 through tsx,
 * like production) on free loopback ports, with a temporary data directory.
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
 * With `gossip: true` every node is started with `--join` of all the others and the router
 * with `--join` of the nodes and NO `--nodes`: its ring follows gossip. `addNode()` starts one
 * more node (joining the others) on a new port.
 *
 * `withCluster` ALWAYS stops every process it started (SIGTERM, then SIGKILL after 5 s) and
 * removes the directory, and prints the processes' last log lines when the body throws.
 * Every process is waited for up to 60 s to print `READY`.
 */

import { ApiClient } from "../../src/api/client.ts";

/** Repository root (processes run there so that `--import tsx` resolves). */
export const REPO_ROOT: string = new URL("../..", import.meta.url).pathname;

const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const LOG_LINES_KEPT = 2000;

/** A loopback port nothing listens on right now. */
export function freePort(): number {
  return freePortOn("127.0.0.1");
}

/** A port nothing listens on right now at `host` (e.g. another loopback address, 127.0.0.x). */
export function freePortOn(host: string): number {
  const listener = Deno.listen({ hostname: host, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Options of a {@link ChildProc}. */
export interface ChildProcOptions {
  /** Program to run; default `/usr/bin/env` (so `args[0]` names it, e.g. "node"). */
  command?: string;
  /** How long to wait for `READY`; default 60 s. A node replaying a large WAL needs more. */
  ready_timeout_ms?: number;
  /** Output lines kept; default 200. */
  lines_kept?: number;
}

/** One child process with its output kept (last lines) and drained. */
export class ChildProc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  /** Resolves when the process prints a line starting with `READY `. */
  readonly ready: Promise<void>;
  /** Resolves with the exit status once the process has exited and its output is drained. */
  readonly done: Promise<Deno.CommandStatus>;
  /** performance.now() when the process was spawned. */
  readonly started_ms: number;
  /** performance.now() when READY was seen; NaN before. */
  ready_ms = NaN;
  #exited = false;

  constructor(name: string, args: string[], options: ChildProcOptions = {}) {
    const readyTimeoutMs = options.ready_timeout_ms ?? READY_TIMEOUT_MS;
    const linesKept = options.lines_kept ?? LOG_LINES_KEPT;
    this.name = name;
    this.started_ms = performance.now();
    this.child = new Deno.Command(options.command ?? "/usr/bin/env", {
      args,
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let onReady!: () => void;
    let onFail!: (e: Error) => void;
    this.ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    // Callers that never wait for READY (CLI runs) must not see an unhandled rejection.
    this.ready.catch(() => {});
    const timer = setTimeout(
      () => onFail(new Error(`${name} printed no READY line within ${readyTimeoutMs} ms`)),
      readyTimeoutMs,
    );
    const drain = async (stream: ReadableStream<Uint8Array>, watch: boolean) => {
      let partial = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (partial + text).split("\n");
        partial = parts.pop()!;
        for (const line of parts) {
          this.lines.push(line);
          if (this.lines.length > linesKept) this.lines.shift();
          if (watch && line.startsWith("READY ") && Number.isNaN(this.ready_ms)) {
            this.ready_ms = performance.now();
            clearTimeout(timer);
            onReady();
          }
        }
      }
      if (partial !== "") this.lines.push(partial);
    };
    const out = drain(this.child.stdout, true);
    const err = drain(this.child.stderr, false);
    this.done = this.child.status.then(async (status) => {
      this.#exited = true;
      clearTimeout(timer);
      await Promise.allSettled([out, err]);
      onFail(new Error(`${name} exited with ${status.code} before it was ready`));
      return status;
    });
  }

  /** The last `n` kept lines, each prefixed with the process name. */
  tail(n = 40): string {
    return this.lines.slice(-n).map((l) => `${this.name} | ${l}`).join("\n");
  }

  /** Whether the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Sends `signal` (no-op once exited). */
  signal(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.child.kill(signal);
    } catch {
      // Exited meanwhile.
    }
  }

  /** SIGTERM, wait up to `grace_ms`, then SIGKILL; resolves with the exit status. */
  async stop(grace_ms = STOP_GRACE_MS): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), grace_ms);
    });
    const first = await Promise.race([this.done, late]);
    clearTimeout(timer);
    if (first === "late") this.signal("SIGKILL");
    return await this.done;
  }

  /** The kept output, each line prefixed with the process name. */
  log(): string {
    return this.lines.map((l) => `${this.name} | ${l}`).join("\n");
  }
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  nodes?: number;
  replication_factor?: number;
  consistency?: "one" | "quorum" | "all";
  node_timeout_ms?: number;
  retry_interval_ms?: number;
  /** Nodes join each other; the router joins them instead of getting `--nodes`. */
  gossip?: boolean;
}

/** A Unix user to run a process as (through `setpriv`, which execs: the pid is the process's). */
export interface RunAs {
  uid: number;
  gid: number;
}

/**
 * Optional process placement of a {@link TestCluster} (all default to the behaviour without
 * them: every process on 127.0.0.1, as the caller's user). Used by `scripts/chaos.ts` to give
 * each process its own loopback address and user, so iptables owner rules can cut its links.
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

/** A running test cluster. */
export class TestCluster {
  readonly dir: string;
  readonly nodePorts: number[];
  readonly nodeAddrs: string[];
  readonly routerPort: number;
  readonly routerAddr: string;
  readonly options: Required<ClusterOptions>;
  nodes: (ChildProc | null)[];
  router: ChildProc | null = null;
  readonly placement: ClusterPlacement;
  readonly #old: ChildProc[] = [];
  readonly #clients: ApiClient[] = [];

  constructor(
    dir: string,
    options: Required<ClusterOptions>,
    placement: ClusterPlacement = {},
  ) {
    this.dir = dir;
    this.options = options;
    this.placement = placement;
    const hostOf = (i: number) => placement.node_host?.(i) ?? "127.0.0.1";
    this.nodePorts = Array.from({ length: options.nodes }, (_, i) => freePortOn(hostOf(i)));
    this.nodeAddrs = this.nodePorts.map((p, i) => `${hostOf(i)}:${p}`);
    const routerHost = placement.router_host ?? "127.0.0.1";
    this.routerPort = freePortOn(routerHost);
    this.routerAddr = `${routerHost}:${this.routerPort}`;
    this.nodes = this.nodePorts.map(() => null);
  }

  /** The host node `i` binds (see {@link ClusterPlacement.node_host}). */
  nodeHost(i: number): string {
    return this.placement.node_host?.(i) ?? "127.0.0.1";
  }

  /**
   * A process of this cluster: as the caller's user, or, with `user`, through `setpriv` as
   * that user with HOME at `data_dir` (created and given to the user first).
   */
  #spawn(name: string, args: string[], user: RunAs | undefined, data_dir: string): ChildProc {
    if (user === undefined) return new ChildProc(name, args);
    Deno.chmodSync(this.dir, 0o755);
    Deno.mkdirSync(data_dir, { recursive: true });
    Deno.chownSync(data_dir, user.uid, user.gid);
    return new ChildProc(name, [
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      "--clear-groups",
      "--",
      "/usr/bin/env",
      `HOME=${data_dir}`,
      ...args,
    ], { command: "setpriv" });
  }

  /** Starts node `i` (on its port and data directory) and waits until it is ready. */
  async startNode(i: number): Promise<void> {
    if (this.nodes[i] !== null && !this.nodes[i]!.exited) {
      throw new Error(`Node ${i} is already running`);
    }
    if (this.nodes[i] !== null) this.#old.push(this.nodes[i]!);
    const port = this.nodePorts[i];
    const dataDir = `${this.dir}/node-${port}`;
    const args = [
      "node",
      "--import",
      "tsx",
      "src/node/main.ts",
      "--port",
      String(port),
      "--data-dir",
      dataDir,
    ];
    if (this.placement.node_host !== undefined) args.push("--host", this.nodeHost(i));
    if (this.options.gossip) {
      args.push("--join", this.nodeAddrs.filter((_, j) => j !== i).join(","));
    }
    const p = this.#spawn(`node-${port}`, args, this.placement.node_user?.(i), dataDir);
    this.nodes[i] = p;
    await p.ready;
  }

  /** Starts the router and waits until it is ready. */
  async startRouter(): Promise<void> {
    if (this.router !== null) this.#old.push(this.router);
    const o = this.options;
    const dataDir = `${this.dir}/router`;
    const host = this.placement.router_host === undefined
      ? []
      : ["--host", this.placement.router_host];
    this.router = this.#spawn(
      "router",
      [
        "node",
        "--import",
        "tsx",
        "src/router/main.ts",
        "--port",
        String(this.routerPort),
        ...(o.gossip
          ? ["--join", this.nodeAddrs.join(",")]
          : ["--nodes", this.nodeAddrs.join(",")]),
        "--replication-factor",
        String(o.replication_factor),
        "--consistency",
        o.consistency,
        "--node-timeout-ms",
        String(o.node_timeout_ms),
        "--retry-interval-ms",
        String(o.retry_interval_ms),
        "--data-dir",
        dataDir,
        ...host,
      ],
      this.placement.router_user,
      dataDir,
    );
    await this.router.ready;
  }

  /** Starts one more node on a new port (joining the others with `gossip`); its index. */
  async addNode(): Promise<number> {
    const i = this.nodes.length;
    const port = freePortOn(this.nodeHost(i));
    this.nodePorts.push(port);
    this.nodeAddrs.push(`${this.nodeHost(i)}:${port}`);
    this.nodes.push(null);
    await this.startNode(i);
    return i;
  }

  /** Kills node `i` (SIGKILL by default) and waits for it to exit. */
  async killNode(i: number, signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const p = this.nodes[i];
    if (p === null) throw new Error(`Node ${i} was never started`);
    p.signal(signal);
    await p.done;
  }

  /** A client of `addr`, closed by {@link stop}. */
  api(addr: string, timeout_ms = 5000): ApiClient {
    const c = new ApiClient(addr, { timeout_ms });
    this.#clients.push(c);
    return c;
  }

  /** Stops everything: clients, router, nodes (SIGTERM, then SIGKILL). */
  async stop(): Promise<void> {
    for (const c of this.#clients) c.close();
    const all = [this.router, ...this.nodes, ...this.#old].filter((p) => p !== null);
    await Promise.allSettled(all.map((p) => p!.stop()));
  }

  /** Every process's kept output. */
  log(): string {
    return [this.router, ...this.#old, ...this.nodes].filter((p) => p !== null)
      .map((p) => p!.log()).join("\n");
  }
}

/** Starts a cluster (nodes first, then the router), runs `fn`, and always tears it down. */
export async function withCluster(
  options: ClusterOptions,
  fn: (cluster: TestCluster) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vectordb_cluster_" });
  const cluster = new TestCluster(dir, {
    nodes: options.nodes ?? 3,
    replication_factor: options.replication_factor ?? 2,
    consistency: options.consistency ?? "quorum",
    node_timeout_ms: options.node_timeout_ms ?? 2000,
    retry_interval_ms: options.retry_interval_ms ?? 200,
    gossip: options.gossip ?? false,
  });
  try {
    await Promise.all(cluster.nodePorts.map((_, i) => cluster.startNode(i)));
    await cluster.startRouter();
    await fn(cluster);
  } catch (e) {
    console.error(`--- cluster logs (${dir}) ---\n${cluster.log()}\n--- end of cluster logs ---`);
    throw e;
  } finally {
    await cluster.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Polls `check` every `interval_ms` until it returns true; throws `message` after `timeout_ms`. */
export async function waitFor(
  check: () => Promise<boolean>,
  message: string,
  timeout_ms = 20_000,
  interval_ms = 100,
): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
      last = null;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, interval_ms));
  }
  throw new Error(`${message} (waited ${timeout_ms} ms${last ? `; last error: ${last}` : ""})`);
}

/** Runs the client CLI under Deno; returns exit code, stdout and stderr. */
export async function runCli(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-env", "src/cli/cli.ts", ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
