import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import {
  checkRequestBytes,
  formatBytes,
  limitService,
  refusalOf,
  RefusedRequest,
  type RequestLimit,
} from "./wire_limits.ts";

/** A protobuf varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited field. */
function ld(field: number, body: number[]): number[] {
  return [...varint(field * 8 + 2), ...varint(body.length), ...body];
}

const BATCH: RequestLimit = {
  bytes_max: 1024,
  repeated: [{ field: 1, name: "points", max: 3, unit: "points", element_fields_max: 4 }],
  fields_max: 2,
};

Deno.test("formatBytes: bytes, KiB and MiB with one decimal", () => {
  assert.equal(formatBytes(812), "812 bytes");
  assert.equal(formatBytes(4096), "4 KiB");
  assert.equal(formatBytes(266_240), "260 KiB");
  assert.equal(formatBytes(Math.round(40.2 * 2 ** 20)), "40.2 MiB");
  assert.equal(formatBytes(64 * 2 ** 20), "64 MiB");
});

Deno.test("checkRequestBytes: a request within every limit passes", () => {
  const point = [8, 7, ...ld(2, [0, 0, 128, 63])]; // id 7, vector [1]
  const bytes = new Uint8Array([...ld(1, point), ...ld(1, point), ...ld(2, [104, 105])]);
  assert.equal(checkRequestBytes("PutBatch", bytes, BATCH), null);
  assert.equal(checkRequestBytes("PutBatch", new Uint8Array(0), BATCH), null);
});

Deno.test("checkRequestBytes: too many bytes → RESOURCE_EXHAUSTED naming method, size and limit", () => {
  const r = checkRequestBytes("PutBatch", new Uint8Array(1025), BATCH)!;
  assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(r.details, "PutBatch message of 1025 bytes exceeds the limit of 1024 bytes");
  const big = checkRequestBytes(
    "PutBatch",
    new Uint8Array(Math.round(40.2 * 2 ** 20)),
    { bytes_max: 32 * 2 ** 20 },
  )!;
  assert.equal(big.details, "PutBatch message of 40.2 MiB exceeds the limit of 32 MiB");
});

Deno.test("checkRequestBytes: more points than the limit are refused at the first one over", () => {
  const bytes = new Uint8Array(ld(1, []).concat(ld(1, []), ld(1, []), ld(1, [8, 1]), ld(1, [])));
  const r = checkRequestBytes("PutBatch", bytes, BATCH)!;
  assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(
    r.details,
    "PutBatch.points has more than 3 points (the limit) in a message of 12 bytes",
  );
});

Deno.test("checkRequestBytes: a point with too many fields (an unpacked vector) is refused", () => {
  const unpacked = [8, 1, 21, 0, 0, 128, 63, 21, 0, 0, 128, 63, 21, 0, 0, 128, 63, 21, 0, 0, 0, 0];
  const bytes = new Uint8Array([...ld(1, [8, 1]), ...ld(1, unpacked)]);
  const r = checkRequestBytes("PutBatch", bytes, BATCH)!;
  assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(
    r.details,
    "PutBatch.points[1] has more than 4 wire fields (the limit; vectors must be packed)",
  );
});

Deno.test("checkRequestBytes: repeated singular fields beyond fields_max are refused", () => {
  const bytes = new Uint8Array([...ld(2, []), ...ld(2, []), ...ld(2, []), ...ld(1, [])]);
  const r = checkRequestBytes("PutBatch", bytes, BATCH)!;
  assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(
    r.details,
    "PutBatch message has more than 2 wire fields besides points (the limit)",
  );
  const plain = checkRequestBytes("Get", new Uint8Array([8, 1, 8, 2, 8, 3]), {
    bytes_max: 100,
    fields_max: 2,
  })!;
  assert.equal(plain.details, "Get message has more than 2 wire fields (the limit)");
});

Deno.test("checkRequestBytes: malformed wire data → INVALID_ARGUMENT with the place", () => {
  const cases: [number[], RegExp][] = [
    [[0x0a, 0x05, 0x08], /field 1 runs past the end at byte 0$/],
    [[0x08], /truncated varint at byte 1$/],
    [[0x08, ...new Array(11).fill(0xff)], /varint longer than 10 bytes at byte 1$/],
    [[0x0b, 0x0c], /wire type 3 of field 1 \(groups are not used\) at byte 0$/],
    [[0x0e], /wire type 6 of field 1/],
    [[0x00, 0x01], /field number 0 at byte 0$/],
    [[0x0a, 0x02, 0x0b, 0x00], /wire type 3 of field 1 .* at byte 2$/], // inside a point
  ];
  for (const [bytes, want] of cases) {
    const r = checkRequestBytes("PutBatch", new Uint8Array(bytes), BATCH);
    assert.ok(r !== null, `${bytes} passed`);
    assert.equal(r.code, grpc.status.INVALID_ARGUMENT, r.details);
    assert.match(r.details, /^PutBatch message of \d+ bytes is not valid protobuf: /);
    assert.match(r.details, want);
  }
});

Deno.test("limitService: a refused request never reaches the decoder; decoder errors become INVALID_ARGUMENT", () => {
  let decoded = 0;
  const definition = {
    Put: {
      path: "/t.T/Put",
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
      requestDeserialize: (b: Buffer) => {
        decoded++;
        if (b[0] === 0x08 && b[1] === 0x63) throw new RangeError("index out of range: 99");
        return { bytes: b.length };
      },
      responseSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
      responseDeserialize: (b: Buffer) => JSON.parse(b.toString()),
    },
  } as unknown as grpc.ServiceDefinition;
  const limited = limitService(definition, { Put: { bytes_max: 8 } });
  assert.notEqual(limited, definition);
  assert.equal(limited.Put.path, "/t.T/Put");
  assert.equal(limited.Put.requestSerialize, definition.Put.requestSerialize);

  assert.deepEqual(limited.Put.requestDeserialize(Buffer.from([8, 1])), { bytes: 2 });
  assert.equal(decoded, 1);

  const big = limited.Put.requestDeserialize(Buffer.alloc(9));
  assert.ok(big instanceof RefusedRequest);
  assert.deepEqual(refusalOf(big), {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: "Put message of 9 bytes exceeds the limit of 8 bytes",
  });
  const bad = limited.Put.requestDeserialize(Buffer.from([0x0a, 0x09]));
  assert.equal(refusalOf(bad)?.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(decoded, 1, "the decoder ran on a refused request");

  const throws = limited.Put.requestDeserialize(Buffer.from([0x08, 0x63]));
  assert.deepEqual(refusalOf(throws), {
    code: grpc.status.INVALID_ARGUMENT,
    details: "Put message of 2 bytes could not be decoded: index out of range: 99",
  });
  assert.equal(refusalOf({ id: 1 }), null);
  assert.equal(refusalOf(undefined), null);
});

Deno.test("limitService: every method needs a limit, and no limit may name an unknown method", () => {
  const def = {
    A: { path: "/t.T/A", requestDeserialize: () => ({}) },
  } as unknown as grpc.ServiceDefinition;
  assert.throws(() => limitService(def, {}), /No request limit for method \/t\.T\/A/);
  assert.throws(
    () => limitService(def, { A: { bytes_max: 1 }, B: { bytes_max: 1 } }),
    /Request limit for unknown method B/,
  );
});
