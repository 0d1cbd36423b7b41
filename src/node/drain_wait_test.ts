import assert from "node:assert/strict";
import { waitForDrain } from "./drain_wait.ts";

/** A fake clock that advances by each sleep. */
function clock() {
  let t = 1000;
  return { now_ms: () => t, sleep: (ms: number) => Promise.resolve(void (t += ms)) };
}

Deno.test("hand-off: done once the router forgot every entry", async () => {
  const c = clock();
  let held = 5;
  const r = await waitForDrain({
    ...c,
    entries: () => held,
    last_transfer_ms: () => {
      held = Math.max(0, held - 1); // a call per poll, each forgetting one entry
      return c.now_ms();
    },
    timeout_ms: 60_000,
    idle_ms: 15_000,
  });
  assert.equal(r.outcome, "done");
  assert.equal(r.entries, 0);
  assert.ok(r.waited_ms > 0);
});

Deno.test("hand-off: idle when no router reads the node, timeout when it never finishes", async () => {
  const c1 = clock();
  const idle = await waitForDrain({
    ...c1,
    entries: () => 7,
    last_transfer_ms: () => 0,
    timeout_ms: 60_000,
    idle_ms: 2_000,
  });
  assert.deepEqual([idle.outcome, idle.entries], ["idle", 7]);
  assert.ok(idle.waited_ms >= 2_000 && idle.waited_ms < 3_000, `${idle.waited_ms}`);
  const c2 = clock();
  const slow = await waitForDrain({
    ...c2,
    entries: () => 7,
    last_transfer_ms: () => c2.now_ms(), // busy, but never done
    timeout_ms: 5_000,
    idle_ms: 2_000,
  });
  assert.equal(slow.outcome, "timeout");
  assert.ok(slow.waited_ms >= 5_000);
});

Deno.test("hand-off: an empty node is done at once; bad limits are refused", async () => {
  const c = clock();
  const r = await waitForDrain({
    ...c,
    entries: () => 0,
    last_transfer_ms: () => 0,
    timeout_ms: 1,
    idle_ms: 1,
  });
  assert.deepEqual(r, { outcome: "done", entries: 0, waited_ms: 0 });
  await assert.rejects(
    () =>
      waitForDrain({
        ...c,
        entries: () => 1,
        last_transfer_ms: () => 0,
        timeout_ms: 0,
        idle_ms: 1,
      }),
    /Hand-off timeout 0 ms/,
  );
});

Deno.test("hand-off: stop_now ends the wait (a signal during a drain)", async () => {
  const c = clock();
  let polls = 0;
  const r = await waitForDrain({
    ...c,
    entries: () => 9,
    last_transfer_ms: () => c.now_ms(),
    timeout_ms: 60_000,
    idle_ms: 15_000,
    stop_now: () => ++polls >= 3,
  });
  assert.deepEqual([r.outcome, r.entries], ["aborted", 9]);
  assert.ok(r.waited_ms > 0 && r.waited_ms < 60_000, `${r.waited_ms}`);
});
