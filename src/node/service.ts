/**
 * The `vectordb.VectorDB` gRPC handlers of a storage node, over a {@link NodeStore}.
 *
 * Every handler validates first (nothing invalid reaches the WAL), maps every failure to a
 * gRPC status whose message names the field and the value, and never lets an exception
 * escape: a malformed request gets an error, the server keeps serving. The closing check, the
 * in-flight limit ({@link IN_FLIGHT_MAX}), the deadline check and the mapping below run in one
 * {@link UnaryGuard} (src/api/unary.ts) that wraps every method of this service.
 *
 * | error                                             | status              |
 * |---------------------------------------------------|---------------------|
 * | ValidationError, RangeError, TypeError            | INVALID_ARGUMENT    |
 * | CollectionNotFoundError                           | NOT_FOUND           |
 * | CollectionExistsError, BackupExistsError          | ALREADY_EXISTS      |
 * | BackupNotFoundError                               | NOT_FOUND           |
 * | BackupCorruptError (sha256 or manifest mismatch)  | DATA_LOSS           |
 * | BackupBusyError (delete of a backup in use)       | FAILED_PRECONDITION |
 * | WAL queue full, too many collections or requests, index capacity, search-thread queue full | RESOURCE_EXHAUSTED |
 * | DiskFullError, ENOSPC/EDQUOT (full disk: names the data directory) | RESOURCE_EXHAUSTED |
 * | VersionOverflowError (the clock passed 2^53 - 1)  | FAILED_PRECONDITION |
 * | node shutting down                                | UNAVAILABLE         |
 * | deadline already passed when the call arrived     | DEADLINE_EXCEEDED   |
 * | anything else                                     | INTERNAL (logged)   |
 *
 * Versions (see "Versions" in proto/vector_db.proto): Put, PutBatch and Delete take the
 * request's `version` (a uint64 decimal string; above 2^53 - 1 is INVALID_ARGUMENT) or, when it
 * is 0, a stamp from the collection's clock, and answer with the version used. The collection
 * applies a write only when its version is above the one it holds for the id, or equal to it
 * for a delete over a put (last writer wins; `supersedes` in common/version.ts); a write that loses is still logged and acknowledged. Get answers with the id's version
 * and whether its last write was a delete.
 *
 * @module
 */
import { idToWire, type PointId } from "../common/point_id.ts";
import * as grpc from "@grpc/grpc-js";
import { memoryUsage } from "node:process";
import type { GetResponse, SearchResult, VectorDBHandlers } from "../api/proto.ts";
import { type StatusLike, UnaryGuard } from "../api/unary.ts";
import type { RequestMetrics } from "../common/metrics.ts";
import type { SearchMetrics } from "./metrics.ts";
import {
  validateCreateCollectionRequest,
  validatePointRef,
  validatePutBatchRequest,
  validatePutRequest,
  validateSearchRequest,
  ValidationError,
  type ValidCollection,
} from "../api/validate.ts";
import {
  resolveCollection,
  validateCollectionName,
  type ValidSearch,
  vectorFieldName,
} from "../api/validate.ts";
import {
  BackupBusyError,
  BackupCorruptError,
  BackupExistsError,
  BackupNotFoundError,
  Backups,
  type BackupSummary,
} from "../storage/backups.ts";
import {
  CollectionExistsError,
  CollectionNotFoundError,
  type NodeStore,
  TooManyCollectionsError,
} from "../storage/node_store.ts";
import { WalQueueFullError } from "../io/wal.ts";
import { diskFullCode, DiskFullError } from "../io/disk_full.ts";
import { DEFAULT_COLLECTION } from "../common/limits.ts";
import { payloadText } from "../common/payload.ts";
import { VersionOverflowError } from "../common/version.ts";
import { SOFTWARE_VERSION } from "../common/software_version.ts";
import { CapacityError } from "../index/vector_store.ts";
import { PayloadCapacityError } from "../storage/payload_store.ts";
import { BufferLimitError } from "../io/binary.ts";
import { FieldIndexError, type KeyHit } from "../storage/collection.ts";
import { SearchQueueFullError } from "../index/graph_pool.ts";
import type { ShardedCollection } from "../storage/sharded_collection.ts";
import type { Member as ClusterMember } from "../cluster/membership.ts";
import {
  missingRecord,
  validateCountRequest,
  validateCreateFieldIndexRequest,
  validateDeleteBatchRequest,
  validateDeleteByFilterRequest,
  validateDropFieldIndexRequest,
  validateGetBatchRequest,
  validateScrollRequest,
  validateSearchBatchRequest,
} from "../api/points_read.ts";
import { BATCH_POINTS_MAX, SHARDS_MAX } from "../common/limits.ts";
import { scrollPage } from "./points_read.ts";

