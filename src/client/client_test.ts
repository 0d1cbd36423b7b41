import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { ApiCallOptions, RequestOf, ResponseOf } from "../api/client.ts";
import { METHOD_NAMES, type MethodName } from "../api/proto.ts";
import { BATCH_POINTS_MAX } from "../common/limits.ts";
import {
  ClientOptionError,
  isServiceError,
  parsePayload,
  type Payload,
  type PointId,
  PointIdError,
  splitBatches,
  type Transport,
  UpsertError,
  VectorDbClient,
} from "./mod.ts";
import { fakeClock } from "./fake_clock.ts";

const CA = fileURLToPath(new URL("../../tests/fixtures/tls/ca.pem", import.meta.url));

interface Sent {
  method: MethodName;
  request: unknown;
  timeout_ms: number | undefined;
}

/** A transport that records each call and answers with `answer` (a rejection fails it). */
function fakeTransport(
  answer: (method: MethodName, request: unknown, n: number) => unknown = () => ({}),
): Transport & { sent: Sent[]; closed: boolean } {
  const t = {
    sent: [] as Sent[],
    closed: false,
    call<K extends MethodName>(
      method: K,
      request: RequestOf<K>,
      options?: ApiCallOptions,
    ): Promise<ResponseOf<K>> {
      t.sent.push({ method, request, timeout_ms: options?.timeout_ms });
      try {
        return Promise.resolve(answer(method, request, t.sent.length) as ResponseOf<K>);
      } catch (e) {
        return Promise.reject(e);
      }
    },
    close() {
      t.closed = true;
    },
  };
  return t;
}

function grpcError(code: number, details: string): Error & { code: number; details: string } {
  return Object.assign(new Error(`${code} ${details}`), { code, details });
}

Deno.test("client: every VectorDB RPC is reachable through a method of the library", async () => {
  const t = fakeTransport((method) =>
    method === "ListCollections"
      ? { collections: [] }
      : method === "PutBatch"
      ? { count: 1 }
      : method === "ListBackups"
      ? { backups: [] }
      : method === "Backup"
      ? { backup: { name: "b" } }
      : method === "SearchBatch"
      ? { results: [] }
      : method === "Count"
      ? { count: "0" }
      : method === "Scroll"
      ? { points: [], next_cursor: "" }
      : method === "GetBatch"
      ? { points: [] }
      : method === "DeleteByFilter"
      ? { deleted: "0", version: "1" }
      : {}
  );
  const db = new VectorDbClient({ transport: t });
  await db.createCollection("c", { dimension: 2 });
  await db.dropCollection("c");
  await db.listCollections();
  await db.upsert("c", [{ id: 1, vector: [1, 2] }]);
  await db.put("c", 1, [1, 2]);
  await db.get("c", 1);
  await db.delete("c", 1);
  await db.search("c", [1, 2]);
  await db.stats();
  await db.members();
  await db.drain();
  assert.equal((await db.backup("c", "b")).name, "b");
  assert.deepEqual(await db.listBackups(), []);
  await db.restore("b", "c2");
  await db.deleteBackup("b");
  await db.searchBatch("c", [{ vector: [1, 2] }]);
  await db.scroll("c");
  await db.count("c");
  await db.createFieldIndex("c", "tenant", "keyword");
  await db.dropFieldIndex("c", "tenant");
  await db.getBatch("c", [1]);
  await db.deleteBatch("c", [1]);
  await db.deleteByFilter("c", { must: [{ has_id: [1] }] });
  db.close();
  assert.deepEqual([...new Set(t.sent.map((s) => s.method))].sort(), [...METHOD_NAMES].sort());
  assert.ok(t.closed);
});

