/**
 * An HNSW index whose searches and inserts run on several threads over one shared graph
 * ({@link SharedGraph}, shared_graph.ts): a pool of `node:worker_threads` workers
 * (graph_worker.ts), each with its own kernel instance over the one shared WASM memory.
 *
 * Roles:
 * - This object (the owner, on the caller's thread) is the single writer of everything but
 *   link lists: the id map, slot allocation, vectors, levels (from the seeded generator, in
 *   insert order, so a build is reproducible), labels, deletes and growth. Upserts of one id
 *   therefore stay in call order.
 * - {@link addBatch} writes a batch's vectors, then lets `buildThreads` threads link its
 *   fresh slots in parallel (slot locks, see shared_graph.ts); one build thread links on the
 *   caller's thread, in order, giving exactly the graph HnswIndex builds from the same seed.
 * - {@link search} runs on the caller's thread; {@link searchBatch} / {@link searchAsync}
 *   split queries across `searchThreads` workers (1: the caller's thread). Both are safe
 *   while a batch is being linked or the owner adds points: they never return a slot whose
 *   insert has not finished.
 *
 * Limits: no compaction (deletes leave tombstones that stay navigable, as HnswIndex before
 * compaction), no int8 quantization, no filtered search, no serialisation: the node's
 * collections still use {@link HnswIndex}; this is the layer the `--search-threads` /
 * `--build-threads` flags size.
 *
 * @example
 * ```ts
 * import { ThreadedHnsw } from "./threaded_hnsw.ts";
 * const index = await ThreadedHnsw.create({ dim: 2, searchThreads: 2, buildThreads: 2 });
 * await index.addBatch([1, 2], new Float32Array([0, 0, 1, 1]));
 * console.log((await index.searchAsync([0.9, 0.9], 1))[0].id); // 2
 * await index.close();
 * ```
 * @module
 */
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import process from "node:process";
import type { Metric } from "../kernels/kernels.ts";
import { IdMap } from "./id_map.ts";
import type { Hit } from "./hnsw.ts";
import { MAX_EF, MAX_K, MAX_M, validateId, validateVector } from "./hnsw.ts";
import { CapacityError, growMemory } from "./vector_store.ts";
import {
  createLayout,
  type GraphLayout,
  H_CAPACITY,
  H_LINK_END,
  H_LINK_NEXT,
  H_SIZE,
  H_UPPER_USED,
  MAX_GRAPH_THREADS,
  MAX_LEVEL,
  SharedGraph,
  STATE_DELETED,
  STATE_PENDING,
} from "./shared_graph.ts";

/** Options of {@link ThreadedHnsw.create}. */
export interface ThreadedHnswOptions {
  dim: number;
  metric?: Metric;
  /** Links per node above layer 0 (2M on layer 0). Default 16. */
  M?: number;
  /** Default 200. */
  efConstruction?: number;
  /** Default search ef (raised to k). Default 64. */
  ef?: number;
  /** Level generator seed (as HnswIndex). Default 42. */
  seed?: number;
  /** Slots to reserve up front. Default 1024. */
  capacity?: number;
  /** Slots the shared buffers may ever hold (reserved address space). Default 2^22. */
  maxCapacity?: number;
  /** Threads that search in {@link ThreadedHnsw.searchBatch}; 1: the caller's. Default: the cores. */
  searchThreads?: number;
  /** Threads that link in {@link ThreadedHnsw.addBatch}; 1: the caller's. Default: the cores. */
  buildThreads?: number;
}

/** Most results (queries x k) one {@link ThreadedHnsw.searchBatch} may ask for (its shared buffers). */
export const MAX_BATCH_RESULTS = 1 << 24;

/** Thread count default: the cores this process may use. */
export function defaultThreads(): number {
  return Math.max(1, Math.min(MAX_GRAPH_THREADS - 1, availableParallelism()));
}

