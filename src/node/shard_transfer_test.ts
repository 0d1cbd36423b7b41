import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { existsSync, readdirSync } from "node:fs";
import { type HandlerCall, rejectsWith, withNode } from "./handlers_testing.ts";
import { shardOf } from "../common/shard.ts";
import { crc32 } from "../io/crc32.ts";
import type { Collection } from "../storage/collection.ts";
import { unitDir } from "../storage/sharded_collection.ts";
import { SHARD_IMAGES_DIR } from "./shard_transfer.ts";

const DIM = 4;
const SHARDS = 3;

/** Every entry of a unit: id, version, deleted, vector, payload text. */
function entriesOf(u: Collection): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const ids = u.knownIds();
  for (let i = 0; i < ids.length; i++) {
    const id = ids.at(i);
    const e = u.getEntry(id);
    if (e.vector === null && !e.deleted) continue;
    const p = u.getPayload(id);
    out.set(String(id), {
      version: e.version,
      deleted: e.deleted,
      vector: e.vector === null ? null : Array.from(e.vector),
      payload: p === null ? null : new TextDecoder().decode(p),
    });
  }
  return out;
}

async function loadSource(api: HandlerCall): Promise<void> {
  await api("CreateCollection", { name: "c", dimension: DIM, shard_number: SHARDS });
  await api("PutBatch", {
    collection: "c",
    points: Array.from({ length: 600 }, (_, i) => ({
      id: i + 1,
      vector: [Math.sin(i), Math.cos(i), i % 7, (i * 13) % 5],
      payload: JSON.stringify({ n: i, tag: i % 3 === 0 ? "a" : "b" }),
    })),
    version: "100",
  });
  for (let i = 1; i <= 600; i += 11) {
    await api("Delete", { collection: "c", id: i, version: "150" });
  }
}

/** Streams unit `shard` of "c" from `src` to `dst` through the RPCs, in chunks of `chunk`. */
async function move(
  src: HandlerCall,
  dst: HandlerCall,
  shard: number,
  chunk = 4096,
): Promise<{ merged: number; points: number; size: number }> {
  const image = await src("ShardImageOpen", { collection: "c", shard });
  const size = Number(image.size);
  const begun = await dst("ShardInstallBegin", {
    collection: "c",
    shard,
    size: image.size,
    seq: image.seq,
    crc32: image.crc32,
  });
  let offset = 0;
  for (;;) {
    const r = await src("ShardImageRead", { image_id: image.image_id, offset, max_bytes: chunk });
    assert.equal(r.crc32, crc32(r.data));
    await dst("ShardInstallChunk", {
      install_id: begun.install_id,
      offset,
      data: r.data,
      crc32: r.crc32,
    });
    offset += r.data.length;
    if (r.done) break;
  }
  assert.equal(offset, size);
  await src("ShardImageClose", { image_id: image.image_id });
  const done = await dst("ShardInstallCommit", { install_id: begun.install_id });
  return { merged: Number(done.merged), points: Number(done.points), size };
}

Deno.test("a shard unit moves as an image: same ids, versions, payloads and search results", async () => {
  await withNode("shard_src_", async (srcApi, src, srcStore) => {
    await loadSource(srcApi);
    await withNode("shard_dst_", async (dstApi, dst, dstStore) => {
      await dstApi("CreateCollection", { name: "c", dimension: DIM, shard_number: SHARDS });
      const shard = 1;
      const r = await move(src, dst, shard);
      assert.ok(r.size > 0);
      const from = srcStore.get("c").units[shard];
      const to = dstStore.get("c").units[shard];
      assert.equal(r.points, from.count());
      assert.ok(from.count() > 100);
      assert.deepEqual(entriesOf(to), entriesOf(from));
      for (let q = 0; q < 20; q++) {
        const v = [Math.cos(q), Math.sin(q), q % 5, q % 3];
        assert.deepEqual(to.search(v, 10, 64), from.search(v, 10, 64));
      }
      // The other units were left alone, and the node serves the new unit: reads, writes.
      assert.equal(dstStore.get("c").units[0].count(), 0);
      const id = [...entriesOf(from).keys()].map(Number).find((i) => (i - 1) % 11 !== 0)!;
      const got = await dstApi("Get", { collection: "c", id });
      assert.equal(got.found, true);
      await dstApi("Put", { collection: "c", id, vector: [9, 9, 9, 9], version: "300" });
      assert.equal(dstStore.get("c").units[shard].getEntry(id).version, 300);
      // No staged directory and no pinned image is left behind.
      const shardsDir = unitDir(dstStore.get("c").dir, SHARDS, shard) + "/..";
      assert.deepEqual(readdirSync(shardsDir).sort(), ["0", "1", "2"]);
      assert.deepEqual(readdirSync(`${srcStore.dataDir}/${SHARD_IMAGES_DIR}`), []);
    });
  });
});

