import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { BinaryReader, BinaryWriter } from "./binary.ts";
import { FileSink, FileSinkLimitError } from "./file_sink.ts";

Deno.test("FileSink streams a BinaryWriter to a file at an offset, within its limit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "f");
    const fd = fs.openSync(path, "w+");
    const sink = new FileSink(fd, path, { position: 3, bytes_max: 5000 });
    const w = new BinaryWriter(sink, { buffer_bytes: 64 });
    const values = new Float32Array(1000).map((_, i) => i / 3);
    w.f32Array(values);
    w.flush();
    assert.equal(sink.bytes_written, 4004);
    assert.equal(sink.position, 4007);
    assert.throws(() => sink.write(new Uint8Array(997)), FileSinkLimitError);
    fs.closeSync(fd);
    const bytes = new Uint8Array(fs.readFileSync(path));
    assert.equal(bytes.length, 4007);
    assert.deepEqual(new BinaryReader(bytes.subarray(3)).f32Array(), values);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
