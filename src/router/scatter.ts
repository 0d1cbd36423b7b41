/**
 * The router's fan-out reads over a {@link NodePort}: Search (one replica per shard, chosen by
 * search_plan.ts from the latency and load replica_stats.ts tracks, hedged when slow, retried
 * on the next replica when it fails; gather, merge, report coverage; concurrent node searches
 * travel together through search_coalescer.ts), ListCollections (union) and the per-node part
 * of Stats. Decisions are the pure functions of plan.ts and
 * search_plan.ts.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { describeGrpcError, type ResponseOf } from "../api/client.ts";
import {
  type CollectionInfo,
  type CollectionStats,
  type FieldIndex,
  type NodeStats,
  type SearchResult,
  vectorToWire,
} from "../api/proto.ts";
import type { ValidSearch } from "../api/validate.ts";
import {
  type CancellableSleep,
  isNotFound,
  isTransient,
  type NodePort,
  type RouterClock,
  RouterStatusError,
  SYSTEM_CLOCK,
} from "./node_port.ts";
import type { NodeTable } from "./node_table.ts";
import { mergeSearchResults, resultId } from "./plan.ts";
import { shardOf } from "../common/shard.ts";
import type { RingView } from "./ring_view.ts";
import type { Placement, ShardLayout } from "../cluster/placement.ts";
import { ReplicaStats } from "./replica_stats.ts";
import { batchable, COALESCE_BATCH_MAX, SearchCoalescer } from "./search_coalescer.ts";
import {
  AFFINITY_RATIO,
  coverByHolders,
  groupByNode,
  hedgeDelayMs,
  nextReplica,
  type NodeShards,
  planSearch,
} from "./search_plan.ts";

/** Deadline of a call that waits for a reconnecting channel: the reconnect backoff cap + 200. */
export function retryTimeoutMs(node_timeout_ms: number, reconnect_backoff_max_ms: number): number {
  return Math.min(node_timeout_ms, reconnect_backoff_max_ms + 200);
}

/** Per-node Stats as the router reports them. */
export type RouterNodeStats = NodeStats & { hints_pending: string; hints_refused: string };

/** How a Search picks, hedges and retries replicas (router flags `--search-*`). */
export interface SearchOptions {
  /**
   * Hedge floor, ms: a node that has not answered after `max(hedge_ms, hedge_factor × the
   * cluster's recent Search latency)` has its shards asked of their next replicas too; 0
   * disables hedging.
   */
  hedge_ms: number;
  /** See `hedge_ms`. */
  hedge_factor: number;
  /** Hedged requests one Search may send at most. */
  hedges_max: number;
  /**
   * Hedges over node calls in the long run: each node call earns this share of a hedge (at most
   * {@link HEDGE_TOKENS_MAX} saved), each hedge spends one, so an overloaded cluster, where
   * every node is slow, is not asked to do even more work.
   */
  hedge_budget: number;
  /** A node whose Search failed less than this long ago ranks as down, ms. */
  failure_window_ms: number;
  /**
   * Concurrent searches bound for one node travel as one SearchBatch of at most this many
   * (search_coalescer.ts); 0 off.
   */
  batch_max: number;
  /**
   * With coalescing on, a replica the search would share a batch with is preferred while its
   * cost is at most this many times the best replica's (search_plan.ts `affinity_ratio`),
   * and node costs count calls, not searches; 0 off (every search rotates over equal
   * replicas, costs count searches in flight).
   */
  batch_affinity: number;
}

/** Defaults of {@link SearchOptions}. */
export const DEFAULT_SEARCH_OPTIONS: Readonly<SearchOptions> = {
  hedge_ms: 20,
  hedge_factor: 3,
  hedges_max: 2,
  hedge_budget: 0.05,
  failure_window_ms: 1000,
  batch_max: COALESCE_BATCH_MAX,
  batch_affinity: AFFINITY_RATIO,
};

/** Saved hedges at most (see {@link SearchOptions.hedge_budget}). */
export const HEDGE_TOKENS_MAX = 10;

