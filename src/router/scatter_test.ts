/**
 * Scatter's Search over a fake NodePort and a manual clock: one replica per shard, one request
 * per node, retries on failure, hedges when slow, `partial` only when a shard had no answer.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import type { RequestOf, ResponseOf } from "../api/client.ts";
import type { MethodName, SearchRequest, SearchResult } from "../api/proto.ts";
import { Placement, type ShardLayout } from "../cluster/placement.ts";
import {
  Background,
  type CancellableSleep,
  type NodeCallOptions,
  NodeStatusError,
  type RouterClock,
} from "./node_port.ts";
import { NodeTable } from "./node_table.ts";
import { makeView, type RingView } from "./ring_view.ts";
import { HedgeAlarms, Scatter, type SearchOptions } from "./scatter.ts";
import { shardOf } from "../common/shard.ts";
import { Prng } from "../common/prng.ts";
import { CallOnlyPort } from "./node_port_testing.ts";

/** A clock that moves only when told; timers fire in `advance`. */
class ManualClock implements RouterClock {
  now = 0;
  readonly #timers: { at: number; fire: () => void; cancelled: boolean }[] = [];
  now_ms(): number {
    return this.now;
  }
  sleep(ms: number): Promise<void> {
    return this.timer(ms).done;
  }
  timer(ms: number): CancellableSleep {
    const t = { at: this.now + ms, fire: () => {}, cancelled: false };
    const done = new Promise<void>((resolve) => t.fire = resolve);
    this.#timers.push(t);
    return { done, cancel: () => t.cancelled = true };
  }
  get pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
  async advance(ms: number): Promise<void> {
    this.now += ms;
    for (const t of this.#timers.splice(0)) {
      if (t.cancelled) continue;
      if (t.at <= this.now) t.fire();
      else this.#timers.push(t);
    }
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

type Mode = "ok" | "fail" | "hang" | "not_found" | "legacy";

interface Call {
  node: string;
  request: SearchRequest;
  options?: NodeCallOptions;
}

/** Nodes holding points 0..29 of shard `shardOf(id, S)`; each answers from the shards it is asked. */
class FakeNodes extends CallOnlyPort {
  readonly calls: Call[] = [];
  readonly mode = new Map<string, Mode>();
  readonly hung: { node: string; release: () => void }[] = [];
  /** Answer after this many ms of `clock` (mode "ok" only). */
  readonly delay_ms = new Map<string, number>();
  /** Extra hits a node returns (a stale replica's deleted points), when asked for their shard. */
  readonly extra = new Map<string, SearchResult[]>();
  clock: RouterClock | null = null;
  constructor(readonly holds: Map<string, number[]>, readonly shard_number: number) {
    super();
  }

  /** Every call as sent: its node, and how many searches it carried (a Search: 1). */
  readonly sent: { node: string; method: MethodName; searches: number }[] = [];

  call<K extends MethodName>(
    node: string,
    method: K,
    request: RequestOf<K>,
    options?: NodeCallOptions,
  ): Promise<ResponseOf<K>> {
    if (method === "SearchBatch") {
      // Each search as the Search call below would answer it (its own delay included once).
      const { searches } = request as RequestOf<"SearchBatch">;
      this.sent.push({ node, method, searches: searches.length });
      const answers = searches.map((r) => this.#answer(node, r, options));
      return Promise.all(answers).then((results) => ({ results }) as ResponseOf<K>);
    }
    assert.equal(method, "Search");
    this.sent.push({ node, method, searches: 1 });
    return this.#answer(node, request as SearchRequest, options) as Promise<ResponseOf<K>>;
  }

  #answer(
    node: string,
    r: SearchRequest,
    options?: NodeCallOptions,
  ): Promise<ResponseOf<"Search">> {
    this.calls.push({ node, request: r, options });
    const mode = this.mode.get(node) ?? "ok";
    if (mode === "fail") {
      return Promise.reject(new NodeStatusError(grpc.status.UNAVAILABLE, `${node} is down`));
    }
    if (mode === "not_found") {
      return Promise.reject(new NodeStatusError(grpc.status.NOT_FOUND, "no collection"));
    }
    const held = this.holds.get(node) ?? [];
    const shards = (r.shards ?? []).length > 0 ? r.shards! : held;
    for (const s of shards) assert.ok(held.includes(s), `${node} asked for shard ${s} it lacks`);
    const results: SearchResult[] = [];
    for (let id = 0; id < 30; id++) {
      if (shards.includes(shardOf(id, this.shard_number))) results.push({ id, distance: id });
    }
    for (const x of this.extra.get(node) ?? []) {
      if (shards.includes(shardOf(x.id as number, this.shard_number))) results.unshift(x);
    }
    const answer = {
      results: results.slice(0, r.k),
      partial: false,
      shards_answered: 1,
      shards_total: 1,
      nodes_answered: [],
      shard_searches: mode === "legacy" ? 0 : shards.length,
    } as unknown as ResponseOf<"Search">;
    if (mode === "hang") {
      return new Promise((resolve) => this.hung.push({ node, release: () => resolve(answer) }));
    }
    const delay = this.delay_ms.get(node) ?? 0;
    if (delay > 0 && this.clock !== null) return this.clock.sleep(delay).then(() => answer);
    return Promise.resolve(answer);
  }
}

const NODES = ["n1:1", "n2:1", "n3:1"];

function setup(
  layout: ShardLayout,
  search: Partial<SearchOptions> = {},
  schedule?: (fn: () => void) => void,
) {
  const clock = new ManualClock();
  const placement = new Placement(NODES);
  const replicas = placement.shards("c", layout);
  const holds = new Map<string, number[]>();
  replicas.forEach((r, s) => {
    for (const n of r) holds.set(n, [...(holds.get(n) ?? []), s]);
  });
  const nodes = new FakeNodes(holds, layout.shard_number);
  nodes.clock = clock;
  const table = new NodeTable({
    openHints: () => Promise.reject(new Error("no hints here")),
    clock,
    log: () => {},
    background: new Background(() => {}),
    retry_interval_ms: 100,
  });
  const scatter = new Scatter({
    nodes,
    table,
    retry_timeout_ms: 500,
    clock,
    replication_factor: layout.replication_factor,
    layout: () => Promise.resolve(layout),
    search_placement: () => placement,
    search,
    schedule,
  });
  const view: RingView = makeView(NODES, layout.replication_factor);
  return { clock, nodes, scatter, view, replicas };
}

const query = {
  vector: [0, 0],
  k: 5,
  ef: 0,
  collection: "c",
  with_payload: false,
  with_vector: false,
};
const top5 = [0, 1, 2, 3, 4];

Deno.test("Scatter.search asks one replica per shard, one request per node, and spreads load", async () => {
  const { nodes, scatter, view } = setup({ shard_number: 3, replication_factor: 2 });
  const per = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const before = nodes.calls.length;
    const r = await scatter.search(view, query);
    assert.deepEqual(r.results.map((x) => x.id), top5);
    assert.equal(r.partial, false);
    assert.equal(r.shards_answered, 3);
    assert.equal(r.shards_total, 3);
    assert.equal(r.shard_searches, 3, "one graph search per shard, not per node");
    const mine = nodes.calls.slice(before);
    const asked = mine.flatMap((c) => c.request.shards!).sort();
    assert.deepEqual(asked, [0, 1, 2], "each shard asked of exactly one replica");
    assert.equal(new Set(mine.map((c) => c.node)).size, mine.length, "one request per node");
    assert.deepEqual(r.nodes_answered, mine.map((c) => c.node).sort());
    for (const c of mine) per.set(c.node, (per.get(c.node) ?? 0) + c.request.shards!.length);
  }
  assert.equal(scatter.counts.shard_searches, 90);
  assert.equal(scatter.counts.searches, 30);
  // Every node holding a shard served some of them.
  const holders = new Set(nodes.holds.keys());
  assert.deepEqual([...per.keys()].sort(), [...holders].sort());
});

Deno.test("Scatter.search: 1 shard RF 3 reads one node per query, rotating over all three", async () => {
  const { nodes, scatter, view } = setup({ shard_number: 1, replication_factor: 3 });
  for (let i = 0; i < 9; i++) {
    const r = await scatter.search(view, query);
    assert.equal(r.shard_searches, 1);
    assert.equal(r.nodes_answered!.length, 1);
  }
  const per = new Map<string, number>();
  for (const c of nodes.calls) per.set(c.node, (per.get(c.node) ?? 0) + 1);
  assert.deepEqual([...per.values()], [3, 3, 3]);
});

Deno.test("Scatter.search retries a failed replica's shards on the next replica at once", async () => {
  const { nodes, scatter, view, replicas } = setup({ shard_number: 1, replication_factor: 3 });
  const [a, b, c] = replicas[0];
  nodes.mode.set(a, "fail");
  nodes.mode.set(b, "fail");
  // Rotation starts each search on another replica: within three, both failing ones were tried.
  for (let i = 0; i < 3; i++) {
    const r = await scatter.search(view, query);
    assert.deepEqual(r.results.map((x) => x.id), top5);
    assert.equal(r.partial, false);
    assert.deepEqual(r.nodes_answered, [c]);
  }
  assert.equal(scatter.counts.retries, 2);
  assert.equal(scatter.counts.node_failures, 2);
  assert.ok(nodes.calls.every((x) => x.options?.wait_for_ready !== true), "no waiting round");
  // The failures are remembered: the next searches go straight to the node that answered.
  const before = nodes.calls.length;
  await scatter.search(view, query);
  await scatter.search(view, query);
  assert.deepEqual(nodes.calls.slice(before).map((x) => x.node), [c, c]);
});

Deno.test("Scatter.search: the last round asks replicas believed down, waiting for them", async () => {
  const { clock, nodes, scatter, view, replicas } = setup({
    shard_number: 1,
    replication_factor: 2,
  });
  const [x, y] = replicas[0];
  nodes.mode.set(x, "fail");
  nodes.mode.set(y, "fail");
  await assert.rejects(scatter.search(view, query), /No storage node answered/);
  assert.equal(scatter.counts.unanswered, 1);
  // Later, y is believed up again but fails; x's last call failed a moment ago (believed
  // down), and it is back: y fails fast, the last round waits for x.
  await clock.advance(5000);
  scatter.stats.begin(x);
  scatter.stats.end(x, 0, false, clock.now);
  nodes.mode.set(x, "ok");
  const before = nodes.calls.length;
  const r = await scatter.search(view, query);
  assert.equal(r.partial, false);
  assert.deepEqual(r.nodes_answered, [x]);
  const mine = nodes.calls.slice(before);
  assert.deepEqual(mine.map((c) => [c.node, c.options?.wait_for_ready === true]), [
    [y, false],
    [x, true],
  ]);
});

Deno.test("Scatter.search: partial only when no replica of some shard answered", async () => {
  const { nodes, scatter, view, replicas } = setup({ shard_number: 3, replication_factor: 1 });
  const dead = replicas[0][0];
  nodes.mode.set(dead, "fail");
  const lost = replicas.filter((r) => r[0] === dead).length;
  if (lost === 3) {
    await assert.rejects(scatter.search(view, query), /No storage node answered/);
    return;
  }
  const r = await scatter.search(view, query);
  assert.equal(r.partial, true);
  assert.equal(r.shards_answered, 3 - lost);
  assert.equal(r.shards_total, 3);
  assert.equal(scatter.counts.partial, 1);
  assert.ok(!r.nodes_answered!.includes(dead));
});

Deno.test("Scatter.search hedges a slow node; the first answer per shard wins, late ones are ignored", async () => {
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 1, replication_factor: 2 },
    { hedge_ms: 10, hedge_factor: 3 },
  );
  for (const n of replicas[0]) nodes.mode.set(n, "hang");
  const pending = scatter.search(view, query);
  await settle();
  assert.equal(nodes.calls.length, 1, "one replica asked first");
  const first = nodes.calls[0].node;
  await clock.advance(9);
  assert.equal(nodes.calls.length, 1, "no hedge before the delay");
  await clock.advance(1);
  assert.equal(nodes.calls.length, 2, "hedged after 10 ms");
  const second = nodes.calls[1].node;
  assert.notEqual(second, first);
  assert.equal(scatter.counts.hedges, 1);
  nodes.hung.find((h) => h.node === second)!.release();
  const r = await pending;
  assert.deepEqual(r.results.map((x) => x.id), top5);
  assert.deepEqual(r.nodes_answered, [second]);
  assert.equal(r.shard_searches, 1);
  assert.equal(scatter.counts.hedges_won, 1);
  assert.equal(clock.pending, 0, "no hedge timer outlives the search");
  // The slow node's late answer changes nothing of the answer given, and is still measured.
  nodes.hung.find((h) => h.node === first)!.release();
  await settle();
  assert.equal(scatter.stats.get(first)!.in_flight, 0);
  assert.equal(scatter.counts.shard_searches, 2, "both graph searches ran");
});

