import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { METHOD_NAMES, VECTORDB_REQUEST_LIMITS, VectorDBClient, vectorDbService } from "./proto.ts";
import { TRANSFER_REQUEST_LIMITS, transferService } from "./transfer.ts";
import {
  BATCH_POINTS_MAX,
  DIMENSION_MAX,
  GET_BATCH_MAX,
  SCAN_LIMIT_MAX,
  TRANSFER_REQUEST_BYTES_MAX,
  VECTORDB_REQUEST_BYTES_MAX,
} from "../common/limits.ts";
import { formatBytes, limitService, refusalOf } from "../common/wire_limits.ts";
import { validatePutBatchRequest, validateVector } from "./validate.ts";
import { validateDeleteBatchRequest, validateGetBatchRequest } from "./points_read.ts";
import { ID_STRING_BYTES_MAX } from "../common/point_id.ts";

/** `n` empty points (`0a 00`), the cheapest way to make a huge point count. */
function tinyPoints(n: number): Buffer {
  const b = Buffer.alloc(2 * n);
  for (let i = 0; i < b.length; i += 2) b[i] = 0x0a;
  return b;
}

Deno.test("request limits: every VectorDB and Transfer method has one, as in common/limits.ts", () => {
  assert.deepEqual(Object.keys(VECTORDB_REQUEST_LIMITS).sort(), [...METHOD_NAMES].sort());
  for (const m of METHOD_NAMES) {
    assert.equal(VECTORDB_REQUEST_LIMITS[m].bytes_max, VECTORDB_REQUEST_BYTES_MAX[m]);
  }
  for (const m of ["Scan", "CopyBatch", "Prune"] as const) {
    assert.equal(TRANSFER_REQUEST_LIMITS[m].bytes_max, TRANSFER_REQUEST_BYTES_MAX[m]);
  }
  // A Put or Search of DIMENSION_MAX floats fits, with its framing.
  const put = VectorDBClient.service.Put.requestSerialize({
    id: 4294967295,
    vector: new Array(DIMENSION_MAX).fill(1.5),
    collection: "c".repeat(64),
    consistency: "quorum",
    version: 2 ** 53 - 1,
  });
  assert.ok(put.length <= VECTORDB_REQUEST_BYTES_MAX.Put, `${put.length}`);
  const back = vectorDbService.Put.requestDeserialize(put);
  assert.equal(refusalOf(back), null);
  assert.equal(validateVector(back.vector).length, DIMENSION_MAX);
});

Deno.test("request limits: an oversized message of every kind → RESOURCE_EXHAUSTED naming it", () => {
  const services: [grpc.ServiceDefinition, Record<string, number>][] = [
    [vectorDbService, VECTORDB_REQUEST_BYTES_MAX],
    [transferService, TRANSFER_REQUEST_BYTES_MAX],
  ];
  for (const [service, table] of services) {
    for (const [method, max] of Object.entries(table)) {
      const r = refusalOf(service[method].requestDeserialize(Buffer.alloc(max + 1)));
      assert.ok(r !== null, method);
      assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED, method);
      const size = formatBytes(max + 1) === formatBytes(max)
        ? `${max + 1} bytes`
        : formatBytes(max + 1);
      assert.match(r.details, new RegExp(`^${method} message of ${size} exceeds the limit of `));
    }
  }
  assert.equal(
    refusalOf(vectorDbService.Get.requestDeserialize(Buffer.alloc(5000)))?.details,
    "Get message of 4.9 KiB exceeds the limit of 4 KiB",
  );
});

Deno.test("request limits: 7.8 million tiny points are refused before the protobuf decoder runs", () => {
  let decoder_calls = 0;
  const real = VectorDBClient.service.PutBatch;
  const spied = limitService(
    {
      PutBatch: {
        ...real,
        requestDeserialize: (b: Buffer) => {
          decoder_calls++;
          return real.requestDeserialize(b);
        },
      },
    } as unknown as grpc.ServiceDefinition,
    { PutBatch: VECTORDB_REQUEST_LIMITS.PutBatch },
  );
  const bytes = tinyPoints(7_800_000);
  const r = refusalOf(spied.PutBatch.requestDeserialize(bytes));
  assert.deepEqual(r, {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: `PutBatch.points has more than ${BATCH_POINTS_MAX} points (the limit) in a ` +
      `message of 14.9 MiB`,
  });
  assert.equal(decoder_calls, 0);
  // The limit itself still decodes (and the validator then checks the points).
  const ok = spied.PutBatch.requestDeserialize(tinyPoints(BATCH_POINTS_MAX));
  assert.equal(decoder_calls, 1);
  assert.equal(refusalOf(ok), null);
  assert.throws(() => validatePutBatchRequest(ok), /points\[0\]\.vector is empty/);
});

Deno.test("request limits: CopyBatch and Prune lists are counted before decoding", () => {
  const copy = Buffer.alloc(2 * (SCAN_LIMIT_MAX + 1));
  for (let i = 0; i < copy.length; i += 2) copy[i] = 0x1a; // field 3 (points), empty
  assert.deepEqual(refusalOf(transferService.CopyBatch.requestDeserialize(copy)), {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: `CopyBatch.points has more than ${SCAN_LIMIT_MAX} points (the limit) in a message ` +
      `of 8 KiB`,
  });
  const ids = Buffer.alloc(2 * (SCAN_LIMIT_MAX + 1));
  for (let i = 0; i < ids.length; i += 2) ids[i] = 0x18; // field 3 (ids) unpacked, value 0
  assert.equal(
    refusalOf(transferService.Prune.requestDeserialize(ids))?.details,
    `Prune.ids has more than ${SCAN_LIMIT_MAX} ids (the limit) in a message of 8 KiB`,
  );
  // A real CopyBatch and Prune pass and decode as before.
  const c = TRANSFER_REQUEST_LIMITS.CopyBatch;
  assert.equal(c.repeated?.[0].max, SCAN_LIMIT_MAX);
  const raw = transferService.CopyBatch.requestSerialize({
    collection: "c",
    points: [{ id: 1, vector: [1, 2], version: "5", deleted: false }],
  });
  const decoded = transferService.CopyBatch.requestDeserialize(raw);
  assert.equal(refusalOf(decoded), null);
  assert.deepEqual(decoded.points[0].vector, [1, 2]);
});

