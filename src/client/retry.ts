/**
 * The retry policy of the client library, free of IO: which failures of which RPCs are retried,
 * how long to wait before the next attempt, and the loop that applies it with an injected clock,
 * sleep and random source (so tests drive it without real waits).
 *
 * | status             | retried for                                               |
 * |--------------------|-----------------------------------------------------------|
 * | UNAVAILABLE        | every RPC                                                 |
 * | DEADLINE_EXCEEDED  | idempotent RPCs ({@link IDEMPOTENT_METHODS})              |
 * | RESOURCE_EXHAUSTED | idempotent RPCs                                           |
 * | anything else      | never (INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED, …)   |
 *
 * UNAVAILABLE means the server is starting, stopping or unreachable, or (router) too few replicas
 * acknowledged a write: sending the call again is what the proto says to do. DEADLINE_EXCEEDED
 * and RESOURCE_EXHAUSTED may follow a call the server applied, so they are retried only where a
 * second application changes nothing a caller could tell: reads (Get, GetBatch, Search,
 * SearchBatch, Scroll, Count, ListCollections, Stats, Members, ListBackups) and writes (Put,
 * PutBatch, Delete, DeleteBatch). Writes are safe because they are upserts
 * with versions: a put of the same id and vector again leaves the same point, a delete again
 * leaves it deleted. With a version the caller gives, the second application is ignored (a node
 * applies a write only when its version is higher); without one the router stamps a newer
 * version, so a retry after an ambiguous failure may overwrite a concurrent writer's newer value
 * of the same id: last writer wins, the same as `client load`. CreateCollection, DropCollection,
 * Drain, Backup, Restore, DeleteBackup, CreateFieldIndex, DropFieldIndex and DeleteByFilter are
 * not retried on those two codes: a second CreateCollection would answer `created: false` for a
 * collection the first one created (a second Backup or Restore, ALREADY_EXISTS; a second
 * DeleteBackup, NOT_FOUND; a second index call, `created`/`dropped: false`), and a second
 * DeleteByFilter would also delete points written since that now match.
 *
 * Waits use exponential backoff with "full jitter": before retry `n` (1-based, attempt `n + 1`)
 * the call waits a uniformly random time in `[0, min(capMs, baseMs × 2^(n-1)))`. A call makes at
 * most `attempts` attempts and never starts a wait that would end after `totalMs` from its first
 * attempt; each attempt's own deadline is `timeoutMs`, cut to what is left of `totalMs`.
 *
 * @module
 */
import type { MethodName } from "../api/proto.ts";

/** gRPC status codes the policy knows (values of grpc-js's `status`). */
export const Code = {
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNAVAILABLE: 14,
} as const;

/** RPCs that may be applied twice without a visible difference (module comment). */
export const IDEMPOTENT_METHODS: ReadonlySet<MethodName> = new Set<MethodName>([
  "Get",
  "GetBatch",
  "Search",
  "SearchBatch",
  "Scroll",
  "Count",
  "ListCollections",
  "Stats",
  "Members",
  "ListBackups",
  "Put",
  "PutBatch",
  "Delete",
  "DeleteBatch",
]);

/** Retry settings of a client or of one call. */
export interface RetryPolicy {
  /** Attempts per call, the first included (1: no retries). */
  attempts: number;
  /** Upper bound of the first retry's wait, in milliseconds. */
  baseMs: number;
  /** Upper bound of any wait, in milliseconds. */
  capMs: number;
  /** No wait is started that would end later than this after the first attempt began. */
  totalMs: number;
}

/**
 * Default policy: waits up to 0.1 s, 0.2 s, 0.4 s … capped at 5 s, 8 attempts, 30 s in all;
 * enough to ride out a node restart (about 1-3 s) or a router failing over to a replica.
 */
export const DEFAULT_RETRY: Readonly<RetryPolicy> = {
  attempts: 8,
  baseMs: 100,
  capMs: 5_000,
  totalMs: 30_000,
};

/** Largest `attempts`. */
export const RETRY_ATTEMPTS_MAX = 1000;

/** A retry policy or client option is out of range; the message names the value. */
export class RetryPolicyError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "RetryPolicyError";
  }
}

