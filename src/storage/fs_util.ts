/**
 * Small durable-IO helpers shared by the WAL and snapshot code: directory fsync and write loops
 * that never accept a short write.
 * @module
 */
import * as fs from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fsp from "node:fs/promises";

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
