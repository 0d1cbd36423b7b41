/**
 * Prometheus metrics (`GET /metrics` on the HTTP port of nodes and routers): a small layer over
 * a prom-client `Registry` that keeps hot paths free of allocation.
 *
 * Three kinds of family:
 *
 * | kind                      | updated                          | cost on the hot path          |
 * |---------------------------|----------------------------------|-------------------------------|
 * | {@link CounterFamily}     | `cell.inc(n)` on a cached cell    | one add                       |
 * | {@link HistogramFamily}   | `cell.observe(v)` on a cached cell | a scan of ~16 bounds, two adds |
 * | collected (gauge/counter) | read from existing stats at scrape | none                          |
 *
 * A cell is looked up once per label set ({@link CounterFamily.labels}, which allocates its key)
 * and kept by the caller; updating it allocates nothing. prom-client's own `Histogram.observe`
 * hashes the labels object on every call, which is why histograms here are our own cells,
 * formatted by prom-client's registry at scrape time (every family implements the registry's
 * `get()` contract). Collected families call a function at scrape time: most metrics are
 * counters the code already keeps (WAL stats, gossip stats, hint counts), read only when
 * Prometheus asks.
 *
 * Names follow Prometheus conventions, checked when a family is made: `vectordb_` prefix,
 * lower snake case, counters end in `_total`, units as suffixes (`_seconds`, `_bytes`) and
 * never `_ms`. prom-client's default process metrics (`process_cpu_seconds_total`,
 * `nodejs_heap_size_used_bytes`, …) keep their standard unprefixed names so stock dashboards
 * work ({@link Metrics.processMetrics}).
 *
 * @module
 */
import { collectDefaultMetrics, Registry } from "prom-client";

/** The `content-type` of the text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Prefix of every vectordb metric. */
export const METRIC_PREFIX = "vectordb_";

/** Request latency bounds (seconds): 100 µs to 10 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** Disk latency bounds (seconds): fsync and snapshot writes, 50 µs to 60 s. */
export const DISK_BUCKETS: readonly number[] = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** Powers of 2 from `from` to `to` (both powers of 2), for sizes and counts. */
export function powersOfTwo(from: number, to: number): number[] {
  const out: number[] = [];
  for (let b = from; b <= to; b *= 2) out.push(b);
  return out;
}

/** Label values by label name. */
export type Labels = Readonly<Record<string, string | number>>;

/** One value of a collected family. */
export interface Sample {
  labels?: Labels;
  value: number;
}

/** Something that takes observations (a {@link HistogramCell}, or nothing). */
export interface Observer {
  observe(value: number): void;
}

/** What prom-client's registry reads from a metric (its `get()` contract). */
interface MetricValue {
  labels?: Labels;
  value: number;
  metricName?: string;
}
interface MetricObject {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: MetricValue[];
  aggregator: "sum";
}

/** A name that breaks the conventions of the module comment. */
export class MetricNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MetricNameError";
  }
}

const NAME = /^vectordb_[a-z][a-z0-9_]*[a-z0-9]$/;
const LABEL = /^[a-z][a-z0-9_]*$/;

/** Checks `name` for a family of `type` (see the module comment); throws a MetricNameError. */
export function checkMetricName(name: string, type: MetricObject["type"]): void {
  if (!NAME.test(name) || name.includes("__")) {
    throw new MetricNameError(`Metric name "${name}" must be vectordb_ and lower snake case`);
  }
  if (type === "counter" && !name.endsWith("_total")) {
    throw new MetricNameError(`Counter "${name}" must end in _total`);
  }
  if (type !== "counter" && name.endsWith("_total")) {
    throw new MetricNameError(`${type} "${name}" must not end in _total (counters only)`);
  }
  if (/_(ms|millis|milliseconds|us|kb|mb|kib|mib)(_|$)/.test(name)) {
    throw new MetricNameError(`Metric "${name}" must use base units (_seconds, _bytes)`);
  }
}

/** A counter of one label set: a plain number. */
export class CounterCell {
  value = 0;
  inc(n = 1): void {
    this.value += n;
  }
}

/** A histogram of one label set: per-bucket counts (not cumulative), sum and count. */
export class HistogramCell implements Observer {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

abstract class Family<C> {
  readonly #cells = new Map<string, { labels: Labels; cell: C }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricObject["type"],
    readonly labelNames: readonly string[],
  ) {
    checkMetricName(name, type);
    for (const l of labelNames) {
      if (!LABEL.test(l) || l === "le") {
        throw new MetricNameError(`Label "${l}" of ${name} is not a valid label name`);
      }
    }
  }
  protected abstract make(): C;
  /** The cell of these label values (in `labelNames` order); keep it, it is the same each time. */
  labels(...values: (string | number)[]): C {
    if (values.length !== this.labelNames.length) {
      throw new RangeError(
        `${this.name} takes ${this.labelNames.length} label values (${this.labelNames}); got ` +
          values.length,
      );
    }
    const key = values.join("\u0000");
    let found = this.#cells.get(key);
    if (found === undefined) {
      const labels: Record<string, string | number> = {};
      this.labelNames.forEach((n, i) => (labels[n] = String(values[i])));
      found = { labels, cell: this.make() };
      this.#cells.set(key, found);
    }
    return found.cell;
  }
  protected cells(): Iterable<{ labels: Labels; cell: C }> {
    return this.#cells.values();
  }
  reset(): void {
    this.#cells.clear();
  }
}

