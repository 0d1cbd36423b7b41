import assert from "node:assert/strict";
import {
  decodeRecord,
  encodeRecord,
  InvalidRecordError,
  RecordFormatError,
  RecordType,
  recordTypeName,
  type WalRecord,
} from "./records.ts";

const samples: WalRecord[] = [
  { kind: "put", collection: "", id: 7, vector: new Float32Array([1, -2.5, 3]) },
  { kind: "put", collection: "docs", id: 0xffffffff, vector: new Float32Array([0.125]) },
  { kind: "delete", collection: "", id: 42 },
  {
    kind: "put_batch",
    collection: "imgs",
    dimension: 2,
    ids: new Uint32Array([1, 2, 3]),
    vectors: new Float32Array([1, 2, 3, 4, 5, 6]),
  },
  {
    kind: "create_collection",
    collection: "glove",
    dimension: 100,
    metric: "cosine",
    m: 16,
    ef_construction: 200,
  },
  { kind: "drop_collection", collection: "glove" },
];

Deno.test("records round trip through encode/decode", () => {
  for (const rec of samples) {
    const { type, payload } = encodeRecord(rec);
    assert.deepEqual(decodeRecord(type, payload), rec);
  }
  assert.equal(encodeRecord(samples[0]).type, RecordType.PUT);
  assert.equal(encodeRecord(samples[3]).type, RecordType.PUT_BATCH);
  assert.equal(recordTypeName(4), "CREATE_COLLECTION");
  assert.equal(recordTypeName(99), "UNKNOWN(99)");
});

Deno.test("a missing collection encodes as the log's own collection", () => {
  const { type, payload } = encodeRecord({ kind: "delete", id: 3 });
  assert.deepEqual(decodeRecord(type, payload), { kind: "delete", collection: "", id: 3 });
  assert.equal(payload.length, 8);
});

Deno.test("invalid records are refused when encoding", () => {
  const cases: [WalRecord, RegExp][] = [
    [{ kind: "put", id: -1, vector: new Float32Array(2) }, /Point id -1/],
    [{ kind: "put", id: 1, vector: new Float32Array(0) }, /Vector dimension 0/],
    [{ kind: "put", id: 1, vector: new Float32Array([1, NaN]) }, /component 1 of point 1 is NaN/],
    [
      {
        kind: "put_batch",
        dimension: 2,
        ids: new Uint32Array(2),
        vectors: new Float32Array(3),
      },
      /needs 4 values but has 3/,
    ],
    [
      {
        kind: "create_collection",
        collection: "c",
        dimension: 3,
        metric: "hamming" as "l2",
        m: 16,
        ef_construction: 100,
      },
      /Metric "hamming"/,
    ],
    [{ kind: "drop_collection", collection: "" }, /must not be empty/],
    [{ kind: "delete", collection: "x".repeat(256), id: 1 }, /longer than 255 bytes/],
  ];
  for (const [rec, message] of cases) {
    assert.throws(
      () => encodeRecord(rec),
      (e: unknown) => e instanceof InvalidRecordError && message.test(e.message),
    );
  }
});

Deno.test("malformed payloads are refused when decoding", () => {
  const { payload } = encodeRecord(samples[0]);
  for (let n = 0; n < payload.length; n++) {
    assert.throws(() => decodeRecord(RecordType.PUT, payload.subarray(0, n)), RecordFormatError);
  }
  const longer = new Uint8Array(payload.length + 1);
  longer.set(payload);
  assert.throws(() => decodeRecord(RecordType.PUT, longer), /1 bytes remain/);
  assert.throws(() => decodeRecord(99, payload), /Record type 99 is unknown/);
  // Valid framing, invalid content: a NaN component.
  const nan = payload.slice();
  new DataView(nan.buffer).setFloat32(nan.length - 4, NaN, true);
  assert.throws(() => decodeRecord(RecordType.PUT, nan), /Decoded PUT record: .*NaN/);
});
