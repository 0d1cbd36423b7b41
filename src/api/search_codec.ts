/**
 * Hand-written encoders and decoders of the search messages (proto/vector_db.proto:
 * `SearchRequest`, `SearchResponse` and their batches), used as the gRPC serializers of Search
 * and SearchBatch by every client and server of `vectordb.VectorDB` (api/proto.ts).
 *
 * Why: protobufjs converts each message twice (`fromObject` then `encode`; `decode` then
 * `toObject`), and every uint64 id goes through a `Long` and its decimal string both ways. On
 * the router a query crosses four such conversions (the client's request, the node's request,
 * the node's answer, the client's answer), which a CPU profile of the router showed among its
 * largest costs after grpc-js itself. These functions read and write the wire format directly.
 *
 * Decoders return exactly the objects proto-loader's options give (api/proto.ts
 * `LOADER_OPTIONS`: `keepCase`, `longs: String`, `defaults`, `arrays`; bytes as a Buffer over
 * the message's bytes, no copy); a test decodes random messages both ways. As protobufjs: a
 * singular field that appears twice keeps the last value, unknown fields are skipped, packed
 * and unpacked repeated scalars are both read. Stricter: a known field with another wire type,
 * or a packed float list whose length is not a multiple of 4, throws (a server answers
 * INVALID_ARGUMENT, common/wire_limits.ts) where protobufjs would read garbage.
 *
 * Encoders take what protobufjs's `fromObject` takes for these messages (numbers, decimal
 * strings, bigints or Long-like objects for ids; `null`/absent for unset fields; number arrays or
 * typed arrays for vectors; Uint8Array, number arrays or base64 for bytes) and write fields in
 * field-number order; a field equal to its proto3 default is left out (a distance is always
 * written), which every decoder reads back as the same value. A message is built in one
 * scratch buffer (kept for the next call while at most {@link SCRATCH_KEEP_BYTES}) and copied out
 * once.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { type Field, nextField } from "../common/wire_limits.ts";
import type {
  SearchBatchRequest,
  SearchBatchResponse,
  SearchRequest,
  SearchResponse,
  SearchResult,
} from "./proto.ts";
import { EMPTY, expectWire, fail, uint32, uint64 } from "./batch_codec.ts";

// ---------------------------------------------------------------------------------------------
// Decoding

// ignoreBOM: a leading U+FEFF is kept, as protobufjs keeps it.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

function text(b: Uint8Array, from: number, to: number): string {
  return from === to ? "" : utf8.decode(b.subarray(from, to));
}

/** Appends the floats of field `f` (packed, or one unpacked value) to `out`. */
function readFloats(
  view: DataView,
  f: Field,
  out: number[],
  name: string,
  at: number,
): number[] {
  if (f.wire_type === 5) {
    out.push(view.getFloat32(f.from, true));
    return out;
  }
  expectWire(f, 2, name, at);
  const bytes = f.to - f.from;
  if (bytes % 4 !== 0) fail(at, `${name} has ${bytes} bytes, not 4 per float`);
  const n = bytes / 4;
  const start = out.length;
  if (start === 0) out = new Array(n);
  else out.length = start + n;
  for (let i = 0; i < n; i++) out[start + i] = view.getFloat32(f.from + 4 * i, true);
  return out;
}

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function decodeRequestAt(
  b: Uint8Array,
  view: DataView,
  from: number,
  to: number,
): Required<SearchRequest> {
  const f: Field = { number: 0, wire_type: 0, from: 0, to: 0 };
  const out: Required<SearchRequest> = {
    vector: [],
    k: 0,
    collection: "",
    ef: 0,
    filter: "",
    with_payload: false,
    with_vector: false,
    exact: false,
    vector_bytes: EMPTY,
    shards: [],
  };
  for (let pos = from; pos < to;) {
    const at = pos;
    pos = nextField(b, pos, to, f);
    switch (f.number) {
      case 1:
        out.vector = readFloats(view, f, out.vector, "vector", at);
        break;
      case 2:
        expectWire(f, 0, "k", at);
        out.k = uint32(b, f.from, f.to);
        break;
      case 3:
        expectWire(f, 2, "collection", at);
        out.collection = text(b, f.from, f.to);
        break;
      case 4:
        expectWire(f, 0, "ef", at);
        out.ef = uint32(b, f.from, f.to);
        break;
      case 5:
        expectWire(f, 2, "filter", at);
        out.filter = text(b, f.from, f.to);
        break;
      case 6:
        expectWire(f, 0, "with_payload", at);
        out.with_payload = uint32(b, f.from, f.to) !== 0;
        break;
      case 7:
        expectWire(f, 0, "with_vector", at);
        out.with_vector = uint32(b, f.from, f.to) !== 0;
        break;
      case 8:
        expectWire(f, 0, "exact", at);
        out.exact = uint32(b, f.from, f.to) !== 0;
        break;
      case 9:
        expectWire(f, 2, "vector_bytes", at);
        // A view, as protobufjs gives: api/validate.ts reads it as float32 (copying if unaligned).
        out.vector_bytes = f.to === f.from
          ? Buffer.alloc(0)
          : Buffer.from(b.buffer, b.byteOffset + f.from, f.to - f.from);
        break;
      case 10:
        if (f.wire_type === 0) {
          out.shards.push(uint32(b, f.from, f.to));
          break;
        }
        expectWire(f, 2, "shards", at);
        for (let p = f.from; p < f.to;) {
          const start = p;
          while (p < f.to && b[p] >= 0x80) p++;
          if (p >= f.to) fail(start, "shards has a truncated varint");
          p++;
          out.shards.push(uint32(b, start, p));
        }
        break;
    }
  }
  return out;
}

