import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import type { BinaryReader, BinaryWriter } from "../io/binary.ts";
import {
  listSnapshots,
  loadNewestSnapshot,
  parseSnapshot,
  SNAPSHOT_HEADER_BYTES,
  SNAPSHOT_TRAILER_BYTES,
  SNAPSHOT_VERSION,
  SnapshotFormatError,
  snapshotName,
  writeSnapshot,
} from "./snapshot.ts";
import { crc32 } from "../io/crc32.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "snapshot_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface State {
  label: string;
  vectors: Float32Array;
}

function stateFor(seq: number, n = 100): State {
  return { label: `state at ${seq}`, vectors: new Float32Array(n).map((_, i) => seq + i / 8) };
}

function produce(s: State): (w: BinaryWriter) => void {
  return (w) => {
    w.string(s.label);
    w.f32Array(s.vectors);
  };
}

function consume(r: BinaryReader): State {
  return { label: r.string(), vectors: r.f32Array() };
}

const quiet = { logger: () => {} };

Deno.test("snapshot: round trip, streamed payload larger than the writer buffer", async () => {
  await withDir(async (dir) => {
    const big = stateFor(42, 600_000); // 2.4 MB of floats, more than the 1 MiB buffer
    const written = await writeSnapshot(join(dir, "snaps"), 42, produce(big), {
      created_ms: 1_700_000_000_123,
    });
    assert.equal(written.path, join(dir, "snaps", snapshotName(42)));
    assert.equal(written.payload_bytes, 4 + big.label.length + 4 + 4 * 600_000);
    assert.equal(
      fs.statSync(written.path).size,
      SNAPSHOT_HEADER_BYTES + written.payload_bytes + SNAPSHOT_TRAILER_BYTES,
    );
    const loaded = await loadNewestSnapshot(join(dir, "snaps"), (r, seq) => {
      assert.equal(seq, 42);
      return consume(r);
    }, quiet);
    assert.ok(loaded !== null);
    assert.equal(loaded.seq, 42);
    assert.equal(loaded.created_ms, 1_700_000_000_123);
    assert.deepEqual(loaded.value, big);
    // Async producers and consumers work too.
    await writeSnapshot(dir, 7, async (w) => {
      await Promise.resolve();
      w.u64(7n);
    }, quiet);
    const seven = await loadNewestSnapshot(dir, async (r) => {
      await Promise.resolve();
      return r.u64();
    }, quiet);
    assert.equal(seven?.value, 7n);
  });
});

Deno.test("snapshot: keeps the newest K and deletes older ones", async () => {
  await withDir(async (dir) => {
    await writeSnapshot(dir, 10, produce(stateFor(10)), quiet);
    await writeSnapshot(dir, 20, produce(stateFor(20)), quiet);
    const third = await writeSnapshot(dir, 30, produce(stateFor(30)), quiet);
    assert.deepEqual(third.deleted, [join(dir, snapshotName(10))]);
    assert.deepEqual((await listSnapshots(dir)).map((s) => s.seq), [30, 20]);
    await writeSnapshot(dir, 40, produce(stateFor(40)), { keep: 3, logger: () => {} });
    assert.deepEqual((await listSnapshots(dir)).map((s) => s.seq), [40, 30, 20]);
    await assert.rejects(() => writeSnapshot(dir, 50, produce(stateFor(50)), { keep: 0 }), /keep/);
  });
});

Deno.test("snapshot: a damaged newest snapshot falls back to the previous one", async () => {
  await withDir(async (dir) => {
    await writeSnapshot(dir, 10, produce(stateFor(10)), quiet);
    await writeSnapshot(dir, 20, produce(stateFor(20)), quiet);
    const newest = join(dir, snapshotName(20));
    const good = fs.readFileSync(newest);
    const damage: [string, (b: Uint8Array) => Uint8Array, RegExp][] = [
      ["payload bit flip", (b) => (b[SNAPSHOT_HEADER_BYTES + 10] ^= 4, b), /checksum mismatch/],
      ["header seq flip", (b) => (b[8] ^= 1, b), /header seq 21 does not match/],
      ["created_ms flip", (b) => (b[17] ^= 1, b), /checksum mismatch/],
      ["magic", (b) => (b[0] ^= 0x80, b), /bad magic/],
      ["version", (b) => (b[4] = 9, b), /unsupported version 9/],
      ["end magic", (b) => (b[b.length - 1] ^= 1, b), /bad end magic/],
      ["torn", (b) => b.subarray(0, b.length - 100), /payload length \d+ does not match/],
      ["tiny", (b) => b.subarray(0, 10), /shorter than the 40-byte header/],
      ["empty", () => new Uint8Array(0), /shorter than/],
    ];
    for (const [what, mutate, reason] of damage) {
      fs.writeFileSync(newest, mutate(new Uint8Array(good)));
      const logs: string[] = [];
      const loaded = await loadNewestSnapshot(dir, consume, { logger: (m) => logs.push(m) });
      assert.equal(loaded?.seq, 10, what);
      assert.deepEqual(loaded?.value, stateFor(10));
      assert.equal(logs.length, 1, what);
      assert.ok(logs[0].includes(`Skipping snapshot ${newest}: `), logs[0]);
      assert.match(logs[0], reason, what);
    }
    // Both damaged: null, so the caller replays the whole WAL.
    fs.writeFileSync(join(dir, snapshotName(10)), new Uint8Array(50));
    const logs: string[] = [];
    assert.equal(await loadNewestSnapshot(dir, consume, { logger: (m) => logs.push(m) }), null);
    assert.equal(logs.length, 2);
    assert.equal(await loadNewestSnapshot(join(dir, "missing"), consume, quiet), null);
  });
});

