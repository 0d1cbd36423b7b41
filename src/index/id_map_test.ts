import assert from "node:assert/strict";
import { IdMap } from "./id_map.ts";
import { Rng } from "../testing/random.ts";

Deno.test("id map: agrees with a Map under random sets and deletes over the whole u32 range", () => {
  const rng = new Rng(5);
  const m = new IdMap(4);
  const ref = new Map<number, number>();
  for (let i = 0; i < 50_000; i++) {
    const id = rng.next() < 0.5 ? rng.int(2000) : Math.floor(rng.next() * 4294967296);
    if (rng.next() < 0.3) {
      assert.equal(m.delete(id), ref.has(id) ? ref.get(id) : -1);
      ref.delete(id);
    } else {
      m.set(id, i);
      ref.set(id, i);
    }
  }
  assert.equal(m.size, ref.size);
  for (const [id, slot] of ref) assert.equal(m.get(id), slot);
  assert.equal(m.get(4294967295), ref.get(4294967295) ?? -1);
  assert.throws(() => m.set(1, -3), /Slot -3/);
});
