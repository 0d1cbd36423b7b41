import assert from "node:assert/strict";
import {
  BinaryFormatError,
  BinaryReader,
  BinaryWriter,
  BufferLimitError,
  BufferSink,
  type ByteSink,
  TruncatedInputError,
} from "./binary.ts";
import { crc32 } from "./crc32.ts";

function writeAll(w: BinaryWriter): void {
  w.u8(0);
  w.u8(255);
  w.u32(0xdeadbeef);
  w.i32(-123456789);
  w.u64(0xffffffffffffffffn);
  w.u64(Number.MAX_SAFE_INTEGER);
  w.u64(0);
  w.f32(1.5);
  w.f64(Math.PI);
  w.bytes(new Uint8Array([1, 2, 3]));
  w.raw(new Uint8Array([9, 8]));
  w.string("héllo, 世界 🌍");
  w.string("");
  w.u32Array(new Uint32Array([0, 1, 0xffffffff]));
  w.i32Array(new Int32Array([-1, 2, -3]));
  // A misaligned view (byteOffset 4 into a larger buffer) must still be written correctly.
  w.f32Array(new Float32Array([0, 1, 2, -0.5, 7]).subarray(1, 4));
}

function readAll(r: BinaryReader): void {
  assert.equal(r.u8(), 0);
  assert.equal(r.u8(), 255);
  assert.equal(r.u32(), 0xdeadbeef);
  assert.equal(r.i32(), -123456789);
  assert.equal(r.u64(), 0xffffffffffffffffn);
  assert.equal(r.u64Number(), Number.MAX_SAFE_INTEGER);
  assert.equal(r.u64Number(), 0);
  assert.equal(r.f32(), 1.5);
  assert.equal(r.f64(), Math.PI);
  assert.deepEqual(r.bytes(), new Uint8Array([1, 2, 3]));
  assert.deepEqual(r.raw(2), new Uint8Array([9, 8]));
  assert.equal(r.string(), "héllo, 世界 🌍");
  assert.equal(r.string(), "");
  assert.deepEqual(r.u32Array(), new Uint32Array([0, 1, 0xffffffff]));
  assert.deepEqual(r.i32Array(), new Int32Array([-1, 2, -3]));
  assert.deepEqual(r.f32Array(), new Float32Array([1, 2, -0.5]));
  r.expectEnd();
}

Deno.test("binary round trip of every type, with tiny and default buffers", () => {
  for (const buffer_bytes of [16, 17, 31, 1 << 20]) {
    const sink = new BufferSink({ initial_bytes: 1 });
    const w = new BinaryWriter(sink, { buffer_bytes });
    writeAll(w);
    const crcBeforeFlush = w.crc32();
    w.flush();
    assert.equal(w.bytesWritten, sink.length);
    assert.equal(w.crc32(), crcBeforeFlush);
    assert.equal(w.crc32(), crc32(sink.bytes()));
    const r = new BinaryReader(sink.bytes());
    readAll(r);
    assert.equal(r.remaining, 0);
    assert.equal(r.offset, sink.length);
  }
});

Deno.test("binary layout is little-endian with documented prefixes", () => {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  w.u32(0x04030201);
  w.u64(0x0807060504030201n);
  w.string("ab");
  w.f32Array(new Float32Array([1]));
  w.flush();
  assert.deepEqual(
    sink.bytes(),
    new Uint8Array([
      1,
      2,
      3,
      4,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
      2,
      0,
      0,
      0,
      97,
      98,
      1,
      0,
      0,
      0,
      0,
      0,
      128,
      63,
    ]),
  );
});

Deno.test("large raw writes bypass the buffer and keep order and CRC", () => {
  const chunks: Uint8Array[] = [];
  const sink: ByteSink = { write: (c) => chunks.push(c.slice()) };
  const w = new BinaryWriter(sink, { buffer_bytes: 64 });
  const big = new Float32Array(1000).map((_, i) => i * 0.25);
  w.u8(7);
  w.f32Array(big);
  w.u8(9);
  w.flush();
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  assert.ok(chunks.length >= 3);
  assert.equal(w.crc32(), crc32(all));
  const r = new BinaryReader(all);
  assert.equal(r.u8(), 7);
  assert.deepEqual(r.f32Array(), big);
  assert.equal(r.u8(), 9);
});

