import assert from "node:assert/strict";
import { rewriteSnapshotAsVersion } from "../testing/legacy_snapshot.ts";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection, FieldIndexError, parsePayloadBytes } from "./collection.ts";
import { Rng } from "../testing/random.ts";
import { evaluate, type Filter, parseFilter } from "../common/filter.ts";
import { parsePayload } from "../common/payload.ts";

const quiet = { logger: () => {} };
const config = { name: "c", dimension: 8, metric: "l2" as const, m: 12, ef_construction: 100 };

function payloadOf(id: number): Uint8Array {
  return parsePayload(
    JSON.stringify({ g: id % 200, lang: id % 3 === 0 ? "en" : "de", odd: id % 2 === 1 }),
  )!;
}

/** Live ids matching `f`, by evaluating every point's payload. */
function bruteIds(c: Collection, f: Filter): number[] {
  const out: number[] = [];
  // These collections hold uint32 ids only, so an id is its own pid (what `evaluate` takes).
  for (const key of c.knownIds()) {
    const id = key as number;
    if (c.get(id) === null) continue;
    const b = c.getPayload(id);
    const p = b === null ? null : parsePayloadBytes(b);
    if (evaluate(f, id, () => p)) out.push(id);
  }
  return out;
}

const filters = [
  '{"must":[{"key":"lang","match":{"value":"en"}}]}',
  '{"must":[{"key":"g","range":{"gte":10,"lt":30}}],"must_not":[{"key":"odd","match":{"value":true}}]}',
  '{"should":[{"key":"g","match":{"value":5}},{"has_id":[1,2,3,999999]}]}',
  '{"must":[{"key":"lang","match":{"any":["de"]}},{"key":"g","range":{"lt":50}}]}',
].map((t) => parseFilter(t));

function assertCountsMatch(c: Collection, why: string): void {
  for (const f of filters) {
    const want = bruteIds(c, f);
    assert.equal(c.count(f), want.length, `${why}: count ${JSON.stringify(f)}`);
    assert.deepEqual([...c.matchingIds(f)], want, `${why}: ids`);
    const m = c.matcher(f);
    assert.deepEqual([...c.knownIds()].filter(m), want, `${why}: matcher`);
  }
}