/** A counter family updated on the code's paths through cached {@link CounterCell}s. */
export class CounterFamily extends Family<CounterCell> {
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    super(name, help, "counter", labelNames);
  }
  protected make(): CounterCell {
    return new CounterCell();
  }
  get(): MetricObject {
    const values: MetricValue[] = [];
    for (const { labels, cell } of this.cells()) values.push({ labels, value: cell.value });
    return { name: this.name, help: this.help, type: "counter", values, aggregator: "sum" };
  }
}

/** A histogram family updated through cached {@link HistogramCell}s. */
export class HistogramFamily extends Family<HistogramCell> {
  readonly bounds: Float64Array;
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ) {
    super(name, help, "histogram", labelNames);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i] > buckets[i - 1])) {
        throw new RangeError(`Buckets of ${name} must increase: ${buckets}`);
      }
    }
    this.bounds = Float64Array.from(buckets);
  }
  protected make(): HistogramCell {
    return new HistogramCell(this.bounds);
  }
  get(): MetricObject {
    const values: MetricValue[] = [];
    for (const { labels, cell } of this.cells()) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += cell.counts[i];
        const le = i < this.bounds.length ? String(this.bounds[i]) : "+Inf";
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: this.bucket });
      }
      values.push({ labels, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: cell.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: "histogram", values, aggregator: "sum" };
  }
  private get bucket(): string {
    return `${this.name}_bucket`;
  }
}

/** A gauge or counter read from existing state when scraped. */
export class CollectedFamily {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
    readonly collect: () => Iterable<Sample>,
  ) {
    checkMetricName(name, type);
  }
  get(): MetricObject {
    const values: MetricValue[] = [];
    for (const s of this.collect()) {
      if (Number.isFinite(s.value)) values.push({ labels: s.labels ?? {}, value: s.value });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: "sum" };
  }
  reset(): void {}
}

/** One process's metrics: a prom-client registry holding the families of this module. */
export class Metrics {
  readonly registry: Registry = new Registry();
  readonly #families = new Map<string, CounterFamily | HistogramFamily | CollectedFamily>();

  #add<F extends CounterFamily | HistogramFamily | CollectedFamily>(f: F): F {
    if (this.#families.has(f.name)) throw new MetricNameError(`Metric ${f.name} is defined twice`);
    this.#families.set(f.name, f);
    // deno-lint-ignore no-explicit-any
    this.registry.registerMetric(f as any);
    return f;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): CounterFamily {
    return this.#add(new CounterFamily(name, help, labelNames));
  }

  histogram(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ): HistogramFamily {
    return this.#add(new HistogramFamily(name, help, labelNames, buckets));
  }

  /** A gauge whose samples `collect` returns at scrape time. */
  gauge(name: string, help: string, collect: () => Iterable<Sample>): CollectedFamily {
    return this.#add(new CollectedFamily(name, help, "gauge", collect));
  }

  /** A counter read at scrape time from a counter the code already keeps. */
  counterFrom(name: string, help: string, collect: () => Iterable<Sample>): CollectedFamily {
    return this.#add(new CollectedFamily(name, help, "counter", collect));
  }

  /** Adds prom-client's default process and Node.js metrics (standard, unprefixed names). */
  processMetrics(): void {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Names of the vectordb families, sorted. */
  names(): string[] {
    return [...this.#families.keys()].sort();
  }

  /** The text exposition of every family. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * Requests and their latency by `method` and `code` (a status), as the servers count them: one
 * counter and one histogram, a cached cell pair per (method, code).
 */
export class RequestMetrics {
  readonly requests: CounterFamily;
  readonly duration: HistogramFamily;
  readonly #cells = new Map<string, Map<number | string, [CounterCell, HistogramCell]>>();

  constructor(
    metrics: Metrics,
    prefix: string,
    what: string,
    readonly codeName: (code: number) => string,
    extra_labels: readonly string[] = [],
  ) {
    const labels = ["method", ...extra_labels, "code"];
    this.requests = metrics.counter(`${prefix}_requests_total`, `${what}, by ${labels}`, labels);
    this.duration = metrics.histogram(
      `${prefix}_request_duration_seconds`,
      `Latency of ${what}, by ${labels}`,
      labels,
      LATENCY_BUCKETS,
    );
  }

  /** The recorder of one method (with its extra label values): look it up once, keep it. */
  method(method: string, ...extra: string[]): (code: number, seconds: number) => void {
    const key = [method, ...extra].join("\u0000");
    let byCode = this.#cells.get(key);
    if (byCode === undefined) this.#cells.set(key, byCode = new Map());
    const cells = byCode;
    return (code, seconds) => {
      let pair = cells.get(code);
      if (pair === undefined) {
        const name = this.codeName(code);
        pair = [
          this.requests.labels(method, ...extra, name),
          this.duration.labels(method, ...extra, name),
        ];
        cells.set(code, pair);
      }
      pair[0].value++;
      pair[1].observe(seconds);
    };
  }
}