/** Thrown when a worker reports a failure, or a call comes after {@link ThreadedHnsw.close}. */
export class ThreadPoolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ThreadPoolError";
  }
}

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} ${v} must be an integer between ${min} and ${max}`);
  }
  return v;
}

/**
 * The worker script: the `.ts` source beside this file, or `graph_worker.mjs` beside a bundle
 * (scripts/tools/build_js.ts writes it next to `node.mjs`).
 */
export function workerUrl(): URL {
  const here = import.meta.url;
  return here.endsWith(".ts")
    ? new URL("./graph_worker.ts", here)
    : new URL("./graph_worker.mjs", here);
}

interface Pending {
  resolve: (n: number) => void;
  reject: (e: Error) => void;
}

/** One pool thread and its outstanding requests. */
class PoolWorker {
  readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  inFlight = 0;
  private failed: Error | null = null;

  constructor(url: URL) {
    // Node running the TypeScript sources through tsx (as tests run servers): Node 20 does
    // not apply tsx's ESM hooks to a worker's modules, so the worker is an eval'd CommonJS
    // script that installs tsx's in-thread require hook and requires the `.ts` entry. Deno
    // and a bundle (a `.mjs` entry) start the file directly.
    if (url.pathname.endsWith(".ts") && !("Deno" in globalThis)) {
      const tsx = createRequire(url).resolve("tsx/cjs");
      const code = `require(${JSON.stringify(tsx)}); require(${
        JSON.stringify(fileURLToPath(url))
      });`;
      // `--input-type=module` (a parent run with `-e`) would make the eval'd script a module.
      const execArgv = process.execArgv.filter((a) => !a.startsWith("--input-type"));
      this.worker = new Worker(code, { eval: true, execArgv });
    } else {
      this.worker = new Worker(url);
    }
    this.worker.on("message", (m: { op: string; id: number; n: number; message?: string }) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      // Idle workers must not keep the process alive; busy ones must (Node exits otherwise).
      if (--this.inFlight === 0) this.worker.unref();
      if (m.op === "error") p.reject(new ThreadPoolError(`graph worker: ${m.message}`));
      else p.resolve(m.n);
    });
    this.worker.on("error", (e: Error) => this.fail(e));
    this.worker.on("exit", (code: number) => {
      this.fail(new ThreadPoolError(`graph worker exited with code ${code}`));
    });
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.inFlight = 0;
  }

  /** Posts `msg` with a fresh id; resolves with the worker's `n`. */
  request(msg: Record<string, unknown>): Promise<number> {
    if (this.failed !== null) return Promise.reject(this.failed);
    const id = this.nextId++;
    if (this.inFlight++ === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id });
    });
  }

  init(layout: GraphLayout, thread: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onMsg = (m: { op: string; message?: string }) => {
        this.worker.off("message", onMsg);
        if (m.op === "ready") resolve();
        else reject(new ThreadPoolError(`graph worker init: ${m.message}`));
      };
      this.worker.on("message", onMsg);
      this.worker.once("error", reject);
      this.worker.postMessage({ op: "init", layout, thread });
    });
  }
}

/** A multi-threaded HNSW index over shared memory (see the module doc). */
export class ThreadedHnsw {
  readonly dim: number;
  readonly metric: Metric;
  readonly M: number;
  readonly efConstruction: number;
  ef: number;
  readonly searchThreads: number;
  readonly buildThreads: number;
  /** The owner's handle (thread 0). */
  readonly graph: SharedGraph;
  private readonly layout: GraphLayout;
  private readonly workers: PoolWorker[];
  private readonly ids: IdMap;
  private readonly mL: number;
  private rng: number;
  private size = 0;
  private capacity = 0;
  private live = 0;
  private f32: Float32Array;
  private linking = false;
  private closed = false;
  private nextWorker = 0;
  /** Slots each thread linked in the last {@link addBatch} (one entry per thread used). */
  lastLinked: number[] = [];

  private constructor(o: ThreadedHnswOptions, layout: GraphLayout, workers: PoolWorker[]) {
    this.dim = o.dim;
    this.metric = layout.metric;
    this.M = layout.M;
    this.efConstruction = layout.efConstruction;
    this.ef = checkInt("ef", o.ef ?? 64, 1, MAX_EF);
    this.searchThreads = o.searchThreads ?? defaultThreads();
    this.buildThreads = o.buildThreads ?? defaultThreads();
    this.layout = layout;
    this.workers = workers;
    this.graph = new SharedGraph(layout, 0);
    this.ids = new IdMap(o.capacity ?? 1024);
    this.mL = 1 / Math.log(this.M);
    this.rng = (o.seed ?? 42) >>> 0 || 1;
    this.f32 = new Float32Array(layout.memory.buffer);
    this.reserve(checkInt("capacity", o.capacity ?? 1024, 0, layout.maxCapacity));
  }

  /** Builds the shared layout and starts `max(searchThreads, buildThreads)` workers (none when both are 1). */
  static async create(o: ThreadedHnswOptions): Promise<ThreadedHnsw> {
    const dim = checkInt("dim", o.dim, 1, 65536);
    const metric = o.metric ?? "l2";
    if (metric !== "l2" && metric !== "cosine" && metric !== "dot") {
      throw new TypeError(`Unknown metric "${metric}"; expected one of l2, cosine, dot`);
    }
    const maxThreads = MAX_GRAPH_THREADS - 1;
    const st = checkInt("searchThreads", o.searchThreads ?? defaultThreads(), 1, maxThreads);
    const bt = checkInt("buildThreads", o.buildThreads ?? defaultThreads(), 1, maxThreads);
    const nWorkers = st === 1 && bt === 1 ? 0 : Math.max(st, bt);
    const layout = createLayout({
      dim,
      metric,
      M: checkInt("M", o.M ?? 16, 2, MAX_M),
      efConstruction: checkInt("efConstruction", o.efConstruction ?? 200, 1, MAX_EF),
      maxCapacity: checkInt("maxCapacity", o.maxCapacity ?? 1 << 22, 1, 1 << 28),
      threads: 1 + nWorkers,
    });
    const workers: PoolWorker[] = [];
    const url = workerUrl();
    try {
      for (let i = 0; i < nWorkers; i++) workers.push(new PoolWorker(url));
      await Promise.all(workers.map((w, i) => w.init(layout, i + 1)));
    } catch (e) {
      await Promise.all(workers.map((w) => w.worker.terminate()));
      throw e;
    }
    for (const w of workers) w.worker.unref();
    return new ThreadedHnsw({ ...o, searchThreads: st, buildThreads: bt }, layout, workers);
  }

  /** Live points. */
  get count(): number {
    return this.live;
  }

  /** Worker threads in the pool. */
  get workerCount(): number {
    return this.workers.length;
  }

  /** Makes room for `n` slots: grows every shared buffer and the memory in place. */
  reserve(n: number): void {
    if (n <= this.capacity) return;
    const L = this.layout;
    if (n > L.maxCapacity) {
      throw new CapacityError(`${n} slots pass the index's maxCapacity ${L.maxCapacity}`);
    }
    const M0 = 2 * this.M;
    growMemory(
      L.memory,
      this.graph.vectorsPtr + n * this.graph.strideBytes,
      `${n} vectors of dimension ${this.dim}`,
    );
    this.f32 = new Float32Array(L.memory.buffer);
    const grow = (b: SharedArrayBuffer, bytes: number) => {
      // deno-lint-ignore no-explicit-any
      if (b.byteLength < bytes) (b as any).grow(bytes);
    };
    grow(L.links0, n * (M0 + 1) * 4);
    grow(L.upperOff, n * 4);
    grow(L.levels, n);
    grow(L.states, n);
    grow(L.labels, n * 4);
    grow(L.seq, n * 4);
    this.capacity = n;
    this.graph.refreshViews();
    Atomics.store(this.graph.header, H_CAPACITY, n);
  }

  private randomLevel(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    const u = (this.rng + 1) / 4294967297;
    return Math.min(MAX_LEVEL, Math.floor(-Math.log(u) * this.mL));
  }

  /**
   * Takes a fresh slot for `id` (deleting an older one), writes its vector (from `src` at
   * `offset`), level, label and upper block; the slot is pending until linked.
   */
  private place(id: number, src: ArrayLike<number>, offset: number): number {
    const g = this.graph;
    const old = this.ids.get(id);
    if (old >= 0) {
      this.ids.delete(id);
      Atomics.store(g.states, old, STATE_DELETED);
      this.live--;
    }
    if (this.size === this.capacity) this.reserve(Math.max(1024, Math.ceil(this.capacity * 1.5)));
    const slot = this.size++;
    const f32 = this.f32;
    const base = g.ptr(slot) >>> 2;
    for (let i = 0; i < this.dim; i++) f32[base + i] = src[offset + i];
    for (let i = this.dim; i < g.stride; i++) f32[base + i] = 0;
    if (this.metric === "cosine") g.kernels.normalize(g.ptr(slot), g.stride);
    const level = this.randomLevel();
    g.levels[slot] = level;
    g.labels[slot] = id;
    g.links0[slot * (2 * this.M + 1)] = 0;
    if (level > 0) this.allocUpper(slot, level);
    Atomics.store(g.states, slot, STATE_PENDING);
    this.ids.set(id, slot);
    this.live++;
    return slot;
  }

  private allocUpper(slot: number, level: number): void {
    const L = this.layout;
    const g = this.graph;
    const words = level * (this.M + 1);
    const used = g.header[H_UPPER_USED];
    const need = (used + words) * 4;
    if (need > L.upper.byteLength) {
      // deno-lint-ignore no-explicit-any
      const max = (L.upper as any).maxByteLength as number;
      if (need > max) throw new CapacityError(`upper-layer pool needs ${need} bytes of ${max}`);
      // deno-lint-ignore no-explicit-any
      (L.upper as any).grow(Math.min(max, Math.max(need, L.upper.byteLength * 2, 65536)));
      g.refreshViews();
    }
    g.upperOff[slot] = used;
    for (let l = 0; l < level; l++) g.upper[used + l * (this.M + 1)] = 0;
    Atomics.store(g.header, H_UPPER_USED, used + words);
  }

  /** Inserts or replaces `id` on this thread (searches elsewhere may run meanwhile). */
  add(id: number, vector: ArrayLike<number>): void {
    this.checkOpen();
    if (this.linking) {
      throw new ThreadPoolError("add: a batch is being linked; await addBatch first");
    }
    validateId(id);
    validateVector(vector, this.dim);
    const slot = this.place(id, vector, 0);
    Atomics.store(this.graph.header, H_SIZE, this.size);
    this.graph.link(slot);
  }

  /**
   * Inserts or replaces the points `ids[i]` with vectors `vectors[i*dim ..]`, linking the
   * fresh slots on `buildThreads` threads. A repeated id in one batch keeps its last vector.
   */
  async addBatch(ids: ArrayLike<number>, vectors: Float32Array): Promise<void> {
    this.checkOpen();
    if (this.linking) throw new ThreadPoolError("addBatch: a batch is already being linked");
    const n = ids.length;
    if (vectors.length !== n * this.dim) {
      throw new RangeError(
        `vectors has ${vectors.length} floats; ${n} ids of dimension ${this.dim} need ${
          n * this.dim
        }`,
      );
    }
    for (let i = 0; i < n; i++) {
      validateId(ids[i]);
      for (let j = 0; j < this.dim; j++) {
        const x = vectors[i * this.dim + j];
        if (!Number.isFinite(x)) throw new RangeError(`vectors[${i * this.dim + j}] is ${x}`);
      }
    }
    if (n === 0) return;
    this.reserve(this.size + n);
    const start = this.size;
    for (let i = 0; i < n; i++) this.place(ids[i], vectors, i * this.dim);
    const h = this.graph.header;
    Atomics.store(h, H_SIZE, this.size);
    Atomics.store(h, H_LINK_END, this.size);
    Atomics.store(h, H_LINK_NEXT, start);
    const threads = Math.min(this.buildThreads, this.workers.length);
    if (this.buildThreads === 1 || threads === 0) {
      this.lastLinked = [this.graph.linkBatch()];
      return;
    }
    this.linking = true;
    try {
      this.lastLinked = await Promise.all(
        this.workers.slice(0, threads).map((w) => w.request({ op: "link" })),
      );
    } finally {
      this.linking = false;
    }
  }

  /** Marks `id` deleted (a tombstone, still navigable); returns whether it was present. */
  delete(id: number): boolean {
    this.checkOpen();
    validateId(id);
    const slot = this.ids.delete(id);
    if (slot < 0) return false;
    Atomics.store(this.graph.states, slot, STATE_DELETED);
    this.live--;
    return true;
  }

  private resolveEf(k: number, ef: number | undefined): number {
    checkInt("k", k, 1, MAX_K);
    if (ef === undefined) return Math.max(this.ef, k);
    checkInt("ef", ef, 1, MAX_EF);
    if (ef < k) throw new RangeError(`ef ${ef} must be at least k ${k}`);
    return ef;
  }

  private toHits(ids: Uint32Array, dist: Float32Array, off: number, n: number): Hit[] {
    const out: Hit[] = new Array(n);
    const l2 = this.metric === "l2";
    for (let j = 0; j < n; j++) {
      const d = dist[off + j];
      out[j] = { id: ids[off + j], distance: l2 ? Math.sqrt(d) : d };
    }
    return out;
  }

  /** The k nearest live points, searched on the caller's thread. */
  search(query: ArrayLike<number>, k: number, ef?: number): Hit[] {
    this.checkOpen();
    validateVector(query, this.dim, "query");
    const e = this.resolveEf(k, ef);
    const g = this.graph;
    g.setQuery(query);
    const n = g.search(k, e);
    return this.toHits(g.hits.ids, g.hits.distances, 0, n);
  }

  /** One query on the least busy worker (the caller's thread when searchThreads is 1). */
  async searchAsync(query: ArrayLike<number>, k: number, ef?: number): Promise<Hit[]> {
    if (this.searchThreads === 1 || this.workers.length === 0) return this.search(query, k, ef);
    validateVector(query, this.dim, "query");
    const q = new Float32Array(new SharedArrayBuffer(this.dim * 4));
    q.set(query);
    return (await this.searchBatch(q, k, ef))[0];
  }

  /**
   * Searches `queries.length / dim` queries, split in contiguous runs across `searchThreads`
   * workers; the queries are copied once into a shared buffer (or used in place when they
   * already are one) and the results come back through shared arrays. `threads` (at most the
   * pool's size) overrides `searchThreads` for this call.
   */
  async searchBatch(
    queries: Float32Array,
    k: number,
    ef?: number,
    threads: number = this.searchThreads,
  ): Promise<Hit[][]> {
    this.checkOpen();
    checkInt("threads", threads, 1, MAX_GRAPH_THREADS - 1);
    const e = this.resolveEf(k, ef);
    const dim = this.dim;
    if (queries.length % dim !== 0) {
      throw new RangeError(
        `queries has ${queries.length} floats, not a multiple of dimension ${dim}`,
      );
    }
    const n = queries.length / dim;
    for (let i = 0; i < queries.length; i++) {
      if (!Number.isFinite(queries[i])) throw new RangeError(`queries[${i}] is ${queries[i]}`);
    }
    if (n === 0) return [];
    if (n * k > MAX_BATCH_RESULTS) {
      throw new RangeError(
        `searchBatch: ${n} queries x k ${k} = ${n * k} results pass the limit ${MAX_BATCH_RESULTS}`,
      );
    }
    if (this.workers.length === 0) {
      const out: Hit[][] = new Array(n);
      for (let i = 0; i < n; i++) {
        out[i] = this.search(queries.subarray(i * dim, (i + 1) * dim), k, e);
      }
      return out;
    }
    let q = queries;
    if (!(queries.buffer instanceof SharedArrayBuffer) || queries.byteOffset !== 0) {
      q = new Float32Array(new SharedArrayBuffer(queries.length * 4));
      q.set(queries);
    }
    const ids = new Uint32Array(new SharedArrayBuffer(n * k * 4));
    const distances = new Float32Array(new SharedArrayBuffer(n * k * 4));
    const counts = new Int32Array(new SharedArrayBuffer(n * 4));
    const use = Math.min(threads, this.workers.length, n);
    const jobs: Promise<number>[] = [];
    if (use === 1) {
      // One query (or one thread): the least busy worker, so concurrent callers spread.
      let best = this.workers[this.nextWorker++ % this.workers.length];
      for (const w of this.workers) if (w.inFlight < best.inFlight) best = w;
      jobs.push(
        best.request({
          op: "search",
          queries: q,
          from: 0,
          to: n,
          k,
          ef: e,
          ids,
          distances,
          counts,
        }),
      );
    } else {
      const per = Math.ceil(n / use);
      for (let t = 0; t < use; t++) {
        const from = t * per;
        const to = Math.min(n, from + per);
        if (from >= to) break;
        const w = this.workers[t];
        jobs.push(
          w.request({ op: "search", queries: q, from, to, k, ef: e, ids, distances, counts }),
        );
      }
    }
    await Promise.all(jobs);
    const out: Hit[][] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.toHits(ids, distances, i * k, counts[i]);
    return out;
  }

  /** Whether `id` is in the index (its insert may still be linking). */
  has(id: number): boolean {
    return this.ids.get(id) >= 0;
  }

  private checkOpen(): void {
    if (this.closed) throw new ThreadPoolError("the index is closed");
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
