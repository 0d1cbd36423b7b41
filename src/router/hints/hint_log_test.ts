import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeRecord, type WalRecord } from "../../common/records.ts";
import { decodeDelivered, encodeDelivered, HintLog, HintLogCorruptionError } from "./hint_log.ts";
import { HintQueueFullError, MemoryHintQueue } from "./queue.ts";
import { deleteBatchOfRecord, deleteBatchRecord } from "../points_batch.ts";

const quiet = () => {};

function put(id: number, x: number): WalRecord {
  return { kind: "put", collection: "default", id, vector: Float32Array.of(x, x + 1), version: x };
}

function ids(log: HintLog): number[] {
  return log.peek(1000).map((h) => {
    const r = decodeRecord(h.type, h.payload);
    return r.kind === "put" || r.kind === "delete"
      ? (r.kind === "put" ? r.id as number : -(r.id as number))
      : NaN;
  });
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hint_log_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("hints keep call order, survive reopen, and delivered ones stay delivered", async () => {
  await withDir(async (dir) => {
    let log = await HintLog.open("n1", dir, { logger: quiet });
    const appended = [
      put(1, 1),
      { kind: "delete", collection: "default", id: 1, version: 10 } as const,
      put(2, 2),
    ]
      .map((r) => log.append(r));
    assert.equal(log.pending, 3, "queued at once");
    const hints = await Promise.all(appended);
    assert.deepEqual(hints.map((h) => h.seq), [1, 2, 3]);
    assert.deepEqual(ids(log), [1, -1, 2]);

    // Deliver the first two; the third stays.
    log.markDelivered(1, true);
    log.markDelivered(2, true);
    assert.equal(await hints[0].delivery, true);
    assert.throws(() => log.markDelivered(2, true), /settled out of order/);
    assert.deepEqual(ids(log), [2], "peek skips settled hints");
    assert.equal(await log.commit(), 2);
    assert.equal(log.pending, 1);
    assert.equal(log.delivered_seq, 2);
    await log.close();

    log = await HintLog.open("n1", dir, { logger: quiet });
    assert.equal(log.pending, 1);
    assert.deepEqual(ids(log), [2]);
    const h = await log.append(put(3, 3));
    assert.equal(h.seq, 4, "sequence numbers continue");
    log.markDelivered(3, false);
    log.markDelivered(4, true);
    assert.equal(await log.commit(), 2);
    assert.equal(log.pending, 0);
    await log.close();

    log = await HintLog.open("n1", dir, { logger: quiet });
    assert.equal(log.pending, 0);
    assert.equal(log.delivered_seq, 4);
    await log.close();
  });
});

Deno.test("settled but uncommitted hints are delivered again after a restart", async () => {
  await withDir(async (dir) => {
    let log = await HintLog.open("n1", dir, { logger: quiet });
    await log.append(put(1, 1));
    await log.append(put(2, 2));
    log.markDelivered(1, true);
    await log.close(); // no commit: as if the router crashed after delivering
    log = await HintLog.open("n1", dir, { logger: quiet });
    assert.deepEqual(ids(log), [1, 2]);
    await log.close();
  });
});

Deno.test("a full hint queue refuses appends, then accepts after delivery", async () => {
  await withDir(async (dir) => {
    const log = await HintLog.open("n1", dir, { hints_max: 2, logger: quiet });
    await log.append(put(1, 1));
    await log.append(put(2, 2));
    await assert.rejects(log.append(put(3, 3)), (e: unknown) => {
      assert.ok(e instanceof HintQueueFullError);
      assert.match(e.message, /^Hint queue for node n1 is full: 2 hints of \d+ bytes pending/);
      return true;
    });
    assert.equal(log.pending, 2, "a refused hint is not queued");
    log.markDelivered(1, true);
    await log.commit();
    await log.append(put(3, 3));
    assert.deepEqual(ids(log), [2, 3]);
    await log.close();

    const small = await HintLog.open("n2", join(dir, "n2"), {
      hint_bytes_max: 20,
      logger: quiet,
    });
    await assert.rejects(small.append(put(1, 1)), HintQueueFullError);
    await small.close();
  });
});

Deno.test("only durable hints are handed out", async () => {
  await withDir(async (dir) => {
    const log = await HintLog.open("n1", dir, { logger: quiet });
    const p = log.append(put(1, 1));
    assert.equal(log.peek(10).length, 0, "not durable yet");
    await p;
    assert.equal(log.peek(10).length, 1);
    await log.close();
  });
});

Deno.test("the delivered watermark has a checksum", async () => {
  const bytes = encodeDelivered(123456789012);
  assert.equal(bytes.length, 20);
  assert.equal(decodeDelivered("x", bytes), 123456789012);
  const bad = bytes.slice();
  bad[9] ^= 1;
  assert.throws(() => decodeDelivered("x", bad), /Hint watermark x is corrupt: checksum mismatch/);
  assert.throws(() => decodeDelivered("x", bytes.subarray(0, 10)), HintLogCorruptionError);
  await withDir(async (dir) => {
    const log = await HintLog.open("n1", dir, { logger: quiet });
    await log.append(put(1, 1));
    log.markDelivered(1, true);
    await log.commit();
    await log.close();
    const file = join(dir, "delivered");
    const content = readFileSync(file);
    content[0] ^= 0xff;
    writeFileSync(file, content);
    await assert.rejects(HintLog.open("n1", dir, { logger: quiet }), /bad magic/);
  });
});

Deno.test("memory hint queue: same contract as the log (order, limits, settle, commit)", async () => {
  const q = new MemoryHintQueue("m1", { hints_max: 2 });
  const a = await q.append({ kind: "drop_collection", collection: "a" });
  const b = await q.append({ kind: "drop_collection", collection: "b" });
  await assert.rejects(q.append({ kind: "drop_collection", collection: "c" }), HintQueueFullError);
  assert.equal(q.pending, 2);
  assert.deepEqual(q.peek(10).map((h) => h.seq), [a.seq, b.seq]);
  assert.throws(() => q.markDelivered(b.seq, true), /out of order/);
  q.markDelivered(a.seq, true);
  assert.equal(await a.delivery, true);
  assert.deepEqual(q.peek(10).map((h) => h.seq), [b.seq]);
  assert.equal(await q.commit(), 1);
  assert.equal(q.pending, 1);
  assert.equal(decodeRecord(b.type, b.payload).collection, "b");
});

Deno.test("hints of string and 64-bit ids survive a reopen with their ids exact", async () => {
  await withDir(async (dir) => {
    const big = 2n ** 64n - 1n;
    let log = await HintLog.open("n1", dir, { logger: quiet });
    await log.append({
      kind: "put",
      collection: "c",
      id: "doc-7",
      vector: Float32Array.of(1, 2),
      version: 5,
    });
    await log.append(deleteBatchRecord("c", ["x", big, 3], 9));
    await log.close();
    log = await HintLog.open("n1", dir, { logger: quiet });
    const records = log.peek(10).map((h) => decodeRecord(h.type, h.payload));
    assert.equal(records.length, 2);
    assert.ok(records[0].kind === "put" && records[0].id === "doc-7");
    assert.deepEqual(deleteBatchOfRecord(records[1]), {
      collection: "c",
      ids: ["x", big, 3],
      version: 9,
    });
    await log.close();
  });
});
