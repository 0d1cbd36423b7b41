/**
 * Test support: a snapshot file rewritten as an older container version would have written it,
 * by cutting the sections that version did not have off the end of the payload (they must be
 * empty, so the state is the same) and, below version 6, the bulk section off its start, and
 * fixing the header's version and length and the trailer's
 * CRC, so tests can check that old snapshots still load.
 *
 * @example
 * ```ts
 * // A version-3 file (no field index definitions): its empty 4-byte count cut off.
 * rewriteSnapshotAsVersion(path, 3, 4);
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { crc32 } from "../io/crc32.ts";
import {
  SNAPSHOT_END_MAGIC,
  SNAPSHOT_HEADER_BYTES,
  SNAPSHOT_TRAILER_BYTES,
} from "../storage/snapshot.ts";

/**
 * Rewrites the snapshot at `path` as container `version`: drops the last `cut_bytes` of its
 * payload, which must all be zero (empty tables), and rewrites header and trailer.
 */
export function rewriteSnapshotAsVersion(path: string, version: number, cut_bytes: number): void {
  let old = new Uint8Array(readFileSync(path));
  const oldVersion = new DataView(old.buffer).getUint32(4, true);
  if (oldVersion >= 6 && version < 6) {
    // Version 6 is a bulk section (u32 length, bytes) followed by a version-5 payload.
    const bulk = 4 + new DataView(old.buffer).getUint32(SNAPSHOT_HEADER_BYTES, true);
    const five = new Uint8Array(old.length - bulk);
    five.set(old.subarray(0, SNAPSHOT_HEADER_BYTES));
    five.set(old.subarray(SNAPSHOT_HEADER_BYTES + bulk), SNAPSHOT_HEADER_BYTES);
    old = five;
  }
  const payloadEnd = old.length - SNAPSHOT_TRAILER_BYTES;
  assert.deepEqual(
    Array.from(old.subarray(payloadEnd - cut_bytes, payloadEnd)),
    new Array(cut_bytes).fill(0),
    `the ${cut_bytes} bytes cut off are empty tables`,
  );
  const out = new Uint8Array(old.length - cut_bytes);
  out.set(old.subarray(0, payloadEnd - cut_bytes));
  const view = new DataView(out.buffer);
  view.setUint32(4, version, true);
  view.setBigUint64(24, BigInt(payloadEnd - cut_bytes - SNAPSHOT_HEADER_BYTES), true);
  const end = out.length - SNAPSHOT_TRAILER_BYTES;
  view.setUint32(
    end,
    crc32(out.subarray(0, SNAPSHOT_HEADER_BYTES), crc32(out.subarray(SNAPSHOT_HEADER_BYTES, end))),
    true,
  );
  view.setUint32(end + 4, SNAPSHOT_END_MAGIC, true);
  writeFileSync(path, out);
}
