import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import {
  CONTROL_NAME,
  parseControl,
  prefetchSegments,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  segmentName,
  Wal,
  WalClosedError,
  type WalControl,
  WalCorruptionError,
  type WalEntry,
  type WalOptions,
  WalQueueFullError,
  WalRecordTooLargeError,
  WalSequenceError,
} from "./wal.ts";

/** Deterministic payload for a record number: its length and content depend on `n`. */
function payloadFor(n: number): Uint8Array {
  const p = new Uint8Array(5 + (n * 7) % 40);
  for (let i = 0; i < p.length; i++) p[i] = (n * 31 + i) & 0xff;
  return p;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "wal_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function replay(
  dir: string,
  options: WalOptions = {},
): Promise<{ wal: Wal; entries: WalEntry[]; logs: string[] }> {
  const entries: WalEntry[] = [];
  const logs: string[] = [];
  const wal = await Wal.open(dir, {
    logger: (m) => logs.push(m),
    onRecord: (e) => {
      entries.push({ ...e, payload: e.payload.slice() });
    },
    ...options,
  });
  return { wal, entries, logs };
}

/** Writes records 1..n (type = n % 7), returns the byte offset of each record in one segment. */
async function writeRecords(dir: string, n: number, options: WalOptions = {}): Promise<number[]> {
  const wal = await Wal.open(dir, { logger: () => {}, ...options });
  const offsets: number[] = [];
  let off = SEGMENT_HEADER_BYTES;
  for (let i = 1; i <= n; i++) {
    offsets.push(off);
    off += RECORD_HEADER_BYTES + payloadFor(i).length;
    assert.equal(await wal.append(i % 7, payloadFor(i)), i);
  }
  await wal.close();
  return offsets;
}

function checkEntries(entries: WalEntry[], from: number, to: number): void {
  assert.equal(entries.length, to - from + 1, `expected records ${from}..${to}`);
  entries.forEach((e, k) => {
    const n = from + k;
    assert.equal(e.seq, n);
    assert.equal(e.type, n % 7);
    assert.deepEqual(e.payload, payloadFor(n));
  });
}

/** The segment files of a log directory, oldest first. */
function segmentNames(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => /^wal-\d{20}\.log$/.test(n)).sort();
}

function flipBit(path: string, offset: number, bit = 0): void {
  const bytes = fs.readFileSync(path);
  bytes[offset] ^= 1 << bit;
  fs.writeFileSync(path, bytes);
}

Deno.test("wal: append and replay round trip across segment rotation", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segment_bytes_max: 300, logger: () => {} });
    assert.equal(wal.nextSeq, 1);
    for (let i = 1; i <= 60; i++) assert.equal(await wal.append(i % 7, payloadFor(i)), i);
    // Concurrent appends get contiguous sequence numbers in call order.
    const seqs = await Promise.all(
      Array.from({ length: 40 }, (_, k) => wal.append((61 + k) % 7, payloadFor(61 + k))),
    );
    assert.deepEqual(seqs, Array.from({ length: 40 }, (_, k) => 61 + k));
    const stats = wal.stats();
    assert.equal(stats.records, 100);
    assert.ok(stats.segments > 5, `only ${stats.segments} segments`);
    assert.equal(wal.lastSeq, 100);
    await wal.close();
    await assert.rejects(() => wal.append(1, new Uint8Array(1)), WalClosedError);

    const all = await replay(dir, { segment_bytes_max: 300 });
    checkEntries(all.entries, 1, 100);
    assert.deepEqual(all.logs, []);
    assert.equal(all.wal.nextSeq, 101);
    assert.equal(await all.wal.append(3, payloadFor(101)), 101);
    await all.wal.close();

    const tail = await replay(dir, { afterSeq: 77 });
    checkEntries(tail.entries, 78, 101);
    await tail.wal.close();
  });
});