function decodeResultAt(
  b: Uint8Array,
  view: DataView,
  from: number,
  to: number,
): Required<SearchResult> {
  const f: Field = { number: 0, wire_type: 0, from: 0, to: 0 };
  const out: Required<SearchResult> = {
    id: "0",
    distance: 0,
    payload: "",
    vector: [],
    string_id: "",
  };
  for (let pos = from; pos < to;) {
    const at = pos;
    pos = nextField(b, pos, to, f);
    switch (f.number) {
      case 1:
        expectWire(f, 0, "results[].id", at);
        out.id = uint64(b, f.from, f.to);
        break;
      case 2:
        expectWire(f, 5, "results[].distance", at);
        out.distance = view.getFloat32(f.from, true);
        break;
      case 3:
        expectWire(f, 2, "results[].payload", at);
        out.payload = text(b, f.from, f.to);
        break;
      case 4:
        out.vector = readFloats(view, f, out.vector, "results[].vector", at);
        break;
      case 5:
        expectWire(f, 2, "results[].string_id", at);
        out.string_id = text(b, f.from, f.to);
        break;
    }
  }
  return out;
}

function decodeResponseAt(
  b: Uint8Array,
  view: DataView,
  from: number,
  to: number,
): Required<SearchResponse> {
  const f: Field = { number: 0, wire_type: 0, from: 0, to: 0 };
  const out: Required<SearchResponse> = {
    results: [],
    partial: false,
    shards_answered: 0,
    shards_total: 0,
    nodes_answered: [],
    shard_searches: 0,
  };
  for (let pos = from; pos < to;) {
    const at = pos;
    pos = nextField(b, pos, to, f);
    switch (f.number) {
      case 1:
        expectWire(f, 2, "results", at);
        out.results.push(decodeResultAt(b, view, f.from, f.to));
        break;
      case 2:
        expectWire(f, 0, "partial", at);
        out.partial = uint32(b, f.from, f.to) !== 0;
        break;
      case 3:
        expectWire(f, 0, "shards_answered", at);
        out.shards_answered = uint32(b, f.from, f.to);
        break;
      case 4:
        expectWire(f, 0, "shards_total", at);
        out.shards_total = uint32(b, f.from, f.to);
        break;
      case 5:
        expectWire(f, 2, "nodes_answered", at);
        out.nodes_answered.push(text(b, f.from, f.to));
        break;
      case 6:
        expectWire(f, 0, "shard_searches", at);
        out.shard_searches = uint32(b, f.from, f.to);
        break;
    }
  }
  return out;
}

/** Decodes a `SearchRequest` as proto-loader would (see the module comment). */
export function decodeSearchRequest(b: Uint8Array): Required<SearchRequest> {
  return decodeRequestAt(b, viewOf(b), 0, b.length);
}

/** Decodes a `SearchResponse` as proto-loader would. */
export function decodeSearchResponse(b: Uint8Array): Required<SearchResponse> {
  return decodeResponseAt(b, viewOf(b), 0, b.length);
}

/** The messages of repeated field 1 (`name`) of `b`, each decoded by `decodeAt`. */
function decodeRepeated<T>(
  b: Uint8Array,
  name: string,
  decodeAt: (b: Uint8Array, view: DataView, from: number, to: number) => T,
): T[] {
  const view = viewOf(b);
  const f: Field = { number: 0, wire_type: 0, from: 0, to: 0 };
  const out: T[] = [];
  for (let pos = 0; pos < b.length;) {
    const at = pos;
    pos = nextField(b, pos, b.length, f);
    if (f.number !== 1) continue;
    expectWire(f, 2, name, at);
    out.push(decodeAt(b, view, f.from, f.to));
  }
  return out;
}

