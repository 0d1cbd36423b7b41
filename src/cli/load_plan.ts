/**
 * The decisions of `client load`, free of IO: which failures are retried, how long to wait
 * before a retry, and how large and how many PutBatch calls to keep in flight.
 *
 * Retry policy: UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are retried (PutBatch is
 * an upsert with a server-stamped version, so sending a batch again is safe); every other
 * failure fails the batch's points for good. Attempt `n` (1-based, the first retry is attempt 2)
 * waits a uniformly random time in `[0, min(cap_ms, base_ms × 2^(n-2))]` ("full jitter"); a batch
 * gets at most `attempts_max` attempts.
 *
 * Adaptation (AIMD): the batch size and the number of calls in flight start at their maxima (the
 * `--batch` and `--concurrency` flags). Every retryable failure halves both (not below
 * `batch_min` / `concurrency_min`), at most once per `decrease_interval_ms`, so that one
 * overload seen by many calls in flight counts once. After `grow_after` successes in a row,
 * concurrency grows by 1 and the batch by one tenth of its maximum (at least 1), up to their
 * maxima. UNAVAILABLE adapts too, not only RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED: the
 * router reports an owner that missed its node deadline (`--node-timeout-ms`, 2 s by default)
 * as UNAVAILABLE "Only 1 of 2 owners acknowledged", which on a busy cluster means the batch is
 * too large to insert in time; re-sending it unchanged would fail the same way forever. When a
 * node is really down, the smaller calls cost a little throughput until they grow back.
 *
 * Clocks and randomness belong to the caller: every time is passed in, and the random source is
 * a `() => number` in [0, 1), so tests drive it with a fake clock and a seeded generator.
 *
 * @module
 */

/** gRPC status codes the policy knows (values of grpc-js's `status`). */
export const Status = {
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNAVAILABLE: 14,
} as const;

/** What to do with a failed PutBatch. */
export type FailureAction = "retry" | "fail";

/** Whether a failure with gRPC status `code` (undefined: not a gRPC error) is retried. */
export function classifyFailure(code: number | undefined): FailureAction {
  return code === Status.UNAVAILABLE || code === Status.DEADLINE_EXCEEDED ||
      code === Status.RESOURCE_EXHAUSTED
    ? "retry"
    : "fail";
}

/** Whether status `code` is a congestion signal (adapt down): every retryable code. */
export function isOverload(code: number | undefined): boolean {
  return classifyFailure(code) === "retry";
}

/** The retry policy. */
export interface RetryPolicy {
  /** Upper bound of the first retry's wait. */
  base_ms: number;
  /** Upper bound of any wait. */
  cap_ms: number;
  /** Attempts per batch, the first included (≥ 1). */
  attempts_max: number;
}

/** Default retry policy: waits up to 0.25 s, 0.5 s, 1 s, … 10 s; 12 attempts (~40 s of waits). */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { base_ms: 250, cap_ms: 10_000, attempts_max: 12 };

/** Largest `--attempts`. */
export const LOAD_ATTEMPTS_MAX = 100;

/** A retry policy's values are out of range. */
export class LoadPlanError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "LoadPlanError";
  }
}

/** The upper bound of the wait before attempt `attempt` (2 = first retry). */
export function backoffCapMs(attempt: number, policy: RetryPolicy): number {
  if (!Number.isInteger(attempt) || attempt < 2) {
    throw new LoadPlanError(`Attempt ${attempt} has no backoff; retries start at attempt 2`);
  }
  // 2^(attempt-2) overflows to Infinity for huge attempts; min() keeps the cap.
  return Math.min(policy.cap_ms, policy.base_ms * 2 ** (attempt - 2));
}

/** The wait before attempt `attempt`: full jitter, uniform in [0, backoffCapMs]. */
export function backoffMs(attempt: number, policy: RetryPolicy, random: () => number): number {
  return Math.floor(random() * backoffCapMs(attempt, policy));
}

/**
 * What to do after attempt `attempt` of a batch failed with `code`: retry after `wait_ms`, or
 * fail its points for good (`reason` says why: "not retryable" or "attempts exhausted").
 */