Deno.test("Scatter.search does not hedge a slow node when its other replicas are as busy", async () => {
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 1, replication_factor: 2 },
    { hedge_ms: 10, hedge_factor: 3 },
  );
  for (const n of replicas[0]) nodes.mode.set(n, "hang");
  const pending = scatter.search(view, query);
  await settle();
  const first = nodes.calls[0].node;
  const other = replicas[0].find((n) => n !== first)!;
  // The other replica has a search of its own in flight: as busy as the slow one.
  scatter.stats.begin(other);
  await clock.advance(10);
  assert.equal(nodes.calls.length, 1, "no hedge to an equally busy replica");
  assert.equal(scatter.counts.hedges, 0);
  assert.equal(scatter.counts.hedges_skipped, 1);
  await clock.advance(100);
  assert.equal(nodes.calls.length, 1, "a call is considered for a hedge once");
  nodes.hung[0].release();
  const r = await pending;
  assert.deepEqual(r.results.map((x) => x.id), top5);
  assert.equal(r.shard_searches, 1);
  assert.equal(clock.pending, 0, "no hedge timer outlives the search");
  // (An idle replica is hedged to: the test above.)
  scatter.stats.end(other, 1, true, clock.now);
});

Deno.test("Scatter.search: a slow call with no other replica is neither hedged nor counted as skipped", async () => {
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 1, replication_factor: 1 },
    { hedge_ms: 10, hedge_factor: 3 },
  );
  nodes.mode.set(replicas[0][0], "hang");
  const pending = scatter.search(view, query);
  await clock.advance(100);
  assert.equal(nodes.calls.length, 1);
  assert.equal(scatter.counts.hedges, 0);
  assert.equal(scatter.counts.hedges_skipped, 0);
  nodes.hung[0].release();
  assert.deepEqual((await pending).results.map((x) => x.id), top5);
});

