/**
 * A hand-written decoder of `PutBatchRequest` (proto/vector_db.proto) for the servers.
 *
 * protobufjs reads a packed float list one value at a time through its generic reader (~100 ns
 * a float under Node 20): a 4 MB batch of 10,000 points x 100 dimensions held a node's event
 * loop for 110-250 ms, a 64 MiB one for over a second, and every Get waited behind it. This
 * decoder reads the floats with a DataView straight into preallocated arrays and returns the
 * object proto-loader would (`keepCase`, `longs: String`, `defaults`, `arrays`):
 *
 * | field           | wire                                 | result                           |
 * |-----------------|--------------------------------------|----------------------------------|
 * | 1 points        | messages                             | `Point[]`, `[]` if none          |
 * | points[].id     | varint (uint64)                      | decimal string, "0" if absent    |
 * | points[].vector | packed floats, or one float a field  | number[], `[]` if absent         |
 * | points[].payload (3) | UTF-8 string, at most PAYLOAD_BYTES_MAX bytes | string, "" if absent |
 * | points[].string_id (4) | UTF-8 string, at most ID_STRING_BYTES_MAX bytes | string, "" if absent |
 * | points[].vector_bytes (5) | bytes (packed little-endian float32) | Buffer over the message's bytes (no copy), empty if absent |
 * | 2 collection    | UTF-8 string                         | string, "" if absent             |
 * | 10 consistency  | UTF-8 string                         | string, "" if absent             |
 * | 11 version      | varint (uint64)                      | decimal string, "0" if absent    |
 * | 12 shard_number | varint (uint32)                      | number, 0 if absent              |
 *
 * As protobufjs: a singular field that appears twice keeps the last value; unknown fields are
 * skipped. Stricter: a known field with another wire type, or a packed list whose length is not
 * a multiple of 4, throws (the server answers INVALID_ARGUMENT) where protobufjs would read
 * garbage. A payload longer than PAYLOAD_BYTES_MAX bytes, or a string id longer than
 * ID_STRING_BYTES_MAX bytes, throws naming the point before its bytes are decoded
 * (common/payload.ts checks the rest of a payload; common/point_id.ts the rest of an id). Invalid
 * UTF-8 becomes U+FFFD, as protobufjs (Buffer's `utf8Slice`) and TextDecoder both do.
 * proto/vector_db.proto is the reference: a test decodes random messages both ways.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { type Field, nextField } from "../common/wire_limits.ts";
import type { Point, PutBatchRequest } from "./proto.ts";
import { PAYLOAD_BYTES_MAX } from "../common/limits.ts";
import { ID_STRING_BYTES_MAX } from "../common/point_id.ts";

const utf8 = new TextDecoder();
/** An absent bytes field (proto-loader's `defaults`: an empty Buffer). */
export const EMPTY: Buffer = Buffer.alloc(0);

/** Malformed for this schema at byte `at`. */
export function fail(at: number, message: string): never {
  throw new Error(`${message} at byte ${at}`);
}

/** Throws (see {@link fail}) unless field `f` has wire type `want`. */
export function expectWire(f: Field, want: number, name: string, at: number): void {
  if (f.wire_type !== want) {
    fail(at, `${name} (field ${f.number}) has wire type ${f.wire_type}, not ${want}`);
  }
}

/** The low 32 bits of the varint in `b[from, to)`, unsigned (protobufjs's `uint32()`). */
export function uint32(b: Uint8Array, from: number, to: number): number {
  let v = 0;
  const end = Math.min(to, from + 5);
  for (let i = from, shift = 0; i < end; i++, shift += 7) v |= (b[i] & 0x7f) << shift;
  return v >>> 0;
}

/**
 * The varint in `b[from, to)` as an unsigned 64-bit decimal string (bits above 64 dropped, as
 * protobufjs's `uint64()` with `longs: String` does).
 */
