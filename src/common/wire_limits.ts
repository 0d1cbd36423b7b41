/**
 * Request limits checked on the raw bytes of a gRPC request, before protobuf decoding.
 *
 * grpc-js decodes a whole request (protobufjs) before any handler runs, and its only limit is
 * the channel's message cap (64 MiB). Decoding costs per field, not per byte: 62 MB of 8-byte
 * points decode into 7.8 million objects (4.3 GB of heap, the event loop held for ~30 s), and
 * 64 MiB of 2-byte `collection` fields take ~25 s. So every server wraps the `requestDeserialize`
 * of each method ({@link limitService}) with a scan of the top-level protobuf wire fields: tag
 * varints, values skipped by their length without decoding. It checks, in this order:
 *
 * | check                                                       | status             |
 * |-------------------------------------------------------------|--------------------|
 * | the message is over the method's `bytes_max`                | RESOURCE_EXHAUSTED |
 * | the wire data is malformed (truncated, bad varint or type)  | INVALID_ARGUMENT   |
 * | a counted repeated field has more than its `max` elements   | RESOURCE_EXHAUSTED |
 * | an element of it has more than `element_fields_max` fields  | RESOURCE_EXHAUSTED |
 * | more than `fields_max` other top-level fields               | RESOURCE_EXHAUSTED |
 * | protobufjs fails to decode what passed the scan             | INVALID_ARGUMENT   |
 *
 * A deserializer that throws makes grpc-js answer INTERNAL "Error deserializing request", so a
 * refused request is returned as a {@link RefusedRequest} instead: the server's handler wrapper
 * (api/unary.ts `UnaryGuard`, the gossip `Exchange` handler) answers its status and never runs
 * the handler ({@link refusalOf}). The scan's cost is bounded by the counts, not the bytes: it
 * stops at the first limit an element breaks, and counts a list past its limit without looking
 * inside its elements. What decodes is still validated by the handler (api/validate.ts).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import { REQUEST_FIELDS_MAX } from "./limits.ts";

/** A repeated field whose elements are counted (and, for messages, scanned). */
export interface RepeatedFieldLimit {
  /** Field number in the .proto. */
  field: number;
  /** Field name, for messages: "points". */
  name: string;
  /** Most wire occurrences: elements of a message list, values of an unpacked scalar list. */
  max: number;
  /** What the elements are called in messages: "points", "values". */
  unit: string;
  /** For a list of messages: most wire fields inside one element. */
  element_fields_max?: number;
}

/** The limits of one method's request. */
export interface RequestLimit {
  /** Largest encoded request. */
  bytes_max: number;
  /** Repeated fields counted against their own limits, not `fields_max`. */
  repeated?: readonly RepeatedFieldLimit[];
  /** Most other top-level fields; default {@link REQUEST_FIELDS_MAX}. */
  fields_max?: number;
}

/** A request refused before decoding: what the deserializer hands the handler instead. */
export class RefusedRequest {
  constructor(readonly code: grpc.status, readonly details: string) {}
}

/** The status to answer for `request` when the deserializer refused it; null otherwise. */
export function refusalOf(request: unknown): { code: grpc.status; details: string } | null {
  return request instanceof RefusedRequest
    ? { code: request.code, details: request.details }
    : null;
}

/** "812 bytes", "4 KiB", "40.2 MiB". */
export function formatBytes(n: number): string {
  const unit = (v: number, name: string) => `${v.toFixed(1).replace(/\.0$/, "")} ${name}`;
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return unit(n / 1024, "KiB");
  return unit(n / (1024 * 1024), "MiB");
}

/** Malformed wire data at `offset`. */
class WireError extends Error {
  constructor(readonly offset: number, message: string) {
    super(message);
  }
}

/** Reads the varint at `pos` (at most 10 bytes); returns its value and the offset after it. */
function varint(b: Uint8Array, pos: number, end: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= end) throw new WireError(pos, "truncated varint");
    const byte = b[pos + i];
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return [value, pos + i + 1];
    scale *= 128;
  }
  throw new WireError(pos, "varint longer than 10 bytes");
}

/**
 * Walks the fields of the message in `b[start, end)`, calling `visit(field, wire_type,
 * value_start, value_end)` for each (for wire type 2 the value is the length-delimited bytes).
 * Throws {@link WireError} on malformed data.
 */
