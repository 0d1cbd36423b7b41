import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { DirLockedError, NodeStore } from "./node_store.ts";
import { LOCK_FILE } from "../io/dir_lock.ts";

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "vdb-store-"));
}

Deno.test("node store: the data directory is locked while open", async () => {
  const dir = tempDir();
  try {
    const store = await NodeStore.open(dir, { logger: () => {} });
    await assert.rejects(
      () => NodeStore.open(dir, { logger: () => {} }),
      (e: unknown) =>
        e instanceof DirLockedError && e.holder.pid === process.pid &&
        e.message.includes(`locked by process ${process.pid}`),
    );
    await store.close();
    assert.ok(!existsSync(join(dir, LOCK_FILE)), "close releases the lock");
    const again = await NodeStore.open(dir, { logger: () => {} });
    await again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