/** What {@link Scatter} needs. */
export interface ScatterDeps {
  nodes: NodePort;
  table: NodeTable;
  /** Deadline of the second Search round, which waits for reconnecting channels. */
  retry_timeout_ms: number;
  /** Times Search calls and hedges (default the system clock). */
  clock?: RouterClock;
  /** The router's --replication-factor (the layout of a collection no node reported). */
  replication_factor?: number;
  /**
   * A collection's shard layout (the router's catalog). Absent: searches plan over the ring's
   * replica sets (`view.shards`) and send no `shards`, as before collections had shards.
   */
  layout?: (collection: string) => Promise<ShardLayout>;
  /** The placement searches read from (during a move, the settled one); default `view.placement`. */
  search_placement?: () => Placement;
  /** Hedging and replica selection (defaults {@link DEFAULT_SEARCH_OPTIONS}). */
  search?: Partial<SearchOptions>;
  /** The end of an event-loop turn, when coalesced searches go (default `setImmediate`; tests). */
  schedule?: (fn: () => void) => void;
}

/** A request a Search sent to one node. */
interface SearchCall {
  node: string;
  shards: number[];
  hedge: boolean;
  wait_for_ready: boolean;
  started_ms: number;
  settled: boolean;
  /** Hedged already (a call is hedged at most once). */
  hedged: boolean;
}

type CallOutcome =
  | { call: SearchCall; ok: true; value: ResponseOf<"Search"> }
  | { call: SearchCall; ok: false; reason: unknown };

/** A search waiting for its next hedge check: {@link HedgeAlarms} calls `fire` at `due_ms`. */
export interface HedgeAlarm {
  due_ms: number;
  fire: () => void;
}

/**
 * One timer for the hedge checks of every search in flight, instead of one per search: the
 * timer is armed for the earliest alarm; when it fires, every alarm due fires and it is armed
 * again for the next. A search that settles removes its alarm; the timer is cancelled when none
 * is left (no timer outlives the searches), and otherwise left to fire for the alarms behind
 * it (finding nothing due, it re-arms). Under load that is one timer per hedge delay, not one
 * timer set and cancelled per search. Holds only the alarms of searches in flight.
 */
export class HedgeAlarms {
  readonly #clock: RouterClock;
  readonly #waiting = new Set<HedgeAlarm>();
  #timer: CancellableSleep | null = null;
  /** When the armed timer fires (clock ms); Infinity when none is armed. */
  #armed_ms = Infinity;
  /** Bumped when a timer is disarmed: a clock without `timer` cannot cancel its sleeps. */
  #generation = 0;

  constructor(clock: RouterClock) {
    this.#clock = clock;
  }

  /** Alarms waiting (tests). */
  get size(): number {
    return this.#waiting.size;
  }

  /** Whether a timer is armed (tests). */
  get armed(): boolean {
    return this.#armed_ms !== Infinity;
  }

  add(a: HedgeAlarm): void {
    this.#waiting.add(a);
    if (a.due_ms < this.#armed_ms) this.#arm(a.due_ms);
  }

  remove(a: HedgeAlarm): void {
    if (this.#waiting.delete(a) && this.#waiting.size === 0) this.#disarm();
  }

  #disarm(): void {
    this.#timer?.cancel();
    this.#timer = null;
    this.#armed_ms = Infinity;
    this.#generation++;
  }

  #arm(due_ms: number): void {
    this.#disarm();
    this.#armed_ms = due_ms;
    const generation = this.#generation;
    const ms = Math.max(0, due_ms - this.#clock.now_ms());
    const fire = () => {
      if (generation === this.#generation) this.#fire();
    };
    if (this.#clock.timer !== undefined) {
      this.#timer = this.#clock.timer(ms);
      this.#timer.done.then(fire);
    } else this.#clock.sleep(ms).then(fire);
  }

  #fire(): void {
    this.#timer = null;
    this.#armed_ms = Infinity;
    this.#generation++;
    const now = this.#clock.now_ms();
    let next = Infinity;
    for (const a of this.#waiting) {
      if (a.due_ms <= now) {
        this.#waiting.delete(a);
        a.fire();
      } else if (a.due_ms < next) next = a.due_ms;
    }
    if (next !== Infinity) this.#arm(next);
  }
}

/** Fan-out reads. */
export class Scatter {
  /** Counters for metrics (read at scrape time). */
  readonly counts = {
    /** Searches fanned out. */
    searches: 0,
    /** Search answers that missed shards (`partial`). */
    partial: 0,
    /** Searches no storage node answered (UNAVAILABLE). */
    unanswered: 0,
    /** Node Search calls made (all rounds, hedges and retries included). */
    node_calls: 0,
    /** Node Search calls that failed transiently (unreachable, deadline). */
    node_failures: 0,
    /** Shard searches the nodes reported for client searches (late answers included). */
    shard_searches: 0,
    /** Hedged node calls sent (a slow node's shards asked of other replicas). */
    hedges: 0,
    /** Hedged calls whose answer was the first for at least one of their shards. */
    hedges_won: 0,
    /** Slow calls not hedged: no next replica had fewer searches in flight than their node. */
    hedges_skipped: 0,
    /** Calls sent at once to the next replica after a call failed transiently. */
    retries: 0,
  };
  /** Per-node Search latency and load (adaptive replica selection). */
  readonly stats = new ReplicaStats();
  /** Coalesces concurrent node searches into SearchBatch calls; null when off. */
  readonly coalescer: SearchCoalescer | null;
  readonly #options: SearchOptions;
  readonly #clock: RouterClock;
  #turn = 0;
  #hedge_tokens = HEDGE_TOKENS_MAX;
  #stats_view: RingView | null = null;
  /** The hedge checks of the searches in flight. */
  readonly alarms: HedgeAlarms;

