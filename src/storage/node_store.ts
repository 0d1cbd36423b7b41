/**
 * The collections of one storage node, in one data directory.
 *
 * | path                          | what                                                |
 * |-------------------------------|-----------------------------------------------------|
 * | `<data>/LOCK`                 | the lock of the process using it (`io/dir_lock.ts`) |
 * | `<data>/collections/<name>/`  | one collection: its shard units and layout file     |
 * |                               | (`sharded_collection.ts`; one shard: `collection.ts`)|
 * | `<data>/creating/<name>/`     | a collection being created (removed at start-up)    |
 * | `<data>/dropped/`             | collections being dropped (removed at start-up)     |
 * | `<data>/backups/<name>/`      | backups of collections (`backups.ts`)               |
 *
 * One process uses a data directory at a time: {@link NodeStore.open} takes its lock (a second
 * opener gets {@link DirLockedError} naming the holder's pid) and {@link NodeStore.close}
 * releases it.
 *
 * Creation is atomic: a collection is built under `creating/<name>/` (directories, first WAL
 * segment and its creation record, all fsynced), then renamed to `collections/<name>/` and
 * `collections/` fsynced, and only then acknowledged. A crash before the rename leaves only a
 * temporary, which start-up removes. Start-up also removes a `collections/<name>/` that holds no
 * snapshot and no WAL record (a half-made directory of an interrupted creation, e.g. by an
 * earlier version: nothing in it was ever acknowledged), and ignores entries of `collections/`
 * that are not collection directories; each of these is logged and none stops the start.
 *
 * Requests that name no collection use {@link DEFAULT_COLLECTION}, created on the first Put
 * with the dimension of that Put, so the original `Put{id, vector}` / `Search{vector, k}` calls
 * work with no set-up.
 *
 * Shards: every collection is a {@link ShardedCollection}, one {@link Collection} per shard
 * (all made at creation, inside the atomic creation below). A collection created before shards
 * existed, or with one shard, keeps exactly the older layout and loads unchanged. COLLECTIONS_MAX
 * counts collections, not units.
 *
 * Snapshot policy (per shard unit): a unit is snapshotted after `snapshot_every_ops` writes or
 * `snapshot_every_ms` (whichever comes first, checked by {@link NodeStore.tick}, which the
 * caller drives), and on {@link NodeStore.close}. Records replayed at start-up count as writes
 * when there were at least `snapshot_every_ops` of them, so the first tick after a start that
 * replayed a long WAL takes a snapshot and the next start is fast. A snapshot that fails (a full
 * disk, say) is retried by `tick` after `snapshot_retry_ms`, doubling after each failure up to
 * `snapshot_retry_max_ms`, whether or not more writes come.
 *
 * Full disk: every write the node refuses for lack of space is a `DiskFullError` naming the data
 * directory (io/disk_full.ts), including a collection creation; reads go on, and writes resume by
 * themselves once space is freed (see wal.ts).
 *
 * @module
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { isCollectionName } from "../common/collection_name.ts";
import { removePartialBackups } from "./backups.ts";
import { acquireDirLock, type DirLock } from "../io/dir_lock.ts";
import { fsyncDir } from "../io/fs_util.ts";
import { diskFullCode, DiskFullError } from "../io/disk_full.ts";
import {
  type Collection,
  CollectionIncompleteError,
  type CollectionOptions,
  validateCollectionName,
} from "./collection.ts";
import { ShardedCollection, type ShardedConfig } from "./sharded_collection.ts";

export { DirLockedError } from "../io/dir_lock.ts";

// Defaults for a collection created implicitly or without parameters: one definition, in limits.
import {
  DEFAULT_COLLECTION,
  DEFAULT_EF_CONSTRUCTION,
  DEFAULT_M,
  DEFAULT_METRIC,
} from "../common/limits.ts";
/** Where collections are built before they move into `collections/`. */
const CREATING_DIR = "creating";
/** Where dropped (and discarded half-made) collections go before they are deleted. */
const DROPPED_DIR = "dropped";

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false; // e.g. a dangling symbolic link
  }
}

/** Most collections one node holds. */
export const COLLECTIONS_MAX = 1024;

