import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { fsyncDir, fsyncDirSync, writeFully, writeFullySync } from "./fs_util.ts";

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
