import assert from "node:assert/strict";
import { compileFilter, type Filter, parseFilter } from "../common/filter.ts";
import { Prng } from "../common/prng.ts";
import { GEN_FIELDS, randomFilter, randomPayload } from "../testing/payload_gen.ts";
import {
  chooseSearch,
  differenceIds,
  estimateFilter,
  type FilterPlan,
  forwardPlanThreshold,
  intersectIds,
  plainSearchPoints,
  planFilter,
  sampleCardinality,
} from "./filter_plan.ts";
import { PayloadIndexes } from "./payload_index.ts";

const POINTS = 10_000;

/** 10,000 random payloads under ids 0..9,999, and indexes on every generated field. */
function world(seed: number) {
  const r = new Prng(seed);
  const payloads: Array<Record<string, unknown>> = [];
  for (let id = 0; id < POINTS; id++) payloads.push(randomPayload(r));
  const all = new PayloadIndexes();
  for (const [field, type] of GEN_FIELDS) all.define(field, type);
  all.build(payloads.map((p, id) => [id, p] as const));
  return { r, payloads, all };
}

/** The ids a plan yields, following its contract: candidates that exist and pass `check`. */
function planned(plan: FilterPlan, payloads: ReadonlyArray<object>): number[] {
  const get = (id: number) => () => payloads[id];
  if (plan.kind === "all") return payloads.map((_, id) => id);
  if (plan.kind === "predicate") {
    return payloads.map((_, id) => id).filter((id) => plan.check(id, get(id)));
  }
  const out: number[] = [];
  for (const id of plan.ids) {
    if (id >= payloads.length) continue; // has_id may name points that do not exist
    if (plan.exact || plan.check!(id, get(id))) out.push(id);
  }
  return out;
}

Deno.test("planned ids equal brute-force evaluation for many random filters over 10,000 payloads", () => {
  const { r, payloads, all } = world(7);
  // Also a world with only some fields indexed, so mixed plans (residual checks) occur often.
  const some = new PayloadIndexes();
  some.define("color", "keyword");
  some.define("n", "integer");
  some.build(payloads.map((p, id) => [id, p] as const));
  const none = new PayloadIndexes();
  const seen = { all: 0, ids_exact: 0, ids_checked: 0, predicate: 0 };
  for (let q = 0; q < 400; q++) {
    const json = randomFilter(r, POINTS + 2000);
    const filter = parseFilter(JSON.stringify(json));
    const check = compileFilter(filter);
    const want = payloads.map((_, id) => id).filter((id) => check(id, () => payloads[id]));
    const hasId = JSON.stringify(json).includes("has_id");
    for (const indexes of [all, some, none]) {
      const plan = planFilter(filter, indexes, POINTS);
      assert.deepEqual(planned(plan, payloads), want, `${plan.kind} ${JSON.stringify(json)}`);
      if (plan.kind === "ids") seen[plan.exact ? "ids_exact" : "ids_checked"]++;
      else seen[plan.kind]++;
      // Cardinality bounds are sound (has_id candidates that do not exist aside).
      const c = plan.cardinality;
      assert.ok(c.min <= c.exp && c.exp <= c.max, JSON.stringify(c));
      assert.ok(
        want.length <= c.max,
        `${want.length} > max ${JSON.stringify(c)} for ${JSON.stringify(json)}`,
      );
      if (plan.kind !== "ids" || !hasId) {
        assert.ok(
          c.min <= want.length,
          `${want.length} < min ${JSON.stringify(c)} for ${JSON.stringify(json)}`,
        );
      }
      if (plan.kind === "ids" && plan.exact && !hasId) assert.equal(plan.ids.length, want.length);
      if (indexes === none) assert.notEqual(plan.kind === "ids" && !hasId, true);
    }
  }
  for (const [kind, count] of Object.entries(seen)) assert.ok(count >= 20, `${kind}: ${count}`);
});

