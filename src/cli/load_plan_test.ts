import assert from "node:assert/strict";
import { Prng } from "../common/prng.ts";
import {
  backoffCapMs,
  backoffMs,
  classifyFailure,
  decideRetry,
  defaultAdaptLimits,
  LoadAdapter,
  LoadPlanError,
  loadRate,
  type RetryPolicy,
  Status,
} from "./load_plan.ts";

const INVALID_ARGUMENT = 3;
const INTERNAL = 13;
const policy: RetryPolicy = { base_ms: 100, cap_ms: 1000, attempts_max: 5 };

Deno.test("load plan: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED retry; others fail", () => {
  assert.equal(classifyFailure(Status.UNAVAILABLE), "retry");
  assert.equal(classifyFailure(Status.DEADLINE_EXCEEDED), "retry");
  assert.equal(classifyFailure(Status.RESOURCE_EXHAUSTED), "retry");
  assert.equal(classifyFailure(INVALID_ARGUMENT), "fail");
  assert.equal(classifyFailure(INTERNAL), "fail");
  assert.equal(classifyFailure(undefined), "fail");
});

Deno.test("load plan: backoff grows exponentially and is capped", () => {
  assert.deepEqual(
    [2, 3, 4, 5, 6, 7, 50, 5000].map((a) => backoffCapMs(a, policy)),
    [100, 200, 400, 800, 1000, 1000, 1000, 1000],
  );
  assert.throws(() => backoffCapMs(1, policy), LoadPlanError);
  // random() just below 1 gives the cap (rounded down), 0 gives 0.
  assert.equal(backoffMs(4, policy, () => 0.999999), 399);
  assert.equal(backoffMs(4, policy, () => 0), 0);
});

Deno.test("load plan: jitter stays within [0, cap] and spreads (seeded)", () => {
  const prng = new Prng(42);
  for (const attempt of [2, 3, 4, 5, 9]) {
    const cap = backoffCapMs(attempt, policy);
    const waits = Array.from({ length: 500 }, () => backoffMs(attempt, policy, () => prng.float()));
    assert.ok(waits.every((w) => w >= 0 && w <= cap), `attempt ${attempt}`);
    // Full jitter: both halves of the range are used.
    assert.ok(waits.some((w) => w < cap / 2) && waits.some((w) => w > cap / 2), `${attempt}`);
  }
  // The same seed gives the same waits.
  const a = new Prng(7), b = new Prng(7);
  assert.deepEqual(
    [3, 4, 5].map((n) => backoffMs(n, policy, () => a.float())),
    [3, 4, 5].map((n) => backoffMs(n, policy, () => b.float())),
  );
});

Deno.test("load plan: attempts are bounded; non-retryable codes fail at once", () => {
  const half = () => 0.5;
  assert.deepEqual(decideRetry(Status.UNAVAILABLE, 1, policy, half), {
    action: "retry",
    wait_ms: 50,
  });
  assert.deepEqual(decideRetry(Status.UNAVAILABLE, 4, policy, half), {
    action: "retry",
    wait_ms: 400,
  });
  assert.deepEqual(decideRetry(Status.UNAVAILABLE, 5, policy, half), {
    action: "fail",
    reason: "attempts exhausted",
  });
  assert.deepEqual(decideRetry(INVALID_ARGUMENT, 1, policy, half), {
    action: "fail",
    reason: "not retryable",
  });
  // Attempts 1..5 on a server that is always down: 4 retries, then failed for good.
  let attempt = 1;
  let retries = 0;
  for (;;) {
    const d = decideRetry(Status.DEADLINE_EXCEEDED, attempt, policy, half);
    if (d.action === "fail") break;
    retries++;
    attempt++;
  }
  assert.equal(retries, 4);
});

Deno.test("load plan: overload halves batch and concurrency once per interval, then recovers", () => {
  const limits = defaultAdaptLimits(1000, 8);
  const a = new LoadAdapter(limits);
  let now = 10_000; // a fake clock
  assert.deepEqual([a.batch, a.concurrency], [1000, 8]);
  a.onFailure(Status.RESOURCE_EXHAUSTED, now);
  assert.deepEqual([a.batch, a.concurrency], [500, 4]);
  // The same overload seen by the other calls in flight counts once.
  a.onFailure(Status.DEADLINE_EXCEEDED, now + 10);
  a.onFailure(Status.RESOURCE_EXHAUSTED, now + 999);
  assert.deepEqual([a.batch, a.concurrency], [500, 4]);
  // UNAVAILABLE adapts too (the router's "Only 1 of 2 owners acknowledged" after a node
  // deadline); a non-retryable failure does not.
  now += 5000;
  a.onFailure(Status.UNAVAILABLE, now);
  assert.deepEqual([a.batch, a.concurrency], [250, 2]);
  now += 5000;
  a.onFailure(INVALID_ARGUMENT, now);
  assert.deepEqual([a.batch, a.concurrency], [250, 2]);
  // Repeated overload drives both to their minima, not below.
  for (let i = 0; i < 20; i++) {
    now += limits.decrease_interval_ms;
    a.onFailure(Status.DEADLINE_EXCEEDED, now);
  }
  assert.deepEqual([a.batch, a.concurrency], [limits.batch_min, 1]);
  assert.equal(a.decreases, 22);
  // Growth is slow: one step per grow_after successes.
  for (let i = 0; i < limits.grow_after - 1; i++) a.onSuccess();
  assert.deepEqual([a.batch, a.concurrency], [16, 1]);
  a.onSuccess();
  assert.deepEqual([a.batch, a.concurrency], [116, 2]);
  // A failure resets the streak.
  for (let i = 0; i < limits.grow_after - 1; i++) a.onSuccess();
  a.onFailure(Status.UNAVAILABLE, now);
  a.onSuccess();
  assert.deepEqual([a.batch, a.concurrency], [116, 2]);
  // Recovers to the maxima and stays there.
  for (let i = 0; i < 100 * limits.grow_after; i++) a.onSuccess();
  assert.deepEqual([a.batch, a.concurrency], [1000, 8]);
  assert.throws(() => new LoadAdapter({ ...limits, batch_min: 2000 }), LoadPlanError);
});

Deno.test("load plan: rate and ETA by points done", () => {
  assert.deepEqual(loadRate(500, 500, 1000, 1000), { points_per_s: 500, eta_ms: 1000 });
  assert.deepEqual(loadRate(400, 500, 1000, 1000), { points_per_s: 400, eta_ms: 1000 });
  assert.deepEqual(loadRate(500, 500, undefined, 1000), { points_per_s: 500, eta_ms: undefined });
  assert.deepEqual(loadRate(0, 0, 1000, 0), { points_per_s: 0, eta_ms: undefined });
});
