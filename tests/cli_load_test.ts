/**
 * `client load` finishes through a node failure: a 3-node static cluster + router (RF 2,
 * quorum) loads 3,000 points through the CLI while one node is SIGKILLed mid-load and
 * restarted. Every point is acknowledged and readable through the router, and the CLI reports
 * retries. Then a file of the wrong dimension fails its points for good (not retried), counted
 * by reason, with exit status 1.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { withCluster } from "../harness/cluster.ts";
import { runCli } from "../harness/servers.ts";
import { sleep, waitFor } from "../harness/wait.ts";

const DIM = 8;
const POINTS = 3000;
const COLLECTION = "load_test";

function vectorOf(id: number): number[] {
  return Array.from(
    Float32Array.from({ length: DIM }, (_, j) => Math.sin(id * 0.37 + j * 1.1) + j * 0.01),
  );
}

async function writeFvecs(path: string, n: number): Promise<void> {
  const record = 4 + 4 * DIM;
  const view = new DataView(new ArrayBuffer(n * record));
  for (let i = 0; i < n; i++) {
    view.setInt32(i * record, DIM, true);
    vectorOf(i).forEach((x, j) => view.setFloat32(i * record + 4 + 4 * j, x, true));
  }
  await Deno.writeFile(path, new Uint8Array(view.buffer));
}

Deno.test({
  name: "client load retries through a SIGKILLed node and fails bad points for good",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withCluster({ nodes: 3, replication_factor: 2 }, async (c) => {
      const router = c.api(c.routerAddr, 10_000);
      await router.call("CreateCollection", { name: COLLECTION, dimension: DIM });
      const file = join(c.dir, "points.fvecs");
      await writeFvecs(file, POINTS);

      // Small sequential batches so that the load is still running when the node dies.
      const load = runCli([
        "--addr",
        c.routerAddr,
        "--json",
        "load",
        "--file",
        file,
        "--collection",
        COLLECTION,
        "--batch",
        "20",
        "--concurrency",
        "1",
        "--attempts",
        "30",
      ]);
      let finished = false;
      load.finally(() => finished = true);
      await waitFor(async () => {
        const r = await router.call("Get", { id: 0, collection: COLLECTION });
        return r.found;
      }, "the load did not start");
      assert.equal(finished, false, "the load finished before the node could be killed");
      await c.killNode(1);
      await sleep(1500);
      await c.startNode(1);

      const result = await load;
      assert.equal(result.code, 0, result.stderr);
      const summary = JSON.parse(result.stdout);
      assert.equal(summary.points, POINTS);
      assert.equal(summary.failed, 0);
      assert.deepEqual(summary.failures, []);
      assert.ok(summary.retries > 0, `no retries: ${result.stdout}`);

      for (let id = 0; id < POINTS; id += 100) {
        const ids = Array.from({ length: 100 }, (_, k) => id + k);
        const got = await Promise.all(
          ids.map((i) => router.call("Get", { id: i, collection: COLLECTION })),
        );
        got.forEach((r, k) => {
          assert.ok(r.found, `id ${ids[k]} not found`);
          assert.deepEqual(r.vector, vectorOf(ids[k]), `id ${ids[k]}`);
        });
      }

      // Wrong dimension: not retryable, failed for good and counted by reason.
      const bad = join(c.dir, "bad.jsonl");
      await Deno.writeTextFile(
        bad,
        [1, 2, 3].map((id) => JSON.stringify({ id: 10_000 + id, vector: [1, 2, 3] })).join("\n"),
      );
      const r2 = await runCli([
        "--addr",
        c.routerAddr,
        "--json",
        "load",
        "--file",
        bad,
        "--collection",
        COLLECTION,
      ]);
      assert.equal(r2.code, 1, r2.stderr);
      const s2 = JSON.parse(r2.stdout);
      assert.equal(s2.points, 0);
      assert.equal(s2.failed, 3);
      assert.equal(s2.retries, 0);
      assert.equal(s2.failures.length, 1);
      assert.equal(s2.failures[0].reason, "INVALID_ARGUMENT");
      assert.equal(s2.failures[0].points, 3);
      assert.match(s2.failures[0].first_message, /dimension/);
      assert.match(r2.stderr, /error: 3 points failed for good; first: INVALID_ARGUMENT: /);
    });
  },
});
