import assert from "node:assert/strict";
import { HnswIndex } from "./hnsw.ts";
import { GraphPool, SearchQueueFullError } from "./graph_pool.ts";
import { randomVectors, rng, row, searchOn } from "./graph_pool_testing.ts";
import { STATE_LIVE } from "./shared_graph.ts";

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

Deno.test("one build thread gives add()'s graph; worker searches equal owner searches, deletes and compaction included (l2, cosine)", async () => {
  const pool = new GraphPool(2);
  try {
    for (const metric of ["l2", "cosine"] as const) {
      const dim = 24, n = 3000;
      const data = randomVectors(n, dim, 7);
      const ids = Array.from({ length: n }, (_, i) => i * 3 + 1);
      const t = new HnswIndex({ dim, metric, M: 8, efConstruction: 64 });
      await pool.addBatch(t, ids, data, 1);
      const ref = new HnswIndex({ dim, metric, M: 8, efConstruction: 64 });
      // Compacts when told, as the pooled index does, so both graphs stay the same.
      ref.deferCompaction = true;
      for (let i = 0; i < n; i++) ref.add(ids[i], row(data, i, dim));
      const queries = randomVectors(60, dim, 99);
      const check = async (what: string) => {
        for (let i = 0; i < 60; i++) {
          const q = row(queries, i, dim);
          const want = ref.search(q, 10, { ef: 40 });
          assert.equal(want.length, 10);
          assert.deepEqual(t.search(q, 10, { ef: 40 }), want, `${metric} ${what} query ${i} owner`);
          assert.deepEqual(
            await searchOn(pool, t, q, 10, 40),
            want,
            `${metric} ${what} query ${i} worker`,
          );
        }
      };
      await check("built");
      // Tombstones (below the compaction ratio: they stay in the graph) are never returned.
      for (let i = 0; i < n; i += 50) {
        assert.ok(t.delete(ids[i]));
        ref.delete(ids[i]);
      }
      assert.equal(t.deletedCount, n / 50);
      await check("tombstones");
      // Past the ratio: the pool defers compaction to compactIfDue, run with searches paused.
      for (let i = 1; i < n; i += 7) {
        t.delete(ids[i]);
        ref.delete(ids[i]);
      }
      assert.ok(t.deletedCount > 0 && t.compactDue(), "compaction deferred to the owner");
      const during = Promise.all(
        Array.from({ length: 30 }, (_, i) => searchOn(pool, t, row(queries, i, dim), 10, 40)),
      );
      assert.equal(await pool.compactIfDue(t), true);
      assert.equal(t.deletedCount, 0);
      for (const hits of await during) for (const h of hits) assert.ok(t.has(h.id), `${h.id} live`);
      ref.compact();
      await check("compacted");
    }
  } finally {
    await pool.close();
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
  const pool = new GraphPool(3);
  const recall = async (buildThreads: number) => {
    const t = new HnswIndex({ dim, M: 8, efConstruction: 80 });
    // Several batches, so later batches link against a graph built in parallel.
    for (let s = 0; s < n; s += 1250) {
      await pool.addBatch(
        t,
        ids.slice(s, s + 1250),
        data.subarray(s * dim, (s + 1250) * dim),
        buildThreads,
      );
    }
    assert.equal(t.count, n);
    let hit = 0;
    for (let i = 0; i < nq; i++) {
      for (const h of t.search(row(queries, i, dim), k, { ef: 64 })) if (truth[i].has(h.id)) hit++;
    }
    return hit / (nq * k);
  };
  try {
    const one = await recall(1);
    const two = await recall(2);
    const three = await recall(3);
    assert.ok(one > 0.8, `one-thread recall ${one}`);
    assert.ok(two >= one - 0.02, `two threads: recall ${two} vs ${one} with one`);
    assert.ok(three >= one - 0.02, `three threads: recall ${three} vs ${one} with one`);
  } finally {
    await pool.close();
  }
});

Deno.test("worker searches during owner inserts (with memory growth) return only published, correct points", async () => {
  const dim = 8, n = 4000;
  const data = randomVectors(n, dim, 11);
  const queries = randomVectors(40, dim, 12);
  const pool = new GraphPool(2);
  // Capacity 64: the shared memory and every buffer grow many times while workers search.
  const t = new HnswIndex({ dim, M: 6, efConstruction: 40, capacity: 64 });
  try {
    const memBefore = t.layout.memory.buffer.byteLength;
    let added = 0;
    let searches = 0;
    while (added < n) {
      const pending = Array.from(
        { length: 40 },
        (_, i) => searchOn(pool, t, row(queries, i, dim), 5, 20),
      );
      for (let j = 0; j < 100; j++, added++) t.add(added, row(data, added, dim));
      const res = await Promise.all(pending);
      for (let i = 0; i < res.length; i++) {
        for (const h of res[i]) {
          assert.ok(Number.isInteger(h.id) && h.id >= 0 && h.id < added, `id ${h.id} (${added})`);
          const want = l2(row(data, h.id, dim), row(queries, i, dim));
          assert.ok(Math.abs(h.distance - want) < 1e-4, `distance ${h.distance} vs ${want}`);
        }
        searches++;
      }
    }
    assert.ok(t.layout.memory.buffer.byteLength > memBefore, "the memory grew");
    assert.equal(searches, (n / 100) * 40);
    for (let i = 0; i < 40; i++) {
      const q = row(queries, i, dim);
      assert.deepEqual(await searchOn(pool, t, q, 5, 20), t.search(q, 5, { ef: 20 }));
    }
  } finally {
    await pool.close();
  }
});

Deno.test("searches during a parallel batch never return a pending slot; repeated ids keep their last vector", async () => {
  const dim = 8, n = 6000;
  const data = randomVectors(n, dim, 21);
  const queries = randomVectors(20, dim, 22);
  const pool = new GraphPool(2);
  const t = new HnswIndex({ dim, M: 6, efConstruction: 60 });
  try {
    await pool.addBatch(
      t,
      Array.from({ length: 500 }, (_, i) => i),
      data.subarray(0, 500 * dim),
      2,
    );
    let done = false;
    const batch = pool.addBatch(
      t,
      Array.from({ length: n - 500 }, (_, i) => 500 + i),
      data.subarray(500 * dim),
      2,
    ).finally(() => done = true);
    let rounds = 0;
    const states = () => new Uint8Array(t.layout.states);
    while (!done) {
      const onWorkers = Promise.all(
        Array.from({ length: 20 }, (_, i) => searchOn(pool, t, row(queries, i, dim), 5, 20)),
      );
      for (let i = 0; i < 20; i++) {
        for (const h of t.search(row(queries, i, dim), 5, { ef: 20 })) {
          assert.equal(states()[t.slotOf(h.id)], STATE_LIVE, `state of ${h.id}`);
        }
      }
      for (const hits of await onWorkers) {
        for (const h of hits) assert.ok(h.id < n, `id ${h.id}`);
      }
      rounds++;
    }
    await batch;
    assert.equal(t.count, n);
    assert.ok(rounds >= 1);
    for (let i = 0; i < 20; i++) {
      const truth = bruteForce(data, n, dim, row(queries, i, dim), 1);
      assert.ok(truth.has(t.search(row(queries, i, dim), 1, { ef: 100 })[0].id), `query ${i}`);
    }
    // One parallel batch with an id twice: the last vector wins, the first is a tombstone.
    await pool.addBatch(
      t,
      [7, 8, 7],
      new Float32Array([...Array(8).fill(100), ...Array(8).fill(50), ...Array(8).fill(-40)]),
      2,
    );
    assert.equal(t.count, n);
    assert.equal((await searchOn(pool, t, new Array(8).fill(-40), 1, 20))[0].id, 7);
    assert.equal((await searchOn(pool, t, new Array(8).fill(100), 1, 20))[0].id === 7, false);
  } finally {
    await pool.close();
  }
});

Deno.test("a dead worker fails its searches (the caller falls back) and is replaced; a full queue is refused", async () => {
  const dim = 8;
  const data = randomVectors(2000, dim, 5);
  const pool = new GraphPool(1, { queue_max: 4, logger: () => {} });
  const t = new HnswIndex({ dim, M: 6, efConstruction: 40 });
  try {
    await pool.addBatch(t, Array.from({ length: 2000 }, (_, i) => i), data, 1);
    const q = row(data, 3, dim);
    assert.equal((await searchOn(pool, t, q, 1, 20))[0].id, 3);
    // Lanes (16) busy plus 4 waiting: the next is refused, naming the limit.
    const many: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) many.push(pool.search(t, q, 1, 20)!);
    assert.throws(
      () => pool.search(t, q, 1, 20),
      (e: Error) => e instanceof SearchQueueFullError && e.message.includes("4 searches waiting"),
    );
    await Promise.all(many);
    const dying = pool.search(t, q, 1, 20)!;
    await pool.threadHandles[0].terminate();
    await assert.rejects(dying, /exited/);
    assert.equal(pool.restarts, 1);
    assert.equal((await searchOn(pool, t, q, 1, 20))[0].id, 3, "the replacement serves");
  } finally {
    await pool.close();
  }
  assert.equal(pool.search(t, row(data, 0, dim), 1, 20), null, "closed: the owner searches");
});

