/**
 * The client library (src/client/mod.ts) against a real storage node served with API keys, the
 * cluster secret and TLS (the test CA of tests/fixtures/tls):
 *
 * - every method of `VectorDbClient` (so every RPC of `vectordb.VectorDB`), Drain last;
 * - API keys: none or an unknown key is UNAUTHENTICATED, a read key may search but not create
 *   (PERMISSION_DENIED), and neither is retried;
 * - retries: a loop of searches and upserts runs while a node is restarted (SIGTERM, start on
 *   the same port and data); every call succeeds, some only after retries, and every upserted
 *   point is there afterwards. This part runs under Node (helpers/client_restart_run.ts): a
 *   server restarting under a Deno client's channels can crash Deno (denoland/deno#36788);
 *   under Deno it took the test runner down in most runs;
 * - Node: a program under Node 20 + tsx imports the library by its package name through
 *   package.json's `exports`, and deno.json's `exports` names the same module.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  isServiceError,
  METHOD_NAMES,
  type MethodName,
  parsePayload,
  type RetryEvent,
  VectorDbClient,
} from "../src/client/mod.ts";
import { NodeProcess } from "../harness/node.ts";
import { REPO_ROOT, runProcess } from "../harness/process.ts";
import { scriptCommand, TSX_LOADER } from "../harness/servers.ts";

const TLS = fileURLToPath(new URL("./fixtures/tls/", import.meta.url));
const CA = join(TLS, "ca.pem");
const ADMIN = "admin-key-client-lib-00000000001";
const READ = "read-key-client-lib-000000000002";
const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;

async function securedNode(dir: string): Promise<NodeProcess> {
  const keys = join(dir, "keys");
  const secret = join(dir, "secret");
  await writeFile(keys, `${ADMIN} admin\n${READ} read\n`);
  await writeFile(secret, "ab".repeat(32));
  return await NodeProcess.start({
    args: [
      "--api-keys-file",
      keys,
      "--cluster-secret-file",
      secret,
      "--tls-cert",
      join(TLS, "server.pem"),
      "--tls-key",
      join(TLS, "server.key"),
    ],
  });
}

async function codeOf(p: Promise<unknown>): Promise<{ code: number; attempts?: number }> {
  try {
    await p;
  } catch (e) {
    assert.ok(isServiceError(e), `a gRPC error, got ${e}`);
    return { code: e.code, attempts: (e as { attempts?: number }).attempts };
  }
  return { code: 0 };
}

Deno.test({
  name: "client library: every method, API keys and TLS against a real node, and retries " +
    "through a node restart",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await mkdtemp(join(tmpdir(), "client_library_test_"));
    const node = await securedNode(dir);
    const clients: VectorDbClient[] = [];
    const client = (apiKey?: string, onRetry?: (e: RetryEvent) => void) => {
      const c = new VectorDbClient({
        address: node.address,
        apiKey,
        tlsCa: CA,
        timeoutMs: 5_000,
        // Generous: a restart under Node 20 + tsx on a loaded 2-core machine takes seconds.
        retry: { attempts: 60, baseMs: 50, capMs: 500, totalMs: 60_000 },
        onRetry,
      });
      clients.push(c);
      return c;
    };
    try {
      // ----- API keys -----
      const anonymous = client();
      assert.deepEqual(await codeOf(anonymous.stats()), { code: UNAUTHENTICATED, attempts: 1 });
      const stranger = client("unknown-key-0000000000000000000");
      assert.equal((await codeOf(stranger.listCollections())).code, UNAUTHENTICATED);
      const reader = client(READ);
      assert.deepEqual(await codeOf(reader.createCollection("nope", { dimension: 2 })), {
        code: PERMISSION_DENIED,
        attempts: 1,
      });
      assert.deepEqual(await reader.listCollections(), []);

      // ----- every method -----
      const used = new Set<MethodName>();
      const db = client(ADMIN);
      const created = await db.createCollection("docs", { dimension: 4, metric: "l2" });
      used.add("CreateCollection");
      assert.equal(created.created, true);
      assert.equal(created.collection?.dimension, 4);
      assert.deepEqual((await db.listCollections()).map((c) => c.name), ["docs"]);
      used.add("ListCollections");
      const points = Array.from({ length: 250 }, (_, i) => ({
        id: i,
        vector: new Float32Array([i, i % 7, 1, -i / 10]),
      }));
      const up = await db.upsert("docs", points, { batchSize: 100 });
      used.add("PutBatch");
      assert.equal(up.count, 250);
      assert.deepEqual(up.batches.map((b) => b.count), [100, 100, 50]);
      const put = await db.put("docs", 1000, [5, 5, 5, 5], { version: 7 });
      used.add("Put");
      assert.equal(put.ok, true);
      assert.equal(String(put.version), "7");
      const got = await db.get("docs", 42);
      used.add("Get");
      assert.equal(got.found, true);
      assert.deepEqual(got.vector, [42, 0, 1, -4.199999809265137]);
      const hits = await reader.search("docs", [42, 0, 1, -4.2], { k: 3, ef: 50 });
      used.add("Search");
      assert.equal(hits.results[0].id, 42);
      assert.equal(hits.results.length, 3);
      const del = await db.delete("docs", 42);
      used.add("Delete");
      assert.equal(del.deleted, true);
      const gone = await db.get("docs", 42);
      assert.equal(gone.found, false);
      assert.equal(gone.deleted, true);
      const batch = await reader.searchBatch("docs", [
        { vector: [7, 0, 1, -0.7], k: 2 },
        { vector: [8, 1, 1, -0.8], k: 1 },
      ]);
      used.add("SearchBatch");
      assert.deepEqual(batch.map((r) => r.results[0].id), [7, 8]);
      assert.equal(batch[0].results.length, 2);
      const page = await reader.scroll("docs", { limit: 100 });
      used.add("Scroll");
      assert.equal(page.points.length, 100);
      assert.deepEqual(page.points.slice(0, 3).map((p) => p.id), [0, 1, 2]);
      let scrolled = 0;
      for await (const p of reader.scrollAll("docs", { limit: 64 })) scrolled += p.points.length;
      assert.equal(scrolled, 250, "249 of the batch (42 deleted) + id 1000");
      assert.deepEqual(await reader.count("docs"), { count: 250, partial: false });
      used.add("Count");
      const stats = await reader.stats();
      used.add("Stats");
      assert.equal(stats.collections.find((c) => c.name === "docs")?.count, "250");
      const members = await reader.members();
      used.add("Members");
      assert.ok(members.self_id !== "", "the node names itself");
      await db.createCollection("scratch", { dimension: 2 });
      assert.equal((await db.dropCollection("scratch")).dropped, true);
      used.add("DropCollection");
      const backup = await db.backup("docs", "docs-b1");
      used.add("Backup");
      assert.deepEqual([backup.name, backup.points, backup.collection?.name], [
        "docs-b1",
        "250",
        "docs",
      ]);
      assert.deepEqual((await db.listBackups()).map((b) => b.name), ["docs-b1"]);
      used.add("ListBackups");
      assert.equal((await codeOf(reader.listBackups())).code, PERMISSION_DENIED);
      const restored = await db.restore("docs-b1", "docs-restored");
      used.add("Restore");
      assert.deepEqual([restored.collection?.name, restored.points], ["docs-restored", "250"]);
      assert.deepEqual(
        (await db.get("docs-restored", 43)).vector,
        (await db.get("docs", 43)).vector,
      );
      assert.equal((await db.dropCollection("docs-restored")).dropped, true);
      assert.equal((await db.deleteBackup("docs-b1")).deleted, true);
      used.add("DeleteBackup");
      assert.deepEqual(await db.listBackups(), []);

      // ----- payloads, filters and payload indexes -----
      await db.createCollection("tagged", { dimension: 2, metric: "l2" });
      const tagged = Array.from({ length: 60 }, (_, i) => ({
        id: i,
        vector: [i, 0],
        payload: { tenant: `t${i % 3}`, year: 2000 + i, meta: { lang: i % 2 ? "en" : "de" } },
      }));
      await db.upsert("tagged", tagged);
      const t1 = { must: [{ key: "tenant", match: { value: "t1" } }] };
      const t1_ids = tagged.filter((p) => p.payload.tenant === "t1").map((p) => p.id);
      assert.deepEqual(await reader.count("tagged", { filter: t1 }), { count: 20, partial: false });
      assert.equal(
        (await reader.count("tagged", { filter: '{"must":[{"key":"year","range":{"gte":2050}}]}' }))
          .count,
        10,
      );
      const index = await db.createFieldIndex("tagged", "tenant", "keyword");
      used.add("CreateFieldIndex");
      assert.equal(index.created, true);
      assert.equal((await db.createFieldIndex("tagged", "tenant", "keyword")).created, false);
      assert.deepEqual(
        (await db.listCollections()).find((c) => c.name === "tagged")?.field_indexes,
        [{ field: "tenant", type: "keyword" }],
      );
      const near = await reader.search("tagged", [30, 0], { k: 3, filter: t1, withPayload: true });
      assert.deepEqual(near.results.map((r) => r.id), [31, 28, 34]);
      assert.deepEqual(parsePayload(near.results[0].payload), tagged[31].payload);
      const filtered = await reader.searchBatch("tagged", [
        { vector: [0, 0], k: 1, filter: t1 },
        { vector: [0, 0], k: 1 },
      ]);
      assert.deepEqual(filtered.map((r) => r.results[0].id), [1, 0]);
      const scrolled_ids: number[] = [];
      for await (
        const p of reader.scrollAll("tagged", { limit: 7, filter: t1, withPayload: true })
      ) {
        for (const q of p.points) {
          scrolled_ids.push(q.id as number);
          assert.deepEqual(parsePayload(q.payload), tagged[q.id as number].payload);
        }
      }
      assert.deepEqual(scrolled_ids, t1_ids);
      const records = await reader.getBatch("tagged", [4, 99, 4], {
        withPayload: true,
        withVector: true,
      });
      used.add("GetBatch");
      assert.deepEqual(records.map((r) => [r.id, r.found]), [[4, true], [99, false], [4, true]]);
      assert.deepEqual(parsePayload(records[0].payload), tagged[4].payload);
      assert.deepEqual(records[0].vector, [4, 0]);
      const deleted_batch = await db.deleteBatch("tagged", [0, 1, 2, 999]);
      used.add("DeleteBatch");
      assert.equal(deleted_batch.deleted, 3);
      assert.equal((await reader.count("tagged")).count, 57);
      const by_filter = await db.deleteByFilter("tagged", t1);
      used.add("DeleteByFilter");
      assert.equal(by_filter.deleted, 19, "t1 had 20 points, id 1 was deleted by the batch");
      assert.equal((await reader.count("tagged", { filter: t1 })).count, 0);
      assert.equal((await reader.count("tagged")).count, 38);
      const bad = await codeOf(reader.count("tagged", { filter: { must: [{ key: "year" }] } }));
      assert.equal(bad.code, 3, "INVALID_ARGUMENT");
      assert.equal((await db.dropFieldIndex("tagged", "tenant")).dropped, true);
      used.add("DropFieldIndex");
      assert.deepEqual(
        (await db.listCollections()).find((c) => c.name === "tagged")?.field_indexes ?? [],
        [],
      );
      assert.equal((await db.dropCollection("tagged")).dropped, true);

      // ----- retries through a restart: under Node (see helpers/client_restart_run.ts) -----
      const [command, ...args] = scriptCommand("tests/helpers/client_restart_run.ts", []);
      const run = await runProcess(command, args, { cwd: REPO_ROOT });
      assert.equal(run.code, 0, `the restart driver failed:\n${run.stderr}`);
      const summary = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
      assert.ok(summary.unavailable_retries > 0 && summary.points > 0, run.stdout);
      console.log(
        `client library: ${summary.calls} calls across a restart, ${summary.retries} retries, ` +
          `${summary.points} points, all present`,
      );

      // ----- Node: the package's exports, under tsx -----
      const consumer = join(dir, "consumer");
      await Deno.mkdir(join(consumer, "node_modules"), { recursive: true });
      await symlink(REPO_ROOT, join(consumer, "node_modules", "vectordb"));
      await writeFile(
        join(consumer, "main.mjs"),
        [
          `import { VectorDbClient, METHOD_NAMES } from "vectordb";`,
          `const db = new VectorDbClient({ address: process.argv[2], apiKey: process.argv[3],`,
          `  tlsCa: process.argv[4] });`,
          `const s = await db.search("docs", [1, 2, 3, 4], { k: 2 });`,
          `console.log(JSON.stringify({ n: s.results.length, methods: METHOD_NAMES.length }));`,
          `db.close();`,
        ].join("\n"),
      );
      const r = await runProcess(
        "node",
        ["--import", join(REPO_ROOT, TSX_LOADER), "main.mjs", node.address, READ, CA],
        { cwd: consumer },
      );
      assert.equal(r.code, 0, `node consumer failed:\n${r.stderr}`);
      assert.deepEqual(JSON.parse(r.stdout.trim()), { n: 2, methods: METHOD_NAMES.length });
      const deno_json = JSON.parse(readFileSync(join(REPO_ROOT, "deno.json"), "utf8"));
      const package_json = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8"));
      assert.equal(deno_json.exports["."], "./src/client/mod.ts");
      assert.equal(package_json.exports["."], "./src/client/mod.ts");

      // ----- Drain: done by the Node driver above, last, on its own node (a node exiting under
      // open Deno client channels can crash Deno, denoland/deno#36788) -----
      assert.equal(summary.drained, true, "the driver's Drain started and its node exited 0");
      used.add("Drain");
      assert.deepEqual([...used].sort(), [...METHOD_NAMES].sort());
      for (const c of clients) c.close();
    } finally {
      for (const c of clients) c.close();
      await node.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
});