  constructor(readonly deps: ScatterDeps) {
    this.#options = { ...DEFAULT_SEARCH_OPTIONS, ...deps.search };
    this.#clock = deps.clock ?? SYSTEM_CLOCK;
    this.alarms = new HedgeAlarms(this.#clock);
    this.coalescer = this.#options.batch_max >= 2
      ? new SearchCoalescer(deps.nodes, {
        batch_max: this.#options.batch_max,
        schedule: deps.schedule,
      })
      : null;
  }

  /** The search options in force. */
  get searchOptions(): Readonly<SearchOptions> {
    return this.#options;
  }

  /** The replica sets a search of `collection` must cover, and whether nodes get `shards`. */
  async #targets(
    view: RingView,
    collection: string,
  ): Promise<{
    replicas: readonly (readonly string[])[];
    send_shards: boolean;
    preferred?: (ReadonlySet<string> | null)[];
  }> {
    const { layout, search_placement } = this.deps;
    if (layout === undefined) return { replicas: view.shards, send_shards: false };
    const placement = search_placement?.() ?? view.placement;
    const l = await layout(collection);
    const replicas = placement.shards(collection, l);
    if (placement === view.placement) return { replicas, send_shards: true };
    // A move is unsettled: per shard, prefer the settled replicas that own it now too (they
    // get every write; one the shard leaves misses those made since the move began).
    const now = view.placement.shards(collection, l);
    const preferred = replicas.map((r, s) => {
      const both = new Set(r.filter((n) => now[s]?.includes(n)));
      return both.size === 0 || both.size === r.length ? null : both;
    });
    return { replicas, send_shards: true, preferred };
  }

