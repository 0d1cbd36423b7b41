import assert from "node:assert/strict";
import { compileFilter, type FieldCondition, parseFilter } from "../common/filter.ts";
import { PAYLOAD_INDEXES_MAX } from "../common/limits.ts";
import { Prng } from "../common/prng.ts";
import { GEN_FIELDS, randomCondition, randomPayload } from "../testing/payload_gen.ts";
import { PayloadIndexError, PayloadIndexes, SortedPairs } from "./payload_index.ts";

/** A field condition parsed from its JSON form. */
function cond(json: unknown): FieldCondition {
  return parseFilter({ must: [json] }).must[0] as FieldCondition;
}

/** Ids among `payloads` that `c` matches, by brute force. */
function bruteIds(payloads: Map<number, object>, json: unknown): number[] {
  const p = compileFilter(parseFilter({ must: [json] }));
  return [...payloads].filter(([id, pl]) => p(id, () => pl)).map(([id]) => id).sort((a, b) =>
    a - b
  );
}

Deno.test("SortedPairs: random adds and removes with merges match a model", () => {
  for (const numeric of [false, true]) {
    const r = new Prng(numeric ? 11 : 12);
    const s = new SortedPairs(numeric);
    const model = new Set<string>();
    for (let step = 0; step < 6000; step++) {
      const id = r.nextInt(300);
      const v = numeric ? r.nextInt(20) - 10 + (r.chance(0.3) ? 0.25 : 0) : 0;
      const key = `${v}:${id}`;
      // The collection's contract: remove only what is there, add only what is not.
      if (model.has(key)) {
        s.remove(v, id);
        model.delete(key);
        if (r.chance(0.3)) {
          s.add(v, id); // a replace that keeps the value
          model.add(key);
        }
      } else {
        s.add(v, id);
        model.add(key);
      }
      assert.equal(s.size, model.size);
      if (r.chance(0.02)) {
        s.materialize();
        const pairs = [...model].map((k) => k.split(":").map(Number)).sort((a, b) =>
          a[0] - b[0] || a[1] - b[1]
        );
        assert.deepEqual([...s.ids], pairs.map((p) => p[1]));
        if (numeric) assert.deepEqual([...s.values], pairs.map((p) => p[0]));
        assert.equal(s.length, model.size);
      }
    }
  }
});

Deno.test("SortedPairs: a removal of an absent pair is dropped; duplicate adds collapse", () => {
  const s = new SortedPairs(false);
  s.add(0, 5);
  s.add(0, 5);
  s.add(0, 3);
  s.remove(0, 9);
  s.materialize();
  assert.deepEqual([...s.ids], [3, 5]);
  s.remove(0, 3);
  s.add(0, 1);
  s.materialize();
  assert.deepEqual([...s.ids], [1, 5]);
});

Deno.test("define, drop and list; bad definitions are refused with the value quoted", () => {
  const ix = new PayloadIndexes();
  ix.define("meta.lang", "keyword");
  ix.define("n", "integer");
  ix.define("tags[]", "keyword");
  assert.deepEqual(ix.list().map((i) => [i.field, i.type, i.points]), [
    ["meta.lang", "keyword", 0],
    ["n", "integer", 0],
    ["tags", "keyword", 0],
  ]);
  assert.equal(ix.typeOf("tags"), "keyword");
  ix.define("n", "float");
  assert.equal(ix.typeOf("n"), "float", "a redefinition replaces the type");
  assert.equal(ix.drop("tags[]"), true);
  assert.equal(ix.drop("tags"), false);
  assert.equal(ix.typeOf("tags"), null);
  assert.throws(
    () => ix.define("a", "text"),
    (e: unknown) => e instanceof PayloadIndexError && /"text"/.test(e.message),
  );
  assert.throws(
    () => ix.define("a..b", "keyword"),
    (e: unknown) => e instanceof PayloadIndexError && /"a\.\.b"/.test(e.message),
  );
  assert.throws(() => ix.define("", "bool"), PayloadIndexError);
  const many = new PayloadIndexes();
  for (let i = 0; i < PAYLOAD_INDEXES_MAX; i++) many.define(`f${i}`, "bool");
  many.define("f0", "keyword"); // replacing one is not one more
  assert.throws(() => many.define("extra", "bool"), /at most 64 payload indexes/);
});

