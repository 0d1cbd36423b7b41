/**
 * The workload of `deno task bench:filtered`, shared by our side (Deno) and the hnswlib side
 * (Node): synthetic payload attributes per point and one filter per query for each selectivity
 * case, all from a seed, so both sides build the same data without passing it around.
 *
 * Attributes (one value per point, uniform):
 *
 * | attribute | values        | stands for                                  |
 * |-----------|---------------|---------------------------------------------|
 * | `kw10`    | 0 .. 9        | a keyword with 10 distinct values           |
 * | `kw1000`  | 0 .. 999      | a keyword with 1,000 distinct values        |
 * | `num`     | 0 .. 9,999    | an integer field                            |
 *
 * Cases (each query draws its own values, so no region of the graph is favoured):
 *
 * | case   | filter                                      | expected selectivity |
 * |--------|---------------------------------------------|----------------------|
 * | `50%`  | `num` in [lo, lo + 5,556) and `kw10` != v   | 0.5556 x 0.9 = 0.50  |
 * | `10%`  | `kw10` = v                                  | 0.10                 |
 * | `1%`   | `kw1000` in {10 distinct values}            | 0.01                 |
 * | `0.1%` | `num` in [lo, lo + 10)                      | 0.001                |
 *
 * Runtime-neutral (no Deno or Node APIs).
 * @module
 */
import { Rng } from "../../../src/testing/random.ts";

export const NUM_RANGE = 10_000;

/** Attribute columns, one entry per point (row number = point id). */
export interface Payload {
  n: number;
  kw10: Uint8Array;
  kw1000: Uint16Array;
  num: Uint16Array;
}

/** One condition on one attribute. */
export type Clause =
  | { attr: "kw10" | "kw1000"; op: "in" | "not_in"; values: number[] }
  | { attr: "num"; op: "range"; lo: number; hi: number };

/** A conjunction of clauses: what a query's filter says, before any planning. */
export interface FilterSpec {
  clauses: Clause[];
}

/** One selectivity case: a name, its expected selectivity and one filter per query. */
export interface FilterCase {
  name: string;
  selectivity: number;
  specs: FilterSpec[];
}

/** Attributes for `n` points from `seed`. */
export function makePayload(n: number, seed: number): Payload {
  const rng = new Rng(seed);
  const p: Payload = {
    n,
    kw10: new Uint8Array(n),
    kw1000: new Uint16Array(n),
    num: new Uint16Array(n),
  };
  for (let i = 0; i < n; i++) {
    p.kw10[i] = rng.int(10);
    p.kw1000[i] = rng.int(1000);
    p.num[i] = rng.int(NUM_RANGE);
  }
  return p;
}

/** The four cases, `queries` filters each, from `seed`. */
export function makeCases(queries: number, seed: number): FilterCase[] {
  const rng = new Rng(seed ^ 0x5bd1e995);
  const gen = (f: () => FilterSpec) => Array.from({ length: queries }, f);
  const distinct = (count: number, of: number) => {
    const s = new Set<number>();
    while (s.size < count) s.add(rng.int(of));
    return [...s].sort((a, b) => a - b);
  };
  return [
    {
      name: "50%",
      selectivity: 0.5556 * 0.9,
      specs: gen(() => {
        const lo = rng.int(NUM_RANGE - 5556 + 1);
        return {
          clauses: [
            { attr: "num", op: "range", lo, hi: lo + 5556 },
            { attr: "kw10", op: "not_in", values: [rng.int(10)] },
          ],
        };
      }),
    },
    {
      name: "10%",
      selectivity: 0.1,
      specs: gen(() => ({ clauses: [{ attr: "kw10", op: "in", values: [rng.int(10)] }] })),
    },
    {
      name: "1%",
      selectivity: 0.01,
      specs: gen(() => ({ clauses: [{ attr: "kw1000", op: "in", values: distinct(10, 1000) }] })),
    },
    {
      name: "0.1%",
      selectivity: 0.001,
      specs: gen(() => {
        const lo = rng.int(NUM_RANGE - 10 + 1);
        return { clauses: [{ attr: "num", op: "range", lo, hi: lo + 10 }] };
      }),
    },
  ];
}

/** The filter as a test over point ids, reading the typed-array columns directly. */
export function compile(p: Payload, spec: FilterSpec): (id: number) => boolean {
  const tests = spec.clauses.map((c): (id: number) => boolean => {
    if (c.attr === "num") {
      const col = p.num, lo = c.lo, hi = c.hi;
      return (id) => col[id] >= lo && col[id] < hi;
    }
    const col = c.attr === "kw10" ? p.kw10 : p.kw1000;
    if (c.values.length === 1) {
      const v = c.values[0];
      return c.op === "in" ? (id) => col[id] === v : (id) => col[id] !== v;
    }
    const mark = new Uint8Array(c.attr === "kw10" ? 10 : 1000);
    for (const v of c.values) mark[v] = 1;
    return c.op === "in" ? (id) => mark[col[id]] === 1 : (id) => mark[col[id]] === 0;
  });
  if (tests.length === 1) return tests[0];
  if (tests.length === 2) {
    const [a, b] = tests;
    return (id) => a(id) && b(id);
  }
  return (id) => tests.every((t) => t(id));
}
