/**
 * The storage node's side of rebalancing and anti-entropy: the `vectordb.internal.Transfer`
 * service (proto/internal.proto). The router drives it (src/router/rebalance/rebalancer.ts).
 *
 * **Last writer wins.** Every entry a node holds carries the version of the write that made it
 * (see "Versions" in proto/vector_db.proto and src/storage/collection.ts): a live point the
 * version of its put, a tombstone the version of its delete. The router reads entries from one
 * node (`Scan`, tombstones included) and writes them to another (`CopyBatch`), where each entry
 * applies only when its version is above the one the target holds for that id (or equal, for a
 * tombstone over a live point: common/version.ts `supersedes`). So a copy can
 * never undo a newer client write or resurrect a newer delete, whatever order copies, hints,
 * retries and client writes arrive in; copying the same entries twice changes nothing. Each
 * CopyBatch is one durable WAL record on the target before the reply, applied in WAL order, so
 * replay after a crash reaches the same state. `Prune` removes entries a node no longer owns
 * (points and tombstones alike, leaving no tombstone), each only when the version it holds is
 * at most the one the router scanned: a write that arrived after the scan is kept.
 *
 * **Scan** lists a collection's entries (live points and tombstones) in ascending id order. The
 * first page (`from_start`) takes a snapshot of every id the collection holds an entry for (a
 * sort: O(n log n), 4 bytes per uint32 id, a reference per other id) that later pages walk with a binary search; one snapshot
 * per collection is cached ({@link SCAN_SNAPSHOT_TTL_MS}), and dropped when a scan reaches its
 * end. Entries forgotten since the snapshot are skipped; each listed entry is read as it is
 * when its page is built. Pages hold at most {@link SCAN_LIMIT_MAX} entries and about
 * {@link SCAN_PAGE_BYTES_MAX} of vector and payload data.
 *
 * **Payloads** travel with their points: Scan returns each live entry's payload (compact JSON
 * text), CopyBatch checks each one as a client's (common/payload.ts limits, INVALID_ARGUMENT
 * naming `points[i].payload`) and applies it with the vector, under the same version rule.
 *
 * **Entries** pages a collection's entries (live points and tombstones, with versions) after an
 * id without keeping anything between pages (src/node/points_read.ts): the router merges them
 * across replicas for a client's Scroll and Count.
 *
 * **Digest** and **BucketEntries** serve anti-entropy by digests (src/common/digest.ts,
 * src/router/rebalance/digest_sync.ts): Digest answers one shard unit's root digest (O(1), kept
 * by every write) and, on request, its 1,024 bucket digests; BucketEntries pages that unit's
 * entries whose ids fall in the given buckets, in Scan's form: the first page of a paging
 * gathers those buckets' ids from the unit's id order once, the next pages reuse the gather
 * (bucket_gather.ts: bounded, expiring; nothing is sent for buckets not asked for); with
 * `keys_only` without vectors and payloads, with `ids` only those ids.
 *
 * **Tombstone grace** (src/node/tombstone_gc.ts): with `tombstone_grace_ms`, CopyBatch does not
 * store a tombstone older than the grace (counted as skipped) when the node holds nothing for
 * its id or something at least as new: the node collects such tombstones, and taking them back
 * from a replica that has not yet would make their digests disagree run after run. Over an older
 * entry it applies (a missed delete must still win; the next collection forgets it).
 *
 * The wire types and the client live in src/api/transfer.ts.
 *
 * @module
 */

