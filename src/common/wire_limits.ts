/**
 * Request limits checked on the raw bytes of a gRPC request, before protobuf decoding.
 *
 * grpc-js decodes a whole request (protobufjs) before any handler runs, and its only limit is
 * the channel's message cap (64 MiB). Decoding costs per field, not per byte: 62 MB of 8-byte
 * points decode into 7.8 million objects (4.3 GB of heap, the event loop held for ~30 s), and
 * 64 MiB of 2-byte `collection` fields take ~25 s. So every server wraps the `requestDeserialize`
 * of each method ({@link limitService}) with a scan of the top-level protobuf wire fields (tag
 * varints; values skipped by their length, not decoded). The size is checked first, the rest in
 * wire order; the first limit broken answers:
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
 * the handler ({@link refusalOf}). The scan's cost is bounded by the limits, not the bytes: it
 * stops at the first limit broken. What decodes is still validated by the handler (api/validate.ts).
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
export class WireError extends Error {
  constructor(readonly offset: number, message: string) {
    super(message);
  }
}

/** The offset after the varint {@link varint} read last (one scan at a time: no allocation). */
let varint_end = 0;

/** Reads the varint at `pos` (at most 10 bytes) and sets {@link varint_end}. */
function varint(b: Uint8Array, pos: number, end: number): number {
  if (pos < end && b[pos] < 0x80) {
    varint_end = pos + 1;
    return b[pos];
  }
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= end) throw new WireError(pos, "truncated varint");
    const byte = b[pos + i];
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) {
      varint_end = pos + i + 1;
      return value;
    }
    scale *= 128;
  }
  throw new WireError(pos, "varint longer than 10 bytes");
}

/** One field of a message, as {@link nextField} found it. */
export interface Field {
  number: number;
  wire_type: number;
  /** The value's bytes (for wire type 2 the length-delimited contents). */
  from: number;
  to: number;
}

/**
 * Reads the field at `pos` of the message ending at `end` into `f` (its value skipped, not
 * decoded); returns the offset after it. Throws {@link WireError} on malformed data.
 */
export function nextField(b: Uint8Array, pos: number, end: number, f: Field): number {
  const tag = varint(b, pos, end);
  const number = Math.floor(tag / 8);
  const wt = tag % 8;
  if (number < 1 || number > 0x1fff_ffff) throw new WireError(pos, `field number ${number}`);
  let from = varint_end;
  let to: number;
  switch (wt) {
    case 0:
      varint(b, from, end);
      to = varint_end;
      break;
    case 1:
      to = from + 8;
      break;
    case 2: {
      const len = varint(b, from, end);
      from = varint_end;
      to = from + len;
      break;
    }
    case 5:
      to = from + 4;
      break;
    default:
      throw new WireError(pos, `wire type ${wt} of field ${number} (groups are not used)`);
  }
  if (to > end) throw new WireError(pos, `field ${number} runs past the end`);
  f.number = number;
  f.wire_type = wt;
  f.from = from;
  f.to = to;
  return to;
}

/** Fields in `b[from, to)`, counting stops above `max`. */
function countFields(b: Uint8Array, from: number, to: number, max: number): number {
  const f: Field = { number: 0, wire_type: 0, from: 0, to: 0 };
  let n = 0;
  for (let pos = from; pos < to && n <= max; n++) pos = nextField(b, pos, to, f);
  return n;
}

/**
 * Checks one request's raw bytes against `limit`; returns the refusal, or null when the
 * request may be decoded. `method` names it in messages ("PutBatch"). Stops at the first limit
 * broken, so it reads at most `max` elements of each list (and `element_fields_max` fields in
 * each) and `fields_max` other fields, whatever the message's size.
 */
export function checkRequestBytes(
  method: string,
  bytes: Uint8Array,
  limit: RequestLimit,
): RefusedRequest | null {
  const refuse = (details: string) => new RefusedRequest(grpc.status.RESOURCE_EXHAUSTED, details);
  if (bytes.length > limit.bytes_max) {
    let size = formatBytes(bytes.length);
    let max = formatBytes(limit.bytes_max);
    if (size === max) [size, max] = [`${bytes.length} bytes`, `${limit.bytes_max} bytes`];
    return refuse(`${method} message of ${size} exceeds the limit of ${max}`);
  }
  const repeated = limit.repeated ?? [];
  const fields_max = limit.fields_max ?? REQUEST_FIELDS_MAX;
  const counts = repeated.map(() => 0);
  let others = 0;
  const f: Field = { number: 0, wire_type: 0, from: 0, to: 0 };
  try {
    for (let pos = 0; pos < bytes.length;) {
      pos = nextField(bytes, pos, bytes.length, f);
      let k = 0;
      while (k < repeated.length && repeated[k].field !== f.number) k++;
      if (k === repeated.length) {
        if (++others > fields_max) {
          const besides = repeated.length === 0
            ? ""
            : ` besides ${repeated.map((r) => r.name).join(", ")}`;
          return refuse(
            `${method} message has more than ${fields_max} wire fields${besides} (the limit)`,
          );
        }
        continue;
      }
      const r = repeated[k];
      const i = counts[k]++;
      if (i >= r.max) {
        // Counting on costs ~40 ns a field (300 ms for 7.8 million): stop here.
        return refuse(
          `${method}.${r.name} has more than ${r.max} ${r.unit} (the limit) in a message of ` +
            formatBytes(bytes.length),
        );
      }
      if (r.element_fields_max === undefined || f.wire_type !== 2) continue;
      const n = countFields(bytes, f.from, f.to, r.element_fields_max);
      if (n > r.element_fields_max) {
        return refuse(
          `${method}.${r.name}[${i}] has more than ${r.element_fields_max} wire fields (the ` +
            `limit; vectors must be packed)`,
        );
      }
    }
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
    return new RefusedRequest(
      grpc.status.INVALID_ARGUMENT,
      `${method} message of ${formatBytes(bytes.length)} is not valid protobuf: ${e.message} ` +
        `at byte ${e.offset}`,
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
