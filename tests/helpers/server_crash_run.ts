/**
 * The crash test's driver (run under Node by `tests/server_crash_test.ts`): 16 clients write
 * (Put, PutBatch, Delete) to a storage node that is SIGKILLed at seeded-random moments, under
 * load and sometimes also during start-up (recovery, torn-tail truncation, snapshot load), and
 * restarted each time. After every restart each point written since the last check must hold the
 * result of its last acknowledged write or of a write issued after it (see
 * `server_crash_model.ts`), and the node's point count must equal the model's, so no point
 * appears that was never written. Puts carry payloads derived from the id and version
 * (`crashPayload`): a point must hold exactly its version's payload, compared byte for byte. A
 * quarter of each client's points have uint64 ids above 2^53 and a quarter string ids
 * (`wireId`), so writes logged as the 64-bit and string id record types and the snapshot's key
 * table are checked the same way. Snapshots are due every second while writes go on, so kills
 * also land in snapshot writing and WAL truncation; every 10th iteration also restarts the node
 * gracefully (a snapshot on shutdown, then a start from it), which keeps the WAL that every
 * start replays short.
 *
 * It runs under Node, not Deno, because Deno 2.9.6's `node:http2` aborts the *client* process
 * (nghttp2 assertion `stream->closed_next == NULL` in `find_stream_on_goaway_func`) when the
 * server is killed under a channel with calls in flight (denoland/deno#36788).
 *
 * `CRASH_SEED=<seed>` replays a run's choices (operations, ids, delays; the interleaving of the
 * clients still varies); `CRASH_ITERATIONS` (default 50) sets the number of kill points: each
 * iteration kills under load, and about a quarter also kill the next start-up. `CRASH_SHARDS`
 * (default 1) creates the collection with that many shards: each a unit with its own WAL and
 * snapshots on the node (src/storage/sharded_collection.ts), so batches spanning units and
 * per-unit recovery are checked the same way.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { createClient, type UnaryCallback, type VectorDBClient } from "../../src/api/proto.ts";
import { ApiClient, describeGrpcError } from "../../src/api/client.ts";
import { NodeProcess } from "../../harness/node.ts";
import { churnRandom } from "../../harness/workloads/churn_vectors.ts";
import {
  CRASH_DIM,
  CrashModel,
  crashPayload,
  crashVector,
  decodeCrashVector,
  type PointState,
  type Write,
} from "./server_crash_model.ts";

const CLIENTS = 16;
/** Each client owns ids [c * ID_STRIDE, c * ID_STRIDE + IDS_PER_CLIENT). */
const ID_STRIDE = 100_000;
const IDS_PER_CLIENT = 64;

/**
 * The id a point of the model (its `tag`, c * ID_STRIDE + k) has on the wire: tags with k % 4
 * = 1 have the uint64 id 2^63 + tag (above 2^53: a decimal string), k % 4 = 3 the string id
 * `crash-<tag>-ü`, the rest the integer id tag. Vectors and payloads encode the tag.
 */
function wireId(tag: number): { id: number | string; string_id?: string } {
  const k = tag % ID_STRIDE;
  if (k % 4 === 1) return { id: (2n ** 63n + BigInt(tag)).toString() };
  if (k % 4 === 3) return { id: 0, string_id: `crash-${tag}-ü` };
  return { id: tag };
}
const COLLECTION = "crash";
const CALL_TIMEOUT_MS = 10_000;
/** Errors a write may get because the node was killed under it. */
const CRASH_CODES = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.INTERNAL, // "Received RST_STREAM with code 2" when the socket dies mid-stream
]);

