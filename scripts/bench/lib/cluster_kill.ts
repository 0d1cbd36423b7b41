/**
 * The node-failure phase of the cluster benchmark (scripts/bench/bench_cluster.ts).
 *
 * 1. {@link checkRing}: the owners the benchmark computes (the replicas of the point's shard,
 *    harness/placement.ts, with the layout the router reports) must be exactly the nodes that
 *    hold a point:
 *    a few fresh Puts through the router and a sample of loaded ids, each looked up with Get
 *    on every node directly.
 * 2. {@link runKill}: a writer (Puts of new ids, one at a time, at the router's consistency)
 *    and a searcher (one search at a time) run through the router; one node is SIGKILLed
 *    mid-run and restarted (same port and data directory) a few seconds later; the run goes
 *    on for a while after it is back. Then the router's hint queues are waited out, and every
 *    ACKNOWLEDGED write is looked up with Get on each of its owners directly: it must be
 *    found there with the vector written. Unacknowledged writes are counted by where they
 *    landed (a write that reached one owner is hinted to the other, so it usually lands).
 *
 * The benchmark process holds no channel to the victim while it is killed: a Deno gRPC client
 * can abort when its server dies under it (denoland/deno#36788).
 *
 * @module
 */

import { describeGrpcError } from "../../../src/api/client.ts";
/** Who owns a point (the replicas of its shard: harness/placement.ts `CollectionPlacement`). */
export interface PointOwners {
  owners(id: number): readonly string[];
}
import type { Matrix } from "./fvecs.ts";
import {
  type LatencySummary,
  ownClient,
  row,
  type SearchSpec,
  summarise,
} from "./cluster_search.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/**
 * Largest per-component difference between a written vector and the one Get returns: cosine
 * collections store vectors normalised (in float32, by the WASM kernel), which the check
 * redoes in float64; any other vector differs by far more.
 */
const VECTOR_TOLERANCE = 1e-5;

/** The vector a collection stores for `v`: normalised for cosine, float32 either way. */
function stored(v: number[], cosine: boolean): number[] {
  if (!cosine) return v.map(Math.fround);
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm);
  return v.map((x) => (norm > 0 ? x / norm : x));
}

/** Gets `ids` from every node in `nodes` directly; `found[i][j]` for id i on node j. */
async function locate(
  nodes: readonly string[],
  collection: string,
  ids: readonly number[],
  timeout_ms: number,
): Promise<{ found: boolean[][]; vectors: (number[] | null)[][] }> {
  const clients = nodes.map((a) => ownClient(a, timeout_ms));
  const found = ids.map(() => nodes.map(() => false));
  const vectors: (number[] | null)[][] = ids.map(() => nodes.map(() => null));
  try {
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const i = next++;
        await Promise.all(clients.map(async (c, j) => {
          const res = await c.call("Get", { id: ids[i], collection });
          found[i][j] = res.found;
          vectors[i][j] = res.found ? res.vector : null;
        }));
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    for (const c of clients) c.close();
  }
  return { found, vectors };
}

/** Result of {@link checkRing}. */
export interface RingCheck {
  probes: number;
  sampled_loaded: number;
  matching: number;
  mismatches: string[];
}

/**
 * Checks that `ring.owners(id)` are exactly the nodes holding each id: `probes` new points
 * Put through the router (ids from `probe_id_base`) and `sample` loaded ids below `loaded_n`.
 */
export async function checkRing(o: {
  router: string;
  nodes: readonly string[];
  ring: PointOwners;
  replication_factor: number;
  collection: string;
  probe_vector: number[];
  probe_id_base: number;
  probes: number;
  loaded_n: number;
  sample: number;
  timeout_ms: number;
}): Promise<RingCheck> {
  const api = ownClient(o.router, o.timeout_ms);
  const ids: number[] = [];
  try {
    for (let j = 0; j < o.probes; j++) {
      const id = o.probe_id_base + j;
      const res = await api.call("Put", { id, vector: o.probe_vector, collection: o.collection });
      if (!res.ok) throw new Error(`Probe Put of id ${id} was not acknowledged`);
      ids.push(id);
    }
  } finally {
    api.close();
  }
  const step = Math.max(1, Math.floor(o.loaded_n / o.sample));
  for (let j = 0; j < o.sample && j * step < o.loaded_n; j++) ids.push(j * step + (j % step));
  const { found } = await locate(o.nodes, o.collection, ids, o.timeout_ms);
  const mismatches: string[] = [];
  ids.forEach((id, i) => {
    const want = new Set(o.ring.owners(id));
    const have = o.nodes.filter((_, j) => found[i][j]);
    const same = have.length === want.size && have.every((n) => want.has(n));
    if (!same) {
      mismatches.push(`id ${id}: owners [${[...want].join(",")}], held by [${have.join(",")}]`);
    }
  });
  return {
    probes: o.probes,
    sampled_loaded: ids.length - o.probes,
    matching: ids.length - mismatches.length,
    mismatches,
  };
}