Deno.test("plan kinds: all, exact ids, ids with a residual check, predicate", () => {
  const payloads = [
    { color: "red", n: 1, tags: ["a"] },
    { color: "blue", n: 2, tags: ["a", "b"] },
    { color: "red", n: 3 },
    { color: "red", n: 4.5 },
  ];
  const ix = new PayloadIndexes();
  ix.define("color", "keyword");
  ix.define("tags", "keyword");
  ix.build(payloads.map((p, id) => [id, p] as const));
  const plan = (json: unknown) => planFilter(parseFilter(json), ix, payloads.length);

  assert.equal(plan({}).kind, "all");
  assert.equal(plan({ should: [] }).kind, "all");

  const exact = plan({
    must: [{ key: "color", match: { value: "red" } }, { must: [{ has_id: [0, 2, 3, 9] }] }],
  });
  assert.equal(exact.kind, "ids");
  if (exact.kind === "ids") {
    assert.deepEqual([...exact.ids], [0, 2, 3]);
    assert.equal(exact.exact, true);
    assert.equal(exact.check, null);
    assert.deepEqual(exact.cardinality, { min: 3, exp: 3, max: 3 });
  }

  const unionShould = plan({ should: [{ key: "tags", match: { value: "b" } }, { has_id: [3] }] });
  assert.ok(unionShould.kind === "ids" && unionShould.exact);
  if (unionShould.kind === "ids") assert.deepEqual([...unionShould.ids], [1, 3]);

  const residual = plan({
    must: [{ key: "color", match: { value: "red" } }, { key: "n", range: { gt: 2 } }],
  });
  assert.equal(residual.kind, "ids");
  if (residual.kind === "ids") {
    assert.deepEqual([...residual.ids], [0, 2, 3], "color answered by its index");
    assert.equal(residual.exact, false);
    let reads = 0;
    const passing = [...residual.ids].filter((id) =>
      residual.check!(id, () => {
        reads++;
        return payloads[id];
      })
    );
    assert.deepEqual(passing, [2, 3], "the range is checked per candidate");
    assert.equal(reads, 3);
    assert.ok(residual.cardinality.max <= 3);
  }

  const notIndexed = plan({ must: [{ key: "n", range: { gt: 2 } }] });
  assert.equal(notIndexed.kind, "predicate");
  if (notIndexed.kind === "predicate") {
    assert.equal(notIndexed.known, false);
    assert.deepEqual(notIndexed.cardinality, { min: 0, exp: 2, max: 4 });
  }
  // A should with one unindexed condition cannot narrow: it stays in the check.
  const mixedShould = plan({
    must: [{ key: "tags", match: { value: "a" } }],
    should: [{ key: "color", match: { value: "blue" } }, { key: "n", range: { gt: 3 } }],
  });
  assert.ok(mixedShould.kind === "ids" && !mixedShould.exact);

  const known = plan({ must_not: [{ key: "color", match: { value: "red" } }] });
  assert.ok(known.kind === "predicate" && known.known);
  if (known.kind === "predicate") assert.deepEqual(known.cardinality, { min: 1, exp: 1, max: 1 });

  const empty = plan({
    must: [{ key: "color", match: { value: "green" } }, { key: "n", range: {} }],
  });
  assert.ok(empty.kind === "ids" && empty.exact && empty.ids.length === 0, "nothing to check");
});

Deno.test("estimates combine bounds: intersection, union, negation", () => {
  const ix = new PayloadIndexes();
  ix.define("k", "keyword");
  const pts: Array<[number, object]> = [];
  for (let id = 0; id < 100; id++) pts.push([id, { k: id < 30 ? "a" : id < 80 ? "b" : "c" }]);
  ix.build(pts);
  const est = (json: unknown) => estimateFilter(parseFilter(json), ix, 100);
  const a = { key: "k", match: { value: "a" } };
  const b = { key: "k", match: { value: "b" } };
  assert.deepEqual(est({ must: [a] }), { cardinality: { min: 30, exp: 30, max: 30 }, known: true });
  assert.deepEqual(est({ should: [a, b] }).cardinality.max, 80);
  assert.deepEqual(est({ should: [a, b] }).cardinality.min, 50);
  assert.deepEqual(est({ must_not: [a] }).cardinality, { min: 70, exp: 70, max: 70 });
  const both = est({ must: [a, b] }).cardinality;
  assert.equal(both.max, 30);
  assert.equal(both.min, 0);
  assert.equal(both.exp, 15, "independence: 100 · 0.3 · 0.5");
  assert.equal(est({ must: [{ key: "zz", range: {} }] }).known, false);
});