/** `policy` completed from {@link DEFAULT_RETRY} and checked; throws {@link RetryPolicyError}. */
export function retryPolicy(policy: Partial<RetryPolicy> = {}, base = DEFAULT_RETRY): RetryPolicy {
  const p: RetryPolicy = { ...base, ...dropUndefined(policy) };
  const check = (name: keyof RetryPolicy, ok: boolean, rule: string) => {
    if (!ok) throw new RetryPolicyError(`retry.${name} ${String(p[name])} must be ${rule}`);
  };
  check(
    "attempts",
    Number.isInteger(p.attempts) && p.attempts >= 1 && p.attempts <= RETRY_ATTEMPTS_MAX,
    `an integer from 1 to ${RETRY_ATTEMPTS_MAX}`,
  );
  check("baseMs", Number.isFinite(p.baseMs) && p.baseMs >= 0, "a finite number ≥ 0");
  check("capMs", Number.isFinite(p.capMs) && p.capMs >= p.baseMs, `a finite number ≥ baseMs`);
  check("totalMs", p.totalMs > 0, "a positive number of milliseconds (Infinity allowed)");
  return p;
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Whether a failure of `method` with status `code` (undefined: not a gRPC error) is retried. */
export function isRetryable(method: MethodName, code: number | undefined): boolean {
  if (code === Code.UNAVAILABLE) return true;
  if (code === Code.DEADLINE_EXCEEDED || code === Code.RESOURCE_EXHAUSTED) {
    return IDEMPOTENT_METHODS.has(method);
  }
  return false;
}

/** The upper bound of the wait before retry `retry` (1 = the first retry). */
export function backoffCapMs(retry: number, policy: RetryPolicy): number {
  if (!Number.isInteger(retry) || retry < 1) {
    throw new RetryPolicyError(`Retry ${retry} has no backoff; retries count from 1`);
  }
  // 2^(retry-1) overflows to Infinity for huge counts; min() keeps the cap.
  return Math.min(policy.capMs, policy.baseMs * 2 ** (retry - 1));
}

/** The wait before retry `retry`: full jitter, uniform in [0, backoffCapMs). */
export function backoffMs(retry: number, policy: RetryPolicy, random: () => number): number {
  return Math.floor(random() * backoffCapMs(retry, policy));
}

/** Time, waits and randomness of the retry loop; injectable for tests. */
export interface RetryClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Resolves after `ms` milliseconds. */
  sleep(ms: number): Promise<void>;
  /** Uniform in [0, 1). */
  random(): number;
}

/** The real clock: performance.now, setTimeout, Math.random. */
export const REAL_CLOCK: RetryClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/** What happened to one failed attempt (for {@link RetryOptions.onRetry} and errors). */
export interface RetryEvent {
  method: MethodName;
  /** The attempt that failed (1-based). */
  attempt: number;
  /** Its gRPC status code; undefined for an error that is not a gRPC one. */
  code: number | undefined;
  error: unknown;
  /** The wait before the next attempt. */
  waitMs: number;
}

/** Options of {@link withRetry}. */
export interface RetryOptions {
  policy: RetryPolicy;
  /** Deadline of each attempt in milliseconds (cut to what is left of `policy.totalMs`). */
  timeoutMs: number;
  clock?: RetryClock;
  /** Called before each wait. */
  onRetry?: (event: RetryEvent) => void;
}

/** Status code of `error` when it is a gRPC error (has a numeric `code`). */
export function statusCode(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "number" ? code : undefined;
}

/**
 * Runs `attempt(timeoutMs)` until it succeeds, fails with a status not retried for `method`, or
 * the policy's attempts or total time run out; then rethrows the last error unchanged (a grpc-js
 * `ServiceError` keeps its `code` and `details`) with `attempts` (the number made) added.
 */
export async function withRetry<T>(
  method: MethodName,
  attempt: (timeoutMs: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const clock = options.clock ?? REAL_CLOCK;
  const { policy } = options;
  const start = clock.now();
  for (let n = 1;; n++) {
    const left = policy.totalMs - (clock.now() - start);
    try {
      return await attempt(Math.max(1, Math.min(options.timeoutMs, left)));
    } catch (error) {
      const code = statusCode(error);
      const giveUp = () => {
        if (typeof error === "object" && error !== null && Object.isExtensible(error)) {
          (error as { attempts?: number }).attempts = n;
        }
        return error;
      };
      if (!isRetryable(method, code) || n >= policy.attempts) throw giveUp();
      const waitMs = backoffMs(n, policy, clock.random);
      if (clock.now() - start + waitMs >= policy.totalMs) throw giveUp();
      options.onRetry?.({ method, attempt: n, code, error, waitMs });
      await clock.sleep(waitMs);
    }
  }
}