import { supersedes } from "../common/version.ts";
import { BucketGatherCache } from "./bucket_gather.ts";
import type * as grpc from "@grpc/grpc-js";
import {
  type BucketEntriesRequest,
  type CopyBatchRequest,
  type CopyBatchResponse,
  type DigestRequest,
  type EntriesRequest,
  type EntriesWireResponse,
  type PruneRequest,
  type PruneResponse,
  SCAN_LIMIT_MAX,
  type ScanRequest,
  type ScanWireResponse,
  type ShardDropRequest,
  type ShardImageOpenRequest,
  type ShardImageOpenResponse,
  type ShardImageReadRequest,
  type ShardImageReadResponse,
  type ShardInstallBeginRequest,
  type ShardInstallChunkRequest,
  type TransferPointWire,
  transferService,
} from "../api/transfer.ts";
import { bucketOf, DIGEST_BUCKETS, rootBytes } from "../common/digest.ts";
import { tombstoneCutoffVersion } from "./tombstone_gc.ts";
import { ENTRIES_LIMIT_MAX, VERSION_MAX } from "../common/limits.ts";
import { entriesPage } from "./points_read.ts";
import {
  resolveCollection,
  validateFilter,
  validatePayload,
  validatePointId,
  validatePointIds,
  validateVector,
  validateVersionFromOutside,
  ValidationError,
} from "../api/validate.ts";
import { type Collection as Unit, type CopyEntry, IdList } from "../storage/collection.ts";
import type { ShardedCollection as Collection } from "../storage/sharded_collection.ts";
import { compareIds, idToWire, type PointId } from "../common/point_id.ts";
import type { NodeStore } from "../storage/node_store.ts";
import { UnaryGuard } from "../api/unary.ts";
import type { RequestMetrics } from "../common/metrics.ts";
import { IN_FLIGHT_MAX, toStatus } from "./service.ts";
import { payloadText } from "../common/payload.ts";
import { ShardTransfers } from "./shard_transfer.ts";

/** A Scan page stops once its vectors and payloads hold this many bytes. */
export const SCAN_PAGE_BYTES_MAX = 4 * 2 ** 20;
/** A cached id snapshot older than this is rebuilt even mid-scan. */
export const SCAN_SNAPSHOT_TTL_MS = 10 * 60_000;

// -------------------------------------------------------------------------------- server

function countOf(n: number, field: string): number {
  if (n < 1 || n > SCAN_LIMIT_MAX) {
    throw new ValidationError(
      field,
      n,
      `${field} has ${n} entries; it must have 1 to ${SCAN_LIMIT_MAX}`,
    );
  }
  return n;
}

function limitOf(n: unknown): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > SCAN_LIMIT_MAX) {
    throw new ValidationError("limit", n, `limit ${n} must be between 1 and ${SCAN_LIMIT_MAX}`);
  }
  return n;
}

function arrayOf(value: unknown, field: string): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    throw new ValidationError(field, value, `${field} must be an array`);
  }
  return value;
}

/** Validates CopyBatch entries against the collection's dimension. */
export function validateCopyPoints(points: unknown, dimension: number): CopyEntry[] {
  const list = arrayOf(points, "points");
  countOf(list.length, "points");
  return list.map((raw, i) => {
    const p = raw as {
      id?: unknown;
      string_id?: unknown;
      vector?: unknown;
      version?: unknown;
      deleted?: unknown;
      payload?: unknown;
    };
    if (p === null || typeof p !== "object") {
      throw new ValidationError(`points[${i}]`, p, `points[${i}] is not an entry`);
    }
    const id = validatePointId(p.id, p.string_id, `points[${i}].`);
    const version = validateVersionFromOutside(p.version, `points[${i}].version`);
    if (version < 1) {
      throw new ValidationError(
        `points[${i}].version`,
        p.version,
        `points[${i}].version ${JSON.stringify(p.version ?? 0)} must be between 1 and ` +
          `${VERSION_MAX}`,
      );
    }
    const deleted = p.deleted === true;
    const vector = p.vector ?? [];
    if (deleted) {
      if (!Array.isArray(vector) || vector.length !== 0) {
        throw new ValidationError(
          `points[${i}].vector`,
          vector,
          `points[${i}].vector must be empty for a tombstone (deleted)`,
        );
      }
      if (p.payload !== undefined && p.payload !== "") {
        throw new ValidationError(
          `points[${i}].payload`,
          p.payload,
          `points[${i}].payload must be empty for a tombstone (deleted)`,
        );
      }
      return { id, version, deleted };
    }
    return {
      id,
      version,
      deleted,
      vector: validateVector(vector, `points[${i}].vector`, dimension),
      payload: validatePayload(p.payload, `points[${i}].payload`),
    };
  });
}

