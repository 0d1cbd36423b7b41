/**
 * A collection on one storage node as a set of shard units: each shard replica the node holds
 * is a whole {@link Collection} (own WAL, snapshots, versions, key table, payload indexes) in
 * its own directory, and a point lives in the unit of its shard (`shardOf(id, shard_number)`,
 * src/common/shard.ts). This class is the collection the node's services see: writes go to the
 * point's unit, reads merge the units (ids in `compareIds` order, counts summed, search hits
 * merged by distance).
 *
 * On-disk layout (under the node's data directory):
 *
 * | path                                   | what                                              |
 * |----------------------------------------|---------------------------------------------------|
 * | `collections/<name>/wal/`, `snapshots/`| a 1-shard collection's only unit: exactly the     |
 * |                                        | layout of a collection made before shards existed |
 * | `collections/<name>/LAYOUT`            | {@link LAYOUT_FILE}: present when the collection  |
 * |                                        | has more than one shard or a replication factor;  |
 * |                                        | absent means 1 shard, replication factor 0        |
 * | `collections/<name>/shards/<k>/`       | unit of shard k (0 .. shard_number - 1) of a      |
 * |                                        | collection with more than one shard: `wal/` and   |
 * |                                        | `snapshots/` as above                             |
 *
 * So a data directory written before shards loads unchanged: each of its collections is a
 * 1-shard collection (which is how routers treat them too), and nothing needs migrating.
 *
 * `LAYOUT` (written to `LAYOUT.tmp`, fsynced, renamed, directory fsynced; little-endian):
 *
 * | field              | type       | value                                              |
 * |--------------------|------------|----------------------------------------------------|
 * | magic              | u32        | {@link LAYOUT_MAGIC} ("VDBL")                      |
 * | version            | u32        | {@link LAYOUT_VERSION} (1)                         |
 * | shard_number       | u32        | 1 .. SHARDS_MAX                                    |
 * | replication_factor | u32        | 0 .. REPLICATION_FACTOR_MAX (0: router default)    |
 * | name               | string     | u32 byte length, then UTF-8                        |
 * | dimension          | u32        |                                                    |
 * | metric             | string     |                                                    |
 * | m, ef_construction | u32, u32   |                                                    |
 * | quantization       | string     | "none" or "int8"                                   |
 * | rescore            | u32        | 0 without quantization                             |
 * | crc32              | u32        | CRC-32 (io/crc32.ts) of every byte before it       |
 *
 * Every unit of a collection is made when the collection is (in the node store's `creating/`
 * directory, before the rename that commits it), so a committed collection has no half-made unit
 * after a crash and field indexes always exist on every unit. A unit found holding no snapshot
 * and no log record anyway never held an acknowledged write; {@link ShardedCollection.open} makes
 * it again, empty (logged), as the node store removes a half-made collection. An empty unit costs a WAL segment and two
 * directories; units of shards the node is not placed on stay empty and are skipped by searches.
 *
 * Writes of one id go to one unit, so their order is kept. A batch over several units is split;
 * each unit logs its part durably (concurrently, each with its own group commit) and the batch is
 * acknowledged when all are durable; one version is stamped for the whole batch. When one unit's
 * part fails (a full disk, say), the parts other units made durable stay: the caller sees the
 * error and retries, and a retry at the same version is a no-op where it already applied. All
 * units share one {@link VersionClock}, so a stamp sorts after every version the collection holds.
 *
 * Sequence numbers are per unit: a write's `seq` is that of its unit's record (for a batch over
 * several units, the largest), and {@link ShardedCollection.lastSeq} is the sum over units, which
 * grows with every write.
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";
import { crc32 } from "../io/crc32.ts";
import { writeFileAtomic, writeFully } from "../io/fs_util.ts";
import { canonicalId, compareIds, type PointId } from "../common/point_id.ts";
import { shardOf } from "../common/shard.ts";
import { VersionClock } from "../common/version.ts";
import { METRICS, QUANTIZATIONS, REPLICATION_FACTOR_MAX, SHARDS_MAX } from "../common/limits.ts";
import type { Filter } from "../common/filter.ts";
import type { Metric } from "../kernels/kernels.ts";
import type { WalStats } from "../io/wal.ts";
import type { PayloadIndexInfo } from "./payload_index.ts";
import { recoverUnitSwap, stagedUnitDir, swapUnitDirs } from "./unit_swap.ts";
import { randomBytes } from "node:crypto";
import type { RootDigest } from "../common/digest.ts";
import {
  Collection,
  type CollectionConfig,
  CollectionIncompleteError,
  type CollectionOptions,
  CollectionStateError,
  type CopyEntry,
  type Entry,
  IdList,
  type KeyHit,
  type Point,
  type SearchOutcome,
  validateCopyEntries,
  validatePoints,
  validateVersion,
} from "./collection.ts";

/** Name of the layout file in a collection's directory. */
export const LAYOUT_FILE = "LAYOUT";
/** "VDBL", little-endian. */
export const LAYOUT_MAGIC = 0x4c424456;
/** Version of the layout files written. */
export const LAYOUT_VERSION = 1;
/** Largest layout file read (a name is at most 255 bytes; the rest is a few numbers). */
const LAYOUT_BYTES_MAX = 4096;
/** Directory of the units of a collection with more than one shard. */
export const SHARDS_DIR = "shards";

/** A collection's parameters with its shard layout. */
export interface ShardedConfig extends CollectionConfig {
  /** 1 .. SHARDS_MAX; absent or 0: 1. */
  shard_number?: number;
  /** 0 .. REPLICATION_FACTOR_MAX; absent: 0 (the router's default). */
  replication_factor?: number;
}