/** Most requests a node works on at once; more are refused with RESOURCE_EXHAUSTED. */
export const IN_FLIGHT_MAX = 4096;

/** A gRPC error with a status code. */
export class StatusError extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
    this.name = "StatusError";
  }
}

/**
 * A write's `shard_number` guard (proto/vector_db.proto PutRequest.shard_number): 0 or absent
 * passes; a number that is not this node's shard count of the collection is FAILED_PRECONDITION
 * naming the collection and both numbers (the sender routed with a stale layout, e.g. of a
 * collection dropped and created again with another shard count, and must not write here).
 */
export function checkShardNumber(
  c: Pick<ShardedCollection, "name" | "shard_number">,
  value: unknown,
): void {
  if (value === undefined || value === null || value === 0) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new ValidationError(
      "shard_number",
      value,
      `shard_number ${value} must be a non-negative integer`,
    );
  }
  if (value !== c.shard_number) {
    throw new StatusError(
      grpc.status.FAILED_PRECONDITION,
      `collection "${c.name}" has ${c.shard_number} shards on this node, not ${value} as the ` +
        `request's shard_number says (the sender's layout of the collection is stale)`,
    );
  }
}

/**
 * Maps an error to a gRPC status and message. `dataDir` (the node's data directory) is named
 * when a full disk surfaces as a bare ENOSPC/EDQUOT rather than a {@link DiskFullError}.
 */
export function toStatus(e: unknown, dataDir?: string): StatusLike {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof StatusError) return { code: e.code, details: message };
  if (e instanceof DiskFullError) return { code: grpc.status.RESOURCE_EXHAUSTED, details: message };
  if (diskFullCode(e) !== null) {
    const full = new DiskFullError(
      dataDir ?? "(unknown)",
      (e as NodeJS.ErrnoException).path ?? "",
      e,
      "request refused; writes resume once space is freed",
    );
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: full.message };
  }
  if (e instanceof ValidationError || e instanceof RangeError || e instanceof TypeError) {
    // A limit of the collection (index slots, payload storage): the request was refused whole.
    if (e instanceof CapacityError || e instanceof PayloadCapacityError) {
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: message };
    }
    return { code: grpc.status.INVALID_ARGUMENT, details: message };
  }
  if (e instanceof BackupNotFoundError) return { code: grpc.status.NOT_FOUND, details: message };
  if (e instanceof BackupExistsError) {
    return { code: grpc.status.ALREADY_EXISTS, details: message };
  }
  if (e instanceof BackupCorruptError) return { code: grpc.status.DATA_LOSS, details: message };
  if (e instanceof BackupBusyError) {
    return { code: grpc.status.FAILED_PRECONDITION, details: message };
  }
  if (e instanceof FieldIndexError) {
    return {
      code: e.reason === "exists" ? grpc.status.ALREADY_EXISTS : grpc.status.INVALID_ARGUMENT,
      details: message,
    };
  }
  if (e instanceof CollectionNotFoundError) {
    return { code: grpc.status.NOT_FOUND, details: message };
  }
  if (e instanceof CollectionExistsError) {
    return { code: grpc.status.ALREADY_EXISTS, details: message };
  }
  if (e instanceof VersionOverflowError) {
    return { code: grpc.status.FAILED_PRECONDITION, details: message };
  }
  if (
    e instanceof WalQueueFullError || e instanceof TooManyCollectionsError ||
    e instanceof BufferLimitError || e instanceof SearchQueueFullError
  ) {
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: message };
  }
  return { code: grpc.status.INTERNAL, details: message };
}

