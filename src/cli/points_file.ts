/**
 * Streaming readers of point files for `client load`, yielding batches of points.
 *
 * `.fvecs` (TEXMEX format, little-endian, no header, one record per vector):
 *
 * | offset | size  | field                                  |
 * | ------ | ----- | -------------------------------------- |
 * | 0      | 4     | int32 dimension d (1 … 65,536)         |
 * | 4      | 4 × d | d float32 values                       |
 *
 * Every record must have the dimension of the first. Point ids are the record's row number
 * (from 0) plus `start_id`.
 *
 * `.jsonl` / `.ndjson`: one JSON object per line, `{"id": 7, "vector": [0.1, 0.2]}`, optionally
 * with `"payload": {...}` (a JSON object kept with the point, within the limits of
 * common/payload.ts; null or absent: none); blank lines are skipped. Ids come from the file: a
 * JSON integer 0 .. 2^64 - 1 (read from its digits, so ids above 2^53 stay exact) or a string
 * of 1 .. 128 bytes of UTF-8 (`{"id": "doc-7", ...}`; see src/common/point_id.ts).
 *
 * Both readers stream (memory stays at one batch plus one read buffer), validate every point
 * with the API's rules, and report `bytes_read` so the caller can draw progress against the
 * file size. Errors name the file and the record or line.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Point } from "../api/proto.ts";
import { BATCH_POINTS_MAX, DIMENSION_MAX } from "../common/limits.ts";

/** Largest id an .fvecs row gets (row + start id): exact as a JS number. */
const FVECS_ID_MAX = Number.MAX_SAFE_INTEGER;
import { validatePayload, validateVector, ValidationError } from "../api/validate.ts";
import { canonicalId, idFromJson, type PointId, PointIdError } from "../common/point_id.ts";

/** A point file is malformed or unreadable; the message names the file and the place. */
export class PointsFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PointsFileError";
  }
}

/** One batch read from a file. */
export interface PointsBatch {
  points: Point[];
  /** Bytes of the file consumed so far, including this batch. */
  bytes_read: number;
}

/** Options of the readers. */
export interface ReadPointsOptions {
  /** Points per batch, 1 … BATCH_POINTS_MAX. */
  batch_points: number;
  /** Id of the first .fvecs record (default 0); must be 0 for JSON lines. */
  start_id?: number;
  /** Read buffer size in bytes (default 1 MiB). */
  read_bytes?: number;
}

/** Supported file formats. */
export type PointsFileFormat = "fvecs" | "jsonl";

/** The format of `path` from its extension. */
export function pointsFileFormat(path: string): PointsFileFormat {
  const lower = path.toLowerCase();
  if (lower.endsWith(".fvecs")) return "fvecs";
  if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) return "jsonl";
  throw new PointsFileError(
    `File ${JSON.stringify(path)} has an unknown extension; use .fvecs, .jsonl or .ndjson`,
  );
}

function checkBatch(batch_points: number): void {
  if (!Number.isInteger(batch_points) || batch_points < 1 || batch_points > BATCH_POINTS_MAX) {
    throw new PointsFileError(
      `Batch size ${batch_points} must be an integer between 1 and ${BATCH_POINTS_MAX}`,
    );
  }
}

/** Reads `path` as .fvecs or JSON lines according to its extension. */
export function readPointsFile(
  path: string,
  options: ReadPointsOptions,
): AsyncGenerator<PointsBatch, void, undefined> {
  return pointsFileFormat(path) === "fvecs" ? readFvecs(path, options) : readJsonl(path, options);
}

function ioError(path: string, e: unknown): PointsFileError {
  const msg = e instanceof Error ? e.message : String(e);
  return new PointsFileError(`Cannot read ${path}: ${msg}`);
}

