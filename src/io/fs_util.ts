/**
 * Small durable-IO helpers shared by the WAL, the snapshots and the router's hint log: directory
 * fsync, write loops that never accept a short write, and {@link writeFileAtomic}, the one way a
 * file appears durably (temporary name, fsync, rename, directory fsync).
 *
 * Every write, sync and truncate made through this module first asks the IO fault hook
 * ({@link setIoFaultHook}), which is absent outside tests: a test installs one to make the disk
 * fail (ENOSPC, EDQUOT, EIO) at an exact file and operation, optionally after part of a write
 * went through (a torn record).
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

/** Operations the IO fault hook is asked about. */
export type IoOp = "write" | "sync" | "truncate";

/** A simulated failure: `error` is thrown after the first `after_bytes` (default 0) are written. */
export interface IoFault {
  error: Error;
  after_bytes?: number;
}

/** Decides whether an operation on `path` (`bytes`: a write's length, else 0) fails. */
export type IoFaultHook = (op: IoOp, path: string, bytes: number) => IoFault | null;

let faultHook: IoFaultHook | null = null;

/**
 * Installs `hook` (null removes it), consulted before every write, sync and truncate made through
 * this module; returns the hook it replaced. For tests: production code never installs one.
 */
export function setIoFaultHook(hook: IoFaultHook | null): IoFaultHook | null {
  const previous = faultHook;
  faultHook = hook;
  return previous;
}

function faultFor(op: IoOp, path: string, bytes: number): IoFault | null {
  return faultHook === null ? null : faultHook(op, path, bytes);
}

/** Throws the hook's error for a sync or truncate of `path`, if it has one. */
function checkFault(op: "sync" | "truncate", path: string): void {
  const f = faultFor(op, path, 0);
  if (f !== null) throw f.error;
}

/** fsyncs a directory so that creations, renames and deletions in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, "r");
  try {
    checkFault("sync", dir);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs (`data_only`: fdatasyncs) an open file. */
export async function syncFile(
  handle: FileHandle,
  path: string,
  options: { data_only?: boolean } = {},
): Promise<void> {
  checkFault("sync", path);
  if (options.data_only === true) await handle.datasync();
  else await handle.sync();
}

/** Truncates (or extends with zeros) an open file to `size` bytes; durability is the caller's. */
export async function truncateOpen(handle: FileHandle, path: string, size: number): Promise<void> {
  checkFault("truncate", path);
  await handle.truncate(size);
}

/** Synchronous variant of {@link fsyncDir}. */
export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    checkFault("sync", dir);
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
  const fault = faultFor("write", path, bytes.length);
  if (fault !== null) {
    const part = Math.min(fault.after_bytes ?? 0, bytes.length);
    if (part > 0) await writeLoop(handle, path, bytes.subarray(0, part), position);
    throw fault.error;
  }
  await writeLoop(handle, path, bytes, position);
}

async function writeLoop(
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
  const fault = faultFor("write", path, bytes.length);
  if (fault !== null) {
    const part = Math.min(fault.after_bytes ?? 0, bytes.length);
    if (part > 0) writeLoopSync(fd, path, bytes.subarray(0, part), position);
    throw fault.error;
  }
  writeLoopSync(fd, path, bytes, position);
}

function writeLoopSync(fd: number, path: string, bytes: Uint8Array, position: number): void {
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
      await syncFile(handle, temp);
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
