/**
 * The storage node: `deno task server --port 50051 [--data-dir DIR]`.
 *
 * Runs under Node 20 (through tsx), not Deno: Deno 2.9.6's `node:http2`, which grpc-js uses,
 * aborts the whole process when a client closes a channel after concurrent calls
 * (denoland/deno#36788). See the README's "Runtime decision".
 *
 * | flag                   | default              | meaning                                  |
 * |------------------------|----------------------|------------------------------------------|
 * | `--port`               | 50051                | gRPC port                                |
 * | `--host`               | 127.0.0.1            | address to bind                          |
 * | `--data-dir`           | `./data/node-<port>` | the node's data directory                |
 * | `--wal-recovery`       | strict               | `truncate` cuts a corrupt WAL at the damage instead of refusing to start |
 * | `--snapshot-every-ops` | 20000                | snapshot a collection after this many writes |
 * | `--snapshot-every-s`   | 60                   | ... or after this long with unsnapshotted writes |
 * | `--node-id`            | `node-<port>`        | name in logs, Stats and membership       |
 * | `--join`               | (none)               | seeds to join through, `host:port[,…]`   |
 * | `--advertise`          | `<host>:<port>`      | address other members reach this node at |
 * | `--handoff-timeout-s`  | 120                  | on `Drain` (`client drain`), longest wait for the router to place this node's entries elsewhere; 0 leaves without waiting |
 * | `--tombstone-grace-s`  | 604800 (7 days)      | forget tombstones older than this; three quarters of it is the longest absence the cluster accepts (a node stopped longer forgets its entries at start-up); 0 keeps tombstones forever |
 * | `--api-keys-file`      | (none)               | clients need `authorization: Bearer KEY` (src/api/auth.ts); needs `--cluster-secret-file`; re-read on SIGHUP |
 * | `--cluster-secret-file`| (none)               | internal RPCs need the secret's proof (src/api/cluster_proof.ts) |
 * | `--tls-cert`, `--tls-key` | (none)            | serve TLS; `--tls-ca` trusts a CA when calling members (src/api/security.ts) |
 * | `--insecure`           | false                | allow a non-loopback `--host` without API keys and a cluster secret |
 * | `--log-level`, `--log-format` | info, text    | least important messages logged; `json`: one object per line (src/common/log.ts) |
 * | `--search-threads`     | the cores (at most 63) | threads that run unfiltered float graph searches (src/index/graph_pool.ts); 1: this thread only, no workers |
 * | `--build-threads`      | the cores (at most 63) | threads that link each PutBatch into the graph (after its WAL append); 1: this thread, in order |
 *
 * {@link NODE_FLAGS} is the source of truth: the parser and `--help` come from it. Every flag may
 * also be set by `VECTORDB_<FLAG>` in the environment or a key of a `--config` JSON file
 * (precedence flag > env > file > default; src/common/config.ts). `--help` and `--version` print
 * and exit 0; a bad flag, variable or config file exits 2.
 * | `--http-port`          | `<port>` + 1000      | HTTP/JSON API on `--host` (src/api/http.ts; TLS when `--tls-cert`); 0: off |
 * | `--metrics`            | true                 | Prometheus metrics at `GET /metrics` on the HTTP port (src/node/metrics.ts); false: none collected, 404 |
 *
 * The node is a gossip member (role "node"; src/cluster/gossip_agent.ts) from the start, on the
 * same gRPC port (service `vectordb.internal.Gossip`); without `--join` it is a cluster of one
 * until others join through it. `Members` answers with its gossip view. The same port serves
 * `vectordb.internal.Transfer` (src/node/transfer_service.ts), through which the router
 * moves entries (points and tombstones, last writer wins by version) when the ring changes.
 *
 * The data directory is locked for the process's lifetime (src/io/dir_lock.ts): a second node
 * on the same directory exits 1 with `server: Data directory DIR is locked by process PID …`.
 *
 * The port also serves `grpc.health.v1.Health` and server reflection (src/api/health.ts,
 * src/api/reflection.ts). The port is bound only once the store is open (WAL recovery done), so
 * while recovering the node refuses connections; once bound, health says SERVING as `READY` is
 * printed, and NOT_SERVING from the first moment of a stop or `Drain` (Transfer stays SERVING
 * during the drain's hand-off).
 *
 * Prints `READY <host>:<port>` on stdout once it serves.
 *
 * **SIGINT/SIGTERM: stop, data kept** (a restart, not a decommission): stop accepting, finish
 * in-flight requests (up to 5 s), stop gossiping, snapshot every collection, close the logs,
 * exit 0, typically within a second or two. The node does NOT leave the cluster: the others
 * see it unreachable (suspect, then dead after a few seconds), exactly as after a crash, and
 * alive again with a higher incarnation when it starts again on the same data directory. The
 * router routes around it meanwhile (writes its missed hints to its hint queue while it is
 * suspect, and to the ring without it once it is dead) and waits `--dead-grace-s` (30 s)
 * before re-replicating a dead node's ranges; a node back within that grace is put back on the
 * ring at once and receives only the writes it missed (src/router/rebalance/rebalancer.ts).
 *
 * **`Drain` (`client drain`): leave with a hand-off.** Leave the cluster (others see it `left`;
 * up to 1 s); then, when a router is among the live members, hand off (src/node/drain_wait.ts):
 * keep serving the router's Transfer calls while it copies every entry of this node to the
 * entry's owners and forgets it here, until nothing is left, no call came for 30 s, or
 * `--handoff-timeout-s` passed (a SIGINT/SIGTERM meanwhile ends the wait); then stop as above
 * and exit 0. A node drained this way and started again comes back empty (or with what it
 * still held) and receives its ranges like any joining node.
 *
 * SIGKILL (or a crash) keeps the data too, without the final snapshot (the WAL is replayed).
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import process from "node:process";
import { CHANNEL_OPTIONS, vectorDbService } from "../api/proto.ts";
import { ServerHealth } from "../api/health.ts";
import { addReflection, REFLECTED_SERVICES } from "../api/reflection.ts";
import { HTTP_FLAGS, HttpApi, resolveHttpPort } from "../api/http.ts";
import {
  channelSetup,
  SECURITY_FLAGS,
  SecurityConfig,
  SecurityConfigError,
} from "../api/security.ts";
import { GossipAgent } from "../cluster/gossip_agent.ts";
import { addGossipService, GrpcGossipTransport } from "../cluster/gossip_transport.ts";
import { NodeStore } from "../storage/node_store.ts";
import { nodeHandlers } from "./service.ts";
import { NodeMetrics } from "./metrics.ts";
import { addTransferService } from "./transfer_service.ts";
import { DRAIN_IDLE_MS, waitForDrain } from "./drain_wait.ts";
import {
  annotateError,
  ConfigError,
  describeSettings,
  type FlagTable,
  formatHelp,
  parseBoolean,
  resolveConfig,
  type ResolvedConfig,
} from "../common/config.ts";
import { LOG_FLAGS, Logger, parseLogFormat, parseLogLevel } from "../common/log.ts";
import { discardStaleEntries, HEARTBEAT_EVERY_MS, TombstoneCollector } from "./tombstone_gc.ts";
import { SOFTWARE_VERSION, versionLine } from "../common/software_version.ts";
import { defaultThreads, GraphPool, MAX_POOL_THREADS } from "../index/graph_pool.ts";

/** The storage node's flags: the parser, `--help` and the README's table come from here. */
export const NODE_FLAGS = {
  port: { type: "string", default: "50051", arg: "PORT", help: "gRPC port" },
  host: { type: "string", default: "127.0.0.1", arg: "HOST", help: "address to bind" },
  "data-dir": {
    type: "string",
    arg: "DIR",
    default_text: "./data/node-<port>",
    help: "the node's data directory",
  },
  "wal-recovery": {
    type: "string",
    default: "strict",
    arg: "MODE",
    help: "strict refuses to start on a corrupt WAL; truncate cuts it at the damage",
  },
  "snapshot-every-ops": {
    type: "string",
    default: "20000",
    arg: "N",
    help: "snapshot a collection after this many writes",
  },
  "snapshot-every-s": {
    type: "string",
    default: "60",
    arg: "S",
    help: "... or after this long with unsnapshotted writes",
  },
  "node-id": {
    type: "string",
    arg: "ID",
    default_text: "node-<port>",
    help: "name in logs, Stats and membership",
  },
  join: {
    type: "string",
    default: "",
    list: true,
    arg: "HOST:PORT,...",
    help: "gossip seeds to join the cluster through",
  },
  advertise: {
    type: "string",
    arg: "HOST:PORT",
    default_text: "<host>:<port>",
    help: "address other members reach this node at",
  },
  "handoff-timeout-s": {
    type: "string",
    default: "120",
    arg: "S",
    help: "on Drain, longest wait for the router to place this node's entries; 0: no wait",
  },
  "tombstone-grace-s": {
    type: "string",
    default: "604800",
    arg: "S",
    help: "forget tombstones older than this; three quarters of it is the longest absence the " +
      "cluster accepts: a node stopped longer forgets its entries at start-up " +
      "(0: keep tombstones forever)",
  },
  "search-threads": {
    type: "string",
    arg: "N",
    default_text: `the cores (os.availableParallelism(), at most ${MAX_POOL_THREADS})`,
    help: "threads that run graph searches (unfiltered, float); 1: the main thread, no workers",
  },
  "build-threads": {
    type: "string",
    arg: "N",
    default_text: `the cores (os.availableParallelism(), at most ${MAX_POOL_THREADS})`,
    help: "threads that link each PutBatch into the graph; 1: the main thread, in order",
  },
  ...HTTP_FLAGS,
  ...SECURITY_FLAGS,
  ...LOG_FLAGS,
} as const satisfies FlagTable;

