import assert from "node:assert/strict";
import { METHOD_NAMES, type MethodName } from "../api/proto.ts";
import {
  backoffCapMs,
  backoffMs,
  Code,
  DEFAULT_RETRY,
  IDEMPOTENT_METHODS,
  isRetryable,
  type RetryClock,
  type RetryEvent,
  retryPolicy,
  RetryPolicyError,
  withRetry,
} from "./retry.ts";
import { fakeClock } from "./fake_clock.ts";

const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const UNAUTHENTICATED = 16;

function grpcError(code: number, details = `status ${code}`): Error & { code: number } {
  return Object.assign(new Error(`${code}: ${details}`), { code, details });
}

Deno.test("retry: which status codes are retried for which RPC", () => {
  const idempotent: MethodName[] = [
    "Put",
    "PutBatch",
    "Get",
    "Delete",
    "Search",
    "SearchBatch",
    "Scroll",
    "Count",
    "ListCollections",
    "Stats",
    "Members",
    "ListBackups",
    "GetBatch",
    "DeleteBatch",
  ];
  assert.deepEqual([...IDEMPOTENT_METHODS].sort(), [...idempotent].sort());
  for (const m of METHOD_NAMES) {
    assert.equal(isRetryable(m, Code.UNAVAILABLE), true, `${m} UNAVAILABLE`);
    const again = idempotent.includes(m);
    assert.equal(isRetryable(m, Code.DEADLINE_EXCEEDED), again, `${m} DEADLINE_EXCEEDED`);
    assert.equal(isRetryable(m, Code.RESOURCE_EXHAUSTED), again, `${m} RESOURCE_EXHAUSTED`);
    for (const code of [0, 1, 2, INVALID_ARGUMENT, NOT_FOUND, 6, 7, 9, 12, 13, UNAUTHENTICATED]) {
      assert.equal(isRetryable(m, code), false, `${m} ${code}`);
    }
    assert.equal(isRetryable(m, undefined), false, `${m} non-gRPC error`);
  }
});

Deno.test("retry: exponential backoff with full jitter, capped", () => {
  const p = retryPolicy({ baseMs: 100, capMs: 1000 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffCapMs(n, p)), [
    100,
    200,
    400,
    800,
    1000,
    1000,
  ]);
  assert.equal(backoffCapMs(5000, p), 1000, "2^4999 overflows to Infinity; the cap holds");
  assert.equal(backoffMs(3, p, () => 0), 0);
  assert.equal(backoffMs(3, p, () => 0.5), 200);
  assert.equal(backoffMs(3, p, () => 0.999999), 399);
  assert.throws(() => backoffCapMs(0, p), /Retry 0 has no backoff/);
});

Deno.test("retry: a policy's bad values are named", () => {
  assert.deepEqual(retryPolicy(), { ...DEFAULT_RETRY });
  assert.deepEqual(retryPolicy({ attempts: 3, baseMs: undefined }), {
    ...DEFAULT_RETRY,
    attempts: 3,
  });
  const cases: [Record<string, number>, RegExp][] = [
    [{ attempts: 0 }, /retry\.attempts 0 must be an integer from 1 to 1000/],
    [{ attempts: 2.5 }, /retry\.attempts 2\.5 /],
    [{ baseMs: -1 }, /retry\.baseMs -1 must be a finite number/],
    [{ baseMs: 500, capMs: 100 }, /retry\.capMs 100 must be a finite number ≥ baseMs/],
    [{ totalMs: 0 }, /retry\.totalMs 0 must be a positive/],
    [{ totalMs: NaN }, /retry\.totalMs NaN/],
  ];
  for (const [policy, message] of cases) {
    assert.throws(() => retryPolicy(policy), (e: Error) => {
      assert.ok(e instanceof RetryPolicyError);
      assert.match(e.message, message);
      return true;
    });
  }
  assert.equal(retryPolicy({ totalMs: Infinity }).totalMs, Infinity);
});

Deno.test("retry: UNAVAILABLE is retried with jittered waits until the call succeeds", async () => {
  const clock = fakeClock([0.5, 0.25], 1000);
  const events: RetryEvent[] = [];
  const timeouts: number[] = [];
  let calls = 0;
  const result = await withRetry("Get", (timeoutMs) => {
    timeouts.push(timeoutMs);
    if (++calls <= 3) return Promise.reject(grpcError(Code.UNAVAILABLE, "connect ECONNREFUSED"));
    return Promise.resolve("ok");
  }, {
    policy: retryPolicy({ attempts: 5, baseMs: 100, capMs: 1000, totalMs: 10_000 }),
    timeoutMs: 2000,
    clock,
    onRetry: (e) => events.push(e),
  });
  assert.equal(result, "ok");
  assert.equal(calls, 4);
  // Retry n waits random × min(1000, 100 × 2^(n-1)): 0.5 × 100, 0.25 × 200, 0.5 × 400.
  assert.deepEqual(clock.sleeps, [50, 50, 200]);
  assert.deepEqual(events.map((e) => [e.attempt, e.code, e.waitMs]), [
    [1, Code.UNAVAILABLE, 50],
    [2, Code.UNAVAILABLE, 50],
    [3, Code.UNAVAILABLE, 200],
  ]);
  assert.deepEqual(timeouts, [2000, 2000, 2000, 2000]);
});

