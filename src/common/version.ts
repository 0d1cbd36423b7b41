/**
 * Versions of writes and the hybrid logical clock that stamps them (see "Versions" in
 * proto/vector_db.proto).
 *
 * A version is an integer in 1 .. {@link VERSION_MAX} (0 marks writes made before versions
 * existed). A stamp is `milliseconds since the Unix epoch × 2^VERSION_LOGICAL_BITS`, raised to one
 * above the last version stamped or observed when the wall clock has not moved on (or went back):
 * versions from one clock strictly increase, and after {@link VersionClock.observe} they also sort
 * after every version observed. 2^53 / 1024 ms is about 278,000 years, so stamps fit a safe
 * integer (and a float64 or uint64 on the wire) with room to spare.
 *
 * Pure: the wall clock is a constructor argument, so tests and simulations drive it.
 *
 * @example
 * ```ts
 * let now = 1_000;
 * const clock = new VersionClock(() => now);
 * clock.next(); // 1_024_000
 * clock.next(); // 1_024_001: same millisecond
 * now = 900; // the wall clock went back
 * clock.next(); // 1_024_002: still increasing
 * clock.observe(5_000_000); // a version from another clock
 * clock.next(); // 5_000_001
 * ```
 * @module
 */

/** Largest version: 2^53 - 1, the largest integer a float64 holds exactly. */
export const VERSION_MAX = 2 ** 53 - 1;
/** Low bits of a stamp that count writes within one millisecond. */
export const VERSION_LOGICAL_BITS = 10;

const LOGICAL = 2 ** VERSION_LOGICAL_BITS;

/**
 * How far ahead of the local wall clock a version that arrives from outside (a client's, a
 * peer's copy) may be: the clock skew a cluster tolerates. Without a bound, one version near
 * {@link VERSION_MAX} would push every clock that observes it to where it can stamp nothing.
 */
export const VERSION_FUTURE_MAX_MS = 60 * 60_000;

/** The largest version accepted from outside while the wall clock reads `now_ms`. */
export function versionCeiling(now_ms: number): number {
  const ms = Number.isFinite(now_ms) ? Math.floor(now_ms) : 0;
  return Math.min(VERSION_MAX, (ms + VERSION_FUTURE_MAX_MS) * LOGICAL + LOGICAL - 1);
}

/** The clock cannot stamp a version: it would pass {@link VERSION_MAX}. */
export class VersionOverflowError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VersionOverflowError";
  }
}

/**
 * Last writer wins, with one tie-break: whether an entry (`version`, `deleted`) supersedes a
 * held one (`held_version`, `held_deleted`). A newer version wins; at equal versions a delete
 * beats a put (two replicas that hold one id at one version with different flags — writes
 * stamped alike by two clocks, a client's explicit version reused — must still converge, and
 * the order must not depend on which arrived first). Equal entries do not supersede each other.
 * The storage layer applies writes (src/storage/collection.ts) and anti-entropy picks the entry
 * to spread (src/router/rebalance/digest_sync.ts) by this one rule.
 */
export function supersedes(
  version: number,
  deleted: boolean,
  held_version: number,
  held_deleted: boolean,
): boolean {
  return version > held_version || (version === held_version && deleted && !held_deleted);
}

/** True when `v` is a valid version (an integer in 0 .. {@link VERSION_MAX}). */
export function isVersion(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= VERSION_MAX;
}

/** A hybrid logical clock issuing strictly increasing versions (see the module comment). */
export class VersionClock {
  readonly #now_ms: () => number;
  #last = 0;

  constructor(now_ms: () => number = Date.now) {
    this.#now_ms = now_ms;
  }

  /** The highest version stamped or observed so far (0 at first). */
  get last(): number {
    return this.#last;
  }

  /**
   * A new version: `max(now_ms() × 1024, last + 1)`. VersionOverflowError when that passes
   * {@link VERSION_MAX} (only after observing a version within 1 of it).
   */
  next(): number {
    const wall = Math.floor(this.#now_ms()) * LOGICAL;
    const v = Math.max(Number.isFinite(wall) ? wall : 0, this.#last + 1);
    if (!(v <= VERSION_MAX)) {
      throw new VersionOverflowError(
        `The next version ${v} is above ${VERSION_MAX} (the clock has observed version ` +
          `${this.#last})`,
      );
    }
    this.#last = v;
    return v;
  }

  /** Raises the clock to `version`, so later stamps sort after it. */
  observe(version: number): void {
    if (!isVersion(version)) {
      throw new RangeError(`Version ${version} is not an integer between 0 and ${VERSION_MAX}`);
    }
    if (version > this.#last) this.#last = version;
  }
}
