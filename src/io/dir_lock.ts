/**
 * An exclusive lock on a data directory, held for a process's lifetime: a `LOCK` file naming
 * the holder. Node has no `flock`, so the lock is a file that appears atomically with its whole
 * content (written to a temporary name, fsynced, hard-linked to `LOCK`, which fails when `LOCK`
 * exists) and is removed by {@link DirLock.release}. A process that finds `LOCK` checks whether
 * the holder still runs; a live holder stops it with {@link DirLockedError}, a dead one's lock is
 * taken over (logged).
 *
 * Lock file (`<dir>/LOCK`, UTF-8 text, one `key value` line each, in this order):
 *
 * | line         | example                     | meaning                                      |
 * |--------------|-----------------------------|----------------------------------------------|
 * | magic        | `vectordb-dir-lock 1`       | magic and format version (1)                 |
 * | `pid`        | `pid 1234`                  | the holder's process id                      |
 * | `host`       | `host db-3`                 | `os.hostname()` of the holder                |
 * | `started_ms` | `started_ms 1718000000000`  | wall clock (ms since the epoch) at locking   |
 * | `boot_id`    | `boot_id 973da84e-…`        | Linux `/proc/sys/kernel/random/boot_id`, `-` |
 * | `proc_start` | `proc_start 276779`         | holder's start, clock ticks since boot       |
 * |              |                             | (`/proc/<pid>/stat` field 22), or `-`        |
 * | `token`      | `token 9f…` (32 hex digits) | random; tells this holder's file from others |
 * | `crc32`      | `crc32 1a2b3c4d`            | CRC-32 (8 hex) of every byte before the line |
 *
 * Is the holder alive? On another host: assumed so (it cannot be checked). On this host:
 * `process.kill(pid, 0)`: ESRCH means dead; EPERM or success means a process with that pid
 * exists. On Linux it must also be the same process: a zombie, another `boot_id` (the machine
 * rebooted) or another `proc_start` (the pid was reused) means the holder is gone. A lock with
 * this process's own pid is alive when this process holds it (a second open in one process) and
 * stale otherwise (an earlier process with the same pid, as in a restarted container).
 *
 * Limits: without `/proc` (not Linux) a pid reused by an unrelated process makes a stale lock
 * look held: the start is refused and the operator removes `LOCK`, never the other way round.
 * Taking over a stale lock replaces it by renaming a fresh one over it, waits
 * {@link DirLockOptions.settle_ms}, and re-reads it to confirm the token; two processes that take
 * over the same stale lock at the same moment both end with one holder unless one of them
 * stalls longer than that between its check and its rename. The lock is advisory: it stops our
 * own processes, not others writing into the directory.
 *
 * @module
 */
import * as fs from "node:fs";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { crc32 } from "./crc32.ts";
import { fsyncDirSync, writeFullySync } from "./fs_util.ts";

/** Name of the lock file inside the locked directory. */
export const LOCK_FILE = "LOCK";
/** First line of a lock file: magic and format version. */
export const LOCK_MAGIC = "vectordb-dir-lock 1";
/** Default wait after taking over a stale lock before confirming it (see the module comment). */
export const TAKEOVER_SETTLE_MS = 100;
/** Attempts to take the lock before giving up (each one follows a change of `LOCK`). */
const ATTEMPTS_MAX = 5;
/** Largest lock file read; anything longer is not ours. */
const LOCK_BYTES_MAX = 4096;

/** Tokens of the locks this process holds. */
const HELD_HERE = new Set<string>();

/** Who holds (or held) a lock: the content of a lock file. */
export interface LockHolder {
  pid: number;
  host: string;
  started_ms: number;
  /** Linux boot id, or "-" where unknown. */
  boot_id: string;
  /** Start time of the process in clock ticks since boot, or "-" where unknown. */
  proc_start: string;
  token: string;
}

/** The directory is locked by a process that is (or may be) alive. */
export class DirLockedError extends Error {
  constructor(readonly dir: string, readonly holder: LockHolder, readonly flag: string) {
    const here = holder.host === hostname() ? "" : ` on host ${holder.host}`;
    super(
      `Data directory ${dir} is locked by process ${holder.pid}${here} (started ` +
        `${new Date(holder.started_ms).toISOString()}); stop it first or choose another ${flag}` +
        (here === ""
          ? ""
          : ` (if no process on ${holder.host} uses it, remove ${join(dir, LOCK_FILE)})`),
    );
    this.name = "DirLockedError";
  }
}

/** `LOCK` exists but is not a lock file this module wrote (damaged, or someone else's). */
export class LockFileError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(
      `Lock file ${path} is unreadable (${reason}); if no process uses the directory, remove it`,
    );
    this.name = "LockFileError";
  }
}

/** How a process is looked at; replaceable in tests. */
export interface ProcessProbe {
  /** `process.kill(pid, 0)`: throws with `code` ESRCH or EPERM, or returns. */
  signal0(pid: number): void;
  /** The content of `/proc/<pid>/stat` (`self` for this process), or null where unreadable. */
  procStat(pid: number | "self"): string | null;
  /** The Linux boot id, or null. */
  bootId(): string | null;
}