Deno.test("client: requests carry the proto's fields; typed arrays become plain arrays (packedVectors: false)", async () => {
  const t = fakeTransport((method) =>
    method === "PutBatch"
      ? { count: 2 }
      : method === "ListCollections"
      ? { collections: [{ name: "c", dimension: 2, metric: "l2", m: 16, ef_construction: 200 }] }
      : {}
  );
  const db = new VectorDbClient({ transport: t, timeoutMs: 1234, packedVectors: false });
  await db.createCollection("c", { dimension: 2, metric: "cosine", ef_construction: 50 });
  const r = await db.upsert("c", [
    { id: 1, vector: new Float32Array([0.5, 1]) },
    { id: 2, vector: [3, 4] },
  ], { consistency: "all", version: 77 });
  assert.deepEqual(r, { count: 2, batches: [{ count: 2 }] });
  await db.put("", 9, new Float64Array([1, 2]), { consistency: "one" });
  await db.delete("c", 9, { version: "12" });
  await db.search("c", new Float32Array([1, 2]), { k: 3, ef: 40, timeoutMs: 50 });
  await db.search("c", [1, 2]);
  assert.deepEqual((await db.listCollections()).map((c) => c.name), ["c"]);
  assert.deepEqual(t.sent.map((s) => [s.method, s.request, s.timeout_ms]), [
    ["CreateCollection", { dimension: 2, metric: "cosine", ef_construction: 50, name: "c" }, 1234],
    ["PutBatch", {
      points: [{ id: 1, vector: [0.5, 1] }, { id: 2, vector: [3, 4] }],
      collection: "c",
      consistency: "all",
      version: 77,
    }, 1234],
    ["Put", { id: 9, vector: [1, 2], collection: "", consistency: "one", version: 0 }, 1234],
    ["Delete", { id: 9, collection: "c", consistency: "", version: "12" }, 1234],
    ["Search", { vector: [1, 2], k: 3, ef: 40, collection: "c" }, 50],
    ["Search", { vector: [1, 2], k: 10, ef: 0, collection: "c" }, 1234],
    ["ListCollections", {}, 1234],
  ]);
  for (const s of t.sent) {
    const v = (s.request as { vector?: unknown }).vector;
    if (v !== undefined) assert.ok(Array.isArray(v), `${s.method} vector is a plain array`);
  }
});

Deno.test("client: upsert splits at BATCH_POINTS_MAX, at batchSize and under the byte limit", async () => {
  const t = fakeTransport((_m, req) => ({ count: (req as { points: unknown[] }).points.length }));
  const db = new VectorDbClient({ transport: t });
  const points = Array.from({ length: 25_000 }, (_, i) => ({ id: i, vector: [i, 0] }));
  const r = await db.upsert("c", points);
  assert.equal(r.count, 25_000);
  const sizes = t.sent.map((s) => (s.request as { points: unknown[] }).points.length);
  assert.deepEqual(sizes, [BATCH_POINTS_MAX, BATCH_POINTS_MAX, 5_000]);
  assert.deepEqual((await db.upsert("c", points.slice(0, 7), { batchSize: 3 })).batches, [
    { count: 3 },
    { count: 3 },
    { count: 1 },
  ]);
  assert.deepEqual(await db.upsert("c", []), { count: 0, batches: [] });
  // 65,536 dimensions: 262 KB a point, so 255 points stay under 64 MiB.
  const wide = Array.from({ length: 600 }, (_, i) => ({ id: i, vector: { length: 65_536 } }));
  assert.deepEqual(splitBatches(wide).map((b) => b.length), [255, 255, 90]);
  await assert.rejects(db.upsert("c", points, { batchSize: 0 }), /batchSize 0 must be an integer/);
  await assert.rejects(
    db.upsert("c", points, { batchSize: 10_001 }),
    /batchSize 10001 must be an integer from 1 to 10000/,
  );
  await assert.rejects(
    db.upsert("c", [{ id: 1, vector: 5 as unknown as number[] }]),
    /points\[0\]\.vector 5 is not an array of numbers/,
  );
});

Deno.test("client: a failed upsert batch says what was acknowledged before it", async () => {
  const t = fakeTransport((_m, req, n) => {
    if (n === 3) throw grpcError(3, "vector dimension 3 does not match collection's 2");
    return { count: (req as { points: unknown[] }).points.length };
  });
  const db = new VectorDbClient({ transport: t, clock: fakeClock() });
  const points = Array.from({ length: 10 }, (_, i) => ({ id: i, vector: [i, 0] }));
  await assert.rejects(db.upsert("c", points, { batchSize: 4 }), (e) => {
    assert.ok(e instanceof UpsertError);
    assert.ok(isServiceError(e), "keeps the gRPC code");
    assert.equal(e.code, 3);
    assert.equal(e.acknowledged, 8);
    assert.equal(e.failedIndex, 8);
    assert.match(
      e.message,
      /^upsert into "c": batch 3 of 3 \(points 8\.\.9\) failed after 1 attempt: 3 vector dimension 3 .*; the 8 points before it were acknowledged$/,
    );
    return true;
  });
});

