import assert from "node:assert/strict";
import {
  compileFilter,
  evaluate,
  type Filter,
  FilterError,
  isEmptyFilter,
  mustTerms,
  parseFilter,
  parseKey,
  payloadValues,
} from "./filter.ts";
import {
  FILTER_BYTES_MAX,
  FILTER_CONDITIONS_MAX,
  FILTER_DEPTH_MAX,
  FILTER_KEY_CHARS_MAX,
  FILTER_KEY_PARTS_MAX,
  FILTER_STRING_CHARS_MAX,
  FILTER_VALUES_MAX,
  FILTER_VALUES_TOTAL_MAX,
} from "./limits.ts";

/** Parses `input` and expects a FilterError at `path` whose message contains `fragment`. */
function refuses(input: unknown, path: string, fragment: string) {
  assert.throws(
    () => parseFilter(input),
    (e: unknown) => {
      assert.ok(e instanceof FilterError, `not a FilterError: ${e}`);
      assert.equal(e.path, path, `path of ${e.message}`);
      assert.ok(e.message.startsWith(`${path}: `), e.message);
      assert.ok(e.message.includes(fragment), `${e.message} lacks ${fragment}`);
      return true;
    },
  );
}

Deno.test("malformed filters are refused with the JSON path of the bad part", () => {
  const cases: Array<[unknown, string, string]> = [
    [[], "filter", "expected a filter object, got []"],
    [7, "filter", "got 7"],
    ["{not json", "filter", "not valid JSON"],
    [{ mus: [] }, "filter.mus", 'unknown field "mus"'],
    [{ must: [1] }, "filter.must[0]", "expected a condition object, got 1"],
    [
      { must: [{ key: "a", match: { value: 1 } }, { key: "b", range: { gt: "abc" } }] },
      "filter.must[1].range.gt",
      'expected a number, got "abc"',
    ],
    [{ must: [{ key: "a", match: { value: { x: 1 } } }] }, "filter.must[0].match.value", '{"x":1}'],
    [{ must: [{ key: "a", match: { value: 1.5 } }] }, "filter.must[0].match.value", "got 1.5"],
    [{ must: [{ key: "a", match: { value: null } }] }, "filter.must[0].match.value", "got null"],
    [{ must: [{ key: "", match: { value: 1 } }] }, "filter.must[0].key", "non-empty key"],
    [{ must: [{ key: 5, match: { value: 1 } }] }, "filter.must[0].key", "got 5"],
    [{ must: [{ key: "a..b", match: { value: 1 } }] }, "filter.must[0].key", '"a..b"'],
    [{ must: [{ key: "a[0]", match: { value: 1 } }] }, "filter.must[0].key", '"a[0]"'],
    [{ must: [{ key: "a" }] }, "filter.must[0]", "expected one of match, range, values_count"],
    [
      { must: [{ key: "a", match: { value: 1 }, range: { gt: 1 } }] },
      "filter.must[0].range",
      "got match and range",
    ],
    [{ must: [{ key: "a", geo_radius: {} }] }, "filter.must[0].geo_radius", "unsupported"],
    [{ must: [{ key: "a", matches: {} }] }, "filter.must[0].matches", "unknown condition"],
    [{ must: [{ key: "a", match: {} }] }, "filter.must[0].match", "expected one of value"],
    [{ must: [{ key: "a", match: { text: "x" } }] }, "filter.must[0].match.text", "unknown match"],
    [{ must: [{ key: "a", match: { any: "x" } }] }, "filter.must[0].match.any", "expected a list"],
    [
      { should: [{ key: "a", match: { any: [1, []] } }] },
      "filter.should[0].match.any[1]",
      "got []",
    ],
    [
      { must_not: [{ key: "a", match: { except: [{}] } }] },
      "filter.must_not[0].match.except[0]",
      "{}",
    ],
    [{ must: [{ key: "a", match: 3 }] }, "filter.must[0].match", "expected an object, got 3"],
    [
      { must: [{ key: "a", range: { gt: 1, between: 2 } }] },
      "filter.must[0].range.between",
      "unknown bound",
    ],
    [
      { must: [{ key: "a", range: { lt: Infinity } }] },
      "filter.must[0].range.lt",
      "expected a number",
    ],
    [
      { must: [{ key: "a", values_count: { gt: -1 } }] },
      "filter.must[0].values_count.gt",
      "got -1",
    ],
    [
      { must: [{ key: "a", values_count: { lt: 1.5 } }] },
      "filter.must[0].values_count.lt",
      "got 1.5",
    ],
    [{ must: [{ has_id: [1, -2] }] }, "filter.must[0].has_id[1]", "expected a point id"],
    [{ must: [{ has_id: [2 ** 53] }] }, "filter.must[0].has_id[0]", "9007199254740992"],
    [{ must: [{ has_id: ["u-1", ""] }] }, "filter.must[0].has_id[1]", '""'],
    [{ must: [{ has_id: [true] }] }, "filter.must[0].has_id[0]", "true"],
    [{ must: [{ has_id: [1], key: "a" }] }, "filter.must[0].has_id", "unknown condition"],
    [{ must: [{ has_id: [1], must: [] }] }, "filter.must[0].must", "beside has_id"],
    [{ must: [{ is_empty: "a" }] }, "filter.must[0].is_empty", 'got "a"'],
    [{ must: [{ is_null: { key: "a", x: 1 } }] }, "filter.must[0].is_null.x", "unknown field"],
    [{ must: [{ is_null: { key: "" } }] }, "filter.must[0].is_null.key", "non-empty"],
    [{ must: [{ nested: { key: "a", filter: {} } }] }, "filter.must[0].nested", "unsupported"],
    [
      { must: [{ must: [{ should: [{ key: "x" }] }] }] },
      "filter.must[0].must[0].should[0]",
      "beside key",
    ],
    [{ must: [{ musty: 1 }] }, "filter.must[0].musty", "unknown field"],
    [{ min_should: [] }, "filter.min_should", "expected an object"],
    [{ min_should: { conditions: [], min_count: -1 } }, "filter.min_should.min_count", "got -1"],
    [
      { min_should: { conditions: [], min_count: 1, x: 0 } },
      "filter.min_should.x",
      "unknown field",
    ],
    [
      { min_should: { conditions: [{ key: "a", range: { gt: "1" } }], min_count: 1 } },
      "filter.min_should.conditions[0].range.gt",
      'got "1"',
    ],
    [{ must: { key: "a", range: { gt: "1" } } }, "filter.must.range.gt", 'got "1"'],
  ];
  for (const [input, path, fragment] of cases) refuses(input, path, fragment);
});

