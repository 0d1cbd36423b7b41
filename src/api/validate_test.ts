import assert from "node:assert/strict";
import {
  resolveCollection,
  validateCollectionName,
  validateConsistency,
  validateCreateCollectionRequest,
  validateEf,
  validateId,
  validateK,
  validateMetric,
  validatePointIds,
  validatePointRef,
  validatePutBatchRequest,
  validatePutRequest,
  validateSearchRequest,
  validateVector,
  validateVectorOrBytes,
  validateVersion,
  ValidationError,
  vectorFieldName,
} from "./validate.ts";
import { Buffer } from "node:buffer";
import { packVector, VectorDBClient } from "./proto.ts";
import {
  BATCH_POINTS_MAX,
  DEFAULT_COLLECTION,
  DIMENSION_MAX,
  VERSION_MAX,
} from "../common/limits.ts";

/** Asserts that `fn` throws a ValidationError on `field` with exactly `message`. */
function rejects(fn: () => unknown, field: string, message: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ValidationError, `expected a ValidationError, got ${e}`);
    if (typeof message === "string") assert.equal(e.message, message);
    else assert.match(e.message, message);
    assert.equal(e.field, field);
    return true;
  });
}

Deno.test("ids", () => {
  assert.equal(validateId(0), 0);
  assert.equal(validateId(4294967295), 4294967295);
  rejects(() => validateId(-1), "id", "id -1 must be between 0 and 4294967295");
  rejects(() => validateId(2 ** 32), "id", "id 4294967296 must be between 0 and 4294967295");
  rejects(() => validateId(1.5), "id", "id 1.5 must be an integer between 0 and 4294967295");
  rejects(() => validateId("7"), "id", 'id "7" must be an integer between 0 and 4294967295');
  rejects(
    () => validateId(undefined),
    "id",
    "id undefined must be an integer between 0 and 4294967295",
  );
});

Deno.test("vectors", () => {
  const v = [0.5, -1, 3e38];
  assert.equal(validateVector(v), v);
  assert.equal(validateVector(v, "vector", 3), v);
  rejects(() => validateVector([]), "vector", "vector is empty");
  rejects(() => validateVector([0, 0, 0, NaN]), "vector[3]", "vector[3] is NaN");
  rejects(() => validateVector([Infinity]), "vector[0]", "vector[0] is Infinity");
  rejects(() => validateVector([1, -Infinity]), "vector[1]", "vector[1] is -Infinity");
  rejects(
    () => validateVector([1, 1e300]),
    "vector[1]",
    "vector[1] 1e+300 is outside the float32 range",
  );
  rejects(() => validateVector([1, "2"]), "vector[1]", 'vector[1] "2" is not a number');
  rejects(() => validateVector("1,2"), "vector", 'vector must be an array of numbers, got "1,2"');
  rejects(
    () => validateVector([1, 2, 3], "vector", 100),
    "vector",
    "vector dimension 3 does not match the collection dimension 100",
  );
  rejects(
    () => validateVector(new Array(DIMENSION_MAX + 1).fill(0)),
    "vector",
    "vector has 65537 values; the limit is 65536",
  );
});

Deno.test("k, ef, names, metrics, consistency", () => {
  assert.equal(validateK(1), 1);
  assert.equal(validateK(10000), 10000);
  rejects(() => validateK(0), "k", "k 0 must be between 1 and 10000");
  rejects(() => validateK(10001), "k", "k 10001 must be between 1 and 10000");
  assert.equal(validateEf(undefined), 0);
  assert.equal(validateEf(0), 0);
  rejects(
    () => validateEf(10001),
    "ef",
    "ef 10001 must be between 0 and 10000 (0 selects the server default)",
  );

  assert.equal(resolveCollection(""), DEFAULT_COLLECTION);
  assert.equal(resolveCollection(undefined), DEFAULT_COLLECTION);
  assert.equal(resolveCollection("my_col-2"), "my_col-2");
  const nameRule = 'must be 1 to 64 characters from A-Z, a-z, 0-9, "_" and "-"';
  rejects(() => resolveCollection("../etc"), "collection", `collection "../etc" ${nameRule}`);
  rejects(() => validateCollectionName(""), "name", `name "" ${nameRule}`);
  rejects(
    () => validateCollectionName("x".repeat(65)),
    "name",
    `name "${"x".repeat(65)}" ${nameRule}`,
  );

  assert.equal(validateMetric(""), "l2");
  assert.equal(validateMetric("cosine"), "cosine");
  rejects(
    () => validateMetric("euclid"),
    "metric",
    'metric "euclid" must be one of "l2", "cosine", "dot"',
  );
  assert.equal(validateConsistency(""), undefined);
  assert.equal(validateConsistency("quorum"), "quorum");
  rejects(
    () => validateConsistency("most"),
    "consistency",
    'consistency "most" must be one of "one", "quorum", "all" or empty',
  );
});