/**
 * Validates a Prune request's ids and versions: 1 .. 4,096 ids in `ids` and `string_ids`
 * together, as PointIds (the integer ids, then the string ids), and one version for each, in
 * that order.
 */
export function validatePrune(
  ids: unknown,
  stringIds: unknown,
  versions: unknown,
): { ids: PointId[]; versions: number[] } {
  const versionList = arrayOf(versions, "versions");
  const idList = validatePointIds(ids, stringIds, SCAN_LIMIT_MAX);
  if (versionList.length !== idList.length) {
    throw new ValidationError(
      "versions",
      versionList.length,
      `versions has ${versionList.length} entries but ids and string_ids have ` +
        `${idList.length} together`,
    );
  }
  return {
    ids: idList,
    versions: versionList.map((v, i) => validateVersionFromOutside(v, `versions[${i}]`)),
  };
}

/** The unit of shard `shard` of `c`, after checking the number (INVALID_ARGUMENT naming it). */
export function unitOfShard(c: Collection, shard: unknown): Unit {
  if (
    typeof shard !== "number" || !Number.isInteger(shard) || shard < 0 ||
    shard >= c.shard_number
  ) {
    throw new ValidationError(
      "shard",
      shard,
      `shard ${shard} is not a shard of collection "${c.name}" (shard_number ` +
        `${c.shard_number}: 0 .. ${c.shard_number - 1})`,
    );
  }
  return c.units[shard];
}

/**
 * A BucketEntries request's buckets as a membership mask: 1 .. DIGEST_BUCKETS distinct
 * integers below DIGEST_BUCKETS (INVALID_ARGUMENT naming `buckets[i]`).
 */
export function bucketMaskOf(buckets: unknown): Uint8Array {
  const list = arrayOf(buckets, "buckets");
  if (list.length < 1 || list.length > DIGEST_BUCKETS) {
    throw new ValidationError(
      "buckets",
      list.length,
      `buckets has ${list.length} entries; it must have 1 to ${DIGEST_BUCKETS}`,
    );
  }
  const mask = new Uint8Array(DIGEST_BUCKETS);
  list.forEach((b, i) => {
    if (typeof b !== "number" || !Number.isInteger(b) || b < 0 || b >= DIGEST_BUCKETS) {
      throw new ValidationError(
        `buckets[${i}]`,
        b,
        `buckets[${i}] ${b} must be between 0 and ${DIGEST_BUCKETS - 1}`,
      );
    }
    if (mask[b] === 1) {
      throw new ValidationError(`buckets[${i}]`, b, `buckets[${i}] ${b} is listed twice`);
    }
    mask[b] = 1;
  });
  return mask;
}

/**
 * One entry of a unit in Scan's wire form, or null when it holds none for `id`; `keys_only`:
 * without vector and payload.
 */
function wireEntry(
  c: Pick<Unit, "getEntry" | "getPayload">,
  id: PointId,
  keys_only = false,
): TransferPointWire | null {
  const e = c.getEntry(id);
  if (e.vector === null && !e.deleted) return null;
  if (keys_only) return { ...idToWire(id), vector: [], version: e.version, deleted: e.deleted };
  const payload = e.vector === null ? null : c.getPayload(id);
  const point: TransferPointWire = {
    ...idToWire(id),
    vector: e.vector === null ? [] : Array.from(e.vector),
    version: e.version,
    deleted: e.deleted,
  };
  if (payload !== null) point.payload = payloadText(payload);
  return point;
}

/**
 * One BucketEntries page of `unit`: its entries whose bucket is in `mask`, ascending after
 * `after`, at most `limit` entries and about {@link SCAN_PAGE_BYTES_MAX} of vectors and
 * payloads. Walks `gathered` (the ids of those buckets, bucket_gather.ts) when given, else the
 * unit's cached id order (`sortedIds`) from the cursor, hashing each id; nothing is sent for
 * the entries of buckets that agree.
 */
export function bucketEntriesPage(
  unit: Unit,
  mask: Uint8Array,
  after: PointId | null,
  limit: number,
  options: { keys_only?: boolean; only?: IdList; gathered?: IdList } = {},
): ScanWireResponse {
  const ids = options.only ?? options.gathered ?? unit.sortedIds();
  return scanPage(unit, ids, after, limit, unit.config.dimension, {
    keys_only: options.keys_only,
    accept: (id) => mask[bucketOf(id)] === 1,
  });
}