/** A collection's layout file is damaged or not a layout file; the message names the file. */
export class LayoutFormatError extends CollectionStateError {
  constructor(readonly file: string, reason: string) {
    super(`Collection layout file ${file} is unreadable: ${reason}`);
    this.name = "LayoutFormatError";
  }
}

/** `shards` of a search names a shard outside the collection or twice (a RangeError). */
export class ShardListError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "ShardListError";
  }
}

/** Per-shard numbers of {@link ShardedCollection.stats}. */
export interface ShardStats {
  shard: number;
  count: number;
  tombstones: number;
  last_seq: number;
  last_snapshot_seq: number;
  wal_bytes: number;
}

/** What {@link ShardedCollection.stats} returns: the collection's totals, then per shard. */
export interface ShardedStats {
  count: number;
  tombstones: number;
  dimension: number;
  metric: Metric;
  memory_bytes: number;
  wal_bytes: number;
  wal: WalStats;
  /** Sum over units (as {@link ShardedCollection.lastSeq}). */
  last_snapshot_seq: number;
  /** The oldest unit's last snapshot (0 while any unit has none). */
  last_snapshot_time_ms: number;
  last_seq: number;
  shards: ShardStats[];
}

/** The directory of unit `shard` of a collection at `dir` with `shard_number` shards. */
export function unitDir(dir: string, shard_number: number, shard: number): string {
  return shard_number === 1 ? dir : join(dir, SHARDS_DIR, String(shard));
}

/** Encodes a layout file's bytes (see the module comment). */
export function encodeLayout(config: ShardedConfig): Uint8Array {
  const sink = new BufferSink({ initial_bytes: 256, bytes_max: LAYOUT_BYTES_MAX });
  const w = new BinaryWriter(sink);
  w.u32(LAYOUT_MAGIC);
  w.u32(LAYOUT_VERSION);
  w.u32(shardsOf(config));
  w.u32(config.replication_factor ?? 0);
  w.string(config.name);
  w.u32(config.dimension);
  w.string(config.metric);
  w.u32(config.m);
  w.u32(config.ef_construction);
  const quantized = config.quantization !== undefined && config.quantization !== "none";
  w.string(quantized ? config.quantization! : "none");
  w.u32(quantized ? config.rescore ?? 0 : 0);
  w.flush();
  const body = sink.bytes();
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, crc32(body), true);
  return out;
}

/** Decodes a layout file's bytes; LayoutFormatError naming `file` when they are not one. */
export function decodeLayout(bytes: Uint8Array, file: string): ShardedConfig {
  if (bytes.length < 8 || bytes.length > LAYOUT_BYTES_MAX) {
    throw new LayoutFormatError(file, `${bytes.length} bytes (expected 8 .. ${LAYOUT_BYTES_MAX})`);
  }
  const body = bytes.subarray(0, bytes.length - 4);
  const stored = new DataView(bytes.buffer, bytes.byteOffset).getUint32(body.length, true);
  const r = new BinaryReader(body);
  const magic = body.length >= 4 ? r.u32() : 0;
  if (magic !== LAYOUT_MAGIC) {
    throw new LayoutFormatError(file, `magic 0x${magic.toString(16)} is not "VDBL"`);
  }
  if (crc32(body) !== stored) {
    throw new LayoutFormatError(
      file,
      `checksum 0x${stored.toString(16)} does not match the content (0x${
        crc32(body).toString(16)
      })`,
    );
  }
  try {
    const version = r.u32();
    if (version !== LAYOUT_VERSION) {
      throw new LayoutFormatError(file, `version ${version} is not ${LAYOUT_VERSION}`);
    }
    const shard_number = r.u32();
    const replication_factor = r.u32();
    const name = r.string();
    const dimension = r.u32();
    const metric = r.string();
    const m = r.u32();
    const ef_construction = r.u32();
    const quantization = r.string();
    const rescore = r.u32();
    r.expectEnd();
    if (shard_number < 1 || shard_number > SHARDS_MAX) {
      throw new LayoutFormatError(file, `shard_number ${shard_number} is outside 1..${SHARDS_MAX}`);
    }
    if (replication_factor > REPLICATION_FACTOR_MAX) {
      throw new LayoutFormatError(
        file,
        `replication_factor ${replication_factor} is above ${REPLICATION_FACTOR_MAX}`,
      );
    }
    if (!(METRICS as readonly string[]).includes(metric)) {
      throw new LayoutFormatError(file, `metric ${JSON.stringify(metric)} is unknown`);
    }
    if (!(QUANTIZATIONS as readonly string[]).includes(quantization)) {
      throw new LayoutFormatError(file, `quantization ${JSON.stringify(quantization)} is unknown`);
    }
    const config: ShardedConfig = {
      name,
      dimension,
      metric: metric as Metric,
      m,
      ef_construction,
      shard_number,
      replication_factor,
    };
    if (quantization !== "none") {
      config.quantization = quantization as CollectionConfig["quantization"];
      config.rescore = rescore;
    }
    return config;
  } catch (e) {
    if (e instanceof LayoutFormatError) throw e;
    throw new LayoutFormatError(file, (e as Error).message);
  }
}

/** A unit's parameters: the collection's, without the shard layout. */
function unitConfigOf(config: ShardedConfig): CollectionConfig {
  const c: ShardedConfig = { ...config };
  delete c.shard_number;
  delete c.replication_factor;
  return c;
}

function shardsOf(config: ShardedConfig): number {
  const s = config.shard_number ?? 0;
  return s === 0 ? 1 : s;
}

