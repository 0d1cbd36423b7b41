/**
 * SearchCoalescer over a fake NodePort whose Search and SearchBatch answer each search with its
 * own k (so answers can be matched to searches), with a manual `schedule` (the end of a turn).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import type { RequestOf, ResponseOf } from "../api/client.ts";
import type { MethodName, SearchRequest, SearchResponse } from "../api/proto.ts";
import { SEARCH_BATCH_MAX } from "../common/limits.ts";
import { type NodeCallOptions, NodeStatusError } from "./node_port.ts";
import {
  AFFINITY_BUSY,
  AFFINITY_OPEN,
  COALESCE_K_MAX,
  SearchCoalescer,
} from "./search_coalescer.ts";
import { CallOnlyPort } from "./node_port_testing.ts";

interface Sent {
  node: string;
  method: string;
  ks: number[];
  options?: NodeCallOptions;
  settle: () => void;
}

/** Answers are held until `release`d; `refuse` makes a node answer with an error. */
class FakePort extends CallOnlyPort {
  readonly sent: Sent[] = [];
  /** Per node: the error a SearchBatch gets (a Search of k in `bad_k` gets it too). */
  readonly refuse = new Map<string, Error>();
  /** Searches with this k are refused alone (and make their batch refused). */
  readonly bad_k = new Set<number>();
  /** Per node: the SearchBatch answer has this many results instead of one per search. */
  readonly short = new Map<string, number>();

  call<K extends MethodName>(
    node: string,
    method: K,
    request: RequestOf<K>,
    options?: NodeCallOptions,
  ): Promise<ResponseOf<K>> {
    const answer = (s: SearchRequest): SearchResponse => ({
      results: [{ id: s.k, distance: 0 }],
      partial: false,
      shards_answered: 1,
      shards_total: 1,
      nodes_answered: [],
      shard_searches: 1,
    });
    const list = method === "SearchBatch"
      ? (request as RequestOf<"SearchBatch">).searches
      : [request as SearchRequest];
    return new Promise((resolve, reject) => {
      const settle = () => {
        const err = this.refuse.get(node);
        const bad = list.some((s) => this.bad_k.has(s.k));
        if (err !== undefined && (method === "SearchBatch" || bad)) return reject(err);
        if (bad) {
          return reject(new NodeStatusError(grpc.status.INVALID_ARGUMENT, "bad search"));
        }
        if (method === "Search") return resolve(answer(list[0]) as ResponseOf<K>);
        const results = list.map(answer).slice(0, this.short.get(node) ?? list.length);
        resolve({ results } as ResponseOf<K>);
      };
      this.sent.push({ node, method, ks: list.map((s) => s.k), options, settle });
    });
  }
}

function setup(batch_max = 4) {
  const port = new FakePort();
  const turns: (() => void)[] = [];
  const co = new SearchCoalescer(port, { batch_max, schedule: (fn) => turns.push(fn) });
  const endTurn = () => {
    for (const fn of turns.splice(0)) fn();
  };
  return { port, co, endTurn };
}

const search = (k: number, more: Partial<SearchRequest> = {}): SearchRequest => ({
  vector: [0, 0],
  k,
  collection: "c",
  ef: 0,
  ...more,
});

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** Each answer is its own search's (the fake answers id = k). */
function assertOwn(answers: SearchResponse[], ks: number[]): void {
  assert.deepEqual(answers.map((a) => a.results[0].id), ks);
}

Deno.test("SearchCoalescer: a lone search goes at once as Search", async () => {
  const { port, co } = setup();
  const p = co.search("n1", search(1));
  assert.equal(port.sent.length, 1);
  assert.equal(port.sent[0].method, "Search");
  port.sent[0].settle();
  assertOwn([await p], [1]);
  // Nothing in flight any more: the next one goes at once too.
  const q = co.search("n1", search(2));
  assert.equal(port.sent.length, 2);
  assert.equal(port.sent[1].method, "Search");
  port.sent[1].settle();
  await q;
});