export class CollectionNotFoundError extends Error {
  constructor(readonly collection: string) {
    super(`Collection "${collection}" does not exist`);
    this.name = "CollectionNotFoundError";
  }
}

export class CollectionExistsError extends Error {
  /** `difference`: which setting differs, e.g. "with shard_number 3; the request asks 4". */
  constructor(readonly collection: string, difference = "") {
    super(`Collection "${collection}" already exists${difference === "" ? "" : " " + difference}`);
    this.name = "CollectionExistsError";
  }
}

export class TooManyCollectionsError extends Error {
  constructor(limit: number) {
    super(`The node already holds ${limit} collections, its limit`);
    this.name = "TooManyCollectionsError";
  }
}

export interface NodeStoreOptions extends CollectionOptions {
  /** Snapshot a collection after this many writes. Default 20,000 (bounds replay at start-up). */
  snapshot_every_ops?: number;
  /** Snapshot a collection with unsnapshotted writes after this long. Default 60,000 ms. */
  snapshot_every_ms?: number;
  /** First retry of a failed snapshot after this long; doubles per failure. Default 1,000 ms. */
  snapshot_retry_ms?: number;
  /** Longest wait between retries of a failed snapshot. Default 60,000 ms. */
  snapshot_retry_max_ms?: number;
}

export class NodeStore {
  readonly dataDir: string;
  private readonly collections = new Map<string, ShardedCollection>();
  /** Creations in flight, so two concurrent first Puts create the default collection once. */
  private readonly creating = new Map<string, Promise<ShardedCollection>>();
  private readonly options: NodeStoreOptions;
  private readonly log: (message: string) => void;
  private lastSnapshotCheckMs = 0;
  /** Keyed by unit ({@link unitKey}), as is snapshotRetry. */
  private readonly lastSnapshotMs = new Map<string, number>();
  /** Units whose last snapshot failed: failures in a row and when to retry. */
  private readonly snapshotRetry = new Map<string, { failures: number; at_ms: number }>();

  private lock: DirLock | null = null;

  private constructor(dataDir: string, options: NodeStoreOptions) {
    this.dataDir = dataDir;
    // Collections name the node's data directory in a DiskFullError.
    this.options = { ...options, data_dir: dataDir };
    this.log = options.logger ?? ((m) => console.error(m));
  }

  /**
   * Locks a data directory (DirLockedError when another process holds it), then opens (or
   * initialises) it and every collection in it, cleaning up what interrupted creations and
   * drops left (see the module comment). On failure the lock is released again.
   */
  static async open(dataDir: string, options: NodeStoreOptions = {}): Promise<NodeStore> {
    const store = new NodeStore(dataDir, options);
    store.lock = await acquireDirLock(dataDir, { logger: store.log });
    try {
      await store.load();
    } catch (e) {
      await store.close({ snapshot: false });
      throw e;
    }
    return store;
  }

  private async load(): Promise<void> {
    const dataDir = this.dataDir;
    const colDir = join(dataDir, "collections");
    mkdirSync(colDir, { recursive: true });
    const dropped = join(dataDir, DROPPED_DIR);
    if (existsSync(dropped)) {
      rmSync(dropped, { recursive: true, force: true });
      await fsyncDir(dataDir);
    }
    const creating = join(dataDir, CREATING_DIR);
    if (existsSync(creating)) {
      for (const name of readdirSync(creating).sort()) {
        this.log(
          `Removed ${join(creating, name)}: a collection creation was interrupted before it ` +
            `completed (never acknowledged)`,
        );
      }
      rmSync(creating, { recursive: true, force: true });
      await fsyncDir(dataDir);
    }
    for (const partial of await removePartialBackups(dataDir)) {
      this.log(`Removed ${partial}: a backup was interrupted before it completed`);
    }
    for (const name of readdirSync(colDir).sort()) {
      const dir = join(colDir, name);
      if (!isCollectionName(name) || !isDirectory(dir)) {
        this.log(`Ignored ${dir}: not a collection directory`);
        continue;
      }
      let c: ShardedCollection;
      try {
        c = await ShardedCollection.open(dir, this.options);
      } catch (e) {
        if (!(e instanceof CollectionIncompleteError)) throw e;
        await this.discard(dir, name);
        this.log(
          `Collection "${name}": removed its half-made directory ${dir} (no snapshot and no ` +
            `log record: a creation that was interrupted, never acknowledged)`,
        );
        continue;
      }
      this.collections.set(name, c);
      this.startClocks(c);
      const everyOps = this.options.snapshot_every_ops ?? 20_000;
      c.units.forEach((u, k) => {
        if (u.replayed < everyOps) return;
        // A long replay: snapshot at the first tick, so the next start does not repeat it.
        u.opsSinceSnapshot += u.replayed;
        this.log(
          `Collection "${name}"${unitLabel(c, k)}: replayed ${u.replayed} WAL records ` +
            `(snapshot_every_ops is ${everyOps}); a snapshot is due at the next tick`,
        );
      });
    }
  }

