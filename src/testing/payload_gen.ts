/**
 * Seeded random payloads and filters (JSON form) for tests that cross-check the payload
 * indexes and the filter planner against brute-force evaluation.
 *
 * Payloads mix every shape a filter must handle: scalars, arrays, arrays of objects, nested
 * objects, nulls, empty arrays, missing keys and values of the "wrong" type for an index.
 * Filters draw from the same small value pools, so conditions match often enough to matter.
 *
 * @module
 */
import type { Prng } from "../common/prng.ts";

export const COLORS = ["red", "green", "blue", "black", "white", "teal"];
export const LANGS = ["de", "en", "fr", "ja"];
export const TAGS = ["a", "b", "c", "d", "e", "f", "g", "h"];

/** Keys the generators use, with the index type that fits each. */
export const GEN_FIELDS = [
  ["color", "keyword"],
  ["n", "integer"],
  ["x", "float"],
  ["flag", "bool"],
  ["meta.lang", "keyword"],
  ["meta.score", "integer"],
  ["tags", "keyword"],
] as const;

/** One random payload object. */
export function randomPayload(r: Prng): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  const roll = () => r.nextInt(20);
  let k = roll();
  if (k < 12) p.color = r.pick(COLORS);
  else if (k < 15) p.color = [r.pick(COLORS), r.pick(COLORS)];
  else if (k === 15) p.color = null;
  else if (k === 16) p.color = 7;
  k = roll();
  if (k < 13) p.n = r.nextInt(100);
  else if (k < 15) p.n = [r.nextInt(100), r.nextInt(100), r.nextInt(100)];
  else if (k === 15) p.n = r.nextInt(100) + 0.5;
  else if (k === 16) p.n = "12";
  else if (k === 17) p.n = [];
  k = roll();
  if (k < 14) p.x = Math.round(r.float() * 1000) / 10;
  else if (k < 16) p.x = [r.nextInt(100), r.float() * 100];
  k = roll();
  if (k < 14) p.flag = r.chance(0.5);
  else if (k === 14) p.flag = null;
  else if (k === 15) p.flag = [true, false];
  else if (k === 16) p.flag = "true";
  k = roll();
  const meta = () => {
    const m: Record<string, unknown> = {};
    if (r.chance(0.8)) m.lang = r.pick(LANGS);
    if (r.chance(0.7)) m.score = r.nextInt(10);
    return m;
  };
  if (k < 12) p.meta = meta();
  else if (k < 15) p.meta = [meta(), meta()];
  else if (k === 15) p.meta = null;
  else if (k === 16) p.meta = "flat";
  k = roll();
  if (k < 14) p.tags = Array.from({ length: r.nextInt(4) }, () => r.pick(TAGS));
  else if (k === 14) p.tags = null;
  else if (k === 15) p.tags = [null, r.pick(TAGS)];
  return p;
}

/** One random field condition or has_id (JSON form); ids are drawn below `ids_max`. */
export function randomCondition(r: Prng, ids_max: number, depth: number): unknown {
  const k = r.nextInt(depth > 1 ? 16 : 15);
  switch (k) {
    case 0:
    case 1:
      return { key: "color", match: { value: r.pick(COLORS) } };
    case 2:
      return {
        key: r.pick(["color", "tags", "meta.lang"]),
        match: { any: [r.pick(COLORS), r.pick(TAGS), r.pick(LANGS)] },
      };
    case 3:
      return { key: r.pick(["color", "tags"]), match: { except: [r.pick(COLORS), r.pick(TAGS)] } };
    case 4:
      return { key: r.pick(["n", "meta.score"]), match: { value: r.nextInt(100) } };
    case 5:
      return { key: "n", match: { any: [r.nextInt(100), r.nextInt(100), "12"] } };
    case 6:
    case 7: {
      const a = r.nextInt(100);
      const range: Record<string, number> = {};
      if (r.chance(0.7)) range[r.pick(["gt", "gte"])] = a;
      if (r.chance(0.7)) range[r.pick(["lt", "lte"])] = a + r.nextInt(60);
      return { key: r.pick(["n", "x", "meta.score"]), range };
    }
    case 8:
      return { key: "flag", match: { value: r.chance(0.5) } };
    case 9:
      return { key: "meta.lang", match: { value: r.pick(LANGS) } };
    case 10:
      return { key: "tags", match: { value: r.pick(TAGS) } };
    case 11:
      return { has_id: Array.from({ length: 1 + r.nextInt(200) }, () => r.nextInt(ids_max)) };
    case 12:
      return { is_empty: { key: r.pick(["color", "tags", "meta.lang", "n"]) } };
    case 13:
      return { is_null: { key: r.pick(["color", "flag", "tags", "meta"]) } };
    case 14:
      return { key: r.pick(["tags", "n", "meta.score"]), values_count: { gte: r.nextInt(3) } };
    default:
      return randomFilter(r, ids_max, depth - 1);
  }
}

/** One random filter (JSON form) nested at most `depth` levels. */
export function randomFilter(r: Prng, ids_max: number, depth = 3): Record<string, unknown> {
  const list = (most: number) =>
    Array.from({ length: r.nextInt(most + 1) }, () => randomCondition(r, ids_max, depth));
  const f: Record<string, unknown> = {};
  if (r.chance(0.8)) f.must = list(3);
  if (r.chance(0.4)) f.should = list(3);
  if (r.chance(0.3)) f.must_not = list(2);
  if (r.chance(0.1)) f.min_should = { conditions: list(3), min_count: r.nextInt(3) };
  return f;
}