/** One write of the writer. */
interface WriteRecord {
  id: number;
  row: number;
  start_ms: number;
  end_ms: number;
  ok: boolean;
  error: string;
}

/** One search of the searcher. */
interface SearchRecord {
  start_ms: number;
  end_ms: number;
  ok: boolean;
  partial: boolean;
  error: string;
}

/** Options of {@link runKill}. */
export interface KillOptions {
  router: string;
  nodes: readonly string[];
  ring: PointOwners;
  replication_factor: number;
  consistency: string;
  /** Index in `nodes` of the node to kill. */
  victim: number;
  collection: string;
  /** Whether the collection's metric is cosine (it stores vectors normalised). */
  cosine: boolean;
  spec: SearchSpec;
  queries: Matrix<Float32Array>;
  /** Vectors to write: rows `source_start`, `source_start + 1`, … of `source`, wrapping. */
  source: Matrix<Float32Array>;
  source_start: number;
  /** Id of the writer's first point; later ones count up. */
  write_id_base: number;
  /** The loaded points are ids 0 … loaded_n − 1 (checked on the victim after its restart). */
  loaded_n: number;
  kill_at_ms: number;
  restart_after_ms: number;
  /** The run lasts at least this long from its start … */
  run_ms: number;
  /** … and at least this long after the victim is back. */
  after_ready_ms: number;
  node_timeout_ms: number;
  call_timeout_ms: number;
  drain_timeout_ms: number;
  kill(i: number): Promise<void>;
  /** Restarts node i; resolves when it serves again. */
  restart(i: number): Promise<void>;
  log(message: string): void;
}

/** Figures of {@link runKill}; times are milliseconds from the start of the run. */
export interface KillResult {
  victim: string;
  kill_ms: number;
  restart_ms: number;
  ready_ms: number;
  end_ms: number;
  restart_to_ready_ms: number;
  drain_ms: number;
  writes: {
    total: number;
    acked: number;
    failed: number;
    failed_by_error: Record<string, number>;
    failed_before_kill: number;
    failed_kill_to_ready: number;
    failed_after_ready: number;
    /** End of the last failed write, ms from the start; NaN when none failed. */
    last_failure_ms: number;
    acked_checked: number;
    acked_missing: number;
    missing_examples: string[];
    /** The first and the last few failed writes, with their errors. */
    failed_examples: string[];
    unacked_on_all_owners: number;
    unacked_on_some_owners: number;
    unacked_on_no_owner: number;
    per_s: number;
  };
  searches: {
    total: number;
    failed: number;
    failed_within_node_timeout_of_kill: number;
    failed_other: number;
    failed_examples: string[];
    partial: number;
    partial_examples: string[];
    per_s: number;
    before_kill: LatencySummary;
    while_down: LatencySummary;
    after_restart: LatencySummary;
  };
  loaded_on_victim_checked: number;
  loaded_on_victim_missing: number;
  hints_pending_after: number;
}

/** The status name of a described gRPC error ("UNAVAILABLE: …" gives "UNAVAILABLE"). */
function errorCode(description: string): string {
  return description.split(":")[0];
}

/** Waits until the router reports every node answering and no hint pending. */
async function drainHints(
  router: string,
  timeout_ms: number,
  log: (m: string) => void,
): Promise<{ ms: number; pending: number }> {
  const api = ownClient(router, 10_000);
  const t0 = performance.now();
  let pending = -1;
  let last_log = 0;
  try {
    while (performance.now() - t0 < timeout_ms) {
      try {
        const s = await api.call("Stats", {});
        pending = 0;
        let answering = true;
        for (const n of s.nodes ?? []) {
          pending += Number(n.hints_pending ?? 0);
          if ((n.error ?? "") !== "") answering = false;
        }
        if (answering && pending === 0) return { ms: performance.now() - t0, pending };
        if (performance.now() - last_log > 5000) {
          last_log = performance.now();
          log(`waiting for hints to drain: ${pending} pending, all nodes answering: ${answering}`);
        }
      } catch (e) {
        log(`Stats failed while waiting for hints: ${describeGrpcError(e)}`);
      }
      await sleep(250);
    }
  } finally {
    api.close();
  }
  return { ms: performance.now() - t0, pending };
}