  /** Starts the snapshot timers of a collection's units. */
  private startClocks(c: ShardedCollection): void {
    const now = Date.now();
    for (let k = 0; k < c.shard_number; k++) this.lastSnapshotMs.set(unitKey(c, k), now);
  }

  /** Forgets a collection's snapshot timers and retries. */
  private stopClocks(c: ShardedCollection): void {
    for (let k = 0; k < c.shard_number; k++) {
      this.lastSnapshotMs.delete(unitKey(c, k));
      this.snapshotRetry.delete(unitKey(c, k));
    }
  }

  /** Moves a collection directory out of `collections/` (atomically), then deletes it. */
  private async discard(dir: string, name: string): Promise<void> {
    const dropped = join(this.dataDir, DROPPED_DIR);
    mkdirSync(dropped, { recursive: true });
    const target = join(dropped, `${name}-${Date.now()}`);
    renameSync(dir, target);
    await fsyncDir(join(this.dataDir, "collections"));
    rmSync(target, { recursive: true, force: true });
  }

  /** Resolves "" to the default collection's name. */
  static resolveName(name: string | undefined): string {
    return name === undefined || name === "" ? DEFAULT_COLLECTION : name;
  }

  /** The collection, or CollectionNotFoundError. */
  get(name: string | undefined): ShardedCollection {
    const n = NodeStore.resolveName(name);
    const c = this.collections.get(n);
    if (!c) throw new CollectionNotFoundError(n);
    return c;
  }

  /** The collection, creating the default one (with `dimension`) if it is the one asked for. */
  async getForWrite(name: string | undefined, dimension: number): Promise<ShardedCollection> {
    const n = NodeStore.resolveName(name);
    const c = this.collections.get(n);
    if (c) return c;
    if (n !== DEFAULT_COLLECTION) throw new CollectionNotFoundError(n);
    return await this.createShared({
      name: n,
      dimension,
      metric: DEFAULT_METRIC,
      m: DEFAULT_M,
      ef_construction: DEFAULT_EF_CONSTRUCTION,
    }, true);
  }

  list(): ShardedCollection[] {
    return [...this.collections.values()];
  }

  /**
   * Creates a collection (with `shard_number` units; absent or 0: 1); CollectionExistsError if
   * the name is taken.
   */
  async create(config: ShardedConfig): Promise<ShardedCollection> {
    validateCollectionName(config.name);
    if (this.collections.has(config.name) || this.creating.has(config.name)) {
      throw new CollectionExistsError(config.name);
    }
    return await this.createShared(config, false);
  }