const ROOT = new URL("../../", import.meta.url).pathname;
const NODE_PROGRAM = (dir: string) => `
import { HnswIndex } from ${JSON.stringify(`${dir}/hnsw.ts`)};
import { GraphPool } from ${JSON.stringify(`${dir}/graph_pool.ts`)};
const pool = new GraphPool(2);
const t = new HnswIndex({ dim: 2 });
await pool.addBatch(t, [1, 2, 3], new Float32Array([0, 0, 5, 5, 9, 9]), 2);
const r = await Promise.all([pool.search(t, [8, 8], 1, 10), pool.search(t, [1, 1], 1, 10)]);
console.log(JSON.stringify({ ids: r.map((x) => x.hits[0].id), workers: pool.alive }));
await pool.close();
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
    NODE_PROGRAM(`${ROOT}src/index`),
  ]);
  assert.equal(viaTsx, want);
  // Bundles laid out as build:js lays them out: the worker bundle beside the program's, two
  // folders below a root that holds the kernels.
  const dir = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${dir}/build/js`, { recursive: true });
    Deno.copyFileSync(`${ROOT}build/kernels_shared.wasm`, `${dir}/build/kernels_shared.wasm`);
    Deno.copyFileSync(`${ROOT}build/kernels.wasm`, `${dir}/build/kernels.wasm`);
    Deno.writeTextFileSync(`${dir}/entry.ts`, NODE_PROGRAM(`${ROOT}src/index`));
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

