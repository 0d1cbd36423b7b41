import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { decodePutBatchRequest } from "./batch_codec.ts";
import { VectorDBClient, vectorDbService } from "./proto.ts";
import { refusalOf } from "../common/wire_limits.ts";
import { Prng } from "../common/prng.ts";

const reference = VectorDBClient.service.PutBatch;

function randomRequest(r: Prng): Record<string, unknown> {
  const pick = <T>(xs: T[]) => xs[r.nextInt(xs.length)];
  const dim = 1 + r.nextInt(40);
  const req: Record<string, unknown> = {
    points: Array.from({ length: r.nextInt(20) }, () => ({
      id: pick([
        0,
        1,
        127,
        128,
        2 ** 28 - 1,
        2 ** 28,
        2 ** 31,
        2 ** 32 - 1,
        2 ** 32,
        r.nextInt(2 ** 31),
        "9007199254740993",
        "18446744073709551615",
        String(BigInt(r.nextInt(2 ** 31)) * 8_589_934_583n),
      ]),
      ...(r.nextInt(3) === 0
        ? { string_id: pick(["", "a", "doc-7", "größe-ü", "é".repeat(64), "\u{1F600}x"]) }
        : {}),
      vector: Array.from(
        { length: r.nextInt(3) === 0 ? 0 : dim },
        () => pick([0, -0, 1e-45, 3.4e38, -1.5, r.nextInt(1000) / 7, NaN, Infinity]),
      ),
      ...(r.nextInt(2)
        ? { payload: pick(["", "{}", '{"a":[1,"é"]}', "not json", "x".repeat(200)]) }
        : {}),
      // Packed vectors, of any length (validation, not decoding, checks it).
      ...(r.nextInt(3) === 0
        ? {
          vector_bytes: new Uint8Array(
            Float32Array.from({ length: r.nextInt(3) === 0 ? 0 : dim }, () => r.nextInt(100) / 3)
              .buffer,
          ).subarray(0, 4 * dim - r.nextInt(2)),
        }
        : {}),
    })),
  };
  if (r.nextInt(2)) req.collection = pick(["", "c", "default", "größe-ü", "x".repeat(300)]);
  if (r.nextInt(2)) req.consistency = pick(["", "one", "quorum", "all"]);
  if (r.nextInt(2)) {
    req.version = pick([0, 1, 2 ** 53 - 1, "9007199254740993", "18446744073709551615", 12345]);
  }
  if (r.nextInt(2)) req.shard_number = pick([0, 1, 3, 127, 128, 2 ** 31, 2 ** 32 - 1]);
  return req;
}

Deno.test("decodePutBatchRequest gives what protobufjs gives, for random requests", () => {
  const r = new Prng(11);
  for (let i = 0; i < 500; i++) {
    const bytes = reference.requestSerialize(randomRequest(r));
    assert.deepEqual(decodePutBatchRequest(bytes), reference.requestDeserialize(bytes), `#${i}`);
  }
});

Deno.test("decodePutBatchRequest: unpacked and split vectors, repeated and unknown fields, odd offsets", () => {
  const f32 = (x: number) => [...new Uint8Array(new Float32Array([x]).buffer)];
  const point = [
    0x08,
    0xff,
    0xff,
    0xff,
    0xff,
    0x7f, // id: a 5-byte varint, 2^35 - 1
    0x15,
    ...f32(1.5), // one unpacked float
    0x12,
    8,
    ...f32(2),
    ...f32(3), // a packed run
    0x15,
    ...f32(-4), // another unpacked one
    0x08,
    5, // the id again: the last one wins
    0x30,
    1, // unknown varint field 6
  ];
  const msg = [
    0x0a,
    point.length,
    ...point,
    0x12,
    1,
    0x61, // collection "a"
    0x12,
    1,
    0x62, // collection again: "b" wins
    0x58,
    0x80,
    0x80,
    0x80,
    0x80,
    0x80,
    0x80,
    0x80,
    0x80,
    0x80,
    0x01, // version 2^63
    0x7a,
    0, // unknown field 15, empty
  ];
  // At an odd offset inside a larger buffer, as grpc-js may hand it over.
  const big = Buffer.alloc(msg.length + 3);
  Buffer.from(msg).copy(big, 3);
  const bytes = big.subarray(3);
  const want = reference.requestDeserialize(bytes);
  assert.deepEqual(decodePutBatchRequest(bytes), want);
  assert.deepEqual(want.points[0], {
    id: "5",
    vector: [1.5, 2, 3, -4],
    payload: "",
    string_id: "",
    vector_bytes: Buffer.alloc(0),
  });
  assert.equal(want.collection, "b");
  assert.equal(want.version, "9223372036854775808");
  const high = Buffer.from([0x0a, 6, 0x08, 0xff, 0xff, 0xff, 0xff, 0x7f]);
  assert.deepEqual(decodePutBatchRequest(high), reference.requestDeserialize(high));
  assert.equal(decodePutBatchRequest(high).points[0].id, String(2 ** 35 - 1));
  // A 10-byte varint: 2^64 - 1 whole, and one whose bits above 64 are dropped as protobufjs does.
  for (const last of [0x01, 0x7f]) {
    const max = Buffer.from([0x0a, 11, 0x08, ...Array(9).fill(0xff), last]);
    assert.deepEqual(decodePutBatchRequest(max), reference.requestDeserialize(max));
    assert.equal(decodePutBatchRequest(max).points[0].id, "18446744073709551615");
  }
  // Invalid UTF-8 in a string id becomes U+FFFD, as protobufjs reads it (the id validator then
  // takes it as any other string).
  const bad = Buffer.from([0x0a, 4, 0x22, 2, 0xc3, 0x28]);
  assert.deepEqual(decodePutBatchRequest(bad), reference.requestDeserialize(bad));
  assert.equal(decodePutBatchRequest(bad).points[0].string_id, "\ufffd(");
});

