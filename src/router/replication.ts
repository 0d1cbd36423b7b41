/**
 * The router's write path and point reads, over a {@link NodePort}: no gRPC, no timers of its
 * own (a {@link RouterClock} is passed in), so a seeded simulation drives exactly this code
 * (tests/sim/router_sim_test.ts).
 *
 * **Owners.** A point's owners are the replicas of its shard: `view.placement.owners(collection,
 * layout, id)` (src/cluster/placement.ts), with the collection's layout (shard count and
 * replication factor) from the router's catalog (catalog.ts), primary first.
 *
 * **Writes.** A write is sent to every owner at once (an owner with pending hints gets it through
 * its hint queue instead, see hints/delivery.ts). The reply waits until every owner has settled.
 * Owners that failed with an availability error (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED,
 * RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN, ABORTED) get a durable hint when at least one owner
 * acknowledged the write or holds it queued, whether or not the consistency level was met: a
 * write that reached some replica must reach all of them, or replicas diverge for good. If a hint
 * cannot be stored (queue full) the client gets RESOURCE_EXHAUSTED, never success, so no
 * ACKNOWLEDGED write is ever missing from an owner once hints are delivered. Verdicts
 * (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS…) are not hinted; when the write fails they are
 * passed through as they are. NOT_FOUND from an owner that lacks the collection counts as an
 * acknowledgement of a delete or a drop once another owner acknowledged (nothing to remove).
 *
 * **Versions.** Every put, batch and delete is stamped from the router's hybrid logical clock
 * (unless the client gave a version) and the same version goes to every owner and into every
 * hint; nodes apply last-writer-wins with durable tombstones, so replicas converge whatever order
 * direct writes, hints, copies and repairs arrive in.
 *
 * **Ordering.** For each node, the order in which the router accepts writes for it is the order
 * in which the node applies them, for writes a client issues one after another: the reply to W1
 * comes only after W1 is acknowledged by, or durably queued for, every owner; while a node has
 * queued hints, later writes for it are queued behind them; the queue counts as empty only after
 * the delivered watermark is durable.
 *
 * **Reads.** Get asks every node that may hold the newest version (its owners, and while a move
 * is unsettled its owners under the rings since the settled one) and answers with the highest
 * version; owners that answered with an older one get the newest by a background, versioned copy
 * (read repair, at most {@link READ_REPAIRS_MAX} in flight).
 *
 * **Payloads** go wherever the vector goes: in the request to every owner (as compact JSON text),
 * in every hint (the record types with payloads, common/records.ts), in read repairs (the newest
 * answer's payload, with its version). Get's answer, payload included, is the newest version's.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { describeGrpcError, isServiceError, type ResponseOf } from "../api/client.ts";
import {
  type CollectionInfo,
  type MethodName,
  type Point,
  type VectorDBMethods,
  vectorToWire,
} from "../api/proto.ts";
import type { ValidCollection, ValidPointRef, ValidPut, ValidPutBatch } from "../api/validate.ts";
import type { Consistency } from "../common/limits.ts";
import type { WalRecord } from "../common/records.ts";
import { versionCeiling, type VersionClock } from "../common/version.ts";
import { payloadText } from "../common/payload.ts";
import { formatId, idFromWire, idsToWire, idToWire, type PointId } from "../common/point_id.ts";
import type { Hint } from "./hints/queue.ts";
import { HintQueueFullError } from "./hints/queue.ts";
import { writeTimeoutMs } from "./hints/replay.ts";
import {
  type Background,
  isNotFound,
  isTransient,
  type NodePort,
  type RouterClock,
  RouterStatusError,
} from "./node_port.ts";
import type { NodeState, NodeTable } from "./node_table.ts";
import { decideBatch, decideWrite, newestRead, type ReadAnswer, splitBatch } from "./plan.ts";
import type { TransferEntry } from "./rebalance/rebalancer.ts";
import {
  deleteBatchRecord,
  mergeGetBatch,
  type NodeRecords,
  splitIds,
  toRecordIds,
} from "./points_batch.ts";
import {
  missingRecord,
  type ValidDeleteBatch,
  type ValidFieldIndex,
  type ValidGetBatch,
} from "../api/points_read.ts";
import type { RingView } from "./ring_view.ts";
import { ownersIn, type ShardLayout } from "../cluster/placement.ts";

/** Read repairs in flight at once; beyond, a stale replica waits for anti-entropy. */
export const READ_REPAIRS_MAX = 64;
/** Most log lines about a full hint queue per node per 10 s. */
const FULL_LOG_INTERVAL_MS = 10_000;