/** Reads a .fvecs file in batches; ids are row + start_id. */
export async function* readFvecs(
  path: string,
  options: ReadPointsOptions,
): AsyncGenerator<PointsBatch, void, undefined> {
  checkBatch(options.batch_points);
  const start_id = options.start_id ?? 0;
  if (!Number.isSafeInteger(start_id) || start_id < 0) {
    throw new PointsFileError(`start_id ${start_id} must be an integer from 0 to ${FVECS_ID_MAX}`);
  }
  const stream = createReadStream(path, { highWaterMark: options.read_bytes ?? 1 << 20 });
  let pending = new Uint8Array(0);
  let consumed = 0; // bytes of the file fully parsed into points
  let row = 0;
  let dim = -1;
  let points: Point[] = [];
  try {
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      let buf: Uint8Array;
      if (pending.length === 0) buf = chunk;
      else {
        buf = new Uint8Array(pending.length + chunk.length);
        buf.set(pending, 0);
        buf.set(chunk, pending.length);
      }
      const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      let off = 0;
      while (buf.length - off >= 4) {
        const d = view.getInt32(off, true);
        if (dim < 0) {
          if (d < 1 || d > DIMENSION_MAX) {
            throw new PointsFileError(
              `${path} record 0 has dimension ${d}; it must be between 1 and ${DIMENSION_MAX} ` +
                `(is this an .fvecs file?)`,
            );
          }
          dim = d;
        } else if (d !== dim) {
          throw new PointsFileError(
            `${path} record ${row} has dimension ${d} but record 0 has ${dim}`,
          );
        }
        const size = 4 + 4 * dim;
        if (buf.length - off < size) break;
        const id = start_id + row;
        if (id > FVECS_ID_MAX) {
          throw new PointsFileError(
            `${path} record ${row} would get id ${id}, above the largest id ${FVECS_ID_MAX}; ` +
              `lower --start-id`,
          );
        }
        const vector = new Array<number>(dim);
        for (let i = 0; i < dim; i++) vector[i] = view.getFloat32(off + 4 + 4 * i, true);
        try {
          validateVector(vector, "vector");
        } catch (e) {
          if (e instanceof ValidationError) {
            throw new PointsFileError(`${path} record ${row}: ${e.message}`);
          }
          throw e;
        }
        points.push({ id, vector });
        off += size;
        consumed += size;
        row++;
        if (points.length === options.batch_points) {
          yield { points, bytes_read: consumed };
          points = [];
        }
      }
      pending = buf.slice(off);
    }
  } catch (e) {
    if (e instanceof PointsFileError) throw e;
    throw ioError(path, e);
  } finally {
    stream.destroy();
  }
  if (pending.length > 0) {
    const want = dim < 0 ? 4 : 4 + 4 * dim;
    throw new PointsFileError(
      `${path} ends inside record ${row}: ${pending.length} of ${want} bytes present`,
    );
  }
  if (points.length > 0) yield { points, bytes_read: consumed };
}

/**
 * The source digits of every `"id"` member holding a JSON number, by the object holding it
 * (JSON.parse's reviver sees the source text), so a uint64 id above 2^53 is read exactly.
 */
const digits = new WeakMap<object, string>();

function idDigits(this: unknown, key: string, value: unknown, context?: { source?: string }) {
  if (key === "id" && typeof value === "number" && typeof context?.source === "string") {
    digits.set(this as object, context.source);
  }
  return value;
}

/** A JSON line's id: a string, or an integer read from its digits when it has them. */
function jsonlId(value: unknown, source: string | undefined): PointId {
  if (typeof value === "number" && source !== undefined && /^[0-9]{16,20}$/.test(source)) {
    return canonicalId(BigInt(source), "id");
  }
  return idFromJson(value, "id");
}

/** The wire fields of an id: `{id}` (a bigint as decimal text) or `{id: 0, string_id}`. */
function wireId(id: PointId): { id: number | string; string_id?: string } {
  if (typeof id === "string") return { id: 0, string_id: id };
  return { id: typeof id === "bigint" ? id.toString() : id };
}

/** Reads a JSON lines file of `{"id":…,"vector":[…]}` objects in batches. */
export async function* readJsonl(
  path: string,
  options: ReadPointsOptions,
): AsyncGenerator<PointsBatch, void, undefined> {
  checkBatch(options.batch_points);
  if ((options.start_id ?? 0) !== 0) {
    throw new PointsFileError(
      `A start id applies only to .fvecs files; ${path} carries its own ids`,
    );
  }
  const stream = createReadStream(path, { highWaterMark: options.read_bytes ?? 1 << 20 });
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let bytes = 0;
  let lineNo = 0;
  let dim = -1;
  let points: Point[] = [];
  try {
    for await (const line of lines) {
      lineNo++;
      bytes += Buffer.byteLength(line, "utf8") + 1;
      const text = line.trim();
      if (text === "") continue;
      const where = `${path} line ${lineNo}`;
      let value: unknown;
      try {
        value = JSON.parse(text, idDigits);
      } catch (e) {
        throw new PointsFileError(`${where} is not valid JSON: ${(e as Error).message}`);
      }
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new PointsFileError(`${where} must be an object like {"id": 1, "vector": [0.5]}`);
      }
      const p = value as { id?: unknown; vector?: unknown; payload?: unknown };
      try {
        const id = jsonlId(p.id, digits.get(value));
        const vector = validateVector(p.vector, "vector");
        if (dim < 0) dim = vector.length;
        else if (vector.length !== dim) {
          throw new PointsFileError(
            `${where}: vector dimension ${vector.length} does not match the first point's ${dim}`,
          );
        }
        if (p.payload === undefined || p.payload === null) points.push({ ...wireId(id), vector });
        else {
          if (typeof p.payload !== "object" || Array.isArray(p.payload)) {
            throw new PointsFileError(
              `${where}: payload must be a JSON object, got ${JSON.stringify(p.payload)}`,
            );
          }
          const payload = JSON.stringify(p.payload);
          validatePayload(payload, "payload"); // the server's limits, named with the line
          points.push({ ...wireId(id), vector, payload });
        }
      } catch (e) {
        if (e instanceof ValidationError || e instanceof PointIdError) {
          throw new PointsFileError(`${where}: ${e.message}`);
        }
        throw e;
      }
      if (points.length === options.batch_points) {
        yield { points, bytes_read: bytes };
        points = [];
      }
    }
  } catch (e) {
    if (e instanceof PointsFileError) throw e;
    throw ioError(path, e);
  } finally {
    lines.close();
    stream.destroy();
  }
  if (points.length > 0) yield { points, bytes_read: bytes };
}
