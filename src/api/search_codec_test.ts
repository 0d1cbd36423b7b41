import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  decodeSearchBatchRequest,
  decodeSearchBatchResponse,
  decodeSearchRequest,
  decodeSearchResponse,
  encodeSearchBatchRequest,
  encodeSearchBatchResponse,
  encodeSearchRequest,
  encodeSearchResponse,
  SCRATCH_KEEP_BYTES,
} from "./search_codec.ts";
import { LOADER_OPTIONS, PROTO_PATH, VectorDBClient, vectorDbService } from "./proto.ts";
import { loadServices } from "../common/proto_services.ts";
import { refusalOf } from "../common/wire_limits.ts";
import { Prng } from "../common/prng.ts";

/** protobufjs's serializers (as proto-loader makes them): the reference. */
// deno-lint-ignore no-explicit-any
type Method = any;
const protobufjs = loadServices(PROTO_PATH, LOADER_OPTIONS)["vectordb.VectorDB"] as unknown as {
  Search: Method;
  SearchBatch: Method;
};
const Search = protobufjs.Search;
const SearchBatch = protobufjs.SearchBatch;

const ID_CHOICES: (string | number)[] = [
  0,
  1,
  127,
  128,
  2 ** 28 - 1,
  2 ** 28,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
  "0",
  "9007199254740993",
  "18446744073709551615",
  "123456789012345",
  "1234567890123456",
];

function pick<T>(r: Prng, xs: readonly T[]): T {
  return xs[r.nextInt(xs.length)];
}

function floats(r: Prng, n: number): number[] {
  return Array.from(
    { length: n },
    () => pick(r, [0, -0, 1e-45, 3.4e38, -1.5, r.nextInt(1000) / 7, NaN, Infinity, -Infinity]),
  );
}

function randomRequest(r: Prng): Record<string, unknown> {
  const req: Record<string, unknown> = {};
  const dim = 1 + r.nextInt(40);
  if (r.nextInt(2)) req.vector = floats(r, r.nextInt(3) === 0 ? 0 : dim);
  if (r.nextInt(2)) req.k = pick(r, [0, 1, 10, 127, 128, 10_000, 2 ** 31, 2 ** 32 - 1]);
  if (r.nextInt(2)) req.collection = pick(r, ["", "c", "default", "größe-ü", "x".repeat(300)]);
  if (r.nextInt(2)) req.ef = pick(r, [0, 1, 64, 200, 16_384]);
  if (r.nextInt(2)) req.filter = pick(r, ["", '{"must":[]}', "é".repeat(100)]);
  if (r.nextInt(2)) req.with_payload = r.nextInt(2) === 1;
  if (r.nextInt(2)) req.with_vector = r.nextInt(2) === 1;
  if (r.nextInt(2)) req.exact = r.nextInt(2) === 1;
  if (r.nextInt(3) === 0) {
    req.vector_bytes = new Uint8Array(
      Float32Array.from({ length: r.nextInt(3) === 0 ? 0 : dim }, () => r.nextInt(100) / 3).buffer,
    ).subarray(0, 4 * dim - r.nextInt(2));
  }
  if (r.nextInt(2)) {
    req.shards = Array.from(
      { length: r.nextInt(5) },
      () => pick(r, [0, 1, 127, 128, 255, 2 ** 31]),
    );
  }
  return req;
}

function randomResult(r: Prng): Record<string, unknown> {
  const hit: Record<string, unknown> = { id: pick(r, ID_CHOICES) };
  if (r.nextInt(4) !== 0) hit.distance = pick(r, [0, -0, 0.25, 1e-40, r.nextInt(1000) / 3, NaN]);
  if (r.nextInt(4) === 0) hit.payload = pick(r, ["", "{}", '{"a":[1,"é"]}', "x".repeat(300)]);
  if (r.nextInt(4) === 0) hit.vector = floats(r, r.nextInt(50));
  if (r.nextInt(4) === 0) hit.string_id = pick(r, ["", "a", "doc-7", "größe-ü", "é".repeat(64)]);
  return hit;
}

function randomResponse(r: Prng): Record<string, unknown> {
  const res: Record<string, unknown> = {
    results: Array.from(
      { length: r.nextInt(3) === 0 ? r.nextInt(200) : r.nextInt(12) },
      () => randomResult(r),
    ),
  };
  if (r.nextInt(2)) res.partial = r.nextInt(2) === 1;
  if (r.nextInt(2)) res.shards_answered = r.nextInt(300);
  if (r.nextInt(2)) res.shards_total = r.nextInt(300);
  if (r.nextInt(2)) {
    res.nodes_answered = Array.from(
      { length: r.nextInt(4) },
      () => pick(r, ["127.0.0.1:50051", "", "[::1]:7"]),
    );
  }
  if (r.nextInt(2)) res.shard_searches = pick(r, [0, 1, 3, 128, 2 ** 32 - 1]);
  return res;
}