Deno.test("point requests", () => {
  assert.deepEqual(validatePutRequest({ id: 5, vector: [1, 2], collection: "", consistency: "" }), {
    id: 5,
    vector: [1, 2],
    payload: null,
    collection: "default",
    consistency: undefined,
    version: 0,
  });
  rejects(
    () => validatePutRequest({ id: 5, vector: [1, 2] }, 3),
    "vector",
    "vector dimension 2 does not match the collection dimension 3",
  );
  assert.deepEqual(validatePointRef({ id: 9, collection: "c", consistency: "all" }), {
    id: 9,
    collection: "c",
    consistency: "all",
    version: 0,
  });
  assert.deepEqual(validateSearchRequest({ vector: [1], k: 3, ef: 0, collection: "c" }), {
    vector: [1],
    k: 3,
    ef: 0,
    collection: "c",
    with_payload: false,
    with_vector: false,
    filter: null,
  });
  rejects(
    () => validateSearchRequest({ vector: [1], k: 0 }),
    "k",
    "k 0 must be between 1 and 10000",
  );
});

Deno.test("batches", () => {
  const ok = validatePutBatchRequest({
    points: [{ id: 1, vector: [1, 2] }, { id: 2, vector: [3, 4] }],
  });
  assert.equal(ok.points.length, 2);
  assert.equal(ok.collection, "default");
  rejects(() => validatePutBatchRequest({ points: [] }), "points", "points is empty");
  const many = new Array(20000).fill({ id: 1, vector: [1] });
  rejects(
    () => validatePutBatchRequest({ points: many }),
    "points",
    `points has 20000 entries; the limit is ${BATCH_POINTS_MAX}`,
  );
  rejects(
    () =>
      validatePutBatchRequest({ points: [{ id: 1, vector: [1, 2] }, { id: 2, vector: [1, NaN] }] }),
    "points[1].vector[1]",
    "points[1].vector[1] is NaN",
  );
  rejects(
    () => validatePutBatchRequest({ points: [{ id: 1, vector: [1, 2] }, { id: 2, vector: [1] }] }),
    "points[1].vector",
    "points[1].vector dimension 1 does not match the collection dimension 2",
  );
  rejects(
    () => validatePutBatchRequest({ points: [{ id: -3, vector: [1] }] }),
    "points[0].id",
    "points[0].id -3 is not an integer between 0 and 2^64 - 1",
  );
  rejects(
    () => validatePutBatchRequest({ points: [{ id: 1, vector: [1] }] }, 4),
    "points[0].vector",
    "points[0].vector dimension 1 does not match the collection dimension 4",
  );
});