  private createShared(
    config: ShardedConfig,
    shareExisting: boolean,
  ): Promise<ShardedCollection> {
    const pending = this.creating.get(config.name);
    if (pending) {
      if (shareExisting) return pending;
      return Promise.reject(new CollectionExistsError(config.name));
    }
    if (this.collections.size >= COLLECTIONS_MAX) {
      return Promise.reject(new TooManyCollectionsError(COLLECTIONS_MAX));
    }
    const run = (async () => {
      let c: ShardedCollection;
      try {
        c = await this.createAtomically(config);
      } catch (e) {
        if (diskFullCode(e) === null || e instanceof DiskFullError) throw e;
        throw new DiskFullError(
          this.dataDir,
          (e as NodeJS.ErrnoException).path ?? "",
          e,
          `collection "${config.name}" not created; creations resume once space is freed`,
        );
      }
      this.collections.set(config.name, c);
      this.startClocks(c);
      this.log(
        `Collection "${config.name}" created: dimension ${config.dimension}, metric ` +
          `${config.metric}, M ${config.m}, ef_construction ${config.ef_construction}, ` +
          `${c.shard_number} shards, replication factor ${c.replication_factor}`,
      );
      return c;
    })().finally(() => this.creating.delete(config.name));
    this.creating.set(config.name, run);
    return run;
  }

  /**
   * Builds the collection under `creating/<name>/`, renames it into `collections/` and opens it
   * there (see the module comment). On failure nothing is left under either name.
   */
  private createAtomically(config: ShardedConfig): Promise<ShardedCollection> {
    // Every unit's creation record is durable (appended and fdatasynced), segments and
    // directories fsynced into their parents, the layout file written atomically; the units
    // are closed so that the directory can move.
    return this.moveIntoPlace(
      config.name,
      (temp) => ShardedCollection.build(temp, config, this.options),
    );
  }

  /**
   * `fill` builds a collection directory at `creating/<name>/`, which is fsynced, renamed into
   * `collections/` and opened there. On failure nothing is left under either name.
   */
  private async moveIntoPlace(
    name: string,
    fill: (temp: string) => Promise<void>,
  ): Promise<ShardedCollection> {
    const colDir = join(this.dataDir, "collections");
    const dir = join(colDir, name);
    const creating = join(this.dataDir, CREATING_DIR);
    const temp = join(creating, name);
    if (existsSync(dir)) throw new CollectionExistsError(name);
    rmSync(temp, { recursive: true, force: true });
    mkdirSync(creating, { recursive: true });
    try {
      await fill(temp);
      await fsyncDir(temp);
      await fsyncDir(creating);
      renameSync(temp, dir);
      await fsyncDir(colDir);
      await fsyncDir(creating);
    } catch (e) {
      rmSync(temp, { recursive: true, force: true });
      throw e;
    }
    try {
      return await ShardedCollection.open(dir, this.options);
    } catch (e) {
      // Not acknowledged: take it away again rather than leave a collection not in the map.
      await this.discard(dir, name).catch(() => {});
      throw e;
    }
  }

  /** Throws CollectionExistsError when `name` exists or is being created (or restored). */
  checkFree(name: string): void {
    validateCollectionName(name);
    if (this.collections.has(name) || this.creating.has(name)) {
      throw new CollectionExistsError(name);
    }
  }

  /**
   * Creates collection `name` from files: `fill` writes a collection directory's contents (a
   * snapshot, for a restore; see backups.ts) into a temporary directory under `creating/`, which
   * then moves into `collections/` and opens, as {@link create} does (atomic: a crash leaves no
   * collection, and start-up removes the temporary). CollectionExistsError when the name is
   * taken.
   */
  async createFrom(
    name: string,
    fill: (dir: string) => Promise<void>,
  ): Promise<ShardedCollection> {
    this.checkFree(name);
    if (this.collections.size >= COLLECTIONS_MAX) {
      throw new TooManyCollectionsError(COLLECTIONS_MAX);
    }
    const run = (async () => {
      const c = await this.moveIntoPlace(name, fill);
      this.collections.set(name, c);
      this.startClocks(c);
      this.log(
        `Collection "${name}" restored: ${c.count()} points, dimension ` +
          `${c.config.dimension}, metric ${c.config.metric}`,
      );
      return c;
    })().finally(() => this.creating.delete(name));
    this.creating.set(name, run);
    return await run;
  }

  /** Drops a collection and its files. */
  async drop(name: string): Promise<void> {
    const c = this.get(name);
    this.collections.delete(c.name);
    this.stopClocks(c);
    await c.close();
    // Move it out of collections/ first (atomic), so a crash mid-delete cannot leave half a
    // collection that start-up would try to open.
    const dropped = join(this.dataDir, DROPPED_DIR);
    mkdirSync(dropped, { recursive: true });
    const target = join(dropped, `${c.name}-${Date.now()}`);
    renameSync(c.dir, target);
    await fsyncDir(join(this.dataDir, "collections"));
    rmSync(target, { recursive: true, force: true });
    this.log(`Collection "${c.name}" dropped`);
  }

