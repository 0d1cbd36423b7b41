import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HttpApi, type HttpApiOptions } from "./http.ts";
import type { VectorDBHandlers } from "./proto.ts";
import { SecurityConfig } from "./security.ts";
import { UnaryGuard } from "./unary.ts";
import { validateSearchRequest, ValidationError } from "./validate.ts";

const KEYS = { read: "read-key-000000000000000001", admin: "admin-key-00000000000000002" };

/** Handlers through a real UnaryGuard: Search validates, Stats waits `state.stall_ms`. */
function fakeHandlers(state: { closing: boolean; stall_ms: number; seen: unknown[] }) {
  const guard = new UnaryGuard({
    server_name: "test server",
    in_flight_max: 2,
    closing: () => state.closing,
    to_status: (e) =>
      e instanceof ValidationError
        ? { code: grpc.status.INVALID_ARGUMENT, details: e.message }
        : { code: grpc.status.INTERNAL, details: String(e) },
    log: () => {},
  });
  const handlers = {
    Search: guard.wrap("Search", (r) => {
      state.seen.push(r);
      const s = validateSearchRequest(r as Record<string, unknown>);
      return Promise.resolve({ results: [{ id: s.k, distance: 0 }] });
    }),
    Stats: guard.wrap(
      "Stats",
      () => new Promise((resolve) => setTimeout(() => resolve({ node_id: "n" }), state.stall_ms)),
    ),
    ListCollections: guard.wrap("ListCollections", () => Promise.resolve({ collections: [] })),
    GetBatch: guard.wrap("GetBatch", (r) => {
      state.seen.push(r);
      return Promise.resolve({
        points: [
          { id: "18446744073709551615", string_id: "", found: true, vector: [1], payload: "" },
          { id: "0", string_id: "doc-7", found: false, vector: [], payload: "" },
        ],
      });
    }),
  } as unknown as VectorDBHandlers;
  return handlers;
}

async function withApi(
  options: Partial<HttpApiOptions>,
  fn: (
    base: string,
    state: { closing: boolean; stall_ms: number; seen: unknown[] },
  ) => Promise<void>,
): Promise<void> {
  const state = { closing: false, stall_ms: 0, seen: [] as unknown[] };
  const api = new HttpApi({
    kind: "node",
    handlers: fakeHandlers(state),
    security: SecurityConfig.insecure(),
    ready: () => !state.closing,
    log: () => {},
    ...options,
  });
  const port = await api.listen("127.0.0.1", 0);
  try {
    await fn(`http://127.0.0.1:${port}`, state);
  } finally {
    await api.close(1000);
  }
}

async function call(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text), headers: res.headers };
}

const search = (base: string, body: string, headers: Record<string, string> = {}) =>
  call(`${base}/collections/c/points/search`, { method: "POST", body, headers });

Deno.test("HttpApi: a route calls the guarded handler with the path's collection", async () => {
  await withApi({}, async (base, state) => {
    const r = await search(base, '{"vector":[1,2],"k":3}');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { results: [{ id: 3, distance: 0 }] });
    assert.deepEqual(state.seen, [{ vector: [1, 2], k: 3, collection: "c" }]);
    assert.equal(r.headers.get("content-type"), "application/json; charset=utf-8");
  });
});

Deno.test("HttpApi: handler statuses map to HTTP with a JSON error naming the field", async () => {
  await withApi({}, async (base, state) => {
    const bad = await search(base, '{"vector":[1,"x"],"k":3}');
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body, {
      error: { status: "INVALID_ARGUMENT", message: 'vector[1] "x" is not a number' },
    });
    const json = await search(base, "{nope");
    assert.equal(json.status, 400);
    assert.match(String((json.body.error as { message: string }).message), /not valid JSON/);
    state.closing = true;
    const closing = await search(base, '{"vector":[1],"k":1}');
    assert.equal(closing.status, 503);
    assert.equal((closing.body.error as { status: string }).status, "UNAVAILABLE");
    const ready = await call(`${base}/readyz`);
    assert.deepEqual([ready.status, ready.body], [503, { status: "NOT_SERVING" }]);
    const alive = await call(`${base}/healthz`);
    assert.equal(alive.status, 200);
  });
});

Deno.test("HttpApi: 404, 405 with Allow, unknown query", async () => {
  await withApi({}, async (base) => {
    assert.equal((await call(`${base}/x`)).status, 404);
    const r = await call(`${base}/stats`, { method: "POST" });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get("allow"), "GET");
    assert.equal((await call(`${base}/stats?x=1`)).status, 400);
  });
});

