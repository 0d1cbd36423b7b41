/**
 * Readers and writers for the TEXMEX vector formats used by ANN benchmarks.
 *
 * | format | per record                                  |
 * |--------|---------------------------------------------|
 * | fvecs  | i32 little-endian dimension d, then d f32   |
 * | ivecs  | i32 little-endian dimension d, then d i32   |
 *
 * @module
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";

/** A dense row-major matrix of `n` rows of `dim` values. */
export interface Matrix<T extends Float32Array | Int32Array> {
  n: number;
  dim: number;
  data: T;
}

function readVecs<T extends Float32Array | Int32Array>(
  path: string,
  make: (buf: ArrayBuffer) => T,
  limit: number,
): Matrix<T> {
  const bytes = readFileSync(path);
  if (bytes.byteLength < 4) throw new RangeError(`File "${path}" is too short to hold a vector`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dim = dv.getInt32(0, true);
  if (dim <= 0 || dim > 65536) throw new RangeError(`File "${path}" starts with dimension ${dim}`);
  const rec = 4 + dim * 4;
  if (bytes.byteLength % rec !== 0) {
    throw new RangeError(
      `File "${path}" has ${bytes.byteLength} bytes, not a multiple of the record size ${rec}`,
    );
  }
  const n = Math.min(limit, bytes.byteLength / rec);
  const out = new ArrayBuffer(n * dim * 4);
  const dst = new Uint8Array(out);
  for (let i = 0; i < n; i++) {
    const d = dv.getInt32(i * rec, true);
    if (d !== dim) throw new RangeError(`Record ${i} of "${path}" has dimension ${d}, not ${dim}`);
    dst.set(bytes.subarray(i * rec + 4, (i + 1) * rec), i * dim * 4);
  }
  return { n, dim, data: make(out) };
}

export function readFvecs(path: string, limit = Infinity): Matrix<Float32Array> {
  return readVecs(path, (b) => new Float32Array(b), limit);
}

export function readIvecs(path: string, limit = Infinity): Matrix<Int32Array> {
  return readVecs(path, (b) => new Int32Array(b), limit);
}

function writeVecs(path: string, m: Matrix<Float32Array | Int32Array>): void {
  const rec = 4 + m.dim * 4;
  const buf = new Uint8Array(m.n * rec);
  const dv = new DataView(buf.buffer);
  const src = new Uint8Array(m.data.buffer, m.data.byteOffset, m.n * m.dim * 4);
  for (let i = 0; i < m.n; i++) {
    dv.setInt32(i * rec, m.dim, true);
    buf.set(src.subarray(i * m.dim * 4, (i + 1) * m.dim * 4), i * rec + 4);
  }
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, buf);
  renameSync(tmp, path);
}

export function writeFvecs(path: string, m: Matrix<Float32Array>): void {
  writeVecs(path, m);
}

export function writeIvecs(path: string, m: Matrix<Int32Array>): void {
  writeVecs(path, m);
}