Deno.test("the root name in error paths is the caller's field", () => {
  assert.throws(
    () => parseFilter({ must: 1 }, "request.filter"),
    /^FilterError: request\.filter\.must: /,
  );
  assert.throws(
    () => parseFilter({ must: 1 }, "request.filter"),
    (e: unknown) => e instanceof FilterError && e.path === "request.filter.must",
  );
});

Deno.test("long values are quoted shortened in messages", () => {
  const long = "x".repeat(5000);
  assert.throws(
    () => parseFilter({ must: [{ key: "a", range: { gt: long } }] }),
    (e: unknown) => e instanceof FilterError && e.message.length < 200 && e.message.includes("…"),
  );
});

Deno.test("every bound is enforced at its limit and not before", () => {
  // Text size: a filter padded with spaces up to the limit parses; one byte more does not.
  const small = JSON.stringify({ must: [] });
  assert.doesNotThrow(() => parseFilter(small + " ".repeat(FILTER_BYTES_MAX - small.length)));
  refuses(small + " ".repeat(FILTER_BYTES_MAX - small.length + 1), "filter", "larger than");
  // Multi-byte characters count as UTF-8 bytes: 6,000 3-byte '€' are 18,000 bytes.
  const euro = `{"must":[{"key":"a","match":{"value":"${"€".repeat(6000)}"}}]}`;
  refuses(euro, "filter", "bytes is larger than");

  // Depth: FILTER_DEPTH_MAX nested filters pass, one more fails.
  const nest = (d: number): unknown => d === 1 ? { must: [] } : { must: [nest(d - 1)] };
  assert.doesNotThrow(() => parseFilter(nest(FILTER_DEPTH_MAX)));
  assert.throws(() => parseFilter(nest(FILTER_DEPTH_MAX + 1)), /nested deeper than 16/);

  // Conditions: counted over the whole filter.
  const cond = { key: "a", match: { value: 1 } };
  const conds = (n: number) => Array.from({ length: n }, () => cond);
  assert.doesNotThrow(() => parseFilter({ must: conds(FILTER_CONDITIONS_MAX) }));
  refuses({ must: conds(FILTER_CONDITIONS_MAX + 1) }, "filter.must", "more than 256 conditions");
  refuses(
    { must: conds(200), should: [{ must: conds(56) }] },
    "filter.should[0].must",
    "more than 256",
  );

  // List lengths, per list and in total.
  const list = (n: number) => Array.from({ length: n }, (_, i) => i);
  assert.doesNotThrow(() => parseFilter({ must: [{ has_id: list(FILTER_VALUES_MAX) }] }));
  refuses(
    { must: [{ has_id: list(FILTER_VALUES_MAX + 1) }] },
    "filter.must[0].has_id",
    "longer than 1024",
  );
  refuses(
    { must: [{ key: "a", match: { any: list(FILTER_VALUES_MAX + 1) } }] },
    "filter.must[0].match.any",
    "longer than",
  );
  const many = Array.from(
    { length: FILTER_VALUES_TOTAL_MAX / FILTER_VALUES_MAX + 1 },
    () => ({ key: "a", match: { except: list(FILTER_VALUES_MAX) } }),
  );
  refuses({ must: many }, `filter.must[${many.length - 1}].match.except`, "more than 8192");

  // Keys and strings.
  assert.doesNotThrow(() => parseKey("k".repeat(FILTER_KEY_CHARS_MAX), "k"));
  refuses(
    { must: [{ key: "k".repeat(FILTER_KEY_CHARS_MAX + 1), range: {} }] },
    "filter.must[0].key",
    "longer than 256",
  );
  const parts = (n: number) => Array.from({ length: n }, () => "p").join(".");
  assert.equal(parseKey(parts(FILTER_KEY_PARTS_MAX), "k").length, FILTER_KEY_PARTS_MAX);
  refuses(
    { must: [{ is_empty: { key: parts(FILTER_KEY_PARTS_MAX + 1) } }] },
    "filter.must[0].is_empty.key",
    "more than 16",
  );
  const s = (n: number) => ({ must: [{ key: "a", match: { value: "s".repeat(n) } }] });
  assert.doesNotThrow(() => parseFilter(s(FILTER_STRING_CHARS_MAX)));
  refuses(s(FILTER_STRING_CHARS_MAX + 1), "filter.must[0].match.value", "longer than 1024");
});

