/**
 * The client library's retries through a node restart, run under Node by
 * `tests/client_library_test.ts` (like the crash test's driver, `server_crash_run.ts`): Deno
 * 2.9.6's `node:http2` can crash the *client* process (nghttp2 abort or SIGSEGV) when a server
 * restarts under channels with calls in flight (denoland/deno#36788, docs/RUNTIME.md), which
 * took the whole test runner down in most runs of this scenario under Deno.
 *
 * Starts a node with API keys, the cluster secret and TLS; two loops upsert and search through
 * one `VectorDbClient` with retries while the node is restarted (SIGTERM, start on the same port
 * and data); every call must succeed, some after retries on UNAVAILABLE, and every upserted point
 * must be there afterwards. Then Drain: the node exits 0. Prints one JSON line with the counts;
 * exits non-zero on a failure.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type RetryEvent, VectorDbClient } from "../../src/client/mod.ts";
import { NodeProcess } from "../../harness/node.ts";

const TLS = fileURLToPath(new URL("../fixtures/tls/", import.meta.url));
const CA = join(TLS, "ca.pem");
const ADMIN = "admin-key-client-restart-0000001";

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "client_restart_run_"));
  await writeFile(join(dir, "keys"), `${ADMIN} admin\n`);
  await writeFile(join(dir, "secret"), "cd".repeat(32));
  const node = await NodeProcess.start({
    args: [
      "--api-keys-file",
      join(dir, "keys"),
      "--cluster-secret-file",
      join(dir, "secret"),
      "--tls-cert",
      join(TLS, "server.pem"),
      "--tls-key",
      join(TLS, "server.key"),
    ],
  });
  const retries: RetryEvent[] = [];
  const db = new VectorDbClient({
    address: node.address,
    apiKey: ADMIN,
    tlsCa: CA,
    timeoutMs: 5_000,
    // Generous: a restart under Node 20 + tsx on a loaded 2-core machine takes seconds.
    retry: { attempts: 60, baseMs: 50, capMs: 500, totalMs: 60_000 },
    onRetry: (e) => retries.push(e),
  });
  try {
    await db.createCollection("docs", { dimension: 4 });
    let stop = false;
    let calls = 0;
    let next_id = 10_000;
    const written: number[] = [];
    const loop = async () => {
      while (!stop) {
        const id = next_id++;
        const r = await db.upsert("docs", [{ id, vector: [id, 1, 2, 3] }]);
        assert.equal(r.count, 1);
        written.push(id);
        const s = await db.search("docs", [1, 2, 3, 4], { k: 1 });
        assert.equal(s.results.length, 1);
        calls += 2;
      }
    };
    const loops = [loop(), loop()];
    while (calls < 10) await new Promise((r) => setTimeout(r, 20));
    const before = calls;
    await node.restart();
    const restarted_at = calls;
    while (calls < restarted_at + 10) await new Promise((r) => setTimeout(r, 20));
    stop = true;
    await Promise.all(loops);
    assert.ok(before >= 10 && calls > restarted_at, `calls ${before} -> ${calls}`);
    assert.equal(node.starts, 2, "the node was restarted");
    assert.ok(
      retries.some((r) => r.code === 14),
      "some calls were retried on UNAVAILABLE while the node was down",
    );
    for (const id of written) {
      assert.equal((await db.get("docs", id)).found, true, `point ${id} written in the loop`);
    }
    // Drain, last: the node leaves the cluster (of one) and exits 0.
    const drained = await db.drain();
    assert.equal(drained.started, true);
    db.close();
    const exit = await node.done;
    assert.equal(exit.code, 0, "a drained node exits 0");
    console.log(JSON.stringify({
      calls,
      retries: retries.length,
      unavailable_retries: retries.filter((r) => r.code === 14).length,
      points: written.length,
      drained: true,
    }));
  } finally {
    db.close();
    await node.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`client_restart_run: ${(e as Error)?.stack ?? e}`);
  process.exit(1);
});