export interface NodeServiceOptions {
  nodeId: string;
  address: string;
  logger?: (message: string) => void;
  /** This node's gossip view (GossipAgent.members); without it Members lists the node alone. */
  members?: () => readonly ClusterMember[];
  /**
   * Starts a deliberate leave (hand-off, then exit; see main.ts); returns false when the node is
   * already stopping. Without it Drain answers FAILED_PRECONDITION.
   */
  drain?: () => boolean;
  /** Request and search metrics (node/metrics.ts); absent: none recorded. */
  metrics?: { grpc: RequestMetrics; search: SearchMetrics };
}

/** Builds the handlers. `state.closing` makes new requests fail with UNAVAILABLE. */
export function nodeHandlers(
  store: NodeStore,
  options: NodeServiceOptions,
  state: { closing: boolean } = { closing: false },
): VectorDBHandlers {
  const log = options.logger ?? ((m: string) => console.error(m));
  const started = Date.now();
  const guard = new UnaryGuard({
    server_name: "node",
    in_flight_max: IN_FLIGHT_MAX,
    closing: () => state.closing,
    to_status: (e) => toStatus(e, store.dataDir),
    log,
    metrics: options.metrics?.grpc,
  });
  const searchMetrics = options.metrics?.search ?? null;
  const backups = new Backups(store);

  function backupInfo(b: BackupSummary) {
    const m = b.manifest;
    return {
      name: m.name,
      collection: {
        ...m.collection,
        shard_number: m.shard_number ?? 1,
        replication_factor: m.replication_factor ?? 0,
      },
      points: String(m.points),
      bytes: String(b.bytes),
      created_ms: String(m.created_ms),
      seq: String(m.seq),
      sha256: m.sha256,
      tombstones: String(m.tombstones),
    };
  }

  /** A collection for reading; the default one may not exist yet (it then reads as empty). */
  function readable(name: string): ShardedCollection | null {
    try {
      return store.get(name);
    } catch (e) {
      if (e instanceof CollectionNotFoundError && name === DEFAULT_COLLECTION) return null;
      throw e;
    }
  }

  function info(c: ShardedCollection) {
    return {
      name: c.name,
      dimension: c.config.dimension,
      metric: c.config.metric,
      m: c.config.m,
      ef_construction: c.config.ef_construction,
      field_indexes: c.fieldIndexes().map((i) => ({ field: i.field, type: i.type })),
      quantization: c.config.quantization ?? "none",
      rescore: c.config.rescore ?? 0,
      shard_number: c.shard_number,
      replication_factor: c.replication_factor,
    };
  }

  function collectionStats(c: ShardedCollection) {
    const s = c.stats();
    return {
      name: c.name,
      count: s.count,
      dimension: s.dimension,
      metric: s.metric,
      memory_bytes: s.memory_bytes,
      wal_bytes: s.wal_bytes,
      last_snapshot_seq: s.last_snapshot_seq,
      last_snapshot_time_ms: s.last_snapshot_time_ms,
      wal_syncs: s.wal.syncs,
      tombstones: s.tombstones,
      shards: c.shard_number === 1 ? [] : s.shards,
    };
  }

  /**
   * A request's `shards` list (absent: empty), each entry a uint32 (INVALID_ARGUMENT naming
   * `field` otherwise) and at most SHARDS_MAX of them; checked against the collection by
   * {@link checkShards}.
   */
  const shardList = (value: unknown, field: string): number[] => {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) throw new ValidationError(field, value, `${field} is not a list`);
    if (value.length > SHARDS_MAX) {
      throw new ValidationError(
        field,
        value.length,
        `${field} has ${value.length} entries; at most ${SHARDS_MAX}`,
      );
    }
    for (let i = 0; i < value.length; i++) {
      const k = value[i];
      if (typeof k !== "number" || !Number.isInteger(k) || k < 0 || k > 0xffff_ffff) {
        throw new ValidationError(`${field}[${i}]`, k, `${field}[${i}] ${k} is not a uint32`);
      }
    }
    return value as number[];
  };

  /** Each of `shards` below the collection's shard_number and listed once (INVALID_ARGUMENT). */
  const checkShards = (c: ShardedCollection, shards: readonly number[], field: string) => {
    if (shards.length === 0) return;
    try {
      c.checkShards(shards, field);
    } catch (e) {
      throw new ValidationError(field, shards.join(","), (e as Error).message);
    }
  };

  /**
   * Refuses a vector whose length is not the collection's dimension, naming the field it came
   * in (`vector` or `vector_bytes`, under `prefix`).
   */
  const checkDimension = (
    c: ShardedCollection,
    length: number,
    request: { vector_bytes?: unknown },
    prefix = "",
  ): void => {
    const dimension = c.config.dimension;
    if (length === dimension) return;
    const field = prefix + vectorFieldName(request);
    const packed = field.endsWith("_bytes") ? ` (${length * 4} bytes)` : "";
    throw new ValidationError(
      field,
      length,
      `${field} dimension ${length}${packed} does not match the collection dimension ${dimension}`,
    );
  };

  /** One search of a collection, with payloads and vectors when asked (Search, SearchBatch). */
  // Graph searches run on the node's worker threads where they can (Collection.searchAsync);
  // exact ones (brute force, for recall sampling) on this thread.
  const runSearch = async (
    c: ShardedCollection,
    s: ValidSearch,
    shards: number[],
  ): Promise<{ results: SearchResult[]; searched: number }> => {
    let hits: KeyHit[];
    let searched: number, ef: number, visited: number;
    if (s.exact) {
      hits = c.exactSearch(s.vector, s.k, s.filter ?? null, shards);
      searched = c.lastShardSearches;
      ef = c.lastSearchEf;
      visited = c.lastVisited;
    } else {
      const ef0 = s.ef === 0 ? undefined : s.ef;
      ({ hits, searched, ef, visited } = await c.searchAsync(
        s.vector,
        s.k,
        ef0,
        s.filter ?? null,
        shards,
      ));
    }
    if (searchMetrics !== null) {
      searchMetrics.ef.observe(ef);
      searchMetrics.visited.observe(visited);
    }
    return { results: toResults(c, s, hits), searched };
  };

  const toResults = (c: ShardedCollection, s: ValidSearch, hits: KeyHit[]): SearchResult[] => {
    if (!s.with_payload && !s.with_vector) {
      // Hits with number ids are already in wire form (no string_id means ""): no copy.
      let plain = true;
      for (let i = 0; i < hits.length && plain; i++) plain = typeof hits[i].id === "number";
      if (plain) return hits as SearchResult[];
      return hits.map((h) => ({ ...idToWire(h.id), distance: h.distance }));
    }
    return hits.map((h) => ({
      ...idToWire(h.id),
      distance: h.distance,
      payload: s.with_payload ? payloadText(c.getPayload(h.id)) : "",
      vector: s.with_vector ? Array.from(c.get(h.id) ?? []) : [],
    }));
  };

  return {
    Put: guard.wrap("Put", async (req) => {
      const p = validatePutRequest(req);
      const c = await store.getForWrite(p.collection, p.vector.length);
      checkDimension(c, p.vector.length, req);
      checkShardNumber(c, req.shard_number);
      const w = await c.put(p.id, p.vector, p.version, p.payload);
      return { ok: true, seq: String(w.seq), replicas_acked: 1, version: String(w.version) };
    }),
    PutBatch: guard.wrap("PutBatch", async (req) => {
      const b = validatePutBatchRequest(req);
      const c = await store.getForWrite(b.collection, b.points[0].vector.length);
      // Every point has the first's length (validated): the first names the field.
      checkDimension(c, b.points[0].vector.length, req.points[0], "points[0].");
      checkShardNumber(c, req.shard_number);
      const w = await c.putBatch(b.points, b.version);
      return { count: b.points.length, seq: String(w.seq), version: String(w.version) };
    }),
    Get: guard.wrap("Get", (req) => {
      const r = validatePointRef(req);
      const c = readable(r.collection);
      if (c === null) {
        return Promise.resolve({ found: false, vector: [], version: "0", deleted: false });
      }
      const e = c.getEntry(r.id);
      const answer: GetResponse = {
        found: e.vector !== null,
        vector: e.vector === null ? [] : Array.from(e.vector),
        version: String(e.version),
        deleted: e.deleted,
      };
      // Absent when none: the wire reads it as "" (proto3 default).
      const payload = e.vector === null ? null : c.getPayload(r.id);
      if (payload !== null) answer.payload = payloadText(payload);
      return Promise.resolve(answer);
    }),
    Delete: guard.wrap("Delete", async (req) => {
      const r = validatePointRef(req);
      const c = readable(r.collection);
      // The default collection does not exist before its first Put (its dimension is unknown),
      // so there is nothing to delete and nowhere to keep a tombstone.
      if (c === null) return { deleted: false, seq: "0", version: String(r.version) };
      checkShardNumber(c, req.shard_number);
      const d = await c.delete(r.id, r.version);
      return { deleted: d.deleted, seq: String(d.seq), version: String(d.version) };
    }),
    Search: guard.wrap("Search", async (req) => {
      const s = validateSearchRequest(req);
      const c = readable(s.collection);
      const covered = { partial: false, shards_answered: 1, shards_total: 1 };
      const shards = shardList(req.shards, "shards");
      if (c === null) return { results: [], ...covered, shard_searches: 0 };
      checkShards(c, shards, "shards");
      checkDimension(c, s.vector.length, req);
      if (s.ef !== 0 && s.ef < s.k) {
        throw new ValidationError("ef", s.ef, `ef ${s.ef} must be at least k ${s.k} (or 0)`);
      }
      const { results, searched } = await runSearch(c, s, shards);
      return { results, ...covered, shard_searches: searched };
    }),
    CreateCollection: guard.wrap("CreateCollection", async (req) => {
      const v = validateCreateCollectionRequest(req);
      try {
        const c = await store.create(v);
        return { created: true, collection: info(c) };
      } catch (e) {
        if (!(e instanceof CollectionExistsError)) throw e;
        const existing = store.list().find((c) => c.name === v.name);
        if (existing === undefined) throw e;
        const difference = createDifference(existing, v);
        if (difference !== null) throw new CollectionExistsError(v.name, difference);
        return { created: false, collection: info(existing) };
      }
    }),
    DropCollection: guard.wrap("DropCollection", async (req) => {
      const name = validateCollectionName(req.name, "name");
      await store.drop(name);
      return { dropped: true };
    }),
    ListCollections: guard.wrap(
      "ListCollections",
      () => Promise.resolve({ collections: store.list().map(info) }),
    ),
    Stats: guard.wrap("Stats", () => {
      const mem = memoryUsage();
      return Promise.resolve({
        node_id: options.nodeId,
        collections: store.list().map(collectionStats),
        uptime_ms: Date.now() - started,
        rss_bytes: mem.rss,
        heap_used_bytes: mem.heapUsed,
        is_router: false,
        version: SOFTWARE_VERSION,
      });
    }),
    Drain: guard.wrap("Drain", () => {
      if (options.drain === undefined) {
        throw new StatusError(
          grpc.status.FAILED_PRECONDITION,
          `Node ${options.nodeId} cannot drain: it was started without a shutdown sequence`,
        );
      }
      const started = options.drain();
      log(`Drain requested: ${started ? "leaving the cluster" : "already stopping"}`);
      return Promise.resolve({ started, node_id: options.nodeId });
    }),
    Backup: guard.wrap("Backup", async (req) => {
      const collection = resolveCollection(req.collection, "collection");
      const name = validateCollectionName(req.name, "name");
      const made = await backups.create(collection, name);
      log(
        `Backup "${name}" of collection "${collection}": ${made.manifest.points} points, ` +
          `${made.bytes} bytes, seq ${made.manifest.seq}`,
      );
      return { backup: backupInfo(made) };
    }),
    ListBackups: guard.wrap(
      "ListBackups",
      () => Promise.resolve({ backups: backups.list().map(backupInfo) }),
    ),
    Restore: guard.wrap("Restore", async (req) => {
      const backup = validateCollectionName(req.backup, "backup");
      const collection = validateCollectionName(req.collection, "collection");
      const r = await backups.restore(backup, collection);
      const points = r.collection.count();
      log(`Backup "${backup}" restored into collection "${collection}": ${points} points`);
      return { collection: info(r.collection), points: String(points) };
    }),
    DeleteBackup: guard.wrap("DeleteBackup", async (req) => {
      const name = validateCollectionName(req.name, "name");
      const d = await backups.delete(name);
      log(
        `Backup "${name}" deleted` +
          (d.manifest !== null ? ` (collection "${d.manifest.collection.name}")` : " (damaged)"),
      );
      return { deleted: true };
    }),
    SearchBatch: guard.wrap("SearchBatch", async (req) => {
      const list = validateSearchBatchRequest(req);
      const covered = { partial: false, shards_answered: 1, shards_total: 1 };
      // Every search is checked against its collection before any runs.
      const shardLists = list.map((_, i) =>
        shardList(req.searches[i].shards, `searches[${i}].shards`)
      );
      const targets = list.map((s, i) => {
        const c = readable(s.collection);
        if (c !== null) {
          checkShards(c, shardLists[i], `searches[${i}].shards`);
          checkDimension(c, s.vector.length, req.searches[i], `searches[${i}].`);
        }
        return c;
      });
      const results = await Promise.all(list.map(async (s, i) => {
        const c = targets[i];
        if (c === null) return { results: [], ...covered, shard_searches: 0 };
        const { results, searched } = await runSearch(c, s, shardLists[i]);
        return { results, ...covered, shard_searches: searched };
      }));
      return { results };
    }),
    Scroll: guard.wrap("Scroll", (req) => {
      const v = validateScrollRequest(req);
      const c = readable(v.collection);
      const covered = { partial: false, shards_answered: 1, shards_total: 1 };
      if (c === null) return Promise.resolve({ points: [], next_cursor: "", ...covered });
      return Promise.resolve({
        ...scrollPage(c, v.after, v.limit, v.with_vector, v.filter, v.with_payload),
        ...covered,
      });
    }),
    Count: guard.wrap("Count", (req) => {
      const v = validateCountRequest(req);
      const c = readable(v.collection);
      const count = c === null ? 0 : c.count(v.filter);
      return Promise.resolve({
        count: String(count),
        partial: false,
        shards_answered: 1,
        shards_total: 1,
      });
    }),
    CreateFieldIndex: guard.wrap("CreateFieldIndex", async (req) => {
      const v = validateCreateFieldIndexRequest(req);
      const c = store.get(v.collection);
      const r = await c.createFieldIndex(v.field, v.type);
      if (r.created) log(`Collection "${c.name}": payload index on "${v.field}" (${v.type})`);
      return { created: r.created };
    }),
    DropFieldIndex: guard.wrap("DropFieldIndex", async (req) => {
      const v = validateDropFieldIndexRequest(req);
      const c = store.get(v.collection);
      return { dropped: (await c.dropFieldIndex(v.field)).dropped };
    }),
    GetBatch: guard.wrap("GetBatch", (req) => {
      const v = validateGetBatchRequest(req);
      const c = readable(v.collection);
      // Integer ids first, then string ids, each in request order (what idsFromWire gives).
      const points = v.ids.map((id) => {
        if (c === null) {
          return missingRecord(id);
        }
        const e = c.getEntry(id);
        const payload = v.with_payload && e.vector !== null ? c.getPayload(id) : null;
        return {
          ...idToWire(id),
          found: e.vector !== null,
          vector: v.with_vector && e.vector !== null ? Array.from(e.vector) : [],
          payload: payload === null ? "" : payloadText(payload),
          version: String(e.version),
          deleted: e.deleted,
        };
      });
      return Promise.resolve({ points });
    }),
    DeleteBatch: guard.wrap("DeleteBatch", async (req) => {
      const v = validateDeleteBatchRequest(req);
      const c = readable(v.collection);
      // As Delete: the default collection before its first Put has nothing to delete.
      if (c === null) {
        return { deleted: 0, version: String(v.version), removed: new Uint8Array(v.ids.length) };
      }
      checkShardNumber(c, req.shard_number);
      const gone = new Set<PointId>();
      const d = await c.deleteBatch(v.ids, v.version, gone);
      // v.ids is in wire order (integer ids, then string ids); a repeated id is marked once.
      const removed = new Uint8Array(v.ids.length);
      v.ids.forEach((id, i) => {
        if (gone.delete(id)) removed[i] = 1;
      });
      return { deleted: d.deleted, version: String(d.version), removed };
    }),
    DeleteByFilter: guard.wrap("DeleteByFilter", async (req) => {
      const v = validateDeleteByFilterRequest(req);
      const c = readable(v.collection);
      if (c === null) return { deleted: "0", version: String(v.version) };
      const ids = c.matchingIds(v.filter);
      // One version for every chunk, stamped once (0: by the collection's clock).
      let version = v.version;
      let deleted = 0;
      if (ids.length === 0 && version === 0) version = c.clock.next();
      for (let at = 0; at < ids.length; at += BATCH_POINTS_MAX) {
        const d = await c.deleteBatch(ids.slice(at, at + BATCH_POINTS_MAX), version);
        version = d.version;
        deleted += d.deleted;
      }
      return { deleted: String(deleted), version: String(version) };
    }),
    Members: guard.wrap("Members", () =>
      Promise.resolve({
        self_id: options.nodeId,
        members: options.members === undefined
          ? [{
            id: options.nodeId,
            address: options.address,
            state: "alive",
            incarnation: 0,
            is_router: false,
          }]
          : options.members().map((m) => ({
            id: m.id,
            address: m.address,
            state: m.state,
            incarnation: m.incarnation,
            is_router: m.meta.role === "router",
          })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
      })),
  };
}