Deno.test("wal: group commit batches concurrent appends into few syncs", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { logger: () => {} });
    const clients = 32;
    const perClient = 20;
    const resolvedOrder: number[] = [];
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        let last = 0;
        for (let k = 0; k < perClient; k++) {
          const seq = await wal.append(1, payloadFor(c * 100 + k));
          assert.ok(seq > last, `client ${c}: seq ${seq} after ${last}`);
          last = seq;
          resolvedOrder.push(seq);
        }
      }),
    );
    const total = clients * perClient;
    const stats = wal.stats();
    assert.equal(stats.records, total);
    assert.ok(stats.syncs <= total / 4, `${stats.syncs} syncs for ${total} appends`);
    // Promises resolve in sequence order and every number is used once.
    assert.deepEqual(resolvedOrder, Array.from({ length: total }, (_, i) => i + 1));

    const before = wal.stats().syncs;
    const many = await wal.appendMany(
      Array.from({ length: 50 }, (_, i) => ({ type: 2, payload: payloadFor(i) })),
    );
    assert.deepEqual(many, Array.from({ length: 50 }, (_, i) => total + 1 + i));
    assert.equal(wal.stats().syncs - before, 1);
    assert.deepEqual(await wal.appendMany([]), []);
    await wal.close();
  });
});

Deno.test("wal: record size and queue limits are errors the caller sees", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, {
      record_bytes_max: 100,
      queue_bytes_max: 300,
      logger: () => {},
    });
    await assert.rejects(
      () => wal.append(1, new Uint8Array(101)),
      (e: unknown) => e instanceof WalRecordTooLargeError && /101 bytes exceeds/.test(e.message),
    );
    await assert.rejects(() => wal.append(256, new Uint8Array(1)), /type 256/);
    // 117-byte frames: two fit in 300 queued bytes, the third does not.
    const a = wal.append(1, new Uint8Array(100));
    const b = wal.append(1, new Uint8Array(100));
    await assert.rejects(() => wal.append(1, new Uint8Array(100)), WalQueueFullError);
    await assert.rejects(
      () => wal.appendMany([{ type: 1, payload: new Uint8Array(100) }]),
      /already queued/,
    );
    assert.deepEqual(await Promise.all([a, b]), [1, 2]);
    assert.equal(await wal.append(1, new Uint8Array(100)), 3);
    assert.equal(wal.stats().queued_bytes, 0);
    await wal.close();
  });
});

Deno.test("wal: a torn tail at every byte offset of the last record is truncated", async () => {
  await withDir(async (root) => {
    const src = join(root, "src");
    const offsets = await writeRecords(src, 5);
    const segment = segmentName(1);
    const full = fs.readFileSync(join(src, segment));
    const lastStart = offsets[4];
    const dir = join(root, "work");
    for (let cut = lastStart; cut < full.length; cut++) {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir);
      fs.writeFileSync(join(dir, segment), full.subarray(0, cut));
      fs.copyFileSync(join(src, CONTROL_NAME), join(dir, CONTROL_NAME));
      const { wal, entries, logs } = await replay(dir);
      checkEntries(entries, 1, 4);
      assert.equal(fs.statSync(join(dir, segment)).size, lastStart, `cut at ${cut}`);
      if (cut > lastStart) {
        assert.equal(logs.length, 1, `cut at ${cut}: ${logs}`);
        assert.match(logs[0], new RegExp(`torn tail of .*${segment}.*offset ${lastStart}`));
      } else {
        assert.deepEqual(logs, []);
      }
      assert.equal(await wal.append(5 % 7, payloadFor(5)), 5);
      await wal.close();
      const again = await replay(dir);
      checkEntries(again.entries, 1, 5);
      await again.wal.close();
    }
    // A complete last record with a checksum mismatch and nothing after it is a torn tail too.
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir);
    fs.writeFileSync(join(dir, segment), full);
    fs.copyFileSync(join(src, CONTROL_NAME), join(dir, CONTROL_NAME));
    flipBit(join(dir, segment), full.length - 1);
    const flipped = await replay(dir);
    checkEntries(flipped.entries, 1, 4);
    assert.match(flipped.logs[0], /checksum mismatch/);
    await flipped.wal.close();
  });
});

