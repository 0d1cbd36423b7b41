import assert from "node:assert/strict";
import { Prng, PrngRangeError, PrngSeedError } from "./prng.ts";

Deno.test("a seed gives a fixed sequence (pinned; also checked identical under Node 20)", () => {
  const p = new Prng(1);
  assert.deepEqual([p.next(), p.next(), p.next(), p.next()], [
    2442144158,
    3238099751,
    3819917871,
    2104621829,
  ]);
  const z = new Prng(0);
  assert.deepEqual([z.next(), z.next()], [3809008728, 1133695204]);
  assert.deepEqual(new Prng(42).fork().state(), [11059705, 1709653963, 764567630, 1276772383]);
});

Deno.test("equal seeds agree, different seeds differ", () => {
  const a = new Prng(99);
  const b = new Prng(99);
  const c = new Prng(100);
  const sa = Array.from({ length: 100 }, () => a.next());
  assert.deepEqual(Array.from({ length: 100 }, () => b.next()), sa);
  assert.notDeepEqual(Array.from({ length: 100 }, () => c.next()), sa);
});

Deno.test("nextInt, intBetween and float stay in range and cover it", () => {
  const p = new Prng(5);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 20_000; i++) counts[p.nextInt(10)]++;
  for (const c of counts) assert.ok(c > 1700 && c < 2300, `bucket count ${c}`);
  for (let i = 0; i < 1000; i++) {
    const v = p.intBetween(-3, 3);
    assert.ok(Number.isInteger(v) && v >= -3 && v <= 3);
    const f = p.float();
    assert.ok(f >= 0 && f < 1);
  }
  assert.equal(p.nextInt(1), 0);
  assert.ok(p.nextInt(2 ** 32) < 2 ** 32);
  assert.throws(() => p.nextInt(0), PrngRangeError);
  assert.throws(() => p.nextInt(1.5), PrngRangeError);
  assert.throws(() => p.intBetween(2, 1), PrngRangeError);
  assert.throws(() => p.pick([]), PrngRangeError);
});

Deno.test("chance honours its edges without consuming randomness", () => {
  const p = new Prng(3);
  const before = p.state();
  assert.equal(p.chance(0), false);
  assert.equal(p.chance(1), true);
  assert.deepEqual(p.state(), before);
  let hits = 0;
  for (let i = 0; i < 10_000; i++) if (p.chance(0.25)) hits++;
  assert.ok(hits > 2200 && hits < 2800, `hits ${hits}`);
});

Deno.test("shuffle permutes in place; pick returns members", () => {
  const p = new Prng(11);
  const arr = Array.from({ length: 50 }, (_, i) => i);
  const out = p.shuffle(arr);
  assert.equal(out, arr);
  assert.deepEqual([...arr].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  assert.notDeepEqual(arr, Array.from({ length: 50 }, (_, i) => i));
  for (let i = 0; i < 20; i++) assert.ok(arr.includes(p.pick(arr)));
});

Deno.test("fork is deterministic and independent of later parent draws", () => {
  const a = new Prng(8);
  const b = new Prng(8);
  const fa = a.fork();
  const fb = b.fork();
  a.next();
  assert.deepEqual(fa.state(), fb.state());
  assert.equal(fa.next(), fb.next());
  assert.notDeepEqual(fa.state(), a.state());
});

Deno.test("state round-trips; invalid seeds and states are rejected", () => {
  const p = new Prng(17);
  p.next();
  const q = Prng.fromState(p.state());
  assert.equal(q.next(), p.next());
  assert.throws(() => new Prng(-1), PrngSeedError);
  assert.throws(() => new Prng(2 ** 32), PrngSeedError);
  assert.throws(() => new Prng(1.5), PrngSeedError);
  assert.throws(() => Prng.fromState([0, 0, 0, 0]), PrngSeedError);
});