const FAST_RECONNECT = {
  "grpc.initial_reconnect_backoff_ms": 50,
  "grpc.max_reconnect_backoff_ms": 100,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface CrashStats {
  acked: number;
  failed: number;
  /** Failures by status name. */
  codes: Map<string, number>;
  /** Failures no crash explains. */
  errors: Map<string, number>;
}

interface Writers {
  stop(): Promise<void>;
  firstAck: Promise<void>;
}

/** Starts the 16 client loops; `stop()` ends them (cancelling calls left after 1 s). */
function startWriters(
  clients: VectorDBClient[],
  model: CrashModel,
  random: () => number,
  stats: CrashStats,
): Writers {
  let stopping = false;
  const inFlight = new Set<grpc.ClientUnaryCall>();
  let sawAck: () => void = () => {};
  const firstAck = new Promise<void>((resolve) => (sawAck = resolve));

  function send(client: VectorDBClient, method: "Put" | "PutBatch" | "Delete", req: unknown) {
    return new Promise<boolean>((resolve) => {
      const cb: UnaryCallback<unknown> = (e) => {
        inFlight.delete(handle);
        if (e === null) return resolve(true);
        const line = describeGrpcError(e);
        const kind = grpc.status[e.code] ?? String(e.code);
        stats.codes.set(kind, (stats.codes.get(kind) ?? 0) + 1);
        if (!CRASH_CODES.has(e.code)) {
          stats.errors.set(
            `unexpected: ${line}`,
            (stats.errors.get(`unexpected: ${line}`) ?? 0) + 1,
          );
        }
        resolve(false);
      };
      const fn = client[method] as unknown as (
        r: unknown,
        o: Partial<grpc.CallOptions>,
        cb: UnaryCallback<unknown>,
      ) => grpc.ClientUnaryCall;
      const handle = fn.call(client, req, {
        deadline: Date.now() + CALL_TIMEOUT_MS,
        waitForReady: true,
      }, cb);
      inFlight.add(handle);
    });
  }

  async function loop(c: number): Promise<void> {
    const client = clients[c];
    const base = c * ID_STRIDE;
    const pick = () => base + Math.floor(random() * IDS_PER_CLIENT);
    while (!stopping) {
      const r = random();
      let writes: Write[];
      let ok: boolean;
      if (r < 0.5) {
        const id = pick();
        const v = model.version();
        writes = [model.issue(id, v)];
        ok = await send(client, "Put", {
          ...wireId(id),
          vector: crashVector(id, v),
          payload: crashPayload(id, v),
          collection: COLLECTION,
        });
      } else if (r < 0.75) {
        const ids = new Set<number>();
        const n = 2 + Math.floor(random() * 15);
        while (ids.size < n) ids.add(pick());
        const points = [...ids].map((id) => ({ id, vector: [] as number[], v: model.version() }));
        writes = points.map((p) => model.issue(p.id, p.v));
        ok = await send(client, "PutBatch", {
          points: points.map((p) => ({
            ...wireId(p.id),
            vector: crashVector(p.id, p.v),
            payload: crashPayload(p.id, p.v),
          })),
          collection: COLLECTION,
        });
      } else {
        const id = pick();
        writes = [model.issue(id, null)];
        ok = await send(client, "Delete", { ...wireId(id), collection: COLLECTION });
      }
      if (ok) {
        for (const w of writes) model.ack(w);
        stats.acked++;
        sawAck();
      } else {
        stats.failed++;
      }
    }
  }

  const loops = clients.map((_, c) => loop(c));
  return {
    firstAck,
    async stop() {
      stopping = true;
      const timer = setTimeout(() => {
        for (const h of inFlight) h.cancel();
      }, 1000);
      await Promise.all(loops);
      clearTimeout(timer);
    },
  };
}

/** Checks every touched point and the point count against the model, then settles them. */
async function verify(api: ApiClient, model: CrashModel, where: string): Promise<number> {
  const ids = model.touched();
  const problems: string[] = [];
  const observed = new Map<number, PointState>();
  for (let at = 0; at < ids.length; at += 256) {
    await Promise.all(
      ids.slice(at, at + 256).map(async (id) => {
        const got = await api.call("Get", { ...wireId(id), collection: COLLECTION });
        const state = got.found ? decodeCrashVector(id, got.vector) : null;
        observed.set(id, state);
        const problem = model.check(id, state);
        if (problem !== null) problems.push(problem);
        // The payload of the version held, byte for byte (UTF-8), or none.
        if (state !== null) {
          const want = new TextEncoder().encode(crashPayload(id, state));
          const have = new TextEncoder().encode(got.payload ?? "");
          if (Buffer.compare(Buffer.from(want), Buffer.from(have)) !== 0) {
            problems.push(
              `point ${id} at version ${state} holds payload ${
                JSON.stringify((got.payload ?? "").slice(0, 80))
              } (${have.length} bytes), not its version's (${want.length} bytes)`,
            );
          }
        }
      }),
    );
  }
  assert.deepEqual(problems.slice(0, 10), [], `${where}: ${problems.length} points are wrong`);
  for (const [id, state] of observed) model.settle(id, state);
  const stats = await api.call("Stats", {});
  const c = stats.collections.find((x) => x.name === COLLECTION);
  assert.ok(c !== undefined, `${where}: collection "${COLLECTION}" is gone`);
  assert.equal(
    Number(c.count),
    model.presentCount(),
    `${where}: the node holds ${c.count} points, the model ${model.presentCount()}`,
  );
  return ids.length;
}

/** Runs the crash test; throws on the first wrong point. Returns the summary line. */
export async function runCrash(seed: number, iterations: number, shards = 1): Promise<string> {
  const random = churnRandom(seed);
  // Two search and two build threads whatever the machine's cores: batches are linked on
  // worker threads after their WAL append, and no acknowledged write may be lost that way.
  const node = await NodeProcess.prepare({
    args: ["--snapshot-every-s", "1", "--search-threads", "2", "--build-threads", "2"],
  });
  const model = new CrashModel();
  const clients: VectorDBClient[] = [];
  let api: ApiClient | null = null;
  const stats: CrashStats = { acked: 0, failed: 0, errors: new Map(), codes: new Map() };
  let killPoints = 0;
  let startupKills = 0;
  let checked = 0;
  let startMs = 0;
  let openMs = 0;
  let gracefulRestarts = 0;
  const phase = { first_ack: 0, stop: 0, verify: 0 };
  let t = 0;
  const started = performance.now();
  try {
    await node.start();
    api = new ApiClient(node.address, { timeout_ms: 30_000, client_options: FAST_RECONNECT });
    const made = await api.call("CreateCollection", {
      name: COLLECTION,
      dimension: CRASH_DIM,
      shard_number: shards,
    });
    assert.equal(made.collection?.shard_number, shards, "the node made the shards asked for");
    // Long-lived channels that reconnect fast. (Closing a channel whose connection the kill
    // dropped can abort a Deno process in nghttp2: denoland/deno#36788.)
    for (let c = 0; c < CLIENTS; c++) {
      clients.push(
        createClient(node.address, { ...FAST_RECONNECT, "grpc.use_local_subchannel_pool": 1 }),
      );
    }
    for (let it = 0; killPoints < iterations; it++) {
      // Writes under load, then a kill at a random moment after the first acknowledgement.
      const writers = startWriters(clients, model, random, stats);
      t = performance.now();
      await writers.firstAck;
      phase.first_ack += performance.now() - t;
      await sleep(random() * 300);
      const killed = node.kill();
      t = performance.now();
      await writers.stop();
      await killed;
      phase.stop += performance.now() - t;
      killPoints++;
      // Sometimes a second kill during start-up: recovery, torn-tail truncation, snapshot load.
      if (random() < 0.25 && killPoints < iterations) {
        const ready = node.launch().catch(() => {});
        await sleep(random() * 700);
        if (node.running) {
          await node.kill();
          startupKills++;
          killPoints++;
        }
        await ready;
      }
      await node.start();
      startMs += node.ready_ms;
      if (it % 10 === 9) {
        // The node rarely lives the second its snapshot timer needs, so the WAL would only
        // grow (and every start replay all of it): a graceful restart snapshots it.
        await node.restart();
        gracefulRestarts++;
      }
      openMs += Number(/ in (\d+) ms \(\d+ collections\)/.exec(node.stderr)?.[1] ?? 0);
      t = performance.now();
      checked += await verify(api, model, `iteration ${it} (seed ${seed})`);
      phase.verify += performance.now() - t;
      assert.deepEqual([...stats.errors], [], `Unexpected errors (seed ${seed})`);
    }
    // A graceful stop (snapshot) and a start must keep the same state.
    await node.restart();
    checked += await verify(api, model, `after graceful restart (seed ${seed})`);
    assert.deepEqual(node.unexpected_exits, []);
    return (
      `seed ${seed}, ${shards} shards: ${killPoints} kill points (${startupKills} during start-up), ` +
      `${gracefulRestarts + 1} graceful restarts, ` +
      `${stats.acked} acked writes, ${stats.failed} failed ` +
      `(${[...stats.codes].map(([k, n]) => `${k} ${n}`).join(", ")}), ${checked} point checks, ` +
      `${model.presentCount()} points, ${((performance.now() - started) / 1000).toFixed(1)} s ` +
      `(${(startMs / 1000).toFixed(1)} s in start-ups, ${(openMs / 1000).toFixed(1)} s opening, ` +
      Object.entries(phase).map(([k, v]) => `${(v / 1000).toFixed(1)} s ${k}`).join(", ") + ")"
    );
  } catch (e) {
    console.error(
      `server_crash_test failed: replay with CRASH_SEED=${seed} CRASH_ITERATIONS=${iterations}` +
        `\nnode stderr:\n${node.tail(60)}`,
    );
    throw e;
  } finally {
    for (const c of clients) c.close();
    api?.close();
    await node.close();
  }
}

// Run when executed directly: `node --import ./node_modules/tsx/dist/esm/index.mjs
// tests/helpers/server_crash_run.ts` (what tests/server_crash_test.ts does).
if ((process.argv[1] ?? "").endsWith("server_crash_run.ts")) {
  const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const iterations = Number(process.env.CRASH_ITERATIONS ?? 50);
  const shards = Number(process.env.CRASH_SHARDS ?? 1);
  runCrash(seed, iterations, shards).then(
    (summary) => {
      console.log(summary);
      process.exit(0);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