/** `--help` of the storage node. */
export function nodeHelp(): string {
  return formatHelp(NODE_FLAGS, {
    usage: "server [flags]   (deno task server -- [flags])",
    about: `A storage node of vectordb ${SOFTWARE_VERSION}: serves vectordb.VectorDB, gossip ` +
      "and transfers on one gRPC port; prints READY <host>:<port> on stdout once it serves.",
    notes: "Exit status: 0 after a stop (SIGINT, SIGTERM, Drain) or --help/--version, " +
      "2 for a bad flag, environment variable or config file, 1 for any other failure.",
  });
}

function positiveInt(name: string, v: string): number {
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) {
    throw new ConfigError(`--${name} "${v}" must be a positive integer`);
  }
  return x;
}

/** A thread count flag: absent means the cores; 1 .. {@link MAX_POOL_THREADS}. */
function threadCount(name: string, v: string | undefined): number {
  if (v === undefined) return defaultThreads();
  const x = Number(v);
  if (!Number.isInteger(x) || x < 1 || x > MAX_POOL_THREADS) {
    throw new ConfigError(`--${name} "${v}" must be an integer between 1 and ${MAX_POOL_THREADS}`);
  }
  return x;
}

/** `host:port` with a port in 1..65535, else a ConfigError naming the flag. */
function hostPort(name: string, v: string): string {
  const i = v.lastIndexOf(":");
  const port = Number(v.slice(i + 1));
  if (i <= 0 || !/^\d+$/.test(v.slice(i + 1)) || port < 1 || port > 65535 || /\s/.test(v)) {
    throw new ConfigError(`--${name} "${v}" must be host:port`);
  }
  return v;
}