Deno.test("Scatter.search with hedging off waits for the slow node", async () => {
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 1, replication_factor: 2 },
    { hedge_ms: 0 },
  );
  for (const n of replicas[0]) nodes.mode.set(n, "hang");
  const pending = scatter.search(view, query);
  await clock.advance(1000);
  assert.equal(nodes.calls.length, 1);
  nodes.hung[0].release();
  assert.equal((await pending).shard_searches, 1);
  assert.equal(scatter.counts.hedges, 0);
});

Deno.test("Scatter.search: a node without shard_searches counts the shards asked; NOT_FOUND everywhere is NOT_FOUND", async () => {
  const { nodes, scatter, view } = setup({ shard_number: 3, replication_factor: 3 });
  for (const n of NODES) nodes.mode.set(n, "legacy");
  const r = await scatter.search(view, query);
  assert.equal(r.shard_searches, 3);
  for (const n of NODES) nodes.mode.set(n, "not_found");
  await assert.rejects(scatter.search(view, query), (e: NodeStatusError) => {
    assert.equal(e.code, grpc.status.NOT_FOUND);
    return true;
  });
});

Deno.test("Scatter.search without a layout source plans over the ring and sends no shards", async () => {
  const clock = new ManualClock();
  const nodes = new FakeNodes(new Map(NODES.map((n) => [n, [0]])), 1);
  const table = new NodeTable({
    openHints: () => Promise.reject(new Error("no hints here")),
    clock,
    log: () => {},
    background: new Background(() => {}),
    retry_interval_ms: 100,
  });
  const scatter = new Scatter({ nodes, table, retry_timeout_ms: 500, clock });
  const view = makeView(NODES, 2);
  const r = await scatter.search(view, query);
  assert.equal(r.partial, false);
  assert.equal(r.shards_total, view.shards.length);
  assert.ok(nodes.calls.every((c) => c.request.shards === undefined));
  // Each node searches all it holds: with RF 2 of 3, any two nodes cover every replica set.
  assert.equal(nodes.calls.length, 2);
  assert.equal(r.shard_searches, 2);
  assert.equal(r.nodes_answered!.length, 2);
  assert.deepEqual(r.results.map((x) => x.id), top5);
});