Deno.test("parallel upsert batches (every id replaced, compaction between) keep every point findable", async () => {
  const pool = new GraphPool(2);
  try {
    for (const metric of ["l2", "cosine"] as const) {
      const t = new HnswIndex({ dim: 16, metric });
      const r = rng(5);
      let bad = 0;
      for (let round = 0; round < 10; round++) {
        let last = new Float32Array(0);
        for (let b = 0; b < 4; b++) {
          last = new Float32Array(200 * 16).map(() => r() * 2 - 1);
          await pool.addBatch(t, Array.from({ length: 200 }, (_, i) => i), last, 2);
          await pool.compactIfDue(t);
        }
        assert.equal(t.count, 200);
        for (let id = 0; id < 200; id++) {
          const q = row(last, id, 16);
          if (t.search(q, 1)[0]?.id !== id) bad++;
          if ((await searchOn(pool, t, q, 1, 64))[0]?.id !== id) bad++;
        }
      }
      // Before the fix of a pending slot's own list (kept links other threads added): ~0.3%
      // (about 12 of 4000), on a quiet machine. With the fix, 0 on a quiet machine; with both
      // cores contended (load 8-12), 2 and 6 of 4000 were seen in 2 runs of 3: HNSW's pruning
      // gives no reachability guarantee, and preempted threads interleave inserts in orders a
      // quiet machine does not produce. The bound keeps the systematic loss out (open in the
      // session notes: whether those few misses can be removed).
      assert.ok(bad <= 8, `${metric}: ${bad} of 4000 exact matches missed (at most 8 allowed)`);
    }
  } finally {
    await pool.close();
  }
});

Deno.test("a worker that dies while linking a batch: the batch completes, no lock stays taken, every point is found", async () => {
  const dim = 8, n = 20000;
  const data = randomVectors(n, dim, 31);
  const pool = new GraphPool(2, { logger: () => {} });
  const t = new HnswIndex({ dim, M: 8, efConstruction: 80 });
  try {
    await pool.addBatch(
      t,
      Array.from({ length: 100 }, (_, i) => i),
      data.subarray(0, 100 * dim),
      2,
    );
    const batch = pool.addBatch(
      t,
      Array.from({ length: n - 100 }, (_, i) => 100 + i),
      data.subarray(100 * dim),
      2,
    );
    await new Promise((r) => setTimeout(r, 300));
    await pool.threadHandles[0].terminate();
    await batch;
    assert.equal(t.count, n);
    await new Promise((r) => setTimeout(r, 1200)); // lock recovery's grace
    const seq = new Int32Array(t.layout.seq);
    for (let s = 0; s < seq.length; s++) assert.equal(seq[s] & 1, 0, `slot ${s} still locked`);
    const states = new Uint8Array(t.layout.states);
    for (let s = 0; s < n; s++) assert.equal(states[s], STATE_LIVE, `slot ${s}`);
    let found = 0;
    for (let i = 0; i < n; i += 97) {
      if (t.search(row(data, i, dim), 1, { ef: 64 })[0].id === i) found++;
      if ((await searchOn(pool, t, row(data, i, dim), 1, 64))[0].id === i) found++;
    }
    assert.ok(found >= 2 * Math.ceil(n / 97) * 0.99, `${found} exact matches`);
    assert.equal(pool.restarts, 1);
  } finally {
    await pool.close();
  }
});