Deno.test("retry: failures not retried for the RPC fail at once, unchanged", async () => {
  const run = async (method: MethodName, code: number) => {
    const clock = fakeClock([0.5], 1000);
    let calls = 0;
    const error = grpcError(code);
    await assert.rejects(
      withRetry(method, () => {
        calls++;
        return Promise.reject(error);
      }, { policy: retryPolicy(), timeoutMs: 1000, clock }),
      (e) => {
        assert.equal(e, error, "the same error object");
        assert.equal((e as unknown as { attempts: number }).attempts, 1);
        return true;
      },
    );
    return { calls, sleeps: clock.sleeps };
  };
  assert.deepEqual(await run("Search", INVALID_ARGUMENT), { calls: 1, sleeps: [] });
  assert.deepEqual(await run("Get", UNAUTHENTICATED), { calls: 1, sleeps: [] });
  assert.deepEqual(await run("CreateCollection", Code.DEADLINE_EXCEEDED), { calls: 1, sleeps: [] });
  assert.deepEqual(await run("Drain", Code.RESOURCE_EXHAUSTED), { calls: 1, sleeps: [] });
  // The same codes on idempotent calls are retried.
  const clock = fakeClock([0.5], 1000);
  let calls = 0;
  await withRetry("PutBatch", () => {
    calls++;
    return calls === 1
      ? Promise.reject(grpcError(Code.DEADLINE_EXCEEDED))
      : calls === 2
      ? Promise.reject(grpcError(Code.RESOURCE_EXHAUSTED))
      : Promise.resolve(1);
  }, { policy: retryPolicy(), timeoutMs: 1000, clock });
  assert.equal(calls, 3);
});

Deno.test("retry: gives up after `attempts` with the last error", async () => {
  const clock = fakeClock([0.999], 1000);
  let calls = 0;
  await assert.rejects(
    withRetry("Stats", () => Promise.reject(grpcError(Code.UNAVAILABLE, `down ${++calls}`)), {
      policy: retryPolicy({ attempts: 4, baseMs: 10, capMs: 15, totalMs: 60_000 }),
      timeoutMs: 100,
      clock,
    }),
    (e: Error & { attempts: number }) => {
      assert.match(e.message, /down 4/);
      assert.equal(e.attempts, 4);
      return true;
    },
  );
  assert.deepEqual(clock.sleeps, [9, 14, 14]);
});

Deno.test("retry: totalMs bounds the waits and cuts each attempt's deadline", async () => {
  const clock = fakeClock([0.999], 1000);
  const timeouts: number[] = [];
  await assert.rejects(
    withRetry("Search", (timeoutMs) => {
      timeouts.push(timeoutMs);
      return Promise.reject(grpcError(Code.UNAVAILABLE));
    }, {
      policy: retryPolicy({ attempts: 100, baseMs: 1000, capMs: 1000, totalMs: 2500 }),
      timeoutMs: 2000,
      clock,
    }),
    (e: Error & { attempts: number }) => e.attempts === 3,
  );
  // Waits of 999 ms: at 999 and 1998 ms; a third would end at 2997 > 2500, so no third.
  assert.deepEqual(clock.sleeps, [999, 999]);
  assert.deepEqual(timeouts, [2000, 1501, 502]);
});

Deno.test("retry: an attempt's DEADLINE_EXCEEDED is retried while the total allows", async () => {
  // A fake transport whose first two attempts time out: each takes its whole deadline.
  let t = 0;
  const clock: RetryClock = {
    now: () => t,
    sleep: (ms) => {
      t += ms;
      return Promise.resolve();
    },
    random: () => 0,
  };
  let calls = 0;
  const r = await withRetry("Get", (timeoutMs) => {
    calls++;
    if (calls < 3) {
      t += timeoutMs;
      return Promise.reject(grpcError(Code.DEADLINE_EXCEEDED));
    }
    return Promise.resolve(timeoutMs);
  }, { policy: retryPolicy({ totalMs: 10_000 }), timeoutMs: 1000, clock });
  assert.equal(calls, 3);
  assert.equal(r, 1000);
  assert.equal(t, 2000);
});