Deno.test("chooseSearch: exact under the threshold, graph above it, sample across it", () => {
  const t = plainSearchPoints(128);
  assert.equal(t, 20_480, "10 MiB of 128-dimensional float32 vectors");
  assert.equal(plainSearchPoints(1536), 1706);
  assert.equal(plainSearchPoints(10_000_000), 1);
  assert.equal(chooseSearch({ min: 0, exp: 100, max: t }, 128), "exact");
  assert.equal(chooseSearch({ min: t + 1, exp: t * 2, max: t * 3 }, 128), "graph");
  assert.equal(chooseSearch({ min: 10, exp: t, max: t * 3 }, 128), "sample");
  assert.equal(chooseSearch({ min: 0, exp: 0, max: 4 }, 128, 64), "sample", "a custom threshold");
});

Deno.test("sampleCardinality brackets the true count and is exact on small populations", () => {
  const r = new Prng(3);
  const population = Uint32Array.from({ length: 100_000 }, (_, i) => i);
  const check = compileFilter(parseFilter({ must: [{ key: "v", range: { lt: 25 } }] }));
  // payload v = id % 100: 25% pass.
  const payloadOf = (id: number) => ({ v: id % 100 });
  for (let trial = 0; trial < 20; trial++) {
    const c = sampleCardinality(check, population, payloadOf, r);
    assert.ok(c.min <= 25_000 && 25_000 <= c.max, JSON.stringify(c));
    assert.ok(c.max - c.min < 20_000, "the interval is informative");
  }
  const small = population.subarray(0, 500);
  assert.deepEqual(sampleCardinality(check, small, payloadOf, r), { min: 125, exp: 125, max: 125 });
  assert.deepEqual(sampleCardinality(check, new Uint32Array(0), payloadOf, r), {
    min: 0,
    exp: 0,
    max: 0,
  });
});

Deno.test("intersectIds agrees with a set intersection on both of its strategies", () => {
  const r = new Prng(5);
  const sorted = (n: number, range: number) =>
    Uint32Array.from(new Set(Array.from({ length: n }, () => r.nextInt(range)))).sort();
  for (let t = 0; t < 200; t++) {
    const a = sorted(r.nextInt(50), 1000);
    const b = sorted(
      r.chance(0.5) ? r.nextInt(50) : r.nextInt(5000),
      r.chance(0.5) ? 1000 : 100_000,
    );
    const bs = new Set(b);
    assert.deepEqual([...intersectIds(a, b)], [...a].filter((x) => bs.has(x)));
    assert.deepEqual([...intersectIds(b, a)], [...a].filter((x) => bs.has(x)));
  }
});

Deno.test("differenceIds agrees with a set difference; an indexed must_not leaves no check", () => {
  const r = new Prng(6);
  const sorted = (n: number, range: number) =>
    Uint32Array.from(new Set(Array.from({ length: n }, () => r.nextInt(range)))).sort();
  for (let t = 0; t < 200; t++) {
    const a = sorted(r.nextInt(60), 200);
    const b = sorted(r.nextInt(60), 200);
    const bs = new Set(b);
    assert.deepEqual([...differenceIds(a, b)], [...a].filter((x) => !bs.has(x)));
  }
  const idx = new PayloadIndexes();
  idx.define("k", "keyword");
  idx.define("n", "integer");
  for (let id = 0; id < 100; id++) idx.add(id, { k: `v${id % 4}`, n: id });
  const plan = planFilter(
    parseFilter({
      must: [{ key: "n", range: { lt: 50 } }],
      must_not: [{ key: "k", match: { value: "v1" } }],
    }),
    idx,
    100,
  );
  assert.equal(plan.kind, "ids");
  if (plan.kind !== "ids") return;
  assert.equal(plan.exact, true, "both terms are indexed: no payload check left");
  assert.deepEqual([...plan.ids], [...Array(50).keys()].filter((id) => id % 4 !== 1));
});

