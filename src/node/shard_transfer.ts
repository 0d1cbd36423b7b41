/**
 * Shard units moving between nodes as files: the node side of `ShardImage*` and
 * `ShardInstall*` in `vectordb.internal.Transfer` (proto/internal.proto). The router streams
 * an image from a node that holds the shard to a node that gained it
 * (src/router/rebalance/shard_move.ts); nothing is re-inserted on the way.
 *
 * **Source.** `ShardImageOpen` snapshots the unit now (`Collection.backupTo`: the exact state
 * after one WAL sequence number, the snapshot format of src/storage/snapshot.ts with its own
 * checksums) into `<data>/shard-images/<image id>/`, computes the file's CRC-32 and pins it.
 * At most {@link SHARD_IMAGES_MAX} images are open; one unread for {@link SHARD_IMAGE_IDLE_MS}
 * is removed. `ShardImageRead` returns up to SHARD_CHUNK_BYTES_MAX bytes at an offset with
 * their CRC-32. The directory is emptied when the node starts (images do not outlive it).
 *
 * **Receiver.** `ShardInstallBegin` names the shard, the image's size, seq and CRC-32 and
 * opens a staged unit directory next to the unit (`shards/<k>_new-<install id>/`,
 * src/storage/unit_swap.ts). Each `ShardInstallChunk` must start where the previous ended and
 * carry the CRC-32 of its bytes; a chunk that fails either check is refused whole (the
 * install stays at the same offset, so the sender may resend it). `ShardInstallCommit` checks
 * the size and the whole CRC-32, fsyncs the file, moves it into the staged unit's `snapshots/`
 * as `snapshot-<seq>.snap`, fsyncs, and calls `ShardedCollection.installUnit`: the image loads
 * as the new unit (vectors, links, versions, payloads read straight in, once: after the swap the
 * loaded unit is reopened in place, `Collection.reopenMoved`), the entries of the unit it
 * replaces are merged in last-writer-wins (writes routed here since the node gained the shard),
 * and the directories are swapped crash-safely. A refused commit discards the
 * install: nothing of it is installed. At most {@link SHARD_INSTALLS_MAX} installs at once; one
 * idle for {@link SHARD_IMAGE_IDLE_MS} is discarded. Staged directories a crash left behind are
 * removed when the collection opens (unit_swap.ts `recoverUnitSwap`).
 *
 * **Drop.** `ShardDrop` empties the unit of a shard this node lost, wholesale
 * (`ShardedCollection.dropUnit`: an empty unit swapped in crash-safely), but only while its root
 * digest still equals the one the router read before it confirmed that the new owners hold
 * everything the unit held; otherwise FAILED_PRECONDITION names both roots and nothing changes
 * (a write that reached the unit since is kept; the router re-syncs or prunes instead).
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { crc32 } from "../io/crc32.ts";
import { fsyncDir } from "../io/fs_util.ts";
import { SHARD_CHUNK_BYTES_MAX, SHARD_IMAGE_BYTES_MAX, VERSION_MAX } from "../common/limits.ts";
import { ValidationError } from "../api/validate.ts";
import type { NodeStore } from "../storage/node_store.ts";
import { type ShardedCollection, unitDir } from "../storage/sharded_collection.ts";
import { stagedUnitDir } from "../storage/unit_swap.ts";
import { DIGEST_BYTES, type RootDigest } from "../common/digest.ts";
import { snapshotName } from "../storage/snapshot.ts";
import { StatusError } from "./service.ts";

/** Most shard images open (pinned) on a node at once. */
export const SHARD_IMAGES_MAX = 4;
/** Most shard installs under way on a node at once. */
export const SHARD_INSTALLS_MAX = 4;
/** An image or install untouched this long is dropped. */
export const SHARD_IMAGE_IDLE_MS = 5 * 60_000;
/** Directory of the open images, under the data directory. */
export const SHARD_IMAGES_DIR = "shard-images";