Deno.test("client: retries follow the client's policy, a call's override, or none", async () => {
  const unavailable = () => {
    throw grpcError(14, "No connection established");
  };
  let fails = 2;
  const t = fakeTransport((method) => {
    if (fails-- > 0) unavailable();
    return method === "Stats" ? { node_id: "n" } : {};
  });
  const clock = fakeClock([0.5]);
  const events: number[] = [];
  const db = new VectorDbClient({
    transport: t,
    clock,
    retry: { baseMs: 100 },
    onRetry: (e) => events.push(e.attempt),
  });
  assert.equal((await db.stats()).node_id, "n");
  assert.equal(t.sent.length, 3);
  assert.deepEqual(clock.sleeps, [50, 100]);
  assert.deepEqual(events, [1, 2]);

  fails = 1;
  await assert.rejects(db.stats({ retry: false }), /14 No connection/);
  fails = 5;
  await assert.rejects(
    db.members({ retry: { attempts: 3 } }),
    (e: Error & { attempts: number }) => {
      assert.equal(e.attempts, 3);
      return true;
    },
  );

  const once = new VectorDbClient({ transport: t, clock, retry: false });
  fails = 1;
  await assert.rejects(once.get("c", 1), /14 No connection/);
  assert.equal(once.retry.attempts, 1);
});

Deno.test("client: bad options are refused naming the value", () => {
  const t = fakeTransport();
  const cases: [() => unknown, RegExp][] = [
    [() => new VectorDbClient({ address: "nohost" }), /address "nohost" must be host:port/],
    [() => new VectorDbClient({ transport: t, timeoutMs: 0 }), /timeoutMs 0 must be a positive/],
    [() => new VectorDbClient({ transport: t, timeoutMs: NaN }), /timeoutMs NaN must be/],
    [() => new VectorDbClient({ transport: t, retry: { attempts: -1 } }), /retry\.attempts -1/],
    [() => new VectorDbClient({ apiKey: "short" }), /apiKey: an API key is 16 to 256/],
    [
      () => new VectorDbClient({ tlsCa: "/nonexistent/ca.pem" }),
      /Cannot use tlsCa \/nonexistent\/ca\.pem: .*ENOENT/,
    ],
    [
      () => new VectorDbClient({ tlsCa: new TextEncoder().encode("hello") }),
      /tlsCa \(5 bytes\) is not PEM/,
    ],
  ];
  for (const [make, message] of cases) assert.throws(make, message);
  assert.throws(
    () => new VectorDbClient({ transport: t }).search("c", [1], { timeoutMs: -5 }),
    (e) => e instanceof ClientOptionError && /timeoutMs -5/.test(e.message),
  );
  // A CA by path or by bytes, and an API key, build a TLS channel (closed without a call).
  new VectorDbClient({ tlsCa: CA, apiKey: "0123456789abcdef0123" }).close();
  new VectorDbClient({ tlsCa: Deno.readFileSync(CA), tls: true }).close();
});