Deno.test("which conditions an index answers: exact answers only", () => {
  const ix = new PayloadIndexes();
  ix.define("k", "keyword");
  ix.define("i", "integer");
  ix.define("f", "float");
  ix.define("b", "bool");
  const yes = [
    { key: "k", match: { value: "x" } },
    { key: "k", match: { any: ["x", "y"] } },
    { key: "i", match: { value: 3 } },
    { key: "i", match: { any: [1, 2] } },
    { key: "i", range: { gt: 1 } },
    { key: "f", range: { lte: 2.5 } },
    { key: "f", match: { value: 2 } },
    { key: "b", match: { value: false } },
  ];
  const no = [
    { key: "k", match: { value: 1 } },
    { key: "k", match: { any: ["x", 1] } },
    { key: "k", match: { except: ["x"] } },
    { key: "k", range: {} },
    { key: "i", match: { value: "3" } },
    { key: "b", match: { value: "true" } },
    { key: "k", values_count: { gt: 1 } },
    { is_empty: { key: "k" } },
    { is_null: { key: "k" } },
    { key: "other", match: { value: "x" } },
    { has_id: [1] },
  ];
  for (const c of yes) assert.ok(ix.supports(cond(c)), JSON.stringify(c));
  for (const c of no) {
    assert.ok(!ix.supports(cond(c)), JSON.stringify(c));
    assert.equal(ix.matchIds(cond(c)), null);
    assert.equal(ix.estimate(cond(c)), null);
  }
  // An integer index answers ranges only while the field holds no fractional number: 2.5 is
  // not indexed but a range would match it.
  ix.add(1, { i: 2.5 });
  assert.ok(!ix.supports(cond({ key: "i", range: { gt: 1 } })));
  assert.ok(ix.supports(cond({ key: "i", match: { value: 2 } })));
  ix.remove(1, { i: 2.5 });
  assert.ok(ix.supports(cond({ key: "i", range: { gt: 1 } })));
});

Deno.test("values are indexed per element; wrong types are left out; nested keys work", () => {
  const ix = new PayloadIndexes();
  ix.define("tags", "keyword");
  ix.define("items.price", "integer");
  ix.define("ok", "bool");
  ix.add(1, { tags: ["a", "b", "a"], items: [{ price: 5 }, { price: 9 }], ok: true });
  ix.add(2, { tags: "b", items: { price: "9" }, ok: "true" });
  ix.add(3, { tags: [1, null], items: [{ price: 9 }], ok: [false, true] });
  const ids = (c: unknown) => [...ix.matchIds(cond(c))!];
  assert.deepEqual(ids({ key: "tags", match: { value: "a" } }), [1]);
  assert.deepEqual(ids({ key: "tags", match: { value: "b" } }), [1, 2]);
  assert.deepEqual(ids({ key: "tags", match: { any: ["a", "b", "zz"] } }), [1, 2]);
  assert.deepEqual(ids({ key: "items.price", match: { value: 9 } }), [1, 3]);
  assert.deepEqual(ids({ key: "items.price", range: { gte: 5, lt: 9 } }), [1]);
  assert.deepEqual(ids({ key: "items.price", range: {} }), [1, 3]);
  assert.deepEqual(ids({ key: "ok", match: { value: true } }), [1, 3]);
  assert.deepEqual(ids({ key: "ok", match: { value: false } }), [3]);
  assert.deepEqual(
    ix.list().map((i) => [i.field, i.points]),
    [["items.price", 2], ["ok", 2], ["tags", 2]],
  );
  assert.ok(ix.memoryBytes() > 0);
});

Deno.test("random puts, replaces and deletes keep every index equal to brute force", () => {
  const r = new Prng(2024);
  const ix = new PayloadIndexes();
  for (const [field, type] of GEN_FIELDS) ix.define(field, type);
  const payloads = new Map<number, object>();
  const IDS = 3000;
  for (let round = 0; round < 6; round++) {
    for (let op = 0; op < 2500; op++) {
      const id = r.nextInt(IDS);
      const old = payloads.get(id) ?? null;
      if (old !== null && r.chance(0.25)) {
        ix.remove(id, old);
        payloads.delete(id);
      } else {
        const p = randomPayload(r);
        ix.remove(id, old);
        ix.add(id, p);
        payloads.set(id, p);
      }
    }
    let checked = 0;
    for (let q = 0; q < 150; q++) {
      const c = randomCondition(r, IDS, 1);
      const parsed = cond(c);
      const got = ix.matchIds(parsed);
      if (got === null) continue;
      checked++;
      const want = bruteIds(payloads, c);
      assert.deepEqual([...got], want, JSON.stringify(c));
      // The forward tester agrees on every id ever used (absent ones included).
      const t = ix.tester(parsed)!;
      const tested: number[] = [];
      for (let id = 0; id < IDS; id++) {
        const pl = payloads.get(id) ?? null;
        if (t(id, () => pl)) tested.push(id);
      }
      assert.deepEqual(tested, want, `tester ${JSON.stringify(c)}`);
      const est = ix.estimate(parsed)!;
      assert.ok(
        est.min <= want.length && want.length <= est.max,
        `${JSON.stringify(est)} vs ${want.length}`,
      );
      assert.ok(est.min <= est.exp && est.exp <= est.max);
    }
    assert.ok(checked > 50, `only ${checked} conditions were indexed`);
  }
  // A rebuild from the payloads equals the incrementally kept indexes.
  const rebuilt = new PayloadIndexes();
  for (const [field, type] of GEN_FIELDS) rebuilt.define(field, type);
  rebuilt.build(payloads);
  assert.deepEqual(
    rebuilt.list().map((i) => [i.field, i.points]),
    ix.list().map((i) => [i.field, i.points]),
  );
  for (let q = 0; q < 200; q++) {
    const c = cond(randomCondition(r, IDS, 1));
    assert.deepEqual(rebuilt.matchIds(c), ix.matchIds(c));
  }
});

