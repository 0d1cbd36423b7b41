/**
 * What the router core needs from the outside world, as small interfaces, so that the same core
 * runs over gRPC in production (node_links.ts, router.ts) and over a simulated network and clock
 * in the seeded simulations (tests/sim/router_sim_test.ts):
 *
 * | interface        | production                       | simulation                          |
 * | ---------------- | -------------------------------- | ----------------------------------- |
 * | {@link NodePort} | grpc-js channels per node        | simulated nodes behind a lossy net  |
 * | {@link RouterClock} | `Date.now`, `setTimeout`      | `SimClock`                          |
 * | `HintQueue`      | `HintLog` on disk (hints/)       | `MemoryHintQueue`                   |
 *
 * A node call resolves with the node's response or rejects with an error that carries a gRPC
 * status `code` (grpc-js `ServiceError`, or {@link NodeStatusError}). Transient codes (the node
 * did not certainly apply the call) are told apart from verdicts by {@link isTransient}.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { isServiceError, type RequestOf, type ResponseOf } from "../api/client.ts";
import type { MethodName } from "../api/proto.ts";
import type { EntriesRequest, EntriesResponse } from "../api/transfer.ts";
import type { TransferPort } from "./rebalance/rebalancer.ts";
import type { DigestPort } from "./rebalance/digest_sync.ts";

/** Options of one call to a node. */
export interface NodeCallOptions {
  /** Deadline relative to now; default the port's node timeout. */
  timeout_ms?: number;
  /** Wait for a reconnecting channel (up to the deadline) instead of failing fast. */
  wait_for_ready?: boolean;
}

/** How the router core reaches the storage nodes (ring member ids are their addresses). */
export interface NodePort {
  /** Calls `method` on `node`; rejects with an error carrying a gRPC status `code`. */
  call<K extends MethodName>(
    node: string,
    method: K,
    request: RequestOf<K>,
    options?: NodeCallOptions,
  ): Promise<ResponseOf<K>>;
  /**
   * One page of the node's entries (`vectordb.internal.Transfer/Entries`, for Scroll and
   * Count); rejects like {@link call} (UNAVAILABLE when the router has no channel to it).
   */
  entries(
    node: string,
    request: EntriesRequest,
    options?: NodeCallOptions,
  ): Promise<EntriesResponse>;
  /** The node's Transfer service (rebalancing, read repair); null when it has no channel. */
  transfer(node: string): TransferPort | null;
  /**
   * The node's digest calls (anti-entropy by digests, rebalance/digest_sync.ts); null when it
   * has no channel. Optional: without it, anti-entropy runs scan every entry.
   */
  digest?(node: string): DigestPort | null;
  /** Opens (or reopens) the channels to a node that came onto the ring or is leaving. */
  open(node: string): void;
  /** Closes the channels to a node; its pending calls fail with CANCELLED. */
  close(node: string): void;
}

/** Time as the router core sees it. */
export interface RouterClock {
  now_ms(): number;
  sleep(ms: number): Promise<void>;
  /**
   * A sleep that can be cancelled (a hedge timer that must not outlive its search); optional:
   * without it, callers fall back to {@link sleep} and let it run out.
   */
  timer?(ms: number): CancellableSleep;
}

/** A sleep that {@link RouterClock.timer} started. */
export interface CancellableSleep {
  /** Resolves after the delay; never when cancelled first. */
  readonly done: Promise<void>;
  cancel(): void;
}

/** The real clock. */
export const SYSTEM_CLOCK: RouterClock = {
  now_ms: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  timer: (ms) => {
    let id: ReturnType<typeof setTimeout> | undefined;
    const done = new Promise<void>((resolve) => id = setTimeout(resolve, ms));
    return { done, cancel: () => clearTimeout(id) };
  },
};

/** A gRPC status error raised by something that is not grpc-js (a simulated node). */
export class NodeStatusError extends Error {
  override name = "NodeStatusError";
  constructor(readonly code: grpc.status, readonly details: string) {
    super(`${grpc.status[code] ?? code}: ${details}`);
  }
}

/** A gRPC status error for the router's own client. */
export class RouterStatusError extends Error {
  override name = "RouterStatusError";
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }
}

/** gRPC codes that say "the node did not (certainly) apply this; try again later". */
const TRANSIENT_CODES: ReadonlySet<number> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.ABORTED,
]);

/** Whether a node call's error is an availability problem (as opposed to a verdict). */
export function isTransient(error: unknown): boolean {
  return !isServiceError(error) || TRANSIENT_CODES.has(error.code);
}

/** Whether a node call's error is the verdict NOT_FOUND (the node lacks the collection). */
export function isNotFound(error: unknown): boolean {
  return isServiceError(error) && error.code === grpc.status.NOT_FOUND;
}

/**
 * Background work the router started and must wait for on stop (replays, probes, read
 * repairs, ring updates). Bounded by its callers (one replay per node, a cap on repairs).
 */
export class Background {
  readonly #running = new Set<Promise<void>>();

  constructor(readonly log: (message: string) => void) {}

  /** Runs `work` in the background; its failure is logged as `what`. */
  track(what: string, work: Promise<unknown>): void {
    const run: Promise<void> = work.then(
      () => {},
      (e) => this.log(`ERROR ${what}: ${(e as Error)?.stack ?? e}`),
    ).finally(() => this.#running.delete(run));
    this.#running.add(run);
  }

  get size(): number {
    return this.#running.size;
  }

  /** Resolves once nothing runs in the background (work started meanwhile included). */
  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }
}
