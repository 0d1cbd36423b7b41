/**
 * The one binary serialisation path of the project: WAL records, snapshot files, snapshot
 * transfer and test buffers all go through {@link BinaryWriter} and {@link BinaryReader}.
 *
 * Encoding rules (all little-endian, no alignment padding):
 *
 * | Method                   | Bytes on the wire                                       |
 * | ------------------------ | ------------------------------------------------------- |
 * | `u8` / `u32` / `i32`     | 1 / 4 / 4 bytes                                         |
 * | `u64`                    | 8 bytes, unsigned                                       |
 * | `f32` / `f64`            | 4 / 8 bytes, IEEE 754                                   |
 * | `raw(bytes)`             | the bytes themselves, no length                         |
 * | `bytes(bytes)`           | u32 byte length, then the bytes                         |
 * | `string(s)`              | u32 byte length, then UTF-8                             |
 * | `u32Array` / `i32Array`  | u32 element count, then 4 bytes per element (raw copy)  |
 * | `f32Array`               | u32 element count, then 4 bytes per element (raw copy)  |
 *
 * Typed arrays are copied as raw memory, which is only correct on a little-endian host; the module
 * refuses to load on a big-endian one.
 *
 * The writer keeps a running CRC-32 of everything written through it, so a container can append
 * a checksum of its content without a second pass.
 * @module
 */
import { crc32 } from "./crc32.ts";

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new Error("This module needs a little-endian host; typed arrays are copied as raw bytes");
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A destination for bytes. The chunk is only valid during the call: copy it to keep it. */
export interface ByteSink {
  write(chunk: Uint8Array): void;
}

/** Thrown when a bounded buffer would grow past its limit. */
export class BufferLimitError extends Error {
  constructor(readonly bytes_wanted: number, readonly bytes_max: number) {
    super(`Buffer would grow to ${bytes_wanted} bytes, over its limit of ${bytes_max} bytes`);
    this.name = "BufferLimitError";
  }
}

/** Thrown when a reader needs more bytes than remain in its input. */
export class TruncatedInputError extends Error {
  constructor(
    readonly offset: number,
    readonly bytes_wanted: number,
    readonly bytes_available: number,
  ) {
    super(
      `Input truncated at offset ${offset}: wanted ${bytes_wanted} bytes ` +
        `but only ${bytes_available} remain`,
    );
    this.name = "TruncatedInputError";
  }
}

/** Thrown when input bytes are present but do not decode (bad UTF-8, u64 out of range…). */
export class BinaryFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BinaryFormatError";
  }
}

/** Collects written chunks into one growable buffer (copying each chunk). */
export class BufferSink implements ByteSink {
  #buf: Uint8Array;
  #len = 0;
  readonly bytes_max: number;

  constructor(options: { initial_bytes?: number; bytes_max?: number } = {}) {
    this.bytes_max = options.bytes_max ?? 2 ** 30;
    this.#buf = new Uint8Array(Math.min(options.initial_bytes ?? 4096, this.bytes_max));
  }