Deno.test("build fills only the fields asked for, or all", () => {
  const ix = new PayloadIndexes();
  ix.define("a", "keyword");
  ix.add(1, { a: "x", b: 1 });
  ix.define("b", "integer");
  assert.deepEqual([...ix.matchIds(cond({ key: "b", match: { value: 1 } }))!], []);
  ix.build([[1, { a: "x", b: 1 }], [2, null]], ["b"]);
  assert.deepEqual([...ix.matchIds(cond({ key: "b", match: { value: 1 } }))!], [1]);
  assert.deepEqual([...ix.matchIds(cond({ key: "a", match: { value: "x" } }))!], [1]);
  ix.build([]);
  assert.deepEqual([...ix.matchIds(cond({ key: "a", match: { value: "x" } }))!], []);
});

Deno.test("tester: forward values by id; several values fall back to the payload; writes keep it current", () => {
  const ix = new PayloadIndexes();
  ix.define("k", "keyword");
  ix.define("n", "integer");
  ix.define("b", "bool");
  const payloads = new Map<number, object>([
    [1, { k: "a", n: 5, b: true }],
    [2, { k: ["a", "b"], n: [1, 50], b: [true, false] }],
    [3, { k: "b", n: 7.5, b: "yes" }],
    [4, { k: 7, n: "5" }],
  ]);
  for (const [id, p] of payloads) ix.add(id, p);
  let parsed = 0;
  const run = (json: unknown) => {
    const t = ix.tester(cond(json))!;
    assert.notEqual(t, null, JSON.stringify(json));
    const out: number[] = [];
    for (const id of [0, 1, 2, 3, 4, 9]) {
      const pl = payloads.get(id) ?? null;
      if (t(id, () => (parsed++, pl))) out.push(id);
    }
    return out;
  };
  assert.deepEqual(run({ key: "k", match: { value: "a" } }), [1, 2]);
  assert.deepEqual(run({ key: "k", match: { any: ["b", "zzz"] } }), [2, 3]);
  assert.deepEqual(run({ key: "k", match: { value: "never" } }), []);
  assert.deepEqual(run({ key: "b", match: { value: false } }), [2]);
  assert.deepEqual(run({ key: "n", match: { value: 5 } }), [1]);
  // A fractional value at an integer field: the index does not answer ranges, so no tester.
  assert.equal(ix.tester(cond({ key: "n", range: { gte: 0 } })), null);
  assert.equal(ix.tester(cond({ key: "k", range: { gte: 0 } })), null);
  // Only the point with several values read its payload.
  parsed = 0;
  assert.deepEqual(run({ key: "k", match: { value: "b" } }), [2, 3]);
  assert.equal(parsed, 1);
  // Replace and delete: the forward map follows; a freed keyword code is not confused.
  ix.remove(3, payloads.get(3)!);
  payloads.set(3, { k: "c", n: 2 });
  ix.add(3, payloads.get(3)!);
  ix.remove(2, payloads.get(2)!);
  payloads.delete(2);
  assert.deepEqual(run({ key: "k", match: { value: "b" } }), []);
  assert.deepEqual(run({ key: "k", match: { any: ["c", "a"] } }), [1, 3]);
  ix.remove(1, payloads.get(1)!);
  payloads.set(1, { k: "d", n: 3 });
  ix.add(1, payloads.get(1)!);
  assert.deepEqual(run({ key: "k", match: { value: "a" } }), []);
  assert.deepEqual(run({ key: "k", match: { value: "d" } }), [1]);
  assert.deepEqual(run({ key: "n", match: { any: [2, 3] } }), [1, 3]);
});