  /**
   * `v.filter_json`: a filter's JSON text for the nodes (checked by the router); "" none.
   * `counted` false: the router's own search (the recall monitor's exact one), left out of the
   * `searches` counter so the client search rate stays the clients'.
   *
   * Reads one replica per shard (search_plan.ts), one request per node; a failed call's shards
   * go at once to their next replicas believed up; a call slower than the hedge delay has its
   * shards asked of their next replicas too when one of those has fewer searches in flight
   * than its node (the first answer per shard wins, later ones are ignored); last, shards still unanswered are asked of their remaining replicas with
   * wait-for-ready (a node believed down may be back while its channel waits out its reconnect
   * backoff). `partial` only when some shard got no answer from any replica.
   */
  async search(
    view: RingView,
    v: ValidSearch & { filter_json?: string },
    counted = true,
  ): Promise<ResponseOf<"Search">> {
    const { nodes, table } = this.deps;
    const coalescer = this.coalescer;
    const stats = this.stats;
    const clock = this.#clock;
    const opts = this.#options;
    const counts = this.counts;
    // An exact search is a scan, many times a graph search's cost: a hedge would double it.
    const exact = v.exact === true;
    if (this.#stats_view !== view) {
      // The ring changed: forget nodes that left it (bounded memory).
      this.#stats_view = view;
      stats.retain([...view.nodes, ...(this.deps.search_placement?.().members ?? [])]);
    }
    const { replicas, send_shards, preferred } = await this.#targets(view, v.collection);
    const now0 = clock.now_ms();
    const down = new Set<string>();
    for (const s of table.all()) if (!s.delivery.reachable) down.add(s.address);
    for (const shard of replicas) {
      for (const n of shard) {
        if (stats.failedRecently(n, now0, opts.failure_window_ms)) down.add(n);
      }
    }
    // With coalescing, a batch is one call ahead of the next search however many it carries,
    // and a batchable search prefers a replica it can share a batch with (search_plan.ts).
    const batching = coalescer !== null && opts.batch_affinity > 0 && batchable(v);
    const plan = planSearch({
      shards: replicas,
      down,
      cost: batching ? (n) => stats.cost(n, coalescer.calls(n)) : (n) => stats.cost(n),
      affinity: batching ? (n) => coalescer.affinity(n) : undefined,
      affinity_ratio: opts.batch_affinity,
      turn: this.#turn++,
      preferred,
    });
    plan.ranked.forEach((order) => {
      for (let i = 1; i < order.length; i++) if (!down.has(order[i])) stats.passedOver(order[i]);
    });
    const base = {
      // Packed when the client sent it packed: forwarded without per-value work.
      ...vectorToWire(v.vector),
      k: v.k,
      ef: v.ef,
      collection: v.collection,
      with_payload: v.with_payload,
      with_vector: v.with_vector,
      filter: v.filter_json ?? "",
      exact: v.exact === true,
    };
    const total = replicas.length;
    const answered_shard: boolean[] = new Array(total).fill(false);
    let unanswered = total;
    const tried: Set<string>[] = replicas.map(() => new Set<string>());
    /** Per shard, the replicas that answered NOT_FOUND for it (it is empty only when all did). */
    const lacking: Set<string>[] = replicas.map(() => new Set<string>());
    const failed = new Set<string>();
    const asked = new Set<string>();
    const merged_from = new Set<string>();
    const lists: SearchResult[][] = [];
    let shard_searches = 0;
    let verdict: unknown = null;
    let notFound: unknown = null;
    const errors: string[] = [];
    let hedges = 0;
    let pending = 0;
    const queue: CallOutcome[] = [];
    let wake: (() => void) | null = null;
    const calls: SearchCall[] = [];
    if (counted) counts.searches++;

    /** The shards `node` holds (it searches them all when it gets no `shards`). */
    const holdings = (node: string): number[] => {
      const out: number[] = [];
      replicas.forEach((r, s) => {
        if (r.includes(node)) out.push(s);
      });
      return out;
    };
    const send = (req: NodeShards, hedge: boolean, wait_for_ready: boolean) => {
      const call: SearchCall = {
        node: req.node,
        shards: req.shards,
        hedge,
        wait_for_ready,
        started_ms: clock.now_ms(),
        settled: false,
        hedged: false,
      };
      if (!send_shards) req = { node: req.node, shards: holdings(req.node) };
      for (const s of req.shards) tried[s].add(req.node);
      asked.add(req.node);
      calls.push(call);
      pending++;
      counts.node_calls++;
      this.#hedge_tokens = Math.min(HEDGE_TOKENS_MAX, this.#hedge_tokens + opts.hedge_budget);
      stats.begin(req.node);
      const request = send_shards ? { ...base, shards: req.shards } : base;
      const options = wait_for_ready
        ? { wait_for_ready, timeout_ms: this.deps.retry_timeout_ms }
        : {};
      let reply: Promise<ResponseOf<"Search">>;
      try {
        reply = coalescer === null
          ? nodes.call(req.node, "Search", request, options)
          : coalescer.search(req.node, request, options);
      } catch (e) {
        reply = Promise.reject(e);
      }
      reply.then(
        (value) => {
          // Only a successful Search is a latency sample.
          stats.end(req.node, clock.now_ms() - call.started_ms, true, clock.now_ms(), !exact);
          if (counted) counts.shard_searches += this.#shardSearches(value, call, send_shards);
          queue.push({ call, ok: true, value });
          wake?.();
        },
        (reason) => {
          // An error reply (NOT_FOUND, a verdict) is fast because nothing was searched: as a
          // latency sample it would rank a node lacking the collection first everywhere.
          const transient = isTransient(reason);
          const took = clock.now_ms() - call.started_ms;
          stats.end(req.node, took, !transient, clock.now_ms(), false);
          queue.push({ call, ok: false, reason });
          wake?.();
        },
      );
    };

    /**
     * Whether the unanswered shards of slow call `c` have next replicas, none of them with
     * fewer searches in flight than `c`'s node (false also when there is none: then nothing
     * is hedged anyway, and nothing counts as skipped). When all replicas are as busy (a saturated cluster, where every
     * call is slow because every node is queued), a hedge only adds a search to a queue as
     * long; a node slow for a reason of its own (a pause, a hang) keeps its calls while the
     * others drain, and is hedged.
     */
    const onlyAsBusy = (c: SearchCall): boolean => {
      const busy = stats.get(c.node)?.in_flight ?? 0;
      const avoid = new Set([...down, ...failed]);
      let some = false;
      for (const s of c.shards) {
        if (answered_shard[s]) continue;
        const next = nextReplica(plan.ranked[s], tried[s], avoid);
        if (next === undefined) continue;
        if ((stats.get(next)?.in_flight ?? 0) < busy) return false;
        some = true;
      }
      return some;
    };

    /** Sends the unanswered shards of `shards` to their next replicas believed up. */
    const resend = (shards: readonly number[], hedge: boolean): number => {
      const choices: [number, string][] = [];
      for (const s of shards) {
        if (answered_shard[s]) continue;
        const next = nextReplica(plan.ranked[s], tried[s], new Set([...down, ...failed]));
        if (next !== undefined) choices.push([s, next]);
      }
      const requests = groupByNode(choices);
      for (const r of requests) send(r, hedge, false);
      return requests.length;
    };

    const handle = (o: CallOutcome) => {
      const call = o.call;
      call.settled = true;
      pending--;
      const state = table.find(call.node);
      if (o.ok) {
        if (state !== undefined) table.observe(state, null);
        shard_searches += this.#shardSearches(o.value, call, send_shards);
        const fresh = call.shards.filter((s) => !answered_shard[s]);
        // A late answer (every shard answered by another replica first) is ignored.
        if (fresh.length === 0) return;
        for (const s of fresh) answered_shard[s] = true;
        unanswered -= fresh.length;
        if (call.hedge) counts.hedges_won++;
        merged_from.add(call.node);
        // Some of its shards were answered first by another replica (a hedge): only the hits
        // of the newly answered shards count, or one shard's hits would come from two
        // replicas (one possibly stale: duplicates, deleted points back).
        lists.push(
          send_shards && fresh.length < call.shards.length
            ? onlyShards(o.value.results, fresh, replicas.length)
            : o.value.results,
        );
        return;
      }
      const reason = o.reason;
      if (isTransient(reason)) {
        if (state !== undefined) table.observe(state, reason);
        counts.node_failures++;
        failed.add(call.node);
        errors.push(`${call.node}: ${describeGrpcError(reason)}`);
        if (!call.wait_for_ready) counts.retries += resend(call.shards, false);
      } else if (isNotFound(reason)) {
        if (state !== undefined) table.observe(state, null);
        notFound ??= reason;
        const fresh = call.shards.filter((s) => !answered_shard[s]);
        // Asked for shards, the node may lack one it is about to receive (a move): their next
        // replicas believed up are asked; a shard with none left stays unanswered, so the last
        // round asks its replicas believed down. A shard is answered with nothing only when
        // every one of its replicas answered NOT_FOUND (the collection does not exist, or not
        // yet anywhere).
        let empty = fresh;
        if (send_shards) {
          for (const s of fresh) lacking[s].add(call.node);
          const avoid = new Set([...down, ...failed]);
          const retry = fresh.filter((s) =>
            nextReplica(plan.ranked[s], tried[s], avoid) !== undefined
          );
          if (retry.length > 0) counts.retries += resend(retry, false);
          empty = fresh.filter((s) =>
            !retry.includes(s) && replicas[s].every((n) => lacking[s].has(n))
          );
        }
        for (const s of empty) answered_shard[s] = true;
        unanswered -= empty.length;
        if (empty.length > 0) merged_from.add(call.node);
      } else {
        if (state !== undefined) table.observe(state, null);
        verdict ??= reason;
      }
    };

    /** This search's hedge check, while it waits (one object however often it waits). */
    let alarm: HedgeAlarm | null = null;
    const alarms = this.alarms;
    const run = async (hedging: boolean) => {
      const delay = hedging
        ? hedgeDelayMs(opts.hedge_ms, opts.hedge_factor, stats.typical_ms)
        : Infinity;
      while (true) {
        while (queue.length > 0) handle(queue.shift()!);
        if (verdict !== null || unanswered === 0 || pending === 0) return;
        let next = Infinity;
        if (delay !== Infinity) {
          const now = clock.now_ms();
          for (const c of calls) {
            if (c.settled || c.hedged || c.wait_for_ready) continue;
            if (!c.shards.some((s) => !answered_shard[s])) continue;
            if (hedges >= opts.hedges_max) break;
            const due = c.started_ms + delay;
            if (due > now) {
              next = Math.min(next, due);
              continue;
            }
            c.hedged = true;
            if (this.#hedge_tokens < 1) continue;
            if (onlyAsBusy(c)) {
              counts.hedges_skipped++;
              continue;
            }
            const sent = resend(c.shards, true);
            hedges += sent;
            counts.hedges += sent;
            this.#hedge_tokens -= sent;
          }
          if (queue.length > 0) continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
          if (next === Infinity) return;
          alarm ??= { due_ms: next, fire: resolve };
          alarm.due_ms = next;
          alarm.fire = resolve;
          alarms.add(alarm);
        });
        wake = null;
        if (alarm !== null) alarms.remove(alarm);
      }
    };

    // Nodes that search everything they hold (no `shards` sent): fewer requests cover it all.
    const first = send_shards ? plan.requests : coverByHolders(plan.requests, replicas, this.#turn);
    for (const r of first) send(r, false, false);
    await run(!exact);
    if (verdict === null && unanswered > 0) {
      // Last resort: the remaining replicas of unanswered shards, believed down or not yet
      // asked, waiting for their channels (not the ones that failed during this search).
      const choices: [number, string][] = [];
      replicas.forEach((order, s) => {
        if (answered_shard[s]) return;
        for (const n of order) if (!tried[s].has(n) && !failed.has(n)) choices.push([s, n]);
      });
      for (const r of groupByNode(choices)) send(r, false, true);
      await run(false);
    }
    if (verdict !== null) throw verdict;
    if (lists.length === 0) {
      if (notFound !== null) throw notFound;
      counts.unanswered++;
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `No storage node answered the search (${asked.size} asked): ${errors.join("; ")}`,
      );
    }
    const results = mergeSearchResults(lists, v.k);
    const shards_answered = total - unanswered;
    const partial = shards_answered < total;
    if (partial) counts.partial++;
    return {
      results,
      partial,
      shards_answered,
      shards_total: total,
      nodes_answered: [...merged_from].sort(),
      shard_searches,
    };
  }