Deno.test("collection: payload indexes stay current through every write, restart and snapshot", async () => {
  const root = mkdtempSync(join(tmpdir(), "vdb-colf-"));
  const dir = join(root, "c");
  try {
    const rng = new Rng(3);
    let c = await Collection.create(dir, config, quiet);
    await c.putBatch(Array.from({ length: 600 }, (_, id) => ({
      id,
      vector: rng.vector(8),
      payload: payloadOf(id),
    })));
    // Indexes created after the data: built from the payloads.
    assert.deepEqual(await c.createFieldIndex("lang", "keyword"), {
      created: true,
      seq: c.lastSeq,
    });
    assert.equal((await c.createFieldIndex("g", "integer")).created, true);
    assert.equal((await c.createFieldIndex("odd", "bool")).created, true);
    assert.equal((await c.createFieldIndex("g", "integer")).created, false, "idempotent");
    await assert.rejects(
      () => c.createFieldIndex("g", "keyword"),
      (e) => e instanceof FieldIndexError && e.reason === "exists",
    );
    await assert.rejects(
      () => c.createFieldIndex("x", "text"),
      (e) => e instanceof FieldIndexError && e.reason === "invalid" && /"text"/.test(e.message),
    );
    assertCountsMatch(c, "built");
    // Writes after: replace (payload changes and clears), delete, copy, forget, batch delete.
    await c.put(3, rng.vector(8), 0, parsePayload('{"g":7,"lang":"de"}'));
    await c.put(6, rng.vector(8)); // no payload: leaves every index
    await c.delete(9);
    await c.copy([
      { id: 700, version: 1e12, deleted: false, vector: rng.vector(8), payload: payloadOf(0) },
      { id: 12, version: 1e15, deleted: true },
    ]);
    await c.forget([15], [1e15]);
    const batch = await c.deleteBatch([18, 21, 21, 5000]);
    assert.equal(batch.deleted, 2);
    assert.equal(batch.applied, 3);
    assert.equal(c.getEntry(5000).deleted, true, "a tombstone even for an absent id");
    assertCountsMatch(c, "after writes");
    await c.close();

    c = await Collection.open(dir, quiet);
    assert.deepEqual(c.fieldIndexes().map((i) => [i.field, i.type]), [
      ["g", "integer"],
      ["lang", "keyword"],
      ["odd", "bool"],
    ]);
    assertCountsMatch(c, "after WAL replay");
    assert.equal((await c.dropFieldIndex("odd")).dropped, true);
    assert.equal((await c.dropFieldIndex("odd")).dropped, false);
    await c.snapshot();
    await c.put(30, rng.vector(8), 0, parsePayload('{"g":1,"lang":"en"}'));
    await c.close();

    c = await Collection.open(dir, quiet);
    assert.equal(c.replayed, 1, "opened from the snapshot, then one record");
    assert.deepEqual(c.fieldIndexes().map((i) => i.field), ["g", "lang"]);
    assert.equal(
      c.fieldIndexes()[1].points,
      c.count(parseFilter('{"must":[{"key":"lang","match":{"any":["en","de"]}}]}')),
    );
    assertCountsMatch(c, "after snapshot load");
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: filtered search finds the true neighbours at 50%, 5% and 0.5% selectivity", async () => {
  const root = mkdtempSync(join(tmpdir(), "vdb-colf-"));
  try {
    const rng = new Rng(11);
    const n = 4000;
    const dim = 16;
    const c = await Collection.create(join(root, "c"), { ...config, dimension: dim }, quiet);
    const vectors = Array.from({ length: n }, () => rng.vector(dim));
    await c.putBatch(vectors.map((vector, id) => ({ id, vector, payload: payloadOf(id) })));
    await c.createFieldIndex("g", "integer");
    const cases = [
      ['{"must":[{"key":"odd","match":{"value":false}}]}', 0.5], // unindexed: predicate
      ['{"must":[{"key":"g","range":{"lt":10}}]}', 0.05], // indexed: ids
      ['{"must":[{"key":"g","match":{"value":0}}]}', 0.005],
      ['{"must":[{"key":"g","range":{"lt":100}},{"key":"odd","match":{"value":true}}]}', 0.25],
    ] as const;
    const k = 10;
    for (const [text, selectivity] of cases) {
      const f = parseFilter(text);
      const ids = bruteIds(c, f);
      assert.ok(Math.abs(ids.length / n - selectivity) < 0.01, `${text}: ${ids.length} match`);
      let found = 0;
      let total = 0;
      for (let q = 0; q < 30; q++) {
        const query = rng.vector(dim);
        const d = (id: number) => vectors[id].reduce((s, x, i) => s + (x - query[i]) ** 2, 0);
        const truth = ids.slice().sort((a, b) => d(a) - d(b)).slice(0, k);
        const hits = c.search(query, k, 64, f);
        for (const h of hits) {
          assert.ok(ids.includes(h.id as number), `${text}: hit ${h.id} does not match`);
        }
        const got = new Set(hits.map((h) => h.id));
        for (const id of truth) if (got.has(id)) found++;
        total += truth.length;
      }
      assert.ok(found / total >= 0.9, `${text}: recall ${found / total}`);
    }
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: a version-3 snapshot (no index definitions) loads with no indexes", async () => {
  const root = mkdtempSync(join(tmpdir(), "vdb-colf-"));
  const dir = join(root, "c");
  try {
    let c = await Collection.create(dir, config, quiet);
    await c.put(1, [1, 0, 0, 0, 0, 0, 0, 0], 5, payloadOf(1));
    await c.snapshot();
    await c.close();
    // Rewrite the version-4 file as version 3: drop the (empty) definitions' count.
    const snapDir = join(dir, "snapshots");
    const name = readdirSync(snapDir).find((n) => n.endsWith(".snap"))!;
    rewriteSnapshotAsVersion(join(snapDir, name), 3, 4 + 8); // no index definitions, no key table
    c = await Collection.open(dir, quiet);
    assert.equal(c.replayed, 0);
    assert.deepEqual(c.fieldIndexes(), []);
    assert.equal(c.count(parseFilter('{"must":[{"key":"odd","match":{"value":true}}]}')), 1);
    await c.createFieldIndex("odd", "bool");
    assert.equal(c.fieldIndexes()[0].points, 1);
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection: exactSearch returns the true top-k, unfiltered and under indexed and unindexed filters", async () => {
  const root = mkdtempSync(join(tmpdir(), "vdb-colx-"));
  try {
    const rng = new Rng(23);
    const n = 3000;
    const dim = 12;
    const c = await Collection.create(join(root, "c"), { ...config, dimension: dim }, quiet);
    const vectors = Array.from({ length: n }, () => rng.vector(dim));
    await c.putBatch(vectors.map((vector, id) => ({ id, vector, payload: payloadOf(id) })));
    await c.createFieldIndex("g", "integer");
    await c.delete(7);
    const k = 15;
    for (
      const text of [
        null,
        '{"must":[{"key":"odd","match":{"value":false}}]}', // unindexed: predicate
        '{"must":[{"key":"g","range":{"lt":40}}]}', // indexed: id list
        '{"must":[{"key":"g","range":{"lt":100}},{"key":"lang","match":{"value":"en"}}]}',
      ]
    ) {
      const f = text === null ? null : parseFilter(text);
      const ids = f === null
        ? [...c.knownIds()].filter((id) => c.get(id) !== null)
        : bruteIds(c, f);
      assert.ok(!ids.includes(7), "the deleted point never matches");
      for (let q = 0; q < 5; q++) {
        const query = rng.vector(dim);
        const d = (id: unknown) =>
          vectors[id as number].reduce((s, x, i) => s + (x - query[i]) ** 2, 0);
        const truth = ids.slice().sort((a, b) => d(a) - d(b)).slice(0, k);
        const hits = c.exactSearch(query, k, f);
        assert.deepEqual(hits.map((h) => h.id), truth, `${text}: query ${q}`);
      }
    }
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
