/**
 * Test support for a collection on a worker pool: a fresh `GraphPool` of two workers and a
 * collection "c" (l2, m 8, ef_construction 32) created on it in a temporary directory; the pool
 * is closed and the directory removed after, the collection is the test's to close. Used by the
 * collection tests of close, detach and worker searches (collection_test.ts), which each had a
 * copy of this set-up.
 *
 * @example
 * ```ts
 * await withPooledCollection({ dimension: 8, build: 2 }, async ({ c, attached }) => {
 *   await c.put(1, [1, 0, 0, 0, 0, 0, 0, 0]);
 *   await c.close();
 *   assert.equal(attached(), 0);
 * });
 * ```
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GraphPool } from "../index/graph_pool.ts";
import { Collection, type CollectionConfig } from "./collection.ts";

/** What {@link withPooledCollection} hands the test. */
export interface PooledCollection {
  /** Collection "c", in `dir`, on `pool`. */
  c: Collection;
  pool: GraphPool;
  /** The thread options `c` was opened with (pass them to reopen it on the same pool). */
  threads: { pool: GraphPool; search: number; build: number };
  /** The temporary directory (removed after); `c` lives in `root`/c. */
  root: string;
  dir: string;
  /** Indexes attached to the pool (each keeps an index's shared memory alive in every worker). */
  attached: () => number;
}

/**
 * Runs `fn` with collection "c" of `dimension` on a new pool of two workers (searches on 2
 * threads, batches on `build`); closes the pool and removes the directory after, even when
 * `fn` throws.
 */
export async function withPooledCollection(
  options: { dimension: number; build: number },
  fn: (t: PooledCollection) => Promise<void>,
): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "vdb-col-"));
  const pool = new GraphPool(2);
  try {
    const threads = { pool, search: 2, build: options.build };
    const config: CollectionConfig = {
      name: "c",
      dimension: options.dimension,
      metric: "l2",
      m: 8,
      ef_construction: 32,
    };
    const dir = join(root, "c");
    const c = await Collection.create(dir, config, { logger: () => {}, threads });
    const attached = () => (pool as unknown as { entries: Map<number, unknown> }).entries.size;
    await fn({ c, pool, threads, root, dir, attached });
  } finally {
    await pool.close();
    rmSync(root, { recursive: true, force: true });
  }
}