Deno.test("create collection fills defaults and checks ranges", () => {
  assert.deepEqual(
    validateCreateCollectionRequest({
      name: "c",
      dimension: 100,
      metric: "",
      m: 0,
      ef_construction: 0,
    }),
    { name: "c", dimension: 100, metric: "l2", m: 16, ef_construction: 200 },
  );
  assert.deepEqual(
    validateCreateCollectionRequest({
      name: "c",
      dimension: 3,
      metric: "dot",
      m: 8,
      ef_construction: 8,
    }),
    { name: "c", dimension: 3, metric: "dot", m: 8, ef_construction: 8 },
  );
  rejects(
    () => validateCreateCollectionRequest({ name: "c", dimension: 0 }),
    "dimension",
    "dimension 0 must be between 1 and 65536",
  );
  rejects(
    () => validateCreateCollectionRequest({ name: "c", dimension: 2, m: 1 }),
    "m",
    "m 1 must be between 2 and 128 (0 selects 16)",
  );
  rejects(
    () => validateCreateCollectionRequest({ name: "c", dimension: 2, m: 32, ef_construction: 16 }),
    "ef_construction",
    "ef_construction 16 must be between 32 and 10000 (at least m; 0 selects 200)",
  );
});

Deno.test("versions: uint64 decimal strings or numbers, 0 .. 2^53 - 1", () => {
  assert.equal(VERSION_MAX, 2 ** 53 - 1);
  assert.equal(validateVersion(undefined), 0);
  assert.equal(validateVersion(""), 0);
  assert.equal(validateVersion("0"), 0);
  assert.equal(validateVersion("1741234567890123"), 1741234567890123);
  assert.equal(validateVersion("9007199254740991"), VERSION_MAX);
  assert.equal(validateVersion(42), 42);
  rejects(
    () => validateVersion("9007199254740993"),
    "version",
    'version "9007199254740993" is above 9007199254740991',
  );
  rejects(
    () => validateVersion("9007199254740992"),
    "version",
    'version "9007199254740992" is above 9007199254740991',
  );
  rejects(
    () => validateVersion("18446744073709551615"),
    "version",
    'version "18446744073709551615" is above 9007199254740991',
  );
  rejects(
    () => validateVersion(2 ** 53),
    "version",
    "version 9007199254740992 is above 9007199254740991",
  );
  rejects(() => validateVersion("1.5"), "version", 'version "1.5" is not an unsigned integer');
  rejects(() => validateVersion(-1), "version", "version -1 is not an unsigned integer");
  rejects(
    () => validateVersion(1.5, "points[2].version"),
    "points[2].version",
    "points[2].version 1.5 is not an unsigned integer",
  );
  assert.equal(validatePutRequest({ id: 1, vector: [1], version: "77" }).version, 77);
  assert.equal(validatePointRef({ id: 1, version: 78 }).version, 78);
  assert.equal(
    validatePutBatchRequest({ points: [{ id: 1, vector: [1] }], version: "79" }).version,
    79,
  );
  rejects(
    () => validatePointRef({ id: 1, version: "x" }),
    "version",
    'version "x" is not an unsigned integer',
  );
});

Deno.test("payloads: canonical bytes, or a ValidationError naming the field", () => {
  const put = validatePutRequest({ id: 1, vector: [1], payload: '{ "a" : [1, 2] }' });
  assert.equal(new TextDecoder().decode(put.payload!), '{"a":[1,2]}');
  assert.equal(validatePutRequest({ id: 1, vector: [1], payload: "" }).payload, null);
  rejects(
    () => validatePutRequest({ id: 1, vector: [1], payload: "[1]" }),
    "payload",
    'payload "[1]" must be a JSON object, got an array',
  );
  rejects(
    () => validatePutRequest({ id: 1, vector: [1], payload: 7 }),
    "payload",
    "payload must be a string of JSON text, got 7",
  );
  const batch = validatePutBatchRequest({
    points: [{ id: 1, vector: [1], payload: '{"x":1}' }, { id: 2, vector: [2], payload: "" }],
  });
  assert.deepEqual(batch.points.map((p) => p.payload?.length ?? null), [7, null]);
  rejects(
    () =>
      validatePutBatchRequest({
        points: [{ id: 1, vector: [1] }, { id: 2, vector: [2], payload: "{oops" }],
      }),
    "points[1].payload",
    /^points\[1\]\.payload "\{oops" is not valid JSON/,
  );
  const s = validateSearchRequest({ vector: [1], k: 1, with_payload: true });
  assert.equal(s.with_payload, true);
  assert.equal(s.with_vector, false);
  rejects(
    () => validateSearchRequest({ vector: [1], k: 1, with_vector: "yes" }),
    "with_vector",
    'with_vector "yes" must be true or false',
  );
});