Deno.test("exclusive: two at once (a compaction and a detach) both run once the searches in flight end", async () => {
  const pool = new GraphPool(2);
  try {
    const dim = 16, n = 2000;
    const data = randomVectors(n, dim, 21);
    const index = new HnswIndex({ dim, metric: "l2", M: 8, efConstruction: 32 });
    await pool.addBatch(index, Array.from({ length: n }, (_, i) => i), data, 1);
    await searchOn(pool, index, row(data, 0, dim), 5, 50); // the workers are up
    const searches = Array.from(
      { length: 8 },
      (_, i) => searchOn(pool, index, row(data, i, dim), 5, 400),
    );
    const ran: string[] = [];
    const first = pool.exclusive(index, () => ran.push("first"));
    const second = pool.exclusive(index, () => ran.push("second"));
    await Promise.all(searches);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise((resolve) => timer = setTimeout(resolve, 5000, "timed out"));
    const done = await Promise.race([Promise.all([first, second]).then(() => "done"), late]);
    clearTimeout(timer);
    assert.equal(done, "done", `ran: ${ran}`);
    assert.deepEqual(ran.sort(), ["first", "second"]);
    // Searches go on afterwards.
    assert.equal((await searchOn(pool, index, row(data, 9, dim), 1, 50))[0].id, 9);
  } finally {
    await pool.close();
  }
});

Deno.test("detach: a detached index is not attached again (searches null, batches on the owner) until adopted", async () => {
  const pool = new GraphPool(2);
  try {
    const dim = 8, n = 400;
    const data = randomVectors(n, dim, 23);
    const index = new HnswIndex({ dim, metric: "l2", M: 8, efConstruction: 32 });
    const attached = () => (pool as unknown as { entries: Map<number, unknown> }).entries.size;
    const ids = Array.from({ length: n / 2 }, (_, i) => i);
    await pool.addBatch(index, ids, data.subarray(0, (n / 2) * dim), 2);
    assert.equal(attached(), 1);
    await pool.detach(index);
    assert.equal(attached(), 0);
    assert.equal(pool.search(index, row(data, 3, dim), 1, 32), null, "the owner searches");
    const rest = Array.from({ length: n / 2 }, (_, i) => n / 2 + i);
    await pool.addBatch(index, rest, data.subarray((n / 2) * dim), 2);
    assert.equal(attached(), 0, "linked on the owner");
    assert.equal(index.count, n);
    assert.equal(index.search(row(data, n - 1, dim), 1, { ef: 64 })[0].id, n - 1);
    pool.adopt(index);
    assert.equal((await searchOn(pool, index, row(data, n - 1, dim), 1, 64))[0].id, n - 1);
    assert.equal(attached(), 1);
  } finally {
    await pool.close();
  }
});

Deno.test("detach: searches that arrive while it waits for those in flight all settle (none is sent to a worker and dropped)", async () => {
  const pool = new GraphPool(2);
  try {
    const dim = 16, n = 2000;
    const data = randomVectors(n, dim, 29);
    const index = new HnswIndex({ dim, metric: "l2", M: 8, efConstruction: 32 });
    await pool.addBatch(index, Array.from({ length: n }, (_, i) => i), data, 1);
    await searchOn(pool, index, row(data, 0, dim), 5, 50); // the workers are up
    const inFlight = Array.from(
      { length: 8 },
      (_, i) => searchOn(pool, index, row(data, i, dim), 5, 400),
    );
    const detaching = pool.detach(index);
    // Asked while the detach waits for the searches in flight (a collection closing while a
    // client still searches it): each must be refused (null: the owner searches) or settle.
    const late = Array.from({ length: 4 }, (_, i) => pool.search(index, row(data, i, dim), 5, 50));
    await Promise.all(inFlight);
    await detaching;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise((resolve) => timer = setTimeout(resolve, 5000, "never settled"));
    const outcomes = await Promise.race([
      Promise.all(late.map((p) => p === null ? "null" : p.then(() => "hits", () => "failed"))),
      hung,
    ]);
    clearTimeout(timer);
    assert.notEqual(outcomes, "never settled");
  } finally {
    await pool.close();
  }
});