Deno.test("wal: a bad record before a valid one is corruption naming file and offset", async () => {
  await withDir(async (root) => {
    const src = join(root, "src");
    const offsets = await writeRecords(src, 6);
    const segment = segmentName(1);
    const full = fs.readFileSync(join(src, segment));
    const dir = join(root, "work");
    const path = join(dir, segment);
    // Flip a bit in each field of record 3: length (low and high byte), crc, seq, type, payload.
    const at = offsets[2];
    for (const [delta, bit] of [[0, 0], [3, 7], [4, 2], [8, 0], [16, 1], [20, 5]]) {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir);
      fs.writeFileSync(path, full);
      flipBit(path, at + delta, bit);
      await assert.rejects(
        () => replay(dir),
        (e: unknown) =>
          e instanceof WalCorruptionError && e.file === path && e.offset === at &&
          e.message.includes(path) && e.message.includes(`byte offset ${at}`) &&
          e.message.includes(`valid record at byte offset ${offsets[3]}`),
        `flip at +${delta}`,
      );
      assert.equal(fs.statSync(path).size, full.length, "strict open must not modify the file");

      // recovery: "truncate" cuts the log at the bad record and carries on from there.
      const { wal, entries, logs } = await replay(dir, { recovery: "truncate" });
      checkEntries(entries, 1, 2);
      assert.ok(logs.some((l) => l.includes(`corrupt at byte offset ${at}`)), logs.join("\n"));
      assert.equal(fs.statSync(path).size, at);
      assert.equal(await wal.append(3 % 7, payloadFor(3)), 3);
      await wal.close();
    }
  });
});

Deno.test("wal: corruption in an earlier segment, bad headers and gaps", async () => {
  await withDir(async (root) => {
    const src = join(root, "src");
    await writeRecords(src, 40, { segment_bytes_max: 200 });
    const names = segmentNames(src);
    assert.ok(names.length >= 4);
    const dir = join(root, "work");
    const reset = () => {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.cpSync(src, dir, { recursive: true });
    };

    // Last record of the first segment damaged: not a torn tail, since segments follow.
    reset();
    const first = join(dir, names[0]);
    flipBit(first, fs.statSync(first).size - 1);
    await assert.rejects(
      () => replay(dir),
      (e: unknown) =>
        e instanceof WalCorruptionError && e.file === first &&
        /followed by \d+ more/.test(e.message),
    );
    const cut = await replay(dir, { recovery: "truncate" });
    assert.equal(segmentNames(dir).length, 1);
    const kept = cut.entries.length;
    checkEntries(cut.entries, 1, kept);
    assert.ok(cut.logs.filter((l) => l.includes("dropped segment")).length === names.length - 1);
    assert.equal(await cut.wal.append(1, payloadFor(1)), kept + 1);
    await cut.wal.close();

    // A damaged segment header.
    reset();
    const second = join(dir, names[1]);
    flipBit(second, 9);
    await assert.rejects(
      () => replay(dir),
      (e: unknown) =>
        e instanceof WalCorruptionError && e.file === second && e.offset === 0 &&
        /header checksum mismatch/.test(e.message),
    );
    const noHeader = await replay(dir, { recovery: "truncate" });
    assert.equal(noHeader.wal.nextSeq, noHeader.entries.length + 1);
    assert.deepEqual(segmentNames(dir), [names[0]]);
    await noHeader.wal.close();

    // A missing middle segment is a gap in sequence numbers.
    reset();
    fs.rmSync(join(dir, names[2]));
    await assert.rejects(() => replay(dir), /starts at seq \d+ but the previous one ends at seq/);
  });
});

Deno.test("wal: truncateBefore deletes only segments wholly covered", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segment_bytes_max: 200, logger: () => {} });
    for (let i = 1; i <= 40; i++) await wal.append(i % 7, payloadFor(i));
    const segs = wal.segments();
    assert.ok(segs.length >= 4);
    // One short of covering segment 1: only segment 0 goes.
    assert.equal(await wal.truncateBefore(segs[2].first_seq - 2), 1);
    assert.deepEqual(wal.segments(), segs.slice(1));
    assert.equal(await wal.truncateBefore(segs[2].first_seq - 1), 1);
    assert.deepEqual(wal.segments(), segs.slice(2));
    assert.equal(await wal.truncateBefore(0), 0);
    // Everything covered: the active segment stays.
    const covered = segs[segs.length - 1].first_seq - 1;
    assert.equal(await wal.truncateBefore(1e9), segs.length - 3);
    assert.deepEqual(wal.segments(), segs.slice(-1));
    assert.deepEqual(fs.readdirSync(dir).sort(), [
      CONTROL_NAME,
      segmentName(segs.at(-1)!.first_seq),
    ]);
    assert.equal(await wal.append(1, payloadFor(41)), 41);
    await wal.close();

    // Replay after the snapshot point works; from earlier, the records are gone.
    const tail = await replay(dir, { afterSeq: covered });
    assert.equal(tail.entries[0].seq, covered + 1);
    assert.equal(tail.entries[tail.entries.length - 1].seq, 41);
    await tail.wal.close();
    await assert.rejects(() => replay(dir, { afterSeq: 3 }), WalSequenceError);
  });
});

