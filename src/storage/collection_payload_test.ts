import assert from "node:assert/strict";
import { rewriteSnapshotAsVersion } from "../testing/legacy_snapshot.ts";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection } from "./collection.ts";
import type { ShardedCollection } from "./sharded_collection.ts";
import { Backups } from "./backups.ts";
import { NodeStore } from "./node_store.ts";
import { parsePayload, payloadText } from "../common/payload.ts";
import { Wal } from "../io/wal.ts";
import { decodeRecord, RecordType } from "../common/records.ts";

const quiet = { logger: () => {} };
const config = { name: "c", dimension: 2, metric: "l2" as const, m: 8, ef_construction: 32 };
const p = (json: string) => parsePayload(json)!;

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "vdb-colpay-"));
}

/** Every id's payload text ("" for none), for ids 0 .. n-1. */
function payloads(c: Collection | ShardedCollection, n: number): string[] {
  return Array.from({ length: n }, (_, id) => payloadText(c.getPayload(id)));
}

Deno.test("collection payloads: put, batch, copy; survive WAL replay and snapshot reload", async () => {
  const dir = tempDir();
  try {
    let c = await Collection.create(dir, config, quiet);
    const memoryBefore = c.stats().memory_bytes;
    await c.put(0, [0, 0], 0, p('{"tag":"zero","n":0}'));
    await c.put(1, [1, 1]); // no payload: a PUT_V record, as before payloads existed
    await c.putBatch([
      { id: 2, vector: [2, 2], payload: p('{"tags":["a","b"],"nested":{"x":null}}') },
      { id: 3, vector: [3, 3] },
      { id: 4, vector: [4, 4], payload: p('{"big":"' + "x".repeat(60_000) + '"}') },
    ]);
    await c.copy([
      { id: 5, version: 7, deleted: false, vector: [5, 5], payload: p('{"copied":true}') },
      { id: 6, version: 7, deleted: true },
    ]);
    assert.ok(c.stats().memory_bytes >= memoryBefore + 60_000, "memory counts the payload arena");
    const want = payloads(c, 7);
    assert.deepEqual(want.slice(0, 4), [
      '{"tag":"zero","n":0}',
      "",
      '{"tags":["a","b"],"nested":{"x":null}}',
      "",
    ]);
    assert.equal(want[4].length, 60_010);
    assert.deepEqual(want.slice(5), ['{"copied":true}', ""]);
    await c.close();

    // The log holds the old record types where no entry has a payload, the new ones elsewhere.
    const types: number[] = [];
    const wal = await Wal.open(join(dir, "wal"), {
      onRecord: (e) => {
        types.push(e.type);
        decodeRecord(e.type, e.payload);
      },
      logger: () => {},
    });
    await wal.close();
    assert.deepEqual(types, [
      RecordType.CREATE_COLLECTION,
      RecordType.PUT_P,
      RecordType.PUT_V,
      RecordType.PUT_BATCH_P,
      RecordType.COPY_P,
    ]);

    c = await Collection.open(dir, quiet); // WAL replay
    assert.deepEqual(payloads(c, 7), want);
    await c.snapshot();
    await c.close();
    c = await Collection.open(dir, quiet); // snapshot (version 3)
    assert.equal(c.replayed, 0);
    assert.deepEqual(payloads(c, 7), want);
    assert.deepEqual(Array.from(c.get(2)!), [2, 2]);

    // A put without a payload clears it; delete and forget remove it.
    await c.put(0, [0, 1]);
    await c.delete(2);
    const v4 = c.getEntry(4).version;
    await c.forget([4], [v4]);
    const after = ["", "", "", "", "", '{"copied":true}', ""];
    assert.deepEqual(payloads(c, 7), after);
    // A point put again after a delete starts with only what the new put carries.
    await c.put(2, [2, 2]);
    assert.equal(payloadText(c.getPayload(2)), "");
    after[2] = "";
    await c.close();
    c = await Collection.open(dir, quiet);
    assert.deepEqual(payloads(c, 7), after);
    await c.snapshot();
    await c.close();
    c = await Collection.open(dir, quiet);
    assert.deepEqual(payloads(c, 7), after);
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("collection payloads: last writer wins for the payload with the vector", async () => {
  const dir = tempDir();
  try {
    let c = await Collection.create(dir, config, quiet);
    assert.equal((await c.put(1, [1, 1], 100, p('{"v":"new"}'))).applied, true);
    // Older versions, with other payloads (or none), lose: put, batch and copy alike.
    assert.equal((await c.put(1, [9, 9], 50, p('{"v":"old"}'))).applied, false);
    assert.equal((await c.putBatch([{ id: 1, vector: [9, 9] }], 60)).applied, 0);
    const copied = await c.copy([
      { id: 1, version: 99, deleted: false, vector: [9, 9], payload: p('{"v":"older"}') },
    ]);
    assert.equal(copied.applied, 0);
    assert.equal(payloadText(c.getPayload(1)), '{"v":"new"}');
    assert.deepEqual(Array.from(c.get(1)!), [1, 1]);
    // A delete at 200 removes it; an older put cannot bring the payload back.
    await c.delete(1, 200);
    assert.equal((await c.put(1, [9, 9], 150, p('{"v":"zombie"}'))).applied, false);
    assert.equal(c.getPayload(1), null);
    // A newer copy wins with its payload.
    await c.copy([{ id: 1, version: 300, deleted: false, vector: [3, 3], payload: p('{"v":3}') }]);
    assert.equal(payloadText(c.getPayload(1)), '{"v":3}');
    await c.close();
    c = await Collection.open(dir, quiet); // replay applies the same rule
    assert.equal(payloadText(c.getPayload(1)), '{"v":3}');
    assert.deepEqual(Array.from(c.get(1)!), [3, 3]);
    // Bad payload arguments are refused before anything is logged.
    const seq = c.lastSeq;
    await assert.rejects(
      () => c.copy([{ id: 2, version: 5, deleted: true, payload: p('{"a":1}') }]),
      /entries\[0\]\.payload is set on a tombstone/,
    );
    await assert.rejects(
      () => c.put(2, [1, 1], 0, new Uint8Array(70_000)),
      /payload of 70000 bytes is over the limit of 65536/,
    );
    assert.equal(c.lastSeq, seq);
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("collection payloads: a version-2 snapshot (no payload table) still loads", async () => {
  const dir = tempDir();
  try {
    let c = await Collection.create(dir, config, quiet);
    for (let id = 0; id < 10; id++) await c.put(id, [id, 0], 10 + id);
    await c.delete(3, 50);
    await c.snapshot();
    await c.close();
    // Rewrite the version-4 file as version 2: drop the (empty) payload table of 12 bytes and
    // the (empty) index definitions of 4.
    const snapDir = join(dir, "snapshots");
    const name = readdirSync(snapDir).find((n) => n.endsWith(".snap"))!;
    rewriteSnapshotAsVersion(join(snapDir, name), 2, 16 + 8); // empty payload table, key table

    c = await Collection.open(dir, quiet);
    assert.equal(c.replayed, 0, "loaded from the rewritten snapshot");
    assert.equal(c.index.count, 9);
    assert.deepEqual(c.getEntry(3), { vector: null, version: 50, deleted: true });
    assert.equal(c.getEntry(7).version, 17);
    assert.equal(c.getPayload(7), null);
    await c.put(7, [7, 7], 0, p('{"after":"upgrade"}'));
    await c.snapshot();
    await c.close();
    c = await Collection.open(dir, quiet);
    assert.equal(payloadText(c.getPayload(7)), '{"after":"upgrade"}');
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("collection payloads: a backup carries payloads into the restored collection", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, quiet);
    const c = await store.create(config);
    await c.putBatch(
      Array.from({ length: 50 }, (_, id) => ({
        id,
        vector: [id, 1],
        payload: id % 2 === 0 ? p(`{"id":${id}}`) : null,
      })),
    );
    const backups = new Backups(store);
    await backups.create("c", "b1");
    await c.put(0, [0, 0], 0, p('{"after":"backup"}'));
    const r = await backups.restore("b1", "restored");
    assert.deepEqual(
      payloads(r.collection, 50),
      Array.from({ length: 50 }, (_, id) => (id % 2 === 0 ? `{"id":${id}}` : "")),
    );
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
