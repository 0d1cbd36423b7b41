/**
 * Coalesces the router's concurrent Search calls bound for one storage node into one
 * SearchBatch call. Every node call costs a fixed amount of CPU on both ends (an HTTP/2
 * stream, headers, deadline timers, interceptors; about as much as the graph search itself on
 * the router's side), so under load, when many searches head for the same node at once, one
 * call per node and event-loop turn carries them all.
 *
 * | a search for node X                                   | is sent                           |
 * | ----------------------------------------------------- | --------------------------------- |
 * | with options (wait_for_ready, a deadline of its own)  | at once, as Search                |
 * | not batchable (see {@link batchable})                 | at once, as Search                |
 * | while no call of this coalescer to X is in flight     | at once, as Search (no wait)      |
 * | otherwise                                             | queued; the queue goes at the end of this event-loop turn (`schedule`), or at once when it holds `batch_max` searches |
 *
 * A queue of one is sent as Search; of more, as one SearchBatch (its searches in queue order),
 * whose answers are handed back per search. So a lone search never waits, and a queued one
 * waits only for the searches already being handled in this turn: no timer, no added
 * deadline. A SearchBatch fails as a whole when any of its searches fails: refused (a
 * collection a node lacks, a shard it does not hold yet, a bad field) or failed on the node (a
 * full search queue of one collection: RESOURCE_EXHAUSTED; an unexpected error: INTERNAL,
 * UNKNOWN). So on any error the node answered with, or a malformed answer, each of its
 * searches is sent again alone (once: a lone search is never resent), and gets the answer or
 * error it would have got alone; only a failure of the call itself ({@link failedWhole}: the
 * node is down, the deadline passed, the call was cancelled, a local error) gives each that
 * failure, as each lone call would have had it (the scatter then asks other replicas).
 *
 * Bounded: a node's queue holds at most `batch_max` searches (≤ SEARCH_BATCH_MAX); queues
 * exist only for nodes with searches waiting, and are emptied every turn.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { isServiceError, type ResponseOf } from "../api/client.ts";
import type { SearchRequest, SearchResponse } from "../api/proto.ts";
import { SEARCH_BATCH_MAX } from "../common/limits.ts";
import type { NodeCallOptions, NodePort } from "./node_port.ts";

/**
 * Codes of a call that failed as a whole (no search of it could have fared better alone, on
 * that node now): every other code may be one search's (RESOURCE_EXHAUSTED from one
 * collection's search queue, INTERNAL from one query), so its batch is resent search by search.
 */
const WHOLE_CALL_CODES: ReadonlySet<number> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
]);

/** Whether a SearchBatch's error is the call's (not one of its searches'): see the module doc. */
export function failedWhole(error: unknown): boolean {
  return !isServiceError(error) || WHOLE_CALL_CODES.has(error.code);
}

/**
 * Most results of a batchable search (k): a full batch's answer stays far below the message
 * cap (32 searches × 1024 hits of about 20 bytes: under 1 MiB).
 */
export const COALESCE_K_MAX = 1024;

/** {@link SearchCoalescer.affinity}: a batch to the node is open in this turn. */
export const AFFINITY_OPEN = 2;
/** {@link SearchCoalescer.affinity}: a call to the node is in flight. */
export const AFFINITY_BUSY = 1;

/** Default `batch_max`: 32 searches of at most 260 KiB each is about 8 MiB, under the 26 MiB a SearchBatch may have. */
export const COALESCE_BATCH_MAX = 32;

/**
 * Whether `r` may travel in a SearchBatch: a graph search (a node's SearchBatch ignores
 * `exact`) whose answer is small (no payloads, no vectors, k ≤ {@link COALESCE_K_MAX}).
 */
export function batchable(
  r: Pick<SearchRequest, "exact" | "with_payload" | "with_vector" | "k">,
): boolean {
  return r.exact !== true && r.with_payload !== true && r.with_vector !== true &&
    r.k <= COALESCE_K_MAX;
}

interface Waiting {
  request: SearchRequest;
  resolve: (r: SearchResponse) => void;
  reject: (e: unknown) => void;
}

/** Options of {@link SearchCoalescer}. */
export interface SearchCoalescerOptions {
  /** Searches in one SearchBatch at most, 2 .. SEARCH_BATCH_MAX (default {@link COALESCE_BATCH_MAX}). */
  batch_max?: number;
  /** Runs `fn` once the current event-loop turn's work is done (default `setImmediate`). */
  schedule?: (fn: () => void) => void;
}