Deno.test("parsing builds the typed AST: keys split, [] dropped, ids sorted and unique", () => {
  const f = parseFilter(JSON.stringify({
    must: [
      { key: "meta.tags[].name", match: { any: ["a", 1, true] } },
      { has_id: [9, 3, 9, 1] },
      { key: "n", range: { gte: 1, lt: 2.5, gt: null } },
    ],
    should: { is_null: { key: "x" } },
    min_should: { conditions: [{ key: "k", values_count: { lte: 2 } }], min_count: 1 },
  }));
  assert.deepEqual(f.must[0], {
    kind: "match_any",
    key: "meta.tags[].name",
    path: ["meta", "tags", "name"],
    values: ["a", 1, true],
  });
  assert.deepEqual(f.must[1], { kind: "has_id", ids: new Uint32Array([1, 3, 9]) });
  // Integers above 2^32 - 1 and strings go to other_ids, in compareIds order, without repeats.
  const g = parseFilter({ must: [{ has_id: ["b", 2 ** 40, 7, "a", "b"] }] });
  assert.deepEqual(g.must[0], {
    kind: "has_id",
    ids: new Uint32Array([7]),
    other_ids: [2 ** 40, "a", "b"],
  });
  assert.deepEqual(f.must[2], { kind: "range", key: "n", path: ["n"], range: { gte: 1, lt: 2.5 } });
  assert.deepEqual(f.should, [{ kind: "is_null", key: "x", path: ["x"] }]);
  assert.equal(f.min_should?.min_count, 1);
  assert.equal(f.must_not.length, 0);
  assert.ok(isEmptyFilter(parseFilter("{}")));
  assert.ok(isEmptyFilter(parseFilter({ must: null, should: [] })));
  assert.ok(!isEmptyFilter(f));
});

