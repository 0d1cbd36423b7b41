import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { errnoError } from "./disk_full.ts";
import {
  fsyncDir,
  fsyncDirSync,
  setIoFaultHook,
  syncFile,
  truncateOpen,
  writeFully,
  writeFullySync,
} from "./fs_util.ts";

Deno.test("writeFully and writeFullySync write at the given positions", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "f");
    const handle = await fsp.open(path, "w+");
    await writeFully(handle, path, new Uint8Array([1, 2, 3]), 0);
    await writeFully(handle, path, new Uint8Array([9]), 5);
    await handle.close();
    const fd = fs.openSync(path, "r+");
    writeFullySync(fd, path, new Uint8Array([7, 7]), 3);
    fs.closeSync(fd);
    assert.deepEqual(new Uint8Array(fs.readFileSync(path)), new Uint8Array([1, 2, 3, 7, 7, 9]));
    await fsyncDir(dir);
    fsyncDirSync(dir);
    await assert.rejects(() => fsyncDir(join(dir, "missing")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the IO fault hook fails writes (torn after some bytes), syncs and truncates", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "f");
    const handle = await fsp.open(path, "w+");
    const seen: string[] = [];
    const previous = setIoFaultHook((op, p, bytes) => {
      seen.push(`${op}:${bytes}`);
      return p === path ? { error: errnoError("ENOSPC", op, p), after_bytes: 2 } : null;
    });
    assert.equal(previous, null);
    try {
      await assert.rejects(() => writeFully(handle, path, new Uint8Array([1, 2, 3]), 0), /ENOSPC/);
      assert.throws(() => writeFullySync(handle.fd, path, new Uint8Array([4, 5, 6]), 2), /ENOSPC/);
      await assert.rejects(() => syncFile(handle, path), /ENOSPC/);
      await assert.rejects(() => truncateOpen(handle, path, 0), /ENOSPC/);
      await fsyncDir(dir); // another path: the hook lets it through
    } finally {
      setIoFaultHook(null);
    }
    assert.deepEqual(seen, ["write:3", "write:3", "sync:0", "truncate:0", "sync:0"]);
    // Two bytes of each write went through before the error.
    assert.deepEqual(new Uint8Array(fs.readFileSync(path)), new Uint8Array([1, 2, 4, 5]));
    await truncateOpen(handle, path, 1);
    await syncFile(handle, path, { data_only: true });
    await handle.close();
    assert.equal(fs.statSync(path).size, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