Deno.test("point ids: integers up to 2^64 - 1 and string ids, errors naming the field", () => {
  assert.equal(validatePutRequest({ id: "18446744073709551615", vector: [1] }).id, 2n ** 64n - 1n);
  assert.equal(validatePutRequest({ id: "0", string_id: "doc", vector: [1] }).id, "doc");
  const batch = validatePutBatchRequest({
    points: [{ id: 1, vector: [1] }, { string_id: "é", vector: [1] }],
  });
  assert.deepEqual(batch.points.map((p) => p.id), [1, "é"]);
  rejects(
    () =>
      validatePutBatchRequest({
        points: [{ id: 1, vector: [1] }, { string_id: "x".repeat(129), vector: [1] }],
      }),
    "points[1].string_id",
    /over 128 bytes/,
  );
  rejects(() => validatePointRef({ id: "5", string_id: "a" }), "id", /must be 0 when string_id/);
  rejects(() => validatePointRef({ string_id: "\ud800" }), "string_id", /lone surrogate/);
  rejects(() => validatePointRef({ id: "18446744073709551616" }), "id", /2\^64 - 1/);
  assert.deepEqual(validatePointIds(["5", 2], ["a"], 3), [5, 2, "a"]);
  rejects(() => validatePointIds([1, 2], ["a", "b"], 3), "ids", /4 entries together/);
  rejects(() => validatePointIds([], [], 3), "ids", /0 entries/);
  rejects(() => validatePointIds([1], ["a", ""], 3), "string_ids[1]", /is empty/);
});

Deno.test("create collection: quantization and rescore are checked and defaulted", () => {
  const base = { name: "c", dimension: 8 };
  assert.deepEqual(
    validateCreateCollectionRequest({ ...base, quantization: "int8" }),
    {
      name: "c",
      dimension: 8,
      metric: "l2",
      m: 16,
      ef_construction: 200,
      quantization: "int8",
      rescore: 4,
    },
  );
  assert.equal(
    validateCreateCollectionRequest({ ...base, quantization: "int8", rescore: 9 }).rescore,
    9,
  );
  // "none" (or "") leaves both fields out, whatever rescore says.
  const none = validateCreateCollectionRequest({ ...base, quantization: "none", rescore: 7 });
  assert.equal(none.quantization, undefined);
  assert.equal(none.rescore, undefined);
  rejects(
    () => validateCreateCollectionRequest({ ...base, quantization: "int4" }),
    "quantization",
    'quantization "int4" must be one of "none", "int8"',
  );
  rejects(
    () => validateCreateCollectionRequest({ ...base, quantization: "int8", rescore: 1001 }),
    "rescore",
    "rescore 1001 must be between 1 and 1000 (0 selects 4)",
  );
});

/** `values` as vector_bytes (little-endian float32). */
const packed = (values: number[]) => packVector(Float32Array.from(values));

/** The ValidationError `fn` throws: its field and message. */
function refusal(fn: () => unknown): { field: string; message: string } {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ValidationError, String(e));
    return { field: e.field, message: e.message };
  }
  throw new Error("not refused");
}

Deno.test("vector_bytes: a Float32Array of the packed values, over the bytes when aligned", () => {
  const bytes = packed([0.5, -2, 3.25]);
  const v = validateVectorOrBytes([], bytes, "vector", 3);
  assert.ok(v instanceof Float32Array);
  assert.deepEqual(Array.from(v), [0.5, -2, 3.25]);
  assert.equal(v.buffer, bytes.buffer);
  // Unaligned (as in a message's buffer): an aligned copy with the same values.
  const odd = new Uint8Array(13);
  odd.set(bytes, 1);
  const u = validateVectorOrBytes(undefined, odd.subarray(1), "vector");
  assert.deepEqual(Array.from(u), [0.5, -2, 3.25]);
  // A Buffer in a larger pool (as protobufjs decodes it), unaligned.
  const pool = Buffer.alloc(64);
  pool.set(bytes, 9);
  assert.deepEqual(Array.from(validateVectorOrBytes([], pool.subarray(9, 21))), [0.5, -2, 3.25]);
  // Absent or empty bytes: the repeated floats, as before.
  assert.deepEqual(validateVectorOrBytes([1, 2], Buffer.alloc(0)), [1, 2]);
  assert.deepEqual(validateVectorOrBytes([1, 2], undefined), [1, 2]);
  assert.equal(vectorFieldName({ vector_bytes: bytes }), "vector_bytes");
  assert.equal(vectorFieldName({ vector_bytes: Buffer.alloc(0) }), "vector");
});

