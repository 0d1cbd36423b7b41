import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type StatusLike, UnaryGuard, type UnaryGuardOptions } from "./unary.ts";
import { RefusedRequest } from "../common/wire_limits.ts";

type Reply = { error: StatusLike | null; response?: unknown };

/** A fake server call: only `request` and `getDeadline` (a Date, or Infinity for none). */
function fakeCall(
  request: unknown,
  deadline: Date | number = Infinity,
): grpc.ServerUnaryCall<unknown, unknown> {
  return { request, getDeadline: () => deadline } as unknown as grpc.ServerUnaryCall<
    unknown,
    unknown
  >;
}

/** Runs `handler` on a fake call; resolves with every callback it got once `settled` resolves. */
function invoke(
  handler: grpc.handleUnaryCall<unknown, unknown>,
  call: grpc.ServerUnaryCall<unknown, unknown>,
): { replies: Reply[]; first: Promise<Reply> } {
  const replies: Reply[] = [];
  let resolveFirst!: (r: Reply) => void;
  const first = new Promise<Reply>((resolve) => (resolveFirst = resolve));
  handler(call, (error, response) => {
    const r = { error: error as StatusLike | null, response };
    replies.push(r);
    resolveFirst(r);
  });
  return { replies, first };
}

/** A promise with its resolve and reject. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

class TeapotError extends Error {}

function guardOf(overrides: Partial<UnaryGuardOptions> = {}, logs: string[] = []): UnaryGuard {
  return new UnaryGuard({
    server_name: "storage node",
    in_flight_max: 2,
    closing: () => false,
    to_status: (e) =>
      e instanceof TeapotError
        ? { code: grpc.status.FAILED_PRECONDITION, details: `teapot: ${e.message}` }
        : { code: grpc.status.INTERNAL, details: e instanceof Error ? e.message : String(e) },
    log: (m) => logs.push(m),
    ...overrides,
  });
}

/** Lets pending promise callbacks run. */
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("unary guard answers with the handler's response and counts the call in flight", async () => {
  const guard = guardOf();
  const d = deferred<string>();
  let seen: unknown;
  const h = guard.wrap<unknown, unknown>("Get", (request) => {
    seen = request;
    return d.promise;
  });
  const { replies, first } = invoke(h, fakeCall({ id: 7 }));
  assert.deepEqual(seen, { id: 7 });
  assert.equal(guard.in_flight, 1);
  assert.equal(replies.length, 0);
  d.resolve("ok");
  assert.deepEqual(await first, { error: null, response: "ok" });
  assert.equal(guard.in_flight, 0);
  assert.equal(replies.length, 1);
});

