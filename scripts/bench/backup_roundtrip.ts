/**
 * Backup/restore round trip on one storage node (not a test; about a minute): loads the first
 * `--n` (100,000) GloVe-100 vectors into a fresh node (cosine), then
 *
 * 1. reads the 20 queries' top-10 results and the vectors of the ids the later writes touch;
 * 2. `Backup` (timed), sizes from `ListBackups` and the data directory;
 * 3. later writes to the source: overwrites `--changes` ids and deletes `--changes` others;
 * 4. `Restore` into a new collection (timed);
 * 5. checks the restored collection is the state at backup time: its point count; every id's
 *    vector (Get on both collections: untouched ids equal the source, touched ids equal the
 *    vectors read in step 1, deleted ids are present); the queries' results equal those of
 *    step 1 (same graph image, so the same results, not merely the same recall).
 *
 * ```sh
 * deno run -A scripts/bench/backup_roundtrip.ts [--n 100000] [--changes 1000] \
 *   [--base .cache/bench/glove-100/base.fvecs] [--json]
 * ```
 * @module
 */
import { loadavg } from "node:os";
import { readdirSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { ApiClient } from "../../src/api/client.ts";
import type { SearchResult } from "../../src/api/proto.ts";
import { readFvecs } from "./lib/fvecs.ts";
import { NodeProcess } from "../../harness/node.ts";
import { REPO_ROOT } from "../../harness/process.ts";

const SOURCE = "glove";
const RESTORED = "glove_restored";
const BACKUP = "glove-b1";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "100000" },
    changes: { type: "string", default: "1000" },
    batch: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "2" },
    base: { type: "string", default: join(REPO_ROOT, ".cache/bench/glove-100/base.fvecs") },
    queries: { type: "string", default: join(REPO_ROOT, ".cache/bench/glove-100/queries.fvecs") },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const log = (m: string) => {
  if (!values.json) console.error(m);
};

const base = readFvecs(values.base, Number(values.n));
const queries = readFvecs(values.queries, 20);
const dim = base.dim;
const changes = Number(values.changes);
const row = (i: number) => Array.from(base.data.subarray(i * dim, (i + 1) * dim));
const queryVectors = Array.from(
  { length: queries.n },
  (_, i) => Array.from(queries.data.subarray(i * dim, (i + 1) * dim)),
);

function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}

async function searchAll(api: ApiClient, collection: string): Promise<SearchResult[][]> {
  const out: SearchResult[][] = [];
  for (const vector of queryVectors) {
    out.push((await api.call("Search", { vector, k: 10, collection })).results);
  }
  return out;
}

/** Vectors (null: absent) of `ids` in `collection`, 32 calls in flight. */
async function getAll(
  api: ApiClient,
  collection: string,
  ids: readonly number[],
): Promise<(number[] | null)[]> {
  const out = new Array<number[] | null>(ids.length);
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < ids.length) {
      const i = next++;
      const r = await api.call("Get", { id: ids[i], collection });
      out[i] = r.found ? r.vector : null;
    }
  }));
  return out;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const seconds = (t0: number) => Number(((performance.now() - t0) / 1000).toFixed(3));

