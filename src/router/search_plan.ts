/**
 * Which replica of each shard a Search reads (adaptive replica selection), as pure functions:
 * no IO, no clock, no randomness. scatter.ts passes in what it knows (the replica lists of the
 * collection's shards, the nodes believed down, each node's cost from replica_stats.ts, and a
 * turn number it increments per search) and performs the calls planned here.
 *
 * Ranking the replicas of one shard ({@link rankReplicas}), best first:
 *
 * | order | replicas                                                                   |
 * | ----- | -------------------------------------------------------------------------- |
 * | 1     | up, cost within the tie band of the cheapest up replica (see below)        |
 * | 2     | up, costlier, by cost then id                                              |
 * | 3     | believed down (unreachable, or a Search failed recently), by id            |
 *
 * The tie band is every up replica whose cost is at most `best × tie_ratio + tie_slack_ms`:
 * replicas that cost about the same are equals, so the load spreads over all of them instead of
 * always landing on the one that measured a hair faster (or on the primary). Within the band,
 * a replica that has fewer shards of this same query already planned on it comes first (so a
 * query's shards spread over nodes and run in parallel), then the one the search would join a
 * batch on (higher `affinity`, below), then the band is rotated by `turn + shard`, so
 * successive searches start on successive replicas.
 *
 * Batch affinity (`affinity`, from the router's search coalescer): a node call costs a fixed
 * amount of CPU on both ends whatever it carries, so searches that share a SearchBatch cost the
 * cluster less each (one node with a router: 10 searches per call, 0.73 ms of node CPU per
 * search; three equal replicas rotated per search: 2.9 per call, 1.3 ms per search over the
 * three). So a replica the search would share a batch with (`affinity` 2: a batch to it is
 * open in this event-loop turn; 1: a call to it is in flight, so the search opens a batch the
 * rest of the turn joins, where an idle replica would get a call of its own) is in the band
 * while its cost is at most `best × affinity_ratio + tie_slack_ms`, and ranks first in it (2
 * before 1): the searches of one turn gather on one node instead of one call per replica. The
 * searches of a batch are one call ahead of the next search, not one each (the caller's `cost`
 * counts calls), so joining does not raise a node's cost; what ends the gathering is a full
 * batch (the coalescer sends it), or a replica whose latency or calls in flight make it cost
 * more than `affinity_ratio` times the best (saturated or slow: the searches go to the other
 * replicas, which then add throughput). With nothing in flight (light load) every search goes
 * alone at once, rotating as before. A replica believed down has no affinity.
 *
 * {@link planSearch} takes each shard's first-ranked replica and groups the shards per node:
 * ONE request per node carries every shard it was chosen for (SearchRequest.shards), so a
 * query costs one graph search per shard, not per node. The ranking stays with the plan: a
 * shard whose replica fails is retried at once on its next replica believed up
 * ({@link nextReplica}), a slow one is hedged the same way, and replicas believed down are
 * asked last, in the wait-for-ready round.
 *
 * @module
 */

/** One request of a plan: a node and the shards it is asked to search, ascending. */
export interface NodeShards {
  node: string;
  shards: number[];
}

/** What {@link planSearch} needs. */
export interface SearchPlanInput {
  /** The replicas of every shard (index = shard), primary first; may be empty (no replica). */
  shards: readonly (readonly string[])[];
  /** Nodes believed down: ranked after every node believed up. */
  down: ReadonlySet<string>;
  /** A node's expected cost (replica_stats.ts); lower is better, 0 for a node not measured. */
  cost: (node: string) => number;
  /** Rotation of equal replicas: any integer, incremented per search by the caller. */
  turn: number;
  /**
   * Per shard, the replicas to prefer (null or absent: no preference): while a shard moves,
   * searches read the settled placement, and its replicas that are owners in the current one
   * too receive every write, while one the shard is leaving misses the writes made since the
   * move began. Preferred replicas believed up rank before the others believed up (each group
   * in the order of the table above); the others are the fallback.
   */
  preferred?: readonly (ReadonlySet<string> | null)[];
  /**
   * Per node, how a search sent to it now would travel (the router's coalescer): 2 joins a
   * batch open in this turn, 1 opens one (a call is in flight), 0 goes alone; absent: 0 for
   * all (no coalescing, or a search that is not batchable).
   */
  affinity?: (node: string) => number;
  /** A node with affinity > 0 is in the band up to `best × affinity_ratio + tie_slack_ms` (default 2). */
  affinity_ratio?: number;
  /** Costs within `best × tie_ratio + tie_slack_ms` are equal (default 1.25). */
  tie_ratio?: number;
  /** See `tie_ratio` (default 1 ms: sub-millisecond differences are noise). */
  tie_slack_ms?: number;
}

