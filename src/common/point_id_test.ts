import assert from "node:assert/strict";
import { BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";
import {
  canonicalId,
  compareIds,
  formatId,
  ID_STRING_BYTES_MAX,
  idFromJson,
  idFromWire,
  idsFromWire,
  idsToWire,
  idToWire,
  isU32Id,
  PointIdError,
  readId,
  stringifyWithIds,
  writeId,
} from "./point_id.ts";

Deno.test("canonicalId keeps numbers below 2^53 as numbers and larger integers as bigints", () => {
  assert.equal(canonicalId(5), 5);
  assert.equal(canonicalId(5n), 5);
  assert.equal(canonicalId(2n ** 53n), 2n ** 53n);
  assert.equal(canonicalId(2n ** 64n - 1n), 2n ** 64n - 1n);
  assert.equal(canonicalId("doc-7"), "doc-7");
  assert.throws(() => canonicalId(-1), PointIdError);
  assert.throws(() => canonicalId(1.5), PointIdError);
  assert.throws(() => canonicalId(2n ** 64n), /2\^64 - 1/);
  assert.throws(() => canonicalId(2 ** 60, "points[2].id"), /points\[2\]\.id .*lost precision/);
  assert.throws(() => canonicalId(""), /is empty/);
  assert.throws(() => canonicalId("x".repeat(ID_STRING_BYTES_MAX + 1)), /over 128 bytes/);
  assert.throws(() => canonicalId("é".repeat(65)), /over 128 bytes of UTF-8 \(130\)/);
  assert.throws(() => canonicalId("a\ud800"), /lone surrogate/);
  assert.throws(() => canonicalId("a\u0000b"), /U\+0000/);
  assert.throws(() => canonicalId(null), /is not an id/);
});

Deno.test("idFromWire reads the (id, string_id) pair and names the field", () => {
  assert.equal(idFromWire("42", ""), 42);
  assert.equal(idFromWire("18446744073709551615", ""), 2n ** 64n - 1n);
  assert.equal(idFromWire("9007199254740991", ""), Number.MAX_SAFE_INTEGER);
  assert.equal(idFromWire("9007199254740992", ""), 2n ** 53n);
  assert.equal(idFromWire(7, undefined), 7);
  assert.equal(idFromWire(undefined, undefined), 0);
  assert.equal(idFromWire("0", "doc-7"), "doc-7");
  assert.throws(() => idFromWire("3", "doc-7", "points[1]."), /points\[1\]\.id "3" must be 0/);
  assert.throws(
    () => idFromWire("18446744073709551616", ""),
    /^PointIdError: id 18446744073709551616 is not an integer/,
  );
  assert.throws(() => idFromWire("0x10", ""), PointIdError);
  assert.throws(() => idFromWire("0", "\u0000"), /string_id/);
});

Deno.test("idsFromWire lists integers, then strings; idsToWire splits them back", () => {
  const ids = idsFromWire(["1", "18446744073709551615"], ["b", "a"]);
  assert.deepEqual(ids, [1, 2n ** 64n - 1n, "b", "a"]);
  assert.deepEqual(idsToWire(ids), { ids: [1, "18446744073709551615"], string_ids: ["b", "a"] });
  assert.throws(() => idsFromWire(["1"], [5]), /string_ids\[0\]/);
  assert.throws(() => idsFromWire(["x"], []), /ids\[0\]/);
  assert.deepEqual(idToWire(2n ** 60n), { id: "1152921504606846976", string_id: "" });
  assert.deepEqual(idToWire("a"), { id: 0, string_id: "a" });
});

Deno.test("compareIds orders integers by value before strings", () => {
  const ids = ["b", 2n ** 60n, 3, "a", 0, 2n ** 54n];
  assert.deepEqual(ids.sort(compareIds), [0, 3, 2n ** 54n, 2n ** 60n, "a", "b"]);
  assert.equal(compareIds("a", "a"), 0);
  assert.equal(compareIds(2n ** 60n, 2n ** 60n), 0);
  assert.ok(isU32Id(0xffff_ffff) && !isU32Id(0x1_0000_0000) && !isU32Id("1"));
  assert.equal(formatId("doc"), '"doc"');
  assert.equal(formatId(2n ** 60n), "1152921504606846976");
});

Deno.test("JSON ids: numbers and strings in, bigints out as exact integers", () => {
  assert.equal(idFromJson(12), 12);
  assert.equal(idFromJson("12"), "12");
  assert.throws(() => idFromJson(true, "has_id[0]"), /has_id\[0\] true is not an id/);
  const text = stringifyWithIds({ id: 2n ** 64n - 1n, s: "\u0000", p: { n: 1 } });
  assert.equal(text, '{"id":18446744073709551615,"s":"\\u0000","p":{"n":1}}');
  assert.equal(stringifyWithIds([1, "a"]), '[1,"a"]');
});

Deno.test("writeId/readId round-trip every kind and refuse bad bytes", () => {
  const sink = new BufferSink();
  const w = new BinaryWriter(sink);
  const ids = [0, 0xffff_ffff, 2n ** 64n - 1n, "doc-7", "é"];
  for (const id of ids) writeId(w, id);
  w.flush();
  const r = new BinaryReader(sink.bytes());
  for (const id of ids) assert.equal(readId(r), id);
  r.expectEnd();
  assert.throws(() => readId(new BinaryReader(new Uint8Array([2]))), /kind 2/);
  assert.throws(() => readId(new BinaryReader(new Uint8Array([1, 0, 0, 0, 0]))), /is empty/);
});