Deno.test("SearchCoalescer: searches for a busy node wait for the end of the turn, then go as one SearchBatch; others are not held", async () => {
  const { port, co, endTurn } = setup(8);
  const first = co.search("n1", search(1));
  const queued = [2, 3, 4].map((k) => co.search("n1", search(k)));
  const other = co.search("n2", search(9));
  assert.deepEqual(port.sent.map((s) => `${s.node} ${s.method}`), ["n1 Search", "n2 Search"]);
  assert.equal(co.waiting, 3);
  endTurn();
  assert.equal(co.waiting, 0);
  assert.deepEqual(port.sent.map((s) => `${s.node} ${s.method} ${s.ks}`), [
    "n1 Search 1",
    "n2 Search 9",
    "n1 SearchBatch 2,3,4",
  ]);
  assert.equal(port.sent[2].options, undefined, "the batch has the port's default deadline");
  for (const s of port.sent) s.settle();
  assertOwn([await first], [1]);
  assertOwn(await Promise.all(queued), [2, 3, 4]);
  assertOwn([await other], [9]);
  assert.deepEqual(co.counts, { batches: 1, batched: 3, resent: 0 });
});

Deno.test("SearchCoalescer: a queue of one goes as Search; a full queue goes at once", async () => {
  const { port, co, endTurn } = setup(3);
  const first = co.search("n1", search(1));
  const lone = co.search("n1", search(2));
  endTurn();
  assert.deepEqual(port.sent.map((s) => `${s.method} ${s.ks}`), ["Search 1", "Search 2"]);
  const full = [3, 4, 5, 6].map((k) => co.search("n1", search(k)));
  // Three reached batch_max: sent without waiting for the turn; the fourth waits.
  assert.deepEqual(port.sent.slice(2).map((s) => `${s.method} ${s.ks}`), ["SearchBatch 3,4,5"]);
  assert.equal(co.waiting, 1);
  endTurn();
  assert.deepEqual(port.sent.slice(3).map((s) => `${s.method} ${s.ks}`), ["Search 6"]);
  for (const s of port.sent) s.settle();
  assertOwn([await first, await lone, ...await Promise.all(full)], [1, 2, 3, 4, 5, 6]);
});

Deno.test("SearchCoalescer: searches with options or large answers are never batched", async () => {
  const { port, co, endTurn } = setup();
  const all = [
    co.search("n1", search(1)),
    co.search("n1", search(2), { wait_for_ready: true, timeout_ms: 500 }),
    co.search("n1", search(3), { timeout_ms: 100 }),
    co.search("n1", search(4, { exact: true })),
    co.search("n1", search(5, { with_payload: true })),
    co.search("n1", search(6, { with_vector: true })),
    co.search("n1", search(COALESCE_K_MAX + 1)),
  ];
  assert.equal(co.waiting, 0);
  endTurn();
  assert.deepEqual(port.sent.map((s) => s.method), Array(7).fill("Search"));
  assert.deepEqual(port.sent[1].options, { wait_for_ready: true, timeout_ms: 500 });
  assert.deepEqual(port.sent[2].options, { timeout_ms: 100 });
  for (const s of port.sent) s.settle();
  assertOwn(await Promise.all(all), [1, 2, 3, 4, 5, 6, COALESCE_K_MAX + 1]);
});

Deno.test("SearchCoalescer: a batch refused by a verdict is resent search by search; each gets its own answer or verdict", async () => {
  const { port, co, endTurn } = setup();
  port.bad_k.add(3);
  const first = co.search("n1", search(1));
  const queued = [2, 3, 4].map((k) =>
    co.search("n1", search(k)).then((r) => r.results[0].id, (e) => e.code)
  );
  endTurn();
  for (const s of port.sent) s.settle();
  await settle();
  // The batch failed (INVALID_ARGUMENT for all); each was sent alone.
  assert.deepEqual(port.sent.slice(2).map((s) => `${s.method} ${s.ks}`), [
    "Search 2",
    "Search 3",
    "Search 4",
  ]);
  for (const s of port.sent.slice(2)) s.settle();
  assertOwn([await first], [1]);
  assert.deepEqual(await Promise.all(queued), [2, grpc.status.INVALID_ARGUMENT, 4]);
  assert.deepEqual(co.counts, { batches: 1, batched: 3, resent: 3 });
});

Deno.test("SearchCoalescer: a batch that fails transiently fails each of its searches the same way", async () => {
  const { port, co, endTurn } = setup();
  const down = new NodeStatusError(grpc.status.UNAVAILABLE, "n1 is down");
  port.refuse.set("n1", down);
  const first = co.search("n1", search(1));
  const queued = [2, 3].map((k) => co.search("n1", search(k)).then(() => null, (e) => e));
  endTurn();
  for (const s of port.sent) s.settle();
  assertOwn([await first], [1]);
  assert.deepEqual(await Promise.all(queued), [down, down]);
  assert.equal(port.sent.length, 2, "nothing resent");
});