Deno.test("Scatter.search: an exact search is never hedged and does not feed the latency average", async () => {
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 1, replication_factor: 2 },
    { hedge_ms: 10 },
  );
  for (const n of replicas[0]) nodes.mode.set(n, "hang");
  const pending = scatter.search(view, { ...query, exact: true }, false);
  await clock.advance(1000);
  assert.equal(nodes.calls.length, 1);
  nodes.hung[0].release();
  const r = await pending;
  assert.equal(r.partial, false);
  assert.equal(scatter.stats.get(nodes.calls[0].node)!.samples, 0);
  assert.equal(scatter.counts.searches, 0, "the router's own search is not a client search");
  assert.equal(scatter.counts.shard_searches, 0);
});

Deno.test("Scatter.search moves reads away from a slow replica and back once it recovers", async () => {
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 1, replication_factor: 3 },
    { hedge_ms: 0 },
  );
  const [slow, ...fast] = replicas[0];
  nodes.delay_ms.set(slow, 50);
  for (const f of fast) nodes.delay_ms.set(f, 5);
  const run = async (searches: number) => {
    const per = new Map<string, number>();
    for (let i = 0; i < searches; i++) {
      const before = nodes.calls.length;
      const pending = scatter.search(view, query);
      let done = false;
      pending.then(() => done = true, () => done = true);
      while (!done) await clock.advance(1);
      await pending;
      for (const c of nodes.calls.slice(before)) per.set(c.node, (per.get(c.node) ?? 0) + 1);
    }
    return per;
  };
  const first = await run(60);
  // The slow node is tried (unmeasured nodes first, then when its average has decayed) but
  // serves far fewer than its third.
  assert.ok((first.get(slow) ?? 0) <= 6, `slow node served ${first.get(slow)} of 60`);
  for (const f of fast) assert.ok((first.get(f) ?? 0) >= 25, `${f}: ${first.get(f)}`);
  // Recovered: the passed-over decay brings it back into the rotation.
  nodes.delay_ms.set(slow, 5);
  const later = await run(300);
  assert.ok((later.get(slow) ?? 0) >= 60, `recovered node served ${later.get(slow)} of 300`);
});

