/**
 * The WAL on a full disk (ENOSPC, EDQUOT), simulated with the IO fault hook of fs_util.ts:
 * refused appends are DiskFullError, leave nothing behind (not even after a reopen), and the
 * log takes writes again by itself once space is back.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { DiskFullError, errnoError } from "./disk_full.ts";
import { type IoOp, setIoFaultHook } from "./fs_util.ts";
import {
  CONTROL_NAME,
  parseControl,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  segmentName,
  Wal,
  type WalEntry,
  type WalOptions,
  WalWriteFailedError,
} from "./wal.ts";

const DATA_DIR = "/srv/vectordb/node-7";

function payload(n: number): Uint8Array {
  return new Uint8Array(24).fill(n & 0xff);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "wal_disk_full_test_" });
  try {
    await fn(dir);
  } finally {
    setIoFaultHook(null);
    await Deno.remove(dir, { recursive: true });
  }
}

function open(dir: string, options: WalOptions = {}): Promise<Wal> {
  return Wal.open(dir, { logger: () => {}, data_dir: DATA_DIR, ...options });
}

async function replayAll(dir: string): Promise<WalEntry[]> {
  const entries: WalEntry[] = [];
  const wal = await Wal.open(dir, {
    logger: () => {},
    onRecord: (e) => {
      entries.push({ ...e, payload: e.payload.slice() });
    },
  });
  await wal.close();
  return entries;
}

/** Checks the replayed log holds exactly `payloads` (by their fill byte) at seqs 1, 2, … */
function assertHolds(entries: WalEntry[], fills: number[]): void {
  assert.deepEqual(entries.map((e) => e.seq), fills.map((_, i) => i + 1));
  assert.deepEqual(entries.map((e) => e.payload[0]), fills);
}

function assertDiskFull(e: unknown): true {
  assert.ok(e instanceof DiskFullError, `expected DiskFullError, got ${e}`);
  assert.equal(e.code, "ENOSPC");
  assert.equal(e.data_dir, DATA_DIR);
  assert.match(e.message, /^No space left on device in data directory \/srv\/vectordb\/node-7: /);
  assert.match(e.message, /write refused, nothing applied; writes resume once space is freed/);
  return true;
}

/** A hook failing `op` on paths `match` accepts with ENOSPC while `state.full` is set. */
function diskFullWhile(
  state: { full: boolean; calls: number },
  op: IoOp,
  match: (path: string) => boolean,
  after_bytes = 0,
) {
  return (o: IoOp, path: string) => {
    if (!state.full || o !== op || !match(path)) return null;
    state.calls++;
    return { error: errnoError("ENOSPC", op, path), after_bytes };
  };
}

Deno.test("wal disk full: a torn batch is refused, cut back, and the log resumes by itself", async () => {
  await withDir(async (dir) => {
    const wal = await open(dir);
    for (let n = 1; n <= 3; n++) assert.equal(await wal.append(1, payload(n)), n);
    const segment = join(dir, segmentName(1));
    const durable = fs.statSync(segment).size;
    // The write of a two-record batch stops after the first record and 5 bytes of the second.
    const state = { full: true, calls: 0 };
    const recordBytes = RECORD_HEADER_BYTES + 24;
    setIoFaultHook(diskFullWhile(state, "write", (p) => p === segment, recordBytes + 5));
    await assert.rejects(
      () => wal.appendMany([{ type: 1, payload: payload(4) }, { type: 1, payload: payload(5) }]),
      assertDiskFull,
    );
    assert.equal(state.calls, 1);
    assert.equal(fs.statSync(segment).size, durable, "the torn tail was cut back");
    assert.equal(wal.diskFull, true);
    assert.equal(wal.nextSeq, 4, "the refused records' sequence numbers are given out again");
    assert.equal(wal.stats().disk_full_refused, 2);

    state.full = false; // space is freed: no restart, the next append goes through
    assert.equal(await wal.append(1, payload(6)), 4);
    assert.equal(wal.diskFull, false);
    await wal.close();
    assertHolds(await replayAll(dir), [1, 2, 3, 6]);
  });
});

Deno.test("wal disk full: appends queued behind a refused batch are refused too", async () => {
  await withDir(async (dir) => {
    const wal = await open(dir);
    assert.equal(await wal.append(1, payload(1)), 1);
    const segment = join(dir, segmentName(1));
    let behind: Promise<unknown> | null = null;
    setIoFaultHook((op, path) => {
      if (op !== "write" || path !== segment || behind !== null) return null;
      // Made while the first batch is being written: it queues behind it.
      behind = wal.append(1, payload(3)).then(() => "acked", (e) => e);
      return { error: errnoError("ENOSPC", "write", path), after_bytes: 7 };
    });
    await assert.rejects(() => wal.append(1, payload(2)), assertDiskFull);
    assertDiskFull(await behind!);
    assert.equal(await wal.append(1, payload(4)), 2);
    await wal.close();
    assertHolds(await replayAll(dir), [1, 4]);
  });
});

