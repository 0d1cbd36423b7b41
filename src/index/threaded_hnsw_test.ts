import assert from "node:assert/strict";
import { HnswIndex } from "./hnsw.ts";
import { ThreadedHnsw } from "./threaded_hnsw.ts";

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

function randomVectors(n: number, dim: number, seed: number): Float32Array {
  const r = rng(seed);
  const v = new Float32Array(n * dim);
  for (let i = 0; i < v.length; i++) v[i] = r() * 2 - 1;
  return v;
}

const row = (v: Float32Array, i: number, dim: number) => v.subarray(i * dim, (i + 1) * dim);

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

/** Exact top-k ids of `q` among the first `n` rows. */
function bruteForce(data: Float32Array, n: number, dim: number, q: Float32Array, k: number) {
  const d: [number, number][] = [];
  for (let i = 0; i < n; i++) d.push([l2(row(data, i, dim), q), i]);
  d.sort((a, b) => a[0] - b[0]);
  return new Set(d.slice(0, k).map((x) => x[1]));
}

Deno.test("one build thread gives HnswIndex's graph; worker and caller-thread searches give HnswIndex's hits", async () => {
  for (const metric of ["l2", "cosine"] as const) {
    const dim = 24, n = 3000;
    const data = randomVectors(n, dim, 7);
    const ids = Array.from({ length: n }, (_, i) => i * 3 + 1);
    const t = await ThreadedHnsw.create({
      dim,
      metric,
      M: 8,
      efConstruction: 64,
      searchThreads: 2,
      buildThreads: 1,
    });
    try {
      await t.addBatch(ids, data);
      const ref = new HnswIndex({ dim, metric, M: 8, efConstruction: 64 });
      for (let i = 0; i < n; i++) ref.add(ids[i], row(data, i, dim));
      const queries = randomVectors(60, dim, 99);
      const fromWorkers = await t.searchBatch(queries, 10, 40);
      for (let i = 0; i < 60; i++) {
        const q = row(queries, i, dim);
        const want = ref.search(q, 10, { ef: 40 });
        assert.deepEqual(want.length, 10);
        assert.deepEqual(t.search(q, 10, 40), want, `${metric} query ${i} on the caller's thread`);
        assert.deepEqual(fromWorkers[i], want, `${metric} query ${i} on a worker`);
      }
      assert.deepEqual(
        await t.searchAsync(row(queries, 0, dim), 5, 40),
        ref.search(row(queries, 0, dim), 5, { ef: 40 }),
      );
    } finally {
      await t.close();
    }
  }
});

Deno.test("parallel build: recall within 0.02 of the one-thread build on 5000 points", async () => {
  const dim = 16, n = 5000, nq = 100, k = 10;
  const data = randomVectors(n, dim, 3);
  const ids = Array.from({ length: n }, (_, i) => i);
  const queries = randomVectors(nq, dim, 4);
  const truth = Array.from(
    { length: nq },
    (_, i) => bruteForce(data, n, dim, row(queries, i, dim), k),
  );
  const recall = async (buildThreads: number) => {
    const t = await ThreadedHnsw.create({
      dim,
      M: 8,
      efConstruction: 80,
      searchThreads: 1,
      buildThreads,
    });
    try {
      // Several batches, so later batches link against a graph built in parallel.
      for (let s = 0; s < n; s += 1250) {
        await t.addBatch(ids.slice(s, s + 1250), data.subarray(s * dim, (s + 1250) * dim));
        assert.equal(t.lastLinked.length, buildThreads);
        assert.equal(t.lastLinked.reduce((a, b) => a + b, 0), 1250);
      }
      assert.deepEqual(t.count, n);
      let hit = 0;
      for (let i = 0; i < nq; i++) {
        for (const h of t.search(row(queries, i, dim), k, 64)) if (truth[i].has(h.id)) hit++;
      }
      return hit / (nq * k);
    } finally {
      await t.close();
    }
  };
  const one = await recall(1);
  const two = await recall(2);
  const three = await recall(3);
  assert.ok(one > 0.8, `one-thread recall ${one}`);
  assert.ok(two >= one - 0.02, `two threads: recall ${two} vs ${one} with one`);
  assert.ok(three >= one - 0.02, `three threads: recall ${three} vs ${one} with one`);
});

