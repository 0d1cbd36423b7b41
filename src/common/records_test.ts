import assert from "node:assert/strict";
import { legacyPayload } from "../testing/legacy_records.ts";
import {
  decodeRecord,
  encodeRecord,
  InvalidRecordError,
  RecordFormatError,
  RecordType,
  recordTypeName,
  type WalRecord,
} from "./records.ts";
import { VERSION_MAX } from "./version.ts";

const samples: WalRecord[] = [
  { kind: "put", collection: "", id: 7, vector: new Float32Array([1, -2.5, 3]), version: 5 },
  {
    kind: "put",
    collection: "docs",
    id: 0xffffffff,
    vector: new Float32Array([0.125]),
    version: VERSION_MAX,
  },
  { kind: "delete", collection: "", id: 42, version: 1_700_000_000_000 * 1024 },
  {
    kind: "put_batch",
    collection: "imgs",
    dimension: 2,
    ids: new Uint32Array([1, 2, 3]),
    vectors: new Float32Array([1, 2, 3, 4, 5, 6]),
    versions: new Float64Array([9, 9, 9]),
  },
  {
    kind: "copy",
    collection: "",
    dimension: 2,
    ids: new Uint32Array([4, 5, 6]),
    versions: new Float64Array([10, 11, 12]),
    deleted: new Uint8Array([0, 1, 0]),
    vectors: new Float32Array([1, 2, 3, 4]),
  },
  {
    kind: "forget",
    collection: "",
    ids: new Uint32Array([4, 5]),
    versions: new Float64Array([10, 0]),
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
  assert.equal(encodeRecord(samples[0]).type, RecordType.PUT_V);
  assert.equal(encodeRecord(samples[2]).type, RecordType.DELETE_V);
  assert.equal(encodeRecord(samples[3]).type, RecordType.PUT_BATCH_V);
  assert.equal(encodeRecord(samples[4]).type, RecordType.COPY);
  assert.equal(encodeRecord(samples[5]).type, RecordType.FORGET);
  assert.equal(recordTypeName(4), "CREATE_COLLECTION");
  assert.equal(recordTypeName(9), "COPY");
  assert.equal(recordTypeName(99), "UNKNOWN(99)");
});

Deno.test("a missing collection encodes as the log's own collection", () => {
  const { type, payload } = encodeRecord({ kind: "delete", id: 3, version: 1 });
  assert.deepEqual(decodeRecord(type, payload), {
    kind: "delete",
    collection: "",
    id: 3,
    version: 1,
  });
  assert.equal(payload.length, 16);
});

Deno.test("legacy (unversioned) records still decode, as version 0", () => {
  const put = legacyPayload((w) => {
    w.u32(7);
    w.f32Array(new Float32Array([1, 2]));
  });
  assert.deepEqual(decodeRecord(RecordType.PUT, put), {
    kind: "put",
    collection: "",
    id: 7,
    vector: new Float32Array([1, 2]),
    version: 0,
  });
  const del = legacyPayload((w) => w.u32(8));
  assert.deepEqual(decodeRecord(RecordType.DELETE, del), {
    kind: "delete",
    collection: "",
    id: 8,
    version: 0,
  });
  const batch = legacyPayload((w) => {
    w.u32(1);
    w.u32Array(new Uint32Array([1, 2]));
    w.f32Array(new Float32Array([3, 4]));
  });
  assert.deepEqual(decodeRecord(RecordType.PUT_BATCH, batch), {
    kind: "put_batch",
    collection: "",
    dimension: 1,
    ids: new Uint32Array([1, 2]),
    vectors: new Float32Array([3, 4]),
    versions: new Float64Array(2),
  });
  // Re-encoding a legacy record writes the versioned type.
  const rec = decodeRecord(RecordType.PUT, put);
  assert.equal(encodeRecord(rec).type, RecordType.PUT_V);
});

