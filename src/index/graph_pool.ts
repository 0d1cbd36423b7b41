/**
 * A pool of worker threads (`node:worker_threads`, graph_worker.ts) that search and link
 * {@link HnswIndex} graphs in place: every index keeps its graph in shared buffers
 * (shared_graph.ts), each worker holds its own {@link SharedGraph} handle on it, so a search
 * or an insert on a worker reads and writes the very arrays the owner thread uses. One pool
 * serves every index of a process (a node's collections and shards): workers attach an index
 * on its first use and detach it on {@link GraphPool.detach}.
 *
 * | call                         | runs on                         | notes                                   |
 * |------------------------------|---------------------------------|-----------------------------------------|
 * | {@link GraphPool.search}     | the least busy worker           | unfiltered search (float or int8 codes); null: run it on the owner (k > LANE_K, no worker alive) |
 * | {@link GraphPool.addBatch}   | `threads` workers (or the owner for 1) | placeBatch on the owner, link on workers, finishBatch on the owner |
 * | {@link GraphPool.exclusive}  | the owner, searches of the index paused | compaction and anything that frees slots |
 *
 * Roles: the owner (the caller's thread) is the only writer of ids, slots, vectors, levels,
 * deletes and growth; workers only link the fresh slots of a batch and search. Ordering of
 * writes to one id is the owner's (placeBatch in order; the caller applies batches one at a
 * time).
 *
 * Bounds: each index has `lanes` search lanes (graph_lanes.ts); searches beyond them wait in a
 * queue of at most `queue_max`, beyond which {@link SearchQueueFullError} (RESOURCE_EXHAUSTED
 * at the API) is thrown.
 *
 * Failure: a worker that dies (an exception outside the message handler, out of memory,
 * terminate) rejects its searches with {@link ThreadPoolError} (the collection then searches
 * on the owner's thread, so the caller still gets an answer) and is replaced, up to
 * {@link MAX_RESTARTS} times per pool; past that the pool runs with the workers left, and with
 * none every search runs on the owner. A worker that dies while linking may hold a slot lock
 * (an odd seq word) or the global lock: the owner frees them when it learns of the death
 * ({@link recoverLocks}: at once for the global lock, after {@link LOCK_RECOVERY_MS} for a slot
 * lock), so the other threads, which spin on them, go on; once the batch's other workers are
 * done it also releases any lock still taken (the half-written list is kept: its words are
 * valid slots), links the slots nobody claimed and links again the slots the dead worker left
 * pending ({@link HnswIndex.finishBatch}). An exception inside a locked section (the worker
 * lives on) releases its lock on the way out.
 *
 * Runtimes: Deno starts `graph_worker.ts` directly; Node from the bundle starts
 * `build/js/graph_worker.mjs`; Node from the sources through tsx (tests start servers so)
 * cannot start a `.ts` worker (Node 20 does not apply tsx's ESM hooks to a worker's modules),
 * so the worker is an eval'd CommonJS script that installs tsx's in-thread require hook and
 * requires the entry. Idle workers are `unref`ed (they never keep a process alive) and `ref`ed
 * while a request is in flight.
 * @module
 */
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import process from "node:process";
import type { Hit, HnswIndex } from "./hnsw.ts";
import { H_EP_SEQ, H_GLOBAL, MAX_GRAPH_THREADS } from "./shared_graph.ts";
import { LANE_K, laneBytes, type LaneViews, laneViews } from "./graph_lanes.ts";
import type { CodeStore } from "./quantizer.ts";

/** Most worker threads a pool may run (scratch blocks 1..63 of a layout; 0 is the owner's). */
export const MAX_POOL_THREADS = MAX_GRAPH_THREADS - 1;
/** Searches that may wait for a lane, per index, by default. */
export const DEFAULT_QUEUE_MAX = 4096;
/** Workers a pool replaces after failures before it runs with fewer. */
export const MAX_RESTARTS = 16;

/** Thread count default: the cores this process may use, at most {@link MAX_POOL_THREADS}. */
export function defaultThreads(): number {
  return Math.max(1, Math.min(MAX_POOL_THREADS, availableParallelism()));
}

/** A worker failed or the pool is closed. */
export class ThreadPoolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ThreadPoolError";
  }
}

/** More searches wait for an index's workers than the queue holds (RESOURCE_EXHAUSTED). */
export class SearchQueueFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SearchQueueFullError";
  }
}

