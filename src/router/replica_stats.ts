/**
 * What the router remembers about each storage node's recent Search calls, for adaptive replica
 * selection (search_plan.ts): an exponentially weighted moving average (EWMA) of the latency of
 * the node's successful Search calls, the calls in flight to it now, and when its last call
 * failed. Fed by scatter.ts with times from the injected {@link RouterClock}; holds no clock.
 *
 * | per node        | meaning                                                        |
 * | --------------- | -------------------------------------------------------------- |
 * | `ewma_ms`       | EWMA of successful Search latency, ms (0 until the first one)  |
 * | `in_flight`     | Search calls sent and not settled                              |
 * | `failed_at_ms`  | clock time of the last transient failure (-Infinity: none)     |
 * | `samples`       | successful calls measured                                      |
 *
 * The score of a node ({@link ReplicaStats.cost}) is `ewma_ms × (1 + in_flight)` (or the calls
 * ahead as the caller counts them: one per SearchBatch when searches are coalesced): the expected
 * wait if every call ahead of ours costs the average, the queue-size × service-time estimate
 * of C3 and of Elasticsearch's adaptive replica selection (without their cubic queue term,
 * which matters with many more clients than nodes). A node never measured costs 0, so it is
 * tried, and measured, first.
 *
 * A node rarely chosen keeps an old, possibly high, EWMA and would never be measured again;
 * so each time a search passes a node over, its EWMA decays a little
 * ({@link ReplicaStats.passedOver}), and after enough searches it is tried again (the same
 * remedy as Elasticsearch's).
 *
 * Bounded: one entry per node address, at most `nodes_max` (the oldest entry is forgotten
 * first); {@link ReplicaStats.retain} drops nodes that left.
 *
 * @module
 */

/** One node's record (read-only outside this module). */
export interface NodeSearchStats {
  ewma_ms: number;
  in_flight: number;
  failed_at_ms: number;
  samples: number;
}

/** Options of {@link ReplicaStats}. */
export interface ReplicaStatsOptions {
  /** Weight of a new sample in the EWMA, 0 < alpha ≤ 1 (default 0.3). */
  alpha?: number;
  /** Factor applied to a passed-over node's EWMA, 0 < decay ≤ 1 (default 0.98). */
  decay?: number;
  /** Nodes remembered at most (default 1024). */
  nodes_max?: number;
}

/** Default {@link ReplicaStatsOptions.alpha}. */
export const EWMA_ALPHA = 0.3;
/** Default {@link ReplicaStatsOptions.decay}. */
export const PASSED_OVER_DECAY = 0.98;

/** Per-node Search latency and load (see the module comment). */
export class ReplicaStats {
  readonly #nodes = new Map<string, NodeSearchStats>();
  readonly #alpha: number;
  readonly #decay: number;
  readonly #max: number;
  /** EWMA of every successful Search call, all nodes together (0 until the first). */
  #all_ms = 0;

  constructor(options: ReplicaStatsOptions = {}) {
    this.#alpha = options.alpha ?? EWMA_ALPHA;
    this.#decay = options.decay ?? PASSED_OVER_DECAY;
    this.#max = options.nodes_max ?? 1024;
    if (!(this.#alpha > 0 && this.#alpha <= 1)) {
      throw new RangeError(`alpha ${this.#alpha} must be in (0, 1]`);
    }
    if (!(this.#decay > 0 && this.#decay <= 1)) {
      throw new RangeError(`decay ${this.#decay} must be in (0, 1]`);
    }
    if (!(Number.isInteger(this.#max) && this.#max >= 1)) {
      throw new RangeError(`nodes_max ${this.#max} must be a positive integer`);
    }
  }

  #entry(node: string): NodeSearchStats {
    let s = this.#nodes.get(node);
    if (s === undefined) {
      if (this.#nodes.size >= this.#max) {
        // Map order is insertion order: the first key is the oldest entry.
        this.#nodes.delete(this.#nodes.keys().next().value!);
      }
      s = { ewma_ms: 0, in_flight: 0, failed_at_ms: -Infinity, samples: 0 };
      this.#nodes.set(node, s);
    }
    return s;
  }

  /** The record of `node`, or undefined when it has none. */
  get(node: string): Readonly<NodeSearchStats> | undefined {
    return this.#nodes.get(node);
  }

  /** Nodes with a record. */
  get size(): number {
    return this.#nodes.size;
  }

  /** EWMA of successful Search latency over all nodes, ms (0 before the first). */
  get typical_ms(): number {
    return this.#all_ms;
  }

  /** A Search call to `node` starts. */
  begin(node: string): void {
    this.#entry(node).in_flight++;
  }

  /**
   * A Search call to `node` settled after `latency_ms`: `ok` false for a transient failure
   * (unreachable, deadline) at clock time `now_ms`. A verdict (the node answered with an
   * error) counts as ok: the node is up. `sample` false: the call is of another kind (an exact
   * search, a scan) whose latency says nothing of a graph search's; only its end is recorded.
   */
  end(node: string, latency_ms: number, ok: boolean, now_ms: number, sample = true): void {
    const s = this.#entry(node);
    if (s.in_flight > 0) s.in_flight--;
    if (!ok) {
      s.failed_at_ms = now_ms;
      return;
    }
    if (!sample) return;
    const x = Math.max(0, latency_ms);
    s.ewma_ms = s.samples === 0 ? x : s.ewma_ms + this.#alpha * (x - s.ewma_ms);
    s.samples++;
    this.#all_ms = this.#all_ms === 0 ? x : this.#all_ms + this.#alpha * (x - this.#all_ms);
  }

  /** A search could have asked `node` and chose another replica: its EWMA decays a little. */
  passedOver(node: string): void {
    const s = this.#nodes.get(node);
    if (s !== undefined) s.ewma_ms *= this.#decay;
  }

  /**
   * The expected cost of one more call to `node` (ms; see the module comment). `ahead`: the
   * calls ahead of ours, when the caller counts them otherwise (the router's coalescer: the
   * searches of one SearchBatch travel, and are answered, together, so a batch is one call
   * ahead, not as many as it carries); default the Search calls in flight.
   */
  cost(node: string, ahead?: number): number {
    const s = this.#nodes.get(node);
    if (s === undefined) return 0;
    return s.ewma_ms * (1 + (ahead ?? s.in_flight));
  }

  /** Whether `node`'s last call failed less than `window_ms` before `now_ms`. */
  failedRecently(node: string, now_ms: number, window_ms: number): boolean {
    const s = this.#nodes.get(node);
    return s !== undefined && now_ms - s.failed_at_ms < window_ms;
  }

  /** Forgets the nodes not in `nodes` (they left the ring). */
  retain(nodes: Iterable<string>): void {
    const keep = new Set(nodes);
    for (const n of [...this.#nodes.keys()]) if (!keep.has(n)) this.#nodes.delete(n);
  }

  /** Every record, by node (metrics). */
  entries(): IterableIterator<[string, Readonly<NodeSearchStats>]> {
    return this.#nodes.entries();
  }
}
