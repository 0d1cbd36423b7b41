/**
 * One process per data directory, with real processes: a second storage node (or router) started
 * on a directory in use exits non-zero naming the holder's pid while the first keeps serving; a
 * node killed with SIGKILL leaves a stale lock that the next start takes over; a clean stop
 * releases the lock.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "../src/api/client.ts";
import { LOCK_FILE } from "../src/io/dir_lock.ts";
import { NodeProcess } from "../harness/node.ts";
import { StartError } from "../harness/process.ts";
import { ROUTER_ENTRY, routerFlags, spawnServer } from "../harness/servers.ts";
import { freePort } from "../harness/ports.ts";

/** Starts `node` expecting it to fail; returns the StartError. */
async function failedStart(start: () => Promise<void>): Promise<StartError> {
  try {
    await start();
  } catch (e) {
    if (e instanceof StartError) return e;
    throw e;
  }
  throw new Error("The second process started on a locked data directory");
}

Deno.test("data dir lock: a second node on one --data-dir exits naming the holder", async () => {
  const first = await NodeProcess.start();
  const second = await NodeProcess.prepare({ data_dir: first.data_dir });
  const api = new ApiClient(first.address);
  try {
    await api.call("Put", { id: 1, vector: [0.1, 0.2, 0.3] });
    const e = await failedStart(() => second.start());
    assert.ok(e.status !== null && e.status.code !== 0, `exit status ${JSON.stringify(e.status)}`);
    assert.match(
      e.stderr,
      new RegExp(`Data directory .* is locked by process ${first.pid} \\(started .*\\); stop it`),
    );
    // The first node keeps serving, and its data is whole.
    await api.call("Put", { id: 2, vector: [0.3, 0.2, 0.1] });
    const got = await api.call("Get", { id: 1 });
    assert.equal(got.found, true);
    assert.ok(first.running);

    // SIGKILL leaves the lock behind; the next start takes it over and says so.
    await first.kill();
    assert.ok(existsSync(join(first.data_dir, LOCK_FILE)));
    await second.start();
    assert.match(second.stderr, new RegExp(`stale lock of process ${first.pid}`));
    const again = new ApiClient(second.address);
    try {
      assert.equal((await again.call("Get", { id: 2 })).found, true);
    } finally {
      again.close();
    }
    // A clean stop releases it.
    await second.stop();
    assert.ok(!existsSync(join(first.data_dir, LOCK_FILE)));
  } finally {
    api.close();
    await second.close();
    await first.close();
  }
});

Deno.test("data dir lock: a second router on one --data-dir exits naming the holder", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vectordb_router_lock_"));
  const nodes = [`127.0.0.1:${await freePort()}`]; // never started: the router need not reach it
  const start = async () =>
    spawnServer({
      name: "router",
      entry: ROUTER_ENTRY,
      flags: routerFlags({ port: await freePort(), nodes, data_dir: dir }),
    });
  const first = await start();
  try {
    await first.ready;
    const second = await start();
    const e = await failedStart(() => second.ready.then(() => {}));
    assert.ok(e.status !== null && e.status.code !== 0, `exit status ${JSON.stringify(e.status)}`);
    assert.match(e.stderr, new RegExp(`locked by process ${first.pid} `));
    assert.ok(!first.exited, "the first router keeps running");
    first.signal("SIGTERM");
    assert.equal((await first.done).code, 0);
    assert.ok(!existsSync(join(dir, LOCK_FILE)), "a clean stop releases the lock");
  } finally {
    if (!first.exited) await first.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
