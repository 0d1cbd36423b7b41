/**
 * Moving shard replicas as files (issue 14, must-have 4): when a placement change gives a shard
 * to a node, the router streams it the latest image of that shard unit from a node that holds
 * it under the settled placement, instead of copying its points one by one (which re-inserts
 * every point into the receiver's graph). The node side is src/node/shard_transfer.ts; the
 * rebalancer (rebalancer.ts) calls {@link planShardFiles} and {@link streamShard} at the start
 * of a run and falls back to its point-by-point path for a collection whose files did not all
 * arrive.
 *
 * One move (`streamShard`): `ShardImageOpen` on the source (it snapshots the unit now and pins
 * the file), `ShardInstallBegin` on the target (size, seq, CRC-32 of the whole image), then
 * `ShardImageRead` / `ShardInstallChunk` in chunks of {@link SHARD_MOVE_CHUNK_BYTES}: each
 * chunk's CRC-32 is checked here as read and again by the target as written, offsets are
 * contiguous, and the bytes pass through one {@link ByteBucket} shared by every move of the
 * router (`--transfer-bytes-per-s`); at most `--transfers-max` moves run at once. Then
 * `ShardInstallCommit`: the target checks the whole image, loads it as the unit (nothing is
 * re-inserted), merges in what its former unit of the shard held (writes routed to it since it
 * gained the shard) last-writer-wins, and swaps it in. The source's image is closed either way.
 *
 * Why the result is complete (with versions, see plan.ts): the image is taken after the run's
 * drain (no write planned on an older placement is in flight), so every write acknowledged
 * before it is in the source's unit, and every later write goes to the placement in use, whose
 * replicas include the target. The catch-up that follows (the rebalancer scans the source's
 * unit of that shard and copies it to the shard's owners, last-writer-wins, so the target skips
 * everything it already holds) covers what reached the source but not the target — a write
 * whose copy to the target failed, or one replayed from a hint; an anti-entropy by digests
 * replaces that scan once available. Nodes that lost the shard forget its entries after every
 * gainer caught up: with digests, their unit is emptied wholesale (`ShardDrop`, conditional on
 * its root digest, file_phase.ts `settleDrop`); else per entry, conditional on the version.
 *
 * @module
 */
import type { Placement, ShardLayout } from "../../cluster/placement.ts";
import { crc32 } from "../../io/crc32.ts";

/** Bytes per ShardImageRead / ShardInstallChunk. */
export const SHARD_MOVE_CHUNK_BYTES = 1024 * 1024;
/** Default of `--transfer-bytes-per-s`: 128 MiB/s over all moves (0: no limit). */
export const DEFAULT_TRANSFER_BYTES_PER_S = 128 * 2 ** 20;

/** An image a source pinned. */
export interface ShardImageInfo {
  image_id: string;
  size: number;
  seq: number;
  crc32: number;
  points: number;
}

/** The file side of a node's Transfer service (src/node/shard_transfer.ts). */
export interface ShardFilePort {
  openImage(collection: string, shard: number): Promise<ShardImageInfo>;
  readImage(
    image_id: string,
    offset: number,
    max_bytes: number,
  ): Promise<{ data: Uint8Array; crc32: number; done: boolean }>;
  closeImage(image_id: string): Promise<void>;
  /** Throws MissingCollectionError (rebalancer.ts) while the target lacks the collection. */
  beginInstall(collection: string, shard: number, image: ShardImageInfo): Promise<string>;
  installChunk(install_id: string, offset: number, data: Uint8Array, crc32: number): Promise<void>;
  commitInstall(install_id: string): Promise<{ merged: number; points: number }>;
  /**
   * ShardDrop: empties the node's unit of a shard it lost, when its root digest is still `root`
   * with `entries` entries; resolves with the entries dropped. Throws
   * {@link ShardRootChangedError} when the root differs (nothing dropped) and
   * {@link ShardDropUnsupportedError} when the node lacks the RPC. Absent: never dropped (Prune).
   */
  dropShard?(collection: string, shard: number, root: Uint8Array, entries: number): Promise<number>;
}

/** ShardDrop refused: the unit's root digest is no longer the one expected (it was written). */
export class ShardRootChangedError extends Error {
  override name = "ShardRootChangedError";
}

/** The node does not serve ShardDrop (an older version): its entries are pruned instead. */
export class ShardDropUnsupportedError extends Error {
  override name = "ShardDropUnsupportedError";
}

/** One shard a node gained: to be streamed to `target` from one of `sources`, in order. */
export interface ShardFileMove {
  collection: string;
  shard: number;
  target: string;
  /** Its replicas under the settled placement that may be read, primary first. */
  sources: string[];
  /** Its replicas under the settled placement that no longer hold it. */
  losers: string[];
}