Deno.test("client: searchBatch, scroll, scrollAll and count send the proto's fields", async () => {
  const pages = [
    { points: [{ id: 1, vector: [], version: "5" }], next_cursor: "v1:1" },
    { points: [{ id: 2, vector: [], version: "6" }], next_cursor: "" },
  ];
  const t = fakeTransport((method, request) => {
    if (method === "SearchBatch") {
      return {
        results: (request as { searches: unknown[] }).searches.map(() => ({ results: [] })),
      };
    }
    if (method === "Count") return { count: "42", partial: true };
    const cursor = (request as { cursor: string }).cursor;
    return cursor === "" ? pages[0] : pages[1];
  });
  const db = new VectorDbClient({ transport: t, packedVectors: false });
  const answers = await db.searchBatch("c", [
    { vector: new Float32Array([1, 2]), k: 3 },
    { vector: [4, 5], ef: 20, collection: "other" },
  ]);
  assert.equal(answers.length, 2);
  assert.deepEqual(await db.count("c"), { count: 42, partial: true });
  const seen: PointId[] = [];
  for await (const page of db.scrollAll("c", { limit: 1, withVector: true })) {
    for (const p of page.points) seen.push(p.id);
  }
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(t.sent.map((s) => [s.method, s.request]), [
    ["SearchBatch", {
      searches: [
        { vector: [1, 2], k: 3, ef: 0, collection: "c" },
        { vector: [4, 5], k: 10, ef: 20, collection: "other" },
      ],
    }],
    ["Count", { collection: "c" }],
    ["Scroll", { collection: "c", limit: 1, cursor: "", with_vector: true }],
    ["Scroll", { collection: "c", limit: 1, cursor: "v1:1", with_vector: true }],
  ]);
});

Deno.test("client: payloads go as JSON text; search asks for them; parsePayload reads answers", async () => {
  const t = fakeTransport((method) => (method === "PutBatch" ? { count: 2 } : {}));
  const db = new VectorDbClient({ transport: t, packedVectors: false });
  await db.upsert("c", [
    { id: 1, vector: [1], payload: { tag: "a", n: [1, 2] } },
    { id: 2, vector: [2], payload: null },
  ]);
  await db.put("c", 3, [3], { payload: { nested: { ok: true } } });
  await db.search("c", [1], { k: 2, withPayload: true, withVector: true });
  assert.deepEqual(t.sent.map((s) => s.request), [
    {
      points: [{ id: 1, vector: [1], payload: '{"tag":"a","n":[1,2]}' }, { id: 2, vector: [2] }],
      collection: "c",
      consistency: "",
      version: 0,
    },
    {
      id: 3,
      vector: [3],
      payload: '{"nested":{"ok":true}}',
      collection: "c",
      consistency: "",
      version: 0,
    },
    { vector: [1], k: 2, ef: 0, collection: "c", with_payload: true, with_vector: true },
  ]);
  assert.throws(
    () => db.put("c", 4, [4], { payload: [1, 2] as unknown as Payload }),
    /payload must be a JSON object, got \[1,2\]/,
  );
  assert.deepEqual(parsePayload('{"a":1}'), { a: 1 });
  assert.equal(parsePayload(""), null);
  assert.equal(parsePayload(undefined), null);
  // Payload bytes count towards the PutBatch byte limit.
  const big = "x".repeat(1000);
  const batches = splitBatches(
    Array.from({ length: 10 }, (_, id) => ({ id, vector: [1], payload: big })),
    100,
    3_500,
  );
  assert.deepEqual(batches.map((b) => b.length), [3, 3, 3, 1]);
});