Deno.test("wal: new logs start after afterSeq; leftovers removed; afterSeq past end", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(join(dir, "a", "b"), { afterSeq: 100, logger: () => {} });
    assert.equal(await wal.append(1, new Uint8Array([1])), 101);
    await wal.close();
    fs.writeFileSync(join(dir, "a", "b", `${segmentName(500)}.tmp`), "junk");
    const { wal: again, entries, logs } = await replay(join(dir, "a", "b"), { afterSeq: 100 });
    assert.equal(entries.length, 1);
    assert.match(logs[0], /Removed leftover temporary segment/);
    assert.deepEqual(fs.readdirSync(join(dir, "a", "b")).sort(), [CONTROL_NAME, segmentName(101)]);
    await again.close();
    await assert.rejects(
      () => replay(join(dir, "a", "b"), { afterSeq: 200 }),
      /ends at seq 101 but the caller already has records up to seq 200/,
    );
  });
});

/** Writes records 1..n in 200-byte segments; returns the segment names, oldest first. */
async function writeSegmented(dir: string, n: number): Promise<string[]> {
  await writeRecords(dir, n, { segment_bytes_max: 200 });
  return segmentNames(dir);
}

function readControlFile(dir: string): WalControl {
  const parsed = parseControl(new Uint8Array(fs.readFileSync(join(dir, CONTROL_NAME))));
  assert.ok(!("reason" in parsed), `CONTROL unreadable: ${JSON.stringify(parsed)}`);
  return parsed;
}

Deno.test("wal: CONTROL names the first and last segment and follows rotation and truncation", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segment_bytes_max: 200, logger: () => {} });
    for (let i = 1; i <= 40; i++) await wal.append(i % 7, payloadFor(i));
    const segs = wal.segments();
    assert.deepEqual(readControlFile(dir), {
      first_seq: 1,
      last_seq: segs.at(-1)!.first_seq,
      snapshot_seq: 0,
    });
    assert.equal(await wal.truncateBefore(segs[2].first_seq - 1, 17), 2);
    assert.deepEqual(readControlFile(dir), {
      first_seq: segs[2].first_seq,
      last_seq: segs.at(-1)!.first_seq,
      snapshot_seq: 17,
    });
    assert.deepEqual(wal.control(), readControlFile(dir));
    await wal.close();
  });
});

Deno.test("wal: a missing newest segment is corruption naming it; truncate says what is lost", async () => {
  await withDir(async (dir) => {
    const names = await writeSegmented(dir, 40);
    const newest = join(dir, names.at(-1)!);
    const lostFrom = Number(names.at(-1)!.slice(4, 24));
    fs.rmSync(newest);
    await assert.rejects(
      () => replay(dir),
      (e: unknown) =>
        e instanceof WalCorruptionError && e.file === newest &&
        e.message.includes(newest) && e.message.includes(`from seq ${lostFrom} on are lost`),
    );
    const { wal, entries, logs } = await replay(dir, { recovery: "truncate" });
    checkEntries(entries, 1, lostFrom - 1);
    assert.ok(logs.some((l) => l.includes(`${newest} is missing`)), logs.join("\n"));
    assert.equal(await wal.append(lostFrom % 7, payloadFor(lostFrom)), lostFrom);
    await wal.close();
    const again = await replay(dir);
    checkEntries(again.entries, 1, lostFrom);
    await again.wal.close();
  });
});

Deno.test("wal: a missing oldest segment is an error only when its records are needed", async () => {
  await withDir(async (dir) => {
    const names = await writeSegmented(dir, 40);
    const second = Number(names[1].slice(4, 24));
    fs.rmSync(join(dir, names[0]));
    await assert.rejects(
      () => replay(dir),
      (e: unknown) => e instanceof WalCorruptionError && e.file === join(dir, names[0]),
    );
    const covered = await replay(dir, { afterSeq: second - 1 });
    checkEntries(covered.entries, second, 40);
    assert.ok(covered.logs.some((l) => l.includes("as the oldest is missing")));
    await covered.wal.close();
    assert.equal(readControlFile(dir).first_seq, second);
  });
});