Deno.test("Scatter.search: a replica without the shard (NOT_FOUND) is passed for the next one", async () => {
  const { nodes, scatter, view, replicas } = setup({ shard_number: 1, replication_factor: 3 });
  const [a, b, c] = replicas[0];
  nodes.mode.set(a, "not_found");
  nodes.mode.set(b, "not_found");
  for (let i = 0; i < 3; i++) {
    const r = await scatter.search(view, query);
    assert.equal(r.partial, false);
    assert.deepEqual(r.results.map((x) => x.id), top5);
    assert.deepEqual(r.nodes_answered, [c]);
  }
  assert.ok(scatter.counts.retries >= 2);
});

Deno.test("Scatter.search: a shard whose replica lacks it and whose others are believed down waits for them", async () => {
  const { clock, nodes, scatter, view, replicas } = setup({
    shard_number: 3,
    replication_factor: 2,
  });
  const [a, b] = replicas[0];
  nodes.mode.set(a, "not_found");
  // b is believed down (its last call failed a moment ago) but is back.
  scatter.stats.begin(b);
  scatter.stats.end(b, 0, false, clock.now);
  const r = await scatter.search(view, { ...query, k: 30 });
  assert.equal(r.partial, false);
  assert.equal(r.shards_answered, 3);
  assert.deepEqual(
    r.results.map((x) => x.id).sort((x, y) => Number(x) - Number(y)),
    Array.from({ length: 30 }, (_, i) => i),
    "shard 0's points are all there",
  );
  assert.ok(
    nodes.calls.some((c) => c.node === b && c.options?.wait_for_ready === true),
    "the replica believed down was asked in the waiting round",
  );
  // b stays down: shard 0 is not answered, and the answer says so.
  await clock.advance(5000);
  nodes.mode.set(b, "fail");
  scatter.stats.begin(b);
  scatter.stats.end(b, 0, false, clock.now);
  const p = await scatter.search(view, { ...query, k: 30 });
  assert.equal(p.partial, true);
  assert.equal(p.shards_answered, 2);
  assert.ok(p.results.every((x) => shardOf(x.id as number, 3) !== 0));
});