Deno.test("client: filters go out as JSON text on search, searchBatch, scroll, count and deletes", async () => {
  const t = fakeTransport((method, _req, n) =>
    method === "SearchBatch"
      ? { results: [{ results: [] }, { results: [] }] }
      : method === "Count"
      ? { count: "7" }
      : method === "Scroll"
      ? { points: [], next_cursor: n === 4 ? "c1" : "" }
      : method === "GetBatch"
      ? { points: [{ id: 3, found: true, vector: [], payload: '{"a":1}', version: "5" }] }
      : method === "DeleteByFilter"
      ? { deleted: "12", version: "99" }
      : method === "DeleteBatch"
      ? { deleted: 2, version: "98" }
      : {}
  );
  const db = new VectorDbClient({ transport: t, packedVectors: false });
  const f = { must: [{ key: "tenant", match: { value: "acme" } }] };
  const text = JSON.stringify(f);
  await db.search("c", [1, 2], { filter: f, withPayload: true });
  await db.searchBatch("c", [
    { vector: [1, 2], filter: text, withPayload: true },
    { vector: [3, 4], withVector: true },
  ]);
  assert.deepEqual(await db.count("c", { filter: f }), { count: 7, partial: false });
  const pages = [];
  for await (const p of db.scrollAll("c", { filter: f, withPayload: true, limit: 5 })) {
    pages.push(p.next_cursor);
  }
  assert.deepEqual(pages, ["c1", ""]);
  await db.createFieldIndex("c", "meta.lang", "keyword");
  await db.dropFieldIndex("", "meta.lang");
  const got = await db.getBatch("c", [3], { withPayload: true });
  assert.deepEqual(parsePayload(got[0].payload), { a: 1 });
  assert.deepEqual(await db.deleteBatch("c", [1, 2], { consistency: "all", version: 98 }), {
    deleted: 2,
    version: "98",
  });
  assert.deepEqual(await db.deleteByFilter("c", f), { deleted: 12, version: "99" });
  assert.deepEqual(t.sent.map((s) => [s.method, s.request]), [
    ["Search", { vector: [1, 2], k: 10, ef: 0, collection: "c", filter: text, with_payload: true }],
    ["SearchBatch", {
      searches: [
        { vector: [1, 2], k: 10, ef: 0, collection: "c", filter: text, with_payload: true },
        { vector: [3, 4], k: 10, ef: 0, collection: "c", with_vector: true },
      ],
    }],
    ["Count", { collection: "c", filter: text }],
    ["Scroll", {
      collection: "c",
      limit: 5,
      cursor: "",
      with_vector: false,
      filter: text,
      with_payload: true,
    }],
    ["Scroll", {
      collection: "c",
      limit: 5,
      cursor: "c1",
      with_vector: false,
      filter: text,
      with_payload: true,
    }],
    ["CreateFieldIndex", { collection: "c", field: "meta.lang", type: "keyword" }],
    ["DropFieldIndex", { collection: "", field: "meta.lang" }],
    ["GetBatch", { collection: "c", ids: [3], with_vector: false, with_payload: true }],
    ["DeleteBatch", { collection: "c", ids: [1, 2], consistency: "all", version: 98 }],
    ["DeleteByFilter", { collection: "c", filter: text, consistency: "", version: 0 }],
  ]);
});

Deno.test("client: a filter that is not an object or text is a TypeError before any call", async () => {
  const t = fakeTransport();
  const db = new VectorDbClient({ transport: t });
  await assert.rejects(
    () => db.count("c", { filter: [1, 2] as unknown as Record<string, unknown> }),
    (e: Error) =>
      e instanceof TypeError && /filter must be a filter object.*\[1,2\]/.test(e.message),
  );
  assert.throws(
    () => db.search("c", [1], { filter: 5 as unknown as string }),
    /filter must be a filter object or its JSON text, got 5/,
  );
  await assert.rejects(() => db.deleteByFilter("c", ""), /deleteByFilter needs a filter/);
  assert.equal(t.sent.length, 0);
});