/** The logger, once the flags are read: main's caller writes a fatal error through it. */
let logger: Logger | null = null;

export async function main(
  argv: string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<void> {
  // `deno task server -- --port 50051` passes the "--" through.
  const args = argv[0] === "--" ? argv.slice(1) : argv;
  const config = resolveConfig({ flags: NODE_FLAGS, argv: args, env });
  if (config.help) {
    console.log(nodeHelp());
    return;
  }
  if (config.version) {
    console.log(versionLine("server"));
    return;
  }
  try {
    await serve(config);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(annotateError(e.message, config));
    throw e;
  }
}

async function serve(config: ResolvedConfig<typeof NODE_FLAGS>): Promise<void> {
  // Milliseconds since the process started (performance's time origin): process start-up and
  // module loading end here; the log line after binding says where the rest went.
  const modulesLoadedMs = performance.now();
  const values = config.values;
  const port = positiveInt("port", values.port);
  if (port > 65535) throw new ConfigError(`--port ${port} must be at most 65535`);
  const host = values.host;
  const httpPort = resolveHttpPort(values["http-port"], port);
  const dataDir = values["data-dir"] ?? `./data/node-${port}`;
  const recovery = values["wal-recovery"];
  if (recovery !== "strict" && recovery !== "truncate") {
    throw new ConfigError(`--wal-recovery "${recovery}" must be "strict" or "truncate"`);
  }
  const nodeId = values["node-id"] ?? `node-${port}`;
  const advertise = hostPort("advertise", values.advertise ?? `${host}:${port}`);
  const seeds = values.join.split(",").map((s) => s.trim()).filter((s) => s !== "")
    .map((s) => hostPort("join", s));
  logger = new Logger({
    component: "node",
    node: nodeId,
    level: parseLogLevel(values["log-level"]),
    format: parseLogFormat(values["log-format"]),
  });
  const log = logger.legacy;
  for (const w of config.warnings) logger.warn(w);
  const settings = describeSettings(config);
  if (settings !== "") logger.info(`settings from the environment or config file: ${settings}`);
  const handoffTimeoutS = Number(values["handoff-timeout-s"]);
  if (!Number.isInteger(handoffTimeoutS) || handoffTimeoutS < 0) {
    throw new ConfigError(
      `--handoff-timeout-s "${values["handoff-timeout-s"]}" must be a non-negative integer`,
    );
  }

  const graceS = Number(values["tombstone-grace-s"]);
  if (!Number.isInteger(graceS) || graceS < 0) {
    throw new ConfigError(
      `--tombstone-grace-s "${values["tombstone-grace-s"]}" must be a non-negative integer`,
    );
  }
  const tombstoneGraceMs = graceS * 1000;

  if (values["api-keys-file"] !== undefined && values["cluster-secret-file"] === undefined) {
    throw new SecurityConfigError(
      "--api-keys-file needs --cluster-secret-file too: the router and the other members " +
        "call this node with the cluster secret's proof, not with an API key",
    );
  }
  const security = SecurityConfig.fromFlags(values, host, "storage node", log);
  const metrics = parseBoolean(values.metrics, "--metrics") ? new NodeMetrics(security) : null;

  const searchThreads = threadCount("search-threads", values["search-threads"]);
  const buildThreads = threadCount("build-threads", values["build-threads"]);
  // One pool for every collection, started by the first search or batch; its workers load in
  // the background (searches run on this thread until one has loaded).
  const pool = searchThreads > 1 || buildThreads > 1
    ? new GraphPool(Math.max(searchThreads, buildThreads), { logger: log })
    : null;
  log(`graph threads: ${searchThreads} search, ${buildThreads} build`);
  const t0 = Date.now();
  const store = await NodeStore.open(dataDir, {
    threads: pool === null ? null : { pool, search: searchThreads, build: buildThreads },
    observers: metrics?.observers,
    logger: log,
    recovery,
    snapshot_every_ops: positiveInt("snapshot-every-ops", values["snapshot-every-ops"]),
    snapshot_every_ms: positiveInt("snapshot-every-s", values["snapshot-every-s"]) * 1000,
  });
  log(`opened ${dataDir} in ${Date.now() - t0} ms (${store.list().length} collections)`);
  const storeOpenedMs = performance.now();
  // A node away longer than the tombstone grace forgets its entries (tombstone_gc.ts).
  await discardStaleEntries(store, Date.now(), tombstoneGraceMs, log);
  // The heartbeat is at most a quarter of the grace old while the node runs, so an absence is
  // never over-counted by more than that (and a short grace, as in tests, is honoured).
  const collector = new TombstoneCollector(
    store,
    tombstoneGraceMs,
    log,
    tombstoneGraceMs > 0 ? Math.min(HEARTBEAT_EVERY_MS, tombstoneGraceMs / 4) : HEARTBEAT_EVERY_MS,
  );

  let stopping = false;
  const state = { closing: false, transfer_last_ms: 0 };
  const server = new grpc.Server(security.serverOptions(CHANNEL_OPTIONS));
  // Health: NOT_SERVING until the end of start-up, and again from the moment a stop begins.
  const health = new ServerHealth([
    "vectordb.VectorDB",
    "vectordb.internal.Transfer",
    "vectordb.internal.Gossip",
  ]);
  health.addToServer(server);
  addReflection(server, REFLECTED_SERVICES.node);
  const agent = new GossipAgent({
    id: nodeId,
    address: advertise,
    role: "node",
    seeds,
    transport: new GrpcGossipTransport({
      channel_setup: (address) => channelSetup(security.peers, address),
      interceptors: security.peers.interceptors,
    }),
    logger: log,
  });
  agent.onChange((e) => {
    log(
      `member ${e.member.id} (${e.member.address}) ${e.type}, incarnation ${e.member.incarnation}`,
    );
  });
  addGossipService(server, agent);
  metrics?.watchStore(store);
  metrics?.watchGossip(agent);
  addTransferService(server, store, state, {
    logger: log,
    metrics: metrics?.grpc,
    tombstone_grace_ms: tombstoneGraceMs,
  });
  const handlers = nodeHandlers(
    store,
    {
      nodeId,
      address: advertise,
      logger: log,
      members: () => agent.members(),
      drain: () => {
        if (stopping) return false;
        void stop("Drain");
        return true;
      },
      metrics: metrics ?? undefined,
    },
    state,
  );
  server.addService(vectorDbService, handlers);
  const httpApi = httpPort === 0 ? null : new HttpApi({
    kind: "node",
    handlers,
    security,
    ready: () => health.status("") === "SERVING",
    log,
    metrics: metrics?.metrics ?? null,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`${host}:${port}`, security.server_credentials, (err) => {
        if (err) reject(err);
        else resolve();
      });
    });
    await httpApi?.listen(host, httpPort);
  } catch (e) {
    // Nothing was served: close the logs and release the data directory's lock.
    server.forceShutdown();
    await store.close({ snapshot: false });
    await pool?.close();
    throw e;
  }
  const boundMs = performance.now();
  agent.start();
  log(`serving vectordb.VectorDB on ${host}:${port}; gossip as ${advertise}, seeds [${seeds}]`);
  log(
    `start-up: ${Math.round(boundMs)} ms after the process started (modules loaded at ` +
      `${Math.round(modulesLoadedMs)} ms, store opened at ${Math.round(storeOpenedMs)} ms, ` +
      `bound at ${Math.round(boundMs)} ms)`,
  );
  if (httpApi !== null) log(`serving the HTTP API on ${host}:${httpPort}`);

  let ticking = false;
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = true;
    // The heartbeat follows whatever the snapshot tick did: a node that runs must beat.
    store.tick()
      .catch((e) => log(`snapshot tick failed: ${(e as Error).message}`))
      .then(() =>
        collector.tick().catch((e) =>
          log(`tombstone collection or heartbeat failed: ${(e as Error).message}`)
        )
      )
      .finally(() => (ticking = false));
  }, 1000);

  /** Set by a signal that arrives while a drain waits for its hand-off: stop waiting. */
  let interrupted = false;
  const stop = async (cause: "SIGINT" | "SIGTERM" | "Drain") => {
    if (stopping) return;
    stopping = true;
    if (cause === "Drain") {
      // Out of rotation at once; Transfer keeps serving the router's hand-off copies.
      health.notServing(["vectordb.VectorDB", "vectordb.internal.Gossip"]);
      log("Drain: leaving the cluster and handing this node's entries off");
      const routers = agent.members().filter((m) =>
        m.meta.role === "router" && (m.state === "alive" || m.state === "suspect")
      );
      await agent.leave();
      if (handoffTimeoutS > 0 && routers.length > 0) {
        const entries = () => store.list().reduce((n, c) => n + c.entryCount, 0);
        log(
          `handing off ${entries()} entries: waiting for ${routers.map((r) => r.id).join(", ")} ` +
            `to copy them to their owners (up to ${handoffTimeoutS} s)`,
        );
        const r = await waitForDrain({
          entries,
          last_transfer_ms: () => state.transfer_last_ms,
          now_ms: () => Date.now(),
          sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
          timeout_ms: handoffTimeoutS * 1000,
          idle_ms: DRAIN_IDLE_MS,
          stop_now: () => interrupted,
        });
        log(
          r.outcome === "done"
            ? `hand-off complete in ${r.waited_ms} ms: every entry is placed on its owners`
            : `WARNING hand-off ended (${r.outcome}) after ${r.waited_ms} ms with ${r.entries} ` +
              `entries still here; their replicas elsewhere serve them`,
        );
      }
    } else {
      log(
        `${cause}: stopping with the data kept (not leaving the cluster: the others see this ` +
          `node down until it starts again; \`client drain\` hands its data off instead)`,
      );
    }
    const t0 = Date.now();
    // Before tryShutdown: probes see NOT_SERVING while requests finish; Watch streams end.
    health.close();
    state.closing = true;
    clearInterval(timer);
    await Promise.all([
      httpApi?.close(5000),
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 5000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
    ]);
    agent.stop();
    await store.close({ snapshot: true });
    await pool?.close();
    log(`stopped in ${Date.now() - t0} ms (requests finished, snapshots written)`);
    process.exit(0);
  };
  const onSignal = (signal: "SIGINT" | "SIGTERM") => {
    if (stopping) {
      // During a drain's hand-off: stop waiting for it (the data stays here).
      if (!interrupted) log(`${signal}: ending the hand-off wait`);
      interrupted = true;
      return;
    }
    void stop(signal);
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGHUP", () => void security.reloadKeys());
  // Only now: a supervisor may stop the node as soon as it reads READY, and a signal that
  // arrives before the handlers above are installed kills it without a snapshot.
  health.ready();
  console.log(`READY ${host}:${port}`);
}

// Run when executed directly (tsx/node or deno), not when imported by tests.
const invoked = process.argv[1] ?? "";
// The bundle (scripts/tools/build_js.ts) inlines this module: its own path then ends the line.
if (invoked.endsWith("src/node/main.ts") || invoked.endsWith("build/js/node.mjs")) {
  main(process.argv.slice(2)).catch((e) => {
    const message = `server: ${(e as Error).message}`;
    if (logger?.format === "json") logger.error(message);
    else console.error(message);
    process.exit(e instanceof ConfigError ? 2 : 1);
  });
}