/** A move under way, as Stats shows it. */
export interface ShardMoveProgress {
  collection: string;
  shard: number;
  source: string;
  target: string;
  bytes_done: number;
  bytes_total: number;
}

/** A chunk's bytes do not match the CRC-32 its source sent, or the image ended early. */
export class ShardImageError extends Error {
  override name = "ShardImageError";
}

/**
 * The shards of `collection` that members of `targets` gain from `from` to `to`, with the nodes
 * they may be read from (`readable`: a settled replica the router can reach). A shard nobody
 * can be read from is listed with no sources (the caller falls back to points). Pure.
 */
export function planShardFiles(
  from: Placement,
  to: Placement,
  collection: string,
  layout: ShardLayout,
  targets: readonly string[],
  readable: (node: string) => boolean,
): ShardFileMove[] {
  const out: ShardFileMove[] = [];
  for (const m of to.moves(from, collection, layout)) {
    for (const target of m.gained) {
      if (!targets.includes(target)) continue;
      out.push({
        collection,
        shard: m.shard,
        target,
        sources: m.before.filter((n) => n !== target && readable(n)),
        losers: [...m.lost],
      });
    }
  }
  return out;
}

/**
 * A token bucket of bytes shared by every move: `take(n)` resolves once `n` bytes may go.
 * `bytes_per_s` 0 means no limit. Up to one second's worth may burst.
 */
export class ByteBucket {
  readonly bytes_per_s: number;
  #tokens: number;
  #last_ms: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  #queue: Promise<void> = Promise.resolve();

  constructor(
    bytes_per_s: number,
    now: () => number = () => Date.now(),
    sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    if (!(Number.isSafeInteger(bytes_per_s) && bytes_per_s >= 0)) {
      throw new RangeError(`transfer_bytes_per_s ${bytes_per_s} must be an integer 0 or more`);
    }
    this.bytes_per_s = bytes_per_s;
    this.#tokens = bytes_per_s;
    this.#now = now;
    this.#last_ms = now();
    this.#sleep = sleep;
  }

  /** Waits (in arrival order) until `bytes` may be sent. */
  take(bytes: number): Promise<void> {
    if (this.bytes_per_s === 0) return Promise.resolve();
    const run = this.#queue.then(async () => {
      for (;;) {
        const t = this.#now();
        this.#tokens = Math.min(
          this.bytes_per_s,
          this.#tokens + ((t - this.#last_ms) * this.bytes_per_s) / 1000,
        );
        this.#last_ms = t;
        // A chunk larger than the whole bucket goes once the bucket is full.
        const need = Math.min(bytes, this.bytes_per_s);
        if (this.#tokens >= need) {
          this.#tokens -= bytes;
          return;
        }
        await this.#sleep(Math.max(1, ((need - this.#tokens) * 1000) / this.bytes_per_s));
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }
}

/**
 * Streams shard `m.shard` of `m.collection` from `source` to `target` (module comment).
 * `progress` is updated as chunks land; `check` throws to abort (a ring change). `begin_wait`
 * retries `beginInstall` while the target lacks the collection (returns false to give up).
 */
export async function streamShard(
  m: { collection: string; shard: number },
  source: ShardFilePort,
  target: ShardFilePort,
  bucket: ByteBucket,
  progress: ShardMoveProgress,
  check: () => void,
  begin_wait: (e: unknown) => Promise<boolean>,
  chunk_bytes = SHARD_MOVE_CHUNK_BYTES,
): Promise<{ bytes: number; points: number; merged: number }> {
  const image = await source.openImage(m.collection, m.shard);
  try {
    progress.bytes_total = image.size;
    let install: string;
    for (;;) {
      check();
      try {
        install = await target.beginInstall(m.collection, m.shard, image);
        break;
      } catch (e) {
        if (!(await begin_wait(e))) throw e;
      }
    }
    let offset = 0;
    while (offset < image.size) {
      check();
      const want = Math.min(chunk_bytes, image.size - offset);
      await bucket.take(want);
      const r = await source.readImage(image.image_id, offset, want);
      if (r.data.length === 0) {
        throw new ShardImageError(`image of shard ${m.shard} ended at ${offset} of ${image.size}`);
      }
      const sum = crc32(r.data);
      if (sum !== r.crc32) {
        throw new ShardImageError(
          `chunk at ${offset} of the image of shard ${m.shard} has CRC-32 ${sum}, the source ` +
            `sent ${r.crc32}`,
        );
      }
      await target.installChunk(install, offset, r.data, sum);
      offset += r.data.length;
      progress.bytes_done = offset;
    }
    check();
    const done = await target.commitInstall(install);
    return { bytes: image.size, points: done.points, merged: done.merged };
  } finally {
    await source.closeImage(image.image_id).catch(() => {});
  }
}
