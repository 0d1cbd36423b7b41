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
 * | `--rebalance-delay-ms` | 500             | rebalancing: ring stability before it starts  |
 * | `--anti-entropy-s`     | 600             | gossip: full anti-entropy run period; 0 never |
 * | `--dead-grace-s`       | 30              | gossip: re-replicate a dead node after; 0 now |
 * | `--http-port`          | `<port>` + 1000 | HTTP/JSON API (src/api/http.ts); 0: off       |
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
import { parseArgs } from "node:util";
import { parseConsistency } from "./plan.ts";
import { Router, type RouterOptions } from "./router.ts";
import { SECURITY_FLAGS, SecurityConfig, type SecurityFlags } from "../api/security.ts";
import { resolveHttpPort } from "../api/http.ts";

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

/** `value` when it is host:port with a port in 1..65535, else a usage error naming the flag. */
function hostPort(name: string, value: string): string {
  const m = /^([^\s:]+):(\d{1,5})$/.exec(value);
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new RouterUsageError(`--${name} entry "${value}" must be host:port`);
  }
  return value;
}

/** Parses the router's command line (a leading "--" from `deno task router -- …` is dropped). */
export function parseRouterArgs(
  argv: readonly string[],
): RouterOptions & { security_flags: SecurityFlags } {
  const args = argv[0] === "--" ? argv.slice(1) : argv.slice();
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        port: { type: "string", default: "50050" },
        host: { type: "string", default: "127.0.0.1" },
        nodes: { type: "string" },
        join: { type: "string", default: "" },
        advertise: { type: "string" },
        "node-id": { type: "string" },
        "replication-factor": { type: "string", default: "2" },
        consistency: { type: "string", default: "quorum" },
        "node-timeout-ms": { type: "string", default: "2000" },
        "data-dir": { type: "string", default: "./data/router" },
        "hints-max": { type: "string", default: "100000" },
        "hint-bytes-max": { type: "string", default: String(256 * 2 ** 20) },
        "retry-interval-ms": { type: "string", default: "500" },
        "transfers-max": { type: "string", default: "2" },
        "rebalance-delay-ms": { type: "string", default: "500" },
        "anti-entropy-s": { type: "string", default: "600" },
        "dead-grace-s": { type: "string", default: "30" },
        "http-port": { type: "string" },
        ...SECURITY_FLAGS,
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new RouterUsageError((e as Error).message);
  }
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
  return {
    host: values.host!,
    port,
    http_port,
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
    rebalance_delay_ms: integer("rebalance-delay-ms", values["rebalance-delay-ms"]!, 0, 600_000),
    anti_entropy_interval_ms: integer("anti-entropy-s", values["anti-entropy-s"]!, 0, 86_400) *
      1000,
    dead_grace_ms: integer("dead-grace-s", values["dead-grace-s"]!, 0, 86_400) * 1000,
    security_flags: {
      "api-keys-file": values["api-keys-file"],
      "cluster-secret-file": values["cluster-secret-file"],
      "tls-cert": values["tls-cert"],
      "tls-key": values["tls-key"],
      "tls-ca": values["tls-ca"],
      insecure: values.insecure,
    },
  };
}

/** Starts the router and stops it on SIGINT/SIGTERM. */
export async function main(argv: readonly string[]): Promise<void> {
  const options = parseRouterArgs(argv);
  const log = (m: string) => console.error(`${new Date().toISOString()} router ${m}`);
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
if (invoked.endsWith("src/router/main.ts")) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`router: ${(e as Error).message}`);
    process.exit(e instanceof RouterUsageError ? 2 : 1);
  });
}