Deno.test("Scatter.search: a late answer adds only the hits of the shards it answered first", async () => {
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 3, replication_factor: 2 },
    { hedge_ms: 10, hedge_factor: 0 },
  );
  // Shards x and y share replica a; their other replicas b and c differ.
  let found: [number, number, string, string, string] | null = null;
  for (let x = 0; x < 3 && found === null; x++) {
    for (let y = 0; y < 3 && found === null; y++) {
      if (x === y) continue;
      const a = replicas[x].find((n) => replicas[y].includes(n));
      if (a === undefined) continue;
      const b = replicas[x].find((n) => n !== a)!;
      const c = replicas[y].find((n) => n !== a)!;
      if (b !== c) found = [x, y, a, b, c];
    }
  }
  assert.ok(found !== null, `no two shards share one replica: ${JSON.stringify(replicas)}`);
  const [x, _y, a, b, c] = found;
  // b and c measured slow, a not measured: a is asked for both its shards.
  for (const n of [b, c]) {
    scatter.stats.begin(n);
    scatter.stats.end(n, 100, true, clock.now);
  }
  nodes.mode.set(a, "hang");
  nodes.mode.set(c, "hang");
  // a is a stale replica of shard x: it still returns a point deleted there.
  let stale = 1000;
  while (shardOf(stale, 3) !== x) stale++;
  nodes.extra.set(a, [{ id: stale, distance: -1 }]);
  const pending = scatter.search(view, query);
  await settle();
  const first = nodes.calls.find((call) => call.node === a);
  assert.ok(first !== undefined && first.request.shards!.length >= 2, "a asked for both shards");
  await clock.advance(10);
  assert.ok(nodes.calls.some((call) => call.node === b), "x hedged to b");
  // b answered shard x; now a answers all it was asked.
  for (const h of nodes.hung.filter((h) => h.node === a)) h.release();
  await settle();
  for (const h of nodes.hung.filter((h) => h.node === c)) h.release();
  const r = await pending;
  assert.equal(r.partial, false);
  assert.ok(!r.results.some((hit) => hit.id === stale), "the stale replica's hit of x is dropped");
  assert.deepEqual(r.results.map((hit) => hit.id), top5);
});

Deno.test("Scatter.search: a NOT_FOUND reply is no latency sample", async () => {
  const { nodes, scatter, view, replicas } = setup({ shard_number: 1, replication_factor: 3 });
  const [a] = replicas[0];
  nodes.mode.set(a, "not_found");
  for (let i = 0; i < 3; i++) await scatter.search(view, query);
  assert.ok(nodes.calls.some((c) => c.node === a), "a was asked");
  assert.equal(scatter.stats.get(a)!.samples, 0);
  assert.equal(scatter.stats.get(a)!.in_flight, 0);
});

Deno.test("Scatter.search during a move reads a shard's replicas that own it now too, the leaving one only as a fallback", async () => {
  const clock = new ManualClock();
  const layout = { shard_number: 8, replication_factor: 2 };
  const settled = new Placement(NODES);
  const grown = [...NODES, "n4:1"];
  const view = makeView(grown, 2);
  const before = settled.shards("c", layout);
  const after = view.placement.shards("c", layout);
  // Shards that keep one replica and lose the other: a search must read the one kept.
  const moving = before.map((r, s) => r.filter((n) => after[s].includes(n)))
    .map((kept, s) => (kept.length === 1 ? s : -1)).filter((s) => s >= 0);
  assert.ok(moving.length > 0, `no shard keeps exactly one replica: ${JSON.stringify(after)}`);
  const holds = new Map<string, number[]>();
  before.forEach((r, s) => {
    for (const n of r) holds.set(n, [...(holds.get(n) ?? []), s]);
  });
  const nodes = new FakeNodes(holds, layout.shard_number);
  const table = new NodeTable({
    openHints: () => Promise.reject(new Error("no hints here")),
    clock,
    log: () => {},
    background: new Background(() => {}),
    retry_interval_ms: 100,
  });
  const scatter = new Scatter({
    nodes,
    table,
    retry_timeout_ms: 500,
    clock,
    layout: () => Promise.resolve(layout),
    search_placement: () => settled,
  });
  for (let i = 0; i < 20; i++) {
    const r = await scatter.search(view, query);
    assert.deepEqual(r.results.map((x) => x.id), top5);
  }
  for (const s of moving) {
    const readers = new Set(
      nodes.calls.filter((c) => c.request.shards!.includes(s)).map((c) => c.node),
    );
    const kept = before[s].filter((n) => after[s].includes(n));
    assert.deepEqual([...readers], kept, `shard ${s} read from ${[...readers]}, kept ${kept}`);
  }
  // The kept replica down: the leaving one answers (a fallback, not a gap).
  const s0 = moving[0];
  const kept = before[s0].find((n) => after[s0].includes(n))!;
  nodes.mode.set(kept, "fail");
  const r = await scatter.search(view, { ...query, k: 30 });
  assert.equal(r.partial, false);
});