  /** Shard searches a node's answer reports; the shards asked when it does not say. */
  #shardSearches(r: ResponseOf<"Search">, call: SearchCall, send_shards: boolean): number {
    const n = r.shard_searches ?? 0;
    if (n > 0) return n;
    return send_shards ? call.shards.length : 1;
  }

  /** The union of the collections `nodes` report; UNAVAILABLE when none answered. */
  async listCollections(nodes: readonly string[]): Promise<ResponseOf<"ListCollections">> {
    const settled = await Promise.allSettled(
      nodes.map((n) => this.deps.nodes.call(n, "ListCollections", {})),
    );
    const byName = new Map<string, CollectionInfo>();
    const errors: string[] = [];
    settled.forEach((s, i) => {
      const state = this.deps.table.find(nodes[i]);
      if (s.status === "rejected") {
        if (state !== undefined) this.deps.table.observe(state, s.reason);
        errors.push(`${nodes[i]}: ${describeGrpcError(s.reason)}`);
        return;
      }
      if (state !== undefined) this.deps.table.observe(state, null);
      for (const c of s.value.collections) {
        const seen = byName.get(c.name);
        if (seen === undefined) byName.set(c.name, { ...c, field_indexes: c.field_indexes ?? [] });
        else seen.field_indexes = mergeFieldIndexes(seen.field_indexes ?? [], c.field_indexes);
      }
    });
    if (nodes.length > 0 && errors.length === nodes.length) {
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `No storage node answered ListCollections: ${errors.join("; ")}`,
      );
    }
    const collections = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { collections };
  }

  /** Names of the collections `nodes` report (union; nodes that fail are skipped). */
  async collectionNames(nodes: readonly string[]): Promise<string[]> {
    const settled = await Promise.allSettled(
      nodes.map((n) => this.deps.nodes.call(n, "ListCollections", {})),
    );
    const names = new Set<string>();
    for (const s of settled) {
      if (s.status === "fulfilled") { for (const c of s.value.collections) names.add(c.name); }
    }
    return [...names].sort();
  }

  /**
   * Stats of each node on the ring (with its hint counts; an error line for one that failed),
   * then of each node off the ring whose hints wait for it; and the collections summed.
   */
  async nodeStats(
    nodes: readonly string[],
  ): Promise<{ per: RouterNodeStats[]; collections: CollectionStats[] }> {
    const { table } = this.deps;
    const settled = await Promise.allSettled(
      nodes.map((n) => this.deps.nodes.call(n, "Stats", {})),
    );
    const sums = new Map<string, CollectionStats>();
    const per: RouterNodeStats[] = [];
    const empty = { node_id: "", collections: [], uptime_ms: 0, rss_bytes: 0, heap_used_bytes: 0 };
    settled.forEach((s, i) => {
      const state = table.find(nodes[i]);
      const hints = {
        hints_pending: String(state?.hints.pending ?? 0),
        hints_refused: String(state?.refused ?? 0),
      };
      if (s.status === "rejected") {
        if (state !== undefined) table.observe(state, s.reason);
        per.push({ ...empty, address: nodes[i], error: describeGrpcError(s.reason), ...hints });
        return;
      }
      if (state !== undefined) table.observe(state, null);
      const r = s.value;
      per.push({
        node_id: r.node_id,
        address: nodes[i],
        collections: r.collections,
        uptime_ms: r.uptime_ms,
        rss_bytes: r.rss_bytes,
        heap_used_bytes: r.heap_used_bytes,
        error: "",
        ...hints,
      });
      for (const c of r.collections) {
        const sum = sums.get(c.name);
        if (sum === undefined) {
          sums.set(c.name, { ...c });
          continue;
        }
        sum.count = (BigInt(sum.count) + BigInt(c.count)).toString();
        sum.memory_bytes = (BigInt(sum.memory_bytes) + BigInt(c.memory_bytes)).toString();
        sum.wal_bytes = (BigInt(sum.wal_bytes) + BigInt(c.wal_bytes)).toString();
        sum.tombstones = (BigInt(sum.tombstones ?? 0) + BigInt(c.tombstones ?? 0)).toString();
        sum.last_snapshot_seq = maxOf(sum.last_snapshot_seq, c.last_snapshot_seq);
        sum.last_snapshot_time_ms = maxOf(sum.last_snapshot_time_ms, c.last_snapshot_time_ms);
      }
    });
    for (const s of table.all()) {
      if (s.active || s.hints.pending === 0) continue;
      per.push({
        ...empty,
        address: s.address,
        error: "not on the ring (dead or left); its hints wait for it to come back",
        hints_pending: String(s.hints.pending),
        hints_refused: String(s.refused),
      });
    }
    const collections = [...sums.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { per, collections };
  }
}

