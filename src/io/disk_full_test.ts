import assert from "node:assert/strict";
import { diskFullCode, DiskFullError, errnoError } from "./disk_full.ts";

Deno.test("diskFullCode finds ENOSPC and EDQUOT, also in a cause chain, and nothing else", () => {
  assert.equal(diskFullCode(errnoError("ENOSPC", "write", "/d/f")), "ENOSPC");
  assert.equal(diskFullCode(errnoError("EDQUOT", "write", "/d/f")), "EDQUOT");
  assert.equal(diskFullCode(errnoError("EIO", "write", "/d/f")), null);
  assert.equal(
    diskFullCode(new Error("x", { cause: errnoError("EDQUOT", "fsync", "/d") })),
    "EDQUOT",
  );
  assert.equal(diskFullCode("ENOSPC"), null);
  assert.equal(diskFullCode(null), null);
});

Deno.test("DiskFullError names the data directory, the consequence and the file", () => {
  const e = new DiskFullError(
    "/x/y",
    "/x/y/collections/c/wal/wal-1.log",
    errnoError("ENOSPC", "write", "/x/y"),
  );
  assert.equal(e.name, "DiskFullError");
  assert.equal(e.code, "ENOSPC");
  assert.equal(
    e.message,
    "No space left on device in data directory /x/y: write refused, nothing applied; writes " +
      "resume once space is freed (ENOSPC at /x/y/collections/c/wal/wal-1.log)",
  );
  assert.equal(diskFullCode(e), "ENOSPC");
  const q = new DiskFullError(
    "/q",
    "",
    errnoError("EDQUOT", "write", "/q"),
    "snapshot not written",
  );
  assert.equal(q.message, "Disk quota exceeded in data directory /q: snapshot not written");
});