/** See the module comment. */
export class SearchCoalescer {
  /** Counters for metrics. */
  readonly counts = {
    /** SearchBatch calls sent. */
    batches: 0,
    /** Searches sent in them. */
    batched: 0,
    /** Searches sent alone again after their batch failed on the node (see the module doc). */
    resent: 0,
  };
  readonly #nodes: NodePort;
  readonly #max: number;
  readonly #schedule: (fn: () => void) => void;
  /** Calls in flight per node (only nodes with some). */
  readonly #in_flight = new Map<string, number>();
  /** Searches waiting per node (only nodes with some). */
  readonly #queues = new Map<string, Waiting[]>();
  #scheduled = false;
  readonly #flush = () => {
    this.#scheduled = false;
    for (const [node, q] of this.#queues) {
      this.#queues.delete(node);
      this.#send(node, q);
    }
  };

  constructor(nodes: NodePort, options: SearchCoalescerOptions = {}) {
    this.#nodes = nodes;
    this.#max = options.batch_max ?? COALESCE_BATCH_MAX;
    if (!(Number.isInteger(this.#max) && this.#max >= 2 && this.#max <= SEARCH_BATCH_MAX)) {
      throw new RangeError(`batch_max ${this.#max} must be an integer in 2 .. ${SEARCH_BATCH_MAX}`);
    }
    this.#schedule = options.schedule ?? ((fn) => setImmediate(fn));
  }

  /** Searches waiting now, all nodes together (tests). */
  get waiting(): number {
    let n = 0;
    for (const q of this.#queues.values()) n += q.length;
    return n;
  }

  /**
   * How a batchable search sent to `node` now would travel, for replica selection
   * (search_plan.ts `affinity`): {@link AFFINITY_OPEN} when a queue for it is open in this
   * turn (the search joins that batch: no call of its own), {@link AFFINITY_BUSY} when a call
   * to it is in flight (the search opens a queue others can join), 0 when it would go alone.
   */
  affinity(node: string): number {
    if (this.#queues.has(node)) return AFFINITY_OPEN;
    return this.#in_flight.has(node) ? AFFINITY_BUSY : 0;
  }

  /** Calls (Search or SearchBatch) to `node` in flight now. */
  calls(node: string): number {
    return this.#in_flight.get(node) ?? 0;
  }

  /** Search `request` on `node`, alone or in a batch (see the module comment). */
  search(
    node: string,
    request: SearchRequest,
    options: NodeCallOptions = {},
  ): Promise<ResponseOf<"Search">> {
    if (
      options.wait_for_ready === true || options.timeout_ms !== undefined ||
      !batchable(request) || !this.#in_flight.has(node)
    ) return this.#one(node, request, options);
    return new Promise((resolve, reject) => {
      let q = this.#queues.get(node);
      if (q === undefined) this.#queues.set(node, q = []);
      q.push({ request, resolve, reject });
      if (q.length >= this.#max) {
        this.#queues.delete(node);
        this.#send(node, q);
      } else if (!this.#scheduled) {
        this.#scheduled = true;
        this.#schedule(this.#flush);
      }
    });
  }

  #begin(node: string): void {
    this.#in_flight.set(node, (this.#in_flight.get(node) ?? 0) + 1);
  }

  #end(node: string): void {
    const n = (this.#in_flight.get(node) ?? 1) - 1;
    if (n > 0) this.#in_flight.set(node, n);
    else this.#in_flight.delete(node);
  }

  /** One Search call, counted in flight. */
  #one(node: string, request: SearchRequest, options: NodeCallOptions): Promise<SearchResponse> {
    let reply: Promise<SearchResponse>;
    try {
      reply = this.#nodes.call(node, "Search", request, options);
    } catch (e) {
      return Promise.reject(e);
    }
    this.#begin(node);
    return reply.then(
      (r) => {
        this.#end(node);
        return r;
      },
      (e) => {
        this.#end(node);
        throw e;
      },
    );
  }

  /** Sends a node's queue: alone when it holds one search, else as one SearchBatch. */
  #send(node: string, q: Waiting[]): void {
    if (q.length === 1) {
      this.#one(node, q[0].request, {}).then(q[0].resolve, q[0].reject);
      return;
    }
    this.counts.batches++;
    this.counts.batched += q.length;
    let reply: Promise<ResponseOf<"SearchBatch">>;
    try {
      reply = this.#nodes.call(node, "SearchBatch", { searches: q.map((w) => w.request) });
    } catch (e) {
      reply = Promise.reject(e);
    }
    this.#begin(node);
    reply.then(
      (r) => {
        this.#end(node);
        const results = r?.results;
        if (!Array.isArray(results) || results.length !== q.length) {
          this.#resend(node, q);
          return;
        }
        for (let i = 0; i < q.length; i++) q[i].resolve(results[i]);
      },
      (e) => {
        this.#end(node);
        if (failedWhole(e)) { for (const w of q) w.reject(e); }
        else this.#resend(node, q);
      },
    );
  }

  /** Each search of a failed batch alone: its own answer or error. */
  #resend(node: string, q: Waiting[]): void {
    this.counts.resent += q.length;
    for (const w of q) this.#one(node, w.request, {}).then(w.resolve, w.reject);
  }
}