/**
 * How a CreateCollection request differs from the existing collection of its name, or null
 * when it asks for what exists: a client re-issuing its create (create-if-absent) is no error.
 * shard_number and replication_factor are compared only when the request sets them (0 means
 * "any": a router fills in the layout it learned from the nodes), and replication_factor not
 * against a collection that stored none (made before shards, or without one).
 */
export function createDifference(
  existing: Pick<ShardedCollection, "config" | "shard_number" | "replication_factor">,
  v: ValidCollection,
): string | null {
  const c = existing.config;
  const pairs: [string, unknown, unknown][] = [
    ["dimension", c.dimension, v.dimension],
    ["metric", c.metric, v.metric],
    ["m", c.m, v.m],
    ["ef_construction", c.ef_construction, v.ef_construction],
    ["quantization", c.quantization ?? "none", v.quantization ?? "none"],
    ["rescore", c.rescore ?? 0, v.rescore ?? 0],
  ];
  if (v.shard_number !== undefined) {
    pairs.push(["shard_number", existing.shard_number, v.shard_number]);
  }
  if (v.replication_factor !== undefined && existing.replication_factor !== 0) {
    pairs.push(["replication_factor", existing.replication_factor, v.replication_factor]);
  }
  for (const [field, has, asked] of pairs) {
    if (has !== asked) return `with ${field} ${has}; the request asks ${asked}`;
  }
  return null;
}