Deno.test("an install keeps the writes the receiver took for that shard (last writer wins)", async () => {
  await withNode("shard_src_", async (srcApi, src, srcStore) => {
    await loadSource(srcApi);
    await withNode("shard_dst_", async (dstApi, dst, dstStore) => {
      await dstApi("CreateCollection", { name: "c", dimension: DIM, shard_number: SHARDS });
      const shard = 2;
      const mine = [...entriesOf(srcStore.get("c").units[shard]).keys()].map(Number).slice(0, 6);
      // Newer than the image: kept. Older: the image's wins.
      await dstApi("Put", { collection: "c", id: mine[0], vector: [1, 2, 3, 4], version: "500" });
      await dstApi("Delete", { collection: "c", id: mine[1], version: "501" });
      await dstApi("Put", { collection: "c", id: mine[2], vector: [4, 3, 2, 1], version: "50" });
      // An id of the shard the source never had.
      const fresh = [...Array(5000).keys()].map((i) => 100_000 + i).find((i) =>
        shardOf(i, SHARDS) === shard
      )!;
      await dstApi("Put", { collection: "c", id: fresh, vector: [0, 0, 1, 0], version: "502" });
      const r = await move(src, dst, shard, 1000);
      assert.equal(r.merged, 3);
      const to = dstStore.get("c").units[shard];
      assert.deepEqual(Array.from(to.get(mine[0])!), [1, 2, 3, 4].map((x) => x / 1));
      assert.equal(to.getEntry(mine[1]).deleted, true);
      assert.equal(
        to.getEntry(mine[2]).version,
        srcStore.get("c").units[shard].getEntry(mine[2]).version,
      );
      assert.equal(to.getEntry(fresh).version, 502);
    });
  });
});

Deno.test("bad chunks, gaps and size or checksum mismatches are refused; nothing is installed", async () => {
  await withNode("shard_src_", async (srcApi, src) => {
    await loadSource(srcApi);
    await withNode("shard_dst_", async (dstApi, dst, dstStore) => {
      await dstApi("CreateCollection", { name: "c", dimension: DIM, shard_number: SHARDS });
      await dstApi("Put", { collection: "c", id: 7, vector: [1, 1, 1, 1], version: "9" });
      const shard = shardOf(7, SHARDS);
      const before = entriesOf(dstStore.get("c").units[shard]);
      const image = await src("ShardImageOpen", { collection: "c", shard });
      const all = await src("ShardImageRead", {
        image_id: image.image_id,
        offset: 0,
        max_bytes: 1024 * 1024,
      });
      const size = Number(image.size);
      assert.equal(all.data.length, size);
      const begin = (crc = image.crc32, bytes: unknown = image.size) =>
        dst("ShardInstallBegin", {
          collection: "c",
          shard,
          size: bytes,
          seq: image.seq,
          crc32: crc,
        });
      // Bad CRC of a chunk: refused, the offset stays.
      const a = await begin();
      const half = Math.floor(size / 2);
      await rejectsWith(
        dst("ShardInstallChunk", {
          install_id: a.install_id,
          offset: 0,
          data: all.data.subarray(0, half),
          crc32: (crc32(all.data.subarray(0, half)) + 1) >>> 0,
        }),
        grpc.status.INVALID_ARGUMENT,
        /crc32 \d+ does not match/,
      );
      // A gap.
      await rejectsWith(
        dst("ShardInstallChunk", {
          install_id: a.install_id,
          offset: 10,
          data: all.data.subarray(10, half),
          crc32: crc32(all.data.subarray(10, half)),
        }),
        grpc.status.INVALID_ARGUMENT,
        /offset 10 is not where the image continues \(0 bytes received\)/,
      );
      // Past the size.
      await rejectsWith(
        begin(image.crc32, 0),
        grpc.status.INVALID_ARGUMENT,
        /size 0 must be between 1/,
      );
      // Commit with too few bytes: refused and discarded.
      await dst("ShardInstallChunk", {
        install_id: a.install_id,
        offset: 0,
        data: all.data.subarray(0, half),
        crc32: crc32(all.data.subarray(0, half)),
      });
      await rejectsWith(
        dst("ShardInstallCommit", { install_id: a.install_id }),
        grpc.status.INVALID_ARGUMENT,
        new RegExp(`${half} of its ${size} bytes arrived; nothing installed`),
      );
      await rejectsWith(
        dst("ShardInstallCommit", { install_id: a.install_id }),
        grpc.status.NOT_FOUND,
        /is not under way/,
      );
      // Whole image, wrong checksum announced.
      const b = await begin((image.crc32 + 1) >>> 0);
      await dst("ShardInstallChunk", {
        install_id: b.install_id,
        offset: 0,
        data: all.data,
        crc32: crc32(all.data),
      });
      await rejectsWith(
        dst("ShardInstallCommit", { install_id: b.install_id }),
        grpc.status.INVALID_ARGUMENT,
        /its CRC-32 is \d+, not \d+ as begun; nothing installed/,
      );
      // Bad fields.
      await rejectsWith(
        dst("ShardInstallBegin", { collection: "c", shard: 3, size: 10, seq: 1, crc32: 1 }),
        grpc.status.INVALID_ARGUMENT,
        /shard 3 is outside collection "c" \(shards 0 \.\. 2\)/,
      );
      await rejectsWith(
        src("ShardImageRead", { image_id: image.image_id, offset: 0, max_bytes: 0 }),
        grpc.status.INVALID_ARGUMENT,
        /max_bytes 0 must be between 1 and 1048576/,
      );
      await rejectsWith(
        src("ShardImageRead", { image_id: "nope", offset: 0, max_bytes: 10 }),
        grpc.status.INVALID_ARGUMENT,
        /image_id "nope" is not an id this node gave/,
      );
      await rejectsWith(
        src("ShardImageOpen", { collection: "missing", shard: 0 }),
        grpc.status.NOT_FOUND,
        /missing/,
      );
      // Nothing installed; nothing staged left.
      assert.deepEqual(entriesOf(dstStore.get("c").units[shard]), before);
      const shardsDir = unitDir(dstStore.get("c").dir, SHARDS, shard) + "/..";
      assert.deepEqual(readdirSync(shardsDir).sort(), ["0", "1", "2"]);
      assert.equal(existsSync(unitDir(dstStore.get("c").dir, SHARDS, shard)), true);
    });
  });
});