/** How one owner settled a write. */
export type OwnerResult<R> =
  | { kind: "acked"; response: R }
  | { kind: "queued" }
  | { kind: "unreached"; error: unknown }
  | { kind: "rejected"; error: unknown };

/** What {@link Replication} needs. */
export interface ReplicationDeps {
  nodes: NodePort;
  table: NodeTable;
  clock: RouterClock;
  versions: VersionClock;
  background: Background;
  log(message: string): void;
  /** Default write consistency. */
  consistency: Consistency;
  node_timeout_ms: number;
  /** A hint was queued for the node: start delivering (hints/replay.ts). */
  queued(state: NodeState): void;
  /**
   * Who may hold the newest version of `id` in `collection` (null: its shard's replicas under
   * the current placement).
   */
  readers(collection: string, layout: ShardLayout, id: PointId): string[] | null;
}

function maxSeq(values: (string | number | undefined)[]): string {
  let best = 0n;
  for (const v of values) {
    if (v === undefined || v === "") continue;
    const b = BigInt(v);
    if (b > best) best = b;
  }
  return best.toString();
}

/** A validated request whose `ids` are PointIds (integers first, then strings). */
export type WithPointIds<T> = Omit<T, "ids"> & { ids: readonly PointId[] };

/** The write path and point reads of the router. */
export class Replication {
  #repairs_in_flight = 0;

  /** Counters for metrics (read at scrape time). */
  readonly counts = {
    /** Hints accepted into a node's hint queue. */
    hints_queued: 0,
    /** Hints refused because the node's queue was full. */
    hints_refused: 0,
  };

  constructor(readonly deps: ReplicationDeps) {}

  /**
   * A write's version: the client's (validated against the clock window on the way in), or a
   * fresh stamp of the router's clock. A client's version is observed by the clock only once the
   * write succeeded ({@link #succeeded}): a failed write never moves the clock.
   */
  stamp(given: number | undefined): number {
    if (given !== undefined && given > 0) return given;
    return this.deps.versions.next();
  }

