/**
 * The router process: `deno task router [--port 50050] [--nodes …] …`, run under Node 20
 * through tsx (`node --import tsx src/router/main.ts`), like the storage node, because of
 * denoland/deno#36788.
 *
 * | flag                   | default         | meaning                                       |
 * | ---------------------- | --------------- | --------------------------------------------- |
 * | `--port`               | 50050           | gRPC port                                     |
 * | `--host`               | 127.0.0.1       | address to bind                               |
 * | `--nodes`              | see below       | storage nodes, host:port,… (ring member ids)  |
 * | `--join`               | (none)          | gossip seeds, host:port,…: follow the cluster |
 * | `--advertise`          | `<host>:<port>` | address other members reach the router at     |
 * | `--node-id`            | `router@<adv.>` | the router's gossip member id                 |
 * | `--replication-factor` | 2               | owners per point                              |
 * | `--consistency`        | quorum          | default write consistency (one, quorum, all)  |
 * | `--node-timeout-ms`    | 2000            | deadline of each call to a node               |
 * | `--data-dir`           | ./data/router   | hint logs                                     |
 * | `--hints-max`          | 100000          | pending hints per node                        |
 * | `--hint-bytes-max`     | 268435456       | pending hint payload bytes per node           |
 * | `--retry-interval-ms`  | 500             | pause between attempts to reach a down node   |
 * | `--transfers-max`      | 2               | rebalancing: most transfers at once           |
 * | `--transfer-bytes-per-s` | 134217728     | rebalancing: bandwidth of shard files moved (0: no limit) |
 * | `--rebalance-delay-ms` | 500             | rebalancing: ring stability before it starts  |
 * | `--anti-entropy-s`     | 600             | gossip: full anti-entropy run period; 0 never |
 * | `--dead-grace-s`       | 30              | gossip: re-replicate a dead node after; 0 now |
 * | `--recall-sample-rate` | 0.01            | recall monitor: share of searches re-run exactly; 0 off |
 * | `--recall-warn-below`  | 0.9             | recall monitor: warn when rolling recall@k is below |
 * | `--search-hedge-ms`    | 20              | search: hedge floor; a node slower than max(this, factor × recent latency) has its shards asked of other replicas too; 0 off |
 * | `--search-hedge-factor` | 3              | search: hedge delay as a multiple of the recent Search latency |
 * | `--search-hedges-max`  | 2               | search: hedged requests per search at most    |
 * | `--search-batch-max`   | 32              | search: concurrent searches bound for one node travel as one SearchBatch of at most this many (search_coalescer.ts); 0 off |
 * | `--search-batch-affinity` | 2            | search: a replica the search would share a batch with is preferred while it costs at most this many times the best (search_plan.ts); 0 off, else 1 .. 100 |
 * | `--log-level`, `--log-format` | info, text | least important messages logged; `json`: one object per line |
 *
 * {@link ROUTER_FLAGS} is the source of truth: the parser and `--help` come from it. Every flag
 * may also be set by `VECTORDB_<FLAG>` in the environment or a key of a `--config` JSON file
 * (precedence flag > env > file > default; src/common/config.ts). `--help` and `--version` print
 * and exit 0; a bad flag, variable or config file exits 2.
 * | `--http-port`          | `<port>` + 1000 | HTTP/JSON API (src/api/http.ts); 0: off       |
 * | `--metrics`            | true            | Prometheus metrics at `GET /metrics` on the HTTP port (src/router/metrics.ts); false: none collected, 404 |
 *
 * `--nodes` defaults to 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053, the three nodes of
 * `deno task cluster`, so the original quickstart needs no flags; with `--join` it defaults
 * to none. With `--join` the router is a gossip member (role "router", holding no data) and its
 * ring follows the storage nodes gossip reports; each node of a `--nodes` list given as well
 * stays on the ring until gossip reports it (so the ring never shrinks while the router joins).
 * Ring member ids are node addresses either way (see router.ts). With `--join` the router also
 * moves points when its ring changes (src/router/rebalance/rebalancer.ts).
 *
 * `--dead-grace-s`: a node declared dead (a crash, or a restart: SIGTERM does not leave) has its
 * ranges re-replicated only this long after; one back within it moves nothing but the writes
 * it missed.
 *
 * The port also serves `grpc.health.v1.Health` (NOT_SERVING until the first ring reconcile,
 * SERVING until a stop begins) and server reflection (src/api/health.ts, src/api/reflection.ts).
 *
 * Prints `READY <host>:<port>` on stdout once it serves. SIGINT/SIGTERM: health NOT_SERVING, stop
 * accepting, finish in-flight requests (up to 5 s), close hint logs, exit 0.
 *
 * @module
 */

