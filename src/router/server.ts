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
 * | Get                         | asks owners one at a time, up-to-date ones first; falls back    |
 * | Search                      | nodes covering the ring (k, caller's ef); merged, deduped       |
 * | Create/DropCollection       | to every node; success per consistency over all nodes           |
 * | ListCollections             | union over the nodes that answered                              |
 * | Stats                       | per node (with hint counts), collections summed                 |
 * | Members                     | the nodes as the router sees them (alive / dead) and itself     |
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
 * only after the delivered watermark is durable. Concurrent writes to one id (neither waiting
 * for the other) have no defined order, across replicas either: that needs per-write versions,
 * which this design does not have. A direct write that timed out may still be applied by the
 * node later than its replayed copy; with node deadlines that window is small but not zero.
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
import type { Consistency } from "../api/limits.ts";
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
import { HashRing } from "../cluster/ring.ts";
import { decodeRecord, type WalRecord } from "../storage/records.ts";
import { OwnerHandoff } from "./handoff.ts";
import { type Hint, HintLog, HintQueueFullError } from "./hint_log.ts";
import {
  decideBatch,
  decideWrite,
  mergeSearchResults,
  readOrder,
  searchCoverage,
  searchRetryTargets,
  searchTargets,
  splitBatch,
} from "./plan.ts";
import { ringShards } from "./shards.ts";

/** Software version reported by Stats. */
export const ROUTER_VERSION = "0.1.0";
/** Hints delivered between two durable watermark updates. */
export const REPLAY_BATCH = 64;
/** Period of the background loop that ticks every node's handoff state. */
export const TICK_INTERVAL_MS = 100;
/** Longest pause between a node channel's reconnect attempts. */
export const RECONNECT_BACKOFF_MAX_MS = 1000;
/** Most log lines about a full hint queue per node per 10 s. */
const FULL_LOG_INTERVAL_MS = 10_000;

/** Options of {@link Router.start}. */
export interface RouterOptions {
  /** Address to bind; default 127.0.0.1. */
  host?: string;
  /** Port to serve on (0 picks a free one). */
  port: number;
  /** Storage node addresses, host:port; also their ring member ids. */
  nodes: string[];
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
  client: ApiClient;
  handoff: OwnerHandoff;
  hints: HintLog;
  /** Writes refused because its hint queue was full. */
  refused: number;
  /** Hints discarded because the node rejected them for good. */
  discarded: number;
  last_full_log_ms: number;
  last_error: string;
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

/** The router. Create with {@link Router.start}. */
export class Router {
  readonly address: string;
  readonly options: Required<Omit<RouterOptions, "vnodes_per_member" | "logger">>;
  readonly ring: HashRing;
  readonly shards: string[][];
  readonly #server: grpc.Server;
  readonly #links: Map<string, NodeLink>;
  readonly #log: (message: string) => void;
  readonly #started_ms = Date.now();
  readonly #background = new Set<Promise<void>>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #stopping = false;

  private constructor(
    address: string,
    options: Router["options"],
    ring: HashRing,
    server: grpc.Server,
    links: Map<string, NodeLink>,
    log: (message: string) => void,
  ) {
    this.address = address;
    this.options = options;
    this.ring = ring;
    this.shards = ringShards(ring, options.replication_factor);
    this.#server = server;
    this.#links = links;
    this.#log = log;
  }

  /** Opens the hint logs, binds the port and starts the background loop. */
  static async start(options: RouterOptions): Promise<Router> {
    const log = options.logger ?? ((m: string) => console.error(m));
    const nodes = [...new Set(options.nodes)];
    if (nodes.length === 0) throw new RangeError("The router needs at least one storage node");
    for (const n of nodes) {
      if (!/^[^\s:]+:\d{1,5}$/.test(n)) {
        throw new RangeError(`Node address ${JSON.stringify(n)} must be host:port`);
      }
    }
    const rf = options.replication_factor;
    if (!Number.isInteger(rf) || rf < 1) {
      throw new RangeError(`Replication factor ${rf} must be a positive integer`);
    }
    if (rf > nodes.length) {
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
      replication_factor: Math.min(rf, nodes.length),
      consistency: options.consistency,
      node_timeout_ms: options.node_timeout_ms,
      data_dir: options.data_dir,
      hints_max: options.hints_max ?? 100_000,
      hint_bytes_max: options.hint_bytes_max ?? 256 * 2 ** 20,
      retry_interval_ms: options.retry_interval_ms ?? 500,
    };
    const ring = new HashRing({ members: nodes, vnodes_per_member: options.vnodes_per_member });
    const links = new Map<string, NodeLink>();
    try {
      for (const address of nodes) {
        const hints = await HintLog.open(
          address,
          join(full.data_dir, "hints", sanitize(address)),
          { hints_max: full.hints_max, hint_bytes_max: full.hint_bytes_max, logger: log },
        );
        const client = new ApiClient(address, {
          timeout_ms: full.node_timeout_ms,
          client_options: {
            "grpc.initial_reconnect_backoff_ms": 200,
            "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_MAX_MS,
            "grpc.min_reconnect_backoff_ms": 100,
          },
        });
        links.set(address, {
          address,
          client,
          hints,
          handoff: new OwnerHandoff(address, {
            retry_interval_ms: full.retry_interval_ms,
            pending: hints.pending,
          }),
          refused: 0,
          discarded: 0,
          last_full_log_ms: 0,
          last_error: "",
        });
      }
    } catch (e) {
      for (const l of links.values()) {
        l.client.close();
        await l.hints.close();
      }
      throw e;
    }
    const server = new grpc.Server(CHANNEL_OPTIONS);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(
        `${full.host}:${full.port}`,
        grpc.ServerCredentials.createInsecure(),
        (err, bound) => (err ? reject(err) : resolve(bound)),
      );
    }).catch(async (e) => {
      for (const l of links.values()) {
        l.client.close();
        await l.hints.close();
      }
      throw e;
    });
    const router = new Router(`${full.host}:${port}`, { ...full, port }, ring, server, links, log);
    server.addService(vectorDbService, router.handlers());
    router.#timer = setInterval(() => router.#tickAll(), TICK_INTERVAL_MS);
    router.#tickAll();
    return router;
  }

  /** Stops serving, lets replays finish their current hint, closes hint logs and channels. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#timer !== null) clearInterval(this.#timer);
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
    for (const l of this.#links.values()) {
      await l.hints.close();
      l.client.close();
    }
  }

  /** Pending hints per node (for tests and logs). */
  pendingHints(): Map<string, number> {
    return new Map([...this.#links].map(([a, l]) => [a, l.hints.pending]));
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
    };
  }

  async #put(req: VectorDBMethods["Put"]["request"]): Promise<VectorDBMethods["Put"]["response"]> {
    const v = validatePutRequest(req);
    const consistency = v.consistency ?? this.options.consistency;
    const owners = this.ring.owners(v.id, this.options.replication_factor);
    const record: WalRecord = {
      kind: "put",
      collection: v.collection,
      id: v.id,
      vector: Float32Array.from(v.vector),
    };
    const request = { id: v.id, vector: v.vector, collection: v.collection };
    const results = await this.#write(owners, "Put", () => request, record);
    const acked = this.#ackedSet(results);
    const d = decideWrite(owners, acked, consistency, `the put of id ${v.id}`);
    if (!d.ok) this.#failWrite(results, d.message);
    const primary = results.get(owners[0]);
    return {
      ok: true,
      seq: primary?.kind === "acked" ? String(primary.response.seq ?? "0") : "0",
      replicas_acked: d.acked,
    };
  }

  async #putBatch(
    req: VectorDBMethods["PutBatch"]["request"],
  ): Promise<VectorDBMethods["PutBatch"]["response"]> {
    const v = validatePutBatchRequest(req);
    const consistency = v.consistency ?? this.options.consistency;
    const split = splitBatch(this.ring, this.options.replication_factor, v.points);
    const owners = [...split.per_owner.keys()];
    const dimension = v.points[0].vector.length;
    const results = await this.#write(
      owners,
      "PutBatch",
      (o) => ({ points: split.per_owner.get(o)!, collection: v.collection }),
      (o) => batchRecord(v.collection, dimension, split.per_owner.get(o)!),
    );
    const d = decideBatch(split.owner_sets, this.#ackedSet(results), consistency);
    if (!d.ok) this.#failWrite(results, d.message);
    const seqs = [...results.values()].map((r) => r.kind === "acked" ? r.response.seq : undefined);
    return { count: v.points.length, seq: maxSeq(seqs) };
  }

  async #delete(
    req: VectorDBMethods["Delete"]["request"],
  ): Promise<VectorDBMethods["Delete"]["response"]> {
    const v = validatePointRef(req);
    const consistency = v.consistency ?? this.options.consistency;
    const owners = this.ring.owners(v.id, this.options.replication_factor);
    const record: WalRecord = { kind: "delete", collection: v.collection, id: v.id };
    const request = { id: v.id, collection: v.collection };
    const results = await this.#write(owners, "Delete", () => request, record);
    // A node without the collection has nothing to delete: that is an acknowledgement.
    for (const [o, r] of results) {
      if (
        r.kind === "rejected" && isServiceError(r.error) && r.error.code === grpc.status.NOT_FOUND
      ) {
        if ([...results.values()].some((x) => x.kind === "acked")) {
          results.set(o, { kind: "acked", response: { deleted: false, seq: "0" } });
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
    };
  }

  async #get(req: VectorDBMethods["Get"]["request"]): Promise<VectorDBMethods["Get"]["response"]> {
    const v = validatePointRef(req);
    const owners = this.ring.owners(v.id, this.options.replication_factor);
    const order = readOrder(
      owners,
      (o) => this.#link(o).hints.pending,
      (o) => this.#link(o).handoff.reachable,
    );
    let fallback: { response?: VectorDBMethods["Get"]["response"]; error?: unknown } | null = null;
    const errors: string[] = [];
    for (const o of order) {
      const link = this.#link(o);
      const stale = link.hints.pending > 0;
      try {
        const res = await link.client.call("Get", { id: v.id, collection: v.collection });
        this.#observe(link, null);
        if (!stale || res.found) return res;
        fallback ??= { response: res };
      } catch (e) {
        this.#observe(link, e);
        if (isTransient(e)) {
          errors.push(`${o}: ${describeGrpcError(e)}`);
          continue;
        }
        if (!stale) throw e;
        fallback ??= { error: e };
      }
    }
    if (fallback !== null) {
      if (fallback.response !== undefined) return fallback.response;
      throw fallback.error;
    }
    throw new RouterStatusError(
      grpc.status.UNAVAILABLE,
      `None of the ${owners.length} owners of id ${v.id} answered: ${errors.join("; ")}`,
    );
  }

  async #search(
    req: VectorDBMethods["Search"]["request"],
  ): Promise<VectorDBMethods["Search"]["response"]> {
    const v = validateSearchRequest(req);
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
    await round(searchTargets(this.options.nodes, this.shards, down), false);
    // A node believed down may be back while its channel still waits out its reconnect
    // backoff (up to 1 s); the second round waits for the channel, for a bounded time.
    const retry = searchRetryTargets(this.options.nodes, this.shards, answered, asked);
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
    const coverage = searchCoverage(this.shards, answered);
    return { results, ...coverage };
  }

  async #createCollection(
    req: VectorDBMethods["CreateCollection"]["request"],
  ): Promise<VectorDBMethods["CreateCollection"]["response"]> {
    const v = validateCreateCollectionRequest(req);
    const nodes = this.options.nodes;
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
    const nodes = this.options.nodes;
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
    const nodes = this.options.nodes;
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
    const nodes = this.options.nodes;
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
    const mem = process.memoryUsage();
    return {
      node_id: `router@${this.address}`,
      collections: [...sums.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
      uptime_ms: Date.now() - this.#started_ms,
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      version: ROUTER_VERSION,
      is_router: true,
      nodes: per,
    };
  }

  #members(): VectorDBMethods["Members"]["response"] {
    const members = this.options.nodes.map((address) => ({
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
        const response = await link.client.call(method, requestFor(o));
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
    if (wait && link.handoff.waitForDelivery()) {
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
    if (l === undefined) throw new Error(`Node ${address} is not one of the router's nodes`);
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
    for (const link of this.#links.values()) this.#tick(link);
  }

  #tick(link: NodeLink): void {
    if (this.#stopping) return;
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
    // More may have been queued while the last commit ran.
    if (ok && link.hints.pending > 0) this.#tick(link);
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
          });
          break;
        case "delete":
          await link.client.call("Delete", { id: r.id, collection: r.collection });
          break;
        case "put_batch": {
          const points: Point[] = [];
          for (let i = 0; i < r.ids.length; i++) {
            points.push({
              id: r.ids[i],
              vector: Array.from(r.vectors.subarray(i * r.dimension, (i + 1) * r.dimension)),
            });
          }
          await link.client.call("PutBatch", { points, collection: r.collection });
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

function batchRecord(collection: string, dimension: number, points: readonly Point[]): WalRecord {
  const ids = new Uint32Array(points.length);
  const vectors = new Float32Array(points.length * dimension);
  points.forEach((p, i) => {
    ids[i] = p.id;
    vectors.set(p.vector, i * dimension);
  });
  return { kind: "put_batch", collection, dimension, ids, vectors };
}