/** A Search plan: each shard's replicas in the order to try them, and the first requests. */
export interface SearchPlan {
  /** Per shard, its replicas best first (empty for a shard with no replica). */
  ranked: string[][];
  /** One request per node, nodes sorted; each shard in exactly one request (if it has a replica). */
  requests: NodeShards[];
}

/** Default {@link SearchPlanInput.tie_ratio}. */
export const TIE_RATIO = 1.25;
/** Default {@link SearchPlanInput.tie_slack_ms}. */
export const TIE_SLACK_MS = 1;
/** Default {@link SearchPlanInput.affinity_ratio}. */
export const AFFINITY_RATIO = 2;

/**
 * Whether an up replica of cost `cost` and affinity `affinity` is in the band of a shard whose
 * cheapest up replica costs `best` (module comment).
 */
function inBand(cost: number, affinity: number, best: number, input: SearchPlanInput): boolean {
  const slack = input.tie_slack_ms ?? TIE_SLACK_MS;
  if (cost <= best * (input.tie_ratio ?? TIE_RATIO) + slack) return true;
  return affinity > 0 && cost <= best * (input.affinity_ratio ?? AFFINITY_RATIO) + slack;
}

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The replicas of shard `shard` best first (module comment's table). `load` counts the shards
 * of this query already planned per node (read only).
 */
export function rankReplicas(
  replicas: readonly string[],
  shard: number,
  input: SearchPlanInput,
  load: ReadonlyMap<string, number> = new Map(),
): string[] {
  const affinity = input.affinity;
  const up: { node: string; cost: number; affinity: number }[] = [];
  const down: string[] = [];
  for (const node of new Set(replicas)) {
    if (input.down.has(node)) down.push(node);
    else {
      const a = affinity === undefined ? 0 : affinity(node);
      up.push({ node, cost: Math.max(0, input.cost(node)), affinity: a });
    }
  }
  down.sort(byId);
  if (up.length === 0) return down;
  let best = Infinity;
  for (const u of up) best = Math.min(best, u.cost);
  const band = up.filter((u) => inBand(u.cost, u.affinity, best, input));
  band.sort((a, b) => byId(a.node, b.node));
  const rest = up.filter((u) => !inBand(u.cost, u.affinity, best, input));
  rest.sort((a, b) => a.cost - b.cost || byId(a.node, b.node));
  // Rotate the band, then (stably) put the nodes carrying fewer of this query's shards first,
  // and among those the ones the search would join a batch on.
  const r = ((input.turn + shard) % band.length + band.length) % band.length;
  const rotated = band.slice(r).concat(band.slice(0, r));
  rotated.sort((a, b) =>
    (load.get(a.node) ?? 0) - (load.get(b.node) ?? 0) || b.affinity - a.affinity
  );
  const ups = [...rotated.map((u) => u.node), ...rest.map((u) => u.node)];
  const preferred = input.preferred?.[shard];
  if (preferred === null || preferred === undefined) return [...ups, ...down];
  const first = ups.filter((n) => preferred.has(n));
  return [...first, ...ups.filter((n) => !preferred.has(n)), ...down];
}

/** How many of a ranking's first replicas are in the tie band (see the module comment). */
function bandSize(order: readonly string[], input: SearchPlanInput, shard: number): number {
  if (order.length === 0 || input.down.has(order[0])) return 0;
  // Load balancing never swaps a preferred replica for a fallback one.
  const preferred = input.preferred?.[shard];
  const group = (n: string) => preferred === null || preferred === undefined || preferred.has(n);
  const head = group(order[0]);
  const cost = (n: string) => Math.max(0, input.cost(n));
  const affinity = (n: string) => input.affinity === undefined ? 0 : input.affinity(n);
  let best = Infinity;
  for (const n of order) if (!input.down.has(n)) best = Math.min(best, cost(n));
  let i = 0;
  while (
    i < order.length && !input.down.has(order[i]) && group(order[i]) === head &&
    inBand(cost(order[i]), affinity(order[i]), best, input)
  ) i++;
  return i;
}

/** Groups `shard → node` choices into one request per node (nodes sorted, shards ascending). */
export function groupByNode(choices: Iterable<readonly [number, string]>): NodeShards[] {
  const per = new Map<string, number[]>();
  for (const [shard, node] of choices) {
    let list = per.get(node);
    if (list === undefined) per.set(node, list = []);
    list.push(shard);
  }
  return [...per].sort((a, b) => byId(a[0], b[0])).map(([node, shards]) => ({
    node,
    shards: shards.sort((a, b) => a - b),
  }));
}

/** The plan of one Search (see the module comment). */
export function planSearch(input: SearchPlanInput): SearchPlan {
  const load = new Map<string, number>();
  const ranked: string[][] = [];
  const choices: [number, string][] = [];
  const bands: number[] = [];
  input.shards.forEach((replicas, shard) => {
    const order = rankReplicas(replicas, shard, input, load);
    ranked.push(order);
    bands.push(bandSize(order, input, shard));
    if (order.length === 0) return;
    load.set(order[0], (load.get(order[0]) ?? 0) + 1);
  });
  // The greedy pass can stack two shards on one node while an equal replica of one of them
  // has none (shards {a,b} {b,c} {c,a} → a, c, a): move a shard to an equal replica carrying
  // at least two fewer until none is left. Each move lowers the sum of squared loads, so this
  // ends; a handful of shards makes it a few steps.
  for (let moved = true; moved;) {
    moved = false;
    ranked.forEach((order, shard) => {
      if (order.length === 0) return;
      const here = load.get(order[0])!;
      for (let i = 1; i < bands[shard]; i++) {
        const there = load.get(order[i]) ?? 0;
        if (there + 2 > here) continue;
        load.set(order[0], here - 1);
        load.set(order[i], there + 1);
        const [alt] = order.splice(i, 1);
        order.unshift(alt);
        moved = true;
        return;
      }
    });
  }
  ranked.forEach((order, shard) => {
    if (order.length > 0) choices.push([shard, order[0]]);
  });
  return { ranked, requests: groupByNode(choices) };
}

/**
 * For nodes that search every shard they hold whatever they are asked (nodes without shard
 * support, and the ring's replica sets before collections had shards): the requests of `plan`
 * less those whose shards other kept nodes hold anyway, each request widened to every shard its
 * node holds. Requests are considered from index `turn` on (wrapping), so the nodes kept
 * rotate between searches.
 */
export function coverByHolders(
  requests: readonly NodeShards[],
  shards: readonly (readonly string[])[],
  turn: number,
): NodeShards[] {
  const held = new Map<string, number[]>();
  shards.forEach((replicas, s) => {
    for (const n of replicas) {
      let list = held.get(n);
      if (list === undefined) held.set(n, list = []);
      if (!list.includes(s)) list.push(s);
    }
  });
  const covered = new Set<number>();
  const kept: NodeShards[] = [];
  const n = requests.length;
  const start = n === 0 ? 0 : ((turn % n) + n) % n;
  for (let i = 0; i < n; i++) {
    const r = requests[(start + i) % n];
    if (r.shards.every((s) => covered.has(s))) continue;
    const all = held.get(r.node) ?? r.shards;
    for (const s of all) covered.add(s);
    kept.push({ node: r.node, shards: [...all].sort((a, b) => a - b) });
  }
  return kept.sort((a, b) => byId(a.node, b.node));
}

/**
 * The next replica of a shard to try: the first of `ranked` not in `tried` and not in `avoid`
 * (nodes believed down, or failed during this search); undefined when none is left.
 */
export function nextReplica(
  ranked: readonly string[],
  tried: ReadonlySet<string>,
  avoid: ReadonlySet<string>,
): string | undefined {
  for (const n of ranked) if (!tried.has(n) && !avoid.has(n)) return n;
  return undefined;
}

/**
 * How long to wait for a node's answer before hedging: `max(floor_ms, factor × typical_ms)`,
 * where `typical_ms` is the recent Search latency of the cluster (replica_stats.ts); Infinity
 * (never) when `floor_ms` is 0 (hedging off).
 */
export function hedgeDelayMs(floor_ms: number, factor: number, typical_ms: number): number {
  if (!(floor_ms > 0)) return Infinity;
  return Math.max(floor_ms, factor * Math.max(0, typical_ms));
}