Deno.test("request limits: malformed bytes → INVALID_ARGUMENT, before or after the scan", () => {
  const truncated = refusalOf(vectorDbService.Put.requestDeserialize(Buffer.from([0x12, 0x09])));
  assert.equal(truncated?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(truncated!.details, /^Put message of 2 bytes is not valid protobuf: field 2 runs/);
  // Passes the scan (3 bytes of packed floats) but protobufjs cannot read a float from it.
  const odd = refusalOf(vectorDbService.Put.requestDeserialize(Buffer.from([0x12, 3, 1, 2, 3])));
  assert.equal(odd?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(odd!.details, /^Put message of 5 bytes could not be decoded: /);
});

Deno.test("request limits: an unpacked vector in a batch point is refused, packed ones pass", () => {
  const point = [0x08, 1];
  for (let i = 0; i < 20; i++) point.push(0x15, 0, 0, 0x80, 0x3f); // vector, unpacked
  const bytes = Buffer.from([0x0a, point.length, ...point]);
  assert.equal(
    refusalOf(vectorDbService.PutBatch.requestDeserialize(bytes))?.details,
    "PutBatch.points[0] has more than 16 wire fields (the limit; vectors must be packed)",
  );
  const packed = VectorDBClient.service.PutBatch.requestSerialize({
    points: [{ id: 1, vector: new Array(20).fill(1) }],
  });
  const decoded = vectorDbService.PutBatch.requestDeserialize(packed);
  assert.equal(refusalOf(decoded), null);
  assert.equal(decoded.points[0].vector.length, 20);
});

Deno.test("request limits: the longest string ids fit GetBatch, DeleteBatch, Prune, Scan and Entries", () => {
  // Distinct ASCII ids of exactly ID_STRING_BYTES_MAX bytes.
  const longest = (n: number, tag: string) =>
    Array.from({ length: n }, (_, i) => `${tag}${i}-`.padEnd(ID_STRING_BYTES_MAX, "x"));
  const fits = (service: grpc.ServiceDefinition, method: string, request: unknown) => {
    const bytes = service[method].requestSerialize(request);
    const back = service[method].requestDeserialize(bytes);
    assert.equal(refusalOf(back), null, `${method} of ${bytes.length} bytes`);
    return back;
  };
  const ids = longest(GET_BATCH_MAX, "g");
  assert.ok(ids.every((s) => new TextEncoder().encode(s).length === ID_STRING_BYTES_MAX));
  const get = fits(vectorDbService, "GetBatch", {
    collection: "c".repeat(64),
    string_ids: ids,
    with_vector: true,
    with_payload: true,
  });
  assert.equal(validateGetBatchRequest(get).ids.length, GET_BATCH_MAX);
  const del = fits(vectorDbService, "DeleteBatch", {
    collection: "c".repeat(64),
    string_ids: longest(BATCH_POINTS_MAX, "d"),
    consistency: "quorum",
    version: "1000000000000000", // 8 bytes as a varint, as 2^53 - 1 is
  });
  assert.equal(validateDeleteBatchRequest(del).ids.length, BATCH_POINTS_MAX);
  const prune = fits(transferService, "Prune", {
    collection: "c".repeat(64),
    string_ids: longest(SCAN_LIMIT_MAX, "p"),
    versions: new Array(SCAN_LIMIT_MAX).fill("9007199254740991"),
  });
  assert.equal(prune.string_ids.length, SCAN_LIMIT_MAX);
  const cursor = longest(1, "z")[0];
  fits(transferService, "Scan", {
    collection: "c".repeat(64),
    after_string_id: cursor,
    limit: SCAN_LIMIT_MAX,
  });
  fits(transferService, "Entries", {
    collection: "c".repeat(64),
    after_string_id: cursor,
    limit: 10_000,
    filter: "f".repeat(16 * 1024),
  });
  // Each list is still counted before decoding: one string id too many is refused.
  const over = Buffer.alloc(2 * (GET_BATCH_MAX + 1));
  for (let i = 0; i < over.length; i += 2) over[i] = 0x2a; // field 5 (string_ids), empty
  assert.equal(
    refusalOf(vectorDbService.GetBatch.requestDeserialize(over))?.details,
    `GetBatch.string_ids has more than ${GET_BATCH_MAX} ids (the limit) in a message of ` +
      `${formatBytes(over.length)}`,
  );
  const pruneOver = Buffer.alloc(2 * (SCAN_LIMIT_MAX + 1));
  for (let i = 0; i < pruneOver.length; i += 2) pruneOver[i] = 0x2a; // field 5 (string_ids)
  assert.equal(
    refusalOf(transferService.Prune.requestDeserialize(pruneOver))?.details,
    `Prune.string_ids has more than ${SCAN_LIMIT_MAX} ids (the limit) in a message of 8 KiB`,
  );
});
