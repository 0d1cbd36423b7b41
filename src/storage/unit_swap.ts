/**
 * Replacing one shard unit's directory by another, crash-safely: how a shard replica that
 * arrived as a file (a snapshot image streamed from another node, src/node/shard_transfer.ts)
 * takes the place of the unit a node held for that shard (`ShardedCollection.installUnit`).
 *
 * | path (under `collections/<name>/shards/`) | what                                         |
 * |-------------------------------------------|----------------------------------------------|
 * | `<k>/`                                    | the unit of shard k in use                   |
 * | `<k>_new-<id>/`                           | a unit being received (image, then its log)  |
 * | `<k>.old/`                                | the replaced unit, during the swap only      |
 *
 * The swap is two renames: `<k>` → `<k>.old`, then `<k>_new-<id>` → `<k>` (the parent directory
 * fsynced after each), then `<k>.old` is removed. A crash at any point leaves either the old unit
 * or the new one whole, never a mix; {@link recoverUnitSwap} (run when the collection opens)
 * decides which: with `<k>` missing and `<k>.old` present the crash fell between the renames and
 * the old unit is put back; with both present the new unit was committed and `<k>.old` is
 * removed; every `<k>_new-*` left over is an install that never committed and is removed.
 *
 * @module
 */
import { existsSync, readdirSync, renameSync, rmSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fsyncDir } from "../io/fs_util.ts";

/** Suffix (before the install id) of a unit directory being received. */
export const STAGED_SUFFIX = "_new-";
/** Suffix of the replaced unit's directory during a swap. */
export const OLD_SUFFIX = ".old";

/** Where an install with id `id` stages the new unit of the unit at `unit`. */
export function stagedUnitDir(unit: string, id: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new RangeError(`install id "${id}" is not valid`);
  return unit + STAGED_SUFFIX + id;
}

/**
 * Finishes or undoes a swap a crash interrupted at `unit` and removes abandoned staged units
 * (module comment). Returns what it did, one line each, for the log.
 */
export function recoverUnitSwap(unit: string): string[] {
  const done: string[] = [];
  const old = unit + OLD_SUFFIX;
  if (existsSync(old)) {
    if (!existsSync(unit)) {
      renameSync(old, unit);
      done.push(`put back ${unit} from ${old} (a swap was interrupted before its commit)`);
    } else {
      rmSync(old, { recursive: true, force: true });
      done.push(`removed ${old} (a swap was interrupted after its commit)`);
    }
  }
  const parent = dirname(unit);
  const prefix = basename(unit) + STAGED_SUFFIX;
  if (existsSync(parent)) {
    for (const name of readdirSync(parent)) {
      if (!name.startsWith(prefix)) continue;
      rmSync(join(parent, name), { recursive: true, force: true });
      done.push(`removed ${join(parent, name)} (an install that never committed)`);
    }
  }
  return done;
}

/** Swaps the unit directory `unit` for `staged` (module comment); both must exist. */
export async function swapUnitDirs(unit: string, staged: string): Promise<void> {
  const parent = dirname(unit);
  const old = unit + OLD_SUFFIX;
  await fsp.rm(old, { recursive: true, force: true });
  await fsp.rename(unit, old);
  await fsyncDir(parent);
  await fsp.rename(staged, unit);
  await fsyncDir(parent);
  await fsp.rm(old, { recursive: true, force: true });
}
