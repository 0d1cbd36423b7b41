import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collection } from "./collection.ts";
import { Rng } from "../testing/random.ts";
import { DEFAULT_TRAIN_SIZE } from "../index/quantizer.ts";

const quiet = { logger: () => {} };

Deno.test("collection int8: quantization survives WAL replay and snapshot, with its codes", async () => {
  const root = mkdtempSync(join(tmpdir(), "vdb-int8-"));
  const dir = join(root, "q");
  try {
    const rng = new Rng(9);
    const config = {
      name: "q",
      dimension: 8,
      metric: "l2" as const,
      m: 8,
      ef_construction: 64,
      quantization: "int8" as const,
      rescore: 3,
    };
    let c = await Collection.create(dir, config, quiet);
    const n = DEFAULT_TRAIN_SIZE + 300;
    const data = Array.from({ length: n }, () => rng.vector(8));
    for (let i = 0; i < n; i += 500) {
      await c.putBatch(data.slice(i, i + 500).map((v, j) => ({ id: i + j, vector: v })));
    }
    assert.notEqual(c.index.codes, null, "trained once the train size was reached");
    assert.equal(c.index.rescore, 3);
    const queries = Array.from({ length: 20 }, () => rng.vector(8));
    const before = queries.map((q) => c.search(q, 5));
    // Results are exact distances: each stored point is its own nearest, at distance 0.
    assert.deepEqual(c.search(data[42], 1).map((h) => [h.id, h.distance]), [[42, 0]]);
    await c.close();

    c = await Collection.open(dir, quiet);
    assert.equal(c.config.quantization, "int8");
    assert.equal(c.config.rescore, 3);
    assert.notEqual(c.index.codes, null, "replay trains again");
    assert.deepEqual(queries.map((q) => c.search(q, 5)), before);
    await c.snapshot();
    await c.close();

    c = await Collection.open(dir, quiet);
    assert.equal(c.config.quantization, "int8");
    assert.equal(c.config.rescore, 3);
    assert.notEqual(c.index.codes, null, "the snapshot holds the codes");
    assert.deepEqual(queries.map((q) => c.search(q, 5)), before);
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("collection int8: a float collection keeps no quantization fields", async () => {
  const root = mkdtempSync(join(tmpdir(), "vdb-int8-"));
  try {
    const c = await Collection.create(join(root, "f"), {
      name: "f",
      dimension: 4,
      metric: "dot",
      m: 8,
      ef_construction: 32,
    }, quiet);
    await c.put(1, [1, 0, 0, 0]);
    assert.equal(c.index.quantization, "none");
    assert.equal(c.config.quantization, undefined);
    await c.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