Deno.test("SearchCoalescer: a batch answer with the wrong number of results is resent search by search", async () => {
  const { port, co, endTurn } = setup();
  port.short.set("n1", 1);
  const first = co.search("n1", search(1));
  const queued = [2, 3].map((k) => co.search("n1", search(k)));
  endTurn();
  for (const s of port.sent) s.settle();
  await settle();
  assert.deepEqual(port.sent.slice(2).map((s) => `${s.method} ${s.ks}`), ["Search 2", "Search 3"]);
  for (const s of port.sent.slice(2)) s.settle();
  assertOwn([await first, ...await Promise.all(queued)], [1, 2, 3]);
});

Deno.test("SearchCoalescer: batch_max must be 2 .. SEARCH_BATCH_MAX", () => {
  const port = new FakePort();
  for (const bad of [0, 1, SEARCH_BATCH_MAX + 1, 2.5]) {
    assert.throws(() => new SearchCoalescer(port, { batch_max: bad }), /batch_max/);
  }
  new SearchCoalescer(port, { batch_max: SEARCH_BATCH_MAX });
});

Deno.test("SearchCoalescer: a batch failed by one search's error that is not a verdict (INTERNAL, RESOURCE_EXHAUSTED, UNKNOWN) is resent search by search; the others get their answers", async () => {
  for (const code of [grpc.status.INTERNAL, grpc.status.RESOURCE_EXHAUSTED, grpc.status.UNKNOWN]) {
    const { port, co, endTurn } = setup();
    const err = new NodeStatusError(code, "search 3 failed");
    port.refuse.set("n1", err);
    port.bad_k.add(3);
    const first = co.search("n1", search(1));
    const queued = [2, 3, 4].map((k) =>
      co.search("n1", search(k)).then((r) => r.results[0].id, (e) => e)
    );
    endTurn();
    for (const s of port.sent) s.settle();
    await settle();
    assert.deepEqual(port.sent.slice(2).map((s) => `${s.method} ${s.ks}`), [
      "Search 2",
      "Search 3",
      "Search 4",
    ], `code ${code}`);
    for (const s of port.sent.slice(2)) s.settle();
    assertOwn([await first], [1]);
    assert.deepEqual(await Promise.all(queued), [2, err, 4], `code ${code}`);
    assert.deepEqual(co.counts, { batches: 1, batched: 3, resent: 3 });
  }
});

Deno.test("SearchCoalescer: a batch that fails for the whole node (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, a local error) fails each search the same way, unsent again", async () => {
  const errors = [
    new NodeStatusError(grpc.status.UNAVAILABLE, "n1 is down"),
    new NodeStatusError(grpc.status.DEADLINE_EXCEEDED, "deadline passed"),
    new NodeStatusError(grpc.status.CANCELLED, "cancelled"),
    new Error("no channel"),
  ];
  for (const err of errors) {
    const { port, co, endTurn } = setup();
    port.refuse.set("n1", err);
    const first = co.search("n1", search(1));
    const queued = [2, 3].map((k) => co.search("n1", search(k)).then(() => null, (e) => e));
    endTurn();
    for (const s of port.sent) s.settle();
    assertOwn([await first], [1]);
    assert.deepEqual(await Promise.all(queued), [err, err]);
    assert.equal(port.sent.length, 2, `nothing resent after ${err.message}`);
  }
});

Deno.test("SearchCoalescer: affinity says how a search would travel (join an open batch, open one, alone); calls counts calls, not searches", async () => {
  const { port, co, endTurn } = setup(3);
  assert.equal(co.affinity("n1"), 0, "nothing in flight: a search goes alone");
  assert.equal(co.calls("n1"), 0);
  const first = co.search("n1", search(1));
  assert.equal(co.affinity("n1"), AFFINITY_BUSY, "a call in flight: the next search opens a batch");
  const queued = [2, 3].map((k) => co.search("n1", search(k)));
  assert.equal(co.affinity("n1"), AFFINITY_OPEN, "a batch is open in this turn");
  assert.equal(co.affinity("n2"), 0);
  endTurn();
  assert.equal(co.affinity("n1"), AFFINITY_BUSY, "sent: no batch open any more");
  assert.equal(co.calls("n1"), 2, "one Search and one SearchBatch of two");
  // A full queue goes at once: no batch stays open to join.
  const full = [4, 5, 6].map((k) => co.search("n1", search(k)));
  assert.equal(co.affinity("n1"), AFFINITY_BUSY);
  assert.equal(co.calls("n1"), 3);
  for (const s of port.sent) s.settle();
  await Promise.all([first, ...queued, ...full]);
  assert.equal(co.calls("n1"), 0);
  assert.equal(co.affinity("n1"), 0);
});