/** What {@link simulate} measured. */
interface SimResult {
  searches: number;
  /** Node calls (Search and SearchBatch). */
  calls: number;
  /** Searches each node served. */
  per: Map<string, number>;
  failed: number;
}

/**
 * A seeded simulation of concurrent load through one Scatter (1 shard, RF 3): each 1 ms turn,
 * `arrivals` searches start (seeded, inclusive range), the coalescer's end-of-turn flush runs,
 * then the clock moves; every node call is answered `delay_ms` (per replica index) after it
 * was sent, however many searches it carries.
 */
async function simulate(o: {
  seed: number;
  turns: number;
  arrivals: [number, number];
  /** Every `every` turns only (light load); default 1. */
  every?: number;
  delay_ms: [number, number, number];
  search?: Partial<SearchOptions>;
}): Promise<SimResult> {
  const turns: (() => void)[] = [];
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 1, replication_factor: 3 },
    o.search ?? {},
    (fn) => turns.push(fn),
  );
  replicas[0].forEach((n, i) => nodes.delay_ms.set(n, o.delay_ms[i]));
  const prng = new Prng(o.seed);
  const pending = new Set<Promise<unknown>>();
  let searches = 0;
  let failed = 0;
  const step = async () => {
    await settle();
    for (const fn of turns.splice(0)) fn();
    await clock.advance(1);
  };
  for (let t = 0; t < o.turns; t++) {
    const n = t % (o.every ?? 1) === 0 ? prng.intBetween(o.arrivals[0], o.arrivals[1]) : 0;
    for (let i = 0; i < n; i++) {
      searches++;
      const p: Promise<unknown> = scatter.search(view, query).then(
        (r) => assert.deepEqual(r.results.map((x) => x.id), top5),
        () => failed++,
      ).finally(() => pending.delete(p));
      pending.add(p);
    }
    await step();
  }
  for (let i = 0; pending.size > 0 && i < 10_000; i++) await step();
  assert.equal(pending.size, 0, "every search ended");
  const per = new Map<string, number>();
  for (const s of nodes.sent) per.set(s.node, (per.get(s.node) ?? 0) + s.searches);
  return { searches, calls: nodes.sent.length, per, failed };
}

Deno.test("Scatter.search simulation: under load the searches of a turn share one replica's batch (off: they rotate), and every replica still serves", async () => {
  const load = {
    turns: 400,
    arrivals: [2, 8] as [number, number],
    delay_ms: [3, 3, 3] as [number, number, number],
  };
  for (const seed of [1, 2, 3]) {
    const on = await simulate({ seed, ...load });
    const off = await simulate({ seed, ...load, search: { batch_affinity: 0 } });
    assert.equal(on.failed + off.failed, 0);
    const per_call_on = on.searches / on.calls;
    const per_call_off = off.searches / off.calls;
    // Seen: 3.5 vs 1.7 searches per node call (5 searches start per turn on average).
    assert.ok(
      per_call_on >= 1.5 * per_call_off,
      `seed ${seed}: ${per_call_on} searches per call with affinity, ${per_call_off} without`,
    );
    for (const [node, n] of on.per) {
      assert.ok(n >= 0.25 * on.searches, `seed ${seed}: ${node} served ${n} of ${on.searches}`);
    }
    assert.equal(on.per.size, 3);
  }
});

Deno.test("Scatter.search simulation: light load sends every search alone at once, rotating", async () => {
  const light = await simulate({
    seed: 4,
    turns: 600,
    every: 10,
    arrivals: [1, 1],
    delay_ms: [3, 3, 3],
  });
  assert.equal(light.failed, 0);
  assert.equal(light.calls, light.searches, "no batch: nothing was in flight");
  assert.deepEqual([...light.per.values()], [20, 20, 20]);
});