import process from "node:process";
import { parseConsistency } from "./plan.ts";
import { SEARCH_BATCH_MAX } from "../common/limits.ts";
import { Router, type RouterOptions } from "./router.ts";
import { SECURITY_FLAGS, SecurityConfig, type SecurityFlags } from "../api/security.ts";
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
import {
  LOG_FLAGS,
  type LogFormat,
  Logger,
  type LogLevel,
  parseLogFormat,
  parseLogLevel,
} from "../common/log.ts";
import { SOFTWARE_VERSION, versionLine } from "../common/software_version.ts";
import { HTTP_FLAGS, resolveHttpPort } from "../api/http.ts";

/** Default storage nodes: the three of `deno task cluster`. */
export const DEFAULT_NODES = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

/** A command-line flag is wrong. */
export class RouterUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RouterUsageError";
  }
}

function integer(name: string, value: string, min: number, max: number): number {
  const x = Number(value);
  if (value.trim() === "" || !Number.isInteger(x) || x < min || x > max) {
    throw new RouterUsageError(`--${name} "${value}" must be an integer between ${min} and ${max}`);
  }
  return x;
}

/** `--search-batch-max`: 0 (off) or 2 .. SEARCH_BATCH_MAX; 1 reads as 0 (a batch of one is a Search). */
function batchMax(value: string): number {
  const x = integer("search-batch-max", value, 0, SEARCH_BATCH_MAX);
  return x === 1 ? 0 : x;
}

/** `--search-batch-affinity`: 0 (off) or a ratio in 1 .. 100 (below 1 no replica could qualify). */
function batchAffinity(value: string): number {
  const x = Number(value);
  if (value.trim() === "" || !(x === 0 || (x >= 1 && x <= 100))) {
    throw new RouterUsageError(
      `--search-batch-affinity "${value}" must be 0 (off) or a number from 1 to 100`,
    );
  }
  return x;
}

/** `value` when it is host:port with a port in 1..65535, else a usage error naming the flag. */
function hostPort(name: string, value: string): string {
  const m = /^([^\s:]+):(\d{1,5})$/.exec(value);
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new RouterUsageError(`--${name} entry "${value}" must be host:port`);
  }
  return value;
}

