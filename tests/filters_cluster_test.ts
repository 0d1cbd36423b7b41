/**
 * Filters and payload indexes on a real cluster (3 storage nodes + router, RF 2), checked
 * against brute force over what was written, through the typed client:
 *
 * - 2,000 points with payloads (keyword `tenant` of 10 values, integer `year`, nested
 *   `meta.lang`, array `tags`) loaded through the router; a keyword index on `tenant` created
 *   through the router is listed by every node;
 * - filtered Count equals the brute-force count, for several filters;
 * - a full filtered Scroll (page size 17) lists each matching id once, in id order, with its
 *   payload;
 * - filtered Search returns only matching points, and its top 10 equal the exact filtered top 10
 *   (recall ≥ 0.9 over the queries);
 * - overwritten points that stop matching leave the counts; DeleteByFilter deletes exactly the
 *   matches; GetBatch returns the payloads; the CLI's `count --filter` prints the same count.
 */

import assert from "node:assert/strict";
import { withCluster } from "../harness/cluster.ts";
import { runCli } from "../harness/servers.ts";
import { parsePayload, type Payload, VectorDbClient } from "../src/client/mod.ts";

const DIM = 8;
const N = 2_000;
const COLLECTION = "filters_test";
const LANGS = ["en", "de", "fr"];

/** A deterministic pseudo-random source (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function payloadOf(id: number): Payload {
  return {
    tenant: `t${(id * 7 + 3) % 10}`,
    year: 2000 + (id * 13) % 25,
    meta: { lang: LANGS[id % 3] },
    tags: id % 4 === 0 ? ["red", "blue"] : id % 4 === 1 ? ["green"] : [],
  };
}

/** A filter in its JSON form with the predicate it means, written independently of the server. */
interface Case {
  name: string;
  filter: Record<string, unknown>;
  matches: (p: Payload) => boolean;
}

const tenant = (p: Payload) => p.tenant as string;
const year = (p: Payload) => p.year as number;
const lang = (p: Payload) => (p.meta as { lang: string }).lang;
const tags = (p: Payload) => p.tags as string[];

const CASES: Case[] = [
  {
    name: "tenant t3",
    filter: { must: [{ key: "tenant", match: { value: "t3" } }] },
    matches: (p) => tenant(p) === "t3",
  },
  {
    name: "year in [2010, 2015) and meta.lang en",
    filter: {
      must: [
        { key: "year", range: { gte: 2010, lt: 2015 } },
        { key: "meta.lang", match: { value: "en" } },
      ],
    },
    matches: (p) => year(p) >= 2010 && year(p) < 2015 && lang(p) === "en",
  },
  {
    name: "tags any red, not tenant t0 or t1",
    filter: {
      must: [{ key: "tags", match: { any: ["red"] } }],
      must_not: [{ key: "tenant", match: { any: ["t0", "t1"] } }],
    },
    matches: (p) => tags(p).includes("red") && !["t0", "t1"].includes(tenant(p)),
  },
  {
    name: "should: tenant t5 or empty tags",
    filter: { should: [{ key: "tenant", match: { value: "t5" } }, { is_empty: { key: "tags" } }] },
    matches: (p) => tenant(p) === "t5" || tags(p).length === 0,
  },
];

function l2(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s;
}