/** The results of `results` whose point lies in one of `shards` (of `shard_number`). */
function onlyShards(
  results: readonly SearchResult[],
  shards: readonly number[],
  shard_number: number,
): SearchResult[] {
  const keep = new Set(shards);
  return results.filter((r) => keep.has(shardOf(resultId(r), shard_number)));
}

function maxOf(a: string | number | undefined, b: string | number | undefined): string {
  const x = BigInt(a === undefined || a === "" ? 0 : a);
  const y = BigInt(b === undefined || b === "" ? 0 : b);
  return (x > y ? x : y).toString();
}

/**
 * The union of two nodes' payload indexes of a collection, sorted by field: an index a node
 * lacks (it was down for the creation, or a drop reached only some) still shows, so the
 * operator sees it and can retry; at one field with two types, the first one seen is kept.
 */
export function mergeFieldIndexes(
  a: readonly FieldIndex[],
  b: readonly FieldIndex[] | undefined,
): FieldIndex[] {
  const byField = new Map<string, FieldIndex>();
  for (const f of a) byField.set(f.field, f);
  for (const f of b ?? []) if (!byField.has(f.field)) byField.set(f.field, f);
  return [...byField.values()].sort((x, y) => (x.field < y.field ? -1 : x.field > y.field ? 1 : 0));
}