/** The real probe: `process.kill` and `/proc`. */
export const SYSTEM_PROBE: ProcessProbe = {
  signal0: (pid) => void process.kill(pid, 0),
  procStat: (pid) => readOrNull(`/proc/${pid}/stat`),
  bootId: () => readOrNull("/proc/sys/kernel/random/boot_id")?.trim() || null,
};

export interface DirLockOptions {
  /** Receives what happened (a stale lock taken over, a lock no longer ours at release). */
  logger?: (message: string) => void;
  /** The command-line flag that chooses the directory, for the error message. */
  flag?: string;
  /** Wait after taking over a stale lock, before confirming it. Default 100 ms. */
  settle_ms?: number;
  /** How processes are looked at. Default {@link SYSTEM_PROBE}. */
  probe?: ProcessProbe;
}

function readOrNull(path: string): string | null {
  try {
    return fs.readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** Field 22 (`starttime`) and field 3 (`state`) of a `/proc/<pid>/stat` line. */
export function parseProcStat(stat: string): { state: string; start: string } | null {
  // Field 2 is the command in parentheses and may itself hold spaces and parentheses.
  const close = stat.lastIndexOf(")");
  if (close < 0) return null;
  const rest = stat.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3; field 22 is rest[19].
  if (rest.length < 20 || !/^\d+$/.test(rest[19])) return null;
  return { state: rest[0], start: rest[19] };
}

/** The text of a lock file for `holder` (see the module comment). */
export function formatLock(holder: LockHolder): string {
  const body = `${LOCK_MAGIC}\npid ${holder.pid}\nhost ${holder.host}\n` +
    `started_ms ${holder.started_ms}\nboot_id ${holder.boot_id}\n` +
    `proc_start ${holder.proc_start}\ntoken ${holder.token}\n`;
  const sum = crc32(new TextEncoder().encode(body)).toString(16).padStart(8, "0");
  return `${body}crc32 ${sum}\n`;
}

/** Parses a lock file; throws {@link LockFileError} naming `path` when it is not one. */
export function parseLock(path: string, text: string): LockHolder {
  const fail = (reason: string): never => {
    throw new LockFileError(path, reason);
  };
  const at = text.lastIndexOf("crc32 ");
  if (!text.startsWith(`${LOCK_MAGIC}\n`)) fail(`it does not start with "${LOCK_MAGIC}"`);
  if (at < 0) fail("it has no crc32 line");
  const body = text.slice(0, at);
  const want = text.slice(at + 6).trim();
  const got = crc32(new TextEncoder().encode(body)).toString(16).padStart(8, "0");
  if (want !== got) fail(`checksum ${JSON.stringify(want)} does not match ${got}`);
  const fields = new Map<string, string>();
  for (const line of body.split("\n").slice(1)) {
    if (line === "") continue;
    const space = line.indexOf(" ");
    if (space <= 0) fail(`line ${JSON.stringify(line)} is not "key value"`);
    fields.set(line.slice(0, space), line.slice(space + 1));
  }
  const field = (key: string): string => fields.get(key) ?? fail(`it has no ${key} line`);
  const pid = Number(field("pid"));
  const started_ms = Number(field("started_ms"));
  if (!Number.isSafeInteger(pid) || pid <= 0) fail(`pid ${JSON.stringify(field("pid"))}`);
  if (!Number.isSafeInteger(started_ms)) fail(`started_ms ${JSON.stringify(field("started_ms"))}`);
  return {
    pid,
    host: field("host"),
    started_ms,
    boot_id: field("boot_id"),
    proc_start: field("proc_start"),
    token: field("token"),
  };
}

/**
 * Whether the holder of a lock is gone, and why (null: it is, or may be, alive). See the module
 * comment for the rules.
 */
export function whyStale(holder: LockHolder, probe: ProcessProbe = SYSTEM_PROBE): string | null {
  if (holder.host !== hostname()) return null;
  if (holder.pid === process.pid) {
    // This process holds it, or an earlier process with the same pid left it (a container's
    // process often has the same small pid at every start).
    return HELD_HERE.has(holder.token) ? null : "left by an earlier process with this same pid";
  }
  try {
    probe.signal0(holder.pid);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ESRCH") return "no such process";
    if (code !== "EPERM") throw e;
    // EPERM: a process with that pid exists (another user's); fall through to /proc.
  }
  const boot = probe.bootId();
  if (holder.boot_id !== "-" && boot !== null && boot !== holder.boot_id) {
    return `the machine rebooted since (boot id ${holder.boot_id}, now ${boot})`;
  }
  const stat = probe.procStat(holder.pid);
  const parsed = stat === null ? null : parseProcStat(stat);
  if (parsed === null) return null;
  if (parsed.state === "Z" || parsed.state === "X") return "the process has exited";
  if (holder.proc_start !== "-" && parsed.start !== holder.proc_start) {
    return `pid ${holder.pid} now belongs to another process (started at tick ` +
      `${parsed.start}, not ${holder.proc_start})`;
  }
  return null;
}

/** A held lock. Create with {@link acquireDirLock}. */
export class DirLock {
  #released = false;
  private constructor(
    readonly dir: string,
    readonly path: string,
    readonly holder: LockHolder,
    private readonly log: (message: string) => void,
  ) {}

  /** @internal */
  static create(
    dir: string,
    path: string,
    holder: LockHolder,
    log: (message: string) => void,
  ): DirLock {
    HELD_HERE.add(holder.token);
    return new DirLock(dir, path, holder, log);
  }

  /** Whether `LOCK` still holds this lock's token (false after release). */
  held(): boolean {
    if (this.#released) return false;
    const text = readOrNull(this.path);
    if (text === null) return false;
    try {
      return parseLock(this.path, text).token === this.holder.token;
    } catch {
      return false;
    }
  }

  /**
   * Removes `LOCK` when it is still this lock's (durably: the directory is fsynced). Idempotent;
   * synchronous, so it may run in an `exit` handler. A lock that is no longer ours is left alone
   * and logged.
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    HELD_HERE.delete(this.holder.token);
    const text = readOrNull(this.path);
    let ours = false;
    try {
      ours = text !== null && parseLock(this.path, text).token === this.holder.token;
    } catch {
      ours = false;
    }
    if (!ours) {
      this.log(`Lock ${this.path} is no longer held by this process; left as it is`);
      return;
    }
    fs.unlinkSync(this.path);
    fsyncDirSync(this.dir);
  }
}

/** Writes `text` to a new file `path` and fsyncs it. */
function writeSynced(path: string, text: string, flag: "wx" | "w"): void {
  const fd = fs.openSync(path, flag, 0o644);
  try {
    writeFullySync(fd, path, new TextEncoder().encode(text), 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Makes `path` appear with the content of `temp` unless it exists: a hard link (atomic, whole
 * content at once); on a file system without hard links, an exclusive create and write (a reader
 * may then see it half-written and refuse, which is the safe side). False when `path` exists.
 */
function createExclusive(temp: string, path: string, text: string): boolean {
  try {
    fs.linkSync(temp, path);
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") {
      throw e;
    }
  }
  try {
    writeSynced(path, text, "wx");
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === "EEXIST") return false;
    throw e;
  }
}

function readHolder(path: string): LockHolder | null {
  let text: string;
  try {
    const fd = fs.openSync(path, "r");
    try {
      const buf = new Uint8Array(LOCK_BYTES_MAX + 1);
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      if (n > LOCK_BYTES_MAX) throw new LockFileError(path, `it is over ${LOCK_BYTES_MAX} bytes`);
      text = new TextDecoder().decode(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return null;
    throw e;
  }
  return parseLock(path, text);
}

/** The holder record of this process, with a fresh token. */
function selfHolder(probe: ProcessProbe): LockHolder {
  const stat = probe.procStat("self");
  return {
    pid: process.pid,
    host: hostname(),
    started_ms: Date.now(),
    boot_id: probe.bootId() ?? "-",
    proc_start: (stat === null ? null : parseProcStat(stat)?.start) ?? "-",
    token: randomBytes(16).toString("hex"),
  };
}

/**
 * Takes the lock on `dir` (created if missing), or throws {@link DirLockedError} naming the
 * live holder, or {@link LockFileError} for a `LOCK` that cannot be read. A stale lock (its
 * holder is gone) is taken over and logged.
 */
export async function acquireDirLock(dir: string, options: DirLockOptions = {}): Promise<DirLock> {
  const log = options.logger ?? ((m: string) => console.error(m));
  const probe = options.probe ?? SYSTEM_PROBE;
  const settleMs = options.settle_ms ?? TAKEOVER_SETTLE_MS;
  const flag = options.flag ?? "--data-dir";
  fs.mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const holder = selfHolder(probe);
  const text = formatLock(holder);
  const temp = join(dir, `${LOCK_FILE}.${holder.token}.tmp`);
  try {
    for (let attempt = 0; attempt < ATTEMPTS_MAX; attempt++) {
      if (!fs.existsSync(temp)) writeSynced(temp, text, "w");
      if (createExclusive(temp, path, text)) {
        fsyncDirSync(dir);
        return DirLock.create(dir, path, holder, log);
      }
      const found = readHolder(path);
      if (found === null) continue; // released meanwhile: try again
      const why = whyStale(found, probe);
      if (why === null) throw new DirLockedError(dir, found, flag);
      log(
        `Data directory ${dir}: taking over the stale lock of process ${found.pid} (locked ` +
          `${new Date(found.started_ms).toISOString()}): ${why}`,
      );
      // Replace it only if it is still the one judged stale, then confirm after a pause that
      // no other process replaced it too (see the module comment).
      if (readHolder(path)?.token !== found.token) continue;
      fs.renameSync(temp, path);
      fsyncDirSync(dir);
      await new Promise((resolve) => setTimeout(resolve, settleMs));
      if (readHolder(path)?.token === holder.token) return DirLock.create(dir, path, holder, log);
    }
    throw new Error(
      `Could not lock data directory ${dir}: ${path} kept changing over ${ATTEMPTS_MAX} attempts`,
    );
  } finally {
    fs.rmSync(temp, { force: true });
  }
}