/** Hits of one search, and what it cost (for metrics). */
export interface PoolSearchResult {
  hits: Hit[];
  /** Candidates scored on layer 0. */
  visited: number;
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

function startWorker(url: URL): Worker {
  if (url.pathname.endsWith(".ts") && !("Deno" in globalThis)) {
    const tsx = createRequire(url).resolve("tsx/cjs");
    const code = `require(${JSON.stringify(tsx)}); require(${JSON.stringify(fileURLToPath(url))});`;
    // `--input-type=module` (a parent run with `-e`) would make the eval'd script a module.
    const execArgv = process.execArgv.filter((a) => !a.startsWith("--input-type"));
    return new Worker(code, { eval: true, execArgv });
  }
  return new Worker(url);
}

interface SearchJob {
  entry: Entry;
  query: ArrayLike<number>;
  k: number;
  ef: number;
  /** Candidates re-ranked of an int8 search (0: a float search). */
  r: number;
  /** Workers it may run on: the first `threads` of the pool (while any of them is alive). */
  threads: number;
  lane: number;
  worker: PoolWorker | null;
  resolve: (r: PoolSearchResult) => void;
  reject: (e: Error) => void;
}

interface LinkJob {
  worker: PoolWorker;
  resolve: (n: number) => void;
  reject: (e: Error) => void;
}

/** One attached index: its lanes and its searches. */
interface Entry {
  key: number;
  index: HnswIndex;
  buf: SharedArrayBuffer;
  lanes: LaneViews;
  /** Free lanes (a stack). */
  free: number[];
  /** The search in each lane. */
  jobs: (SearchJob | null)[];
  waiting: SearchJob[];
  inFlight: number;
  /** {@link GraphPool.exclusive} calls under way (a compaction and a detach may overlap). */
  paused: number;
  /** Those waiting for the searches in flight to end. */
  drained: (() => void)[];
  /** The index's code store the workers were sent (null: none yet). */
  codes: CodeStore | null;
}

class PoolWorker {
  readonly worker: Worker;
  inFlight = 0;
  dead = false;
  /** The worker's module has loaded and listens (its "ready" message came). */
  loaded = false;
  constructor(readonly thread: number, url: URL) {
    this.worker = startWorker(url);
    this.worker.unref();
  }

  post(msg: Record<string, unknown>, counts: boolean): void {
    if (counts && this.inFlight++ === 0) this.worker.ref();
    this.worker.postMessage(msg);
  }

  settled(): void {
    // Idle workers must not keep the process alive; busy ones must (Node exits otherwise).
    if (--this.inFlight === 0) this.worker.unref();
  }
}

/** See the module doc. */
export class GraphPool {
  readonly threads: number;
  readonly queueMax: number;
  private readonly url: URL;
  private readonly workers: PoolWorker[] = [];
  private readonly entries = new Map<number, Entry>();
  private readonly byIndex = new WeakMap<HnswIndex, Entry>();
  /**
   * Indexes {@link detach}ed (their collection closed): never attached again, as nothing would
   * detach them a second time (their shared memory would stay mapped in every worker); their
   * searches and links run on the owner. {@link adopt} lifts it for a collection reopened on
   * the same index.
   */
  private readonly detached = new WeakSet<HnswIndex>();
  private readonly links = new Map<number, LinkJob>();
  private nextKey = 1;
  private nextLink = 1;
  private closed = false;
  /** Workers replaced after a failure so far. */
  restarts = 0;
  private readonly log: (message: string) => void;

  /**
   * A pool of `threads` workers (1 .. {@link MAX_POOL_THREADS}), started on first use (a node
   * that never searches starts none); they load in the background, requests queue meanwhile
   * ({@link ready}: callers that can search on their own thread do so until one has loaded).
   */
  constructor(
    threads: number,
    options: { queue_max?: number; logger?: (message: string) => void; url?: URL } = {},
  ) {
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_POOL_THREADS) {
      throw new RangeError(`threads ${threads} must be an integer between 1 and 63`);
    }
    this.threads = threads;
    this.queueMax = options.queue_max ?? DEFAULT_QUEUE_MAX;
    this.url = options.url ?? workerUrl();
    this.log = options.logger ?? ((m) => console.error(m));
  }

  private started = false;