/** Merges two id lists in `compareIds` order (each sorted, no id in both). */
function mergeIdLists(a: IdList, b: IdList): IdList {
  const u = new Uint32Array(a.u32.length + b.u32.length);
  let i = 0, j = 0, n = 0;
  while (i < a.u32.length && j < b.u32.length) {
    u[n++] = a.u32[i] < b.u32[j] ? a.u32[i++] : b.u32[j++];
  }
  while (i < a.u32.length) u[n++] = a.u32[i++];
  while (j < b.u32.length) u[n++] = b.u32[j++];
  const o: PointId[] = new Array(a.others.length + b.others.length);
  i = 0, j = 0, n = 0;
  while (i < a.others.length && j < b.others.length) {
    o[n++] = compareIds(a.others[i], b.others[j]) < 0 ? a.others[i++] : b.others[j++];
  }
  while (i < a.others.length) o[n++] = a.others[i++];
  while (j < b.others.length) o[n++] = b.others[j++];
  return new IdList(u, o);
}

/** The units' id lists merged pairwise (O(n log units)). */
function mergeAll(lists: IdList[]): IdList {
  if (lists.length === 0) return new IdList(new Uint32Array(0), []);
  let level = lists;
  while (level.length > 1) {
    const next: IdList[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? mergeIdLists(level[i], level[i + 1]) : level[i]);
    }
    level = next;
  }
  return level[0];
}

/** Nearest first; equal distances by id, so a merge of units is deterministic. */
const byDistance = (a: KeyHit, b: KeyHit) => a.distance - b.distance || compareIds(a.id, b.id);

/** One collection of a node: its shard units behind the interface of a {@link Collection}. */
export class ShardedCollection {
  readonly name: string;
  /** The collection's directory (`collections/<name>/`). */
  readonly dir: string;
  readonly config: CollectionConfig;
  readonly shard_number: number;
  /** Replicas per shard the collection was created with (0: the router's default). */
  readonly replication_factor: number;
  /** Shared by every unit (see the module comment). */
  readonly clock: VersionClock;
  /** Unit k holds shard k (replaced whole by {@link installUnit}). */
  readonly units: readonly Collection[];
  /** Options the units were opened with (an installed unit is opened the same way). */
  readonly unitOptions: CollectionOptions;
  /** Per shard: writes started and not yet finished (see {@link on}). */
  private readonly inflight: Int32Array;
  /** Shards whose unit is being swapped: writes to them wait for the promise. */
  private readonly gates = new Map<number, Promise<void>>();
  /** Shards with an {@link installUnit} under way. */
  private readonly installing = new Set<number>();
  /** Units searched by the last search (Search's `shard_searches`). */
  lastShardSearches = 0;
  /** Largest ef of the last search's units, and the nodes they visited (summed), for metrics. */
  lastSearchEf = 0;
  lastVisited = 0;
  private idOrder: { key: Float64Array; ids: IdList } | null = null;

  private constructor(
    dir: string,
    config: ShardedConfig,
    units: Collection[],
    clock: VersionClock,
    unitOptions: CollectionOptions = {},
  ) {
    this.unitOptions = unitOptions;
    this.inflight = new Int32Array(units.length);
    this.dir = dir;
    this.name = config.name;
    this.shard_number = units.length;
    this.replication_factor = config.replication_factor ?? 0;
    this.config = unitConfigOf(config);
    this.units = units;
    this.clock = clock;
  }

  /**
   * Writes a new collection into the empty directory `dir` (the node store's temporary under
   * `creating/`): the layout file when there is more than one shard or a replication factor,
   * and every unit, each with its creation record durable; then closes them. Open it with
   * {@link open} (after the rename that commits it).
   */
  static async build(dir: string, config: ShardedConfig, options: CollectionOptions = {}) {
    const s = shardsOf(config);
    if (!Number.isInteger(s) || s < 1 || s > SHARDS_MAX) {
      throw new RangeError(`shard_number ${s} must be between 1 and ${SHARDS_MAX}`);
    }
    const f = config.replication_factor ?? 0;
    if (!Number.isInteger(f) || f < 0 || f > REPLICATION_FACTOR_MAX) {
      throw new RangeError(
        `replication_factor ${f} must be between 0 and ${REPLICATION_FACTOR_MAX}`,
      );
    }
    mkdirSync(dir, { recursive: true });
    if (s > 1 || f > 0) {
      const bytes = encodeLayout(config);
      await writeFileAtomic(join(dir, LAYOUT_FILE), (h, temp) => writeFully(h, temp, bytes, 0));
    }
    const unitConfig = unitConfigOf(config);
    if (s > 1) mkdirSync(join(dir, SHARDS_DIR), { recursive: true });
    for (let k = 0; k < s; k++) {
      const unit = await Collection.create(unitDir(dir, s, k), unitConfig, options);
      await unit.close();
    }
  }

