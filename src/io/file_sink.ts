/**
 * A {@link ByteSink} that writes each chunk straight to a file descriptor with synchronous
 * positional writes, so a {@link BinaryWriter} can stream a large payload to disk without holding
 * it in memory. Durability (fsync, rename) is the caller's job.
 * @module
 */
import type { ByteSink } from "./binary.ts";
import { writeFullySync } from "./fs_util.ts";

/** Thrown when a file sink would grow past its limit. */
export class FileSinkLimitError extends Error {
  constructor(readonly path: string, readonly bytes_wanted: number, readonly bytes_max: number) {
    super(`File ${path} would grow to ${bytes_wanted} bytes, over its limit of ${bytes_max} bytes`);
    this.name = "FileSinkLimitError";
  }
}

export class FileSink implements ByteSink {
  readonly fd: number;
  readonly path: string;
  readonly bytes_max: number;
  #position: number;
  #written = 0;

  /** Writes start at `position` (default 0); at most `bytes_max` bytes may be written. */
  constructor(
    fd: number,
    path: string,
    options: { position?: number; bytes_max?: number } = {},
  ) {
    this.fd = fd;
    this.path = path;
    this.#position = options.position ?? 0;
    this.bytes_max = options.bytes_max ?? Number.MAX_SAFE_INTEGER;
  }

  write(chunk: Uint8Array): void {
    const want = this.#written + chunk.length;
    if (want > this.bytes_max) throw new FileSinkLimitError(this.path, want, this.bytes_max);
    writeFullySync(this.fd, this.path, chunk, this.#position);
    this.#position += chunk.length;
    this.#written = want;
  }

  /** Bytes written through this sink. */
  get bytes_written(): number {
    return this.#written;
  }

  /** File position the next chunk goes to. */
  get position(): number {
    return this.#position;
  }
}
