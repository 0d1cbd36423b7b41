/**
 * Backups of collections on one storage node: `<data>/backups/<name>/`.
 *
 * | path                                  | what                                               |
 * |---------------------------------------|----------------------------------------------------|
 * | `backups/<name>/snapshot-<seq>.snap`  | a snapshot of the collection (`snapshot.ts` format) |
 * | `backups/<name>/manifest.json`        | {@link BackupManifest}: collection, points, seq, sha256 |
 * | `backups/<name>/shards/<k>/snapshot-<seq>.snap` | version 2: shard k's snapshot (see below) |
 * | `backups/.partial-<name>-<random>/`   | a backup being written (removed at start-up)        |
 * | `backups/.deleting-<name>-<random>/`  | a backup being deleted (removed at start-up)        |
 *
 * **Backup** takes the collection's image between two applies (the same way a snapshot does,
 * `Collection.backupTo`), so it is exactly the state after one WAL sequence number. It is
 * written into a temporary directory (snapshot file fsynced, manifest written atomically, the
 * directory fsynced), which is renamed to `backups/<name>/`; `backups/` is then fsynced. A crash
 * leaves either no backup or the whole one (plus a `.partial-` leftover that
 * {@link removePartialBackups} deletes). An existing name is refused (`BackupExistsError`).
 *
 * **Sharded collections** (more than one shard, or a replication factor; see
 * sharded_collection.ts) get a version 2 manifest: `shard_number`, `replication_factor` and
 * `shards`, one {@link BackupShard} per shard (its snapshot under `shards/<k>/`, its own seq and
 * sha256). Each shard's image is exact at its own seq (shards are independent logs, so there is no
 * single cut across them). The top-level `points`, `tombstones` and `seq` are the sums, and
 * `sha256` is the sha256 of the shards' sha256 strings joined by "\n". A 1-shard collection's
 * backup is exactly version 1, as before, and restores as a 1-shard collection; a version 2
 * backup restores as a collection with the same shards (layout file and units).
 *
 * **Restore** reads the manifest, checks the snapshot file's sha256 against it, then builds a NEW
 * collection under the store's `creating/<collection>/` (the snapshot copied into its
 * `snapshots/`, fsynced) and renames it into `collections/` (`NodeStore.createFrom`). The
 * collection opens from the snapshot (the image is loaded, nothing is re-inserted) with an empty
 * log that continues after the snapshot's seq. A collection that already exists, empty or not,
 * is refused (`CollectionExistsError`): restore never overwrites data.
 *
 * **Delete** renames `backups/<name>/` to a `.deleting-` tombstone, fsyncs `backups/`, then
 * removes the tombstone. The rename is the commit point: before it the backup is whole, after it
 * the name is gone (a tombstone is no valid name, so {@link Backups.list} and restore never see
 * it); a crash during the removal leaves only the tombstone, which start-up deletes. A backup
 * being written, restored or deleted is refused (`BackupBusyError`) rather than pulled away from
 * under the other call.
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, join } from "node:path";
import { collectionNameProblem } from "../common/collection_name.ts";
import { fsyncDir, writeFileAtomic } from "../io/fs_util.ts";
import { snapshotName } from "./snapshot.ts";
import { CollectionStateError } from "./collection.ts";
import {
  encodeLayout,
  LAYOUT_FILE,
  type ShardedCollection,
  SHARDS_DIR,
  unitDir,
} from "./sharded_collection.ts";
import {
  PAYLOAD_FIELD_TYPES,
  PAYLOAD_INDEXES_MAX,
  REPLICATION_FACTOR_MAX,
  SHARDS_MAX,
} from "../common/limits.ts";
import type { NodeStore } from "./node_store.ts";

/** Directory of the backups, under the data directory. */
export const BACKUPS_DIR = "backups";
const PARTIAL_PREFIX = ".partial-";
const DELETING_PREFIX = ".deleting-";
const MANIFEST = "manifest.json";
/** `format` of a manifest. */
export const BACKUP_FORMAT = "vectordb-backup";
/** `version` of the manifests written for a 1-shard collection (what older versions read). */
export const BACKUP_FORMAT_VERSION = 1;
/** `version` of the manifests of sharded collections (`shards` present). */
export const BACKUP_FORMAT_VERSION_SHARDED = 2;