Deno.test("search_codec decodes what protobufjs encodes, as protobufjs decodes it", () => {
  const r = new Prng(14);
  for (let i = 0; i < 400; i++) {
    const req = randomRequest(r);
    const rb = Search.requestSerialize(req);
    assert.deepEqual(decodeSearchRequest(rb), Search.requestDeserialize(rb), `request #${i}`);
    const res = randomResponse(r);
    const sb = Search.responseSerialize(res);
    assert.deepEqual(decodeSearchResponse(sb), Search.responseDeserialize(sb), `response #${i}`);
  }
  for (let i = 0; i < 50; i++) {
    const breq = { searches: Array.from({ length: r.nextInt(6) }, () => randomRequest(r)) };
    const b = SearchBatch.requestSerialize(breq);
    assert.deepEqual(decodeSearchBatchRequest(b), SearchBatch.requestDeserialize(b), `#${i}`);
    const bres = { results: Array.from({ length: r.nextInt(6) }, () => randomResponse(r)) };
    const c = SearchBatch.responseSerialize(bres);
    assert.deepEqual(decodeSearchBatchResponse(c), SearchBatch.responseDeserialize(c), `#${i}`);
  }
});

Deno.test("search_codec encodes what protobufjs decodes as it decodes its own encoding", () => {
  const r = new Prng(15);
  const same = (value: unknown, ours: Uint8Array, theirs: Uint8Array, at: string) =>
    assert.deepEqual(
      SearchBatch.responseDeserialize(Buffer.from(ours)),
      SearchBatch.responseDeserialize(theirs),
      `${at}: ${JSON.stringify(value)?.slice(0, 200)}`,
    );
  for (let i = 0; i < 400; i++) {
    const req = randomRequest(r);
    assert.deepEqual(
      Search.requestDeserialize(encodeSearchRequest(req as never)),
      Search.requestDeserialize(Search.requestSerialize(req)),
      `request #${i}`,
    );
    const res = randomResponse(r);
    assert.deepEqual(
      Search.responseDeserialize(encodeSearchResponse(res as never)),
      Search.responseDeserialize(Search.responseSerialize(res)),
      `response #${i}`,
    );
  }
  for (let i = 0; i < 50; i++) {
    const breq = { searches: Array.from({ length: r.nextInt(6) }, () => randomRequest(r)) };
    assert.deepEqual(
      SearchBatch.requestDeserialize(encodeSearchBatchRequest(breq as never)),
      SearchBatch.requestDeserialize(SearchBatch.requestSerialize(breq)),
      `batch request #${i}`,
    );
    const bres = { results: Array.from({ length: r.nextInt(6) }, () => randomResponse(r)) };
    same(
      bres,
      encodeSearchBatchResponse(bres as never),
      SearchBatch.responseSerialize(bres),
      `batch response #${i}`,
    );
  }
});

Deno.test("search_codec: ids as numbers, strings, bigints and Long-like objects; -0 and NaN distances", () => {
  const res = {
    results: [
      { id: 5, distance: -0 },
      { id: "18446744073709551615", distance: NaN },
      { id: 2n ** 63n, distance: 1 },
      { id: { low: 1, high: 2, unsigned: true }, distance: 2 },
      { id: "00042", distance: 3 },
      { id: 0, string_id: "s", distance: 4 },
    ],
  };
  const got = Search.responseDeserialize(encodeSearchResponse(res as never)).results;
  assert.deepEqual(got.map((h: { id: string }) => h.id), [
    "5",
    "18446744073709551615",
    "9223372036854775808",
    String(2n * 2n ** 32n + 1n),
    "42",
    "0",
  ]);
  assert.ok(Object.is(got[0].distance, -0), "a -0 distance stays -0");
  assert.ok(Number.isNaN(got[1].distance));
  assert.equal(got[5].string_id, "s");
  assert.throws(
    () => encodeSearchResponse({ results: [{ id: "x1", distance: 0 }] }),
    /results\.id: integer\|Long expected, got x1/,
  );
  assert.throws(
    () => encodeSearchResponse({ results: "no" } as never),
    /SearchResponse\.results: array expected/,
  );
  // The scratch is reset after a failure: the next message is whole.
  const ok = encodeSearchResponse({ results: [{ id: 9, distance: 1 }], shard_searches: 2 });
  assert.deepEqual(decodeSearchResponse(ok), Search.responseDeserialize(ok));
  assert.equal(decodeSearchResponse(ok).shard_searches, 2);
});