export type RetryDecision =
  | { action: "retry"; wait_ms: number }
  | { action: "fail"; reason: "not retryable" | "attempts exhausted" };

/** The decision after attempt `attempt` (1-based) failed with status `code`. */
export function decideRetry(
  code: number | undefined,
  attempt: number,
  policy: RetryPolicy,
  random: () => number,
): RetryDecision {
  if (classifyFailure(code) === "fail") return { action: "fail", reason: "not retryable" };
  if (attempt >= policy.attempts_max) return { action: "fail", reason: "attempts exhausted" };
  return { action: "retry", wait_ms: backoffMs(attempt + 1, policy, random) };
}

/** Limits of the adaptation. */
export interface AdaptLimits {
  batch_min: number;
  batch_max: number;
  concurrency_min: number;
  concurrency_max: number;
  /** Successes in a row before growing. */
  grow_after: number;
  /** At most one decrease per this many milliseconds. */
  decrease_interval_ms: number;
}

/** Default limits for the given maxima (`--batch`, `--concurrency`). */
export function defaultAdaptLimits(batch_max: number, concurrency_max: number): AdaptLimits {
  return {
    batch_min: Math.min(batch_max, 16),
    batch_max,
    concurrency_min: 1,
    concurrency_max,
    grow_after: 4,
    decrease_interval_ms: 1000,
  };
}

/** AIMD adaptation of the batch size and the calls in flight. */
export class LoadAdapter {
  #batch: number;
  #concurrency: number;
  #streak = 0;
  #last_decrease_ms = -Infinity;
  /** Decreases made so far. */
  decreases = 0;

  constructor(readonly limits: AdaptLimits) {
    const l = limits;
    if (
      !(l.batch_min >= 1 && l.batch_min <= l.batch_max && l.concurrency_min >= 1 &&
        l.concurrency_min <= l.concurrency_max && l.grow_after >= 1)
    ) {
      throw new LoadPlanError(`Adaptation limits ${JSON.stringify(l)} are inconsistent`);
    }
    this.#batch = l.batch_max;
    this.#concurrency = l.concurrency_max;
  }

  /** Points per PutBatch now. */
  get batch(): number {
    return this.#batch;
  }

  /** PutBatch calls to keep in flight now. */
  get concurrency(): number {
    return this.#concurrency;
  }

  /** A PutBatch succeeded. */
  onSuccess(): void {
    this.#streak++;
    if (this.#streak < this.limits.grow_after) return;
    this.#streak = 0;
    const step = Math.max(1, Math.floor(this.limits.batch_max / 10));
    this.#batch = Math.min(this.limits.batch_max, this.#batch + step);
    this.#concurrency = Math.min(this.limits.concurrency_max, this.#concurrency + 1);
  }

  /** A PutBatch failed with `code` at time `now_ms`; halves on overload (rate-limited). */
  onFailure(code: number | undefined, now_ms: number): void {
    this.#streak = 0;
    if (!isOverload(code)) return;
    if (now_ms - this.#last_decrease_ms < this.limits.decrease_interval_ms) return;
    this.#last_decrease_ms = now_ms;
    this.decreases++;
    this.#batch = Math.max(this.limits.batch_min, Math.floor(this.#batch / 2));
    this.#concurrency = Math.max(this.limits.concurrency_min, Math.floor(this.#concurrency / 2));
  }
}

/** Progress of a load by points acknowledged. */
export interface LoadRate {
  /** Points per second so far. */
  points_per_s: number;
  /** Estimated milliseconds left; undefined when the total is unknown or nothing is acked. */
  eta_ms: number | undefined;
}

/** Rate and ETA from points done (acknowledged or failed for good) of `total` after `elapsed_ms`. */
export function loadRate(
  acked: number,
  done: number,
  total: number | undefined,
  elapsed_ms: number,
): LoadRate {
  const points_per_s = elapsed_ms > 0 ? (acked * 1000) / elapsed_ms : 0;
  const done_per_s = elapsed_ms > 0 ? (done * 1000) / elapsed_ms : 0;
  const eta_ms = total === undefined || done_per_s <= 0
    ? undefined
    : (Math.max(0, total - done) / done_per_s) * 1000;
  return { points_per_s, eta_ms };
}
