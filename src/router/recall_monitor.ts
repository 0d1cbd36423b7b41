/**
 * The live recall monitor: the router samples a small fraction of the searches it answers,
 * recomputes each sample's exact top-k in the background (SearchRequest.exact: brute force on
 * the nodes), and keeps recall@k per collection as a rolling mean over the last
 * {@link RecallMonitorOptions.window} samples. Exported as the gauge `vectordb_recall` (labels
 * `collection`), drawn by the web console, and logged as a warning when it falls below
 * `--recall-warn-below`.
 *
 * A sample's recall is |approximate ids ∩ exact ids| / |exact ids| (a search with no exact
 * result is not counted). Writes between the search and its exact recomputation move the
 * truth a little; with a steady write rate this shows as a small, constant bias.
 *
 * **Bounded cost.**
 *
 * | resource | bound                                                                        |
 * |----------|------------------------------------------------------------------------------|
 * | CPU      | one exact search at a time, then a pause of `gap_ms` (default 100 ms): at most 10 exact searches/s, each a scan of the collection on every node answering |
 * | queue    | `queue_max` samples (default 16) waiting; more are dropped and counted       |
 * | memory   | a sample holds its vector and k ids; the windows hold `window` floats per collection, at most `collections_max` collections (least recently sampled forgotten) |
 *
 * Pure: the clock (a sleep), the coin and the exact search are injected, so a test drives it
 * step by step.
 *
 * @module
 */

/** A search the router answered, as the monitor samples it. */
export interface RecallSample {
  collection: string;
  vector: number[] | Float32Array;
  k: number;
  ef: number;
  /** The filter's JSON text for the nodes ("" none). */
  filter_json: string;
  /** The ids the search answered, nearest first (compared as strings). */
  ids: readonly (string | number)[];
}

/** What the monitor needs from the router. */
export interface RecallMonitorDeps {
  /** The exact top-k ids of the sample's query (a brute-force search). */
  exact: (sample: RecallSample) => Promise<readonly (string | number)[]>;
  /** A uniform number in [0, 1) (the sampling coin). */
  random: () => number;
  /** Waits `ms` (the pause between exact searches). */
  sleep: (ms: number) => Promise<void>;
  /** Where warnings go. */
  warn: (message: string) => void;
}

/** Settings of {@link RecallMonitor}. */
export interface RecallMonitorOptions {
  /** Fraction of searches sampled, 0 (off) .. 1. */
  sample_rate: number;
  /** Rolling recall below this (with at least `warn_min_samples` in the window) is a warning. */
  warn_below: number;
  /** Samples the rolling figure averages over. */
  window?: number;
  /** Samples waiting for their exact search; more are dropped. */
  queue_max?: number;
  /** Pause after each exact search, in ms. */
  gap_ms?: number;
  /** Collections tracked at once. */
  collections_max?: number;
  /** Samples in the window before a warning may be logged. */
  warn_min_samples?: number;
}

/** Defaults of the optional settings. */
export const RECALL_DEFAULTS = {
  window: 200,
  queue_max: 16,
  gap_ms: 100,
  collections_max: 256,
  warn_min_samples: 20,
} as const;

/** One collection's rolling figure. */
export interface RecallFigure {
  collection: string;
  /** Mean recall@k over the window (NaN before the first sample). */
  recall: number;
  /** Samples in the window. */
  samples: number;
  /** Samples measured since the router started. */
  total: number;
  /** k of the latest sample. */
  k: number;
  /** ef of the latest sample (0: the server default). */
  ef: number;
}

/** A ring of the last `window` recall values of one collection. */
class Window {
  readonly values: Float64Array;
  count = 0;
  next = 0;
  sum = 0;
  total = 0;
  k = 0;
  ef = 0;
  /** Whether the warning for the current dip was logged. */
  warned = false;

  constructor(window: number) {
    this.values = new Float64Array(window);
  }

  add(v: number): void {
    if (this.count === this.values.length) this.sum -= this.values[this.next];
    else this.count++;
    this.values[this.next] = v;
    this.sum += v;
    this.next = (this.next + 1) % this.values.length;
    this.total++;
  }

  get mean(): number {
    return this.count === 0 ? NaN : this.sum / this.count;
  }
}

/** An invalid monitor setting. */
export class RecallMonitorConfigError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "RecallMonitorConfigError";
  }
}

/** recall@k of `approx` against `exact`: the share of exact ids the approximate answer has. */
export function recallOf(
  approx: readonly (string | number)[],
  exact: readonly (string | number)[],
): number {
  if (exact.length === 0) return NaN;
  const got = new Set(approx.map(String));
  let hit = 0;
  for (const id of exact) if (got.has(String(id))) hit++;
  return hit / exact.length;
}

/** Samples searches and keeps recall@k per collection (module comment). */
export class RecallMonitor {
  readonly #deps: RecallMonitorDeps;
  readonly sample_rate: number;
  readonly warn_below: number;
  readonly #window: number;
  readonly #queue_max: number;
  readonly #gap_ms: number;
  readonly #collections_max: number;
  readonly #warn_min: number;
  readonly #queue: RecallSample[] = [];
  /** By collection; Map order is least recently sampled first. */
  readonly #windows = new Map<string, Window>();
  #running = false;
  #stopped = false;
  #idle: Promise<void> = Promise.resolve();
  /** Counters for metrics. */
  readonly counts = { sampled: 0, measured: 0, dropped: 0, failed: 0 };