Deno.test("worker searches during caller-thread inserts (with memory growth) return only published, correct points", async () => {
  const dim = 8, n = 4000;
  const data = randomVectors(n, dim, 11);
  const queries = randomVectors(40, dim, 12);
  // Capacity 64: the shared memory and every buffer grow many times while workers search.
  const t = await ThreadedHnsw.create({
    dim,
    M: 6,
    efConstruction: 40,
    capacity: 64,
    searchThreads: 2,
    buildThreads: 1,
  });
  try {
    const memBefore = t.graph.layout.memory.buffer.byteLength;
    let added = 0;
    let searches = 0;
    while (added < n) {
      const pending = t.searchBatch(queries, 5, 20);
      // Insert on this thread while the workers search.
      for (let j = 0; j < 100; j++, added++) t.add(added, row(data, added, dim));
      const res = await pending;
      for (let i = 0; i < res.length; i++) {
        for (const h of res[i]) {
          assert.ok(
            Number.isInteger(h.id) && h.id >= 0 && h.id < added,
            `id ${h.id} not yet added (${added})`,
          );
          const want = l2(row(data, h.id, dim), row(queries, i, dim));
          assert.ok(Math.abs(h.distance - want) < 1e-4, `distance ${h.distance} vs ${want}`);
        }
        searches++;
      }
    }
    assert.ok(t.graph.layout.memory.buffer.byteLength > memBefore, "the memory grew");
    assert.deepEqual(searches, (n / 100) * 40);
    // Quiet now: every worker answer equals the caller's.
    const final = await t.searchBatch(queries, 5, 20);
    for (let i = 0; i < 40; i++) assert.deepEqual(final[i], t.search(row(queries, i, dim), 5, 20));
  } finally {
    await t.close();
  }
});

Deno.test("caller-thread searches during a parallel batch link never return a pending slot", async () => {
  const dim = 8, n = 6000;
  const data = randomVectors(n, dim, 21);
  const queries = randomVectors(20, dim, 22);
  const t = await ThreadedHnsw.create({
    dim,
    M: 6,
    efConstruction: 60,
    searchThreads: 2,
    buildThreads: 2,
  });
  try {
    await t.addBatch(Array.from({ length: 500 }, (_, i) => i), data.subarray(0, 500 * dim));
    let done = false;
    const batch = t.addBatch(
      Array.from({ length: n - 500 }, (_, i) => 500 + i),
      data.subarray(500 * dim),
    ).finally(() => done = true);
    let rounds = 0;
    const g = t.graph;
    while (!done) {
      for (let i = 0; i < 20; i++) {
        for (const h of t.search(row(queries, i, dim), 5, 20)) {
          assert.ok(h.id < n, `id ${h.id}`);
          // A returned id is published: its state turned live before the search read it.
          assert.deepEqual(g.states[h.id], 2, `state of ${h.id}`);
        }
      }
      rounds++;
      await new Promise((r) => setTimeout(r, 0));
    }
    await batch;
    assert.deepEqual(t.count, n);
    assert.ok(rounds >= 1);
    for (let i = 0; i < 20; i++) {
      const truth = bruteForce(data, n, dim, row(queries, i, dim), 1);
      assert.ok(
        truth.has(t.search(row(queries, i, dim), 1, 100)[0].id),
        `query ${i} finds its nearest`,
      );
    }
  } finally {
    await t.close();
  }
});