/** The writer-and-searcher run with one node killed and restarted; see the module doc. */
export async function runKill(o: KillOptions): Promise<KillResult> {
  const victim = o.nodes[o.victim];
  const writes: WriteRecord[] = [];
  const searches: SearchRecord[] = [];
  let stop = false;
  const t0 = performance.now();
  const now = () => performance.now() - t0;

  const writer = (async () => {
    const api = ownClient(o.router, o.call_timeout_ms);
    try {
      for (let i = 0; !stop; i++) {
        const r = (o.source_start + i) % o.source.n;
        const rec: WriteRecord = {
          id: o.write_id_base + i,
          row: r,
          start_ms: now(),
          end_ms: 0,
          ok: false,
          error: "",
        };
        try {
          const res = await api.call("Put", {
            id: rec.id,
            vector: row(o.source, r),
            collection: o.collection,
            consistency: o.consistency,
          });
          rec.ok = res.ok;
          if (!res.ok) rec.error = "NOT_OK";
        } catch (e) {
          rec.error = describeGrpcError(e);
        }
        rec.end_ms = now();
        writes.push(rec);
      }
    } finally {
      api.close();
    }
  })();

  const searcher = (async () => {
    const api = ownClient(o.router, o.call_timeout_ms);
    try {
      for (let i = 0; !stop; i++) {
        const rec: SearchRecord = {
          start_ms: now(),
          end_ms: 0,
          ok: false,
          partial: false,
          error: "",
        };
        try {
          const res = await api.call("Search", {
            vector: row(o.queries, i % o.queries.n),
            ...o.spec,
          });
          rec.ok = true;
          rec.partial = res.partial === true;
          if (res.partial) rec.error = `${res.shards_answered}/${res.shards_total} shards`;
        } catch (e) {
          rec.error = describeGrpcError(e);
        }
        rec.end_ms = now();
        searches.push(rec);
      }
    } finally {
      api.close();
    }
  })();

  let kill_ms = NaN, restart_ms = NaN, ready_ms = NaN;
  try {
    await sleep(o.kill_at_ms - now());
    o.log(`SIGKILL ${victim} at ${(now() / 1000).toFixed(1)} s`);
    kill_ms = now();
    await o.kill(o.victim);
    await sleep(kill_ms + o.restart_after_ms - now());
    restart_ms = now();
    o.log(`restarting ${victim} at ${(restart_ms / 1000).toFixed(1)} s`);
    await o.restart(o.victim);
    ready_ms = now();
    o.log(`${victim} READY at ${(ready_ms / 1000).toFixed(1)} s`);
    await sleep(Math.max(o.run_ms, ready_ms + o.after_ready_ms) - now());
  } finally {
    stop = true;
    await Promise.all([writer, searcher]);
  }
  const end_ms = now();
  o.log(
    `run over at ${(end_ms / 1000).toFixed(1)} s: ${writes.length} writes, ` +
      `${searches.length} searches; waiting for the router's hint queues to drain`,
  );

  const drain = await drainHints(o.router, o.drain_timeout_ms, o.log);
  o.log(`hints drained in ${(drain.ms / 1000).toFixed(1)} s (${drain.pending} pending)`);

  // Every write (acknowledged or not) looked up on every node.
  const ids = writes.map((w) => w.id);
  const { found, vectors } = await locate(o.nodes, o.collection, ids, o.call_timeout_ms);
  let acked_checked = 0, acked_missing = 0;
  let unacked_all = 0, unacked_some = 0, unacked_none = 0;
  const missing_examples: string[] = [];
  writes.forEach((w, i) => {
    const owners = o.ring.owners(w.id).map((a) => o.nodes.indexOf(a));
    const want = stored(row(o.source, w.row), o.cosine);
    const holds = owners.map((j) => {
      const v = vectors[i][j];
      return found[i][j] && v !== null && v.length === want.length &&
        v.every((x, d) => Math.abs(x - want[d]) <= VECTOR_TOLERANCE);
    });
    if (w.ok) {
      acked_checked++;
      holds.forEach((h, k) => {
        if (h) return;
        acked_missing++;
        if (missing_examples.length < 10) {
          missing_examples.push(
            `id ${w.id} (acknowledged at ${(w.end_ms / 1000).toFixed(2)} s) ` +
              `${found[i][owners[k]] ? "has another vector" : "is missing"} on ` +
              `${o.nodes[owners[k]]}`,
          );
        }
      });
    } else if (holds.every((h) => h)) unacked_all++;
    else if (holds.some((h) => h)) unacked_some++;
    else unacked_none++;
  });

  // The victim must still hold the loaded points it owns (WAL replay after SIGKILL).
  const victimIds: number[] = [];
  const stride = Math.max(1, Math.floor(o.loaded_n / 2000));
  for (let id = 0; id < o.loaded_n && victimIds.length < 500; id += stride) {
    if (o.ring.owners(id).includes(victim)) victimIds.push(id);
  }
  const onVictim = await locate([victim], o.collection, victimIds, o.call_timeout_ms);
  const loaded_missing = onVictim.found.filter((f) => !f[0]).length;

  const downEnd = ready_ms;
  const failedWrites = writes.filter((w) => !w.ok);
  const byError: Record<string, number> = {};
  for (const w of failedWrites) {
    const code = errorCode(w.error);
    byError[code] = (byError[code] ?? 0) + 1;
  }
  const writeExample = (w: WriteRecord) =>
    `id ${w.id} ${(w.start_ms / 1000).toFixed(2)}–${(w.end_ms / 1000).toFixed(2)} s: ${w.error}`;
  const whileDown = (r: { start_ms: number; end_ms: number }) =>
    r.end_ms >= kill_ms && r.start_ms <= downEnd;
  const failedSearches = searches.filter((s) => !s.ok);
  const nearKill = (s: SearchRecord) =>
    s.end_ms >= kill_ms && s.start_ms <= kill_ms + o.node_timeout_ms;
  const lat = (pick: (s: SearchRecord) => boolean) =>
    summarise(searches.filter((s) => s.ok && pick(s)).map((s) => s.end_ms - s.start_ms));
  const describe = (s: SearchRecord) =>
    `${(s.start_ms / 1000).toFixed(2)}–${(s.end_ms / 1000).toFixed(2)} s: ${s.error}`;
  const partials = searches.filter((s) => s.partial);
  const span_s = end_ms / 1000;

  return {
    victim,
    kill_ms,
    restart_ms,
    ready_ms,
    end_ms,
    restart_to_ready_ms: ready_ms - restart_ms,
    drain_ms: drain.ms,
    writes: {
      total: writes.length,
      acked: writes.length - failedWrites.length,
      failed: failedWrites.length,
      failed_by_error: byError,
      failed_before_kill: failedWrites.filter((w) => w.end_ms < kill_ms).length,
      failed_kill_to_ready: failedWrites.filter(whileDown).length,
      failed_after_ready: failedWrites.filter((w) => w.start_ms > downEnd).length,
      last_failure_ms: failedWrites.length > 0 ? failedWrites[failedWrites.length - 1].end_ms : NaN,
      acked_checked,
      acked_missing,
      missing_examples,
      failed_examples: [
        ...failedWrites.slice(0, 3),
        ...failedWrites.slice(Math.max(3, failedWrites.length - 3)),
      ].map(writeExample),
      unacked_on_all_owners: unacked_all,
      unacked_on_some_owners: unacked_some,
      unacked_on_no_owner: unacked_none,
      per_s: writes.length / span_s,
    },
    searches: {
      total: searches.length,
      failed: failedSearches.length,
      failed_within_node_timeout_of_kill: failedSearches.filter(nearKill).length,
      failed_other: failedSearches.filter((s) => !nearKill(s)).length,
      failed_examples: failedSearches.slice(0, 10).map(describe),
      partial: partials.length,
      partial_examples: partials.slice(0, 10).map(describe),
      per_s: searches.length / span_s,
      before_kill: lat((s) => s.end_ms < kill_ms),
      while_down: lat((s) => s.end_ms >= kill_ms && s.start_ms <= downEnd),
      after_restart: lat((s) => s.start_ms > downEnd),
    },
    loaded_on_victim_checked: victimIds.length,
    loaded_on_victim_missing: loaded_missing,
    hints_pending_after: drain.pending,
  };
}
