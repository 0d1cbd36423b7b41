/**
 * Tombstone collection, and the rule that keeps it safe: **the longest absence the cluster
 * accepts is the tombstone grace** (`--tombstone-grace-s`, default {@link TOMBSTONE_GRACE_MS_DEFAULT}
 * = 7 days).
 *
 * A delete leaves a tombstone (the id and the delete's version) so that a replica that missed
 * the delete is repaired by anti-entropy (the newer tombstone wins by version) instead of
 * bringing the point back. Kept forever, tombstones cost memory and snapshot space per deleted
 * id. So each node forgets tombstones whose version is older than the grace ({@link
 * collectTombstones}, from its tick; FORGET records in each unit's WAL, so replay agrees), and
 * refuses copies of such old tombstones (transfer_service.ts) unless the receiver holds an older
 * entry for the id, so replicas that collected them do not get them back run after run while one
 * that missed the delete still takes it.
 *
 * That is only safe if no replica still holds an older live copy of a collected point. A replica
 * that was reachable got the delete (or its tombstone by anti-entropy) long before the grace ran
 * out; one that was away longer than the grace may not have. So a node that was away longer than
 * the grace does not trust its points: each node writes a {@link HEARTBEAT_FILE} to its data
 * directory every {@link HEARTBEAT_EVERY_MS} while it runs; at start-up, when that file says the
 * node last ran more than {@link absenceLimitMs} ago (the grace less a quarter, kept as
 * margin for an anti-entropy run to repair a node back just in time), it forgets every entry of
 * every collection ({@link discardStaleEntries}: collection definitions and field indexes stay, logged with a
 * warning naming the age and the grace) and starts empty, and the router's rebalancing refills
 * it from the replicas that stayed. The grace must also cover an anti-entropy interval: a
 * replica that came back after an absence just under the limit is repaired by the next run.
 *
 * The heartbeat measures how long the **process** was not running, not how long the node was
 * out of contact: a node that keeps running while partitioned from the cluster longer than the
 * limit keeps its entries and is not discarded; the operator must stop it and empty its data
 * directory (or `drain` it) before it rejoins (docs/OPERATIONS.md).
 *
 * `HEARTBEAT` (written to `HEARTBEAT.tmp`, fsynced, renamed, directory fsynced; little-endian):
 *
 * | field    | type | value                                      |
 * |----------|------|--------------------------------------------|
 * | magic    | u32  | {@link HEARTBEAT_MAGIC} ("VDBH")           |
 * | version  | u32  | {@link HEARTBEAT_VERSION} (1)              |
 * | time_ms  | f64  | when the node last ran (ms since the epoch) |
 * | crc32    | u32  | CRC-32 of the 16 bytes before it           |
 *
 * A data directory without the file (new, or written before this existed) is trusted; a
 * damaged file is reported and treated as absent (it is rewritten at the next tick).
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "../io/crc32.ts";
import { writeFileAtomic, writeFully } from "../io/fs_util.ts";
import { VERSION_LOGICAL_BITS } from "../common/version.ts";
import { SCAN_LIMIT_MAX } from "../common/limits.ts";
import type { NodeStore } from "../storage/node_store.ts";
import type { Collection } from "../storage/collection.ts";

/** Default tombstone grace: 7 days, the longest absence a cluster accepts by default. */
export const TOMBSTONE_GRACE_MS_DEFAULT = 7 * 24 * 3600_000;
/** How often a running node rewrites its heartbeat (and collects tombstones). */
export const HEARTBEAT_EVERY_MS = 60_000;
/** Name of the heartbeat file in the data directory. */
export const HEARTBEAT_FILE = "HEARTBEAT";
/** "VDBH", little-endian. */
export const HEARTBEAT_MAGIC = 0x48424456;
export const HEARTBEAT_VERSION = 1;
const HEARTBEAT_BYTES = 20;

/** Tombstones forgotten per FORGET record. */
const FORGET_BATCH = SCAN_LIMIT_MAX;