Deno.test("arrays read from odd offsets are aligned copies", () => {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  w.u8(1); // makes the array data start at offset 5, not a multiple of 4
  w.f32Array(new Float32Array([3.25, -1]));
  w.flush();
  const input = sink.bytes();
  const r = new BinaryReader(input);
  r.u8();
  const values = r.f32Array();
  assert.equal(values.byteOffset, 0);
  assert.notEqual(values.buffer, input.buffer);
  assert.deepEqual(Array.from(values), [3.25, -1]);
  input.fill(0); // the copy must not alias the input
  assert.deepEqual(Array.from(values), [3.25, -1]);
});

Deno.test("reading past the end throws TruncatedInputError naming offset and size", () => {
  const r = new BinaryReader(new Uint8Array([1, 2, 3]));
  r.u8();
  assert.throws(
    () => r.u32(),
    (e: unknown) =>
      e instanceof TruncatedInputError && e.offset === 1 && e.bytes_wanted === 4 &&
      e.bytes_available === 2 && /offset 1: wanted 4 bytes but only 2 remain/.test(e.message),
  );
  // A length prefix promising more than there is.
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  w.u32(1000);
  w.u8(1);
  w.flush();
  assert.throws(() => new BinaryReader(sink.bytes()).string(), TruncatedInputError);
  assert.throws(() => new BinaryReader(sink.bytes()).f32Array(), TruncatedInputError);
  assert.throws(() => new BinaryReader(new Uint8Array(7)).u64(), TruncatedInputError);
  // Every strict prefix of a valid encoding fails with TruncatedInputError, never garbage.
  const full = new BufferSink();
  const fw = new BinaryWriter(full);
  writeAll(fw);
  fw.flush();
  const bytes = full.bytes();
  for (let n = 0; n < bytes.length; n++) {
    assert.throws(() => readAll(new BinaryReader(bytes.subarray(0, n))), TruncatedInputError);
  }
});

Deno.test("format errors: bad UTF-8, unsafe u64, trailing bytes", () => {
  const bad = new Uint8Array([2, 0, 0, 0, 0xc3, 0x28]);
  assert.throws(() => new BinaryReader(bad).string(), BinaryFormatError);
  const big = new Uint8Array(8).fill(0xff);
  assert.throws(() => new BinaryReader(big).u64Number(), /exceeds the safe integer range/);
  // The edges of the two-halves reading: 2^53 - 1 reads, 2^53 does not.
  const edge = new Uint8Array(16);
  const dv = new DataView(edge.buffer);
  dv.setBigUint64(0, 2n ** 53n - 1n, true);
  dv.setBigUint64(8, 2n ** 53n, true);
  const er = new BinaryReader(edge);
  assert.equal(er.u64Number(), Number.MAX_SAFE_INTEGER);
  assert.throws(() => er.u64Number(), /Value 9007199254740992 at offset 8 exceeds/);
  const r = new BinaryReader(new Uint8Array(3));
  r.u8();
  assert.throws(() => r.expectEnd(), /2 bytes remain/);
});

Deno.test("writer rejects out-of-range values with the value in the message", () => {
  const w = new BinaryWriter(new BufferSink());
  assert.throws(() => w.u8(256), /Value 256 is not an unsigned 8-bit integer/);
  assert.throws(() => w.u32(-1), RangeError);
  assert.throws(() => w.u32(1.5), RangeError);
  assert.throws(() => w.i32(2 ** 31), RangeError);
  assert.throws(() => w.u64(-1n), RangeError);
  assert.throws(() => w.u64(2n ** 64n), RangeError);
  assert.throws(() => w.u64(2 ** 53), RangeError);
  assert.throws(() => new BinaryWriter(new BufferSink(), { buffer_bytes: 8 }), RangeError);
});

Deno.test("BufferSink enforces its limit and can be cleared", () => {
  const sink = new BufferSink({ initial_bytes: 2, bytes_max: 10 });
  sink.write(new Uint8Array(6));
  assert.throws(() => sink.write(new Uint8Array(5)), BufferLimitError);
  assert.equal(sink.length, 6);
  sink.write(new Uint8Array([1, 2, 3, 4]));
  assert.equal(sink.length, 10);
  assert.deepEqual(sink.view().subarray(6), new Uint8Array([1, 2, 3, 4]));
  sink.clear();
  assert.equal(sink.length, 0);
  assert.deepEqual(sink.bytes(), new Uint8Array(0));
});