export function uint64(b: Uint8Array, from: number, to: number): string {
  if (to - from <= 4) {
    // Up to 28 bits: exact as a number, and most ids are this short.
    let n = 0;
    for (let i = to - 1; i >= from; i--) n = n * 128 + (b[i] & 0x7f);
    return String(n);
  }
  let v = 0n;
  for (let i = to - 1; i >= from; i--) v = (v << 7n) | BigInt(b[i] & 0x7f);
  return BigInt.asUintN(64, v).toString();
}

function decodePoint(
  b: Uint8Array,
  view: DataView,
  from: number,
  to: number,
  index: number,
): Point {
  const f: Field = { number: 0, wire_type: 0, from: 0, to: 0 };
  let id = "0";
  let string_id = "";
  let vector: number[] = [];
  let payload = "";
  let vector_bytes = EMPTY;
  for (let pos = from; pos < to;) {
    const at = pos;
    pos = nextField(b, pos, to, f);
    if (f.number === 1) {
      expectWire(f, 0, "points[].id", at);
      id = uint64(b, f.from, f.to);
    } else if (f.number === 2) {
      if (f.wire_type === 5) {
        vector.push(view.getFloat32(f.from, true));
        continue;
      }
      expectWire(f, 2, "points[].vector", at);
      const n = (f.to - f.from) / 4;
      if (!Number.isInteger(n)) {
        fail(at, `points[].vector has ${f.to - f.from} bytes, not 4 per float`);
      }
      const start = vector.length;
      if (start === 0) vector = new Array(n);
      else vector.length = start + n;
      for (let i = 0; i < n; i++) vector[start + i] = view.getFloat32(f.from + 4 * i, true);
    } else if (f.number === 3) {
      expectWire(f, 2, "points[].payload", at);
      if (f.to - f.from > PAYLOAD_BYTES_MAX) {
        throw new RangeError(
          `points[${index}].payload is ${f.to - f.from} bytes; the limit is ${PAYLOAD_BYTES_MAX}`,
        );
      }
      payload = utf8.decode(b.subarray(f.from, f.to));
    } else if (f.number === 4) {
      expectWire(f, 2, "points[].string_id", at);
      if (f.to - f.from > ID_STRING_BYTES_MAX) {
        throw new RangeError(
          `points[${index}].string_id is ${f.to - f.from} bytes; the limit is ` +
            `${ID_STRING_BYTES_MAX}`,
        );
      }
      string_id = utf8.decode(b.subarray(f.from, f.to));
    } else if (f.number === 5) {
      expectWire(f, 2, "points[].vector_bytes", at);
      // A view, as protobufjs gives: api/validate.ts reads it as float32 (copying if unaligned).
      vector_bytes = Buffer.from(b.buffer, b.byteOffset + f.from, f.to - f.from);
    }
  }
  return { id, vector, payload, string_id, vector_bytes };
}

/** Decodes a `PutBatchRequest` as proto-loader would (see the module comment). */
export function decodePutBatchRequest(b: Uint8Array): Required<PutBatchRequest> {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const f: Field = { number: 0, wire_type: 0, from: 0, to: 0 };
  const out: Required<PutBatchRequest> = {
    points: [],
    collection: "",
    consistency: "",
    version: "0",
    shard_number: 0,
  };
  for (let pos = 0; pos < b.length;) {
    const at = pos;
    pos = nextField(b, pos, b.length, f);
    switch (f.number) {
      case 1:
        expectWire(f, 2, "points", at);
        out.points.push(decodePoint(b, view, f.from, f.to, out.points.length));
        break;
      case 2:
        expectWire(f, 2, "collection", at);
        out.collection = utf8.decode(b.subarray(f.from, f.to));
        break;
      case 10:
        expectWire(f, 2, "consistency", at);
        out.consistency = utf8.decode(b.subarray(f.from, f.to));
        break;
      case 11:
        expectWire(f, 0, "version", at);
        out.version = uint64(b, f.from, f.to);
        break;
      case 12:
        expectWire(f, 0, "shard_number", at);
        out.shard_number = uint32(b, f.from, f.to);
        break;
    }
  }
  return out;
}