  /**
   * Opens the collection at `dir`: reads its layout file (none: 1 shard, the pre-shard layout)
   * and opens every unit. CollectionIncompleteError when a 1-shard collection's directory holds
   * nothing (as {@link Collection.open}); LayoutFormatError for a damaged layout file.
   */
  static async open(dir: string, options: CollectionOptions = {}): Promise<ShardedCollection> {
    const clock = new VersionClock(options.now_ms);
    const unitOptions = { ...options, clock };
    const log = options.logger ?? ((m: string) => console.error(m));
    const file = join(dir, LAYOUT_FILE);
    if (!existsSync(file)) {
      const only = await Collection.open(dir, unitOptions);
      return new ShardedCollection(dir, { ...only.config }, [only], clock, unitOptions);
    }
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(file);
    } catch (e) {
      throw new LayoutFormatError(file, (e as Error).message);
    }
    const config = decodeLayout(bytes, file);
    const s = shardsOf(config);
    const units: Collection[] = [];
    try {
      for (let k = 0; k < s; k++) {
        const at = unitDir(dir, s, k);
        // A unit install (unit_swap.ts) a crash interrupted: keep the old unit or the new one.
        if (s > 1) {
          for (const line of recoverUnitSwap(at)) log(`Collection "${config.name}": ${line}`);
        }
        if (!existsSync(at)) {
          throw new CollectionStateError(
            `Collection "${config.name}": unit directory ${at} of shard ${k} is missing ` +
              `(the layout file ${file} names ${s} shards)`,
          );
        }
        try {
          units.push(await Collection.open(at, unitOptions));
        } catch (e) {
          if (!(e instanceof CollectionIncompleteError) || s === 1) throw e;
          // A unit holding no snapshot and no log record never held an acknowledged write (a
          // write is acknowledged only once in its unit's log), like a half-made collection:
          // it is made again, empty, rather than refusing the whole collection.
          log(
            `Collection "${config.name}": unit ${at} of shard ${k} held no snapshot and no log ` +
              `record (never acknowledged); made it again, empty`,
          );
          rmSync(at, { recursive: true, force: true });
          const made = await Collection.create(at, unitConfigOf(config), unitOptions);
          await made.close();
          units.push(await Collection.open(at, unitOptions));
        }
      }
    } catch (e) {
      for (const u of units) await u.close().catch(() => {});
      throw e;
    }
    return new ShardedCollection(dir, config, units, clock, unitOptions);
  }

  /** The unit of `id` (canonical). */
  private unitOf(id: PointId): Collection {
    return this.units[shardOf(id, this.shard_number)];
  }

  /** The shard of `id`, after checking the id (a PointIdError naming `field`). */
  private shardFor(id: PointId, field = "id"): number {
    return shardOf(canonicalId(id, field), this.shard_number);
  }

  /**
   * Runs a write on unit `k`: after any unit install under way on it (writes wait out the
   * swap), counted in flight so an install can wait for writes already started on the old unit.
   */
  private async on<T>(k: number, f: (u: Collection) => Promise<T>): Promise<T> {
    for (let g = this.gates.get(k); g !== undefined; g = this.gates.get(k)) await g;
    this.inflight[k]++;
    try {
      return await f(this.units[k]);
    } finally {
      this.inflight[k]--;
    }
  }

  /** The unit of `id`, after checking the id (a PointIdError naming `field`). */
  private unitFor(id: PointId, field = "id"): Collection {
    if (this.shard_number === 1) return this.units[0];
    return this.units[shardOf(canonicalId(id, field), this.shard_number)];
  }

  /**
   * Positions of `n` ids by unit: `shardOf` per id into one Int32Array, then a counting sort.
   * `order[start[k] .. start[k + 1]]` are the positions of unit k's ids, ascending.
   */
  private groups(
    n: number,
    idAt: (i: number) => PointId,
  ): { order: Int32Array; start: Int32Array } {
    const s = this.shard_number;
    const shard = new Int32Array(n);
    const start = new Int32Array(s + 1);
    for (let i = 0; i < n; i++) {
      const k = shardOf(idAt(i), s);
      shard[i] = k;
      start[k + 1]++;
    }
    for (let k = 0; k < s; k++) start[k + 1] += start[k];
    const fill = start.slice(0, s);
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[fill[shard[i]]++] = i;
    return { order, start };
  }

  /** See {@link Collection.put}. */
  put(
    id: PointId,
    vector: ArrayLike<number>,
    version = 0,
    data: Uint8Array | null = null,
  ): Promise<{ seq: number; version: number; applied: boolean }> {
    if (this.shard_number === 1) return this.units[0].put(id, vector, version, data);
    return this.on(this.shardFor(id), (u) => u.put(id, vector, version, data));
  }

  /** See {@link Collection.putBatch}; split by shard, acknowledged when every part is durable. */
  async putBatch(
    points: readonly Point[],
    version = 0,
  ): Promise<{ seq: number; version: number; applied: number }> {
    if (this.shard_number === 1) return await this.units[0].putBatch(points, version);
    validatePoints(points, this.config.dimension);
    validateVersion(version, "version", 0);
    if (points.length === 0) return { seq: this.lastSeq, version, applied: 0 };
    const ids = points.map((p) => canonicalId(p.id));
    const v = version === 0 ? this.clock.next() : version;
    const { order, start } = this.groups(points.length, (i) => ids[i]);
    // Every unit's share must fit its index before any unit logs its share: a batch past a
    // unit's limit is refused whole (CapacityError) rather than applied to the other shards.
    for (let k = 0; k < this.shard_number; k++) this.units[k].checkRoom(start[k + 1] - start[k]);
    const parts: Promise<{ seq: number; applied: number }>[] = [];
    for (let k = 0; k < this.shard_number; k++) {
      if (start[k] === start[k + 1]) continue;
      const part: Point[] = new Array(start[k + 1] - start[k]);
      for (let j = start[k]; j < start[k + 1]; j++) part[j - start[k]] = points[order[j]];
      parts.push(this.on(k, (u) => u.putBatch(part, v)));
    }
    const done = await Promise.all(parts);
    let seq = 0, applied = 0;
    for (const d of done) {
      seq = Math.max(seq, d.seq);
      applied += d.applied;
    }
    return { seq, version: v, applied };
  }

  /** See {@link Collection.delete}. */
  delete(
    id: PointId,
    version = 0,
  ): Promise<{ deleted: boolean; seq: number; version: number; applied: boolean }> {
    if (this.shard_number === 1) return this.units[0].delete(id, version);
    return this.on(this.shardFor(id), (u) => u.delete(id, version));
  }

  /** See {@link Collection.copy}; split by shard. */
  async copy(
    entries: readonly CopyEntry[],
  ): Promise<{ applied: number; skipped: number; seq: number }> {
    if (this.shard_number === 1) return await this.units[0].copy(entries);
    validateCopyEntries(entries, this.config.dimension);
    const ids = entries.map((e) => canonicalId(e.id));
    const { order, start } = this.groups(entries.length, (i) => ids[i]);
    const parts: Promise<{ applied: number; skipped: number; seq: number }>[] = [];
    for (let k = 0; k < this.shard_number; k++) {
      if (start[k] === start[k + 1]) continue;
      const part: CopyEntry[] = new Array(start[k + 1] - start[k]);
      for (let j = start[k]; j < start[k + 1]; j++) part[j - start[k]] = entries[order[j]];
      parts.push(this.on(k, (u) => u.copy(part)));
    }
    let applied = 0, skipped = 0, seq = 0;
    for (const d of await Promise.all(parts)) {
      applied += d.applied;
      skipped += d.skipped;
      seq = Math.max(seq, d.seq);
    }
    return { applied, skipped, seq };
  }

  /** See {@link Collection.forget}; split by shard. */
  async forget(
    ids: ArrayLike<PointId>,
    versions: ArrayLike<number>,
  ): Promise<{ forgotten: number; skipped: number; seq: number }> {
    if (this.shard_number === 1) return await this.units[0].forget(ids, versions);
    if (ids.length !== versions.length) {
      throw new RangeError(`${ids.length} ids come with ${versions.length} versions`);
    }
    const keys = Array.from(ids, (id, i) => canonicalId(id, `ids[${i}]`));
    for (let i = 0; i < keys.length; i++) validateVersion(versions[i], `versions[${i}]`, 0);
    const { order, start } = this.groups(keys.length, (i) => keys[i]);
    const parts: Promise<{ forgotten: number; skipped: number; seq: number }>[] = [];
    for (let k = 0; k < this.shard_number; k++) {
      if (start[k] === start[k + 1]) continue;
      const m = start[k + 1] - start[k];
      const partIds: PointId[] = new Array(m);
      const partVersions = new Float64Array(m);
      for (let j = 0; j < m; j++) {
        partIds[j] = keys[order[start[k] + j]];
        partVersions[j] = versions[order[start[k] + j]];
      }
      parts.push(this.on(k, (u) => u.forget(partIds, partVersions)));
    }
    let forgotten = 0, skipped = 0, seq = 0;
    for (const d of await Promise.all(parts)) {
      forgotten += d.forgotten;
      skipped += d.skipped;
      seq = Math.max(seq, d.seq);
    }
    return { forgotten, skipped, seq };
  }

  /** See {@link Collection.deleteBatch}; split by shard, one version for all. */
  async deleteBatch(
    ids: ArrayLike<PointId>,
    version = 0,
    removed?: Set<PointId>,
  ): Promise<{ deleted: number; applied: number; seq: number; version: number }> {
    if (this.shard_number === 1) return await this.units[0].deleteBatch(ids, version, removed);
    const keys = Array.from(ids, (id, i) => canonicalId(id, `ids[${i}]`));
    validateVersion(version, "version", 0);
    const v = version === 0 ? this.clock.next() : version;
    if (keys.length === 0) return { deleted: 0, applied: 0, seq: this.lastSeq, version: v };
    const { order, start } = this.groups(keys.length, (i) => keys[i]);
    const parts: Promise<{ deleted: number; applied: number; seq: number }>[] = [];
    for (let k = 0; k < this.shard_number; k++) {
      if (start[k] === start[k + 1]) continue;
      const part: PointId[] = new Array(start[k + 1] - start[k]);
      for (let j = start[k]; j < start[k + 1]; j++) part[j - start[k]] = keys[order[j]];
      parts.push(this.on(k, (u) => u.deleteBatch(part, v, removed)));
    }
    let deleted = 0, applied = 0, seq = 0;
    for (const d of await Promise.all(parts)) {
      deleted += d.deleted;
      applied += d.applied;
      seq = Math.max(seq, d.seq);
    }
    return { deleted, applied, seq, version: v };
  }

  /**
   * Checks a search's `shards` list: each entry below shard_number, none twice, at most
   * SHARDS_MAX entries (a {@link ShardListError} naming `field` and the value).
   */
  checkShards(shards: readonly number[], field = "shards"): void {
    if (shards.length > SHARDS_MAX) {
      throw new ShardListError(`${field} has ${shards.length} entries; at most ${SHARDS_MAX}`);
    }
    const seen = new Uint8Array(this.shard_number);
    for (let i = 0; i < shards.length; i++) {
      const k = shards[i];
      if (!Number.isInteger(k) || k < 0 || k >= this.shard_number) {
        throw new ShardListError(
          `${field}[${i}] ${k} is not a shard of collection "${this.name}" ` +
            `(shard_number ${this.shard_number}: 0 .. ${this.shard_number - 1})`,
        );
      }
      if (seen[k] === 1) throw new ShardListError(`${field}[${i}] ${k} is listed twice`);
      seen[k] = 1;
    }
  }

  /**
   * The k nearest live points over the units of `shards` (empty or absent: every unit), merged
   * by distance. Units with no live point are not searched; {@link lastShardSearches} says how
   * many were.
   */
  search(
    vector: ArrayLike<number>,
    k: number,
    ef?: number,
    filter?: Filter | null,
    shards?: readonly number[] | null,
  ): KeyHit[] {
    return this.fanOut(shards, (u) => u.search(vector, k, ef, filter), k);
  }

  /**
   * {@link search}, each unit on a worker thread when its collection may use one
   * ({@link Collection.searchAsync}): the units of one query run in parallel. Returns the
   * merged hits with the units searched, the largest ef and the candidates scored.
   */
  async searchAsync(
    vector: ArrayLike<number>,
    k: number,
    ef?: number,
    filter?: Filter | null,
    shards?: readonly number[] | null,
  ): Promise<{ hits: KeyHit[]; searched: number; ef: number; visited: number }> {
    if (shards !== undefined && shards !== null && shards.length > 0) this.checkShards(shards);
    const all = shards === undefined || shards === null || shards.length === 0;
    const n = all ? this.shard_number : shards.length;
    const runs: Promise<SearchOutcome>[] = [];
    for (let i = 0; i < n; i++) {
      const u = this.units[all ? i : shards![i]];
      // An empty unit still checks the query (dimension, filter) when it is the only one.
      if (u.index.count === 0 && !(n === 1 && runs.length === 0)) continue;
      runs.push(u.searchAsync(vector, k, ef, filter));
    }
    const outcomes = await Promise.all(runs);
    let merged: KeyHit[] = [];
    let maxEf = 0, visited = 0;
    for (const o of outcomes) {
      maxEf = Math.max(maxEf, o.ef);
      visited += o.visited;
      merged = outcomes.length === 1 ? o.hits : merged.concat(o.hits);
    }
    if (outcomes.length > 1) {
      merged.sort(byDistance);
      if (merged.length > k) merged.length = k;
    }
    this.lastShardSearches = outcomes.length;
    this.lastSearchEf = maxEf;
    this.lastVisited = visited;
    return { hits: merged, searched: outcomes.length, ef: maxEf, visited };
  }

  /** The exact k nearest over the units of `shards` (see {@link Collection.exactSearch}). */
  exactSearch(
    vector: ArrayLike<number>,
    k: number,
    filter?: Filter | null,
    shards?: readonly number[] | null,
  ): KeyHit[] {
    return this.fanOut(shards, (u) => u.exactSearch(vector, k, filter), k);
  }

  private fanOut(
    shards: readonly number[] | null | undefined,
    run: (u: Collection) => KeyHit[],
    k: number,
  ): KeyHit[] {
    if (shards !== undefined && shards !== null && shards.length > 0) this.checkShards(shards);
    const all = shards === undefined || shards === null || shards.length === 0;
    const n = all ? this.shard_number : shards.length;
    let merged: KeyHit[] | null = null;
    let searched = 0, ef = 0, visited = 0;
    for (let i = 0; i < n; i++) {
      const u = this.units[all ? i : shards![i]];
      // An empty unit still checks the query (dimension, filter) when it is the only one.
      if (u.index.count === 0 && !(n === 1 && searched === 0)) continue;
      const hits = run(u);
      searched++;
      ef = Math.max(ef, u.index.lastSearchEf);
      visited += u.index.lastVisited;
      merged = merged === null ? hits : merged.concat(hits);
    }
    this.lastShardSearches = searched;
    this.lastSearchEf = ef;
    this.lastVisited = visited;
    if (merged === null) return [];
    if (searched > 1) {
      merged.sort(byDistance);
      if (merged.length > k) merged.length = k;
    }
    return merged;
  }

  /** See {@link Collection.matcher}: the id's unit decides. */
  matcher(filter: Filter | null | undefined): (id: PointId) => boolean {
    if (this.shard_number === 1) return this.units[0].matcher(filter);
    const tests = this.units.map((u) => u.matcher(filter));
    const s = this.shard_number;
    return (id) => tests[shardOf(id, s)](id);
  }

  /** See {@link Collection.matchingIds}: every unit's, in `compareIds` order. */
  matchingIds(filter: Filter | null | undefined): PointId[] {
    if (this.shard_number === 1) return this.units[0].matchingIds(filter);
    const out: PointId[] = [];
    for (const u of this.units) for (const id of u.matchingIds(filter)) out.push(id);
    return out.sort(compareIds);
  }

  /** Live points matching `filter`, summed over units. */
  count(filter?: Filter | null): number {
    let n = 0;
    for (const u of this.units) n += u.count(filter);
    return n;
  }

  /** Builds a payload index on every unit (see {@link Collection.createFieldIndex}). */
  async createFieldIndex(field: string, type: string): Promise<{ created: boolean; seq: number }> {
    // The first unit checks the request; the others then build the same index. Each as a
    // write of its unit (`on`): a unit install or drop under way waits for it, or it for them.
    const first = await this.on(0, (u) => u.createFieldIndex(field, type));
    let created = first.created, seq = first.seq;
    const rest = await Promise.all(
      this.units.slice(1).map((_, j) => this.on(j + 1, (u) => u.createFieldIndex(field, type))),
    );
    for (const r of rest) {
      created ||= r.created;
      seq = Math.max(seq, r.seq);
    }
    return { created, seq };
  }

  /** Drops a payload index on every unit. */
  async dropFieldIndex(field: string): Promise<{ dropped: boolean; seq: number }> {
    let dropped = false, seq = 0;
    const all = this.units.map((_, k) => this.on(k, (u) => u.dropFieldIndex(field)));
    for (const r of await Promise.all(all)) {
      dropped ||= r.dropped;
      seq = Math.max(seq, r.seq);
    }
    return { dropped, seq };
  }

  /** The payload indexes (the same on every unit), sorted by field. */
  fieldIndexes(): PayloadIndexInfo[] {
    return this.units[0].fieldIndexes();
  }

  get(id: PointId): Float32Array | null {
    return this.unitFor(id).get(id);
  }

  /** See {@link Collection.getPayload}. */
  getPayload(id: PointId): Uint8Array | null {
    return this.unitFor(id).getPayload(id);
  }

  /** See {@link Collection.getEntry}. */
  getEntry(id: PointId): Entry {
    return this.unitFor(id).getEntry(id);
  }

  /** Every id held (live or tombstone) over all units, in `compareIds` order. */
  knownIds(): IdList {
    if (this.shard_number === 1) return this.units[0].knownIds();
    return mergeAll(this.units.map((u) => u.knownIds()));
  }

  /**
   * As {@link Collection.sortedIds} over every unit: the merged list is kept until some unit's
   * sequence number or entry count moves.
   */
  sortedIds(): IdList {
    if (this.shard_number === 1) return this.units[0].sortedIds();
    const s = this.shard_number;
    const key = new Float64Array(2 * s);
    for (let k = 0; k < s; k++) {
      key[2 * k] = this.units[k].lastSeq;
      key[2 * k + 1] = this.units[k].entryCount;
    }
    const o = this.idOrder;
    if (o !== null && o.key.every((x, i) => x === key[i])) return o.ids;
    const ids = mergeAll(this.units.map((u) => u.sortedIds()));
    this.idOrder = { key, ids };
    return ids;
  }

  /** Sum of the units' last applied sequence numbers (grows with every write). */
  get lastSeq(): number {
    let n = 0;
    for (const u of this.units) n += u.lastSeq;
    return n;
  }

  /** Entries held (live points and tombstones) over all units. */
  get entryCount(): number {
    let n = 0;
    for (const u of this.units) n += u.entryCount;
    return n;
  }

  /** WAL records replayed at open, over all units. */
  get replayed(): number {
    let n = 0;
    for (const u of this.units) n += u.replayed;
    return n;
  }

  /** Payload bytes of the last snapshots this process wrote, over all units. */
  get lastSnapshotBytes(): number {
    let n = 0;
    for (const u of this.units) n += u.lastSnapshotBytes;
    return n;
  }

  /** The collection's totals (as a single collection reports them), then each shard's. */
  stats(): ShardedStats {
    const shards: ShardStats[] = [];
    let count = 0, tombstones = 0, memory = 0, walBytes = 0, snapSeq = 0, lastSeq = 0;
    let snapTime = Infinity;
    const wal: WalStats = {
      records: 0,
      bytes: 0,
      syncs: 0,
      dir_syncs: 0,
      segments: 0,
      queued_bytes: 0,
      disk_full_refused: 0,
    };
    this.units.forEach((u, k) => {
      const s = u.stats();
      count += s.count;
      tombstones += s.tombstones;
      memory += s.memory_bytes;
      walBytes += s.wal_bytes;
      snapSeq += s.last_snapshot_seq;
      lastSeq += s.last_seq;
      snapTime = Math.min(snapTime, s.last_snapshot_time_ms);
      for (const key of Object.keys(wal) as (keyof WalStats)[]) wal[key] += s.wal[key];
      shards.push({
        shard: k,
        count: s.count,
        tombstones: s.tombstones,
        last_seq: s.last_seq,
        last_snapshot_seq: s.last_snapshot_seq,
        wal_bytes: s.wal_bytes,
      });
    });
    return {
      count,
      tombstones,
      dimension: this.config.dimension,
      metric: this.config.metric,
      memory_bytes: memory,
      wal_bytes: walBytes,
      wal,
      last_snapshot_seq: snapSeq,
      last_snapshot_time_ms: Number.isFinite(snapTime) ? snapTime : 0,
      last_seq: lastSeq,
      shards,
    };
  }

  /**
   * Replaces the unit of shard `k` by the unit staged (complete: a snapshot image in its
   * `snapshots/`) in the directory `staged` (`unit_swap.ts` `stagedUnitDir`), which the image
   * loads without re-inserting anything. The entries the current unit holds (writes routed to
   * this node since it gained the shard) are copied into the new unit last-writer-wins: once
   * while the old unit still takes writes, then again after writes to shard k were stopped and
   * those in flight finished (few by then). Then both are closed, the directories swapped
   * (`swapUnitDirs`: a crash leaves the old unit or the new, whole) and the new unit opened in
   * place with the current unit's payload indexes (created or dropped after the image was
   * taken); writes to shard k wait during that last step. Returns the entries merged.
   * CollectionStateError for a 1-shard collection (its unit is the collection's directory) or
   * while another install of shard `k` runs.
   */
  async installUnit(k: number, staged: string): Promise<{ merged: number }> {
    if (this.shard_number === 1) {
      throw new CollectionStateError(
        `Collection "${this.name}" has one shard; its unit cannot be installed from an image`,
      );
    }
    if (!Number.isInteger(k) || k < 0 || k >= this.shard_number) {
      throw new ShardListError(`shard ${k} is outside 0 .. ${this.shard_number - 1}`);
    }
    if (this.installing.has(k)) {
      throw new CollectionStateError(
        `Collection "${this.name}": shard ${k} is already being installed`,
      );
    }
    this.installing.add(k);
    try {
      const fresh = await Collection.open(staged, this.unitOptions);
      let merged = 0;
      try {
        merged += await mergeUnit(this.units[k], fresh);
      } catch (e) {
        await fresh.close().catch(() => {});
        throw e;
      }
      let release = () => {};
      this.gates.set(k, new Promise<void>((r) => release = r));
      const at = unitDir(this.dir, this.shard_number, k);
      const units = this.units as Collection[];
      try {
        while (this.inflight[k] > 0) await new Promise((r) => setTimeout(r, 1));
        const old = units[k];
        try {
          merged += await mergeUnit(old, fresh);
        } catch (e) {
          await fresh.close().catch(() => {});
          throw e;
        }
        // The collection's payload indexes as of now: every change since the image was taken
        // (on the source node) went to the old unit only, through its write gate; the
        // installed unit is brought to them once swapped in, as dropUnit does.
        const fields = old.fieldIndexes();
        await fresh.close();
        await old.close();
        let swapped = false;
        try {
          await swapUnitDirs(at, staged);
          swapped = true;
        } finally {
          // Whatever the swap reached, the directory now holds one whole unit.
          recoverUnitSwap(at);
          // Swapped: the new unit's state is in memory already (the image is not loaded
          // twice); else whichever unit the directory holds is opened from disk.
          units[k] = swapped
            ? await Collection.reopenMoved(fresh, at, this.unitOptions)
            : await Collection.open(at, this.unitOptions);
          this.idOrder = null;
        }
        if (swapped) await matchFieldIndexes(units[k], fields);
      } finally {
        this.gates.delete(k);
        release();
      }
      return { merged };
    } finally {
      this.installing.delete(k);
    }
  }

  /**
   * Empties the unit of shard `k` wholesale (ShardDrop, src/node/shard_transfer.ts): a node that
   * lost the shard forgets every entry at once instead of one by one. An empty unit (its
   * creation record and the current unit's payload indexes, durable) is made in a staged
   * directory first; then writes to shard k are stopped, those in flight finish, and the unit's
   * root digest is compared with `expected` (the one the router read before it confirmed that
   * the shard's owners hold everything the unit held). Only when they are equal (entry count
   * included) are the units swapped (`swapUnitDirs`: a crash leaves the full unit or the empty
   * one, never a mix); otherwise nothing changes and the unit's root comes back as `mismatch`,
   * so a write that reached this unit after the router's check is never lost. Returns the
   * entries dropped. CollectionStateError for a 1-shard collection or while an install or
   * another drop of shard `k` runs.
   */
  async dropUnit(
    k: number,
    expected: RootDigest,
  ): Promise<{ dropped: number; mismatch: RootDigest | null }> {
    if (this.shard_number === 1) {
      throw new CollectionStateError(
        `Collection "${this.name}" has one shard; its unit cannot be dropped wholesale`,
      );
    }
    if (!Number.isInteger(k) || k < 0 || k >= this.shard_number) {
      throw new ShardListError(`shard ${k} is outside 0 .. ${this.shard_number - 1}`);
    }
    if (this.installing.has(k)) {
      throw new CollectionStateError(
        `Collection "${this.name}": shard ${k} is being installed or dropped`,
      );
    }
    this.installing.add(k);
    const at = unitDir(this.dir, this.shard_number, k);
    const staged = stagedUnitDir(at, randomBytes(12).toString("hex"));
    try {
      const units = this.units as Collection[];
      const fresh = await Collection.create(staged, this.config, this.unitOptions);
      try {
        for (const f of units[k].fieldIndexes()) await fresh.createFieldIndex(f.field, f.type);
      } finally {
        await fresh.close();
      }
      let release = () => {};
      this.gates.set(k, new Promise<void>((r) => release = r));
      try {
        while (this.inflight[k] > 0) await new Promise((r) => setTimeout(r, 1));
        const old = units[k];
        const root = old.digestRoot();
        if (root.lo !== expected.lo || root.hi !== expected.hi || root.count !== expected.count) {
          return { dropped: 0, mismatch: root };
        }
        const dropped = old.entryCount;
        // The indexes as of now (one created or dropped since the empty unit copied them went
        // to this unit only): the empty unit is brought to them once swapped in.
        const fields = old.fieldIndexes();
        await old.close();
        let swapped = false;
        try {
          await swapUnitDirs(at, staged);
          swapped = true;
        } finally {
          // Whatever the swap reached, the directory now holds one whole unit.
          recoverUnitSwap(at);
          units[k] = await Collection.open(at, this.unitOptions);
          this.idOrder = null;
        }
        if (swapped) await matchFieldIndexes(units[k], fields);
        return { dropped, mismatch: null };
      } finally {
        this.gates.delete(k);
        release();
      }
    } finally {
      rmSync(staged, { recursive: true, force: true });
      this.installing.delete(k);
    }
  }

  /** Snapshots every unit with unsnapshotted writes. */
  async snapshot(): Promise<void> {
    await Promise.all(this.units.map((u) => u.snapshot()));
  }

  /** Closes every unit (snapshotting first when asked); the first failure is rethrown after. */
  async close(options: { snapshot?: boolean } = {}): Promise<void> {
    let failure: unknown = null;
    for (const u of this.units) {
      try {
        await u.close(options);
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure !== null) throw failure;
  }
}

