import assert from "node:assert/strict";
import { Placement } from "../../cluster/placement.ts";
import { crc32 } from "../../io/crc32.ts";
import {
  ByteBucket,
  planShardFiles,
  type ShardFilePort,
  ShardImageError,
  type ShardMoveProgress,
  streamShard,
} from "./shard_move.ts";

Deno.test("planShardFiles: a joining node gains whole shards, read from their settled replicas", () => {
  const layout = { shard_number: 12, replication_factor: 2 };
  const before = new Placement(["a:1", "b:1", "c:1"]);
  const after = new Placement(["a:1", "b:1", "c:1", "d:1"]);
  const moves = planShardFiles(before, after, "docs", layout, after.members, () => true);
  assert.ok(moves.length > 0);
  for (const m of moves) {
    assert.ok(after.replicas("docs", layout, m.shard).includes(m.target));
    assert.ok(!before.replicas("docs", layout, m.shard).includes(m.target));
    assert.deepEqual(
      m.sources,
      before.replicas("docs", layout, m.shard).filter((n) => n !== m.target),
    );
  }
  assert.ok(moves.some((m) => m.target === "d:1"));
  // A replica that cannot be read is no source.
  const none = planShardFiles(before, after, "docs", layout, after.members, () => false);
  assert.ok(none.every((m) => m.sources.length === 0));
});

Deno.test("ByteBucket holds a sender to its rate, in arrival order", async () => {
  let now = 0;
  const slept: number[] = [];
  const bucket = new ByteBucket(1000, () => now, (ms) => {
    slept.push(ms);
    now += ms;
    return Promise.resolve();
  });
  await bucket.take(1000); // the first second's worth is there
  assert.equal(now, 0);
  await bucket.take(500);
  assert.equal(now, 500);
  await bucket.take(2000); // larger than the bucket: goes once it is full, then owes
  assert.equal(now, 1500);
  await new ByteBucket(0).take(1e12); // no limit
  assert.throws(() => new ByteBucket(-1), /transfer_bytes_per_s -1/);
});

/** A source holding `image` and a target collecting what it is sent. */
function ports(image: Uint8Array, corrupt_at = -1) {
  const got: Uint8Array[] = [];
  let closed = 0;
  let committed = false;
  const source: ShardFilePort = {
    openImage: () =>
      Promise.resolve({
        image_id: "i",
        size: image.length,
        seq: 7,
        crc32: crc32(image),
        points: 3,
      }),
    readImage: (_id, offset, max) => {
      const data = image.slice(offset, offset + max);
      const sum = crc32(data);
      if (offset === corrupt_at) data[0] ^= 1;
      return Promise.resolve({ data, crc32: sum, done: offset + data.length >= image.length });
    },
    closeImage: () => {
      closed++;
      return Promise.resolve();
    },
    beginInstall: () => Promise.resolve("s"),
    installChunk: (_id, offset, data, sum) => {
      assert.equal(offset, got.reduce((n, c) => n + c.length, 0));
      assert.equal(sum, crc32(data));
      got.push(data);
      return Promise.resolve();
    },
    commitInstall: () => {
      committed = true;
      return Promise.resolve({ merged: 1, points: 3 });
    },
  };
  return { source, got, closed: () => closed, committed: () => committed };
}

Deno.test("streamShard sends the image in order in chunks, checks each CRC-32, closes it", async () => {
  const image = Uint8Array.from({ length: 2500 }, (_, i) => i % 251);
  const p = ports(image);
  const progress: ShardMoveProgress = {
    collection: "c",
    shard: 1,
    source: "a",
    target: "b",
    bytes_done: 0,
    bytes_total: 0,
  };
  const r = await streamShard(
    { collection: "c", shard: 1 },
    p.source,
    p.source,
    new ByteBucket(0),
    progress,
    () => {},
    () => Promise.resolve(false),
    1000,
  );
  assert.deepEqual(r, { bytes: 2500, points: 3, merged: 1 });
  assert.equal(p.got.length, 3);
  assert.deepEqual(Uint8Array.from(p.got.flatMap((c) => [...c])), image);
  assert.equal(progress.bytes_done, 2500);
  assert.equal(p.closed(), 1);

  // A chunk whose bytes do not match its CRC-32: refused, nothing committed, image closed.
  const bad = ports(image, 1000);
  await assert.rejects(
    streamShard(
      { collection: "c", shard: 1 },
      bad.source,
      bad.source,
      new ByteBucket(0),
      { ...progress },
      () => {},
      () => Promise.resolve(false),
      1000,
    ),
    (e) => e instanceof ShardImageError && /chunk at 1000/.test(e.message),
  );
  assert.equal(bad.committed(), false);
  assert.equal(bad.closed(), 1);
});