/** Whether `filter` (JSON form) matches `payload` for point `id`. */
function matches(filter: unknown, payload: object | null, id = 1): boolean {
  return evaluate(parseFilter(filter), id, () => payload);
}

const DOC = {
  city: "Berlin",
  n: 5,
  x: 2.5,
  flag: true,
  tags: ["red", "blue"],
  nums: [1, 7, 12],
  nil: null,
  empty: [],
  nulls: [null],
  mixed: [null, 3],
  meta: { lang: "de", deep: { level: 3 } },
  items: [{ name: "a", price: 10, sub: [{ q: 1 }] }, { name: "b", price: 30, sub: [{ q: 2 }] }],
  nested_arr: [[{ name: "z" }]],
};

Deno.test("match: value, any, except on scalars, arrays, nested objects and arrays of objects", () => {
  const m = (key: string, match: unknown) => matches({ must: [{ key, match }] }, DOC);
  assert.ok(m("city", { value: "Berlin" }));
  assert.ok(!m("city", { value: "berlin" }));
  assert.ok(m("n", { value: 5 }));
  assert.ok(!m("n", { value: "5" }), "strict: number 5 is not string 5");
  assert.ok(m("flag", { value: true }));
  assert.ok(!m("flag", { value: 1 }));
  assert.ok(m("tags", { value: "blue" }), "an array matches when an element does");
  assert.ok(m("tags[]", { value: "blue" }));
  assert.ok(!m("tags", { value: "green" }));
  assert.ok(m("meta.lang", { value: "de" }));
  assert.ok(m("meta.deep.level", { value: 3 }));
  assert.ok(m("items.name", { value: "b" }), "arrays of objects are entered");
  assert.ok(m("items[].price", { value: 30 }));
  assert.ok(m("items.sub.q", { value: 2 }));
  assert.ok(!m("nested_arr.name", { value: "z" }), "arrays inside arrays are not entered");
  assert.ok(m("tags", { any: ["green", "red"] }));
  assert.ok(!m("tags", { any: ["green"] }));
  assert.ok(!m("tags", { any: [] }));
  assert.ok(m("nums", { any: [12, 100] }));
  assert.ok(m("city", { except: ["Paris"] }));
  assert.ok(!m("city", { except: ["Berlin"] }));
  assert.ok(m("tags", { except: ["red"] }), "blue is not excepted");
  assert.ok(!m("tags", { except: ["red", "blue"] }));
  assert.ok(!m("nil", { except: ["x"] }), "null is no value for except");
  assert.ok(!m("meta", { except: ["x"] }), "an object is no value for except");
  // Missing keys match nothing.
  assert.ok(!m("nope", { value: "x" }));
  assert.ok(!m("nope", { except: ["x"] }));
  assert.ok(!m("meta.nope.deeper", { any: ["x"] }));
  assert.ok(!m("city.sub", { value: "x" }), "a string has no keys");
  // Keys never reach inherited properties.
  assert.ok(!m("constructor", { except: ["x"] }));
  assert.ok(!m("tags.length", { value: 2 }));
  assert.ok(!matches({ must: [{ key: "toString", match: { except: [1] } }] }, {}));
  assert.ok(
    matches({ must: [{ key: "__proto__", match: { value: 1 } }] }, JSON.parse('{"__proto__":1}')),
  );
});