/** The router's flags: the parser and `--help` come from here. */
export const ROUTER_FLAGS = {
  port: { type: "string", default: "50050", arg: "PORT", help: "gRPC port (0 picks a free one)" },
  host: { type: "string", default: "127.0.0.1", arg: "HOST", help: "address to bind" },
  nodes: {
    type: "string",
    list: true,
    arg: "HOST:PORT,...",
    default_text: `${DEFAULT_NODES} (none with --join)`,
    help: "static storage nodes (ring member ids)",
  },
  join: {
    type: "string",
    default: "",
    list: true,
    arg: "HOST:PORT,...",
    help: "gossip seeds: follow the cluster's membership",
  },
  advertise: {
    type: "string",
    arg: "HOST:PORT",
    default_text: "<host>:<port>",
    help: "address other members reach the router at",
  },
  "node-id": {
    type: "string",
    arg: "ID",
    default_text: "router@<advertise>",
    help: "the router's gossip member id",
  },
  "replication-factor": { type: "string", default: "2", arg: "N", help: "owners per point" },
  consistency: {
    type: "string",
    default: "quorum",
    arg: "LEVEL",
    help: "default write consistency: one, quorum or all",
  },
  "node-timeout-ms": {
    type: "string",
    default: "2000",
    arg: "MS",
    help: "deadline of each call to a node",
  },
  "data-dir": { type: "string", default: "./data/router", arg: "DIR", help: "hint logs" },
  "hints-max": { type: "string", default: "100000", arg: "N", help: "pending hints per node" },
  "hint-bytes-max": {
    type: "string",
    default: String(256 * 2 ** 20),
    arg: "BYTES",
    help: "pending hint payload bytes per node",
  },
  "retry-interval-ms": {
    type: "string",
    default: "500",
    arg: "MS",
    help: "pause between attempts to reach a down node",
  },
  "transfers-max": {
    type: "string",
    default: "2",
    arg: "N",
    help: "rebalancing: most transfers at once",
  },
  "transfer-bytes-per-s": {
    type: "string",
    default: "134217728",
    arg: "BYTES",
    help: "rebalancing: bandwidth of shard files moved, all moves together (0: no limit)",
  },
  "rebalance-delay-ms": {
    type: "string",
    default: "500",
    arg: "MS",
    help: "rebalancing: ring stability before it starts",
  },
  "anti-entropy-s": {
    type: "string",
    default: "600",
    arg: "S",
    help: "gossip: full anti-entropy run period; 0 never",
  },
  "dead-grace-s": {
    type: "string",
    default: "30",
    arg: "S",
    help: "gossip: re-replicate a dead node's ranges after this long; 0 at once",
  },
  "recall-sample-rate": {
    type: "string",
    default: "0.01",
    arg: "FRACTION",
    help: "recall monitor: share of searches whose exact top-k is recomputed; 0 off",
  },
  "recall-warn-below": {
    type: "string",
    default: "0.9",
    arg: "RECALL",
    help: "recall monitor: log a warning when a collection's rolling recall@k falls below",
  },
  "search-hedge-ms": {
    type: "string",
    default: "20",
    arg: "MS",
    help: "search: hedge floor; a node slower than max(this, factor x recent latency) has its " +
      "shards asked of their other replicas too; 0 off",
  },
  "search-hedge-factor": {
    type: "string",
    default: "3",
    arg: "X",
    help: "search: hedge delay as a multiple of the cluster's recent Search latency",
  },
  "search-hedges-max": {
    type: "string",
    default: "2",
    arg: "N",
    help: "search: hedged requests one search sends at most",
  },
  "search-batch-max": {
    type: "string",
    default: "32",
    arg: "N",
    help: "search: concurrent searches bound for one node travel as one SearchBatch of at " +
      "most this many; 0 off",
  },
  "search-batch-affinity": {
    type: "string",
    default: "2",
    arg: "X",
    help: "search: a replica the search would share a batch with is preferred while its cost " +
      "is at most X times the best replica's; 0 off, else 1 .. 100",
  },
  ...HTTP_FLAGS,
  ...SECURITY_FLAGS,
  ...LOG_FLAGS,
} as const satisfies FlagTable;

/** `--help` of the router. */
export function routerHelp(): string {
  return formatHelp(ROUTER_FLAGS, {
    usage: "router [flags]   (deno task router -- [flags])",
    about: `The router of vectordb ${SOFTWARE_VERSION}: serves vectordb.VectorDB to clients, ` +
      "places points on storage nodes by consistent hashing with replication; prints " +
      "READY <host>:<port> on stdout once it serves.",
    notes: "Exit status: 0 after SIGINT/SIGTERM or --help/--version, 2 for a bad flag, " +
      "environment variable or config file, 1 for any other failure.",
  });
}

/** What {@link parseRouterArgs} returns. */
export type RouterArgs = RouterOptions & {
  security_flags: SecurityFlags;
  log_level: LogLevel;
  log_format: LogFormat;
};

