import assert from "node:assert/strict";
import {
  isVersion,
  supersedes,
  VERSION_LOGICAL_BITS,
  VERSION_MAX,
  VersionClock,
  VersionOverflowError,
} from "./version.ts";
import { Rng } from "../testing/random.ts";

Deno.test("version clock: stamps are wall time x 1024, strictly increasing", () => {
  let now = 1_000;
  const clock = new VersionClock(() => now);
  assert.equal(clock.last, 0);
  assert.equal(clock.next(), 1_000 * 2 ** VERSION_LOGICAL_BITS);
  assert.equal(clock.next(), 1_024_001, "same millisecond: the logical part counts");
  now = 1_001;
  assert.equal(clock.next(), 1_025_024);
  assert.equal(clock.last, 1_025_024);
});

Deno.test("version clock: monotonic under a wall clock that goes backwards", () => {
  const rng = new Rng(7);
  let now = 1_700_000_000_000;
  const clock = new VersionClock(() => now);
  let prev = 0;
  for (let i = 0; i < 10_000; i++) {
    // Mostly forwards, often backwards by up to a second, sometimes stuck.
    now += Math.floor(rng.next() * 3000) - 1000;
    const v = clock.next();
    assert.ok(v > prev, `stamp ${v} after ${prev} at step ${i}`);
    assert.ok(isVersion(v));
    prev = v;
  }
});

Deno.test("version clock: observe raises later stamps above what was seen", () => {
  const clock = new VersionClock(() => 5);
  clock.observe(1_000_000);
  assert.equal(clock.last, 1_000_000);
  assert.equal(clock.next(), 1_000_001);
  clock.observe(3); // lower: no effect
  assert.equal(clock.next(), 1_000_002);
  assert.throws(() => clock.observe(-1), /Version -1 is not an integer/);
  assert.throws(() => clock.observe(1.5), RangeError);
  assert.throws(() => clock.observe(VERSION_MAX + 1), RangeError);
  clock.observe(VERSION_MAX - 1);
  assert.equal(clock.next(), VERSION_MAX);
  assert.throws(() => clock.next(), VersionOverflowError);
  assert.equal(clock.last, VERSION_MAX, "a refused stamp changes nothing");
});

Deno.test("version clock: the default wall clock gives current-time stamps", () => {
  const clock = new VersionClock();
  const before = Date.now() * 1024;
  const v = clock.next();
  assert.ok(v >= before && v <= (Date.now() + 1) * 1024, `stamp ${v}`);
  assert.equal(VERSION_MAX, Number.MAX_SAFE_INTEGER);
});

Deno.test("supersedes: newer wins; at equal versions a delete beats a put, never the reverse", () => {
  assert.equal(supersedes(6, false, 5, true), true);
  assert.equal(supersedes(5, true, 6, false), false);
  assert.equal(supersedes(5, true, 5, false), true);
  assert.equal(supersedes(5, false, 5, true), false);
  assert.equal(supersedes(5, false, 5, false), false, "equal entries: no change");
  assert.equal(supersedes(5, true, 5, true), false);
});
