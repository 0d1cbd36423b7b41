import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { recoverUnitSwap, stagedUnitDir, swapUnitDirs } from "./unit_swap.ts";

function unitWith(dir: string, text: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "mark"), text);
}

const mark = (dir: string) => readFileSync(join(dir, "mark"), "utf8");

Deno.test("swapUnitDirs replaces the unit with the staged one and leaves nothing else", async () => {
  const root = await Deno.makeTempDir({ prefix: "unit_swap_" });
  try {
    const unit = join(root, "1");
    unitWith(unit, "old");
    const staged = stagedUnitDir(unit, "abc");
    unitWith(staged, "new");
    await swapUnitDirs(unit, staged);
    assert.equal(mark(unit), "new");
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["1"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("recoverUnitSwap keeps the old unit or the new one whole after a crash", async () => {
  const root = await Deno.makeTempDir({ prefix: "unit_swap_" });
  try {
    const unit = join(root, "1");
    // Crash between the renames: the old unit is put back, the staged one removed.
    unitWith(unit + ".old", "old");
    unitWith(stagedUnitDir(unit, "x1"), "new");
    unitWith(join(root, "11"), "other shard"); // not touched: another unit
    unitWith(stagedUnitDir(join(root, "11"), "x2"), "other install");
    const lines = recoverUnitSwap(unit);
    assert.equal(mark(unit), "old");
    assert.equal(existsSync(unit + ".old"), false);
    assert.equal(existsSync(stagedUnitDir(unit, "x1")), false);
    assert.equal(lines.length, 2);
    assert.match(lines[0], /put back/);
    assert.equal(existsSync(stagedUnitDir(join(root, "11"), "x2")), true);
    // Crash after the commit: the new unit stays, the old is removed.
    unitWith(unit + ".old", "older");
    recoverUnitSwap(unit);
    assert.equal(mark(unit), "old");
    assert.equal(existsSync(unit + ".old"), false);
    // Nothing to do.
    assert.deepEqual(recoverUnitSwap(unit), []);
    assert.throws(() => stagedUnitDir(unit, "../x"), /install id "..\/x" is not valid/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