Deno.test("HttpApi: bodies over the cap are 413 before parsing (declared or streamed)", async () => {
  await withApi({}, async (base, state) => {
    // Search: 4 x 260 KiB.
    const big = `{"vector":[${"1,".repeat(600_000)}1],"k":1}`;
    const r = await search(base, big);
    assert.equal(r.status, 413);
    assert.match(
      String((r.body.error as { message: string }).message),
      /Search\): the body has 1.1 MiB; the limit is 1 MiB \(4 x the gRPC limit\)/,
    );
    // Chunked, no content-length: counted as it arrives.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 20; i++) c.enqueue(new TextEncoder().encode(" ".repeat(100_000)));
        c.close();
      },
    });
    const s = await search(base, stream as unknown as string);
    assert.equal(s.status, 413);
    assert.match(String((s.body.error as { message: string }).message), /more than/);
    assert.equal(state.seen.length, 0);
    // The server still answers afterwards.
    assert.equal((await search(base, '{"vector":[1],"k":1}')).status, 200);
  });
});

Deno.test("HttpApi: request timeout is 504, the guard's in-flight limit 429", async () => {
  await withApi({ request_timeout_ms: 200 }, async (base, state) => {
    state.stall_ms = 600;
    const slow = await call(`${base}/stats`);
    assert.equal(slow.status, 504);
    assert.match(String((slow.body.error as { message: string }).message), /within 200 ms/);
    // The guard still counts the stalled call and one more: its limit is 2.
    const [a, b] = await Promise.all([call(`${base}/stats`), call(`${base}/stats`)]);
    assert.deepEqual([a.status, b.status].sort(), [429, 504]);
    await new Promise((r) => setTimeout(r, 700));
  });
  await withApi({ requests_max: 1 }, async (base, state) => {
    state.stall_ms = 300;
    const [a, b] = await Promise.all([call(`${base}/stats`), call(`${base}/stats`)]);
    assert.deepEqual([a.status, b.status].sort(), [200, 429]);
  });
});

Deno.test("HttpApi: API keys: none 401, too low 403, enough 200; health open", async () => {
  const dir = mkdtempSync(join(tmpdir(), "http_keys_"));
  try {
    const file = join(dir, "keys");
    writeFileSync(file, `${KEYS.read} read\n${KEYS.admin} admin\n`);
    const security = SecurityConfig.fromFlags(
      { "api-keys-file": file },
      "127.0.0.1",
      "test",
      () => {},
    );
    await withApi({ security }, async (base) => {
      const none = await search(base, '{"vector":[1],"k":1}');
      assert.equal(none.status, 401);
      assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="vectordb"');
      assert.match(
        String((none.body.error as { message: string }).message),
        /Search needs an API key/,
      );
      const wrong = await search(base, '{"vector":[1],"k":1}', {
        authorization: "Bearer unknown-key-0000000000000",
      });
      assert.equal(wrong.status, 401);
      const ok = await search(base, '{"vector":[1],"k":1}', {
        authorization: `Bearer ${KEYS.read}`,
      });
      assert.equal(ok.status, 200);
      const low = await call(`${base}/collections/x`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${KEYS.read}` },
      });
      assert.equal(low.status, 403);
      assert.match(String((low.body.error as { message: string }).message), /needs role admin/);
      assert.equal((await call(`${base}/healthz`)).status, 200);
      assert.equal((await call(`${base}/readyz`)).status, 200);
      assert.equal((await call(`${base}/openapi.json`)).status, 401);
      const doc = await call(`${base}/openapi.json`, {
        headers: { authorization: `Bearer ${KEYS.read}` },
      });
      assert.equal(doc.status, 200);
      assert.equal(doc.body.openapi, "3.0.3");
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("HttpApi: 64-bit ids leave as exact JSON integers, string ids as strings", async () => {
  await withApi({}, async (base, state) => {
    const res = await fetch(`${base}/collections/c/points/get`, {
      method: "POST",
      body: '{"ids":[9007199254740993, "doc-7"]}',
    });
    // A JSON number above 2^53 - 1 has lost precision in the parser: refused, naming the field.
    assert.equal(res.status, 400);
    assert.match(await res.text(), /ids\[0\] 9007199254740992 is above 2\^53 - 1/);
    const ok = await fetch(`${base}/collections/c/points/get`, {
      method: "POST",
      body: '{"ids":[7, "doc-7"]}',
    });
    assert.equal(ok.status, 200);
    const text = await ok.text();
    assert.match(text, /"id":18446744073709551615,/);
    assert.match(text, /"id":"doc-7"/);
    assert.deepEqual(state.seen, [{ ids: [7], string_ids: ["doc-7"], collection: "c" }]);
  });
});
