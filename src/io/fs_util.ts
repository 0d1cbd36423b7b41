/**
 * Small durable-IO helpers shared by the WAL, the snapshots and the router's hint log: directory
 * fsync, write loops that never accept a short write, and {@link writeFileAtomic}, the one way a
 * file appears durably (temporary name, fsync, rename, directory fsync).
 *
 * @example
 * ```ts
 * import { writeFileAtomic, writeFully } from "./fs_util.ts";
 * const bytes = new TextEncoder().encode("hello");
 * await writeFileAtomic("/tmp/example.bin", (handle, temp) => writeFully(handle, temp, bytes, 0));
 * ```
 * @module
 */
import * as fs from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fsp from "node:fs/promises";
import { dirname } from "node:path";

/** Thrown when the OS reports a write that made no progress. */
export class ShortWriteError extends Error {
  constructor(readonly path: string, readonly position: number, readonly bytes_wanted: number) {
    super(`Write of ${bytes_wanted} bytes at position ${position} to ${path} made no progress`);
    this.name = "ShortWriteError";
  }
}

/** fsyncs a directory so that creations, renames and deletions in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Synchronous variant of {@link fsyncDir}. */
export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes all of `bytes` at `position`, looping over partial writes. */
export async function writeFully(
  handle: FileHandle,
  path: string,
  bytes: Uint8Array,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(
      bytes,
      done,
      bytes.length - done,
      position + done,
    );
    if (bytesWritten <= 0) throw new ShortWriteError(path, position + done, bytes.length - done);
    done += bytesWritten;
  }
}

/** Synchronous variant of {@link writeFully} on a file descriptor. */
export function writeFullySync(
  fd: number,
  path: string,
  bytes: Uint8Array,
  position: number,
): void {
  let done = 0;
  while (done < bytes.length) {
    const n = fs.writeSync(fd, bytes, done, bytes.length - done, position + done);
    if (n <= 0) throw new ShortWriteError(path, position + done, bytes.length - done);
    done += n;
  }
}

/** Options of {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /**
   * Suffix of the temporary file beside `path` (default `.tmp`); start-up code that recognises
   * leftover temporaries by name depends on it.
   */
  temp_suffix?: string;
  /** Refuse to replace an existing `path` (checked before writing). Default false. */
  exclusive?: boolean;
}

/**
 * Makes `path` appear durably with the content `fill` writes: `fill` writes a temporary file
 * beside it, which is then fsynced, closed, renamed over `path`, and the directory fsynced. A
 * crash at any point leaves either the old file (or none) or the complete new one, plus at most
 * a temporary file. On error the temporary file is removed and the error rethrown.
 */
export async function writeFileAtomic(
  path: string,
  fill: (handle: FileHandle, temp: string) => Promise<void>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  if (options.exclusive === true && fs.existsSync(path)) {
    throw new Error(`${path} already exists; refusing to overwrite it`);
  }
  const temp = `${path}${options.temp_suffix ?? ".tmp"}`;
  const handle = await fsp.open(temp, "w");
  try {
    try {
      await fill(handle, temp);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, path);
  } catch (e) {
    await fsp.rm(temp, { force: true });
    throw e;
  }
  await fsyncDir(dirname(path));
}