  write(chunk: Uint8Array): void {
    const need = this.#len + chunk.length;
    if (need > this.#buf.length) {
      if (need > this.bytes_max) throw new BufferLimitError(need, this.bytes_max);
      let size = Math.max(this.#buf.length * 2, 64);
      while (size < need) size *= 2;
      const grown = new Uint8Array(Math.min(size, this.bytes_max));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    this.#buf.set(chunk, this.#len);
    this.#len = need;
  }

  /** Number of bytes collected. */
  get length(): number {
    return this.#len;
  }

  /** A copy of the collected bytes. */
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }

  /** A zero-copy view of the collected bytes, valid until the next `write` or `clear`. */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  /** Forgets the collected bytes, keeping the allocation. */
  clear(): void {
    this.#len = 0;
  }
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${what} ${value} is not an unsigned 32-bit integer`);
  }
}

function asBytes(a: Uint32Array | Int32Array | Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Writes little-endian values to a {@link ByteSink} through an internal buffer. */
export class BinaryWriter {
  readonly sink: ByteSink;
  #buf: Uint8Array;
  #view: DataView;
  #pos = 0;
  #flushed = 0;
  #crc = 0;

  constructor(sink: ByteSink, options: { buffer_bytes?: number } = {}) {
    const size = options.buffer_bytes ?? 1 << 20;
    if (!Number.isInteger(size) || size < 16) {
      throw new RangeError(`Writer buffer size ${size} must be an integer of at least 16 bytes`);
    }
    this.sink = sink;
    this.#buf = new Uint8Array(size);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Total bytes written so far (flushed or still buffered). */
  get bytesWritten(): number {
    return this.#flushed + this.#pos;
  }

  /** CRC-32 of every byte written so far, including those not yet flushed. */
  crc32(): number {
    return crc32(this.#buf.subarray(0, this.#pos), this.#crc);
  }

  /** Hands the buffered bytes to the sink. */
  flush(): void {
    if (this.#pos === 0) return;
    const chunk = this.#buf.subarray(0, this.#pos);
    this.#crc = crc32(chunk, this.#crc);
    this.sink.write(chunk);
    this.#flushed += this.#pos;
    this.#pos = 0;
  }

  #room(n: number): number {
    if (this.#pos + n > this.#buf.length) this.flush();
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  u8(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) {
      throw new RangeError(`Value ${value} is not an unsigned 8-bit integer`);
    }
    this.#buf[this.#room(1)] = value;
  }

  u32(value: number): void {
    checkU32(value, "Value");
    this.#view.setUint32(this.#room(4), value, true);
  }

  i32(value: number): void {
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
      throw new RangeError(`Value ${value} is not a signed 32-bit integer`);
    }
    this.#view.setInt32(this.#room(4), value, true);
  }

  /** Unsigned 64-bit: a bigint below 2^64 or a non-negative safe integer. */
  u64(value: bigint | number): void {
    let lo: number;
    let hi: number;
    if (typeof value === "bigint") {
      if (value < 0n || value > 0xffffffffffffffffn) {
        throw new RangeError(`Value ${value} is not an unsigned 64-bit integer`);
      }
      lo = Number(value & 0xffffffffn);
      hi = Number(value >> 32n);
    } else {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RangeError(`Value ${value} is not a non-negative safe integer`);
      }
      lo = value % 0x100000000;
      hi = Math.floor(value / 0x100000000);
    }
    const at = this.#room(8);
    this.#view.setUint32(at, lo, true);
    this.#view.setUint32(at + 4, hi, true);
  }

  f32(value: number): void {
    this.#view.setFloat32(this.#room(4), value, true);
  }

  f64(value: number): void {
    this.#view.setFloat64(this.#room(8), value, true);
  }

  /** The bytes themselves, without a length prefix. */
  raw(bytes: Uint8Array): void {
    const n = bytes.length;
    if (this.#pos + n <= this.#buf.length) {
      this.#buf.set(bytes, this.#pos);
      this.#pos += n;
      return;
    }
    this.flush();
    if (n < this.#buf.length) {
      this.#buf.set(bytes, 0);
      this.#pos = n;
      return;
    }
    // Larger than the buffer: straight to the sink.
    this.#crc = crc32(bytes, this.#crc);
    this.sink.write(bytes);
    this.#flushed += n;
  }

  /** u32 length, then the bytes. */
  bytes(bytes: Uint8Array): void {
    this.u32(bytes.length);
    this.raw(bytes);
  }

  /** u32 UTF-8 byte length, then the UTF-8 bytes. */
  string(value: string): void {
    this.bytes(encoder.encode(value));
  }

  u32Array(values: Uint32Array): void {
    this.u32(values.length);
    this.raw(asBytes(values));
  }

  i32Array(values: Int32Array): void {
    this.u32(values.length);
    this.raw(asBytes(values));
  }

  f32Array(values: Float32Array): void {
    this.u32(values.length);
    this.raw(asBytes(values));
  }
}

/**
 * Fills `into` entirely with the next bytes of a stream (see {@link BinaryReader.streaming}).
 */
export type ByteSource = (into: Uint8Array) => void;

/** Window of a streaming reader: the bytes read ahead of the fields decoded. */
const STREAM_WINDOW_BYTES = 1 << 20;

/**
 * Reads what {@link BinaryWriter} wrote: from one in-memory buffer, or streaming from a source
 * ({@link BinaryReader.streaming}: a snapshot file), where the large arrays of
 * {@link f32ArrayInto} and {@link u32ArrayInto} go from the source straight into their
 * destination (WASM memory, an index's link table) and everything else through a window.
 */
export class BinaryReader {
  /** The buffer read (in streaming mode: the current window, which later reads replace). */
  input: Uint8Array;
  #view: DataView;
  /** Read position in {@link input}. */
  #pos = 0;
  /** Stream offset of `input[0]` (always 0 for a buffer). */
  #base = 0;
  /** Stream length (the buffer's length for a buffer). */
  #limit: number;
  #source: ByteSource | null = null;
  /** Streaming: the window's storage, of which {@link input} is the filled part. */
  #window: Uint8Array = new Uint8Array(0);

  constructor(input: Uint8Array) {
    this.input = input;
    this.#view = new DataView(input.buffer, input.byteOffset, input.byteLength);
    this.#limit = input.length;
  }

  /**
   * A reader of `length` bytes that `source` delivers in order, each byte exactly once (so the
   * source can checksum them as they pass). Views returned by `raw` stay valid only until the
   * next read; `seek` is refused.
   */
  static streaming(
    length: number,
    source: ByteSource,
    window_bytes = STREAM_WINDOW_BYTES,
  ): BinaryReader {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`Stream length ${length} is not a non-negative safe integer`);
    }
    const r = new BinaryReader(new Uint8Array(0));
    r.#limit = length;
    r.#source = source;
    r.#window = new Uint8Array(Math.max(64, window_bytes));
    return r;
  }

  /** Bytes consumed so far (the stream offset in streaming mode). */
  get offset(): number {
    return this.#base + this.#pos;
  }

  /** Bytes left to read. */
  get remaining(): number {
    return this.#limit - this.#base - this.#pos;
  }

  /** Moves the read position to `offset` (buffers only). */
  seek(offset: number): void {
    if (this.#source !== null) throw new Error("A streaming reader cannot seek");
    if (!Number.isInteger(offset) || offset < 0 || offset > this.input.length) {
      throw new RangeError(`Offset ${offset} is outside the input of ${this.input.length} bytes`);
    }
    this.#pos = offset;
  }

  #take(n: number): number {
    if (n > this.input.length - this.#pos) this.#fill(n);
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  /** Makes `n` bytes available at {@link #pos} (streaming), or throws the truncation. */
  #fill(n: number): void {
    const left = this.input.length - this.#pos;
    if (this.#source === null || n > this.remaining) {
      throw new TruncatedInputError(this.offset, n, this.remaining);
    }
    if (this.#window.length < n) {
      const grown = new Uint8Array(n);
      grown.set(this.input.subarray(this.#pos));
      this.#window = grown;
    } else {
      this.#window.copyWithin(0, this.#pos, this.input.length);
    }
    const streamed = this.#base + this.input.length;
    const get = Math.min(this.#window.length - left, this.#limit - streamed);
    this.#source(this.#window.subarray(left, left + get));
    this.#base += this.#pos;
    this.#setInput(this.#window.subarray(0, left + get));
  }

  #setInput(input: Uint8Array): void {
    this.input = input;
    this.#view = new DataView(input.buffer, input.byteOffset, input.byteLength);
    this.#pos = 0;
  }

  /** Streaming: the next `bytes` into `target` (what the window holds, then the source's). */
  #streamInto(target: Uint8Array): void {
    const fromWindow = Math.min(target.length, this.input.length - this.#pos);
    target.set(this.input.subarray(this.#pos, this.#pos + fromWindow));
    this.#pos += fromWindow;
    if (fromWindow === target.length) return;
    this.#source!(target.subarray(fromWindow));
    this.#base += this.input.length + target.length - fromWindow;
    this.#setInput(this.#window.subarray(0, 0));
  }

  u8(): number {
    const at = this.#take(1);
    return this.input[at];
  }

  u32(): number {
    const at = this.#take(4);
    return this.#view.getUint32(at, true);
  }

  i32(): number {
    const at = this.#take(4);
    return this.#view.getInt32(at, true);
  }

  u64(): bigint {
    const at = this.#take(8);
    return this.#view.getBigUint64(at, true);
  }

  /** A u64 that must fit a safe integer (sequence numbers, sizes, timestamps). */
  u64Number(): number {
    const at = this.#take(8);
    // Two u32 halves, no BigInt: this runs once per point when a snapshot's version table or
    // a WAL record is read.
    const lo = this.#view.getUint32(at, true);
    const hi = this.#view.getUint32(at + 4, true);
    if (hi > 0x1f_ffff) {
      const value = this.#view.getBigUint64(at, true);
      throw new BinaryFormatError(`Value ${value} at offset ${at} exceeds the safe integer range`);
    }
    return hi * 0x1_0000_0000 + lo;
  }

  f32(): number {
    const at = this.#take(4);
    return this.#view.getFloat32(at, true);
  }

  f64(): number {
    const at = this.#take(8);
    return this.#view.getFloat64(at, true);
  }

  /** `n` bytes as a zero-copy view into the input. */
  raw(n: number): Uint8Array {
    const at = this.#take(n);
    return this.input.subarray(at, at + n);
  }

  /** A length-prefixed byte string, copied. */
  bytes(): Uint8Array {
    return this.raw(this.u32()).slice();
  }

  string(): string {
    const at = this.#pos;
    const raw = this.raw(this.u32());
    try {
      return decoder.decode(raw);
    } catch {
      throw new BinaryFormatError(`String at offset ${at} is not valid UTF-8`);
    }
  }

  #array(elementBytes: number): Uint8Array {
    const count = this.u32();
    return this.raw(count * elementBytes);
  }

  u32Array(): Uint32Array {
    const src = this.#array(4);
    const out = new Uint32Array(src.length / 4);
    new Uint8Array(out.buffer).set(src);
    return out;
  }

  i32Array(): Int32Array {
    const src = this.#array(4);
    const out = new Int32Array(src.length / 4);
    new Uint8Array(out.buffer).set(src);
    return out;
  }

  f32Array(): Float32Array {
    const src = this.#array(4);
    const out = new Float32Array(src.length / 4);
    new Uint8Array(out.buffer).set(src);
    return out;
  }

  /**
   * Reads an `f32Array` straight into `target` from element `at` (one copy, no temporary
   * array): how a snapshot's vectors land in WASM memory. Returns the element count; throws
   * BinaryFormatError when it is not `expected` (when given) or does not fit.
   */
  f32ArrayInto(target: Float32Array, at: number, expected?: number): number {
    return this.#arrayInto(target, at, expected, "f32");
  }

  /** As {@link f32ArrayInto}, for a `u32Array`. */
  u32ArrayInto(target: Uint32Array, at: number, expected?: number): number {
    return this.#arrayInto(target, at, expected, "u32");
  }

  #arrayInto(
    target: Float32Array | Uint32Array,
    at: number,
    expected: number | undefined,
    kind: string,
  ): number {
    const start = this.offset;
    const count = this.u32();
    if (count * 4 > this.remaining) {
      throw new TruncatedInputError(this.offset, count * 4, this.remaining);
    }
    if (expected !== undefined && count !== expected) {
      throw new BinaryFormatError(
        `${kind} array at offset ${start} holds ${count} elements, expected ${expected}`,
      );
    }
    if (!Number.isInteger(at) || at < 0 || at + count > target.length) {
      throw new BinaryFormatError(
        `${kind} array at offset ${start} of ${count} elements does not fit at ${at} of ` +
          `${target.length}`,
      );
    }
    const into = new Uint8Array(target.buffer, target.byteOffset + at * 4, count * 4);
    if (this.#source === null) into.set(this.raw(count * 4));
    else this.#streamInto(into);
    return count;
  }

  /** Asserts that the whole input was consumed. */
  expectEnd(): void {
    if (this.remaining !== 0) {
      throw new BinaryFormatError(
        `Expected the end of input at offset ${this.#pos} but ${this.remaining} bytes remain`,
      );
    }
  }
}