function walk(
  b: Uint8Array,
  start: number,
  end: number,
  visit: (field: number, wire_type: number, from: number, to: number) => void,
): void {
  let pos = start;
  while (pos < end) {
    const at = pos;
    const [tag, after] = varint(b, pos, end);
    const field = Math.floor(tag / 8);
    const wt = tag % 8;
    if (field < 1 || field > 0x1fff_ffff) throw new WireError(at, `field number ${field}`);
    pos = after;
    let from = pos;
    switch (wt) {
      case 0:
        pos = varint(b, pos, end)[1];
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const [len, data] = varint(b, pos, end);
        from = data;
        pos = data + len;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new WireError(at, `wire type ${wt} of field ${field} (groups are not used)`);
    }
    if (pos > end) throw new WireError(at, `field ${field} runs past the end`);
    visit(field, wt, from, pos);
  }
}

/**
 * Checks one request's raw bytes against `limit`; returns the refusal, or null when the
 * request may be decoded. `method` names it in messages ("PutBatch").
 */
export function checkRequestBytes(
  method: string,
  bytes: Uint8Array,
  limit: RequestLimit,
): RefusedRequest | null {
  if (bytes.length > limit.bytes_max) {
    let size = formatBytes(bytes.length);
    let max = formatBytes(limit.bytes_max);
    if (size === max) [size, max] = [`${bytes.length} bytes`, `${limit.bytes_max} bytes`];
    return new RefusedRequest(
      grpc.status.RESOURCE_EXHAUSTED,
      `${method} message of ${size} exceeds the limit of ${max}`,
    );
  }
  const repeated = limit.repeated ?? [];
  const fields_max = limit.fields_max ?? REQUEST_FIELDS_MAX;
  const counts = repeated.map(() => 0);
  let others = 0;
  let element: RefusedRequest | null = null;
  try {
    walk(bytes, 0, bytes.length, (field, wt, from, to) => {
      const k = repeated.findIndex((r) => r.field === field);
      if (k < 0) {
        others++;
        return;
      }
      const r = repeated[k];
      const i = counts[k]++;
      // Past the list's limit the request is refused anyway: only count the rest.
      if (r.element_fields_max === undefined || i >= r.max || element !== null || wt !== 2) {
        return;
      }
      let n = 0;
      walk(bytes, from, to, () => n++);
      if (n > r.element_fields_max) {
        element = new RefusedRequest(
          grpc.status.RESOURCE_EXHAUSTED,
          `${method}.${r.name}[${i}] has ${n} wire fields; the limit is ${r.element_fields_max} ` +
            `(vectors must be packed)`,
        );
      }
    });
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
    return new RefusedRequest(
      grpc.status.INVALID_ARGUMENT,
      `${method} message of ${formatBytes(bytes.length)} is not valid protobuf: ${e.message} ` +
        `at byte ${e.offset}`,
    );
  }
  for (let k = 0; k < repeated.length; k++) {
    const r = repeated[k];
    if (counts[k] > r.max) {
      return new RefusedRequest(
        grpc.status.RESOURCE_EXHAUSTED,
        `${method}.${r.name}: ${counts[k]} ${r.unit} exceed the limit of ${r.max}`,
      );
    }
  }
  if (element !== null) return element;
  if (others > fields_max) {
    const besides = repeated.length === 0
      ? ""
      : ` besides ${repeated.map((r) => r.name).join(", ")}`;
    return new RefusedRequest(
      grpc.status.RESOURCE_EXHAUSTED,
      `${method} message has ${others} wire fields${besides}; the limit is ${fields_max}`,
    );
  }
  return null;
}

/** At most `max` characters of `s`, with "..." when cut. */
function shorten(s: string, max = 200): string {
  return s.length <= max ? s : `${s.slice(0, max)}...`;
}

/**
 * A copy of `service` whose request deserializers check {@link checkRequestBytes} first and
 * return a {@link RefusedRequest} (never throw) for a request over a limit or one that fails to
 * decode. Every method needs an entry in `limits`. The original definition (which clients use to
 * serialize) is not changed.
 */
export function limitService(
  service: grpc.ServiceDefinition,
  limits: Readonly<Record<string, RequestLimit>>,
): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [method, def] of Object.entries(service)) {
    const limit = limits[method];
    if (limit === undefined) throw new Error(`No request limit for method ${def.path}`);
    const decode = def.requestDeserialize;
    out[method] = {
      ...def,
      requestDeserialize: (bytes: Buffer) => {
        const refused = checkRequestBytes(method, bytes, limit);
        if (refused !== null) return refused;
        try {
          return decode(bytes);
        } catch (e) {
          return new RefusedRequest(
            grpc.status.INVALID_ARGUMENT,
            `${method} message of ${formatBytes(bytes.length)} could not be decoded: ` +
              shorten(e instanceof Error ? e.message : String(e)),
          );
        }
      },
    };
  }
  for (const method of Object.keys(limits)) {
    if (!(method in service)) throw new Error(`Request limit for unknown method ${method}`);
  }
  return out;
}