Deno.test("wal: crashes between a segment change and CONTROL's update open cleanly", async () => {
  await withDir(async (root) => {
    // Rotation: the new segment exists, CONTROL still names the previous one as the last.
    const dir = join(root, "rotate");
    const wal = await Wal.open(dir, { segment_bytes_max: 200, logger: () => {} });
    let n = 0;
    while (wal.segments().length < 3) await wal.append(++n % 7, payloadFor(n));
    const before = fs.readFileSync(join(dir, CONTROL_NAME));
    while (wal.segments().length < 4) await wal.append(++n % 7, payloadFor(n));
    await wal.append(++n % 7, payloadFor(n));
    await wal.close();
    fs.writeFileSync(join(dir, CONTROL_NAME), before);
    const opened = await replay(dir);
    checkEntries(opened.entries, 1, n);
    assert.equal(readControlFile(dir).last_seq, opened.wal.segments().at(-1)!.first_seq);
    await opened.wal.close();

    // truncateBefore: CONTROL already drops the oldest segments, which are still there.
    const copy = join(root, "truncate");
    fs.cpSync(dir, copy, { recursive: true });
    const t = await Wal.open(dir, { afterSeq: n, logger: () => {} });
    const segs = t.segments();
    assert.equal(await t.truncateBefore(segs[2].first_seq - 1), 2);
    await t.close();
    fs.copyFileSync(join(dir, CONTROL_NAME), join(copy, CONTROL_NAME));
    const reopened = await replay(copy);
    checkEntries(reopened.entries, 1, n);
    await reopened.wal.close();
    assert.equal(readControlFile(copy).first_seq, 1);

    // A leftover CONTROL temporary is removed.
    fs.writeFileSync(join(copy, `${CONTROL_NAME}.tmp`), "junk");
    const tmp = await replay(copy);
    assert.ok(!fs.existsSync(join(copy, `${CONTROL_NAME}.tmp`)));
    await tmp.wal.close();
  });
});

Deno.test("wal: a directory without CONTROL opens and gets one; a damaged CONTROL is named", async () => {
  await withDir(async (dir) => {
    const names = await writeSegmented(dir, 40);
    fs.rmSync(join(dir, CONTROL_NAME));
    const old = await replay(dir);
    checkEntries(old.entries, 1, 40);
    assert.ok(old.logs.some((l) => l.includes("has no CONTROL file")));
    await old.wal.close();
    assert.deepEqual(readControlFile(dir), {
      first_seq: 1,
      last_seq: Number(names.at(-1)!.slice(4, 24)),
      snapshot_seq: 0,
    });

    flipBit(join(dir, CONTROL_NAME), 10);
    await assert.rejects(
      () => replay(dir),
      (e: unknown) =>
        e instanceof WalCorruptionError && e.file === join(dir, CONTROL_NAME) &&
        /checksum mismatch/.test(e.message),
    );
    const rebuilt = await replay(dir, { recovery: "truncate" });
    checkEntries(rebuilt.entries, 1, 40);
    await rebuilt.wal.close();
    assert.equal(readControlFile(dir).first_seq, 1);
  });
});

/**
 * A log of `n` records written once in `src` (`root`/src), and `reset`, which copies it afresh to
 * `dir` (`root`/work) for each damage a test tries; `segment` is its one segment's name.
 */
async function copiedLog(root: string, n: number) {
  const src = join(root, "src");
  const offsets = await writeRecords(src, n);
  const segment = segmentName(1);
  const dir = join(root, "work");
  const reset = () => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.cpSync(src, dir, { recursive: true });
  };
  return { src, offsets, segment, dir, reset };
}