Deno.test("a plan's ids are its own: they do not alias the filter's has_id list", () => {
  const f: Filter = parseFilter({ must: [{ has_id: [1, 2, 3] }] });
  const plan = planFilter(f, new PayloadIndexes(), 10);
  assert.ok(plan.kind === "ids");
  if (plan.kind === "ids") {
    plan.ids[0] = 99;
    assert.deepEqual(f.must[0], { kind: "has_id", ids: new Uint32Array([1, 2, 3]) });
  }
});

Deno.test("large indexed terms plan as a forward test: exact, arrays fall back, small sets stay ids", () => {
  const N = 20_000;
  const payloads: Array<Record<string, unknown>> = [];
  for (let id = 0; id < N; id++) {
    // Every 97th point holds arrays, so its terms are checked on the payload.
    const many = id % 97 === 0;
    payloads.push({
      num: many ? [id % 1000, (id * 7) % 1000] : id % 1000,
      kw10: many ? [`v${id % 10}`, `v${(id + 3) % 10}`] : `v${id % 10}`,
      kw1000: `w${id % 1000}`,
      text: id % 3 === 0 ? "odd" : "even",
    });
  }
  const ix = new PayloadIndexes();
  ix.define("num", "integer");
  ix.define("kw10", "keyword");
  ix.define("kw1000", "keyword");
  ix.build(payloads.map((p, id) => [id, p] as const));
  assert.equal(forwardPlanThreshold(N), 4096);
  const cases: Array<[unknown, FilterPlan["kind"]]> = [
    // 55% range AND NOT one keyword in ten: the benchmark's 50% filter.
    [{
      must: [{ key: "num", range: { gte: 0, lt: 550 } }],
      must_not: [{ key: "kw10", match: { value: "v3" } }],
    }, "predicate"],
    [{
      must: [{ key: "num", range: { gt: 100 } }, {
        key: "kw10",
        match: { any: ["v1", "v2", "v5"] },
      }],
    }, "predicate"],
    // An unindexed residual rides along, compiled.
    [
      { must: [{ key: "num", range: { lte: 800 } }, { key: "text", match: { value: "odd" } }] },
      "predicate",
    ],
    // An indexed should, large: tested per id too.
    [{
      must: [{ key: "num", range: { gte: 200 } }],
      should: [{ key: "kw10", match: { any: ["v1", "v2", "v4"] } }, {
        key: "kw10",
        match: { value: "v7" },
      }],
    }, "predicate"],
    // ... and a small indexed should is gathered.
    [{
      must: [{ key: "num", range: { gte: 200 } }],
      should: [{ key: "kw1000", match: { value: "w1" } }, { key: "kw10", match: { value: "v2" } }],
    }, "ids"],
    // Small candidate sets are gathered (exact scoring stays possible).
    [
      { must: [{ key: "kw1000", match: { value: "w7" } }, { key: "num", range: { gte: 0 } }] },
      "ids",
    ],
    [{ must: [{ key: "num", range: { gte: 0, lt: 100 } }] }, "ids"],
    // has_id among the indexed terms: gathered.
    [{ must: [{ has_id: [1, 2, 97, 500] }, { key: "num", range: { gte: 0 } }] }, "ids"],
  ];
  for (const [json, kind] of cases) {
    const filter = parseFilter(JSON.stringify(json));
    const check = compileFilter(filter);
    const want = payloads.map((_, id) => id).filter((id) => check(id, () => payloads[id]));
    const plan = planFilter(filter, ix, N);
    assert.equal(plan.kind, kind, JSON.stringify(json));
    assert.deepEqual(planned(plan, payloads), want, JSON.stringify(json));
    const c = plan.cardinality;
    assert.ok(c.min <= want.length && want.length <= c.max, `${JSON.stringify(c)} ${want.length}`);
    if (plan.kind === "predicate" && !JSON.stringify(json).includes("text")) {
      assert.equal(plan.known, true);
      // Only points holding arrays read their payload.
      let reads = 0;
      for (let id = 0; id < N; id++) plan.check(id, () => (reads++, payloads[id]));
      assert.ok(reads <= Math.ceil(N / 97), `${reads} payload reads`);
    }
  }
});