Deno.test("client: ids may be numbers, bigints or strings; answers carry PointIds", async () => {
  const big = 18446744073709551615n;
  const t = fakeTransport((method) =>
    method === "PutBatch" ? { count: 3 } : method === "Search"
      ? {
        results: [
          { id: "18446744073709551615", string_id: "", distance: 0 },
          { id: "0", string_id: "doc-7", distance: 1 },
          { id: "9007199254740991", distance: 2 },
        ],
      }
      : method === "GetBatch"
      ? {
        points: [
          { id: "5", string_id: "", found: true, vector: [], version: "1", deleted: false },
          { id: "0", string_id: "5", found: false, vector: [], version: "0", deleted: false },
        ],
      }
      : method === "Scroll"
      ? { points: [{ id: "0", string_id: "a", vector: [], version: "1" }], next_cursor: "" }
      : {}
  );
  const db = new VectorDbClient({ transport: t, packedVectors: false });
  await db.upsert("c", [
    { id: "doc-7", vector: [1], payload: { k: 1 } },
    { id: big, vector: [2] },
    { id: 5n, vector: [3] },
  ]);
  await db.put("c", "uuid-1", [1]);
  await db.get("c", 2n ** 60n);
  await db.delete("c", "doc-7");
  await db.deleteBatch("c", ["x", 1, big]);
  const search = await db.search("c", [1]);
  const records = await db.getBatch("c", [5, "5"]);
  const page = await db.scroll("c");
  assert.deepEqual(search.results.map((r) => r.id), [big, "doc-7", 9007199254740991]);
  assert.ok(!("string_id" in search.results[0]), "the pair is one id");
  assert.deepEqual(records.map((r) => [r.id, r.found]), [[5, true], ["5", false]]);
  assert.deepEqual(page.points.map((p) => p.id), ["a"]);
  assert.deepEqual(t.sent.slice(0, 5).map((s) => s.request), [
    {
      points: [
        { id: 0, string_id: "doc-7", vector: [1], payload: '{"k":1}' },
        { id: "18446744073709551615", vector: [2] },
        { id: 5, vector: [3] },
      ],
      collection: "c",
      consistency: "",
      version: 0,
    },
    { id: 0, string_id: "uuid-1", vector: [1], collection: "c", consistency: "", version: 0 },
    { id: "1152921504606846976", collection: "c" },
    { id: 0, string_id: "doc-7", collection: "c", consistency: "", version: 0 },
    {
      collection: "c",
      ids: [1, "18446744073709551615"],
      string_ids: ["x"],
      consistency: "",
      version: 0,
    },
  ]);
  assert.deepEqual((t.sent[6].request as { ids: unknown }).ids, [5]);
  assert.deepEqual((t.sent[6].request as { string_ids: unknown }).string_ids, ["5"]);
});

Deno.test("client: a bad id is a PointIdError naming it, before any call", async () => {
  const t = fakeTransport();
  const db = new VectorDbClient({ transport: t });
  assert.throws(() => db.get("c", -1), PointIdError);
  assert.throws(() => db.get("c", 2 ** 53), /id 9007199254740992 is above 2\^53 - 1/);
  assert.throws(() => db.put("c", "", [1]), /id "" is empty/);
  assert.throws(() => db.delete("c", 2n ** 64n), /not an integer between 0 and 2\^64 - 1/);
  await assert.rejects(() => db.getBatch("c", [1, "x".repeat(129)]), /ids\[1\] .* over 128 bytes/);
  await assert.rejects(() => db.upsert("c", [{ id: 1.5, vector: [1] }]), /points\[0\]\.id 1\.5/);
  assert.equal(t.sent.length, 0);
});

Deno.test("client: vectors go packed (vector_bytes, little-endian float32) by default", async () => {
  const t = fakeTransport((method) =>
    method === "PutBatch"
      ? { count: 2 }
      : method === "SearchBatch"
      ? { results: [{ results: [] }] }
      : { results: [] }
  );
  const db = new VectorDbClient({ transport: t });
  const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
  const query = new Float32Array([0.5, -2]);
  await db.search("c", query, { k: 3 });
  await db.search("c", [1, 2.1]);
  await db.put("c", 9, [3, 4]);
  await db.upsert("c", [{ id: 1, vector: new Float64Array([5, 6]) }, { id: 2, vector: [7, 8] }]);
  await db.searchBatch("c", [{ vector: [1, 2], k: 2 }]);
  const sent = t.sent.map((s) => s.request) as {
    vector?: number[];
    vector_bytes?: Uint8Array;
    points?: { vector: number[]; vector_bytes: Uint8Array }[];
    searches?: { vector: number[]; vector_bytes: Uint8Array }[];
  }[];
  // A Float32Array is sent as a view of its bytes, not copied.
  assert.equal(sent[0].vector_bytes!.buffer, query.buffer);
  assert.deepEqual(sent[0].vector, []);
  // Anything else is rounded to float32 once (2.1 is not a float32).
  assert.deepEqual(sent[1].vector_bytes, f32([1, 2.1]));
  assert.deepEqual(sent[2].vector_bytes, f32([3, 4]));
  assert.deepEqual(sent[3].points!.map((p) => [p.vector, p.vector_bytes]), [
    [[], f32([5, 6])],
    [[], f32([7, 8])],
  ]);
  assert.deepEqual(sent[4].searches![0].vector_bytes, f32([1, 2]));
  assert.throws(() => db.search("c", 5 as unknown as number[]), /vector 5 is not an array/);
  db.close();
});