  /**
   * Takes the snapshots that are due. The caller drives it (e.g. once a second), so tests
   * and simulations control time.
   */
  async tick(nowMs: number = Date.now()): Promise<void> {
    this.lastSnapshotCheckMs = nowMs;
    const everyOps = this.options.snapshot_every_ops ?? 20_000;
    const everyMs = this.options.snapshot_every_ms ?? 60_000;
    const retryMs = this.options.snapshot_retry_ms ?? 1_000;
    const retryMaxMs = this.options.snapshot_retry_max_ms ?? 60_000;
    for (const col of this.collections.values()) {
      for (let k = 0; k < col.shard_number; k++) {
        await this.tickUnit(col, k, nowMs, everyOps, everyMs, retryMs, retryMaxMs);
      }
    }
  }

  /** The snapshot policy of one unit (see {@link tick}). */
  private async tickUnit(
    col: ShardedCollection,
    k: number,
    nowMs: number,
    everyOps: number,
    everyMs: number,
    retryMs: number,
    retryMaxMs: number,
  ): Promise<void> {
    const c: Collection = col.units[k];
    const key = unitKey(col, k);
    const label = `Collection "${col.name}"${unitLabel(col, k)}`;
    const last = this.lastSnapshotMs.get(key) ?? 0;
    const retry = this.snapshotRetry.get(key);
    // After a failure the retry schedule decides, even when no write came since.
    const due = retry !== undefined ? nowMs >= retry.at_ms : c.opsSinceSnapshot >= everyOps ||
      (c.opsSinceSnapshot > 0 && nowMs - last >= everyMs);
    if (!due) return;
    this.lastSnapshotMs.set(key, nowMs);
    try {
      await c.snapshot();
      if (retry !== undefined) {
        this.snapshotRetry.delete(key);
        this.log(
          `${label}: snapshot succeeded after ${retry.failures} failed attempts`,
        );
      }
    } catch (e) {
      // A failed snapshot loses nothing (the WAL still holds every write): say so and retry
      // with a backoff.
      const failures = (retry?.failures ?? 0) + 1;
      const waitMs = Math.min(retryMaxMs, retryMs * 2 ** Math.min(failures - 1, 30));
      this.snapshotRetry.set(key, { failures, at_ms: nowMs + waitMs });
      this.log(
        `${label}: snapshot failed (attempt ${failures}): ` +
          `${(e as Error).message}; retrying in ${waitMs} ms`,
      );
    }
  }

  /**
   * Failed snapshot attempts in a row of a collection's unit (`shard`, default 0), and when the
   * next is due; null if none.
   */
  snapshotRetryOf(name: string, shard = 0): { failures: number; at_ms: number } | null {
    const c = this.collections.get(name);
    const r = this.snapshotRetry.get(
      c === undefined || c.shard_number === 1 ? name : `${name}/${shard}`,
    );
    return r === undefined ? null : { ...r };
  }

  /** Snapshots (optionally) and closes every collection, then releases the directory's lock. */
  async close(options: { snapshot?: boolean } = { snapshot: true }): Promise<void> {
    for (const c of this.collections.values()) {
      try {
        await c.close(options);
      } catch (e) {
        this.log(`Collection "${c.name}": close failed: ${(e as Error).message}`);
      }
    }
    this.collections.clear();
    this.lock?.release();
    this.lock = null;
  }
}

/** A unit's key in the snapshot maps: the name for a 1-shard collection, else `name/k`. */
function unitKey(c: ShardedCollection, k: number): string {
  return c.shard_number === 1 ? c.name : `${c.name}/${k}`;
}

/** How log lines name a unit: nothing for a 1-shard collection, else ` shard k`. */
function unitLabel(c: ShardedCollection, k: number): string {
  return c.shard_number === 1 ? "" : ` shard ${k}`;
}