/** One shard of a version 2 backup. */
export interface BackupShard {
  shard: number;
  /** File name of the shard's snapshot, in `shards/<shard>/` of the backup's directory. */
  snapshot_file: string;
  snapshot_bytes: number;
  sha256: string;
  seq: number;
  points: number;
  tombstones: number;
}

/** `manifest.json` of a backup. */
export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  version: number;
  name: string;
  collection: {
    name: string;
    dimension: number;
    metric: string;
    m: number;
    ef_construction: number;
    /** Present only for a quantized collection ("int8"). */
    quantization?: string;
    /** Present with `quantization`. */
    rescore?: number;
    /**
     * The payload indexes (present only when there were any): the snapshot restores them on a
     * node holding the backup; a cluster restore makes them on a node without it (the router
     * reads them from ListBackups).
     */
    field_indexes?: { field: string; type: string }[];
  };
  /** Live points in the image. */
  points: number;
  /** Tombstones (deleted ids with their versions) in the image. */
  tombstones: number;
  /** The last WAL sequence number the image covers. */
  seq: number;
  created_ms: number;
  /** File name of the snapshot, in the backup's directory. */
  snapshot_file: string;
  snapshot_bytes: number;
  /** Hex sha256 of the snapshot file (version 2: of the shards' sha256s, module comment). */
  sha256: string;
  /** Version 2 only: the collection's shards and replication factor, and each shard. */
  shard_number?: number;
  replication_factor?: number;
  shards?: BackupShard[];
}

/** A backup as listed: its manifest and the bytes of its directory. */
export interface BackupSummary {
  manifest: BackupManifest;
  bytes: number;
}

/** The backup does not exist. */
export class BackupNotFoundError extends Error {
  constructor(readonly backup: string) {
    super(`Backup "${backup}" does not exist`);
    this.name = "BackupNotFoundError";
  }
}

/** A backup of that name exists (or is being written). */
export class BackupExistsError extends Error {
  constructor(readonly backup: string) {
    super(`Backup "${backup}" already exists`);
    this.name = "BackupExistsError";
  }
}

/** A manifest value as JSON for a message, cut to 40 characters (a damaged file may hold anything). */
function shown(v: unknown): string {
  const t = JSON.stringify(v) ?? String(v);
  return t.length <= 40 ? t : `${t.slice(0, 40)}...`;
}

/** The backup's files do not match its manifest (or the manifest is unreadable). */
export class BackupCorruptError extends Error {
  constructor(readonly backup: string, reason: string) {
    super(`Backup "${backup}" is damaged: ${reason}`);
    this.name = "BackupCorruptError";
  }
}

/** The backup is being written, restored or deleted by another call (try again after it). */
export class BackupBusyError extends Error {
  constructor(readonly backup: string, what: string) {
    super(`Backup "${backup}" is being ${what} by another call; try again when it is done`);
    this.name = "BackupBusyError";
  }
}

/** A name that breaks the collection-name rule (the caller maps it to INVALID_ARGUMENT). */
export class BackupNameError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "BackupNameError";
  }
}

function checkName(name: unknown, field: string): string {
  const problem = collectionNameProblem(name, field);
  if (problem !== null) throw new BackupNameError(problem);
  return name as string;
}

/** Hex sha256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) {
    hash.update(chunk as Uint8Array);
  }
  return hash.digest("hex");
}

/**
 * Deletes `.partial-` leftovers of interrupted backups and `.deleting-` leftovers of interrupted
 * deletes; returns their paths.
 */
export async function removePartialBackups(dataDir: string): Promise<string[]> {
  const dir = join(dataDir, BACKUPS_DIR);
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(PARTIAL_PREFIX) && !name.startsWith(DELETING_PREFIX)) continue;
    await fsp.rm(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  if (removed.length > 0) await fsyncDir(dir);
  return removed;
}

/** The backups of one node store (module comment). */
export class Backups {
  /** Names of backups being written, so two concurrent calls cannot take one name. */
  readonly #writing = new Set<string>();
  /** Backups being restored (how many restores of each), so none is deleted meanwhile. */
  readonly #restoring = new Map<string, number>();
  /** Backups being deleted. */
  readonly #deleting = new Set<string>();

  constructor(readonly store: NodeStore) {}

  get dir(): string {
    return join(this.store.dataDir, BACKUPS_DIR);
  }