Deno.test("wal: damage in records covered by afterSeq is skipped in both modes", async () => {
  await withDir(async (root) => {
    const { src, offsets, segment, dir, reset } = await copiedLog(root, 30);
    // Record 10's payload damaged: not needed once records up to 20 are held. Read whole (a
    // prefetched segment), the damage is found, logged and skipped; read by open, the covered
    // records are only walked (their headers are intact) and their payloads never read.
    for (
      const [recovery, ahead] of [
        ["strict", true],
        ["truncate", true],
        ["strict", false],
        ["truncate", false],
      ] as const
    ) {
      reset();
      flipBit(join(dir, segment), offsets[9] + RECORD_HEADER_BYTES + 2);
      const prefetched = ahead ? prefetchSegments(dir) : undefined;
      if (ahead) assert.equal(prefetched!.size, 1);
      const { wal, entries, logs } = await replay(dir, { afterSeq: 20, recovery, prefetched });
      checkEntries(entries, 21, 30);
      assert.equal(
        logs.some((l) => l.includes(`byte offset ${offsets[9]}`) && l.includes("skipped")),
        ahead,
        logs.join("\n"),
      );
      assert.equal(await wal.append(31 % 7, payloadFor(31)), 31);
      await wal.close();
      assert.equal(segmentNames(dir).length, 1, "nothing was cut");
      // Still needed from an older point: strict refuses.
      await assert.rejects(() => replay(dir, { afterSeq: 5 }), WalCorruptionError);
    }
    // The length field of record 10 damaged and the rest of the segment unreadable: the tail
    // is covered too; appends go to a new segment after afterSeq.
    reset();
    const full = fs.readFileSync(join(src, segment));
    fs.writeFileSync(join(dir, segment), full.subarray(0, offsets[29] + 3));
    const tail = await replay(dir, { afterSeq: 30 });
    assert.equal(tail.entries.length, 0);
    assert.equal(tail.wal.nextSeq, 31);
    assert.equal(fs.statSync(join(dir, segment)).size, offsets[29] + 3, "covered tail kept");
    assert.equal(await tail.wal.append(31 % 7, payloadFor(31)), 31);
    await tail.wal.close();
    const after = await replay(dir, { afterSeq: 30 });
    checkEntries(after.entries, 31, 31);
    await after.wal.close();
  });
});

Deno.test("wal: truncate moves what it cuts into cut-<timestamp>/, byte for byte", async () => {
  await withDir(async (root) => {
    const src = join(root, "src");
    const names = await writeSegmented(src, 40);
    const dir = join(root, "work");
    fs.cpSync(src, dir, { recursive: true });
    const first = join(dir, names[0]);
    const firstBytes = fs.readFileSync(first);
    // Damage the second record of the first segment.
    const view = new DataView(firstBytes.buffer, firstBytes.byteOffset);
    const at = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES +
      view.getUint32(SEGMENT_HEADER_BYTES, true);
    flipBit(first, at + RECORD_HEADER_BYTES + 1);
    const damaged = fs.readFileSync(first);
    const { wal, entries, logs } = await replay(dir, { recovery: "truncate" });
    checkEntries(entries, 1, 1);
    await wal.close();
    const asides = fs.readdirSync(dir).filter((n) => n.startsWith("cut-"));
    assert.equal(asides.length, 1);
    const aside = join(dir, asides[0]);
    assert.deepEqual(
      fs.readFileSync(join(aside, `${names[0]}.from-${at}`)),
      damaged.subarray(at),
    );
    for (const name of names.slice(1)) {
      assert.deepEqual(fs.readFileSync(join(aside, name)), fs.readFileSync(join(src, name)));
    }
    assert.ok(logs.some((l) => l.includes(aside)), logs.join("\n"));
    assert.deepEqual(segmentNames(dir), [names[0]]);
    assert.equal(readControlFile(dir).last_seq, 1);
    const again = await replay(dir);
    checkEntries(again.entries, 1, 1);
    await again.wal.close();
  });
});

Deno.test("wal: segments prefetched before open replay the same; failed or missing reads are read again", async () => {
  await withDir(async (dir) => {
    const names = await writeSegmented(dir, 40);
    assert.ok(names.length > 2);
    const plain = await replay(dir, { afterSeq: 10 });
    await plain.wal.close();
    const prefetched = prefetchSegments(dir);
    assert.deepEqual(
      [...prefetched.keys()],
      names.map((n) => join(dir, n)),
      "every segment, oldest first",
    );
    const ahead = await replay(dir, { afterSeq: 10, prefetched });
    assert.deepEqual(ahead.entries, plain.entries);
    assert.equal(prefetched.size, 0, "open took every prefetched segment");
    await ahead.wal.close();
    // A read that failed (null) is done again by open; a missing directory prefetches nothing.
    const failed = prefetchSegments(dir);
    for (const path of failed.keys()) failed.set(path, Promise.resolve(null));
    const again = await replay(dir, { afterSeq: 10, prefetched: failed });
    assert.deepEqual(again.entries, plain.entries);
    await again.wal.close();
    assert.equal(prefetchSegments(join(dir, "missing")).size, 0);
  });
});