Deno.test({
  name: "filters on a cluster: Count, Scroll, Search, DeleteByFilter, GetBatch and the CLI " +
    "agree with brute force; the field index is on every node",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({ nodes: 3, replication_factor: 2 }, async (c) => {
      const db = new VectorDbClient({ address: c.routerAddr, timeoutMs: 20_000 });
      try {
        await db.createCollection(COLLECTION, { dimension: DIM, metric: "l2" });
        const rand = rng(7);
        const vectors = Array.from(
          { length: N },
          () => Array.from({ length: DIM }, () => Math.fround(rand() * 2 - 1)),
        );
        // What the cluster should hold: id -> payload (absent once deleted).
        const want = new Map<number, Payload>();
        for (let id = 0; id < N; id++) want.set(id, payloadOf(id));
        const up = await db.upsert(
          COLLECTION,
          vectors.map((vector, id) => ({ id, vector, payload: want.get(id)! })),
          { batchSize: 500 },
        );
        assert.equal(up.count, N);

        // ----- the index, through the router, on every node -----
        assert.equal((await db.createFieldIndex(COLLECTION, "tenant", "keyword")).created, true);
        for (const addr of c.nodeAddrs) {
          const list = await c.api(addr).call("ListCollections", {});
          const info = list.collections.find((x) => x.name === COLLECTION);
          assert.deepEqual(info?.field_indexes, [{ field: "tenant", type: "keyword" }], addr);
        }
        const listed = (await db.listCollections()).find((x) => x.name === COLLECTION);
        assert.deepEqual(listed?.field_indexes, [{ field: "tenant", type: "keyword" }]);

        const expected = (k: Case) =>
          [...want.entries()].filter(([, p]) => k.matches(p)).map(([id]) => id);

        // ----- Count and a full Scroll of each filter -----
        for (const k of CASES) {
          const ids = expected(k);
          assert.ok(ids.length > 20 && ids.length < N, `${k.name}: ${ids.length} matches`);
          assert.deepEqual(await db.count(COLLECTION, { filter: k.filter }), {
            count: ids.length,
            partial: false,
          }, k.name);
          const seen: number[] = [];
          for await (
            const page of db.scrollAll(COLLECTION, {
              filter: k.filter,
              withPayload: true,
              limit: 17,
            })
          ) {
            assert.ok(page.points.length <= 17);
            for (const p of page.points) {
              seen.push(p.id as number);
              assert.deepEqual(
                parsePayload(p.payload),
                want.get(p.id as number),
                `payload of ${p.id}`,
              );
            }
          }
          assert.deepEqual(seen, ids, `${k.name}: scroll lists each match once, in id order`);
        }

        // ----- filtered Search against exact filtered top-k -----
        const K = 10;
        let hits = 0;
        let total = 0;
        for (let q = 0; q < 24; q++) {
          const k = CASES[q % CASES.length];
          const query = Array.from({ length: DIM }, () => rand() * 2 - 1);
          const res = await db.search(COLLECTION, query, {
            k: K,
            ef: 128,
            filter: k.filter,
            withPayload: true,
          });
          assert.equal(res.results.length, K, k.name);
          for (const r of res.results) {
            assert.ok(k.matches(parsePayload(r.payload)!), `${k.name}: result ${r.id} matches`);
            assert.ok(
              k.matches(want.get(r.id as number)!),
              `${k.name}: ${r.id} matches what was written`,
            );
          }
          const exact = expected(k)
            .map((id) => ({ id, d: l2(query, vectors[id]) }))
            .sort((a, b) => a.d - b.d)
            .slice(0, K)
            .map((x) => x.id);
          const got = new Set(res.results.map((r) => r.id));
          hits += exact.filter((id) => got.has(id)).length;
          total += K;
        }
        const recall = hits / total;
        console.log(`filtered search recall@${K}: ${recall.toFixed(3)}`);
        assert.ok(recall >= 0.9, `filtered recall ${recall}`);

        // ----- overwrite some matches of "tenant t3" so they stop matching -----
        const t3 = CASES[0];
        const moved = expected(t3).slice(0, 40);
        for (const id of moved) {
          const p = { ...want.get(id)!, tenant: "moved" };
          want.set(id, p);
        }
        await db.upsert(
          COLLECTION,
          moved.map((id) => ({ id, vector: vectors[id], payload: want.get(id)! })),
        );
        for (const k of CASES) {
          assert.equal(
            (await db.count(COLLECTION, { filter: k.filter })).count,
            expected(k).length,
          );
        }
        const moved_filter = { must: [{ key: "tenant", match: { value: "moved" } }] };
        assert.equal((await db.count(COLLECTION, { filter: moved_filter })).count, 40);

        // ----- the CLI's count --filter -----
        const t3_count = expected(t3).length;
        const cli = await runCli([
          "--addr",
          c.routerAddr,
          "count",
          "--collection",
          COLLECTION,
          "--filter",
          JSON.stringify(t3.filter),
        ]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.equal(
          cli.stdout.trim(),
          `${t3_count.toLocaleString("en-US")} points in "${COLLECTION}" matching the filter`,
        );
        const bad = await runCli([
          "--addr",
          c.routerAddr,
          "count",
          "--collection",
          COLLECTION,
          "--filter",
          '{"must":[{"key":"year","range":{"gt":"x"}}]}',
        ]);
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /INVALID_ARGUMENT.*filter\.must\[0\]\.range\.gt/);

        // ----- GetBatch -----
        const ask = [5, 6, moved[0], 99_999];
        const records = await db.getBatch(COLLECTION, ask, { withPayload: true });
        assert.deepEqual(records.map((r) => r.id), ask);
        assert.deepEqual(records.map((r) => r.found), [true, true, true, false]);
        for (const r of records.slice(0, 3)) {
          assert.deepEqual(
            parsePayload(r.payload),
            want.get(r.id as number),
            `GetBatch payload of ${r.id}`,
          );
        }

        // ----- DeleteByFilter deletes exactly the matches -----
        const before = (await db.count(COLLECTION)).count;
        assert.equal(before, N);
        const del = await db.deleteByFilter(COLLECTION, t3.filter);
        assert.equal(del.deleted, t3_count);
        for (const id of expected(t3)) want.delete(id);
        assert.equal((await db.count(COLLECTION, { filter: t3.filter })).count, 0);
        assert.equal((await db.count(COLLECTION)).count, before - t3_count);
        for (const k of CASES.slice(1)) {
          assert.equal(
            (await db.count(COLLECTION, { filter: k.filter })).count,
            expected(k).length,
          );
        }
        const all: number[] = [];
        for await (const page of db.scrollAll(COLLECTION, { limit: 500 })) {
          for (const p of page.points) all.push(p.id as number);
        }
        assert.deepEqual(all, [...want.keys()].sort((a, b) => a - b));
      } finally {
        db.close();
      }
    });
  },
});