const node = await NodeProcess.prepare({ ready_timeout_ms: 600_000 });
const out: Record<string, unknown> = { points: base.n, dim, loadavg_start: loadavg() };
let ok = false;
try {
  await node.start();
  const api = new ApiClient(node.address, { timeout_ms: 600_000 });
  await api.call("CreateCollection", { name: SOURCE, dimension: dim, metric: "cosine" });
  let t0 = performance.now();
  let next = 0;
  const batch = Number(values.batch);
  await Promise.all(Array.from({ length: Number(values.concurrency) }, async () => {
    while (next < base.n) {
      const first = next;
      next = Math.min(base.n, first + batch);
      const points = [];
      for (let i = first; i < next; i++) points.push({ id: i, vector: row(i) });
      await api.call("PutBatch", { points, collection: SOURCE });
    }
  }));
  out.load_s = seconds(t0);
  log(`loaded ${base.n} points in ${out.load_s} s`);

  // 1. The state at backup time: query results and the vectors the later writes touch.
  const overwritten = Array.from({ length: changes }, (_, i) => i * 7);
  const deleted = Array.from({ length: changes }, (_, i) => i * 7 + 3);
  const touched = [...overwritten, ...deleted];
  const resultsAtBackup = await searchAll(api, SOURCE);
  const touchedAtBackup = await getAll(api, SOURCE, touched);

  // 2. Backup.
  t0 = performance.now();
  const made = await api.call("Backup", { collection: SOURCE, name: BACKUP });
  out.backup_s = seconds(t0);
  const info = made.backup!;
  out.backup_points = Number(info.points);
  out.backup_bytes = Number(info.bytes);
  out.collection_dir_bytes = dirBytes(join(node.data_dir, "collections", SOURCE));
  const listed = await api.call("ListBackups", {});
  out.list_backups = listed.backups.map((b) => `${b.name}:${b.points}:${b.bytes}`);
  log(`backup: ${out.backup_s} s, ${out.backup_bytes} bytes`);

  // 3. Later writes: overwrites and deletes.
  t0 = performance.now();
  for (const id of overwritten) {
    await api.call("Put", { id, vector: row((id + 1) % base.n), collection: SOURCE });
  }
  for (const id of deleted) await api.call("Delete", { id, collection: SOURCE });
  out.later_writes_s = seconds(t0);

  // 4. Restore.
  t0 = performance.now();
  const restored = await api.call("Restore", { backup: BACKUP, collection: RESTORED });
  out.restore_s = seconds(t0);
  out.restored_points = Number(restored.points);
  out.restored_dir_bytes = dirBytes(join(node.data_dir, "collections", RESTORED));
  log(`restore: ${out.restore_s} s, ${out.restored_points} points`);

  // 5. Equality with the state at backup time.
  const stats = await api.call("Stats", {});
  const counts = Object.fromEntries(stats.collections.map((c) => [c.name, Number(c.count)]));
  out.counts = counts;
  const all = Array.from({ length: base.n }, (_, i) => i);
  t0 = performance.now();
  const [src, dst] = [await getAll(api, SOURCE, all), await getAll(api, RESTORED, all)];
  out.get_all_s = seconds(t0);
  const touchedSet = new Set(touched);
  let mismatches = 0;
  for (const id of all) {
    if (!touchedSet.has(id) && !same(src[id], dst[id])) mismatches++;
  }
  for (let i = 0; i < touched.length; i++) {
    if (!same(dst[touched[i]], touchedAtBackup[i])) mismatches++;
  }
  out.ids_compared = base.n;
  out.id_mismatches = mismatches;
  out.later_writes_absent_from_restore = deleted.every((id) => dst[id] !== null) &&
    overwritten.every((id) => !same(dst[id], src[id]));
  const resultsRestored = await searchAll(api, RESTORED);
  out.search_results_equal = same(resultsRestored, resultsAtBackup);
  out.search_results_source_now_differs = !same(await searchAll(api, SOURCE), resultsAtBackup);
  api.close();
  ok = counts[RESTORED] === base.n && out.restored_points === base.n && mismatches === 0 &&
    out.later_writes_absent_from_restore === true && out.search_results_equal === true;
  out.node_log = node.tail(4);
} catch (e) {
  out.error = (e as Error).message;
  out.node_log = node.tail(20);
} finally {
  await node.close();
}
out.loadavg_end = loadavg();
out.ok = ok;
if (values.json) console.log(JSON.stringify(out));
else {
  for (const [k, v] of Object.entries(out)) {
    console.log(`${k.padEnd(34)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
}
Deno.exit(ok ? 0 : 1);
