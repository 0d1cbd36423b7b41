/**
 * Test support: WAL payloads as the code before versions wrote them (record types 1-3), so
 * tests can check that old logs still decode and replay.
 *
 * @example
 * ```ts
 * import { legacyPayload } from "./legacy_records.ts";
 *
 * const deletePayload = legacyPayload((w) => w.u32(8)); // a type-2 DELETE of id 8
 * ```
 * @module
 */
import { BinaryWriter, BufferSink } from "../io/binary.ts";

/** A legacy payload: the log's own collection (the empty name), then `write`'s fields. */
export function legacyPayload(write: (w: BinaryWriter) => void): Uint8Array {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink, { buffer_bytes: 64 });
  w.string("");
  write(w);
  w.flush();
  return sink.bytes();
}