Deno.test("Scatter.search simulation: a slow replica gets few searches, batched or not; full batches spread over the replicas", async () => {
  const [slow_node] = setup({ shard_number: 1, replication_factor: 3 }).replicas[0];
  for (const search of [{ hedge_ms: 0 }, {}, { hedge_ms: 0, batch_affinity: 0 }]) {
    const slow = await simulate({
      seed: 5,
      turns: 400,
      arrivals: [2, 8],
      delay_ms: [30, 3, 3],
      search,
    });
    assert.equal(slow.failed, 0);
    // Seen: 15-17% with affinity (its probes, when its average has decayed, gather a batch),
    // 11% without; each fast replica over 40%.
    const share = (slow.per.get(slow_node) ?? 0) / slow.searches;
    assert.ok(share < 0.2, `${JSON.stringify(search)}: the slow replica served ${share}`);
    for (const [node, n] of slow.per) {
      if (node !== slow_node) assert.ok(n >= 0.35 * slow.searches, `${node}: ${n}`);
    }
  }
  // Batches of at most 2 with 6-10 searches per turn: a full batch goes at once, and the next
  // searches open batches on the other replicas.
  const full = await simulate({
    seed: 6,
    turns: 400,
    arrivals: [6, 10],
    delay_ms: [3, 3, 3],
    search: { batch_max: 2 },
  });
  assert.equal(full.failed, 0);
  assert.ok(full.searches / full.calls <= 2);
  for (const [node, n] of full.per) {
    assert.ok(n >= 0.3 * full.searches, `${node} served ${n} of ${full.searches}`);
  }
});

Deno.test("HedgeAlarms: one timer for many alarms, armed for the earliest; none left when the last is removed", async () => {
  const clock = new ManualClock();
  const alarms = new HedgeAlarms(clock);
  const fired: string[] = [];
  const a = { due_ms: 30, fire: () => fired.push("a") };
  const b = { due_ms: 10, fire: () => fired.push("b") };
  const c = { due_ms: 20, fire: () => fired.push("c") };
  alarms.add(a);
  assert.equal(clock.pending, 1);
  alarms.add(b); // earlier: re-armed for it
  assert.equal(clock.pending, 1, "the timer for a was replaced, not added to");
  alarms.add(c); // later than the armed one: no timer of its own
  assert.equal(clock.pending, 1);
  await clock.advance(10);
  assert.deepEqual(fired, ["b"]);
  assert.equal(alarms.size, 2);
  assert.equal(clock.pending, 1, "re-armed for c");
  alarms.remove(c); // the armed alarm leaves; a remains: the timer fires for nothing, re-arms
  await clock.advance(10);
  assert.deepEqual(fired, ["b"]);
  assert.ok(alarms.armed);
  await clock.advance(10);
  assert.deepEqual(fired, ["b", "a"]);
  assert.equal(alarms.size, 0);
  assert.equal(clock.pending, 0);
  assert.ok(!alarms.armed);
  // Removing the last alarm cancels the timer; removing one twice is harmless.
  alarms.add(a);
  alarms.remove(a);
  alarms.remove(a);
  assert.equal(clock.pending, 0);
  await clock.advance(100);
  assert.deepEqual(fired, ["b", "a"]);
});

Deno.test("HedgeAlarms with a clock that cannot cancel: a disarmed sleep fires nothing", async () => {
  const inner = new ManualClock();
  const clock: RouterClock = { now_ms: () => inner.now_ms(), sleep: (ms) => inner.sleep(ms) };
  const alarms = new HedgeAlarms(clock);
  const fired: number[] = [];
  const a = { due_ms: 10, fire: () => fired.push(1) };
  alarms.add(a);
  alarms.remove(a);
  const b = { due_ms: 15, fire: () => fired.push(2) };
  alarms.add(b);
  await inner.advance(10);
  assert.deepEqual(fired, [], "a's stale sleep ran out and fired nothing");
  await inner.advance(5);
  assert.deepEqual(fired, [2]);
  assert.equal(alarms.size, 0);
});

Deno.test("Scatter.search: concurrent slow searches share one hedge timer", async () => {
  const { clock, nodes, scatter, view, replicas } = setup(
    { shard_number: 1, replication_factor: 2 },
    { hedge_ms: 10, hedge_factor: 3, batch_max: 0 },
  );
  for (const n of replicas[0]) nodes.mode.set(n, "hang");
  const searches = [0, 1, 2].map(() => scatter.search(view, query));
  await settle();
  assert.equal(scatter.alarms.size, 3, "each search waits for its hedge check");
  assert.equal(clock.pending, 1, "one timer for the three");
  await clock.advance(10);
  assert.equal(
    scatter.counts.hedges + scatter.counts.hedges_skipped,
    3,
    "each considered for a hedge once, at its delay",
  );
  assert.ok(scatter.counts.hedges >= 1);
  for (const h of nodes.hung.splice(0)) h.release();
  for (const r of await Promise.all(searches)) assert.deepEqual(r.results.map((x) => x.id), top5);
  assert.equal(scatter.alarms.size, 0);
  assert.equal(clock.pending, 0, "no hedge timer outlives the searches");
});
