/**
 * A full disk (ENOSPC) or an exhausted quota (EDQUOT): the one error class every layer raises
 * for it, so the node answers RESOURCE_EXHAUSTED naming its data directory instead of INTERNAL.
 *
 * A full disk is a condition that passes: whoever raises {@link DiskFullError} must have left
 * its files in a state that takes the next write once space is freed, without a restart (the
 * WAL truncates a torn tail back to its last durable offset, see wal.ts; a snapshot removes its
 * temporary file and is retried later, see node_store.ts).
 *
 * @example
 * ```ts
 * import { DiskFullError, diskFullCode } from "./disk_full.ts";
 * const e = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
 * if (diskFullCode(e) !== null) {
 *   throw new DiskFullError("/data/node-1", "/data/node-1/collections/c/wal", e, "write refused");
 * }
 * ```
 * @module
 */

/** The errno codes that mean "no space": out of blocks or inodes, or over the user's quota. */
export type DiskFullCode = "ENOSPC" | "EDQUOT";

/**
 * The disk-full errno code of `error` (or of an error in its `cause` chain, at most 8 deep),
 * or null when it is something else.
 */
export function diskFullCode(error: unknown): DiskFullCode | null {
  let e: unknown = error;
  for (let depth = 0; depth < 8 && e !== null && typeof e === "object"; depth++) {
    if (e instanceof DiskFullError) return e.code;
    const code = (e as { code?: unknown }).code;
    if (code === "ENOSPC" || code === "EDQUOT") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

/** Consequence named by a WAL append refused for lack of space. */
export const WRITE_REFUSED = "write refused, nothing applied; writes resume once space is freed";

/**
 * The disk (or the quota) holding `data_dir` is full. `path` is the file or directory the
 * failed operation touched; `consequence` says what it means for the caller's request.
 */
export class DiskFullError extends Error {
  readonly code: DiskFullCode;

  constructor(
    readonly data_dir: string,
    readonly path: string,
    cause: unknown,
    readonly consequence: string = WRITE_REFUSED,
  ) {
    const code = diskFullCode(cause) ?? "ENOSPC";
    const reason = code === "EDQUOT" ? "Disk quota exceeded" : "No space left on device";
    super(
      `${reason} in data directory ${data_dir}: ${consequence}` +
        (path === "" ? "" : ` (${code} at ${path})`),
      { cause },
    );
    this.name = "DiskFullError";
    this.code = code;
  }
}

/** A Node-style errno error (`code`, `syscall`, `path`), e.g. to simulate ENOSPC in tests. */
export function errnoError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const text: Record<string, string> = {
    ENOSPC: "no space left on device",
    EDQUOT: "disk quota exceeded",
    EIO: "i/o error",
  };
  const e: NodeJS.ErrnoException = new Error(
    `${code}: ${text[code] ?? "error"}, ${syscall} '${path}'`,
  );
  e.code = code;
  e.syscall = syscall;
  e.path = path;
  return e;
}