/** The version stamped `grace_ms` before `now_ms`: tombstones below it are collected. */
export function tombstoneCutoffVersion(now_ms: number, grace_ms: number): number {
  return Math.max(0, now_ms - grace_ms) * 2 ** VERSION_LOGICAL_BITS;
}

/** Encodes a heartbeat file (see the module comment). */
export function encodeHeartbeat(time_ms: number): Uint8Array {
  const out = new Uint8Array(HEARTBEAT_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, HEARTBEAT_MAGIC, true);
  v.setUint32(4, HEARTBEAT_VERSION, true);
  v.setFloat64(8, time_ms, true);
  v.setUint32(16, crc32(out.subarray(0, 16)), true);
  return out;
}

/** A heartbeat file's time, or an Error saying why the bytes are not one. */
export function decodeHeartbeat(bytes: Uint8Array): number | Error {
  if (bytes.length !== HEARTBEAT_BYTES) {
    return new Error(`it has ${bytes.length} bytes, not ${HEARTBEAT_BYTES}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = v.getUint32(0, true);
  if (magic !== HEARTBEAT_MAGIC) return new Error(`magic 0x${magic.toString(16)} is not VDBH`);
  const version = v.getUint32(4, true);
  if (version !== HEARTBEAT_VERSION) return new Error(`version ${version} is unknown`);
  if (crc32(bytes.subarray(0, 16)) !== v.getUint32(16, true)) {
    return new Error("its checksum does not match");
  }
  const t = v.getFloat64(8, true);
  if (!Number.isFinite(t) || t < 0) return new Error(`time ${t} is not a time`);
  return t;
}

/** Writes the heartbeat of `dataDir` (tmp, fsync, rename, directory fsync). */
export async function writeHeartbeat(dataDir: string, time_ms: number): Promise<void> {
  const bytes = encodeHeartbeat(time_ms);
  await writeFileAtomic(join(dataDir, HEARTBEAT_FILE), (h, temp) => writeFully(h, temp, bytes, 0));
}

/** The time in `dataDir`'s heartbeat; null when there is none or it is damaged (logged). */
export function readHeartbeat(dataDir: string, log: (m: string) => void): number | null {
  const file = join(dataDir, HEARTBEAT_FILE);
  if (!existsSync(file)) return null;
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    log(`WARNING: heartbeat file ${file} is unreadable (${(e as Error).message}); ignored`);
    return null;
  }
  const t = decodeHeartbeat(bytes);
  if (t instanceof Error) {
    log(`WARNING: heartbeat file ${file} is damaged: ${t.message}; ignored`);
    return null;
  }
  return t;
}

/** Forgets every entry of `unit` (FORGET records of up to 4,096 ids); returns how many. */
async function forgetAll(unit: Collection): Promise<number> {
  const ids = unit.knownIds();
  let forgotten = 0;
  for (let start = 0; start < ids.length; start += FORGET_BATCH) {
    const end = Math.min(ids.length, start + FORGET_BATCH);
    const batch = [];
    const versions = [];
    for (let i = start; i < end; i++) {
      const id = ids.at(i);
      batch.push(id);
      versions.push(unit.getEntry(id).version);
    }
    forgotten += (await unit.forget(batch, versions)).forgotten;
  }
  return forgotten;
}

/**
 * The longest absence a node survives with its entries: the grace less {@link
 * absenceMarginMs}. Why a margin: a node that left at time L missed the deletes made just after
 * L; their tombstones are collected elsewhere at L + grace. Back at R, the node is repaired only
 * by the next anti-entropy run that reaches it, up to one `--anti-entropy-s` interval plus a
 * heartbeat period later; that must come before L + grace, so R - L must stay below the grace by
 * at least that much. The node does not know the router's interval, so the margin is a fixed
 * quarter of the grace (1.75 days of the default 7): keep `--anti-entropy-s` plus a minute well
 * under it (docs/OPERATIONS.md).
 */
export function absenceLimitMs(grace_ms: number): number {
  return grace_ms - absenceMarginMs(grace_ms);
}

/** The margin of {@link absenceLimitMs}: a quarter of the grace. */
export function absenceMarginMs(grace_ms: number): number {
  return grace_ms / 4;
}

/**
 * At start-up, after the store opened: when the data directory's heartbeat is older than
 * {@link absenceLimitMs} (the grace less a quarter), forgets every entry of every collection (definitions and field indexes stay)
 * and returns the entries forgotten; else 0. Writes a fresh heartbeat either way, after the
 * discard (a crash during it repeats it at the next start).
 */
export async function discardStaleEntries(
  store: NodeStore,
  now_ms: number,
  grace_ms: number,
  log: (m: string) => void,
): Promise<number> {
  const last = readHeartbeat(store.dataDir, log);
  let forgotten = 0;
  if (grace_ms > 0 && last !== null && now_ms - last > absenceLimitMs(grace_ms)) {
    const age_s = Math.round((now_ms - last) / 1000);
    log(
      `WARNING: this node last ran ${age_s} s ago, longer than the tombstone grace less its ` +
        `margin (${Math.round(absenceLimitMs(grace_ms) / 1000)} s: ` +
        `${Math.round(grace_ms / 1000)} s, --tombstone-grace-s, less a quarter left for ` +
        `anti-entropy to repair a returning node): deletes made meanwhile may soon be ` +
        `collected, so its entries cannot be trusted; forgetting every entry ` +
        `(collections and field indexes stay) and starting empty for the cluster to refill`,
    );
    for (const c of store.list()) {
      for (const unit of c.units) forgotten += await forgetAll(unit);
    }
    log(`forgot ${forgotten} entries of ${store.list().length} collections`);
  }
  await writeHeartbeat(store.dataDir, now_ms);
  return forgotten;
}

/**
 * Forgets, in every unit of every collection, the tombstones older than `grace_ms` (up to
 * `max_per_unit` per unit per call; the next call takes the rest). Returns how many.
 */
export async function collectTombstones(
  store: NodeStore,
  now_ms: number,
  grace_ms: number,
  max_per_unit = 16 * FORGET_BATCH,
): Promise<number> {
  if (grace_ms <= 0) return 0;
  const cutoff = tombstoneCutoffVersion(now_ms, grace_ms);
  let forgotten = 0;
  for (const c of store.list()) {
    for (const unit of c.units) {
      const { ids, versions } = unit.expiredTombstones(cutoff, max_per_unit);
      for (let i = 0; i < ids.length; i += FORGET_BATCH) {
        const r = await unit.forget(
          ids.slice(i, i + FORGET_BATCH),
          versions.slice(i, i + FORGET_BATCH),
        );
        forgotten += r.forgotten;
      }
    }
  }
  return forgotten;
}

/**
 * The node's periodic part: every {@link HEARTBEAT_EVERY_MS} (or `every_ms`), collects
 * expired tombstones and rewrites the heartbeat. Call {@link tick} from the node's timer.
 */
export class TombstoneCollector {
  private last_ms = -Infinity;
  /** Tombstones forgotten since start. */
  collected = 0;

  constructor(
    private readonly store: NodeStore,
    private readonly grace_ms: number,
    private readonly log: (m: string) => void,
    private readonly every_ms = HEARTBEAT_EVERY_MS,
  ) {}

  /**
   * Collects, then writes the heartbeat — in `finally`: the heartbeat says the node is running
   * (and serving writes), so a collection that keeps failing (a full disk refusing FORGET, a
   * unit closed by a concurrent drop) must not stop it, or the next start would wrongly find
   * the node away longer than the grace and discard every entry. A collection error is logged
   * and swallowed (the next tick retries); a heartbeat error is thrown to the caller.
   */
  async tick(now_ms: number = Date.now()): Promise<void> {
    if (now_ms - this.last_ms < this.every_ms) return;
    this.last_ms = now_ms;
    try {
      const n = await collectTombstones(this.store, now_ms, this.grace_ms);
      if (n > 0) {
        this.collected += n;
        this.log(`collected ${n} tombstones older than the grace (${this.grace_ms} ms)`);
      }
    } catch (e) {
      this.log(`tombstone collection failed (retried next tick): ${(e as Error).message}`);
    } finally {
      await writeHeartbeat(this.store.dataDir, now_ms);
    }
  }
}