Deno.test("unary guard refuses calls beyond in_flight_max with RESOURCE_EXHAUSTED", async () => {
  const guard = guardOf({ in_flight_max: 2 });
  const pending = [deferred<string>(), deferred<string>()];
  let runs = 0;
  const slow = guard.wrap<unknown, unknown>("Put", () => pending[runs++].promise);
  const other = guard.wrap<unknown, unknown>("Search", () => Promise.resolve("never"));
  const a = invoke(slow, fakeCall(1));
  const b = invoke(slow, fakeCall(2));
  assert.equal(guard.in_flight, 2);

  // The cap covers every method the guard wraps.
  for (const [h, method] of [[slow, "Put"], [other, "Search"]] as const) {
    const c = invoke(h, fakeCall(3));
    const r = await c.first;
    assert.equal(r.error?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      r.error?.details,
      `The storage node has 2 requests in flight, its limit of 2; ${method} refused`,
    );
  }
  assert.equal(runs, 2, "a refused call must not run its handler");
  assert.equal(guard.in_flight, 2);

  pending[0].resolve("a");
  pending[1].reject(new TeapotError("b"));
  assert.deepEqual(await a.first, { error: null, response: "a" });
  assert.equal((await b.first).error?.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(guard.in_flight, 0);

  // Room again once the calls settled.
  const d = invoke(other, fakeCall(4));
  assert.deepEqual(await d.first, { error: null, response: "never" });
  assert.equal(guard.in_flight, 0);
});

Deno.test("unary guard answers UNAVAILABLE while closing, without running the handler", async () => {
  let closing = false;
  const guard = guardOf({ closing: () => closing });
  let runs = 0;
  const h = guard.wrap<unknown, unknown>("Put", () => {
    runs++;
    return Promise.resolve("ok");
  });
  assert.equal((await invoke(h, fakeCall(1)).first).error, null);
  closing = true;
  const r = await invoke(h, fakeCall(2)).first;
  assert.deepEqual(r.error, {
    code: grpc.status.UNAVAILABLE,
    details: "The storage node is shutting down",
  });
  assert.equal(runs, 1);
  assert.equal(guard.in_flight, 0);
});

Deno.test("unary guard answers DEADLINE_EXCEEDED for a call whose deadline passed", async () => {
  const guard = guardOf();
  let runs = 0;
  const h = guard.wrap<unknown, unknown>("Search", () => {
    runs++;
    return Promise.resolve("ok");
  });
  const past = new Date(Date.now() - 1000);
  const r = await invoke(h, fakeCall(1, past)).first;
  assert.equal(r.error?.code, grpc.status.DEADLINE_EXCEEDED);
  assert.equal(
    r.error?.details,
    `Search arrived after its deadline ${past.toISOString()}; the storage node did not run it`,
  );
  // A deadline given as epoch milliseconds counts the same.
  const r2 = await invoke(h, fakeCall(1, past.getTime())).first;
  assert.equal(r2.error?.code, grpc.status.DEADLINE_EXCEEDED);
  assert.equal(runs, 0);
  assert.equal(guard.in_flight, 0);

  // A future deadline and no deadline (Infinity) run the handler.
  assert.equal((await invoke(h, fakeCall(1, new Date(Date.now() + 60_000))).first).error, null);
  assert.equal((await invoke(h, fakeCall(1, Infinity)).first).error, null);
  assert.equal(runs, 2);
});

Deno.test("unary guard maps rejections with to_status and logs INTERNAL with the stack", async () => {
  const logs: string[] = [];
  const guard = guardOf({}, logs);
  const teapot = guard.wrap<unknown, unknown>("Put", () => Promise.reject(new TeapotError("t")));
  const r = await invoke(teapot, fakeCall(1)).first;
  assert.deepEqual(r.error, { code: grpc.status.FAILED_PRECONDITION, details: "teapot: t" });
  assert.deepEqual(logs, [], "only INTERNAL answers are logged");

  const boom = guard.wrap<unknown, unknown>("Stats", () => Promise.reject(new Error("boom")));
  const r2 = await invoke(boom, fakeCall(1)).first;
  assert.deepEqual(r2.error, { code: grpc.status.INTERNAL, details: "boom" });
  assert.equal(logs.length, 1);
  assert.match(logs[0], /^Stats failed: Error: boom\n\s+at /);
  assert.equal(guard.in_flight, 0);
});

Deno.test("unary guard maps a synchronous throw and frees its in-flight slot", async () => {
  const logs: string[] = [];
  const guard = guardOf({ in_flight_max: 1 }, logs);
  const h = guard.wrap<unknown, unknown>("Get", () => {
    throw new TeapotError("sync");
  });
  for (let i = 0; i < 3; i++) {
    const { replies, first } = invoke(h, fakeCall(i));
    assert.deepEqual((await first).error, {
      code: grpc.status.FAILED_PRECONDITION,
      details: "teapot: sync",
    });
    await tick();
    assert.equal(replies.length, 1, "one callback per call");
    assert.equal(guard.in_flight, 0);
  }
  const internal = guard.wrap<unknown, unknown>("Get", () => {
    throw "not an Error";
  });
  assert.deepEqual((await invoke(internal, fakeCall(1)).first).error, {
    code: grpc.status.INTERNAL,
    details: "not an Error",
  });
  assert.deepEqual(logs, ["Get failed: not an Error"]);
  assert.equal(guard.in_flight, 0);
});

Deno.test("unary guard calls back once even when the callback throws or to_status throws", async () => {
  const logs: string[] = [];
  const guard = guardOf({
    to_status: () => {
      throw new Error("bad table");
    },
  }, logs);
  const h = guard.wrap<unknown, unknown>("Put", () => Promise.reject(new Error("first")));
  const { replies, first } = invoke(h, fakeCall(1));
  assert.deepEqual((await first).error, { code: grpc.status.INTERNAL, details: "first" });
  await tick();
  assert.equal(replies.length, 1);
  assert.equal(guard.in_flight, 0);
  assert.equal(logs.length, 2);
  assert.match(logs[0], /^Put: mapping an error to a status failed: Error: bad table/);
  assert.match(logs[1], /^Put failed: Error: first/);

  // A callback that throws on success must not be called again with an error.
  const ok = guardOf({}, logs).wrap<unknown, unknown>("Get", () => Promise.resolve("x"));
  let calls = 0;
  ok(fakeCall(1), () => {
    calls++;
    throw new Error("serialize");
  });
  await tick();
  assert.equal(calls, 1);
  assert.match(logs[2], /^Get: answering the call failed: Error: serialize/);
});

Deno.test("unary guard rejects bad options, quoting the value", () => {
  assert.throws(() => guardOf({ in_flight_max: 0 }), {
    name: "RangeError",
    message: "in_flight_max 0 must be a positive integer",
  });
  assert.throws(() => guardOf({ in_flight_max: 1.5 }), {
    message: "in_flight_max 1.5 must be a positive integer",
  });
  assert.throws(() => guardOf({ server_name: "" }), {
    name: "TypeError",
    message: 'server_name "" must be a non-empty string',
  });
});

Deno.test("unary guard answers a request the deserializer refused without running the handler", async () => {
  const guard = guardOf();
  let ran = 0;
  const h = guard.wrap<unknown, unknown>("PutBatch", () => {
    ran++;
    return Promise.resolve("ran");
  });
  const refused = new RefusedRequest(
    grpc.status.RESOURCE_EXHAUSTED,
    "PutBatch message of 40.2 MiB exceeds the limit of 32 MiB",
  );
  const { replies, first } = invoke(h, fakeCall(refused));
  assert.deepEqual(await first, {
    error: {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: "PutBatch message of 40.2 MiB exceeds the limit of 32 MiB",
    },
    response: undefined,
  });
  assert.equal(ran, 0);
  assert.equal(guard.in_flight, 0);
  const bad = invoke(h, fakeCall(new RefusedRequest(grpc.status.INVALID_ARGUMENT, "bad")));
  assert.equal((await bad.first).error?.code, grpc.status.INVALID_ARGUMENT);
  // The guard keeps serving.
  assert.deepEqual(await invoke(h, fakeCall({ id: 1 })).first, { error: null, response: "ran" });
  assert.equal(ran, 1);
  assert.equal(replies.length, 1);
});
