import assert from "node:assert/strict";
import { MaxHeap, MinHeap } from "./heap.ts";
import { Rng } from "../testing/random.ts";

Deno.test("heap: min and max heaps pop in order and grow past their capacity", () => {
  const rng = new Rng(1);
  const min = new MinHeap(2);
  const max = new MaxHeap(2);
  const keys: number[] = [];
  for (let i = 0; i < 500; i++) {
    const k = Math.fround(rng.next());
    keys.push(k);
    min.push(k, i);
    max.push(k, i);
  }
  const asc = [...keys].sort((a, b) => a - b);
  for (let i = 0; i < 500; i++) {
    assert.equal(min.topKey(), asc[i]);
    assert.equal(keys[min.pop()], asc[i]);
    assert.equal(max.topKey(), asc[499 - i]);
    assert.equal(keys[max.pop()], asc[499 - i]);
  }
  assert.equal(min.size, 0);
  assert.equal(max.size, 0);
});
