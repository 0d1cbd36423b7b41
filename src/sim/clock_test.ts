import assert from "node:assert/strict";
import { SimClock, SimClockError } from "./clock.ts";

Deno.test("events run in time order, ties in scheduling order", () => {
  const c = new SimClock();
  const log: string[] = [];
  c.at(20, () => log.push(`b@${c.now_ms}`));
  c.at(10, () => log.push(`a@${c.now_ms}`));
  c.at(20, () => log.push(`c@${c.now_ms}`));
  c.after(5, () => {
    log.push(`d@${c.now_ms}`);
    c.after(0, () => log.push(`e@${c.now_ms}`));
  });
  assert.equal(c.pending, 4);
  assert.equal(c.runUntil(15), 3);
  assert.equal(c.now_ms, 15);
  assert.deepEqual(log, ["d@5", "e@5", "a@10"]);
  c.runUntil(100);
  assert.deepEqual(log.slice(3), ["b@20", "c@20"]);
  assert.equal(c.pending, 0);
  assert.equal(c.step(), false);
});

Deno.test("cancel removes a pending event once", () => {
  const c = new SimClock();
  let ran = false;
  const id = c.after(10, () => (ran = true));
  assert.equal(c.cancel(id), true);
  assert.equal(c.cancel(id), false);
  assert.equal(c.pending, 0);
  c.runUntil(20);
  assert.equal(ran, false);
  assert.equal(c.peek(), undefined);
});

Deno.test("many random events come out sorted", () => {
  const c = new SimClock();
  const times: number[] = [];
  let x = 12345;
  for (let i = 0; i < 2000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    c.at(x % 1000, () => times.push(c.now_ms));
  }
  c.runUntil(1000);
  assert.equal(times.length, 2000);
  for (let i = 1; i < times.length; i++) assert.ok(times[i - 1]! <= times[i]!);
});

Deno.test("scheduling in the past, non-finite times and a full queue are errors", () => {
  const c = new SimClock({ start_ms: 100, events_max: 2 });
  assert.throws(
    () => c.at(99, () => {}),
    (e) => e instanceof SimClockError && /99 ms/.test(e.message),
  );
  assert.throws(() => c.at(Infinity, () => {}), SimClockError);
  assert.throws(() => c.after(-1, () => {}), SimClockError);
  assert.throws(() => c.runUntil(50), SimClockError);
  c.after(1, () => {});
  c.after(1, () => {});
  assert.throws(() => c.after(1, () => {}), /full at 2 events/);
});