Deno.test("range: numbers only, every bound applies, any element counts", () => {
  const r = (key: string, range: unknown) => matches({ must: [{ key, range }] }, DOC);
  assert.ok(r("n", { gte: 5, lte: 5 }));
  assert.ok(!r("n", { gt: 5 }));
  assert.ok(!r("n", { lt: 5 }));
  assert.ok(r("n", { gt: 4.9, lt: 5.1 }));
  assert.ok(r("x", { gt: 2, lt: 3 }));
  assert.ok(r("n", {}), "an empty range matches any number");
  assert.ok(!r("city", {}), "strings are not in a range");
  assert.ok(!r("flag", { gte: 0 }));
  assert.ok(r("nums", { gt: 10 }), "12 is above 10");
  assert.ok(!r("nums", { gt: 1, lt: 7 }), "no single element is strictly between");
  assert.ok(r("items.price", { gte: 20, lte: 40 }));
  assert.ok(r("mixed", { gt: 2 }));
  assert.ok(!r("nope", {}));
  assert.ok(!r("nil", {}));
  assert.ok(r("n", { gt: 1, gte: 5 }), "both lower bounds hold");
  assert.ok(!r("n", { gt: 5, gte: 1 }));
});

Deno.test("is_empty, is_null and values_count on missing, null, empty and filled keys", () => {
  const kinds = ["is_empty", "is_null"] as const;
  const table: Array<[string, boolean, boolean, number]> = [
    // key, is_empty, is_null, values count (-1: missing)
    ["nope", true, false, -1],
    ["nil", true, true, 0],
    ["empty", true, false, 0],
    ["nulls", true, true, 0],
    ["mixed", false, true, 1],
    ["city", false, false, 1],
    ["tags", false, false, 2],
    ["meta", false, false, 1],
    ["meta.nope", true, false, -1],
    ["items.name", false, false, 2],
    ["items.sub.q", false, false, 2],
  ];
  for (const [key, empty, nul, count] of table) {
    for (const k of kinds) {
      const want = k === "is_empty" ? empty : nul;
      assert.equal(matches({ must: [{ [k]: { key } }] }, DOC), want, `${k} ${key}`);
    }
    assert.equal(
      matches({ must: [{ key, values_count: { gte: 0 } }] }, DOC),
      count >= 0,
      `count>=0 ${key}`,
    );
    if (count >= 0) {
      assert.ok(
        matches({ must: [{ key, values_count: { gte: count, lte: count } }] }, DOC),
        `count ${key}`,
      );
      assert.ok(!matches({ must: [{ key, values_count: { gt: count } }] }, DOC));
      assert.ok(!matches({ must: [{ key, values_count: { lt: count } }] }, DOC));
    }
  }
  assert.ok(matches({ must: [{ is_empty: { key: "a" } }] }, null), "no payload: everything empty");
  assert.ok(!matches({ must: [{ is_null: { key: "a" } }] }, null));
  assert.ok(matches({ must_not: [{ key: "a", match: { value: 1 } }] }, null));
});

