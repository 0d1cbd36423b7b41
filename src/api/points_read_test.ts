import assert from "node:assert/strict";
import {
  decodeCursor,
  encodeCursor,
  validateCountRequest,
  validateScrollRequest,
  validateSearchBatchRequest,
} from "./points_read.ts";

Deno.test("cursors round-trip and carry a version prefix", () => {
  for (const id of [0, 1, 42, 4294967295]) assert.equal(decodeCursor(encodeCursor(id)), id);
  assert.equal(encodeCursor(7), "v1:7");
  assert.equal(decodeCursor(""), null);
  assert.equal(decodeCursor(undefined), null);
  assert.throws(() => encodeCursor(-1), RangeError);
  assert.throws(() => encodeCursor(2n ** 64n), RangeError);
  // 64-bit and string ids.
  for (const id of [2 ** 32, 2n ** 64n - 1n, "doc-7", 'a"b\\é', "7"]) {
    assert.equal(decodeCursor(encodeCursor(id)), id);
  }
  assert.equal(encodeCursor("doc"), 'v1s:"doc"');
  assert.equal(encodeCursor(2n ** 64n - 1n), "v1:18446744073709551615");
  for (
    const bad of [
      "7",
      "v1:",
      "v1:007",
      "v1:+7",
      "v1:7.0",
      "v1:18446744073709551616",
      "V1:7",
      "v1s:",
      "v1s:doc",
      'v1s:""',
      "v1s:7",
    ]
  ) {
    assert.throws(() => decodeCursor(bad), {
      name: "ValidationError",
      message: `cursor ${JSON.stringify(bad)} is not a cursor this server handed out ` +
        `(pass "" to start, then each answer's next_cursor)`,
    });
  }
  assert.throws(() => decodeCursor(5), { message: "cursor must be a string" });
  assert.throws(() => decodeCursor(`v1s:${JSON.stringify("x".repeat(129))}`), /not a cursor/);
});

Deno.test("validateScrollRequest fills the default limit and checks every field", () => {
  assert.deepEqual(validateScrollRequest({}), {
    collection: "default",
    limit: 100,
    after: null,
    with_vector: false,
    filter: null,
    with_payload: false,
  });
  assert.deepEqual(
    validateScrollRequest({ collection: "c", limit: 10_000, cursor: "v1:9", with_vector: true }),
    {
      collection: "c",
      limit: 10_000,
      after: 9,
      with_vector: true,
      filter: null,
      with_payload: false,
    },
  );
  assert.throws(() => validateScrollRequest({ limit: 10_001 }), {
    message: "limit 10001 must be between 1 and 10000 (0 selects 100)",
  });
  assert.throws(() => validateScrollRequest({ limit: 1.5 }), /^ValidationError: limit 1.5 /);
  assert.throws(
    () => validateScrollRequest({ with_vector: "yes" }),
    /^ValidationError: with_vector "yes"/,
  );
  assert.throws(() => validateScrollRequest({ collection: "a b" }), /collection/);
  assert.deepEqual(validateCountRequest({ collection: "" }), {
    collection: "default",
    filter: null,
  });
  assert.throws(() => validateCountRequest({ collection: "../x" }), /collection/);
});

Deno.test("validateSearchBatchRequest names the search of each error", () => {
  const ok = validateSearchBatchRequest({
    searches: [
      { vector: [1], k: 1 },
      { vector: [2, 3], k: 4, ef: 8, collection: "c", with_payload: true },
    ],
  });
  const flags = { with_payload: false, with_vector: false, filter: null };
  assert.deepEqual(ok, [
    { vector: [1], k: 1, ef: 0, collection: "default", ...flags },
    { vector: [2, 3], k: 4, ef: 8, collection: "c", ...flags, with_payload: true },
  ]);
  const fails = (searches: unknown, message: RegExp) =>
    assert.throws(() => validateSearchBatchRequest({ searches }), message);
  fails(undefined, /^ValidationError: searches has 0 entries; it must have 1 to 100$/);
  fails("x", /^ValidationError: searches must be an array$/);
  fails([{ vector: [1], k: 1 }, 3], /^ValidationError: searches\[1\] is not a search$/);
  fails(
    [{ vector: [1], k: 1 }, { vector: [], k: 1 }],
    /^ValidationError: searches\[1\]\.vector is empty$/,
  );
  fails([{ vector: [NaN], k: 1 }], /^ValidationError: searches\[0\]\.vector\[0\] is NaN$/);
  fails([{ vector: [1], k: 10_001 }], /^ValidationError: searches\[0\]\.k 10001 /);
  fails([{ vector: [1], k: 1, collection: "a/b" }], /^ValidationError: searches\[0\]\.collection /);
  fails(
    [{ vector: [1], k: 1, with_vector: "yes" }],
    /^ValidationError: searches\[0\]\.with_vector "yes" must be true or false$/,
  );
  fails(
    [{ vector: [1], k: 3, ef: 2 }],
    /^ValidationError: searches\[0\]\.ef 2 must be at least k 3 \(or 0\)$/,
  );
});