/** Decodes a `SearchBatchRequest` as proto-loader would. */
export function decodeSearchBatchRequest(b: Uint8Array): Required<SearchBatchRequest> {
  return { searches: decodeRepeated(b, "searches", decodeRequestAt) };
}

/** Decodes a `SearchBatchResponse` as proto-loader would. */
export function decodeSearchBatchResponse(b: Uint8Array): Required<SearchBatchResponse> {
  return { results: decodeRepeated(b, "results", decodeResponseAt) };
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** A scratch buffer larger than this after an encode is dropped (not kept for the next). */
export const SCRATCH_KEEP_BYTES = 1 << 20;
const SCRATCH_BYTES = 64 * 1024;

let buf: Buffer = Buffer.allocUnsafe(SCRATCH_BYTES);
let view: DataView = viewOf(buf);
let pos = 0;

function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const next = Buffer.allocUnsafe(size);
  buf.copy(next, 0, 0, pos);
  buf = next;
  view = viewOf(buf);
}

/** The message written since the last {@link finish}, copied out; the scratch is reset. */
function finish(): Buffer {
  const out = Buffer.allocUnsafe(pos);
  buf.copy(out, 0, 0, pos);
  pos = 0;
  if (buf.length > SCRATCH_KEEP_BYTES) {
    buf = Buffer.allocUnsafe(SCRATCH_BYTES);
    view = viewOf(buf);
  }
  return out;
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes `v`, an integer 0 .. 2^53 (callers ensure room: at most 8 bytes). */
function varint(v: number): void {
  while (v >= 128) {
    buf[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
}

/** Writes `v`, an integer 0 .. 2^64 - 1 (at most 10 bytes). */
function varintBig(v: bigint): void {
  ensure(10);
  while (v >= 128n) {
    buf[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[pos++] = Number(v);
}

/** Tag byte of field `n` (< 16) with wire type `wt`. */
function tag(n: number, wt: number): void {
  buf[pos++] = (n << 3) | wt;
}

function uint32Field(n: number, value: unknown): void {
  if (value == null) return;
  const v = (value as number) >>> 0;
  if (v === 0) return;
  ensure(6);
  tag(n, 0);
  varint(v);
}

function boolField(n: number, value: unknown): void {
  if (!value) return;
  ensure(2);
  tag(n, 0);
  buf[pos++] = 1;
}

function stringField(n: number, value: unknown): void {
  if (value == null) return;
  const s = String(value);
  if (s === "") return;
  const len = Buffer.byteLength(s, "utf8");
  ensure(1 + 5 + len);
  tag(n, 2);
  varint(len);
  pos += buf.write(s, pos, len, "utf8");
}

function floatsField(n: number, value: unknown, name: string): void {
  if (value == null) return;
  const list = value as ArrayLike<number>;
  if (typeof list !== "object" || typeof list.length !== "number") {
    throw new TypeError(`${name}: array expected`);
  }
  if (list.length === 0) return;
  const bytes = 4 * list.length;
  ensure(1 + 5 + bytes);
  tag(n, 2);
  varint(bytes);
  for (let i = 0; i < list.length; i++, pos += 4) view.setFloat32(pos, Number(list[i]), true);
}

function bytesField(n: number, value: unknown, name: string): void {
  if (value == null) return;
  let bytes: Uint8Array;
  if (value instanceof Uint8Array) bytes = value;
  else if (typeof value === "string") bytes = Buffer.from(value, "base64");
  else if (Array.isArray(value)) bytes = Uint8Array.from(value);
  else throw new TypeError(`${name}: buffer expected`);
  if (bytes.length === 0) return;
  ensure(1 + 5 + bytes.length);
  tag(n, 2);
  varint(bytes.length);
  buf.set(bytes, pos);
  pos += bytes.length;
}

/** A uint64 field (an id): number, decimal string, bigint or Long-like, as `fromObject` takes. */
function uint64Field(n: number, value: unknown, name: string): void {
  if (value == null) return;
  if (typeof value === "number" && value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
    const v = Math.floor(value);
    if (v === 0) return;
    ensure(9);
    tag(n, 0);
    varint(v);
    return;
  }
  if (typeof value === "string" && value.length > 0 && value.length <= 15) {
    // Most ids: a short decimal, exact as a number.
    let v = 0;
    let digits = true;
    for (let i = 0; i < value.length && digits; i++) {
      const c = value.charCodeAt(i) - 48;
      if (c < 0 || c > 9) digits = false;
      else v = v * 10 + c;
    }
    if (digits) {
      if (v === 0) return;
      ensure(9);
      tag(n, 0);
      varint(v);
      return;
    }
  }
  const big = BigInt.asUintN(64, toBigInt(value, name));
  if (big === 0n) return;
  ensure(1);
  tag(n, 0);
  varintBig(big);
}

function toBigInt(value: unknown, name: string): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isFinite(value)) return BigInt(Math.trunc(value));
  if (typeof value === "string" && /^-?[0-9]+$/.test(value)) return BigInt(value);
  if (typeof value === "object" && value !== null) {
    const l = value as { low?: unknown; high?: unknown };
    if (typeof l.low === "number" && typeof l.high === "number") {
      return (BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0);
    }
  }
  throw new TypeError(`${name}: integer|Long expected, got ${String(value)}`);
}

/** Reserves a nested message's length (one byte); returns where it goes. */
function open(n: number): number {
  ensure(2);
  tag(n, 2);
  return pos++;
}

/** Writes the length of the nested message begun at `at`, moving it when it needs more bytes. */
function close(at: number): void {
  const len = pos - at - 1;
  if (len < 128) {
    buf[at] = len;
    return;
  }
  const size = varintSize(len);
  ensure(size - 1);
  buf.copyWithin(at + size, at + 1, pos);
  pos += size - 1;
  const end = pos;
  pos = at;
  varint(len);
  pos = end;
}

function checkObject(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`${name}: object expected`);
  }
  return value as Record<string, unknown>;
}

function listOf(value: unknown, name: string): readonly unknown[] {
  if (value == null) return [];
  if (!Array.isArray(value)) throw new TypeError(`${name}: array expected`);
  return value;
}

function writeRequest(value: unknown, name: string): void {
  const r = checkObject(value, name);
  floatsField(1, r.vector, `${name}.vector`);
  uint32Field(2, r.k);
  stringField(3, r.collection);
  uint32Field(4, r.ef);
  stringField(5, r.filter);
  boolField(6, r.with_payload);
  boolField(7, r.with_vector);
  boolField(8, r.exact);
  bytesField(9, r.vector_bytes, `${name}.vector_bytes`);
  const shards = listOf(r.shards, `${name}.shards`);
  if (shards.length > 0) {
    ensure(2 + 5 * shards.length + 5);
    const at = open(10);
    for (const s of shards) varint((s as number) >>> 0);
    close(at);
  }
}

function writeResult(value: unknown, name: string): void {
  const r = checkObject(value, name);
  uint64Field(1, r.id, `${name}.id`);
  if (r.distance != null) {
    ensure(5);
    tag(2, 5);
    view.setFloat32(pos, Number(r.distance), true);
    pos += 4;
  }
  stringField(3, r.payload);
  floatsField(4, r.vector, `${name}.vector`);
  stringField(5, r.string_id);
}

function writeResponse(value: unknown, name: string): void {
  const r = checkObject(value, name);
  const results = listOf(r.results, `${name}.results`);
  for (let i = 0; i < results.length; i++) {
    const at = open(1);
    writeResult(results[i], `${name}.results`);
    close(at);
  }
  boolField(2, r.partial);
  uint32Field(3, r.shards_answered);
  uint32Field(4, r.shards_total);
  for (const node of listOf(r.nodes_answered, `${name}.nodes_answered`)) {
    if (node == null) continue;
    // A repeated string keeps its empty elements.
    const s = String(node);
    const len = Buffer.byteLength(s, "utf8");
    ensure(1 + 5 + len);
    tag(5, 2);
    varint(len);
    pos += buf.write(s, pos, len, "utf8");
  }
  uint32Field(6, r.shard_searches);
}

/** Runs `write`, returning its message; the scratch is reset on failure too. */
function encode(write: () => void): Buffer {
  pos = 0;
  try {
    write();
  } catch (e) {
    pos = 0;
    throw e;
  }
  return finish();
}

/** Encodes a `SearchRequest` (see the module comment). */
export function encodeSearchRequest(value: SearchRequest): Buffer {
  return encode(() => writeRequest(value, "SearchRequest"));
}

/** Encodes a `SearchResponse`. */
export function encodeSearchResponse(value: SearchResponse): Buffer {
  return encode(() => writeResponse(value, "SearchResponse"));
}

/** Encodes a `SearchBatchRequest`. */
export function encodeSearchBatchRequest(value: SearchBatchRequest): Buffer {
  return encode(() => {
    const r = checkObject(value, "SearchBatchRequest");
    for (const s of listOf(r.searches, "SearchBatchRequest.searches")) {
      const at = open(1);
      writeRequest(s, "SearchBatchRequest.searches");
      close(at);
    }
  });
}

/** Encodes a `SearchBatchResponse`. */
export function encodeSearchBatchResponse(value: SearchBatchResponse): Buffer {
  return encode(() => {
    const r = checkObject(value, "SearchBatchResponse");
    for (const s of listOf(r.results, "SearchBatchResponse.results")) {
      const at = open(1);
      writeResponse(s, "SearchBatchResponse.results");
      close(at);
    }
  });
}