  private start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    for (let t = 1; t <= this.threads; t++) this.workers.push(this.spawn(t));
  }

  /** Workers alive now (starting the pool on first use). */
  get alive(): number {
    this.start();
    let n = 0;
    for (const w of this.workers) if (!w.dead) n++;
    return n;
  }

  private startQueued = false;

  /**
   * True once a worker has loaded and can take searches at once. A caller that can search on
   * its own thread does so while this is false: a worker's start-up (a thread, Node's
   * bootstrap, the module: tens of milliseconds of CPU) would else delay the first searches
   * after a start, which the owner answers in a few milliseconds. The first call starts the
   * pool, from the event loop's next turn (`setImmediate`): the search that asked is answered
   * first, not behind the threads' start-up on a busy machine.
   */
  get ready(): boolean {
    if (!this.started && !this.startQueued) {
      this.startQueued = true;
      setImmediate(() => this.start());
    }
    for (const w of this.workers) if (w.loaded && !w.dead) return true;
    return false;
  }

  private readyWaiters: (() => void)[] = [];

  /** Resolves once {@link ready} is true or the pool is closed (starting the pool now). */
  whenReady(): Promise<void> {
    this.start();
    if (this.ready || this.closed) return Promise.resolve();
    // Idle workers are unref'ed: a waiter keeps the process alive until one has loaded.
    for (const w of this.workers) if (!w.dead) w.worker.ref();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /** The worker threads (for tests that make one fail). */
  get threadHandles(): Worker[] {
    return this.workers.map((w) => w.worker);
  }

  private spawn(thread: number): PoolWorker {
    const w = new PoolWorker(thread, this.url);
    w.worker.on(
      "message",
      (m: { op: string; key: number; id: number; n: number; message?: string }) =>
        this.onMessage(w, m),
    );
    w.worker.on("error", (e: Error) => this.onDeath(w, e));
    w.worker.on("exit", (code: number) => {
      this.onDeath(w, new ThreadPoolError(`graph worker ${thread} exited with code ${code}`));
    });
    for (const e of this.entries.values()) this.attachTo(w, e);
    if (this.readyWaiters.length > 0) w.worker.ref();
    return w;
  }

  private attachTo(w: PoolWorker, e: Entry): void {
    w.post({
      op: "attach",
      key: e.key,
      layout: e.index.layout,
      lanes: e.buf,
      thread: w.thread,
    }, false);
    if (e.codes !== null) w.post({ op: "codes", key: e.key, codes: e.codes.layout }, false);
  }

  private entry(index: HnswIndex): Entry | null {
    if (this.detached.has(index)) return null; // also while detach waits for its searches
    let e = this.byIndex.get(index);
    if (e !== undefined) return e;
    const lanes = Math.min(1024, 16 * this.threads);
    const buf = new SharedArrayBuffer(laneBytes(lanes, index.dim));
    e = {
      key: this.nextKey++,
      index,
      buf,
      lanes: laneViews(buf, index.dim),
      free: Array.from({ length: lanes }, (_, i) => lanes - 1 - i),
      jobs: new Array(lanes).fill(null),
      waiting: [],
      inFlight: 0,
      paused: 0,
      drained: [],
      codes: null,
    };
    this.entries.set(e.key, e);
    this.byIndex.set(index, e);
    // Compaction frees slots: with searches on other threads it must wait for them
    // (exclusive, compactIfDue); the owner calls that between writes.
    index.deferCompaction = true;
    for (const w of this.workers) if (!w.dead) this.attachTo(w, e);
    return e;
  }

  /**
   * The k nearest live points of `index` to `query` (validated by the caller; `ef` >= k),
   * searched on a worker; null when the pool cannot take it (k above {@link LANE_K}, no worker
   * alive, pool closed, index detached): the caller searches on its own thread. Throws
   * {@link SearchQueueFullError} when the index's queue is full. `threads`: the workers it may
   * use (the node's `--search-threads` when the pool is larger for `--build-threads`).
   * An index with trained int8 codes is searched over them and re-ranks `max(k, rescore * k)`
   * candidates (`rescore`: the index's by default), exactly as {@link HnswIndex.search}.
   */
  search(
    index: HnswIndex,
    query: ArrayLike<number>,
    k: number,
    ef: number,
    threads: number = this.threads,
    rescore: number = index.rescore,
  ): Promise<PoolSearchResult> | null {
    if (this.closed || k > LANE_K || this.alive === 0) return null;
    const e = this.entry(index);
    if (e === null) return null;
    const codes = index.codes;
    if (codes !== e.codes) {
      // The quantizer trained (or the index loaded codes) since the workers last heard: they
      // get the code store before this search (a worker handles its messages in order).
      e.codes = codes;
      if (codes !== null) {
        for (const w of this.workers) {
          if (!w.dead) w.post({ op: "codes", key: e.key, codes: codes.layout }, false);
        }
      }
    }
    const r = codes === null ? 0 : Math.max(k, rescore * k);
    if (e.waiting.length >= this.queueMax) {
      throw new SearchQueueFullError(
        `search queue of the index is full (${this.queueMax} searches waiting for ` +
          `${this.threads} search threads)`,
      );
    }
    return new Promise((resolve, reject) => {
      const job: SearchJob = {
        entry: e,
        query,
        k,
        ef,
        r,
        threads,
        lane: -1,
        worker: null,
        resolve,
        reject,
      };
      if (e.paused > 0 || e.free.length === 0) e.waiting.push(job);
      else this.dispatch(job);
    });
  }

  private dispatch(job: SearchJob): void {
    const e = job.entry;
    let best: PoolWorker | null = null;
    const ws = this.workers;
    for (let i = 0; i < ws.length && i < job.threads; i++) {
      const w = ws[i];
      if (!w.dead && (best === null || w.inFlight < best.inFlight)) best = w;
    }
    // All of its own dead: any worker alive.
    for (const w of ws) if (best === null && !w.dead) best = w;
    if (best === null) {
      job.reject(new ThreadPoolError("no graph worker is alive"));
      return;
    }
    const lane = e.free.pop()!;
    const v = e.lanes;
    const q = job.query;
    const base = lane * v.stride;
    const dim = e.index.dim;
    for (let i = 0; i < dim; i++) v.queries[base + i] = q[i];
    job.lane = lane;
    job.worker = best;
    e.jobs[lane] = job;
    e.inFlight++;
    best.post({ op: "search", key: e.key, lane, k: job.k, ef: job.ef, r: job.r }, true);
  }

  private release(e: Entry, lane: number): void {
    e.jobs[lane] = null;
    e.free.push(lane);
    e.inFlight--;
    if (e.paused > 0) {
      if (e.inFlight === 0) { for (const resolve of e.drained.splice(0)) resolve(); }
      return;
    }
    while (e.waiting.length > 0 && e.free.length > 0 && this.alive > 0) {
      this.dispatch(e.waiting.shift()!);
    }
  }

  private onMessage(
    w: PoolWorker,
    m: { op: string; key: number; id: number; n: number; message?: string },
  ): void {
    if (m.op === "ready") {
      w.loaded = true;
      if (this.readyWaiters.length > 0) {
        for (const x of this.workers) if (x.inFlight === 0) x.worker.unref();
        for (const resolve of this.readyWaiters.splice(0)) resolve();
      }
      return;
    }
    if (m.id < 0) {
      // An attach that failed: the index's searches on this worker would fail too.
      this.log(`graph worker ${w.thread}: ${m.message}`);
      return;
    }
    w.settled();
    const e = this.entries.get(m.key);
    if (m.id >= LINK_ID_BASE) {
      const job = this.links.get(m.id);
      if (job === undefined) return;
      this.links.delete(m.id);
      if (m.op === "error") job.reject(new ThreadPoolError(`graph worker: ${m.message}`));
      else job.resolve(m.n);
      return;
    }
    if (e === undefined) return;
    const job = e.jobs[m.id];
    if (job === null || job === undefined || job.worker !== w) return;
    if (m.op === "error") {
      this.release(e, m.id);
      job.reject(new ThreadPoolError(`graph worker: ${m.message}`));
      return;
    }
    const v = e.lanes;
    const n = v.meta[2 * m.id];
    const visited = v.meta[2 * m.id + 1];
    const hits: Hit[] = new Array(n);
    const l2 = e.index.metric === "l2";
    const base = m.id * LANE_K;
    for (let j = 0; j < n; j++) {
      const d = v.distances[base + j];
      hits[j] = { id: v.ids[base + j], distance: l2 ? Math.sqrt(d) : d };
    }
    this.release(e, m.id);
    job.resolve({ hits, visited });
  }

  private onDeath(w: PoolWorker, cause: Error): void {
    if (w.dead) return;
    w.dead = true;
    w.inFlight = 0;
    w.worker.unref();
    const err = cause instanceof ThreadPoolError
      ? cause
      : new ThreadPoolError(`graph worker ${w.thread} failed: ${cause.message}`);
    for (const [id, job] of this.links) {
      if (job.worker !== w) continue;
      this.links.delete(id);
      job.reject(err);
    }
    for (const e of this.entries.values()) {
      for (let lane = 0; lane < e.jobs.length; lane++) {
        const job = e.jobs[lane];
        if (job === null || job.worker !== w) continue;
        this.release(e, lane);
        job.reject(err);
      }
    }
    for (const e of this.entries.values()) recoverLocks(e.index, w.thread, this.log);
    if (this.closed) return;
    const at = this.workers.indexOf(w);
    if (this.restarts < MAX_RESTARTS && at >= 0) {
      this.restarts++;
      this.log(`${err.message}; starting a replacement (${this.restarts} of ${MAX_RESTARTS})`);
      this.workers[at] = this.spawn(w.thread);
    } else {
      this.log(`${err.message}; ${this.alive} graph workers left`);
    }
    // Searches that waited for a lane fail over to the owner when no worker is left.
    if (this.alive === 0) {
      for (const resolve of this.readyWaiters.splice(0)) resolve();
      for (const e of this.entries.values()) {
        for (const job of e.waiting.splice(0)) job.reject(err);
      }
    }
  }

  /**
   * Inserts or replaces `ids[i]` with `vectors[i*dim ..]` in `index`: places them on this
   * thread, links them on `threads` workers (this thread alone when `threads` is 1, no worker
   * is alive, or an int8 index not trained yet: then in order, the graph {@link HnswIndex.add}
   * builds),
   * and marks them live. The caller must not change the index until it resolves. Searches
   * may run meanwhile (they skip the pending slots).
   */
  async addBatch(
    index: HnswIndex,
    ids: ArrayLike<number>,
    vectors: ArrayLike<number>,
    threads: number,
  ): Promise<void> {
    const n = ids.length;
    const use = this.closed || this.detached.has(index)
      ? 1
      : Math.min(threads, this.alive, Math.ceil(n / 8));
    if (!index.batchable || use <= 1) {
      // In order on this thread: exactly the graph add() in a loop builds.
      const dim = index.dim;
      if (vectors.length !== n * dim) {
        throw new RangeError(
          `vectors has ${vectors.length} floats; ${n} ids of dimension ${dim} need ${n * dim}`,
        );
      }
      for (let i = 0; i < n; i++) {
        index.add(ids[i], Array.prototype.slice.call(vectors, i * dim, (i + 1) * dim));
      }
      return;
    }
    index.placeBatch(ids, vectors);
    const e = this.entry(index)!; // not detached (above)
    const jobs: Promise<number>[] = [];
    for (const w of this.workers) {
      if (jobs.length === use) break;
      if (w.dead) continue;
      const id = LINK_ID_BASE + (this.nextLink++ % LINK_ID_SPAN);
      jobs.push(
        new Promise<number>((resolve, reject) => {
          this.links.set(id, { worker: w, resolve, reject });
          w.post({ op: "link", key: e.key, id }, true);
        }),
      );
    }
    const results = await Promise.allSettled(jobs);
    if (results.some((r) => r.status === "rejected")) {
      // A worker died mid-link: every other one is done, so a lock still taken is the dead
      // worker's. Release them; finishBatch links what it left.
      releaseLocks(index);
      this.log("graph worker failed while linking a batch; the owner finishes the batch");
    }
    index.finishBatch();
  }

  /**
   * Runs `fn` (synchronous, on this thread) with no search of `index` in flight on a worker:
   * new searches wait until it returns. For compaction, which frees slots.
   */
  async exclusive<T>(index: HnswIndex, fn: () => T): Promise<T> {
    const e = this.byIndex.get(index);
    if (e === undefined) return fn();
    e.paused++;
    try {
      if (e.inFlight > 0) await new Promise<void>((resolve) => e.drained.push(resolve));
      return fn();
    } finally {
      e.paused--;
      while (e.paused === 0 && e.waiting.length > 0 && e.free.length > 0 && this.alive > 0) {
        this.dispatch(e.waiting.shift()!);
      }
    }
  }

  /** Runs compaction of `index` if due, with its worker searches quiesced. */
  async compactIfDue(index: HnswIndex): Promise<boolean> {
    if (!index.compactDue()) return false;
    await this.exclusive(index, () => index.compact());
    return true;
  }

  /**
   * Forgets `index` (its collection closed): waits for its searches, detaches workers. It is
   * not attached again (its later searches return null, its batches link on the owner) unless
   * {@link adopt}ed.
   */
  async detach(index: HnswIndex): Promise<void> {
    this.detached.add(index); // later searches answer null (entry)
    const e = this.byIndex.get(index);
    if (e === undefined) return;
    // Paused for good: nothing waiting is sent to a worker any more (exclusive's end would
    // send it, and its answer, coming after the entry is gone, would never settle it).
    // Those waiting fail over to their callers' threads now.
    e.paused++;
    for (const job of e.waiting.splice(0)) job.reject(new ThreadPoolError("the index was closed"));
    if (e.inFlight > 0) await new Promise<void>((resolve) => e.drained.push(resolve));
    for (const job of e.waiting.splice(0)) job.reject(new ThreadPoolError("the index was closed"));
    this.entries.delete(e.key);
    this.byIndex.delete(index);
    for (const w of this.workers) if (!w.dead) w.post({ op: "detach", key: e.key }, false);
  }

  /**
   * Lets a {@link detach}ed `index` be attached again: a collection reopened on it (a unit
   * moved whole, Collection.reopenMoved) owns it and detaches it at its own close.
   */
  adopt(index: HnswIndex): void {
    this.detached.delete(index);
  }

  /** Stops every worker; later searches return null (the owner searches). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const resolve of this.readyWaiters.splice(0)) resolve();
    const err = new ThreadPoolError("the graph pool is closed");
    for (const e of this.entries.values()) {
      for (const job of e.waiting.splice(0)) job.reject(err);
    }
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

/** Link request ids start above every lane number, so one answer map serves both. */
const LINK_ID_BASE = 1 << 20;
const LINK_ID_SPAN = 1 << 20;

/** How long a slot lock a dead worker announced must stay taken before the owner frees it. */
export const LOCK_RECOVERY_MS = 1000;

/**
 * Frees the locks the dead worker `thread` may hold on `index`'s graph, at once (not only at
 * the end of a batch: the other workers would spin on them meanwhile). The global lock's word
 * names its holder, and only its holder moves the entry point: both are freed when the holder
 * is the dead thread. A slot lock is announced (the layout's `held` word) before it is taken;
 * when that slot's seq word is odd and stays unchanged for {@link LOCK_RECOVERY_MS} (a live
 * holder keeps a list lock for microseconds), it was the dead thread's and is released.
 */
function recoverLocks(index: HnswIndex, thread: number, log: (m: string) => void): void {
  const L = index.layout;
  const h = new Int32Array(L.header);
  if (Atomics.load(h, H_GLOBAL) === thread + 1) {
    if ((Atomics.load(h, H_EP_SEQ) & 1) !== 0) Atomics.add(h, H_EP_SEQ, 1);
    Atomics.store(h, H_GLOBAL, 0);
    Atomics.notify(h, H_GLOBAL);
    log(`graph worker ${thread} died holding the global lock: released`);
  }
  const held = new Int32Array(L.held);
  const slot = Atomics.load(held, thread);
  Atomics.store(held, thread, -1);
  if (slot < 0) return;
  const seq = new Int32Array(L.seq);
  const v = Atomics.load(seq, slot);
  if ((v & 1) === 0) return;
  const start = Date.now();
  const poll = () => {
    if (Atomics.load(seq, slot) !== v) return;
    if (Date.now() - start < LOCK_RECOVERY_MS) {
      setTimeout(poll, 50);
      return;
    }
    if (Atomics.compareExchange(seq, slot, v, v + 1) === v) {
      log(`graph worker ${thread} died holding the lock of slot ${slot}: released`);
    }
  };
  setTimeout(poll, 50);
}

/** Releases every lock of `index`'s graph left taken by a dead worker (see the module doc). */
function releaseLocks(index: HnswIndex): void {
  const L = index.layout;
  const seq = new Int32Array(L.seq);
  for (let s = 0; s < seq.length; s++) {
    if ((Atomics.load(seq, s) & 1) !== 0) Atomics.add(seq, s, 1);
  }
  const h = new Int32Array(L.header);
  if ((Atomics.load(h, H_EP_SEQ) & 1) !== 0) Atomics.add(h, H_EP_SEQ, 1);
  Atomics.store(h, H_GLOBAL, 0);
}