Deno.test("seek moves within the input and refuses offsets outside it", () => {
  const r = new BinaryReader(new Uint8Array([1, 2, 3, 4, 5]));
  r.seek(4);
  assert.equal(r.u8(), 5);
  r.seek(0);
  assert.equal(r.u8(), 1);
  r.seek(5);
  assert.equal(r.remaining, 0);
  assert.throws(() => r.seek(6), /Offset 6 is outside the input of 5 bytes/);
  assert.throws(() => r.seek(-1), RangeError);
});

Deno.test("f32ArrayInto/u32ArrayInto read straight into a target, checking count and room", () => {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  w.f32Array(new Float32Array([1.5, -2, 3]));
  w.u32Array(new Uint32Array([7, 8]));
  w.flush();
  const bytes = sink.bytes();
  const r = new BinaryReader(bytes);
  const f = new Float32Array(6);
  assert.equal(r.f32ArrayInto(f, 2, 3), 3);
  assert.deepEqual(Array.from(f), [0, 0, 1.5, -2, 3, 0]);
  const u = new Uint32Array(new ArrayBuffer(16), 4, 3); // a view at a byte offset
  assert.equal(r.u32ArrayInto(u, 1), 2);
  assert.deepEqual(Array.from(u), [0, 7, 8]);
  r.expectEnd();
  assert.throws(
    () => new BinaryReader(bytes).f32ArrayInto(new Float32Array(6), 0, 4),
    /holds 3 elements, expected 4/,
  );
  assert.throws(
    () => new BinaryReader(bytes).f32ArrayInto(new Float32Array(6), 4),
    /does not fit at 4 of 6/,
  );
});

Deno.test("a streaming reader reads what a buffer reader reads, each byte delivered once, in order", () => {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  writeAll(w);
  const big = new Float32Array(5000).map((_, i) => i / 3);
  w.f32Array(big);
  w.u32Array(new Uint32Array([4, 5, 6]));
  w.string("x".repeat(300)); // longer than the window: the window grows
  w.u32(77);
  w.flush();
  const bytes = sink.bytes();
  for (const window of [64, 100, 1 << 20]) {
    let at = 0;
    const source = (into: Uint8Array) => {
      into.set(bytes.subarray(at, at + into.length));
      at += into.length;
    };
    const r = BinaryReader.streaming(bytes.length, source, window);
    // writeAll's fields, then the array straight into a target, then the rest.
    assert.equal(r.u8(), 0);
    assert.equal(r.u8(), 255);
    assert.equal(r.u32(), 0xdeadbeef);
    assert.equal(r.i32(), -123456789);
    assert.equal(r.u64(), 0xffffffffffffffffn);
    assert.equal(r.u64Number(), Number.MAX_SAFE_INTEGER);
    assert.equal(r.u64Number(), 0);
    assert.equal(r.f32(), 1.5);
    assert.equal(r.f64(), Math.PI);
    assert.deepEqual(r.bytes(), new Uint8Array([1, 2, 3]));
    assert.deepEqual(r.raw(2), new Uint8Array([9, 8]));
    assert.equal(r.string(), "héllo, 世界 🌍");
    assert.equal(r.string(), "");
    assert.deepEqual(r.u32Array(), new Uint32Array([0, 1, 0xffffffff]));
    assert.deepEqual(r.i32Array(), new Int32Array([-1, 2, -3]));
    assert.deepEqual(r.f32Array(), new Float32Array([1, 2, -0.5]));
    const target = new Float32Array(5002);
    assert.equal(r.f32ArrayInto(target, 1, 5000), 5000);
    assert.deepEqual(target.subarray(1, 5001), big, `window ${window}`);
    const u = new Uint32Array(3);
    r.u32ArrayInto(u, 0);
    assert.deepEqual(Array.from(u), [4, 5, 6]);
    assert.equal(r.string(), "x".repeat(300));
    assert.equal(r.remaining, 4);
    assert.equal(r.u32(), 77);
    r.expectEnd();
    assert.equal(at, bytes.length, "every byte was read once");
    assert.throws(() => r.u8(), TruncatedInputError);
    assert.throws(() => r.seek(0), /cannot seek/);
  }
  // An array longer than what is left is refused before the source is asked for it.
  let asked = 0;
  const short = BinaryReader.streaming(8, (into) => {
    asked += into.length;
    new DataView(into.buffer, into.byteOffset).setUint32(0, 1000, true);
  }, 64);
  assert.throws(() => short.f32ArrayInto(new Float32Array(2000), 0), TruncatedInputError);
  assert.equal(asked, 8);
});