Deno.test("ShardDrop empties a unit only while its root is the one the router read; bad input is refused", async () => {
  await withNode("shard_drop_", async (api, tr, store) => {
    await loadSource(api);
    const shard = 1;
    const d = await tr("Digest", { collection: "c", shard, with_buckets: false });
    const held = store.get("c").units[shard].entryCount;
    assert.ok(held > 100);
    // A write reaching the unit after the root was read: refused, naming both roots.
    const late = [...Array(5000).keys()].map((i) => 200_000 + i).find((i) =>
      shardOf(i, SHARDS) === shard
    )!;
    await api("Put", { collection: "c", id: late, vector: [1, 2, 3, 4], version: "900" });
    await rejectsWith(
      tr("ShardDrop", {
        collection: "c",
        shard,
        expected_root: d.root,
        expected_entries: d.entries,
      }),
      grpc.status.FAILED_PRECONDITION,
      new RegExp(
        `shard 1 of "c" was not dropped: its root digest is [0-9a-f]{16} \\(${
          held + 1
        } entries\\), not the expected [0-9a-f]{16} \\(${held} entries\\)`,
      ),
    );
    assert.equal(store.get("c").units[shard].entryCount, held + 1);
    // Bad fields.
    await rejectsWith(
      tr("ShardDrop", { collection: "c", shard, expected_root: new Uint8Array(3) }),
      grpc.status.INVALID_ARGUMENT,
      /expected_root has 3 bytes; it must have 8/,
    );
    await rejectsWith(
      tr("ShardDrop", { collection: "c", shard: 3, expected_root: d.root }),
      grpc.status.INVALID_ARGUMENT,
      /shard 3 is outside collection "c"/,
    );
    await rejectsWith(
      tr("ShardDrop", { collection: "nope", shard: 0, expected_root: d.root }),
      grpc.status.NOT_FOUND,
      /nope/,
    );
    // With the current root: dropped whole; the other units keep theirs.
    const now = await tr("Digest", { collection: "c", shard, with_buckets: false });
    const others = [0, 2].map((k) => store.get("c").units[k].entryCount);
    const r = await tr("ShardDrop", {
      collection: "c",
      shard,
      expected_root: now.root,
      expected_entries: now.entries,
    });
    assert.equal(Number(r.dropped), held + 1);
    assert.equal(store.get("c").units[shard].entryCount, 0);
    assert.deepEqual([0, 2].map((k) => store.get("c").units[k].entryCount), others);
    const got = await api("Get", { collection: "c", id: late });
    assert.equal(got.found, false);
  });
});