Deno.test("search_codec: nested messages past 127 and 16383 bytes, and messages past the kept scratch", () => {
  for (const n of [1, 30, 127, 128, 129, 4096, 300_000]) {
    const res = {
      results: [{ id: 1, distance: 0.5, payload: "p".repeat(n) }, { id: 2, distance: 1 }],
    };
    const bytes = encodeSearchBatchResponse({ results: [res, res] });
    assert.deepEqual(
      SearchBatch.responseDeserialize(bytes),
      SearchBatch.responseDeserialize(SearchBatch.responseSerialize({ results: [res, res] })),
      `payload of ${n} bytes`,
    );
  }
  // Larger than the scratch kept between calls: encoded whole, and the next encode still works.
  const big = {
    results: [{ id: 1, distance: 0, vector: new Array(SCRATCH_KEEP_BYTES / 2).fill(1) }],
  };
  const bytes = encodeSearchResponse(big);
  assert.equal(decodeSearchResponse(bytes).results[0].vector?.length, SCRATCH_KEEP_BYTES / 2);
  const small = encodeSearchResponse({ results: [{ id: 3, distance: 1 }] });
  assert.equal(decodeSearchResponse(small).results[0].id, "3");
});

Deno.test("search_codec: unpacked and split lists, repeated and unknown fields, odd offsets", () => {
  const f32 = (x: number) => [...new Uint8Array(new Float32Array([x]).buffer)];
  const msg = [
    0x0d,
    ...f32(1.5), // one unpacked float of `vector`
    0x0a,
    8,
    ...f32(2),
    ...f32(3), // a packed run
    0x10,
    5, // k 5
    0x10,
    0x80,
    0x80,
    0x80,
    0x80,
    0x10, // k again, a varint past 32 bits: its low 32 bits (0), as protobufjs
    0x1a,
    1,
    0x61, // collection "a"
    0x1a,
    1,
    0x62, // collection again: "b" wins
    0x50,
    7, // one unpacked shard
    0x52,
    3,
    1,
    0x80,
    0x01, // packed shards 1, 128
    0x30,
    2, // with_payload: 2 is true
    0x7a,
    0, // unknown field 15, empty
    0x4a,
    0, // vector_bytes present, empty
  ];
  const big = Buffer.alloc(msg.length + 3);
  Buffer.from(msg).copy(big, 3);
  const bytes = big.subarray(3);
  const want = Search.requestDeserialize(bytes);
  assert.deepEqual(decodeSearchRequest(bytes), want);
  assert.deepEqual(want.vector, [1.5, 2, 3]);
  assert.equal(want.k, 0);
  assert.equal(want.collection, "b");
  assert.deepEqual(want.shards, [7, 1, 128]);
  assert.equal(want.with_payload, true);
  // A leading byte-order mark in a string is kept, as protobufjs keeps it.
  const bom = Search.requestSerialize({ collection: "\ufeffc" });
  assert.equal(decodeSearchRequest(bom).collection, "\ufeffc");
  // Invalid UTF-8 becomes U+FFFD, as protobufjs reads it.
  const bad = Buffer.from([0x1a, 2, 0xc3, 0x28]);
  assert.deepEqual(decodeSearchRequest(bad), Search.requestDeserialize(bad));
});

Deno.test("search_codec refuses wire types its schema does not allow; a server says INVALID_ARGUMENT naming the field", () => {
  assert.throws(
    () => decodeSearchRequest(new Uint8Array([0x12, 1, 5])),
    /k \(field 2\) has wire type 2, not 0 at byte 0/,
  );
  assert.throws(
    () => decodeSearchRequest(new Uint8Array([0x0a, 3, 1, 2, 3])),
    /vector has 3 bytes, not 4 per float at byte 0/,
  );
  assert.throws(
    () => decodeSearchResponse(new Uint8Array([0x0a, 2, 0x10, 1])),
    /results\[\]\.distance \(field 2\) has wire type 0, not 5 at byte 2/,
  );
  assert.throws(() => decodeSearchBatchResponse(new Uint8Array([0x08, 1])), /results \(field 1\)/);
  const cases = {
    Search: [0x12, 1, 5],
    SearchBatch: [0x0a, 3, 0x12, 1, 5], // searches[0].k
  };
  for (const [method, bytes] of Object.entries(cases)) {
    const r = refusalOf(vectorDbService[method].requestDeserialize(Buffer.from(bytes)));
    assert.equal(r?.code, 3, method);
    assert.match(
      r?.details ?? "",
      new RegExp(
        `^${method} message of \\d+ bytes could not be decoded: k \\(field 2\\) has wire type 2`,
      ),
    );
  }
});

Deno.test("the VectorDB client and servers use search_codec for Search and SearchBatch", () => {
  const svc = VectorDBClient.service;
  assert.equal(svc.Search.requestSerialize, encodeSearchRequest);
  assert.equal(svc.Search.responseDeserialize, decodeSearchResponse);
  assert.equal(svc.SearchBatch.requestSerialize, encodeSearchBatchRequest);
  assert.equal(svc.SearchBatch.responseDeserialize, decodeSearchBatchResponse);
  assert.equal(vectorDbService.Search.responseSerialize, encodeSearchResponse);
  assert.equal(vectorDbService.SearchBatch.responseSerialize, encodeSearchBatchResponse);
  const req = { vector: [1, 2], k: 3, collection: "c", shards: [0] };
  assert.deepEqual(
    vectorDbService.Search.requestDeserialize(svc.Search.requestSerialize(req)),
    Search.requestDeserialize(Search.requestSerialize(req)),
  );
});