Deno.test("wal: records covered by afterSeq are walked, not read; what follows replays and a torn tail is still cut", async () => {
  await withDir(async (root) => {
    const { src, offsets, segment, dir, reset } = await copiedLog(root, 30);
    // Every afterSeq from none covered to all covered replays exactly the records after it, and
    // appends continue the sequence in the same file.
    for (const afterSeq of [0, 1, 15, 29, 30]) {
      reset();
      const { wal, entries } = await replay(dir, { afterSeq });
      if (afterSeq < 30) checkEntries(entries, afterSeq + 1, 30);
      else assert.equal(entries.length, 0);
      assert.equal(await wal.append(31 % 7, payloadFor(31)), 31);
      await wal.close();
      assert.deepEqual(segmentNames(dir), [segment]);
      const again = await replay(dir, { afterSeq });
      checkEntries(again.entries, afterSeq + 1, 31);
      await again.wal.close();
    }
    // Covered payloads are not read: damage there goes unseen (the snapshot holds them), and
    // the records after afterSeq are checksummed as ever.
    reset();
    flipBit(join(dir, segment), offsets[4] + RECORD_HEADER_BYTES + 1);
    const covered = await replay(dir, { afterSeq: 10 });
    checkEntries(covered.entries, 11, 30);
    assert.deepEqual(covered.logs, []);
    await covered.wal.close();
    // A torn record after afterSeq (a crash in its write) is cut as before.
    reset();
    const full = fs.readFileSync(join(src, segment));
    fs.writeFileSync(join(dir, segment), full.subarray(0, offsets[29] + 9));
    const torn = await replay(dir, { afterSeq: 20 });
    checkEntries(torn.entries, 21, 29);
    assert.ok(torn.logs.some((l) => l.includes("Truncated torn tail")), torn.logs.join("\n"));
    assert.equal(fs.statSync(join(dir, segment)).size, offsets[29]);
    assert.equal(await torn.wal.append(30 % 7, payloadFor(30)), 30);
    await torn.wal.close();
    // A damaged header among the covered records (its seq): the walk stops and the whole
    // segment is scanned, which skips the covered damage as before.
    reset();
    flipBit(join(dir, segment), offsets[3] + 8);
    const walked = await replay(dir, { afterSeq: 10 });
    checkEntries(walked.entries, 11, 30);
    assert.ok(
      walked.logs.some((l) => l.includes(`byte offset ${offsets[3]}`)),
      walked.logs.join("\n"),
    );
    await walked.wal.close();
    // A log that ends before afterSeq is refused as before (the walk reaches the end first).
    reset();
    await assert.rejects(() => replay(dir, { afterSeq: 40 }), WalSequenceError);
  });
});

Deno.test("wal: segments begun at or before CONTROL's snapshot seq are not read ahead; covered segments replay nothing", async () => {
  await withDir(async (dir) => {
    const names = await writeSegmented(dir, 40);
    assert.ok(names.length >= 4, `${names.length} segments`);
    const wal = await Wal.open(dir, { logger: () => {} });
    const third = Number(names[2].slice(4, 24));
    // A snapshot covering the first records of the third segment.
    await wal.truncateBefore(third + 1, third + 1);
    await wal.close();
    const ahead = prefetchSegments(dir);
    const left = segmentNames(dir);
    assert.deepEqual(
      [...ahead.keys()].map((p) => p.slice(dir.length + 1)),
      left.filter((n) => Number(n.slice(4, 24)) > third + 1),
    );
    const { wal: again, entries } = await replay(dir, { afterSeq: third + 1, prefetched: ahead });
    checkEntries(entries, third + 2, 40);
    await again.close();
  });
});

Deno.test("wal: the walk over covered records longer than its window (small reads between them) lands on the first needed record", async () => {
  await withDir(async (dir) => {
    const big = (n: number) => new Uint8Array(70_000 + n * 1_000).fill(n);
    const wal = await Wal.open(dir, { logger: () => {} });
    for (let i = 1; i <= 12; i++) assert.equal(await wal.append(3, big(i)), i);
    // Small ones after big ones: the windows grow again.
    for (let i = 13; i <= 20; i++) assert.equal(await wal.append(4, payloadFor(i)), i);
    await wal.close();
    for (const afterSeq of [5, 12, 15]) {
      const { wal: again, entries } = await replay(dir, { afterSeq });
      assert.deepEqual(
        entries.map((e) => e.seq),
        Array.from({ length: 20 - afterSeq }, (_, k) => afterSeq + 1 + k),
      );
      for (const e of entries) {
        assert.deepEqual(e.payload, e.seq <= 12 ? big(e.seq) : payloadFor(e.seq));
      }
      await again.close();
    }
  });
});