interface OpenImage {
  dir: string;
  path: string;
  size: number;
  handle: fsp.FileHandle;
  used_ms: number;
}

interface Install {
  collection: ShardedCollection;
  name: string;
  shard: number;
  staged: string;
  part: string;
  handle: fsp.FileHandle;
  size: number;
  seq: number;
  crc32: number;
  received: number;
  running_crc: number;
  busy: boolean;
  used_ms: number;
}

/** Numbers for Stats and metrics. */
export interface ShardTransferStats {
  images_open: number;
  image_bytes_read: number;
  installs_active: number;
  installs_done: number;
  installs_failed: number;
  install_bytes_received: number;
  /** ShardDrop: units emptied, refused because their root had changed, entries dropped. */
  drops_done: number;
  drops_refused: number;
  entries_dropped: number;
}

/** A root digest as the router and the node name it in messages. */
export function describeRoot(root: RootDigest): string {
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  return `${hex(root.hi)}${hex(root.lo)} (${root.count} entries)`;
}

function newId(): string {
  return randomBytes(12).toString("hex");
}

function u32Of(value: unknown, field: string): number {
  const n = typeof value === "string" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 0xffff_ffff) {
    throw new ValidationError(field, value, `${field} ${value} must be an unsigned 32-bit integer`);
  }
  return n;
}

function u64Of(value: unknown, field: string, min: number, max: number): number {
  const n = typeof value === "string" && /^\d{1,20}$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ValidationError(field, value, `${field} ${value} must be between ${min} and ${max}`);
  }
  return n;
}

function idOf(value: unknown, field: string): string {
  if (typeof value !== "string" || !/^[0-9a-f]{24}$/.test(value)) {
    throw new ValidationError(
      field,
      value,
      `${field} ${JSON.stringify(String(value).slice(0, 64))} is not an id this node gave`,
    );
  }
  return value;
}

/** The image and install state of one node (see the module comment). */
export class ShardTransfers {
  readonly stats: ShardTransferStats = {
    images_open: 0,
    image_bytes_read: 0,
    installs_active: 0,
    installs_done: 0,
    installs_failed: 0,
    install_bytes_received: 0,
    drops_done: 0,
    drops_refused: 0,
    entries_dropped: 0,
  };
  readonly #store: NodeStore;
  readonly #dir: string;
  readonly #now: () => number;
  readonly #log: (m: string) => void;
  readonly #images = new Map<string, OpenImage>();
  readonly #installs = new Map<string, Install>();
  #opening = 0;

  constructor(
    store: NodeStore,
    options: { clock?: () => number; logger?: (m: string) => void } = {},
  ) {
    this.#store = store;
    this.#dir = join(store.dataDir, SHARD_IMAGES_DIR);
    this.#now = options.clock ?? (() => Date.now());
    this.#log = options.logger ?? ((m) => console.error(m));
    // Images are pinned for one process's readers only.
    rmSync(this.#dir, { recursive: true, force: true });
  }

  #shardOf(c: ShardedCollection, value: unknown): number {
    const k = u32Of(value ?? 0, "shard");
    if (k >= c.shard_number) {
      throw new ValidationError(
        "shard",
        value,
        `shard ${k} is outside collection "${c.name}" (shards 0 .. ${c.shard_number - 1})`,
      );
    }
    return k;
  }