/**
 * One page of `source`'s entries in `ids` (ascending) after `after`: at most `limit` entries and
 * about {@link SCAN_PAGE_BYTES_MAX} of vectors and payloads, skipping ids `accept` refuses and
 * ids `source` no longer holds. Scan and BucketEntries pages both come from here.
 */
function scanPage(
  source: Pick<Unit, "getEntry" | "getPayload">,
  ids: IdList,
  after: PointId | null,
  limit: number,
  dimension: number,
  options: { keys_only?: boolean; accept?: (id: PointId) => boolean } = {},
): ScanWireResponse {
  const points: TransferPointWire[] = [];
  let bytes = 0;
  let i = ids.upperBound(after);
  let last: PointId = after ?? 0;
  for (; i < ids.length && points.length < limit && bytes < SCAN_PAGE_BYTES_MAX; i++) {
    const id = ids.at(i);
    last = id;
    if (options.accept !== undefined && !options.accept(id)) continue;
    const point = wireEntry(source, id, options.keys_only === true);
    if (point === null) continue; // forgotten since the ids were listed
    points.push(point);
    bytes += point.vector.length * 4 + (point.payload?.length ?? 0);
  }
  const next = idToWire(last);
  return {
    points,
    next_after_id: next.id,
    next_after_string_id: next.string_id,
    done: i >= ids.length,
    dimension,
  };
}

/** `ids` as an {@link IdList}: ascending by `compareIds`, each once. */
export function sortedIdList(ids: readonly PointId[]): IdList {
  const u32: number[] = [];
  const others: PointId[] = [];
  for (const id of ids) {
    if (typeof id === "number" && id <= 0xffff_ffff) u32.push(id);
    else others.push(id);
  }
  const a = Uint32Array.from(new Set(u32)).sort();
  const b = [...new Set(others)].sort(compareIds);
  return new IdList(a, b);
}

/** Options of {@link transferHandlers}. */
export interface TransferServiceOptions {
  logger?: (message: string) => void;
  /** Counts Scan, CopyBatch and Prune in the gRPC request metrics. */
  metrics?: RequestMetrics;
  clock?: () => number;
  /**
   * The node's tombstone grace (src/node/tombstone_gc.ts); 0 or absent: tombstones are kept
   * forever. A copied tombstone older than it is not stored: this node collected it (or will),
   * and storing it again would make digests of replicas disagree run after run.
   */
  tombstone_grace_ms?: number;
  /** The shard image and install state (ShardImage*, ShardInstall*); default a new one. */
  shard_transfers?: ShardTransfers;
}

/**
 * The Transfer handlers over `store`; `state.closing` makes calls fail with UNAVAILABLE. When
 * `state` has `transfer_last_ms`, every call that passes the guard's checks sets it to the time
 * it arrived (a node handing off on shutdown waits while a router keeps reading it). The calls
 * go through their own {@link UnaryGuard} (src/api/unary.ts): at most {@link IN_FLIGHT_MAX} in
 * flight (counted apart from the VectorDB service's), a passed deadline answered at once, errors
 * mapped by the node's {@link toStatus}.
 */
