/**
 * Hint delivery: runs the replays and probes that each node's delivery state machine
 * (delivery.ts) asks for on {@link HintReplay.tick}, over the router's {@link NodePort}.
 *
 * A node believed down is retried every `retry_interval_ms`; while it answers, its queue is
 * drained continuously in batches of {@link REPLAY_BATCH} hints, each batch's delivery recorded
 * durably once (`HintQueue.commit`). Point hints (put, delete, batch) go out up to
 * {@link REPLAY_CONCURRENCY} at a time: every one carries its version and a node applies a write
 * only over an older one (last writer wins), so their order does not matter, and one at a time
 * a returning node took hints no faster than new writes arrived (about 40/s measured on 2 cores,
 * each an fsync; concurrent ones share the node's group commit). Collection creations and drops
 * (and writes without a version, from old hint logs) are barriers: they go alone, after every hint before them and before any after them. Outcomes
 * are settled in queue order; after the first hint the node could not take, the rest of the
 * window is delivered again later (harmless: versions make it idempotent). A hint the node rejects for good
 * (a verdict, not an availability error) is discarded and logged; NOT_FOUND for a delete or a
 * drop means there was nothing to remove and counts as delivered. A point hint carries the
 * collection's shard count when the write was accepted (records.ts layout trailer; hints from
 * older routers have none, sent as 0: unchecked): a node whose collection has another (it was
 * dropped and made again meanwhile, e.g. through another router) refuses it with
 * FAILED_PRECONDITION and the hint is discarded, instead of landing in the wrong layout.
 *
 * @module
 */
import { idsToWire, idToWire } from "../../common/point_id.ts";
import { describeGrpcError } from "../../api/client.ts";
import type { Point } from "../../api/proto.ts";
import { decodeRecord } from "../../common/records.ts";
import { payloadText } from "../../common/payload.ts";
import {
  type Background,
  isNotFound,
  isTransient,
  type NodePort,
  type RouterClock,
} from "../node_port.ts";
import type { NodeState } from "../node_table.ts";
import type { Hint } from "./queue.ts";
import { deleteBatchOfRecord } from "../points_batch.ts";

/** Hints delivered between two durable watermark updates. */
export const REPLAY_BATCH = 64;
/** Most point hints in flight to one node at once. */
export const REPLAY_CONCURRENCY = 16;

/**
 * Deadline of one write to a node. A batch costs the node an index insert per point (about a
 * millisecond each on a busy 2-core machine), so a fixed node timeout that suits single puts
 * would fail every large batch: each point adds {@link BATCH_POINT_TIMEOUT_MS}.
 */
export const BATCH_POINT_TIMEOUT_MS = 5;

/** Deadline of a write carrying `request` (see {@link BATCH_POINT_TIMEOUT_MS}). */
export function writeTimeoutMs(base_ms: number, request: unknown): number {
  const points = (request as { points?: unknown[] })?.points;
  return base_ms + (Array.isArray(points) ? points.length * BATCH_POINT_TIMEOUT_MS : 0);
}

/**
 * Whether a hint may overtake or be overtaken by its neighbours: a point write that carries its
 * version(s). Collection creations and drops, and writes without a version (hint logs from
 * before versions: the node would stamp them on arrival, so their order would matter), are not.
 */
function versioned(r: ReturnType<typeof decodeRecord>): boolean {
  switch (r.kind) {
    case "put":
    case "delete":
      return r.version > 0;
    case "put_batch":
    case "copy":
      return r.versions.length === r.ids.length && r.versions.every((v) => v > 0);
    default:
      return false;
  }
}

/** What a {@link HintReplay} needs. */
export interface HintReplayDeps {
  nodes: NodePort;
  clock: RouterClock;
  log(message: string): void;
  background: Background;
  node_timeout_ms: number;
  retry_interval_ms: number;
  /** True once the router stops: no new replay starts, a running one ends after its hint. */
  stopped(): boolean;
}

/** Drives the delivery of every node's hints. */
export class HintReplay {
  /** Counters for metrics (read at scrape time). */
  readonly counts = {
    /** Hints the node applied (or had no use for: a drop of nothing). */
    delivered: 0,
    /** Hints the node rejected for good, dropped. */
    discarded: 0,
  };

  constructor(readonly deps: HintReplayDeps) {}

  /** Ticks a node's delivery state; nodes off the ring wait (their channels are closed). */
  tick(state: NodeState): void {
    if (this.deps.stopped() || !state.active) return;
    const action = state.delivery.tick(this.deps.clock.now_ms());
    if (action === "none") return;
    const run = action === "replay" ? this.#replay(state) : this.#probe(state);
    this.deps.background.track(`${action} of ${state.address}`, run);
  }