  /** Drops images and installs idle too long. */
  async #expire(): Promise<void> {
    const now = this.#now();
    for (const [id, im] of this.#images) {
      if (now - im.used_ms > SHARD_IMAGE_IDLE_MS) await this.closeImage(id);
    }
    for (const [id, ins] of this.#installs) {
      if (!ins.busy && now - ins.used_ms > SHARD_IMAGE_IDLE_MS) {
        this.#log(`shard install ${id} of "${ins.name}" shard ${ins.shard} idle; discarded`);
        await this.#discard(id, ins, false);
      }
    }
  }

  /** ShardImageOpen: snapshots unit `shard` of `name` and pins the image. */
  async openImage(name: string, shard: unknown): Promise<{
    image_id: string;
    size: number;
    seq: number;
    crc32: number;
    points: number;
    tombstones: number;
  }> {
    await this.#expire();
    const c = this.#store.get(name);
    const k = this.#shardOf(c, shard);
    if (this.#images.size + this.#opening >= SHARD_IMAGES_MAX) {
      throw new StatusError(
        grpc.status.RESOURCE_EXHAUSTED,
        `${SHARD_IMAGES_MAX} shard images are open on this node (SHARD_IMAGES_MAX); retry later`,
      );
    }
    this.#opening++;
    const id = newId();
    const dir = join(this.#dir, id);
    try {
      await fsp.mkdir(dir, { recursive: true });
      const made = await c.units[k].backupTo(dir);
      const handle = await fsp.open(made.path, "r");
      let sum = 0;
      let size = 0;
      const buf = new Uint8Array(SHARD_CHUNK_BYTES_MAX);
      for (;;) {
        const { bytesRead } = await handle.read(buf, 0, buf.length, size);
        if (bytesRead === 0) break;
        sum = crc32(buf.subarray(0, bytesRead), sum);
        size += bytesRead;
      }
      this.#images.set(id, { dir, path: made.path, size, handle, used_ms: this.#now() });
      this.stats.images_open = this.#images.size;
      return {
        image_id: id,
        size,
        seq: made.seq,
        crc32: sum,
        points: made.points,
        tombstones: made.tombstones,
      };
    } catch (e) {
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
      throw e;
    } finally {
      this.#opening--;
    }
  }

  /** ShardImageRead. */
  async readImage(
    image_id: unknown,
    offset: unknown,
    max_bytes: unknown,
  ): Promise<{ data: Uint8Array; crc32: number; done: boolean }> {
    const id = idOf(image_id, "image_id");
    const im = this.#images.get(id);
    if (im === undefined) {
      throw new StatusError(
        grpc.status.NOT_FOUND,
        `shard image ${id} is not open on this node (closed, expired or never opened)`,
      );
    }
    const at = u64Of(offset ?? 0, "offset", 0, im.size);
    const max = u64Of(max_bytes ?? 0, "max_bytes", 1, SHARD_CHUNK_BYTES_MAX);
    im.used_ms = this.#now();
    const n = Math.min(max, im.size - at);
    const data = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await im.handle.read(data, got, n - got, at + got);
      if (bytesRead === 0) throw new Error(`shard image ${im.path} ended at ${at + got} bytes`);
      got += bytesRead;
    }
    this.stats.image_bytes_read += n;
    return { data, crc32: crc32(data), done: at + n >= im.size };
  }

  /** ShardImageClose: unpins an image (unknown ids are ignored). */
  async closeImage(image_id: unknown): Promise<void> {
    const id = idOf(image_id, "image_id");
    const im = this.#images.get(id);
    if (im === undefined) return;
    this.#images.delete(id);
    this.stats.images_open = this.#images.size;
    await im.handle.close().catch(() => {});
    await fsp.rm(im.dir, { recursive: true, force: true });
  }

  /** ShardInstallBegin. */
  async beginInstall(
    name: string,
    shard: unknown,
    size: unknown,
    seq: unknown,
    sum: unknown,
  ): Promise<{ install_id: string }> {
    await this.#expire();
    const c = this.#store.get(name);
    const k = this.#shardOf(c, shard);
    const bytes = u64Of(size ?? 0, "size", 1, SHARD_IMAGE_BYTES_MAX);
    const at = u64Of(seq ?? 0, "seq", 0, VERSION_MAX);
    const crc = u32Of(sum ?? 0, "crc32");
    if (c.shard_number === 1) {
      throw new StatusError(
        grpc.status.FAILED_PRECONDITION,
        `collection "${name}" has one shard; it moves point by point`,
      );
    }
    if (this.#installs.size >= SHARD_INSTALLS_MAX) {
      throw new StatusError(
        grpc.status.RESOURCE_EXHAUSTED,
        `${SHARD_INSTALLS_MAX} shard installs are under way on this node (SHARD_INSTALLS_MAX)`,
      );
    }
    for (const other of this.#installs.values()) {
      if (other.collection === c && other.shard === k) {
        throw new StatusError(
          grpc.status.FAILED_PRECONDITION,
          `shard ${k} of "${name}" is already being installed on this node`,
        );
      }
    }
    const id = newId();
    const staged = stagedUnitDir(unitDir(c.dir, c.shard_number, k), id);
    await fsp.mkdir(join(staged, "snapshots"), { recursive: true });
    const part = join(staged, "incoming.part");
    const handle = await fsp.open(part, "w");
    this.#installs.set(id, {
      collection: c,
      name,
      shard: k,
      staged,
      part,
      handle,
      size: bytes,
      seq: at,
      crc32: crc,
      received: 0,
      running_crc: 0,
      busy: false,
      used_ms: this.#now(),
    });
    this.stats.installs_active = this.#installs.size;
    return { install_id: id };
  }

  #install(install_id: unknown): { id: string; ins: Install } {
    const id = idOf(install_id, "install_id");
    const ins = this.#installs.get(id);
    if (ins === undefined) {
      throw new StatusError(
        grpc.status.NOT_FOUND,
        `shard install ${id} is not under way on this node (committed, refused, expired or ` +
          `never begun)`,
      );
    }
    if (ins.busy) {
      throw new StatusError(
        grpc.status.FAILED_PRECONDITION,
        `shard install ${id} is busy with another call`,
      );
    }
    return { id, ins };
  }

  /** ShardInstallChunk. */
  async chunk(
    install_id: unknown,
    offset: unknown,
    data: unknown,
    sum: unknown,
  ): Promise<{ received: number }> {
    const { ins } = this.#install(install_id);
    const at = u64Of(offset ?? 0, "offset", 0, SHARD_IMAGE_BYTES_MAX);
    if (at !== ins.received) {
      throw new ValidationError(
        "offset",
        offset,
        `offset ${at} is not where the image continues (${ins.received} bytes received)`,
      );
    }
    if (!(data instanceof Uint8Array) || data.length === 0) {
      throw new ValidationError("data", data, "data is empty");
    }
    if (data.length > SHARD_CHUNK_BYTES_MAX || at + data.length > ins.size) {
      throw new ValidationError(
        "data",
        data.length,
        `data of ${data.length} bytes at offset ${at} goes past the image's size ${ins.size} ` +
          `or over ${SHARD_CHUNK_BYTES_MAX} bytes`,
      );
    }
    const crc = u32Of(sum ?? 0, "crc32");
    const actual = crc32(data);
    if (actual !== crc) {
      throw new ValidationError(
        "crc32",
        sum,
        `crc32 ${crc} does not match the chunk's bytes (${actual}); the chunk at ${at} was ` +
          `not kept`,
      );
    }
    ins.busy = true;
    try {
      let written = 0;
      while (written < data.length) {
        const { bytesWritten } = await ins.handle.write(
          data,
          written,
          data.length - written,
          at + written,
        );
        written += bytesWritten;
      }
      ins.received += data.length;
      ins.running_crc = crc32(data, ins.running_crc);
      ins.used_ms = this.#now();
      this.stats.install_bytes_received += data.length;
    } finally {
      ins.busy = false;
    }
    return { received: ins.received };
  }

  /** ShardInstallCommit. */
  async commit(install_id: unknown): Promise<{ merged: number; points: number }> {
    const { id, ins } = this.#install(install_id);
    if (ins.received !== ins.size || ins.running_crc !== ins.crc32) {
      const reason = ins.received !== ins.size
        ? `${ins.received} of its ${ins.size} bytes arrived`
        : `its CRC-32 is ${ins.running_crc}, not ${ins.crc32} as begun`;
      await this.#discard(id, ins, true);
      throw new ValidationError(
        "install_id",
        id,
        `shard install ${id} of "${ins.name}" shard ${ins.shard} refused: ${reason}; ` +
          `nothing installed`,
      );
    }
    ins.busy = true;
    try {
      if (this.#store.get(ins.name) !== ins.collection) {
        throw new StatusError(
          grpc.status.FAILED_PRECONDITION,
          `collection "${ins.name}" was dropped or replaced during the install`,
        );
      }
      await ins.handle.sync();
      await ins.handle.close();
      const snapshots = join(ins.staged, "snapshots");
      await fsp.rename(ins.part, join(snapshots, snapshotName(ins.seq)));
      await fsyncDir(snapshots);
      await fsyncDir(ins.staged);
      const r = await ins.collection.installUnit(ins.shard, ins.staged);
      this.#installs.delete(id);
      this.stats.installs_active = this.#installs.size;
      this.stats.installs_done++;
      const points = ins.collection.units[ins.shard].count();
      this.#log(
        `shard ${ins.shard} of "${ins.name}" installed from an image of ${ins.size} bytes ` +
          `(seq ${ins.seq}): ${points} points, ${r.merged} entries merged from the former unit`,
      );
      return { merged: r.merged, points };
    } catch (e) {
      await this.#discard(id, ins, true);
      throw e;
    }
  }

  /** ShardDrop (see the module comment). */
  async drop(
    name: string,
    shard: unknown,
    expected_root: unknown,
    expected_entries: unknown,
  ): Promise<{ dropped: number }> {
    const c = this.#store.get(name);
    const k = this.#shardOf(c, shard);
    if (!(expected_root instanceof Uint8Array) || expected_root.length !== DIGEST_BYTES) {
      const n = expected_root instanceof Uint8Array ? expected_root.length : 0;
      throw new ValidationError(
        "expected_root",
        n,
        `expected_root has ${n} bytes; it must have ${DIGEST_BYTES} (a Digest reply's root)`,
      );
    }
    const count = u64Of(expected_entries ?? 0, "expected_entries", 0, Number.MAX_SAFE_INTEGER);
    const v = new DataView(expected_root.buffer, expected_root.byteOffset, DIGEST_BYTES);
    const expected: RootDigest = {
      lo: v.getUint32(0, true),
      hi: v.getUint32(4, true),
      count,
    };
    if (c.shard_number === 1) {
      throw new StatusError(
        grpc.status.FAILED_PRECONDITION,
        `collection "${name}" has one shard; its entries are forgotten through Prune`,
      );
    }
    for (const ins of this.#installs.values()) {
      if (ins.collection === c && ins.shard === k) {
        throw new StatusError(
          grpc.status.FAILED_PRECONDITION,
          `shard ${k} of "${name}" is being installed on this node; it is not dropped`,
        );
      }
    }
    const r = await c.dropUnit(k, expected);
    if (r.mismatch !== null) {
      this.stats.drops_refused++;
      throw new StatusError(
        grpc.status.FAILED_PRECONDITION,
        `shard ${k} of "${name}" was not dropped: its root digest is ` +
          `${describeRoot(r.mismatch)}, not the expected ${describeRoot(expected)} (it was ` +
          `written since)`,
      );
    }
    this.stats.drops_done++;
    this.stats.entries_dropped += r.dropped;
    this.#log(`shard ${k} of "${name}" dropped: ${r.dropped} entries (this node lost the shard)`);
    return { dropped: r.dropped };
  }

  async #discard(id: string, ins: Install, failed: boolean): Promise<void> {
    this.#installs.delete(id);
    this.stats.installs_active = this.#installs.size;
    if (failed) this.stats.installs_failed++;
    await ins.handle.close().catch(() => {});
    await fsp.rm(ins.staged, { recursive: true, force: true }).catch(() => {});
  }

  /** Closes every image and discards every install (the node stops). */
  async close(): Promise<void> {
    for (const id of [...this.#images.keys()]) await this.closeImage(id);
    for (const [id, ins] of [...this.#installs]) await this.#discard(id, ins, false);
  }
}