Deno.test("vector_bytes: refusals name the field and the value", () => {
  assert.deepEqual(refusal(() => validateVectorOrBytes([1, 2, 3], packed([1, 2, 3]))), {
    field: "vector_bytes",
    message: "vector (3 values) and vector_bytes (12 bytes) are both set; set exactly one",
  });
  assert.deepEqual(refusal(() => validateVectorOrBytes([], new Uint8Array(10))), {
    field: "vector_bytes",
    message: "vector_bytes has 10 bytes, not a multiple of 4 (one float32 is 4 bytes)",
  });
  assert.deepEqual(refusal(() => validateVectorOrBytes([], packed([1, 2]), "vector", 3)), {
    field: "vector_bytes",
    message: "vector_bytes dimension 2 (8 bytes) does not match the collection dimension 3",
  });
  assert.deepEqual(refusal(() => validateVectorOrBytes([], packed([1, NaN]))), {
    field: "vector_bytes[1]",
    message: "vector_bytes[1] is NaN",
  });
  assert.deepEqual(refusal(() => validateVectorOrBytes([], packed([-Infinity]))), {
    field: "vector_bytes[0]",
    message: "vector_bytes[0] is -Infinity",
  });
  assert.equal(refusal(() => validateVectorOrBytes([], "abcd")).field, "vector_bytes");
  // Neither set: the repeated field's message, as before.
  assert.equal(
    refusal(() => validateVectorOrBytes([], Buffer.alloc(0))).message,
    "vector is empty",
  );
});

Deno.test("vector_bytes in Search, Put and PutBatch requests, decoded by protobufjs", () => {
  const svc = VectorDBClient.service;
  const search = svc.Search.requestDeserialize(
    svc.Search.requestSerialize({ vector: [], vector_bytes: packed([1, 2]), k: 3 }),
  );
  assert.deepEqual(Array.from(validateSearchRequest(search, 2).vector), [1, 2]);
  assert.equal(
    refusal(() =>
      validateSearchRequest(
        svc.Search.requestDeserialize(
          svc.Search.requestSerialize({ vector: [1, 2], vector_bytes: packed([1, 2]), k: 3 }),
        ),
      )
    ).field,
    "vector_bytes",
  );
  const put = svc.Put.requestDeserialize(
    svc.Put.requestSerialize({ id: 4, vector: [], vector_bytes: packed([7, 8]) }),
  );
  assert.deepEqual(Array.from(validatePutRequest(put).vector), [7, 8]);
  assert.equal(refusal(() => validatePutRequest(put, 3)).field, "vector_bytes");
  const batch = svc.PutBatch.requestDeserialize(svc.PutBatch.requestSerialize({
    points: [{ id: 1, vector: [1, 2] }, { id: 2, vector: [], vector_bytes: packed([3, 4]) }],
  }));
  const b = validatePutBatchRequest(batch);
  assert.deepEqual(b.points.map((p) => Array.from(p.vector)), [[1, 2], [3, 4]]);
  assert.deepEqual(
    refusal(() =>
      validatePutBatchRequest({
        points: [{ id: 1, vector: [1, 2] }, { id: 2, vector: [], vector_bytes: packed([3]) }],
      })
    ),
    {
      field: "points[1].vector_bytes",
      message:
        "points[1].vector_bytes dimension 1 (4 bytes) does not match the collection dimension 2",
    },
  );
});