  async #probe(state: NodeState): Promise<void> {
    let ok = false;
    try {
      await this.deps.nodes.call(state.address, "ListCollections", {}, {
        timeout_ms: Math.min(this.deps.node_timeout_ms, this.deps.retry_interval_ms),
      });
      ok = true;
    } catch (e) {
      ok = !isTransient(e);
    }
    if (ok) this.deps.log(`node ${state.address} is reachable again`);
    state.delivery.receive({ type: "probe_result", ok }, this.deps.clock.now_ms());
  }

  async #replay(state: NodeState): Promise<void> {
    const wasReachable = state.delivery.reachable;
    let ok = true;
    let delivered = 0;
    try {
      while (!this.deps.stopped()) {
        const batch = state.hints.peek(REPLAY_BATCH);
        if (batch.length === 0) break;
        const records = batch.map((h) => decodeRecord(h.type, h.payload));
        const barrier = (i: number) => !versioned(records[i]);
        for (let i = 0; i < batch.length && ok;) {
          let end = i + 1;
          if (!barrier(i)) {
            while (end < batch.length && end - i < REPLAY_CONCURRENCY && !barrier(end)) end++;
          }
          const outcomes = await Promise.all(
            batch.slice(i, end).map((hint, k) => this.#deliver(state, hint, records[i + k])),
          );
          for (let k = 0; k < outcomes.length; k++) {
            if (outcomes[k] === "retry") {
              ok = false;
              break;
            }
            state.hints.markDelivered(batch[i + k].seq, outcomes[k] === "delivered");
            if (outcomes[k] === "delivered") this.counts.delivered++;
            else this.counts.discarded++;
            delivered++;
          }
          i = end;
        }
        const removed = await state.hints.commit();
        state.delivery.receive({ type: "removed", count: removed }, this.deps.clock.now_ms());
        if (!ok) break;
      }
    } catch (e) {
      ok = false;
      this.deps.log(`ERROR replaying hints to ${state.address}: ${(e as Error)?.stack ?? e}`);
    } finally {
      state.delivery.receive({ type: "replay_stopped", ok }, this.deps.clock.now_ms());
    }
    if (delivered > 0) {
      this.deps.log(
        `replayed ${delivered} hints to ${state.address}; ${state.hints.pending} still pending`,
      );
    } else if (!ok && wasReachable) {
      this.deps.log(
        `node ${state.address} did not take hints; retrying every ` +
          `${this.deps.retry_interval_ms} ms`,
      );
    }
    // More may have been queued while the last commit ran. Only after progress: hints still
    // being made durable are pending but not yet peekable, and re-ticking on them at once
    // would recurse without end (their append, or the periodic tick, starts the next replay).
    if (ok && delivered > 0 && state.hints.pending > 0) this.tick(state);
  }

  /** Sends one hint; "retry" when the node is unavailable. */
  async #deliver(
    state: NodeState,
    hint: Hint,
    r: ReturnType<typeof decodeRecord>,
  ): Promise<"delivered" | "discarded" | "retry"> {
    const nodes = this.deps.nodes;
    const a = state.address;
    try {
      switch (r.kind) {
        case "put":
          await nodes.call(a, "Put", {
            ...idToWire(r.id),
            vector: Array.from(r.vector),
            collection: r.collection,
            version: String(r.version),
            payload: payloadText(r.payload),
            shard_number: r.shard_number ?? 0,
          });
          break;
        case "delete":
          await nodes.call(a, "Delete", {
            ...idToWire(r.id),
            collection: r.collection,
            version: String(r.version),
            shard_number: r.shard_number ?? 0,
          });
          break;
        case "put_batch": {
          // The router stamps one version per batch; a batch with several goes point by point.
          const version = r.versions.length > 0 ? r.versions[0] : 0;
          if (r.versions.some((x) => x !== version)) {
            for (let i = 0; i < r.ids.length; i++) {
              await nodes.call(a, "Put", {
                ...idToWire(r.ids[i]),
                vector: Array.from(r.vectors.subarray(i * r.dimension, (i + 1) * r.dimension)),
                collection: r.collection,
                version: String(r.versions[i]),
                payload: payloadText(r.payloads?.[i]),
                shard_number: r.shard_number ?? 0,
              });
            }
            break;
          }
          const points: Point[] = [];
          for (let i = 0; i < r.ids.length; i++) {
            points.push({
              ...idToWire(r.ids[i]),
              vector: Array.from(r.vectors.subarray(i * r.dimension, (i + 1) * r.dimension)),
              payload: payloadText(r.payloads?.[i]),
            });
          }
          await nodes.call(a, "PutBatch", {
            points,
            collection: r.collection,
            version: String(version),
            shard_number: r.shard_number ?? 0,
          }, { timeout_ms: writeTimeoutMs(this.deps.node_timeout_ms, { points }) });
          break;
        }
        case "create_collection":
          await nodes.call(a, "CreateCollection", {
            name: r.collection,
            dimension: r.dimension,
            metric: r.metric,
            m: r.m,
            ef_construction: r.ef_construction,
            quantization: r.quantization ?? "",
            rescore: r.rescore ?? 0,
            // The layout travels with the hint: a node created without it would make 1 shard.
            shard_number: r.shard_number ?? 0,
            replication_factor: r.replication_factor ?? 0,
          });
          break;
        case "drop_collection":
          await nodes.call(a, "DropCollection", { name: r.collection });
          break;
        case "copy": {
          // Only a DeleteBatch's hint (tombstones at one version, points_batch.ts) is a copy.
          const batch = deleteBatchOfRecord(r);
          if (batch === null) {
            state.discarded++;
            this.deps.log(
              `WARNING hint ${hint.seq} (copy) for ${a} is not a DeleteBatch; discarded`,
            );
            return "discarded";
          }
          await nodes.call(a, "DeleteBatch", {
            ...idsToWire(batch.ids),
            collection: batch.collection,
            version: String(batch.version),
            shard_number: batch.shard_number ?? 0,
          });
          break;
        }
        default:
          // Hints hold only the kinds above; anything else can never be delivered.
          state.discarded++;
          this.deps.log(`WARNING hint ${hint.seq} of kind ${r.kind} for ${a} is discarded`);
          return "discarded";
      }
      return "delivered";
    } catch (e) {
      if (isTransient(e)) return "retry";
      const benign = isNotFound(e) &&
        (r.kind === "delete" || r.kind === "drop_collection" || r.kind === "copy");
      if (!benign) {
        state.discarded++;
        this.deps.log(
          `WARNING hint ${hint.seq} (${r.kind} in "${r.collection}") for ${a} was ` +
            `rejected and is discarded: ${describeGrpcError(e)}`,
        );
      }
      return benign ? "delivered" : "discarded";
    }
  }
}
