/**
 * The `vectordb.VectorDB` gRPC handlers of a storage node, over a {@link NodeStore}.
 *
 * Every handler validates first (nothing invalid reaches the WAL), maps every failure to a
 * gRPC status whose message names the field and the value, and never lets an exception
 * escape: a malformed request gets an error, the server keeps serving.
 *
 * | error                                             | status              |
 * |---------------------------------------------------|---------------------|
 * | ValidationError, RangeError, TypeError            | INVALID_ARGUMENT    |
 * | CollectionNotFoundError                           | NOT_FOUND           |
 * | CollectionExistsError                             | ALREADY_EXISTS      |
 * | WAL queue full, too many collections or requests, index capacity | RESOURCE_EXHAUSTED |
 * | node shutting down                                | UNAVAILABLE         |
 * | anything else                                     | INTERNAL (logged)   |
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { memoryUsage } from "node:process";
import type { VectorDBHandlers } from "../api/proto.ts";
import {
  validateCreateCollectionRequest,
  validatePointRef,
  validatePutBatchRequest,
  validatePutRequest,
  validateSearchRequest,
  ValidationError,
} from "../api/validate.ts";
import { validateCollectionName } from "../api/validate.ts";
import {
  CollectionExistsError,
  CollectionNotFoundError,
  DEFAULT_COLLECTION,
  type NodeStore,
  TooManyCollectionsError,
} from "../storage/node_store.ts";
import { WalQueueFullError } from "../storage/wal.ts";
import { CapacityError } from "../index/vector_store.ts";
import { BufferLimitError } from "../io/binary.ts";
import type { Collection } from "../storage/collection.ts";
import type { Member as ClusterMember } from "../cluster/membership.ts";

/** Most requests a node works on at once; more are refused with RESOURCE_EXHAUSTED. */
export const IN_FLIGHT_MAX = 4096;

/** A gRPC error with a status code. */
export class StatusError extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
    this.name = "StatusError";
  }
}

/** Maps an error to a gRPC status and message. */
export function toStatus(e: unknown): { code: grpc.status; details: string } {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof StatusError) return { code: e.code, details: message };
  if (e instanceof ValidationError || e instanceof RangeError || e instanceof TypeError) {
    if (e instanceof CapacityError) {
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: message };
    }
    return { code: grpc.status.INVALID_ARGUMENT, details: message };
  }
  if (e instanceof CollectionNotFoundError) {
    return { code: grpc.status.NOT_FOUND, details: message };
  }
  if (e instanceof CollectionExistsError) {
    return { code: grpc.status.ALREADY_EXISTS, details: message };
  }
  if (
    e instanceof WalQueueFullError || e instanceof TooManyCollectionsError ||
    e instanceof BufferLimitError
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
   * Called with the ids of every Put, PutBatch and Delete after validation and BEFORE the
   * write reaches the WAL (copy tokens record them; see transfer_service.ts).
   */
  on_write?: (collection: string, ids: ArrayLike<number>) => void;
  /** Called before a DropCollection drops `collection`. */
  on_drop?: (collection: string) => void;
}