Deno.test("snapshot: temporary leftovers are removed and failed writes leave nothing", async () => {
  await withDir(async (dir) => {
    await writeSnapshot(dir, 5, produce(stateFor(5)), quiet);
    const leftover = join(dir, `${snapshotName(9)}.tmp-abc123`);
    fs.writeFileSync(leftover, "half a snapshot");
    const logs: string[] = [];
    const loaded = await loadNewestSnapshot(dir, consume, { logger: (m) => logs.push(m) });
    assert.equal(loaded?.seq, 5);
    assert.ok(!fs.existsSync(leftover));
    assert.match(logs[0], /Removed leftover temporary snapshot .*tmp-abc123/);

    await assert.rejects(
      () =>
        writeSnapshot(dir, 6, (w) => {
          w.string("partial");
          throw new Error("producer failed");
        }, quiet),
      /producer failed/,
    );
    await assert.rejects(
      () => writeSnapshot(dir, 6, (w) => w.raw(new Uint8Array(2000)), { payload_bytes_max: 1000 }),
      /over its limit of 1000 bytes/,
    );
    assert.deepEqual(fs.readdirSync(dir), [snapshotName(5)]);
  });
});

Deno.test("snapshot: consumers read the whole payload; parseSnapshot validates", async () => {
  await withDir(async (dir) => {
    const { path } = await writeSnapshot(dir, 3, produce(stateFor(3)), quiet);
    await assert.rejects(
      () => loadNewestSnapshot(dir, (r) => r.string(), quiet),
      (e: unknown) =>
        e instanceof SnapshotFormatError && /left 404 of \d+ payload bytes/.test(e.message),
    );
    const bytes = new Uint8Array(fs.readFileSync(path));
    const parsed = parseSnapshot(bytes, "received");
    assert.equal(parsed.seq, 3);
    assert.throws(() => parseSnapshot(bytes, "received", 4), /Snapshot received is invalid/);
  });
});

Deno.test("snapshot: version 1 files still load (as do 2), and the consumer is told the version", async () => {
  await withDir(async (dir) => {
    const written = await writeSnapshot(dir, 5, produce(stateFor(5)), quiet);
    const versions: number[] = [];
    const read = (r: BinaryReader, _seq: number, version: number) => {
      versions.push(version);
      return consume(r);
    };
    assert.equal((await loadNewestSnapshot(dir, read, quiet))?.version, SNAPSHOT_VERSION);
    // Rewrite it as version 1 (same container, header version 1, checksum recomputed).
    const bytes = new Uint8Array(fs.readFileSync(written.path));
    const view = new DataView(bytes.buffer);
    view.setUint32(4, 1, true);
    const payloadEnd = bytes.length - SNAPSHOT_TRAILER_BYTES;
    const payload = bytes.subarray(SNAPSHOT_HEADER_BYTES, payloadEnd);
    view.setUint32(
      payloadEnd,
      crc32(bytes.subarray(0, SNAPSHOT_HEADER_BYTES), crc32(payload)),
      true,
    );
    fs.writeFileSync(written.path, bytes);
    const old = await loadNewestSnapshot(dir, read, quiet);
    assert.equal(old?.version, 1);
    assert.deepEqual(old?.value, stateFor(5));
    assert.deepEqual(versions, [SNAPSHOT_VERSION, 1]);
    assert.equal(SNAPSHOT_VERSION, 6);
  });
});

Deno.test("snapshot: a consumer's error on a damaged file skips it; on an intact file it propagates", async () => {
  await withDir(async (dir) => {
    await writeSnapshot(dir, 10, produce(stateFor(10)), quiet);
    await writeSnapshot(dir, 20, produce(stateFor(20)), quiet);
    const newest = join(dir, snapshotName(20));
    const bytes = fs.readFileSync(newest);
    // The label's length prefix made huge: the consumer throws (truncated input) before the
    // checksum is known; the checksum then says the file is damaged.
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(SNAPSHOT_HEADER_BYTES, 1 << 30, true);
    fs.writeFileSync(newest, bytes);
    const logs: string[] = [];
    const loaded = await loadNewestSnapshot(dir, consume, { logger: (m) => logs.push(m) });
    assert.equal(loaded?.seq, 10);
    assert.deepEqual(loaded?.value, stateFor(10));
    assert.match(logs.join("\n"), /Skipping snapshot .*20\.snap: checksum mismatch/);
    // An intact file whose consumer fails: a bug, not damage.
    await writeSnapshot(dir, 30, produce(stateFor(30)), quiet);
    await assert.rejects(
      () =>
        loadNewestSnapshot(dir, () => {
          throw new Error("consumer bug");
        }, quiet),
      /consumer bug/,
    );
    // The reader streams: a 1 MiB vector payload arrives whole, the timings are reported.
    await writeSnapshot(dir, 40, produce(stateFor(40, 1 << 18)), quiet);
    const big = await loadNewestSnapshot(dir, consume, quiet);
    assert.deepEqual(big?.value, stateFor(40, 1 << 18));
    assert.ok(big!.read_ms >= 0 && big!.checksum_ms >= 0 && big!.load_ms >= big!.read_ms);
  });
});