export function transferHandlers(
  store: NodeStore,
  state: { closing: boolean; transfer_last_ms?: number },
  options: TransferServiceOptions = {},
): grpc.UntypedServiceImplementation {
  const log = options.logger ?? ((m: string) => console.error(m));
  const now = options.clock ?? (() => Date.now());
  const snapshots = new Map<string, { ids: IdList; built_ms: number; c: unknown }>();
  const shards = options.shard_transfers ?? new ShardTransfers(store, { clock: now, logger: log });
  const gathers = new BucketGatherCache(now);

  const guard = new UnaryGuard({
    server_name: "node",
    in_flight_max: IN_FLIGHT_MAX,
    closing: () => state.closing,
    to_status: (e) => toStatus(e, store.dataDir),
    log,
    metrics: options.metrics,
  });

  /** Records that a router is reading or writing this node (see {@link transferHandlers}). */
  function arrived(): void {
    if (state.transfer_last_ms !== undefined) state.transfer_last_ms = now();
  }

  return {
    Scan: guard.wrap<ScanRequest, ScanWireResponse>("Scan", (req) => {
      arrived();
      const name = resolveCollection(req.collection);
      const limit = limitOf(req.limit);
      const after = req.from_start
        ? null
        : validatePointId(req.after_id ?? 0, req.after_string_id, "after_");
      const whole = store.get(name);
      // One shard's unit when asked (a shard moved as a file: its catch-up and its losers).
      let c: Pick<Collection, "knownIds" | "getEntry" | "getPayload"> = whole;
      let key = name;
      if (req.by_shard === true) {
        const k = req.shard ?? 0;
        if (!Number.isInteger(k) || k < 0 || k >= whole.shard_number) {
          throw new ValidationError(
            "shard",
            k,
            `shard ${k} is outside collection "${name}" (shards 0 .. ${whole.shard_number - 1})`,
          );
        }
        c = whole.units[k];
        key = `${name}\u0000${k}`;
      }
      let cached = snapshots.get(key);
      if (
        req.from_start || cached === undefined || cached.c !== c ||
        now() - cached.built_ms > SCAN_SNAPSHOT_TTL_MS
      ) {
        cached = { ids: c.knownIds(), built_ms: now(), c };
        snapshots.set(key, cached);
      }
      const page = scanPage(c, cached.ids, after, limit, whole.config.dimension);
      if (page.done) snapshots.delete(key);
      return Promise.resolve(page);
    }),
    CopyBatch: guard.wrap<CopyBatchRequest, CopyBatchResponse>("CopyBatch", async (req) => {
      arrived();
      const name = resolveCollection(req.collection);
      const c = store.get(name);
      let entries = validateCopyPoints(req.points, c.config.dimension);
      const grace = options.tombstone_grace_ms ?? 0;
      let expired = 0;
      if (grace > 0) {
        // A tombstone older than the grace is refused only when storing it would change
        // nothing this replica serves: it holds nothing for the id (collected, or never had it)
        // or holds a version at least as new. Over an older entry it applies — refusing it
        // would keep a live point its delete already beat, and once the other replicas collect
        // the tombstone that point would be copied back everywhere (a resurrection); stored, it
        // is forgotten by the next collection like any other expired tombstone.
        const cutoff = tombstoneCutoffVersion(now(), grace);
        const kept = entries.filter((e) => {
          if (!e.deleted || e.version >= cutoff) return true;
          const held = c.getEntry(e.id);
          return held.version !== 0 && supersedes(e.version, true, held.version, held.deleted);
        });
        expired = entries.length - kept.length;
        entries = kept;
      }
      if (entries.length === 0) return { applied: 0, skipped: expired };
      const r = await c.copy(entries);
      return { applied: r.applied, skipped: r.skipped + expired };
    }),
    Prune: guard.wrap<PruneRequest, PruneResponse>("Prune", async (req) => {
      arrived();
      const name = resolveCollection(req.collection);
      const { ids, versions } = validatePrune(req.ids, req.string_ids, req.versions);
      const c = store.get(name);
      const r = await c.forget(ids, versions);
      return { deleted: r.forgotten, skipped: r.skipped };
    }),
    // A read for a client's Scroll or Count through the router: not rebalancing traffic, so it
    // does not hold a leaving node's hand-off open (no `arrived()`).
    Entries: guard.wrap<EntriesRequest, EntriesWireResponse>("Entries", (req) => {
      const name = resolveCollection(req.collection);
      const limit = req.limit;
      if (
        typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 ||
        limit > ENTRIES_LIMIT_MAX
      ) {
        throw new ValidationError(
          "limit",
          limit,
          `limit ${limit} must be between 1 and ${ENTRIES_LIMIT_MAX}`,
        );
      }
      const after = req.from_start
        ? null
        : validatePointId(req.after_id ?? 0, req.after_string_id, "after_");
      const filter = validateFilter(req.filter, "filter");
      const c = store.get(name);
      return Promise.resolve(
        entriesPage(c, after, limit, req.with_vector === true, filter, req.with_payload === true),
      );
    }),
    Digest: guard.wrap<DigestRequest, Record<string, unknown>>("Digest", (req) => {
      arrived();
      const c = store.get(resolveCollection(req.collection));
      const unit = unitOfShard(c, req.shard ?? 0);
      const root = unit.digestRoot();
      return Promise.resolve({
        root: rootBytes(root),
        entries: root.count,
        buckets: DIGEST_BUCKETS,
        bucket_digests: req.with_buckets === true ? unit.digestBuckets() : new Uint8Array(0),
        shard_number: c.shard_number,
      });
    }),
    BucketEntries: guard.wrap<BucketEntriesRequest, ScanWireResponse>("BucketEntries", (req) => {
      arrived();
      const c = store.get(resolveCollection(req.collection));
      const unit = unitOfShard(c, req.shard ?? 0);
      const mask = bucketMaskOf(req.buckets);
      const limit = limitOf(req.limit);
      const after = req.from_start
        ? null
        : validatePointId(req.after_id ?? 0, req.after_string_id, "after_");
      const listed = (req.ids?.length ?? 0) + (req.string_ids?.length ?? 0);
      // Only the listed ids, sorted (compareIds) and without repeats, paged like the unit's.
      const only = listed === 0
        ? undefined
        : sortedIdList(validatePointIds(req.ids, req.string_ids, SCAN_LIMIT_MAX));
      // Without listed ids, the pages of one paging share one gather of the buckets' ids.
      const name = `${c.name}\0${req.shard ?? 0}`;
      const gathered = only === undefined
        ? gathers.idsFor(name, unit, mask, after) ?? undefined
        : undefined;
      const page = bucketEntriesPage(unit, mask, after, limit, {
        keys_only: req.keys_only === true,
        only,
        gathered,
      });
      if (page.done && only === undefined) gathers.done(name, mask);
      return Promise.resolve(page);
    }),
    // Shard moves as files (src/node/shard_transfer.ts).
    ShardImageOpen: guard.wrap<ShardImageOpenRequest, ShardImageOpenResponse>(
      "ShardImageOpen",
      (req) => {
        arrived();
        return shards.openImage(resolveCollection(req.collection), req.shard);
      },
    ),
    ShardImageRead: guard.wrap<ShardImageReadRequest, ShardImageReadResponse>(
      "ShardImageRead",
      (req) => {
        arrived();
        return shards.readImage(req.image_id, req.offset, req.max_bytes);
      },
    ),
    ShardImageClose: guard.wrap<{ image_id: string }, Record<string, never>>(
      "ShardImageClose",
      async (req) => {
        await shards.closeImage(req.image_id);
        return {};
      },
    ),
    ShardInstallBegin: guard.wrap<ShardInstallBeginRequest, { install_id: string }>(
      "ShardInstallBegin",
      (req) => {
        arrived();
        const name = resolveCollection(req.collection);
        return shards.beginInstall(name, req.shard, req.size, req.seq, req.crc32);
      },
    ),
    ShardInstallChunk: guard.wrap<ShardInstallChunkRequest, { received: number }>(
      "ShardInstallChunk",
      (req) => {
        arrived();
        return shards.chunk(req.install_id, req.offset, req.data, req.crc32);
      },
    ),
    ShardInstallCommit: guard.wrap<{ install_id: string }, { merged: number; points: number }>(
      "ShardInstallCommit",
      (req) => {
        arrived();
        return shards.commit(req.install_id);
      },
    ),
    ShardDrop: guard.wrap<ShardDropRequest, { dropped: number }>("ShardDrop", (req) => {
      arrived();
      const name = resolveCollection(req.collection);
      return shards.drop(name, req.shard, req.expected_root, req.expected_entries);
    }),
  };
}

/** Adds `vectordb.internal.Transfer` to `server`. */
export function addTransferService(
  server: grpc.Server,
  store: NodeStore,
  state: { closing: boolean; transfer_last_ms?: number },
  options: TransferServiceOptions = {},
): void {
  server.addService(transferService, transferHandlers(store, state, options));
}