/** Builds the handlers. `state.closing` makes new requests fail with UNAVAILABLE. */
export function nodeHandlers(
  store: NodeStore,
  options: NodeServiceOptions,
  state: { closing: boolean } = { closing: false },
): VectorDBHandlers {
  const log = options.logger ?? ((m: string) => console.error(m));
  const started = Date.now();
  let inFlight = 0;
  const onWrite = options.on_write ?? (() => {});

  // Wraps an async handler: limits, status mapping, and no escaping exceptions.
  function unary<Req, Res>(
    name: string,
    fn: (req: Req) => Promise<Res> | Res,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      if (state.closing) {
        callback({ code: grpc.status.UNAVAILABLE, details: "The node is shutting down" });
        return;
      }
      if (inFlight >= IN_FLIGHT_MAX) {
        callback({
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: `The node has ${inFlight} requests in flight, its limit`,
        });
        return;
      }
      inFlight++;
      let result: Promise<Res>;
      try {
        result = Promise.resolve(fn(call.request));
      } catch (e) {
        result = Promise.reject(e);
      }
      result.then(
        (res) => {
          inFlight--;
          callback(null, res);
        },
        (e) => {
          inFlight--;
          const s = toStatus(e);
          if (s.code === grpc.status.INTERNAL) log(`${name} failed: ${(e as Error)?.stack ?? e}`);
          callback({ code: s.code, details: s.details });
        },
      );
    };
  }

  /** A collection for reading; the default one may not exist yet (it then reads as empty). */
  function readable(name: string): Collection | null {
    try {
      return store.get(name);
    } catch (e) {
      if (e instanceof CollectionNotFoundError && name === DEFAULT_COLLECTION) return null;
      throw e;
    }
  }

  function info(c: Collection) {
    return {
      name: c.name,
      dimension: c.config.dimension,
      metric: c.config.metric,
      m: c.config.m,
      ef_construction: c.config.ef_construction,
    };
  }

  function collectionStats(c: Collection) {
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
    };
  }

  return {
    Put: unary("Put", async (req) => {
      const p = validatePutRequest(req);
      onWrite(p.collection, [p.id]);
      const c = await store.getForWrite(p.collection, p.vector.length);
      const seq = await c.put(p.id, p.vector);
      return { ok: true, seq: String(seq), replicas_acked: 1 };
    }),
    PutBatch: unary("PutBatch", async (req) => {
      const b = validatePutBatchRequest(req);
      onWrite(b.collection, b.points.map((x) => x.id));
      const c = await store.getForWrite(b.collection, b.points[0].vector.length);
      const seq = await c.putBatch(b.points);
      return { count: b.points.length, seq: String(seq) };
    }),
    Get: unary("Get", (req) => {
      const r = validatePointRef(req);
      const c = readable(r.collection);
      const v = c?.get(r.id) ?? null;
      return v === null ? { found: false, vector: [] } : { found: true, vector: Array.from(v) };
    }),
    Delete: unary("Delete", async (req) => {
      const r = validatePointRef(req);
      onWrite(r.collection, [r.id]);
      const c = readable(r.collection);
      if (c === null) return { deleted: false };
      const d = await c.delete(r.id);
      return { deleted: d.deleted, seq: String(d.seq) };
    }),
    Search: unary("Search", (req) => {
      const s = validateSearchRequest(req);
      const c = readable(s.collection);
      const covered = { partial: false, shards_answered: 1, shards_total: 1 };
      if (c === null) return { results: [], ...covered };
      if (s.ef !== 0 && s.ef < s.k) {
        throw new ValidationError("ef", s.ef, `ef ${s.ef} must be at least k ${s.k} (or 0)`);
      }
      const hits = c.search(s.vector, s.k, s.ef === 0 ? undefined : s.ef);
      return { results: hits, ...covered };
    }),
    CreateCollection: unary("CreateCollection", async (req) => {
      const v = validateCreateCollectionRequest(req);
      try {
        const c = await store.create(v);
        return { created: true, collection: info(c) };
      } catch (e) {
        if (!(e instanceof CollectionExistsError)) throw e;
        const existing = store.list().find((c) => c.name === v.name);
        const same = existing !== undefined && existing.config.dimension === v.dimension &&
          existing.config.metric === v.metric && existing.config.m === v.m &&
          existing.config.ef_construction === v.ef_construction;
        if (!same) {
          throw new CollectionExistsError(v.name);
        }
        return { created: false, collection: info(existing!) };
      }
    }),
    DropCollection: unary("DropCollection", async (req) => {
      const name = validateCollectionName(req.name, "name");
      options.on_drop?.(name);
      await store.drop(name);
      return { dropped: true };
    }),
    ListCollections: unary("ListCollections", () => ({
      collections: store.list().map(info),
    })),
    Stats: unary("Stats", () => {
      const mem = memoryUsage();
      return {
        node_id: options.nodeId,
        collections: store.list().map(collectionStats),
        uptime_ms: Date.now() - started,
        rss_bytes: mem.rss,
        heap_used_bytes: mem.heapUsed,
        is_router: false,
      };
    }),
    Members: unary("Members", () => ({
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