/** Entries copied per batch by {@link mergeUnit}. */
const MERGE_BATCH = 4096;

/**
 * Copies every entry `from` holds (live points and tombstones, with their versions) into
 * `into`, last-writer-wins; entries without a version (written before versions existed) cannot
 * be ordered and are left out. Returns the entries applied.
 */
export async function mergeUnit(from: Collection, into: Collection): Promise<number> {
  const ids = from.knownIds();
  let applied = 0;
  let batch: CopyEntry[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    applied += (await into.copy(batch)).applied;
    batch = [];
  };
  for (let i = 0; i < ids.length; i++) {
    const id = ids.at(i);
    const e = from.getEntry(id);
    if (e.version < 1 || (e.vector === null && !e.deleted)) continue;
    batch.push(
      e.deleted ? { id, version: e.version, deleted: true } : {
        id,
        version: e.version,
        deleted: false,
        vector: e.vector!,
        payload: from.getPayload(id),
      },
    );
    if (batch.length >= MERGE_BATCH) await flush();
  }
  await flush();
  return applied;
}

/** Creates and drops payload indexes of `unit` until it has exactly `fields` (by field and type). */
async function matchFieldIndexes(unit: Collection, fields: readonly PayloadIndexInfo[]) {
  const want = new Map(fields.map((f) => [f.field, f.type]));
  for (const f of unit.fieldIndexes()) {
    if (want.get(f.field) !== f.type) await unit.dropFieldIndex(f.field);
  }
  const have = new Map(unit.fieldIndexes().map((f) => [f.field, f.type]));
  for (const [field, type] of want) {
    if (have.get(field) !== type) await unit.createFieldIndex(field, type);
  }
}