Deno.test("invalid records are refused when encoding", () => {
  const cases: [WalRecord, RegExp][] = [
    [{ kind: "put", id: -1, vector: new Float32Array(2), version: 1 }, /Point id -1/],
    [{ kind: "put", id: 1, vector: new Float32Array(0), version: 1 }, /Vector dimension 0/],
    [
      { kind: "put", id: 1, vector: new Float32Array([1, NaN]), version: 1 },
      /component 1 of point 1 is NaN/,
    ],
    [
      { kind: "put", id: 1, vector: new Float32Array(1), version: VERSION_MAX + 1 },
      /Version 9007199254740992 of point 1 is not an integer/,
    ],
    [{ kind: "delete", id: 1, version: 1.5 }, /Version 1.5 of point 1/],
    [{ kind: "delete", id: 1, version: -1 }, /Version -1 of point 1/],
    [
      {
        kind: "put_batch",
        dimension: 2,
        ids: new Uint32Array(2),
        vectors: new Float32Array(3),
        versions: new Float64Array(2),
      },
      /needs 4 values but has 3/,
    ],
    [
      {
        kind: "put_batch",
        dimension: 1,
        ids: new Uint32Array(2),
        vectors: new Float32Array(2),
        versions: new Float64Array(1),
      },
      /2 ids come with 1 versions/,
    ],
    [
      {
        kind: "copy",
        dimension: 1,
        ids: new Uint32Array([3, 4]),
        versions: new Float64Array([1, 2]),
        deleted: new Uint8Array([0, 0]),
        vectors: new Float32Array(1),
      },
      /Copy of 2 live entries with dimension 1 needs 2 values but has 1/,
    ],
    [
      {
        kind: "copy",
        dimension: 1,
        ids: new Uint32Array([3]),
        versions: new Float64Array([1]),
        deleted: new Uint8Array([2]),
        vectors: new Float32Array(0),
      },
      /Deleted flag 2 of entry 0/,
    ],
    [
      { kind: "forget", ids: new Uint32Array([3]), versions: new Float64Array([NaN]) },
      /Version NaN of entry 0 \(point 3\)/,
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
    [{ kind: "delete", collection: "x".repeat(256), id: 1, version: 1 }, /longer than 255 bytes/],
  ];
  for (const [rec, message] of cases) {
    assert.throws(
      () => encodeRecord(rec),
      (e: unknown) => e instanceof InvalidRecordError && message.test(e.message),
      message.source,
    );
  }
});

Deno.test("malformed payloads are refused when decoding", () => {
  for (const sample of samples.slice(0, 6)) {
    const { type, payload } = encodeRecord(sample);
    for (let n = 0; n < payload.length; n++) {
      assert.throws(() => decodeRecord(type, payload.subarray(0, n)), RecordFormatError);
    }
    const longer = new Uint8Array(payload.length + 1);
    longer.set(payload);
    assert.throws(() => decodeRecord(type, longer), /1 bytes remain/);
  }
  const { payload } = encodeRecord(samples[0]);
  assert.throws(() => decodeRecord(99, payload), /Record type 99 is unknown/);
  // Valid framing, invalid content: a NaN component.
  const nan = payload.slice();
  new DataView(nan.buffer).setFloat32(nan.length - 4, NaN, true);
  assert.throws(() => decodeRecord(RecordType.PUT_V, nan), /Decoded PUT_V record: .*NaN/);
  // A version above 2^53 - 1: u64 framing is fine, the value is not.
  const big = payload.slice();
  const view = new DataView(big.buffer);
  view.setUint32(8, 0xffffffff, true);
  view.setUint32(12, 0x001fffff + 1, true);
  assert.throws(() => decodeRecord(RecordType.PUT_V, big), /PUT_V payload .* exceeds the safe/);
  // A version count that disagrees with the ids.
  const forget = encodeRecord(samples[5]).payload.slice();
  new DataView(forget.buffer).setUint32(4 + 4 + 8, 1, true);
  assert.throws(() => decodeRecord(RecordType.FORGET, forget), RecordFormatError);
});

const enc = new TextEncoder();

Deno.test("payload-bearing records (types 11-13) round trip; without payloads the old types", () => {
  const withPayloads: WalRecord[] = [
    {
      kind: "put",
      collection: "",
      id: 7,
      vector: new Float32Array([1, 2]),
      version: 5,
      payload: enc.encode('{"a":1}'),
    },
    {
      kind: "put_batch",
      collection: "",
      dimension: 1,
      ids: new Uint32Array([1, 2, 3]),
      vectors: new Float32Array([1, 2, 3]),
      versions: new Float64Array([9, 9, 9]),
      payloads: [enc.encode('{"b":2}'), null, enc.encode('{"c":"é"}')],
    },
    {
      kind: "copy",
      collection: "",
      dimension: 1,
      ids: new Uint32Array([4, 5, 6]),
      versions: new Float64Array([10, 11, 12]),
      deleted: new Uint8Array([0, 1, 0]),
      vectors: new Float32Array([1, 2]),
      payloads: [null, null, enc.encode('{"d":[]}')],
    },
  ];
  const types = [RecordType.PUT_P, RecordType.PUT_BATCH_P, RecordType.COPY_P];
  withPayloads.forEach((rec, i) => {
    const { type, payload } = encodeRecord(rec);
    assert.equal(type, types[i]);
    assert.equal(recordTypeName(type), ["PUT_P", "PUT_BATCH_P", "COPY_P"][i]);
    assert.deepEqual(decodeRecord(type, payload), rec);
  });
  // No entry with a payload: the older type, byte for byte what it was without the field.
  const none: WalRecord = {
    kind: "put_batch",
    collection: "",
    dimension: 1,
    ids: new Uint32Array([1, 2]),
    vectors: new Float32Array([1, 2]),
    versions: new Float64Array([9, 9]),
  };
  const plain = encodeRecord(none);
  const empty = encodeRecord({ ...none, payloads: [null, new Uint8Array(0)] });
  assert.equal(empty.type, RecordType.PUT_BATCH_V);
  assert.deepEqual(empty.payload, plain.payload);
  const put = encodeRecord({ kind: "put", id: 1, vector: new Float32Array([1]), version: 1 });
  const putNull = encodeRecord({
    kind: "put",
    id: 1,
    vector: new Float32Array([1]),
    version: 1,
    payload: null,
  });
  assert.equal(putNull.type, RecordType.PUT_V);
  assert.deepEqual(putNull.payload, put.payload);
});

Deno.test("payload records: bad payloads are refused both ways", () => {
  assert.throws(
    () =>
      encodeRecord({
        kind: "put",
        id: 1,
        vector: new Float32Array([1]),
        version: 1,
        payload: new Uint8Array(65_537),
      }),
    (e: Error) =>
      e instanceof InvalidRecordError && /65537 bytes; the limit is 65536/.test(e.message),
  );
  assert.throws(
    () =>
      encodeRecord({
        kind: "copy",
        dimension: 1,
        ids: new Uint32Array([4]),
        versions: new Float64Array([10]),
        deleted: new Uint8Array([1]),
        vectors: new Float32Array(0),
        payloads: [enc.encode("{}")],
      }),
    /Tombstone entry 0 \(point 4\) has a payload/,
  );
  assert.throws(
    () =>
      encodeRecord({
        kind: "put_batch",
        dimension: 1,
        ids: new Uint32Array([1, 2]),
        vectors: new Float32Array([1, 2]),
        versions: new Float64Array([1, 1]),
        payloads: [enc.encode("{}")],
      }),
    /2 ids come with 1 payloads/,
  );
  // A decoded length over the limit is refused before the bytes are copied.
  const { payload } = encodeRecord({
    kind: "put",
    id: 1,
    vector: new Float32Array([1]),
    version: 1,
    payload: enc.encode('{"a":1}'),
  });
  const forged = payload.slice();
  new DataView(forged.buffer).setUint32(forged.length - 11, 70_000, true);
  assert.throws(
    () => decodeRecord(RecordType.PUT_P, forged),
    (e: Error) => e instanceof RecordFormatError && /70000 bytes is over the limit/.test(e.message),
  );
});

Deno.test("field index records round trip and refuse bad fields", () => {
  const create: WalRecord = {
    kind: "create_field_index",
    collection: "",
    field: "meta.lang",
    type: "keyword",
  };
  const drop: WalRecord = { kind: "drop_field_index", collection: "", field: "meta.lang" };
  const c = encodeRecord(create);
  const d = encodeRecord(drop);
  assert.equal(c.type, RecordType.CREATE_FIELD_INDEX);
  assert.equal(d.type, RecordType.DROP_FIELD_INDEX);
  assert.equal(recordTypeName(14), "CREATE_FIELD_INDEX");
  assert.equal(recordTypeName(15), "DROP_FIELD_INDEX");
  assert.deepEqual(decodeRecord(c.type, c.payload), create);
  assert.deepEqual(decodeRecord(d.type, d.payload), drop);
  assert.throws(() => encodeRecord({ ...create, field: "" }), InvalidRecordError);
  assert.throws(() => encodeRecord({ ...create, field: "x".repeat(2000) }), /longer than 1024/);
  assert.throws(() => encodeRecord({ ...create, type: "" }), InvalidRecordError);
  // A truncated payload is refused.
  assert.throws(
    () => decodeRecord(c.type, c.payload.subarray(0, c.payload.length - 2)),
    RecordFormatError,
  );
});

Deno.test("records with 64-bit and string ids use types 16-20 and round trip", () => {
  const big = 2n ** 64n - 1n;
  const p = new TextEncoder().encode('{"a":1}');
  const cases: [WalRecord, number][] = [
    [
      { kind: "put", collection: "", id: "doc-1", vector: new Float32Array([1, 2]), version: 3 },
      RecordType.PUT_K,
    ],
    [
      {
        kind: "put",
        collection: "c",
        id: big,
        vector: new Float32Array([1]),
        version: 4,
        payload: p,
      },
      RecordType.PUT_K,
    ],
    [{ kind: "delete", collection: "", id: 2 ** 40, version: 9 }, RecordType.DELETE_K],
    [
      {
        kind: "put_batch",
        collection: "",
        dimension: 1,
        ids: [1, "é-ü", big],
        vectors: new Float32Array([1, 2, 3]),
        versions: new Float64Array([5, 5, 5]),
        payloads: [null, p, null],
      },
      RecordType.PUT_BATCH_K,
    ],
    [
      {
        kind: "copy",
        collection: "",
        dimension: 1,
        ids: ["a", "b"],
        versions: new Float64Array([5, 6]),
        deleted: new Uint8Array([1, 0]),
        vectors: new Float32Array([7]),
        payloads: [null, p],
      },
      RecordType.COPY_K,
    ],
    [
      {
        kind: "forget",
        collection: "",
        ids: ["x", 2 ** 53 - 1],
        versions: new Float64Array([1, 2]),
      },
      RecordType.FORGET_K,
    ],
  ];
  for (const [rec, type] of cases) {
    const enc = encodeRecord(rec);
    assert.equal(enc.type, type, recordTypeName(enc.type));
    const dec = decodeRecord(enc.type, enc.payload);
    if (rec.kind === "put") assert.deepEqual(dec, { ...rec, payload: rec.payload ?? null });
    else assert.deepEqual(dec, rec);
  }
  assert.equal(recordTypeName(18), "PUT_BATCH_K");
});

Deno.test("records whose ids are all uint32 keep the older types, byte for byte", () => {
  const asArray = encodeRecord({
    kind: "put_batch",
    dimension: 1,
    ids: [1, 2, 0xffffffff],
    vectors: new Float32Array([1, 2, 3]),
    versions: new Float64Array([5, 5, 5]),
  });
  const asTyped = encodeRecord({
    kind: "put_batch",
    dimension: 1,
    ids: new Uint32Array([1, 2, 0xffffffff]),
    vectors: new Float32Array([1, 2, 3]),
    versions: new Float64Array([5, 5, 5]),
  });
  assert.equal(asArray.type, RecordType.PUT_BATCH_V);
  assert.deepEqual(asArray, asTyped);
  assert.equal(
    encodeRecord({ kind: "forget", ids: [3], versions: new Float64Array([1]) }).type,
    10,
  );
  assert.equal(encodeRecord({ kind: "delete", id: 7, version: 1 }).type, RecordType.DELETE_V);
});

Deno.test("bad ids are refused when encoding and decoding", () => {
  const v = new Float32Array([1]);
  for (const id of ["", "x".repeat(129), "\ud800", 5n, -1, 2 ** 53, 2n ** 64n, 1.5]) {
    assert.throws(
      () => encodeRecord({ kind: "put", id: id as never, vector: v, version: 1 }),
      InvalidRecordError,
      String(id),
    );
  }
  const good = encodeRecord({ kind: "delete", id: "abc", version: 1 });
  // Kind byte 7 is neither integer nor string.
  const bad = good.payload.slice();
  bad[4] = 7;
  assert.throws(() => decodeRecord(good.type, bad), RecordFormatError);
  // A list claiming more ids than the bytes can hold is refused before anything is read.
  const list = encodeRecord({ kind: "forget", ids: ["a"], versions: new Float64Array([1]) });
  const huge = list.payload.slice();
  new DataView(huge.buffer).setUint32(4, 0x10000000, true);
  assert.throws(() => decodeRecord(list.type, huge), /ids need/);
  // A string id over 128 bytes written by hand is refused on decode.
  const long = encodeRecord({ kind: "delete", id: "y".repeat(128), version: 1 });
  const grown = new Uint8Array(long.payload.length + 1);
  grown.set(long.payload.subarray(0, 5));
  new DataView(grown.buffer).setUint32(5, 129, true);
  grown.fill(0x79, 9, 9 + 129);
  grown.set(long.payload.subarray(9 + 128), 9 + 129);
  assert.throws(() => decodeRecord(long.type, grown), /over 128 bytes/);
});

Deno.test("records: create_collection carries int8 quantization; a float one is the old bytes", () => {
  const plain: WalRecord = {
    kind: "create_collection",
    collection: "g",
    dimension: 100,
    metric: "cosine",
    m: 16,
    ef_construction: 200,
  };
  const q8: WalRecord = { ...plain, quantization: "int8", rescore: 6 };
  const a = encodeRecord(plain);
  const b = encodeRecord(q8);
  assert.equal(b.type, RecordType.CREATE_COLLECTION);
  // The quantized record is the float one plus the trailing fields: older records decode.
  assert.deepEqual(b.payload.subarray(0, a.payload.length), a.payload);
  assert.equal(b.payload.length, a.payload.length + 4 + 4 + 4);
  assert.deepEqual(decodeRecord(a.type, a.payload), plain);
  assert.deepEqual(decodeRecord(b.type, b.payload), q8);
  // "none" writes nothing extra.
  assert.deepEqual(encodeRecord({ ...plain, quantization: "none" }).payload, a.payload);
  assert.throws(
    () => encodeRecord({ ...plain, quantization: "int4" as "int8", rescore: 4 }),
    /Quantization "int4"/,
  );
  assert.throws(() => encodeRecord({ ...plain, quantization: "int8", rescore: 0 }), /Rescore 0/);
  // Damaged trailing bytes are refused when decoding.
  const bad = new Uint8Array([...b.payload.subarray(0, b.payload.length - 4), 0, 0, 0, 0]);
  assert.throws(() => decodeRecord(b.type, bad), /Rescore 0/);
  const tail = new Uint8Array([...a.payload, 1]);
  assert.throws(() => decodeRecord(a.type, tail));
});

Deno.test("records: create_collection carries shard_number and replication_factor last", () => {
  const plain: WalRecord = {
    kind: "create_collection",
    collection: "s",
    dimension: 8,
    metric: "l2",
    m: 16,
    ef_construction: 200,
  };
  const a = encodeRecord(plain);
  const sharded: WalRecord = { ...plain, shard_number: 6, replication_factor: 2 };
  const b = encodeRecord(sharded);
  // Older bytes first, then "none", rescore 0, then the two shard fields.
  assert.deepEqual(b.payload.subarray(0, a.payload.length), a.payload);
  assert.equal(b.payload.length, a.payload.length + (4 + 4) + 4 + 8);
  assert.deepEqual(decodeRecord(b.type, b.payload), sharded);
  const both: WalRecord = { ...sharded, quantization: "int8", rescore: 3, replication_factor: 0 };
  assert.deepEqual(decodeRecord(b.type, encodeRecord(both).payload), both);
  assert.throws(() => encodeRecord({ ...plain, shard_number: 0 }), /Shard number 0/);
  assert.throws(() => encodeRecord({ ...plain, shard_number: 257 }), /Shard number 257/);
  assert.throws(
    () => encodeRecord({ ...plain, shard_number: 2, replication_factor: 65 }),
    /Replication factor 65/,
  );
  assert.throws(() => encodeRecord({ ...plain, replication_factor: 2 }), /needs a shard number/);
  // A damaged shard count is refused when decoding.
  const bad = b.payload.slice();
  new DataView(bad.buffer).setUint32(bad.length - 8, 9999, true);
  assert.throws(() => decodeRecord(b.type, bad), /Shard number 9999/);
});

Deno.test("a point write's layout trailer (hint logs) round trips; records without it are unchanged", () => {
  const payload = new TextEncoder().encode('{"a":1}');
  const withString = { kind: "put", collection: "c", id: "doc-1", vector: new Float32Array([1]) };
  const points: WalRecord[] = [
    ...samples.slice(0, 5),
    { ...samples[0], payload } as WalRecord,
    { ...withString, version: 3, payload } as WalRecord,
    { kind: "delete", collection: "c", id: "doc-2", version: 4 },
  ];
  for (const rec of points) {
    const plain = encodeRecord(rec);
    const laid = encodeRecord({ ...rec, shard_number: 7 } as WalRecord);
    assert.equal(laid.type, plain.type, rec.kind);
    assert.equal(laid.payload.length, plain.payload.length + 4, rec.kind);
    assert.deepEqual(laid.payload.subarray(0, plain.payload.length), plain.payload);
    assert.deepEqual(decodeRecord(laid.type, laid.payload), { ...rec, shard_number: 7 });
    assert.deepEqual(decodeRecord(plain.type, plain.payload), rec, "none when absent");
  }
  for (const bad of [0, 1.5, 1_000_000]) {
    assert.throws(
      () => encodeRecord({ ...samples[0], shard_number: bad } as WalRecord),
      (e: Error) => e instanceof InvalidRecordError && /Shard number/.test(e.message),
    );
  }
  // Only point writes trail with it: 4 more bytes after a forget are malformed.
  const forget = encodeRecord(samples[5]);
  const longer = new Uint8Array(forget.payload.length + 4);
  longer.set(forget.payload);
  assert.throws(() => decodeRecord(forget.type, longer), RecordFormatError);
});