Deno.test("must, should, must_not, min_should and nesting combine as documented", () => {
  const t = (v: string) => ({ key: "tags", match: { value: v } });
  const yes = t("red");
  const no = t("green");
  const table: Array<[unknown, boolean]> = [
    [{}, true],
    [{ must: [yes, yes] }, true],
    [{ must: [yes, no] }, false],
    [{ should: [no, yes] }, true],
    [{ should: [no, no] }, false],
    [{ should: [] }, true],
    [{ must_not: [no] }, true],
    [{ must_not: [no, yes] }, false],
    [{ must: [yes], should: [no], must_not: [] }, false],
    [{ must: [yes], should: [no, yes], must_not: [no] }, true],
    [{ must_not: [{ key: "nope", match: { value: 1 } }] }, true],
    [{ must_not: [{ is_empty: { key: "nope" } }] }, false],
    [{ must: [{ should: [no, { must: [yes, { must_not: [no] }] }] }] }, true],
    [{ must_not: [{ must: [yes, no] }] }, true],
    [{ must_not: [{ should: [yes, no] }] }, false],
    [{ min_should: { conditions: [yes, no, t("blue")], min_count: 2 } }, true],
    [{ min_should: { conditions: [yes, no, no], min_count: 2 } }, false],
    [{ min_should: { conditions: [no], min_count: 0 } }, true],
    [{ min_should: { conditions: [yes], min_count: 2 } }, false],
    [{ must: [{ has_id: [1, 2] }, yes] }, true],
    [{ must: [{ has_id: [2, 3] }, yes] }, false],
    [{ must_not: [{ has_id: [1] }] }, false],
    [{ should: [{ has_id: [5] }, no] }, false],
  ];
  for (const [filter, want] of table) {
    assert.equal(matches(filter, DOC, 1), want, JSON.stringify(filter));
  }
});

Deno.test("the payload is read lazily: at most once, and not at all when the id decides", () => {
  let reads = 0;
  const get = () => {
    reads++;
    return DOC;
  };
  const byId = compileFilter(parseFilter({
    must: [{ key: "city", match: { value: "Berlin" } }, { has_id: [1, 2] }],
  }));
  assert.equal(byId(7, get), false);
  assert.equal(reads, 0, "has_id runs first and decides");
  assert.equal(byId(2, get), true);
  assert.equal(reads, 1);
  const many = compileFilter(parseFilter({
    must: [{ key: "n", range: { gt: 1 } }, { key: "tags", match: { value: "red" } }],
    must_not: [{ is_null: { key: "city" } }],
    should: [{ key: "meta.lang", match: { value: "de" } }],
  }));
  reads = 0;
  assert.equal(many(1, get), true);
  assert.equal(reads, 1, "four payload conditions, one read");
  assert.equal(compileFilter(parseFilter({}))(1, get), true);
  assert.equal(reads, 1, "an empty filter reads nothing");
  // A predicate does not keep the last payload alive or leak it into the next call.
  assert.equal(many(1, () => null), false);
});

Deno.test("payloadValues lists what conditions test, arrays flattened the same way", () => {
  assert.deepEqual(payloadValues(DOC, ["tags"]), ["red", "blue"]);
  assert.deepEqual(payloadValues(DOC, ["items", "price"]), [10, 30]);
  assert.deepEqual(payloadValues(DOC, ["items", "sub", "q"]), [1, 2]);
  assert.deepEqual(payloadValues(DOC, ["nope"]), []);
  assert.deepEqual(payloadValues(DOC, ["nil"]), [null]);
  assert.deepEqual(payloadValues(null, ["a"]), []);
});

Deno.test("mustTerms lists the conjunction, flattening pure-must nested filters", () => {
  const f: Filter = parseFilter({
    must: [
      { key: "a[].b", match: { value: 1 } },
      { must: [{ has_id: [1] }, { must: [{ is_empty: { key: "c" } }] }] },
      { should: [{ key: "d", range: {} }] },
    ],
    should: [{ key: "e", match: { value: 1 } }],
  });
  assert.deepEqual(mustTerms(f).map((t) => [t.key, t.kind]), [
    ["a.b", "match"],
    [null, "has_id"],
    ["c", "is_empty"],
    [null, "filter"],
  ]);
});