  constructor(options: RecallMonitorOptions, deps: RecallMonitorDeps) {
    const rate = options.sample_rate;
    if (!(rate >= 0 && rate <= 1)) {
      throw new RecallMonitorConfigError(
        `--recall-sample-rate ${rate} must be a fraction between 0 (off) and 1`,
      );
    }
    if (!(options.warn_below >= 0 && options.warn_below <= 1)) {
      throw new RecallMonitorConfigError(
        `--recall-warn-below ${options.warn_below} must be between 0 and 1`,
      );
    }
    this.sample_rate = rate;
    this.warn_below = options.warn_below;
    this.#window = positive(options.window ?? RECALL_DEFAULTS.window, "window");
    this.#queue_max = positive(options.queue_max ?? RECALL_DEFAULTS.queue_max, "queue_max");
    this.#gap_ms = options.gap_ms ?? RECALL_DEFAULTS.gap_ms;
    this.#collections_max = positive(
      options.collections_max ?? RECALL_DEFAULTS.collections_max,
      "collections_max",
    );
    this.#warn_min = options.warn_min_samples ?? RECALL_DEFAULTS.warn_min_samples;
    this.#deps = deps;
  }

  /** Samples waiting for their exact search. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Offers an answered search: taken with probability `sample_rate` (when the queue has room,
   * else dropped and counted). Partial answers are never taken: their truth is unknowable.
   */
  offer(sample: RecallSample, partial: boolean): void {
    if (this.draw(partial)) this.take(sample);
  }

  /**
   * The draw {@link offer} makes: whether an answered search (`partial` or not) is sampled;
   * counts it as sampled when it is. The caller then passes it to {@link take}: a search's
   * sample is built only when drawn (most are not).
   */
  draw(partial: boolean): boolean {
    if (this.sample_rate === 0 || this.#stopped || partial) return false;
    if (this.#deps.random() >= this.sample_rate) return false;
    this.counts.sampled++;
    return true;
  }

  /** Queues a sample {@link draw} chose (dropped, and counted, when the queue is full). */
  take(sample: RecallSample): void {
    if (this.#stopped) return;
    if (this.#queue.length >= this.#queue_max) {
      this.counts.dropped++;
      return;
    }
    this.#queue.push(sample);
    if (!this.#running) {
      this.#running = true;
      this.#idle = this.#drain();
    }
  }

  /** Resolves when the queue is empty and no exact search runs (tests, shutdown). */
  idle(): Promise<void> {
    return this.#idle;
  }

  /** Stops taking samples; resolves when the running exact search (if any) is done. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#queue.length = 0;
    await this.#idle;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const sample = this.#queue.shift()!;
        try {
          const exact = await this.#deps.exact(sample);
          this.#record(sample, recallOf(sample.ids, exact));
        } catch {
          // A node down or the collection dropped: the sample is lost, nothing else.
          this.counts.failed++;
        }
        if (this.#gap_ms > 0) await this.#deps.sleep(this.#gap_ms);
      }
    } finally {
      this.#running = false;
    }
  }

  #record(sample: RecallSample, recall: number): void {
    if (Number.isNaN(recall)) return;
    this.counts.measured++;
    let w = this.#windows.get(sample.collection);
    if (w === undefined) {
      if (this.#windows.size >= this.#collections_max) {
        this.#windows.delete(this.#windows.keys().next().value!);
      }
      w = new Window(this.#window);
    } else {
      this.#windows.delete(sample.collection);
    }
    this.#windows.set(sample.collection, w);
    w.add(recall);
    w.k = sample.k;
    w.ef = sample.ef;
    const mean = w.mean;
    if (w.count >= this.#warn_min && mean < this.warn_below) {
      if (!w.warned) {
        w.warned = true;
        this.#deps.warn(
          `recall@${sample.k} of collection "${sample.collection}" is ${mean.toFixed(3)} over ` +
            `the last ${w.count} sampled searches, below --recall-warn-below ${this.warn_below}` +
            ` (raise ef, or m / ef_construction when building)`,
        );
      }
    } else if (mean >= this.warn_below) {
      w.warned = false;
    }
  }

  /** The rolling figure of each collection sampled, sorted by name. */
  figures(): RecallFigure[] {
    return [...this.#windows.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([collection, w]) => ({
        collection,
        recall: w.mean,
        samples: w.count,
        total: w.total,
        k: w.k,
        ef: w.ef,
      }));
  }

  /** Forgets a collection's figure (it was dropped). */
  forget(collection: string): void {
    this.#windows.delete(collection);
  }
}

function positive(n: number, name: string): number {
  if (!Number.isInteger(n) || n < 1) {
    throw new RecallMonitorConfigError(`recall monitor ${name} ${n} must be a positive integer`);
  }
  return n;
}