  /** Backs `collection` up as `name`; BackupExistsError when the name is taken. */
  async create(collection: string, name: string): Promise<BackupSummary> {
    checkName(collection, "collection");
    checkName(name, "name");
    const c = this.store.get(collection);
    const final = join(this.dir, name);
    if (this.#writing.has(name) || existsSync(final)) throw new BackupExistsError(name);
    this.#writing.add(name);
    const temp = join(this.dir, `${PARTIAL_PREFIX}${name}-${randomBytes(6).toString("hex")}`);
    try {
      const created = await fsp.mkdir(this.dir, { recursive: true });
      if (created !== undefined) await fsyncDir(this.store.dataDir);
      await fsp.mkdir(temp);
      const sharded = c.shard_number > 1 || c.replication_factor > 0;
      let image: {
        path: string;
        seq: number;
        points: number;
        tombstones: number;
        created_ms: number;
      };
      let sha256: string;
      let shards: BackupShard[] | undefined;
      if (!sharded) {
        image = await c.units[0].backupTo(temp);
        sha256 = await sha256File(image.path);
      } else {
        shards = [];
        image = { path: "", seq: 0, points: 0, tombstones: 0, created_ms: Date.now() };
        await fsp.mkdir(join(temp, SHARDS_DIR));
        for (let k = 0; k < c.shard_number; k++) {
          const at = join(temp, SHARDS_DIR, String(k));
          await fsp.mkdir(at);
          const part = await c.units[k].backupTo(at);
          await fsyncDir(at);
          shards.push({
            shard: k,
            snapshot_file: basename(part.path),
            snapshot_bytes: statSync(part.path).size,
            sha256: await sha256File(part.path),
            seq: part.seq,
            points: part.points,
            tombstones: part.tombstones,
          });
          image.seq += part.seq;
          image.points += part.points;
          image.tombstones += part.tombstones;
        }
        await fsyncDir(join(temp, SHARDS_DIR));
        sha256 = shardsDigest(shards);
      }
      const fields = c.fieldIndexes().map((f) => ({ field: f.field, type: f.type }));
      const manifest: BackupManifest = {
        format: BACKUP_FORMAT,
        version: sharded ? BACKUP_FORMAT_VERSION_SHARDED : BACKUP_FORMAT_VERSION,
        name,
        collection: {
          name: c.name,
          dimension: c.config.dimension,
          metric: c.config.metric,
          m: c.config.m,
          ef_construction: c.config.ef_construction,
          ...(c.config.quantization !== undefined && c.config.quantization !== "none"
            ? { quantization: c.config.quantization, rescore: c.config.rescore }
            : {}),
          ...(fields.length > 0 ? { field_indexes: fields } : {}),
        },
        points: image.points,
        tombstones: image.tombstones,
        seq: image.seq,
        created_ms: image.created_ms,
        snapshot_file: shards === undefined ? basename(image.path) : "",
        snapshot_bytes: shards === undefined
          ? statSync(image.path).size
          : shards.reduce((n, s) => n + s.snapshot_bytes, 0),
        sha256,
        ...(shards === undefined ? {} : {
          shard_number: c.shard_number,
          replication_factor: c.replication_factor,
          shards,
        }),
      };
      const text = new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n");
      await writeFileAtomic(join(temp, MANIFEST), async (handle) => {
        await handle.write(text, 0, text.length, 0);
      });
      await fsyncDir(temp);
      if (existsSync(final)) throw new BackupExistsError(name);
      await fsp.rename(temp, final);
      await fsyncDir(this.dir);
      return { manifest, bytes: dirBytes(final) };
    } catch (e) {
      await fsp.rm(temp, { recursive: true, force: true }).catch(() => {});
      throw e;
    } finally {
      this.#writing.delete(name);
    }
  }

  /** Every backup, by name; a directory whose manifest does not parse is skipped. */
  list(): BackupSummary[] {
    if (!existsSync(this.dir)) return [];
    const out: BackupSummary[] = [];
    for (const name of readdirSync(this.dir).sort()) {
      if (collectionNameProblem(name, "name") !== null) continue;
      try {
        out.push({ manifest: this.manifest(name), bytes: dirBytes(join(this.dir, name)) });
      } catch {
        // not a backup (or damaged): Restore reports it by name
      }
    }
    return out;
  }

  /** The manifest of backup `name`: BackupNotFoundError, BackupCorruptError. */
  manifest(name: string): BackupManifest {
    checkName(name, "backup");
    const dir = join(this.dir, name);
    let text: string;
    try {
      text = readFileSync(join(dir, MANIFEST), "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        if (!existsSync(dir)) throw new BackupNotFoundError(name);
        throw new BackupCorruptError(name, `${join(dir, MANIFEST)} is missing`);
      }
      throw e;
    }
    let m: BackupManifest;
    try {
      m = JSON.parse(text) as BackupManifest;
    } catch (e) {
      throw new BackupCorruptError(name, `${MANIFEST} is not JSON: ${(e as Error).message}`);
    }
    if (
      m?.format !== BACKUP_FORMAT ||
      (m.version !== BACKUP_FORMAT_VERSION && m.version !== BACKUP_FORMAT_VERSION_SHARDED)
    ) {
      throw new BackupCorruptError(
        name,
        `${MANIFEST} has format ${JSON.stringify(m?.format)} version ` +
          `${JSON.stringify(m?.version)}; expected "${BACKUP_FORMAT}" ${BACKUP_FORMAT_VERSION} ` +
          `or ${BACKUP_FORMAT_VERSION_SHARDED}`,
      );
    }
    const fields = m.collection?.field_indexes;
    if (
      fields !== undefined &&
      (!Array.isArray(fields) || fields.length > PAYLOAD_INDEXES_MAX ||
        fields.some((f) =>
          typeof f?.field !== "string" || typeof f.type !== "string" ||
          !(PAYLOAD_FIELD_TYPES as readonly string[]).includes(f.type)
        ))
    ) {
      throw new BackupCorruptError(
        name,
        `${MANIFEST} collection.field_indexes ${shown(fields)} must be a list of at most ` +
          `${PAYLOAD_INDEXES_MAX} {field, type} with type one of ${PAYLOAD_FIELD_TYPES.join(", ")}`,
      );
    }
    if (m.version === BACKUP_FORMAT_VERSION_SHARDED) {
      const s = m.shard_number;
      const f = m.replication_factor;
      if (typeof s !== "number" || !Number.isInteger(s) || s < 1 || s > SHARDS_MAX) {
        throw new BackupCorruptError(
          name,
          `${MANIFEST} (version 2) shard_number ${shown(s)} ` +
            `must be an integer from 1 to ${SHARDS_MAX}`,
        );
      }
      // 0: the collection followed the router's default factor.
      if (typeof f !== "number" || !Number.isInteger(f) || f < 0 || f > REPLICATION_FACTOR_MAX) {
        throw new BackupCorruptError(
          name,
          `${MANIFEST} (version 2) replication_factor ${shown(f)} ` +
            `must be an integer from 0 to ${REPLICATION_FACTOR_MAX}`,
        );
      }
      if (
        !Array.isArray(m.shards) || m.shards.length !== s ||
        m.shards.some((x, k) =>
          x?.shard !== k || typeof x.snapshot_file !== "string" || x.snapshot_file === "" ||
          basename(x.snapshot_file) !== x.snapshot_file || typeof x.sha256 !== "string" ||
          !Number.isInteger(x.seq) || !Number.isInteger(x.points)
        )
      ) {
        throw new BackupCorruptError(
          name,
          `${MANIFEST} (version 2) has no valid shard_number, replication_factor and shards ` +
            `(shard_number ${JSON.stringify(s)})`,
        );
      }
      return m;
    }
    if (typeof m.snapshot_file !== "string" || basename(m.snapshot_file) !== m.snapshot_file) {
      throw new BackupCorruptError(name, `${MANIFEST} names no valid snapshot_file`);
    }
    return m;
  }

  /**
   * Restores backup `backup` into the new collection `collection` (module comment): checks the
   * sha256 first; CollectionExistsError when the collection exists.
   */
  async restore(
    backup: string,
    collection: string,
  ): Promise<{ collection: ShardedCollection; manifest: BackupManifest }> {
    checkName(backup, "backup");
    checkName(collection, "collection");
    if (this.#deleting.has(backup)) throw new BackupBusyError(backup, "deleted");
    this.#restoring.set(backup, (this.#restoring.get(backup) ?? 0) + 1);
    try {
      return await this.#restore(backup, collection);
    } finally {
      const left = this.#restoring.get(backup)! - 1;
      if (left === 0) this.#restoring.delete(backup);
      else this.#restoring.set(backup, left);
    }
  }

  /**
   * Deletes backup `name` (module comment): BackupNotFoundError when it does not exist,
   * BackupBusyError while it is being written, restored or deleted. Returns what was deleted
   * (its manifest, null when that was unreadable: a damaged backup can be deleted too).
   */
  async delete(name: string): Promise<{ manifest: BackupManifest | null }> {
    checkName(name, "name");
    if (this.#writing.has(name)) throw new BackupBusyError(name, "written");
    if (this.#restoring.has(name)) throw new BackupBusyError(name, "restored");
    if (this.#deleting.has(name)) throw new BackupBusyError(name, "deleted");
    const dir = join(this.dir, name);
    if (!existsSync(dir)) throw new BackupNotFoundError(name);
    this.#deleting.add(name);
    try {
      let manifest: BackupManifest | null = null;
      try {
        manifest = this.manifest(name);
      } catch (e) {
        if (!(e instanceof BackupCorruptError)) throw e;
      }
      const tomb = join(this.dir, `${DELETING_PREFIX}${name}-${randomBytes(6).toString("hex")}`);
      await fsp.rename(dir, tomb);
      // The commit point: once `backups/` is synced the name is gone even after a crash.
      await fsyncDir(this.dir);
      await fsp.rm(tomb, { recursive: true, force: true });
      await fsyncDir(this.dir);
      return { manifest };
    } finally {
      this.#deleting.delete(name);
    }
  }

  async #restore(
    backup: string,
    collection: string,
  ): Promise<{ collection: ShardedCollection; manifest: BackupManifest }> {
    const m = this.manifest(backup);
    // Each snapshot file of the backup, with its seq and the unit directory it restores into.
    const parts = m.shards === undefined
      ? [{ source: join(this.dir, backup, m.snapshot_file), seq: m.seq, sha256: m.sha256, k: 0 }]
      : m.shards.map((x) => ({
        source: join(this.dir, backup, SHARDS_DIR, String(x.shard), x.snapshot_file),
        seq: x.seq,
        sha256: x.sha256,
        k: x.shard,
      }));
    for (const p of parts) {
      if (!existsSync(p.source)) {
        throw new BackupCorruptError(backup, `its snapshot file ${p.source} is missing`);
      }
    }
    this.store.checkFree(collection);
    for (const p of parts) {
      const sha = await sha256File(p.source);
      if (sha !== p.sha256) {
        throw new BackupCorruptError(
          backup,
          `sha256 of ${p.source} is ${sha}; the manifest says ${p.sha256}`,
        );
      }
    }
    const shard_number = m.shard_number ?? 1;
    const c = await this.store.createFrom(collection, async (temp) => {
      if (m.shards !== undefined) {
        const layout = encodeLayout({
          ...m.collection,
          metric: m.collection.metric as ShardedCollection["config"]["metric"],
          quantization: m.collection.quantization as ShardedCollection["config"]["quantization"],
          name: collection,
          shard_number,
          replication_factor: m.replication_factor ?? 0,
        });
        await fsp.mkdir(temp, { recursive: true });
        await writeFileAtomic(join(temp, LAYOUT_FILE), async (handle) => {
          await handle.write(layout, 0, layout.length, 0);
        });
      }
      for (const p of parts) {
        const unit = unitDir(temp, shard_number, p.k);
        const snapshots = join(unit, "snapshots");
        await fsp.mkdir(snapshots, { recursive: true });
        const target = join(snapshots, snapshotName(p.seq));
        await fsp.copyFile(p.source, target);
        const handle = await fsp.open(target, "r+");
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fsyncDir(snapshots);
        await fsyncDir(unit);
      }
      if (shard_number > 1) await fsyncDir(join(temp, SHARDS_DIR));
      await fsyncDir(temp);
    });
    if (c.count() !== m.points) {
      throw new CollectionStateError(
        `Restored collection "${collection}" has ${c.count()} points; backup "${backup}" ` +
          `recorded ${m.points}`,
      );
    }
    return { collection: c, manifest: m };
  }
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const st = statSync(join(dir, name));
    total += st.isDirectory() ? dirBytes(join(dir, name)) : st.size;
  }
  return total;
}

/** The top-level sha256 of a version 2 manifest (module comment). */
function shardsDigest(shards: readonly BackupShard[]): string {
  return createHash("sha256").update(shards.map((s) => s.sha256).join("\n")).digest("hex");
}