/** Reads the router's configuration: command line > `env` > `--config` file > defaults. */
export function loadRouterConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
  read_file?: (path: string) => string,
): ResolvedConfig<typeof ROUTER_FLAGS> {
  const args = argv[0] === "--" ? argv.slice(1) : argv.slice();
  try {
    return resolveConfig({ flags: ROUTER_FLAGS, argv: args, env, read_file });
  } catch (e) {
    if (e instanceof ConfigError) throw new RouterUsageError(e.message);
    throw e;
  }
}

/**
 * Parses the router's command line (a leading "--" from `deno task router -- …` is dropped),
 * with `env`'s `VECTORDB_*` variables and a `--config` file under it.
 */
export function parseRouterArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
  read_file?: (path: string) => string,
): RouterArgs {
  return routerArgs(loadRouterConfig(argv, env, read_file));
}

/** The router's options from its configuration (usage errors say where a bad value came from). */
export function routerArgs(config: ResolvedConfig<typeof ROUTER_FLAGS>): RouterArgs {
  try {
    return checkedArgs(config.values);
  } catch (e) {
    if (e instanceof RouterUsageError) throw new RouterUsageError(annotateError(e.message, config));
    throw e;
  }
}

function checkedArgs(values: ResolvedConfig<typeof ROUTER_FLAGS>["values"]): RouterArgs {
  const list = (name: string, value: string) => {
    const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    for (const n of items) hostPort(name, n);
    return items;
  };
  const join = list("join", values.join!);
  const nodesFlag = values.nodes ?? (join.length > 0 ? "" : DEFAULT_NODES);
  const nodes = list("nodes", nodesFlag);
  if (nodes.length === 0 && join.length === 0) {
    throw new RouterUsageError(`--nodes "${nodesFlag}" names no node`);
  }
  const advertise = values.advertise === undefined
    ? undefined
    : hostPort("advertise", values.advertise);
  const node_id = values["node-id"];
  if (node_id !== undefined && (node_id.trim() === "" || node_id.length > 256)) {
    throw new RouterUsageError(`--node-id "${node_id}" must be 1 to 256 characters`);
  }
  let consistency;
  try {
    consistency = parseConsistency(values.consistency);
  } catch (e) {
    throw new RouterUsageError(`--consistency: ${(e as Error).message}`);
  }
  const port = integer("port", values.port!, 0, 65535);
  let http_port;
  try {
    http_port = resolveHttpPort(values["http-port"], port);
  } catch (e) {
    throw new RouterUsageError((e as Error).message);
  }
  let metrics;
  try {
    metrics = parseBoolean(values.metrics ?? "true", "--metrics");
  } catch (e) {
    throw new RouterUsageError((e as Error).message);
  }
  return {
    host: values.host!,
    port,
    http_port,
    metrics,
    nodes,
    join,
    advertise,
    node_id,
    replication_factor: integer("replication-factor", values["replication-factor"]!, 1, 64),
    consistency,
    node_timeout_ms: integer("node-timeout-ms", values["node-timeout-ms"]!, 1, 3_600_000),
    data_dir: values["data-dir"]!,
    hints_max: integer("hints-max", values["hints-max"]!, 1, 100_000_000),
    hint_bytes_max: integer("hint-bytes-max", values["hint-bytes-max"]!, 1, 2 ** 40),
    retry_interval_ms: integer("retry-interval-ms", values["retry-interval-ms"]!, 1, 600_000),
    transfers_max: integer("transfers-max", values["transfers-max"]!, 1, 64),
    transfer_bytes_per_s: integer(
      "transfer-bytes-per-s",
      values["transfer-bytes-per-s"]!,
      0,
      2 ** 40,
    ),
    rebalance_delay_ms: integer("rebalance-delay-ms", values["rebalance-delay-ms"]!, 0, 600_000),
    anti_entropy_interval_ms: integer("anti-entropy-s", values["anti-entropy-s"]!, 0, 86_400) *
      1000,
    dead_grace_ms: integer("dead-grace-s", values["dead-grace-s"]!, 0, 86_400) * 1000,
    recall_sample_rate: fraction("recall-sample-rate", values["recall-sample-rate"]!),
    recall_warn_below: fraction("recall-warn-below", values["recall-warn-below"]!),
    search: {
      hedge_ms: integer("search-hedge-ms", values["search-hedge-ms"]!, 0, 600_000),
      hedge_factor: positive("search-hedge-factor", values["search-hedge-factor"]!, 100),
      hedges_max: integer("search-hedges-max", values["search-hedges-max"]!, 0, 64),
      batch_max: batchMax(values["search-batch-max"]!),
      batch_affinity: batchAffinity(values["search-batch-affinity"]!),
    },
    security_flags: {
      "api-keys-file": values["api-keys-file"],
      "cluster-secret-file": values["cluster-secret-file"],
      "tls-cert": values["tls-cert"],
      "tls-key": values["tls-key"],
      "tls-ca": values["tls-ca"],
      insecure: values.insecure,
    },
    log_level: usage(() => parseLogLevel(values["log-level"])),
    log_format: usage(() => parseLogFormat(values["log-format"])),
  };
}