Deno.test("upserts and deletes keep the last vector; bad input is refused with the value named", async () => {
  const t = await ThreadedHnsw.create({ dim: 2, searchThreads: 2, buildThreads: 2 });
  try {
    await t.addBatch([1, 2, 3], new Float32Array([0, 0, 5, 5, 9, 9]));
    t.add(1, [9.1, 9.1]);
    assert.deepEqual(t.count, 3);
    assert.deepEqual((await t.searchAsync([0, 0], 1))[0].id, 2);
    // A repeated id in one parallel batch keeps its last vector; the first stays a tombstone.
    await t.addBatch([7, 8, 7], new Float32Array([100, 100, 50, 50, -40, -40]));
    assert.deepEqual(t.count, 5);
    assert.deepEqual((await t.searchAsync([-40, -40], 1))[0].id, 7);
    assert.deepEqual((await t.searchAsync([100, 100], 1))[0].id, 8);
    assert.deepEqual(t.delete(7) && t.delete(8), true);
    assert.deepEqual(t.delete(2), true);
    assert.deepEqual(t.delete(2), false);
    assert.deepEqual((await t.searchAsync([0, 0], 3)).map((h) => h.id).sort(), [1, 3]);
    assert.throws(
      () => t.search([0, 0], 0),
      (e: Error) => e instanceof RangeError && e.message.includes("k 0"),
    );
    assert.throws(
      () => t.search([0, 0], 5, 2),
      (e: Error) => e instanceof RangeError && e.message.includes("ef 2 must be at least k 5"),
    );
    assert.throws(
      () => t.search([0], 1),
      (e: Error) => e instanceof RangeError && e.message.includes("dimension 1"),
    );
    await assert.rejects(
      () => t.addBatch([1], new Float32Array(3)),
      (e: Error) => e instanceof RangeError && e.message.includes("3 floats"),
    );
    await assert.rejects(
      () => t.addBatch([1], new Float32Array([0, NaN])),
      (e: Error) => e instanceof RangeError && e.message.includes("NaN"),
    );
    await assert.rejects(
      () => t.searchBatch(new Float32Array(2 * 200), 100_000),
      (e: Error) => e instanceof RangeError && e.message.includes("200 queries x k 100000"),
    );
    await assert.rejects(
      () => t.searchBatch(new Float32Array(3), 1),
      (e: Error) => e instanceof RangeError && e.message.includes("multiple of dimension 2"),
    );
  } finally {
    await t.close();
  }
  assert.throws(
    () => t.search([0, 0], 1),
    (e: Error) => e instanceof Error && e.message.includes("closed"),
  );
  await assert.rejects(
    () => ThreadedHnsw.create({ dim: 2, searchThreads: 0 }),
    (e: Error) => e instanceof RangeError && e.message.includes("searchThreads 0"),
  );
});

const ROOT = new URL("../../", import.meta.url).pathname;
const NODE_PROGRAM = (modulePath: string) => `
import { ThreadedHnsw } from ${JSON.stringify(modulePath)};
const t = await ThreadedHnsw.create({ dim: 2, searchThreads: 2, buildThreads: 2 });
await t.addBatch([1, 2, 3], new Float32Array([0, 0, 5, 5, 9, 9]));
const r = await t.searchBatch(new Float32Array([8, 8, 1, 1]), 1);
console.log(JSON.stringify({ ids: r.map((h) => h[0].id), workers: t.workerCount }));
await t.close();
`;

function runNode(args: string[]): string {
  const out = new Deno.Command("/usr/bin/env", { args: ["node", ...args], cwd: ROOT }).outputSync();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return text.trim();
}

Deno.test("the worker pool runs under Node 20: through tsx from the sources, and from esbuild bundles", () => {
  const want = JSON.stringify({ ids: [3, 1], workers: 2 });
  // Sources through tsx, as tests start servers.
  const tsx = `${ROOT}node_modules/tsx/dist/esm/index.mjs`;
  const viaTsx = runNode([
    "--import",
    tsx,
    "--input-type=module",
    "-e",
    NODE_PROGRAM(`${ROOT}src/index/threaded_hnsw.ts`),
  ]);
  assert.equal(viaTsx, want);
  // Bundles laid out as build:js lays them out: the worker bundle beside the program's, two
  // folders below a root that holds build/kernels_shared.wasm.
  const dir = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${dir}/build/js`, { recursive: true });
    Deno.copyFileSync(`${ROOT}build/kernels_shared.wasm`, `${dir}/build/kernels_shared.wasm`);
    Deno.writeTextFileSync(
      `${dir}/entry.ts`,
      NODE_PROGRAM(`${ROOT}src/index/threaded_hnsw.ts`),
    );
    const esbuild = `${ROOT}node_modules/esbuild/bin/esbuild`;
    for (
      const [src, out] of [[`${dir}/entry.ts`, "prog.mjs"], [
        `${ROOT}src/index/graph_worker.ts`,
        "graph_worker.mjs",
      ]]
    ) {
      const r = new Deno.Command(esbuild, {
        args: [
          src,
          "--bundle",
          "--platform=node",
          "--format=esm",
          "--log-level=warning",
          `--outfile=${dir}/build/js/${out}`,
        ],
      }).outputSync();
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    }
    assert.equal(runNode([`${dir}/build/js/prog.mjs`]), want);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