Deno.test("decodePutBatchRequest refuses wire types its schema does not allow; the server says INVALID_ARGUMENT", () => {
  assert.throws(
    () => decodePutBatchRequest(new Uint8Array([0x08, 1])),
    /points \(field 1\) has wire type 0, not 2 at byte 0/,
  );
  assert.throws(
    () => decodePutBatchRequest(new Uint8Array([0x0a, 5, 0x12, 3, 1, 2, 3])),
    /points\[\]\.vector has 3 bytes, not 4 per float at byte 2/,
  );
  assert.throws(
    () => decodePutBatchRequest(new Uint8Array([0x5a, 0])),
    /version \(field 11\) has wire type 2, not 0/,
  );
  const r = refusalOf(
    vectorDbService.PutBatch.requestDeserialize(Buffer.from([0x12, 1, 0x61, 0x08, 1])),
  );
  assert.equal(r?.code, 3);
  assert.equal(
    r?.details,
    "PutBatch message of 5 bytes could not be decoded: points (field 1) has wire type 0, not 2 " +
      "at byte 3",
  );
  // The servers' PutBatch uses it.
  const ok = reference.requestSerialize({ points: [{ id: 3, vector: [1, 2] }], collection: "c" });
  assert.deepEqual(
    vectorDbService.PutBatch.requestDeserialize(ok),
    reference.requestDeserialize(ok),
  );
});

Deno.test("decodePutBatchRequest: payloads decode; one over PAYLOAD_BYTES_MAX is refused by its size", () => {
  const ok = reference.requestSerialize({
    points: [{ id: 1, vector: [1], payload: '{"k":"v"}' }, { id: 2, vector: [2] }],
  });
  const got = decodePutBatchRequest(ok);
  assert.deepEqual(got, reference.requestDeserialize(ok));
  assert.equal(got.points[0].payload, '{"k":"v"}');
  assert.equal(got.points[1].payload, "");
  const big = reference.requestSerialize({
    points: [{ id: 1, vector: [1] }, { id: 2, vector: [2], payload: "x".repeat(65_537) }],
  });
  const r = refusalOf(vectorDbService.PutBatch.requestDeserialize(big));
  assert.equal(r?.code, 3);
  assert.match(r?.details ?? "", /points\[1\]\.payload is 65537 bytes; the limit is 65536/);
});

Deno.test("decodePutBatchRequest: string ids decode; one over 128 bytes is refused by its size", () => {
  const ok = reference.requestSerialize({
    points: [{ string_id: "é".repeat(64), vector: [1] }, {
      id: "18446744073709551615",
      vector: [2],
    }],
  });
  const got = decodePutBatchRequest(ok);
  assert.deepEqual(got, reference.requestDeserialize(ok));
  assert.equal(got.points[0].string_id, "é".repeat(64));
  assert.equal(got.points[1].id, "18446744073709551615");
  const big = reference.requestSerialize({
    points: [{ id: 1, vector: [1] }, { string_id: "x".repeat(129), vector: [2] }],
  });
  const r = refusalOf(vectorDbService.PutBatch.requestDeserialize(big));
  assert.equal(r?.code, 3);
  assert.match(r?.details ?? "", /points\[1\]\.string_id is 129 bytes; the limit is 128/);
});

Deno.test("decodePutBatchRequest: vector_bytes is the point's bytes, a view as protobufjs gives", () => {
  const floats = new Float32Array([0.5, -2, 3.25]);
  const bytes = reference.requestSerialize({
    points: [{ id: 7, vector: [], vector_bytes: new Uint8Array(floats.buffer) }, { id: 8 }],
    collection: "c",
  });
  const got = decodePutBatchRequest(bytes);
  assert.deepEqual(got, reference.requestDeserialize(bytes));
  const packed = got.points[0].vector_bytes!;
  assert.equal(packed.length, 12);
  assert.deepEqual(
    Array.from(new Float32Array(Uint8Array.from(packed).buffer)),
    [0.5, -2, 3.25],
  );
  // No copy: the view lies in the message's buffer.
  assert.equal(packed.buffer, bytes.buffer);
  assert.equal(got.points[1].vector_bytes!.length, 0);
  // Another wire type for field 5 is refused, not read as garbage.
  const bad = Buffer.from([0x0a, 4, 0x08, 1, 0x28, 1]);
  assert.throws(() => decodePutBatchRequest(bad), /vector_bytes \(field 5\) has wire type 0/);
});
