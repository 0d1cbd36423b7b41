import assert from "node:assert/strict";
import { Prng } from "../common/prng.ts";
import { VersionTable } from "./version_table.ts";

Deno.test("VersionTable behaves like a Map<number, number> under random puts and deletes", () => {
  const rng = new Prng(42);
  const t = new VersionTable();
  const m = new Map<number, number>();
  for (let step = 0; step < 50_000; step++) {
    // Ids from a small range (collisions, reuse of removed buckets) and the uint32 edges.
    const id = rng.float() < 0.01 ? 0xffff_ffff : Math.floor(rng.float() * 3000);
    const r = rng.float();
    if (r < 0.6) {
      const v = rng.float() < 0.2
        ? -Math.floor(rng.float() * 2 ** 53)
        : Math.floor(rng.float() * 1e9);
      t.set(id, v);
      m.set(id, v);
    } else {
      assert.equal(t.delete(id), m.delete(id), `delete ${id} at step ${step}`);
    }
    if (step % 5000 === 0) {
      assert.equal(t.size, m.size);
      for (const [k, v] of m) assert.equal(t.get(k), v);
    }
  }
  assert.equal(t.size, m.size);
  assert.deepEqual([...t.pids()].sort((a, b) => a - b), [...m.keys()].sort((a, b) => a - b));
  assert.deepEqual(
    [...t].sort((a, b) => a[0] - b[0]),
    [...m].sort((a, b) => a[0] - b[0]),
  );
  let n = 0;
  t.forEach((v, id) => {
    assert.equal(m.get(id), v);
    n++;
  });
  assert.equal(n, m.size);
  assert.equal(t.get(123_456), undefined);
  assert.ok(!t.has(123_456));
  assert.equal(t.set(5, 0).get(5), 0); // a legacy version 0 is a value, not "absent"
  assert.ok(t.bytes >= t.size * 13);
});

Deno.test("version table: insertAbsent after reserve holds what set would, through removed buckets too", () => {
  const a = new VersionTable();
  const b = new VersionTable();
  a.reserve(3000);
  for (let id = 0; id < 3000; id++) {
    const v = id % 7 === 0 ? -(id + 1) : id * 1024;
    a.insertAbsent(id * 2654435761 >>> 0, v);
    b.set(id * 2654435761 >>> 0, v);
  }
  assert.equal(a.size, b.size);
  for (const [k, v] of b) assert.equal(a.get(k), v);
  // Deleted buckets are reused by later absent ids, and the table grows past its reservation.
  for (let id = 0; id < 3000; id += 3) assert.ok(a.delete(id * 2654435761 >>> 0));
  for (let id = 5000; id < 9000; id++) a.insertAbsent(id, id);
  assert.equal(a.size, 3000 - 1000 + 4000);
  for (let id = 5000; id < 9000; id++) assert.equal(a.get(id), id);
  assert.equal(a.get(3 * 2654435761 >>> 0), undefined);
  assert.equal(a.get(2654435761 >>> 0), b.get(2654435761 >>> 0));
});