/** A number between 0 and 1 (inclusive), else a usage error naming the flag. */
function fraction(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !(n >= 0 && n <= 1)) {
    throw new RouterUsageError(`--${name} "${value}" must be a number between 0 and 1`);
  }
  return n;
}

function positive(name: string, value: string, max: number): number {
  const n = Number(value);
  if (value.trim() === "" || !(n > 0 && n <= max)) {
    throw new RouterUsageError(`--${name} "${value}" must be a number above 0 and at most ${max}`);
  }
  return n;
}

function usage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ConfigError) throw new RouterUsageError(e.message);
    throw e;
  }
}

/** The logger, once the flags are read: main's caller writes a fatal error through it. */
let logger: Logger | null = null;

/** Starts the router and stops it on SIGINT/SIGTERM (`env`: where `VECTORDB_*` come from). */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<void> {
  const config = loadRouterConfig(argv, env);
  if (config.help) {
    console.log(routerHelp());
    return;
  }
  if (config.version) {
    console.log(versionLine("router"));
    return;
  }
  const options = routerArgs(config);
  logger = new Logger({
    component: "router",
    node: options.node_id,
    text_name: "router",
    level: options.log_level,
    format: options.log_format,
  });
  const log = logger.legacy;
  for (const w of config.warnings) logger.warn(w);
  const settings = describeSettings(config);
  if (settings !== "") logger.info(`settings from the environment or config file: ${settings}`);
  const security = SecurityConfig.fromFlags(options.security_flags, options.host!, "router", log);
  const router = await Router.start({ ...options, security, logger: log });
  log(
    `serving vectordb.VectorDB on ${router.address}: ` +
      (options.join!.length > 0
        ? `gossip as ${router.agent!.id} (${router.agent!.address}) through ` +
          `${options.join!.join(",")}, static nodes [${options.nodes.join(",")}], `
        : `nodes ${options.nodes.join(",")}, `) +
      `replication factor ${router.config.replication_factor}, consistency ` +
      `${options.consistency}, ${router.shards.length} shards, data ${options.data_dir}`,
  );
  if (router.http_port !== 0) log(`serving the HTTP API on ${options.host}:${router.http_port}`);
  for (const [node, n] of router.pendingHints()) {
    if (n > 0) log(`${n} hints pending for ${node}; replaying when it answers`);
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down`);
    await router.stop();
    log("stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGHUP", () => void security.reloadKeys());
  // Only now: a SIGTERM sent right after READY must find the handlers installed.
  console.log(`READY ${router.address}`);
}

// Run when executed directly, not when imported by tests.
const invoked = process.argv[1] ?? "";
// The bundle (scripts/tools/build_js.ts) inlines this module: its own path then ends the line.
if (invoked.endsWith("src/router/main.ts") || invoked.endsWith("build/js/router.mjs")) {
  main(process.argv.slice(2)).catch((e) => {
    const message = `router: ${(e as Error).message}`;
    if (logger?.format === "json") logger.error(message);
    else console.error(message);
    process.exit(e instanceof RouterUsageError ? 2 : 1);
  });
}
