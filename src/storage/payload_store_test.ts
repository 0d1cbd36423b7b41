import assert from "node:assert/strict";
import { BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";
import { COMPACT_MIN_BYTES, PayloadStore, PayloadTableError } from "./payload_store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (s: string) => enc.encode(s);
const str = (b: Uint8Array | null) => (b === null ? null : dec.decode(b));

Deno.test("PayloadStore: set, get, replace, delete", () => {
  const s = new PayloadStore();
  assert.equal(s.get(1), null);
  s.set(1, bytes('{"a":1}'));
  s.set(4_000_000_000, bytes('{"b":2}'));
  assert.equal(str(s.get(1)), '{"a":1}');
  assert.equal(str(s.get(4_000_000_000)), '{"b":2}');
  assert.equal(s.size, 2);
  assert.equal(s.liveBytes, 14);
  s.set(1, bytes('{"a":"longer"}'));
  assert.equal(str(s.get(1)), '{"a":"longer"}');
  assert.equal(s.size, 2);
  assert.equal(s.liveBytes, 14 + 7);
  assert.equal(s.garbageBytes, 7);
  // An empty or null payload removes it.
  s.set(4_000_000_000, null);
  assert.equal(s.get(4_000_000_000), null);
  assert.equal(s.size, 1);
  assert.equal(s.delete(1), true);
  assert.equal(s.delete(1), false);
  assert.equal(s.size, 0);
  assert.equal(s.liveBytes, 0);
  assert.throws(() => s.set(2, new Uint8Array(65_537)), /65537 bytes; the limit is 65536/);
});

Deno.test("PayloadStore: deletes keep entries dense (the last moves into the hole)", () => {
  const s = new PayloadStore();
  for (let i = 0; i < 100; i++) s.set(i, bytes(`{"i":${i}}`));
  for (let i = 0; i < 100; i += 3) s.delete(i);
  for (let i = 0; i < 100; i++) {
    assert.equal(str(s.get(i)), i % 3 === 0 ? null : `{"i":${i}}`);
  }
  assert.equal(s.size, 66);
  assert.deepEqual(
    Array.from(s.idsSorted()),
    Array.from({ length: 100 }, (_, i) => i).filter((i) => i % 3 !== 0),
  );
});

Deno.test("PayloadStore: rewriting the same ids compacts the garbage and keeps every payload", () => {
  const s = new PayloadStore();
  const payload = (id: number, round: number) =>
    `{"id":${id},"round":${round},"pad":"${"p".repeat(200)}"}`;
  const n = 200;
  let maxMemory = 0;
  for (let round = 0; round < 100; round++) {
    for (let id = 0; id < n; id++) s.set(id, bytes(payload(id, round)));
    maxMemory = Math.max(maxMemory, s.memoryBytes);
    // Garbage never grows past the compaction threshold by more than one arena's worth.
    assert.ok(
      s.garbageBytes <= Math.max(COMPACT_MIN_BYTES, s.liveBytes) + 300,
      `${s.garbageBytes}`,
    );
  }
  for (let id = 0; id < n; id++) assert.equal(str(s.get(id)), payload(id, 99));
  // 100 rounds x 200 x ~230 bytes = 4.6 MB written; memory stays near live + threshold.
  assert.ok(maxMemory < 4 * COMPACT_MIN_BYTES, `memory ${maxMemory}`);
  const before = s.memoryBytes;
  s.compact();
  assert.equal(s.garbageBytes, 0);
  assert.ok(s.memoryBytes <= before);
  for (let id = 0; id < n; id++) assert.equal(str(s.get(id)), payload(id, 99));
});

Deno.test("PayloadStore: a view of its own arena can be set onto another id", () => {
  const s = new PayloadStore();
  s.set(1, bytes('{"x":"shared"}'));
  s.set(2, s.get(1));
  assert.equal(str(s.get(2)), '{"x":"shared"}');
  s.set(1, s.get(1));
  assert.equal(str(s.get(1)), '{"x":"shared"}');
});

Deno.test("PayloadStore: memoryBytes counts the arena", () => {
  const s = new PayloadStore();
  const empty = s.memoryBytes;
  for (let i = 0; i < 1000; i++) s.set(i, new Uint8Array(1000).fill(65));
  assert.ok(s.memoryBytes >= empty + 1_000_000, `${s.memoryBytes}`);
  for (let i = 0; i < 1000; i++) s.delete(i);
  assert.equal(s.memoryBytes, empty);
});

function roundTrip(s: PayloadStore, known: (id: number) => boolean): PayloadStore {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  s.writeTo(w);
  w.flush();
  const r = new BinaryReader(sink.bytes());
  const out = new PayloadStore();
  out.readFrom(r, known);
  r.expectEnd();
  return out;
}

Deno.test("PayloadStore: snapshot table round trip, and refusals", () => {
  const s = new PayloadStore();
  for (const id of [9, 3, 70000, 5]) s.set(id, bytes(`{"id":${id}}`));
  const t = roundTrip(s, () => true);
  assert.equal(t.size, 4);
  for (const id of [9, 3, 70000, 5]) assert.equal(str(t.get(id)), `{"id":${id}}`);
  assert.equal(roundTrip(new PayloadStore(), () => true).size, 0);
  assert.throws(() => roundTrip(s, (id) => id !== 70000), (e: Error) => {
    assert.ok(e instanceof PayloadTableError);
    assert.match(e.message, /point 70000, which is not a live point/);
    return true;
  });
});