  /** The write with `given` (a client's version, or 0) succeeded: later stamps sort after it. */
  #succeeded(given: number | undefined): void {
    if (given !== undefined && given > 0) this.#observe(given);
  }

  /**
   * Raises the clock to a version seen from outside, unless it is further ahead of the clock
   * than any client or peer may be (versionCeiling): such a version, already held by some node
   * from before the bound existed, is served as it is but never poisons the clock.
   */
  #observe(version: number): void {
    const ceiling = versionCeiling(this.deps.clock.now_ms());
    if (version > ceiling) {
      this.deps.log(
        `WARNING not observing version ${version}: above ${ceiling}, the most the clock accepts`,
      );
      return;
    }
    this.deps.versions.observe(version);
  }

  async put(view: RingView, layout: ShardLayout, v: ValidPut): Promise<ResponseOf<"Put">> {
    const consistency = v.consistency ?? this.deps.consistency;
    const owners = view.placement.owners(v.collection, layout, v.id);
    const version = this.stamp(v.version);
    const record: WalRecord = {
      kind: "put",
      collection: v.collection,
      id: v.id,
      vector: Float32Array.from(v.vector),
      version,
      payload: v.payload,
      // A hint replayed after the collection was made again with another shard count is
      // refused by the node, as the direct write below would be.
      shard_number: layout.shard_number,
    };
    const request = {
      ...idToWire(v.id),
      ...vectorToWire(v.vector),
      collection: v.collection,
      version,
      payload: payloadText(v.payload),
      // Nodes with another layout of the collection refuse (core.ts retries once, refreshed).
      shard_number: layout.shard_number,
    };
    const results = await this.write(owners, "Put", () => request, record);
    const d = decideWrite(
      owners,
      ackedSet(results),
      consistency,
      `the put of id ${formatId(v.id)}`,
    );
    if (!d.ok) failWrite(results, d.message);
    this.#succeeded(v.version);
    const primary = results.get(owners[0]);
    return {
      ok: true,
      seq: primary?.kind === "acked" ? String(primary.response.seq ?? "0") : "0",
      replicas_acked: d.acked,
      version: String(version),
    };
  }

  async putBatch(
    view: RingView,
    layout: ShardLayout,
    v: ValidPutBatch,
  ): Promise<ResponseOf<"PutBatch">> {
    const consistency = v.consistency ?? this.deps.consistency;
    // The wire form once (payloads as JSON text), shared by every owner's request.
    const wire: Point[] = v.points.map((p) => ({
      ...idToWire(p.id),
      ...vectorToWire(p.vector),
      payload: payloadText(p.payload),
    }));
    const split = splitBatch(view.placement, v.collection, layout, wire);
    const owners = [...split.per_owner.keys()];
    const dimension = v.points[0].vector.length;
    const version = this.stamp(v.version);
    const results = await this.write(
      owners,
      "PutBatch",
      (o) => ({
        points: split.per_owner.get(o)!,
        collection: v.collection,
        version,
        shard_number: layout.shard_number,
      }),
      (o) => ({
        ...batchRecord(v.collection, dimension, split.per_owner.get(o)!, version),
        shard_number: layout.shard_number,
      }),
    );
    const d = decideBatch(split.owner_sets, ackedSet(results), consistency);
    if (!d.ok) failWrite(results, d.message);
    this.#succeeded(v.version);
    const seqs = [...results.values()].map((r) => r.kind === "acked" ? r.response.seq : undefined);
    return { count: v.points.length, seq: maxSeq(seqs), version: String(version) };
  }

  async delete(
    view: RingView,
    layout: ShardLayout,
    v: ValidPointRef,
  ): Promise<ResponseOf<"Delete">> {
    const consistency = v.consistency ?? this.deps.consistency;
    const owners = view.placement.owners(v.collection, layout, v.id);
    const version = this.stamp(v.version);
    const record: WalRecord = {
      kind: "delete",
      collection: v.collection,
      id: v.id,
      version,
      shard_number: layout.shard_number,
    };
    const request = {
      ...idToWire(v.id),
      collection: v.collection,
      version,
      shard_number: layout.shard_number,
    };
    const results = await this.write(owners, "Delete", () => request, record);
    // A node without the collection has nothing to delete: that is an acknowledgement.
    notFoundIsAck(results, { deleted: false, seq: "0", version: String(version) });
    const d = decideWrite(
      owners,
      ackedSet(results),
      consistency,
      `the delete of id ${formatId(v.id)}`,
    );
    if (!d.ok) failWrite(results, d.message);
    this.#succeeded(v.version);
    let deleted = false;
    for (const r of results.values()) if (r.kind === "acked" && r.response.deleted) deleted = true;
    const primary = results.get(owners[0]);
    return {
      deleted,
      seq: primary?.kind === "acked" ? String(primary.response.seq ?? "0") : "0",
      version: String(version),
    };
  }

  /**
   * DeleteBatch: one version for every id (stamped unless given); each owner gets one
   * DeleteBatch of the ids it owns, hinted as tombstones when unreachable (points_batch.ts);
   * success per consistency for every owner group, as PutBatch. `deleted` counts the ids that
   * some owner reported live, each once ({@link deletedCount}).
   */
  async deleteBatch(
    view: RingView,
    layout: ShardLayout,
    v: WithPointIds<ValidDeleteBatch>,
  ): Promise<ResponseOf<"DeleteBatch">> {
    const consistency = v.consistency ?? this.deps.consistency;
    const split = splitIds(view.placement, v.collection, layout, v.ids);
    const owners = [...split.per_owner.keys()];
    const version = this.stamp(v.version);
    const results = await this.write(
      owners,
      "DeleteBatch",
      (o) => ({
        ...idsToWire(split.per_owner.get(o)!),
        collection: v.collection,
        version: String(version),
        shard_number: layout.shard_number,
      }),
      (o) => ({
        ...deleteBatchRecord(v.collection, split.per_owner.get(o)!, version),
        shard_number: layout.shard_number,
      }),
    );
    notFoundIsAck(results, { deleted: 0, version: String(version) });
    const d = decideBatch(split.owner_sets, ackedSet(results), consistency);
    if (!d.ok) failWrite(results, d.message);
    this.#succeeded(v.version);
    const acked = new Map<string, { deleted: number; removed?: Uint8Array }>();
    for (const [o, r] of results) if (r.kind === "acked") acked.set(o, r.response);
    return { deleted: deletedCount(split.per_owner, acked), version: String(version) };
  }

  /**
   * GetBatch: each node that may hold the newest version of some id (its owners, or while a
   * move is unsettled its possible holders) gets one GetBatch of those ids; per id the highest
   * version wins, as Get, with read repair of stale owners. Answers in the order of `v.ids`
   * (the validator lists integer ids first, then string ids, each in request order).
   */
  async getBatch(
    view: RingView,
    layout: ShardLayout,
    v: WithPointIds<ValidGetBatch>,
  ): Promise<ResponseOf<"GetBatch">> {
    const { table, nodes } = this.deps;
    const shards = view.placement.shards(v.collection, layout);
    const owners = (id: PointId) => ownersIn(shards, id);
    const unique = [...new Set(v.ids)];
    const per_node = new Map<string, PointId[]>();
    for (const id of unique) {
      const holders = this.deps.readers(v.collection, layout, id) ?? owners(id);
      for (const a of holders) {
        const s = table.find(a);
        if (s === undefined || !s.active) continue;
        let list = per_node.get(a);
        if (list === undefined) per_node.set(a, list = []);
        list.push(id);
      }
    }
    const targets = [...per_node.keys()];
    // Read repair needs the vector and payload of the newest version.
    const settled = await Promise.allSettled(targets.map((a) =>
      nodes.call(a, "GetBatch", {
        ...idsToWire(per_node.get(a)!),
        collection: v.collection,
        with_vector: true,
        with_payload: true,
      })
    ));
    const answers: NodeRecords[] = [];
    let verdict: unknown = null;
    let notFound: unknown = null;
    const errors: string[] = [];
    settled.forEach((s, i) => {
      const state = table.find(targets[i]);
      if (s.status === "rejected") {
        if (state !== undefined) table.observe(state, s.reason);
        if (isTransient(s.reason)) errors.push(`${targets[i]}: ${describeGrpcError(s.reason)}`);
        else if (isNotFound(s.reason)) notFound ??= s.reason;
        else verdict ??= s.reason;
        return;
      }
      if (state !== undefined) table.observe(state, null);
      answers.push({ node: targets[i], points: s.value.points });
    });
    if (verdict !== null) throw verdict;
    const merged = mergeGetBatch(answers, owners);
    const missing = unique.filter((id) => !merged.has(id));
    if (missing.length > 0) {
      if (answers.length === 0 && notFound !== null) throw notFound;
      if (errors.length > 0 || notFound === null) {
        throw new RouterStatusError(
          grpc.status.UNAVAILABLE,
          `No node holding id ${formatId(missing[0])}${
            missing.length > 1
              ? ` (and ${missing.length - 1} ` +
                "more ids)"
              : ""
          } answered: ${errors.join("; ") || "none on the ring"}`,
        );
      }
    }
    let newest = 0;
    for (const [id, m] of merged) {
      newest = Math.max(newest, m.version);
      if (m.stale.length > 0) {
        const r = m.record;
        this.#readRepair(
          v.collection,
          id,
          {
            found: r.found,
            vector: r.vector,
            version: String(m.version),
            deleted: r.deleted === true,
            payload: r.payload ?? "",
          },
          m.version,
          m.stale,
        );
      }
    }
    if (newest > 0) this.#observe(newest);
    return {
      points: v.ids.map((id) => {
        const r = merged.get(id)?.record;
        if (r === undefined) {
          return missingRecord(id);
        }
        return {
          ...idToWire(id),
          found: r.found,
          vector: v.with_vector && r.found ? r.vector : [],
          payload: v.with_payload && r.found ? r.payload ?? "" : "",
          version: String(r.version ?? "0"),
          deleted: r.deleted === true,
        };
      }),
    };
  }

  /**
   * CreateFieldIndex / DropFieldIndex on every node of the ring. Every node must succeed (an
   * index on some replicas only would make filtered reads differ by replica speed, not
   * correctness, but the operator must know): any failure is an error naming the nodes, and
   * since both are idempotent on a node, a retry finishes the job.
   */
  async fieldIndex(
    targets: readonly string[],
    v: ValidFieldIndex,
    create: boolean,
  ): Promise<{ changed: boolean }> {
    const { table, nodes } = this.deps;
    const settled = await Promise.allSettled(
      targets.map((a) =>
        create
          ? nodes.call(a, "CreateFieldIndex", {
            collection: v.collection,
            field: v.field,
            type: v.type ?? "",
          }).then((r) => r.created)
          : nodes.call(a, "DropFieldIndex", { collection: v.collection, field: v.field })
            .then((r) => r.dropped)
      ),
    );
    let changed = false;
    const failed: string[] = [];
    let verdict: unknown = null;
    let missing = 0;
    settled.forEach((s, i) => {
      const state = table.find(targets[i]);
      if (s.status === "fulfilled") {
        if (state !== undefined) table.observe(state, null);
        changed ||= s.value;
        return;
      }
      if (state !== undefined) table.observe(state, s.reason);
      if (isNotFound(s.reason)) missing++;
      else if (!isTransient(s.reason)) verdict ??= s.reason;
      failed.push(`${targets[i]}: ${describeGrpcError(s.reason)}`);
    });
    if (missing === targets.length && missing > 0) {
      const s = settled[0] as PromiseRejectedResult;
      throw s.reason;
    }
    if (verdict !== null) throw verdict;
    if (failed.length > 0) {
      const what = create ? "creation" : "drop";
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `The ${what} of the index of field "${v.field}" in collection "${v.collection}" ` +
          `failed on ${failed.length} of ${targets.length} nodes (${failed.join("; ")}); ` +
          "it is idempotent: retry it once they are back",
      );
    }
    return { changed };
  }

  async createCollection(
    nodes: readonly string[],
    v: ValidCollection,
  ): Promise<ResponseOf<"CreateCollection">> {
    const results = await this.write(nodes, "CreateCollection", () => v, createRecord(v));
    const d = decideWrite(
      nodes,
      ackedSet(results),
      this.deps.consistency,
      `the creation of collection "${v.name}"`,
    );
    if (!d.ok) failWrite(results, d.message);
    let created = false;
    let collection: CollectionInfo | null = null;
    for (const r of results.values()) {
      if (r.kind !== "acked") continue;
      created ||= r.response.created;
      collection ??= r.response.collection ?? null;
    }
    return { created, collection };
  }

  async dropCollection(
    nodes: readonly string[],
    name: string,
  ): Promise<ResponseOf<"DropCollection">> {
    const record: WalRecord = { kind: "drop_collection", collection: name };
    const results = await this.write(nodes, "DropCollection", () => ({ name }), record);
    let dropped = false;
    for (const r of results.values()) if (r.kind === "acked") dropped ||= r.response.dropped;
    // A node without the collection has nothing to drop: an acknowledgement, unless none had it.
    notFoundIsAck(results, { dropped: false });
    const d = decideWrite(
      nodes,
      ackedSet(results),
      this.deps.consistency,
      `the drop of collection "${name}"`,
    );
    if (!d.ok) failWrite(results, d.message);
    return { dropped };
  }

  /** Get: the highest version among every possible holder, with read repair (module comment). */
  async get(view: RingView, layout: ShardLayout, v: ValidPointRef): Promise<ResponseOf<"Get">> {
    const { table, nodes } = this.deps;
    const owners = view.placement.owners(v.collection, layout, v.id);
    const askers = (this.deps.readers(v.collection, layout, v.id) ?? owners).filter((a) => {
      const s = table.find(a);
      return s !== undefined && s.active;
    });
    const settled = await Promise.allSettled(
      askers.map((a) => nodes.call(a, "Get", { ...idToWire(v.id), collection: v.collection })),
    );
    let verdict: unknown = null;
    let notFound: unknown = null;
    const errors: string[] = [];
    const answers: ReadAnswer[] = [];
    const responses: ResponseOf<"Get">[] = [];
    settled.forEach((s, i) => {
      const state = table.find(askers[i]);
      if (s.status === "rejected") {
        if (state !== undefined) table.observe(state, s.reason);
        if (isTransient(s.reason)) errors.push(`${askers[i]}: ${describeGrpcError(s.reason)}`);
        // NOT_FOUND: the node lacks the collection, so it holds no version of the point.
        else if (isNotFound(s.reason)) notFound ??= s.reason;
        else verdict ??= s.reason;
        return;
      }
      if (state !== undefined) table.observe(state, null);
      answers.push({
        node: askers[i],
        version: Number(s.value.version ?? 0),
        found: s.value.found,
      });
      responses.push(s.value);
    });
    const pick = newestRead(answers, owners);
    if (pick.index < 0) {
      if (verdict !== null) throw verdict;
      if (notFound !== null) throw notFound;
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `None of the ${askers.length} nodes holding id ${formatId(v.id)} answered: ${
          errors.join("; ")
        }`,
      );
    }
    const newest = responses[pick.index];
    if (pick.version > 0) this.#observe(pick.version);
    if (pick.stale.length > 0) {
      this.#readRepair(v.collection, v.id, newest, pick.version, pick.stale);
    }
    return newest;
  }

  /** Sends the newest version of a point to owners that answered with an older one. */
  #readRepair(
    collection: string,
    id: PointId,
    newest: ResponseOf<"Get">,
    version: number,
    owners: string[],
  ): void {
    for (const o of owners) {
      if (this.#repairs_in_flight >= READ_REPAIRS_MAX) return;
      const s = this.deps.table.find(o);
      if (s === undefined || !s.active) continue;
      const port = this.deps.nodes.transfer(o);
      if (port === null) continue;
      this.#repairs_in_flight++;
      const entry: TransferEntry = {
        id,
        version,
        deleted: newest.deleted === true,
        vector: newest.found ? newest.vector : [],
        payload: newest.found ? newest.payload ?? "" : "",
      };
      const run = port.copy(collection, [entry]).then(
        () => {},
        (e) =>
          this.deps.log(
            `WARNING read repair of id ${formatId(id)} on ${o} failed: ${describeGrpcError(e)}`,
          ),
      ).finally(() => this.#repairs_in_flight--);
      this.deps.background.track(`read repair of id ${formatId(id)} on ${o}`, run);
    }
  }

  /**
   * Sends a write to every owner (or its hint queue) and waits for all of them to settle;
   * then durably hints the owners that were unreachable, when some owner has the write.
   */
  async write<K extends MethodName>(
    owners: readonly string[],
    method: K,
    requestFor: (owner: string) => VectorDBMethods[K]["request"],
    record: WalRecord | ((owner: string) => WalRecord),
  ): Promise<Map<string, OwnerResult<VectorDBMethods[K]["response"]>>> {
    const { table, nodes } = this.deps;
    const recordFor = typeof record === "function" ? record : () => record;
    const settled = await Promise.all(owners.map(async (o) => {
      const state = table.get(o);
      if (state.delivery.route() === "queue") {
        return await this.enqueue(state, recordFor(o), true) as OwnerResult<
          VectorDBMethods[K]["response"]
        >;
      }
      try {
        const request = requestFor(o);
        const response = await nodes.call(o, method, request, {
          timeout_ms: writeTimeoutMs(this.deps.node_timeout_ms, request),
        });
        table.observe(state, null);
        return { kind: "acked", response } as const;
      } catch (e) {
        table.observe(state, e);
        if (isTransient(e)) return { kind: "unreached", error: e } as const;
        return { kind: "rejected", error: e } as const;
      }
    }));
    const results = new Map<string, OwnerResult<VectorDBMethods[K]["response"]>>();
    owners.forEach((o, i) => results.set(o, settled[i]));
    const reached = settled.some((r) => r.kind === "acked" || r.kind === "queued");
    if (reached) {
      const late = owners.filter((o) => results.get(o)!.kind === "unreached");
      const hinted = await Promise.all(late.map((o) => {
        const why = describeGrpcError((results.get(o) as { error: unknown }).error);
        this.deps.log(`${method} to ${o} failed (${why}); queuing a hint`);
        return this.enqueue(table.get(o), recordFor(o), false);
      }));
      late.forEach((o, i) => results.set(o, hinted[i] as OwnerResult<never>));
    }
    // An owner that neither has the write nor a durable hint of it would miss it for good: such
    // a write is never acknowledged, whatever the consistency level.
    for (const [o, r] of results) {
      if (r.kind !== "rejected" || isServiceError(r.error)) continue;
      const acked = [...results.values()].filter((x) => x.kind === "acked").length;
      const why = `${method} reached ${acked} of ${owners.length} owners but could not be ` +
        `queued for ${o}: ${(r.error as Error).message}`;
      throw new RouterStatusError(
        r.error instanceof HintQueueFullError
          ? grpc.status.RESOURCE_EXHAUSTED
          : grpc.status.UNAVAILABLE,
        why,
      );
    }
    return results;
  }

  /**
   * Appends a hint for the node; with `wait`, waits up to the node timeout for its delivery when
   * the node is reachable. Returns "acked" only when the hint was delivered in that time.
   */
  async enqueue(
    state: NodeState,
    record: WalRecord,
    wait: boolean,
  ): Promise<OwnerResult<{ seq?: string }>> {
    const { clock } = this.deps;
    let hint: Hint;
    try {
      const before = state.hints.pending;
      const appended = state.hints.append(record);
      // A refused append (queue full) is not queued; an accepted one is, at once, in order.
      const queued = state.hints.pending === before + 1;
      if (queued) {
        this.counts.hints_queued++;
        state.delivery.receive({ type: "enqueued", count: 1 }, clock.now_ms());
      }
      hint = await appended.catch((e) => {
        // The hint WAL failed; the hint queue dropped the entry again.
        if (queued) state.delivery.receive({ type: "removed", count: 1 }, clock.now_ms());
        throw e;
      });
    } catch (e) {
      if (e instanceof HintQueueFullError) {
        state.refused++;
        this.counts.hints_refused++;
        const now = clock.now_ms();
        if (now - state.last_full_log_ms >= FULL_LOG_INTERVAL_MS) {
          state.last_full_log_ms = now;
          this.deps.log(
            `ERROR ${e.message}; ${state.refused} writes refused so far. The node must come back ` +
              `(or be repaired) before writes it owns can succeed again`,
          );
        }
      } else {
        this.deps.log(`ERROR cannot store a hint for ${state.address}: ${(e as Error).message}`);
      }
      return { kind: "rejected", error: e };
    }
    this.deps.queued(state);
    if (wait && state.active && state.delivery.waitForDelivery()) {
      const delivered = await Promise.race([
        hint.delivery,
        clock.sleep(this.deps.node_timeout_ms).then(() => false),
      ]);
      if (delivered) return { kind: "acked", response: {} };
    }
    return { kind: "queued" };
  }
}

/** The hint record of a collection's creation. */
export function createRecord(v: ValidCollection): WalRecord {
  return {
    kind: "create_collection",
    collection: v.name,
    dimension: v.dimension,
    metric: v.metric,
    m: v.m,
    ef_construction: v.ef_construction,
    // Only a quantized collection's record carries these (older routers' hints decode as none).
    ...(v.quantization !== undefined && v.quantization !== "none"
      ? { quantization: v.quantization, rescore: v.rescore }
      : {}),
    // A sharded collection's layout travels with its creation (hints and catalog copies too).
    ...(v.shard_number !== undefined
      ? { shard_number: v.shard_number, replication_factor: v.replication_factor ?? 0 }
      : {}),
  };
}

/**
 * A DeleteBatch's `deleted`, never counting an id twice though replicas of an id each remove
 * it: the ids some owner marked in its `removed` bytes. Only when an owner (an older node) sent
 * just its count: owners are taken greedily by count, each summed only when none of its ids
 * belongs to an owner already summed (a lower bound: with three owners whose lists overlap in
 * a ring, two of them may never be summed).
 */
export function deletedCount(
  per_owner: ReadonlyMap<string, readonly PointId[]>,
  acked: ReadonlyMap<string, { deleted?: number; removed?: Uint8Array }>,
): number {
  // Exact when every owner that answered said which ids it removed (nodes do): an id counts
  // once if any replica removed it. A node's per-id bytes are in its wire order (integer ids,
  // then string ids), which is idsToWire's split of the list the router sent it.
  // (An owner whose collection is absent answered NOT_FOUND: acknowledged, nothing removed.)
  const exact = [...acked].every(([o, r]) =>
    (r.removed !== undefined && r.removed.length === (per_owner.get(o) ?? []).length) ||
    (r.deleted ?? 0) === 0
  );
  if (exact) {
    const gone = new Set<PointId>();
    for (const [o, r] of acked) {
      const list = per_owner.get(o) ?? [];
      if (r.removed === undefined || r.removed.length !== list.length) continue;
      let at = 0;
      for (const id of list) if (typeof id !== "string" && r.removed![at++] === 1) gone.add(id);
      for (const id of list) if (typeof id === "string" && r.removed![at++] === 1) gone.add(id);
    }
    return gone.size;
  }
  // An older node sends only its count: owners whose id lists are disjoint from those already
  // counted are summed, the largest counts first (a lower bound when replicas overlap).
  const used = new Set<PointId>();
  let sum = 0;
  const order = [...acked].sort((a, b) => (b[1].deleted ?? 0) - (a[1].deleted ?? 0));
  for (const [o, r] of order) {
    const ids = per_owner.get(o) ?? [];
    if (ids.some((id) => used.has(id))) continue;
    for (const id of ids) used.add(id);
    sum += r.deleted ?? 0;
  }
  return sum;
}

/** Owners that acknowledged. */
function ackedSet(results: Map<string, OwnerResult<unknown>>): Set<string> {
  const acked = new Set<string>();
  for (const [o, r] of results) if (r.kind === "acked") acked.add(o);
  return acked;
}

/** NOT_FOUND from an owner counts as `ack` once some owner acknowledged (nothing to remove). */
function notFoundIsAck<R>(results: Map<string, OwnerResult<R>>, ack: R): void {
  if (![...results.values()].some((x) => x.kind === "acked")) return;
  for (const [o, r] of results) {
    if (r.kind === "rejected" && isNotFound(r.error)) {
      results.set(o, { kind: "acked", response: ack });
    }
  }
}

/**
 * Throws the error a failed write reports: a node's verdict if any; RESOURCE_EXHAUSTED (with the
 * nodes' messages, e.g. a full disk naming its data directory) when every owner that did not
 * acknowledge answered RESOURCE_EXHAUSTED itself; else UNAVAILABLE.
 */
function failWrite(results: Map<string, OwnerResult<unknown>>, message: string): never {
  for (const r of results.values()) {
    if (r.kind === "rejected" && isServiceError(r.error)) throw r.error;
  }
  const failed = [...results].filter(([, r]) => r.kind === "unreached" || r.kind === "queued");
  const reasons = failed.map(([o, r]) =>
    r.kind === "unreached" ? `${o}: ${describeGrpcError(r.error)}` : `${o}: hint queued`
  );
  const exhausted = failed.length > 0 &&
    failed.every(([, r]) =>
      r.kind === "unreached" && isServiceError(r.error) &&
      r.error.code === grpc.status.RESOURCE_EXHAUSTED
    );
  throw new RouterStatusError(
    exhausted ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.UNAVAILABLE,
    reasons.length > 0 ? `${message} (${reasons.join("; ")})` : message,
  );
}

/** The hint record of one owner's share of a batch. */
function batchRecord(
  collection: string,
  dimension: number,
  points: readonly Point[],
  version: number,
): WalRecord {
  const list = new Array<PointId>(points.length);
  const vectors = new Float32Array(points.length * dimension);
  const payloads = new Array<Uint8Array | null>(points.length);
  points.forEach((p, i) => {
    list[i] = idFromWire(p.id, p.string_id);
    const packed = p.vector_bytes;
    if (packed !== undefined && packed.length > 0) {
      // Forwarded packed (vectorToWire): little-endian float32 bytes of `dimension` values.
      const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
      for (let j = 0; j < dimension; j++) {
        vectors[i * dimension + j] = view.getFloat32(4 * j, true);
      }
    } else {
      vectors.set(p.vector, i * dimension);
    }
    payloads[i] = p.payload ? utf8.encode(p.payload) : null;
  });
  const versions = new Float64Array(points.length).fill(version);
  const ids = toRecordIds(list);
  return { kind: "put_batch", collection, dimension, ids, vectors, versions, payloads };
}

const utf8 = new TextEncoder();