Deno.test("wal disk full: while the cut fails every write re-checks and is refused", async () => {
  await withDir(async (dir) => {
    const wal = await open(dir);
    assert.equal(await wal.append(1, payload(1)), 1);
    const segment = join(dir, segmentName(1));
    const durable = fs.statSync(segment).size;
    const state = { full: true, calls: 0 };
    let truncates = 0;
    setIoFaultHook((op, path, bytes) => {
      if (!state.full || path !== segment) return null;
      if (op === "truncate") truncates++;
      if (op === "sync" || op === "truncate") {
        return { error: errnoError("ENOSPC", op === "sync" ? "fsync" : "ftruncate", path) };
      }
      return { error: errnoError("ENOSPC", "write", path), after_bytes: Math.min(bytes, 30) };
    });
    await assert.rejects(() => wal.append(1, payload(2)), assertDiskFull);
    assert.equal(fs.statSync(segment).size, durable + 30, "the cut failed: the torn tail is there");
    assert.equal(truncates, 1);
    await assert.rejects(() => wal.append(1, payload(3)), assertDiskFull);
    assert.equal(truncates, 2, "the refused write retried the cut first");
    assert.equal(wal.diskFull, true);

    // A crash now: the torn tail fails its checksum at the end of the last segment and is cut
    // at start-up (simulated on a copy of the directory).
    const copy = `${dir}-copy`;
    fs.cpSync(dir, copy, { recursive: true });
    try {
      const hook = setIoFaultHook(null);
      assertHolds(await replayAll(copy), [1]);
      setIoFaultHook(hook);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }

    state.full = false;
    assert.equal(await wal.append(1, payload(4)), 2);
    assert.equal(fs.statSync(segment).size, durable + RECORD_HEADER_BYTES + 24);
    await wal.close();
    assertHolds(await replayAll(dir), [1, 4]);
  });
});

Deno.test("wal disk full: a whole record whose sync failed is cut, never replayed", async () => {
  await withDir(async (dir) => {
    const wal = await open(dir);
    assert.equal(await wal.append(1, payload(1)), 1);
    const segment = join(dir, segmentName(1));
    let syncFails = 1;
    setIoFaultHook((op, path) => {
      if (op !== "sync" || path !== segment || syncFails === 0) return null;
      syncFails--;
      return { error: errnoError("ENOSPC", "fdatasync", path) };
    });
    await assert.rejects(() => wal.append(1, payload(2)), assertDiskFull);
    assert.equal(fs.statSync(segment).size, SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 24);
    assert.equal(await wal.append(1, payload(3)), 2);
    await wal.close();
    assertHolds(await replayAll(dir), [1, 3]);
  });
});

Deno.test("wal disk full: a rotation that fails refuses writes until a retry completes it", async () => {
  for (const failing of ["segment", "control"] as const) {
    await withDir(async (dir) => {
      // Two records fill a segment: the rotation runs after the second one is acknowledged.
      const max = SEGMENT_HEADER_BYTES + 2 * (RECORD_HEADER_BYTES + 24);
      const wal = await open(dir, { segment_bytes_max: max });
      assert.equal(await wal.append(1, payload(1)), 1);
      const state = { full: true, calls: 0 };
      const temp = failing === "segment" ? `${segmentName(3)}.tmp` : `${CONTROL_NAME}.tmp`;
      setIoFaultHook(diskFullWhile(state, "write", (p) => p === join(dir, temp)));
      assert.equal(await wal.append(1, payload(2)), 2, "acknowledged before the rotation");
      await assert.rejects(() => wal.append(1, payload(3)), assertDiskFull);
      assert.equal(state.calls, 2, "the rotation failed, and the refused write retried it");
      assert.equal(fs.existsSync(join(dir, temp)), false, "no temporary file is left");
      assert.equal(wal.segments().length, failing === "segment" ? 1 : 2);

      state.full = false;
      assert.equal(await wal.append(1, payload(4)), 3);
      assert.deepEqual(wal.segments().map((s) => s.first_seq), [1, 3]);
      const control = parseControl(new Uint8Array(fs.readFileSync(join(dir, CONTROL_NAME))));
      assert.ok(!("reason" in control));
      assert.equal(control.last_seq, 3);
      await wal.close();
      assertHolds(await replayAll(dir), [1, 2, 4]);
    });
  }
});

Deno.test("wal disk full: EDQUOT is a full disk too; EIO still fails the log for good", async () => {
  await withDir(async (dir) => {
    const wal = await open(dir);
    const segment = join(dir, segmentName(1));
    let code: string | null = "EDQUOT";
    setIoFaultHook((op, path) =>
      code !== null && op === "write" && path === segment
        ? { error: errnoError(code, "write", path) }
        : null
    );
    await assert.rejects(() => wal.append(1, payload(1)), (e) => {
      assert.ok(e instanceof DiskFullError);
      assert.equal(e.code, "EDQUOT");
      assert.match(e.message, /^Disk quota exceeded in data directory \/srv\/vectordb\/node-7: /);
      return true;
    });
    code = "EIO";
    await assert.rejects(() => wal.append(1, payload(2)), WalWriteFailedError);
    code = null;
    await assert.rejects(() => wal.append(1, payload(3)), WalWriteFailedError);
    await wal.close();
    assertHolds(await replayAll(dir), []);
  });
});
