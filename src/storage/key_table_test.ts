import assert from "node:assert/strict";
import { BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";
import { KeyTable, KeyTableFormatError, PID_ALLOCATE_MAX } from "./key_table.ts";
import type { PointId } from "../common/point_id.ts";

/** A table plus the set of pids "in use" (what a collection's version table would say). */
function harness() {
  const t = new KeyTable();
  const used = new Set<number>();
  const put = (id: PointId) => {
    const pid = t.assign(id, (p) => used.has(p));
    used.add(pid);
    return pid;
  };
  const forget = (id: PointId) => {
    const pid = t.lookup(id);
    assert.ok(pid >= 0 && used.has(pid), `forget ${String(id)}`);
    used.delete(pid);
    t.release(pid);
  };
  return { t, used, put, forget };
}

Deno.test("uint32 ids map to themselves and store nothing", () => {
  const { t, put } = harness();
  assert.equal(put(0), 0);
  assert.equal(put(0xffffffff), 0xffffffff);
  assert.equal(put(17), 17);
  assert.equal(t.size, 0);
  assert.equal(t.memoryBytes, 0);
  assert.equal(t.lookup(99), 99); // identity whether held or not: the version table says
  assert.equal(t.lookup("a"), -1);
  assert.equal(t.lookup(2 ** 40), -1);
  assert.equal(t.keyOf(17), 17);
});

Deno.test("other ids get allocated pids counting down, skipping pids in use", () => {
  const { t, put } = harness();
  put(PID_ALLOCATE_MAX); // an identity id at the top pid
  const a = put("a");
  const b = put(2n ** 64n - 1n);
  const c = put(2 ** 40);
  assert.deepEqual([a, b, c], [PID_ALLOCATE_MAX - 1, PID_ALLOCATE_MAX - 2, PID_ALLOCATE_MAX - 3]);
  assert.equal(put("a"), a); // stable
  assert.equal(t.lookup(2n ** 64n - 1n), b);
  assert.equal(t.keyOf(b), 2n ** 64n - 1n);
  assert.equal(t.keyOf(c), 2 ** 40);
  assert.equal(t.keyOf(a), "a");
  assert.equal(t.size, 3);
  assert.ok(t.isExplicit(a) && !t.isExplicit(PID_ALLOCATE_MAX));
  // "5" and 5 are different ids.
  assert.notEqual(put("5"), 5);
  assert.equal(t.lookup(5), 5);
});

Deno.test("a uint32 id whose pid a foreign key owns is displaced", () => {
  const { t, put, forget } = harness();
  const s = put("s"); // takes PID_ALLOCATE_MAX
  assert.equal(s, PID_ALLOCATE_MAX);
  assert.equal(t.lookup(PID_ALLOCATE_MAX), -1); // the uint32 id is not held at its pid
  const d = put(PID_ALLOCATE_MAX);
  assert.notEqual(d, PID_ALLOCATE_MAX);
  assert.equal(t.keyOf(d), PID_ALLOCATE_MAX);
  assert.equal(t.lookup(PID_ALLOCATE_MAX), d);
  // After the string goes, the displaced id keeps its pid.
  forget("s");
  assert.equal(t.lookup(PID_ALLOCATE_MAX), d);
  assert.equal(t.lookup("s"), -1);
  forget(PID_ALLOCATE_MAX);
  assert.equal(t.size, 0);
  assert.equal(t.lookup(PID_ALLOCATE_MAX), PID_ALLOCATE_MAX); // identity again
});

Deno.test("released pids are reused and many string ids round trip", () => {
  const { t, used, put, forget } = harness();
  const n = 20_000;
  const pids = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    pids.set(`id-${i}-${"x".repeat(i % 50)}`, put(`id-${i}-${"x".repeat(i % 50)}`));
  }
  assert.equal(t.size, n);
  assert.equal(new Set(pids.values()).size, n);
  for (const [k, p] of pids) {
    assert.equal(t.lookup(k), p);
    assert.equal(t.keyOf(p), k);
  }
  // Forget every other one, then check the rest still resolve (hash deletion is sound).
  let i = 0;
  for (const k of pids.keys()) if (i++ % 2 === 0) forget(k);
  assert.equal(t.size, n / 2);
  i = 0;
  for (const [k, p] of pids) {
    assert.equal(t.lookup(k), i++ % 2 === 0 ? -1 : p, k);
  }
  // The last allocated pid, once released, is handed out again.
  const last = put("last");
  forget("last");
  assert.equal(put("again"), last);
  assert.equal(used.size, n / 2 + 1);
  const sorted = t.sorted();
  assert.equal(sorted.keys.length, t.size);
  for (let j = 1; j < sorted.keys.length; j++) assert.ok(sorted.keys[j - 1] < sorted.keys[j]);
  for (let j = 0; j < sorted.keys.length; j++) {
    assert.equal(t.lookup(sorted.keys[j]), sorted.pids[j]);
  }
});

Deno.test("the snapshot section round trips and bad sections are refused", () => {
  const { t, used, put } = harness();
  put(3);
  put("ü-ñ");
  put(2n ** 63n);
  put(PID_ALLOCATE_MAX - 2); // identity: no entry... unless allocated over: checked below
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  t.writeTo(w);
  w.flush();
  const bytes = sink.bytes();
  const back = new KeyTable();
  back.readFrom(new BinaryReader(bytes), (p) => used.has(p));
  assert.equal(back.size, t.size);
  assert.equal(back.nextPid, t.nextPid);
  for (const id of [3, "ü-ñ", 2n ** 63n, PID_ALLOCATE_MAX - 2] as PointId[]) {
    assert.equal(back.lookup(id), t.lookup(id));
  }
  // A pid the version table does not hold is refused.
  assert.throws(
    () => new KeyTable().readFrom(new BinaryReader(bytes), () => false),
    KeyTableFormatError,
  );
  // A count larger than the bytes is refused before reading.
  const big = bytes.slice();
  new DataView(big.buffer).setUint32(0, 1e9, true);
  assert.throws(() => new KeyTable().readFrom(new BinaryReader(big), () => true), /entries need/);
  // An empty table writes 8 bytes.
  const e = new BufferSink();
  const ew = new BinaryWriter(e);
  new KeyTable().writeTo(ew);
  ew.flush();
  assert.deepEqual(e.bytes(), new Uint8Array(8));
});
