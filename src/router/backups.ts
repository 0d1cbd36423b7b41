/**
 * Cluster-wide backups through the router: Backup, ListBackups, Restore and DeleteBackup on
 * every storage node of the ring (proto/vector_db.proto, "Backups"). Each node backs up,
 * restores or deletes its own replicas with its own node-level RPC; this file fans the call out,
 * gathers one entry per node, and keeps the cluster's state all-or-nothing where it can.
 *
 * | RPC          | what happens                                                          |
 * |--------------|-----------------------------------------------------------------------|
 * | Backup       | every node takes backup `name`; any failure: the backups this call took are deleted again, the call fails naming the nodes |
 * | ListBackups  | each name once, with every node's entry and `complete` (on every node) |
 * | Restore      | checks first (collection free everywhere, backup somewhere, one set of parameters), then each node restores its own backup or, lacking it, creates the collection empty; any failure: the collection is dropped where this call made it |
 * | DeleteBackup | every node deletes its copy; NOT_FOUND only when no node had one       |
 *
 * Why per node: a node's backup is a consistent image of what it holds (its replicas of its
 * ranges), and restoring every node's image onto the same node puts every point back on its
 * owners. A node that joined after the backup starts empty; after a restore into a ring that
 * changed, the caller (the core) asks rebalancing for an anti-entropy run, which moves every
 * entry to its owners under the current ring and prunes it from the others
 * (rebalance/rebalancer.ts).
 *
 * Failure codes: UNAVAILABLE when a node failed transiently (unreachable, deadline: retrying
 * may work), else the first failing node's own code (ALREADY_EXISTS, NOT_FOUND, DATA_LOSS ...).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { describeGrpcError, isServiceError } from "../api/client.ts";
import type {
  BackupInfo,
  CollectionInfo,
  DeleteBackupResponse,
  ListBackupsResponse,
  NodeBackup,
  NodeRestore,
  RestoreResponse,
} from "../api/proto.ts";
import { isNotFound, isTransient, type NodePort, RouterStatusError } from "./node_port.ts";

/**
 * Deadline of one node's Backup, Restore or DeleteBackup call: each writes or reads a whole
 * collection image, which takes far longer than a point write.
 */
export const BACKUP_CALL_TIMEOUT_MS = 10 * 60_000;
/** Most nodes a message names one by one; the rest are counted. */
export const NODES_NAMED_MAX = 10;

/** What {@link ClusterBackups} needs. */
export interface ClusterBackupsDeps {
  nodes: NodePort;
  log(message: string): void;
  /** Deadline of a ListBackups or ListCollections call (the node timeout). */
  node_timeout_ms: number;
  /** Deadline of a Backup, Restore or DeleteBackup call; default {@link BACKUP_CALL_TIMEOUT_MS}. */
  backup_timeout_ms?: number;
  /**
   * Starts an anti-entropy run that scans every node (restored entries lie where the backup's
   * ring put them, so digests between a shard's replicas cannot find them); false when the
   * router has no rebalancer (static node list).
   */
  antiEntropy(): boolean;
}

/** One line per item, at most {@link NODES_NAMED_MAX}, then "and N more". */
function named(lines: readonly string[]): string {
  if (lines.length <= NODES_NAMED_MAX) return lines.join("; ");
  return `${lines.slice(0, NODES_NAMED_MAX).join("; ")}; and ${
    lines.length - NODES_NAMED_MAX
  } more`;
}

/** UNAVAILABLE when any failure is transient, else the first failure's own code. */
function failureCode(errors: readonly unknown[]): grpc.status {
  if (errors.some(isTransient)) return grpc.status.UNAVAILABLE;
  const first = errors.find(isServiceError);
  return first !== undefined ? first.code : grpc.status.INTERNAL;
}

function sameParameters(a: CollectionInfo, b: CollectionInfo): boolean {
  return a.dimension === b.dimension && a.metric === b.metric && a.m === b.m &&
    a.ef_construction === b.ef_construction &&
    (a.quantization || "none") === (b.quantization || "none") &&
    (a.rescore ?? 0) === (b.rescore ?? 0) &&
    (a.shard_number || 1) === (b.shard_number || 1) &&
    // 0: none stored (a collection from before shards follows the router's default, as does
    // the one a re-issued create gave a node with the router's factor): it matches any.
    (!a.replication_factor || !b.replication_factor ||
      a.replication_factor === b.replication_factor);
}

function sum(values: readonly (string | number | undefined)[]): string {
  let total = 0n;
  for (const v of values) total += BigInt(v === undefined || v === "" ? 0 : v);
  return total.toString();
}

/**
 * The router's summary of backup `name` over `ring`: each node's entry (its backup, or `errors`'
 * line for it, or NOT_FOUND), the counts summed, `complete` when every node has it.
 */
export function summarize(
  name: string,
  ring: readonly string[],
  found: ReadonlyMap<string, BackupInfo>,
  errors: ReadonlyMap<string, string> = new Map(),
): BackupInfo {
  const nodes: NodeBackup[] = [...ring].sort().map((address) => {
    const b = found.get(address);
    if (b !== undefined) return { address, backup: b, error: "" };
    return {
      address,
      backup: null,
      error: errors.get(address) ?? `NOT_FOUND: node ${address} has no backup "${name}"`,
    };
  });
  const have = nodes.flatMap((n) => (n.backup ? [n.backup] : []));
  const created = have.map((b) => Number(b.created_ms)).filter((ms) => ms > 0);
  return {
    name,
    collection: have[0]?.collection ?? null,
    points: sum(have.map((b) => b.points)),
    bytes: sum(have.map((b) => b.bytes)),
    created_ms: String(created.length > 0 ? Math.min(...created) : 0),
    seq: "0",
    sha256: "",
    tombstones: sum(have.map((b) => b.tombstones)),
    nodes,
    complete: ring.length > 0 && have.length === ring.length,
  };
}

/** Backups across the cluster (module comment). */
export class ClusterBackups {
  constructor(readonly deps: ClusterBackupsDeps) {}

  get #long(): { timeout_ms: number } {
    return { timeout_ms: this.deps.backup_timeout_ms ?? BACKUP_CALL_TIMEOUT_MS };
  }

  get #short(): { timeout_ms: number } {
    return { timeout_ms: this.deps.node_timeout_ms };
  }

  /** Backup `name` of `collection` on every node of `ring`, or on none (module comment). */
  async backup(ring: readonly string[], collection: string, name: string): Promise<BackupInfo> {
    const { nodes, log } = this.deps;
    const settled = await Promise.allSettled(
      ring.map((a) => nodes.call(a, "Backup", { collection, name }, this.#long)),
    );
    const found = new Map<string, BackupInfo>();
    const failed: string[] = [];
    const reasons: unknown[] = [];
    settled.forEach((s, i) => {
      if (s.status === "fulfilled" && s.value.backup) found.set(ring[i], s.value.backup);
      else {
        const reason = s.status === "rejected" ? s.reason : new Error("answered no backup");
        failed.push(`${ring[i]}: ${describeGrpcError(reason)}`);
        reasons.push(reason);
      }
    });
    if (failed.length === 0) {
      const info = summarize(name, ring, found);
      log(
        `backup "${name}" of collection "${collection}" taken on ${ring.length} nodes: ` +
          `${info.points} points (every replica)`,
      );
      return info;
    }
    // All or nothing: delete what this call took (never a backup a node had before: those
    // nodes answered ALREADY_EXISTS and are not in `found`).
    const took = [...found.keys()];
    const cleanup = await Promise.allSettled(
      took.map((a) => nodes.call(a, "DeleteBackup", { name }, this.#long)),
    );
    const left: string[] = [];
    cleanup.forEach((s, i) => {
      if (s.status === "rejected" && !isNotFound(s.reason)) {
        left.push(`${took[i]}: ${describeGrpcError(s.reason)}`);
      }
    });
    const removed = took.length - left.length;
    let message = `Backup "${name}" of collection "${collection}" failed on ${failed.length} ` +
      `of ${ring.length} storage nodes: ${named(failed)}`;
    if (removed > 0) message += `. Deleted it again on the ${removed} nodes that had taken it`;
    if (left.length > 0) {
      message += `. Could NOT delete it on ${left.length} nodes, where it remains (incomplete; ` +
        `DeleteBackup through the router removes it): ${named(left)}`;
    }
    log(`ERROR ${message}`);
    throw new RouterStatusError(failureCode(reasons), message);
  }

  /** Every backup on `ring`, each name once with its nodes' entries (module comment). */
  async list(ring: readonly string[]): Promise<ListBackupsResponse> {
    const settled = await Promise.allSettled(
      ring.map((a) => this.deps.nodes.call(a, "ListBackups", {}, this.#short)),
    );
    const byName = new Map<string, Map<string, BackupInfo>>();
    const errors = new Map<string, string>();
    settled.forEach((s, i) => {
      if (s.status === "rejected") {
        errors.set(ring[i], describeGrpcError(s.reason));
        return;
      }
      for (const b of s.value.backups) {
        let per = byName.get(b.name);
        if (per === undefined) byName.set(b.name, per = new Map());
        per.set(ring[i], b);
      }
    });
    if (ring.length > 0 && errors.size === ring.length) {
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `No storage node answered ListBackups: ${named([...errors].map(([a, e]) => `${a}: ${e}`))}`,
      );
    }
    const backups = [...byName.keys()].sort().map((name) =>
      summarize(name, ring, byName.get(name)!, errors)
    );
    return { backups, errors: [...errors].map(([a, e]) => `${a}: ${e}`) };
  }

  /**
   * Restores backup `backup` into the new collection `collection` on every node of `ring`
   * (module comment); starts an anti-entropy run afterwards where the router has a rebalancer.
   */
  async restore(
    ring: readonly string[],
    backup: string,
    collection: string,
  ): Promise<RestoreResponse> {
    const { nodes, log } = this.deps;
    // 1. Checks, before anything is changed.
    const [lists, catalogs] = await Promise.all([
      Promise.allSettled(ring.map((a) => nodes.call(a, "ListBackups", {}, this.#short))),
      Promise.allSettled(ring.map((a) => nodes.call(a, "ListCollections", {}, this.#short))),
    ]);
    const down: string[] = [];
    const holders = new Map<string, BackupInfo>();
    const has: string[] = [];
    ring.forEach((a, i) => {
      const l = lists[i];
      const c = catalogs[i];
      if (l.status === "rejected" || c.status === "rejected") {
        const reason = l.status === "rejected" ? l.reason : (c as PromiseRejectedResult).reason;
        down.push(`${a}: ${describeGrpcError(reason)}`);
        return;
      }
      const b = l.value.backups.find((x) => x.name === backup);
      if (b !== undefined) holders.set(a, b);
      if (c.value.collections.some((x) => x.name === collection)) has.push(a);
    });
    if (down.length > 0) {
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `Cannot restore backup "${backup}": every storage node of the ring must answer, and ` +
          `${down.length} did not (nothing was changed): ${named(down)}`,
      );
    }
    if (has.length > 0) {
      throw new RouterStatusError(
        grpc.status.ALREADY_EXISTS,
        `Collection "${collection}" already exists on ${named(has)}: a restore never overwrites ` +
          `data (drop it first, or restore into a new name)`,
      );
    }
    if (holders.size === 0) {
      throw new RouterStatusError(
        grpc.status.NOT_FOUND,
        `Backup "${backup}" is on no storage node of the ring (${named([...ring])})`,
      );
    }
    const infos = [...holders.values()];
    // Compared with a copy that stored a replication factor, if one did (0 matches any).
    const params = (infos.find((b) => (b.collection?.replication_factor ?? 0) > 0) ?? infos[0])
      .collection;
    if (
      params === null || infos.some((b) => !b.collection || !sameParameters(params, b.collection))
    ) {
      throw new RouterStatusError(
        grpc.status.FAILED_PRECONDITION,
        `Backup "${backup}" is not one cluster backup: its copies on the nodes are of ` +
          `collections with different parameters (${
            named([...holders].map(([a, b]) => `${a}: ${JSON.stringify(b.collection)}`))
          })`,
      );
    }
    // 2. Every node: its own backup, or the collection empty with the backup's parameters.
    const create = {
      name: collection,
      dimension: params.dimension,
      metric: params.metric,
      m: params.m,
      ef_construction: params.ef_construction,
      quantization: params.quantization ?? "",
      rescore: params.rescore ?? 0,
      // The shard layout too: a node made with the default layout would report the collection
      // as one shard, and the router, reading the nodes' catalogs, could route by that.
      shard_number: params.shard_number ?? 0,
      replication_factor: params.replication_factor ?? 0,
    };
    // Nodes where the collection was made, even if a later step there failed (a payload index):
    // a failed restore drops it on each of them.
    const made: string[] = [];
    const settled = await Promise.allSettled(ring.map(async (a): Promise<NodeRestore> => {
      if (holders.has(a)) {
        const r = await nodes.call(a, "Restore", { backup, collection }, this.#long);
        made.push(a);
        return { address: a, from_backup: true, points: String(r.points) };
      }
      await nodes.call(a, "CreateCollection", create, this.#long);
      made.push(a);
      // The backup's payload indexes, so filtered searches plan alike on every node.
      for (const f of params.field_indexes ?? []) {
        await nodes.call(
          a,
          "CreateFieldIndex",
          { collection, field: f.field, type: f.type },
          this.#long,
        );
      }
      return { address: a, from_backup: false, points: "0" };
    }));
    const done: NodeRestore[] = [];
    const failed: string[] = [];
    const reasons: unknown[] = [];
    settled.forEach((s, i) => {
      if (s.status === "fulfilled") done.push(s.value);
      else {
        failed.push(`${ring[i]}: ${describeGrpcError(s.reason)}`);
        reasons.push(s.reason);
      }
    });
    if (failed.length > 0) {
      // Every collection this call made is new (checked free above): drop them again.
      const drops = await Promise.allSettled(
        made.map((a) => nodes.call(a, "DropCollection", { name: collection }, this.#long)),
      );
      const left = made.flatMap((a, i) =>
        drops[i].status === "rejected"
          ? [`${a}: ${describeGrpcError((drops[i] as PromiseRejectedResult).reason)}`]
          : []
      );
      let message = `Restore of backup "${backup}" into collection "${collection}" failed on ` +
        `${failed.length} of ${ring.length} storage nodes: ${named(failed)}`;
      if (made.length > left.length) {
        message += `. Dropped the collection again on the ${made.length - left.length} nodes ` +
          `where it was made`;
      }
      if (left.length > 0) {
        message += `. Could NOT drop it on ${left.length} nodes (drop collection "${collection}" ` +
          `before trying again): ${named(left)}`;
      }
      log(`ERROR ${message}`);
      throw new RouterStatusError(failureCode(reasons), message);
    }
    done.sort((x, y) => (x.address < y.address ? -1 : 1));
    const anti_entropy_started = this.deps.antiEntropy();
    log(
      `backup "${backup}" restored into collection "${collection}" on ${ring.length} nodes ` +
        `(${holders.size} from their backup, ${ring.length - holders.size} empty)` +
        (anti_entropy_started ? "; anti-entropy run started to move points to their owners" : ""),
    );
    return {
      collection: { ...params, name: collection },
      points: sum(done.map((d) => d.points)),
      nodes: done,
      anti_entropy_started,
    };
  }

  /** Deletes backup `name` on every node of `ring` that has it (module comment). */
  async delete(ring: readonly string[], name: string): Promise<DeleteBackupResponse> {
    const settled = await Promise.allSettled(
      ring.map((a) => this.deps.nodes.call(a, "DeleteBackup", { name }, this.#long)),
    );
    const deleted: string[] = [];
    const failed: string[] = [];
    const reasons: unknown[] = [];
    settled.forEach((s, i) => {
      if (s.status === "fulfilled") deleted.push(ring[i]);
      else if (!isNotFound(s.reason)) {
        failed.push(`${ring[i]}: ${describeGrpcError(s.reason)}`);
        reasons.push(s.reason);
      }
    });
    if (failed.length > 0) {
      throw new RouterStatusError(
        failureCode(reasons),
        `DeleteBackup "${name}" failed on ${failed.length} of ${ring.length} storage nodes ` +
          `(deleted on ${deleted.length}; call it again to finish): ${named(failed)}`,
      );
    }
    if (deleted.length === 0) {
      throw new RouterStatusError(
        grpc.status.NOT_FOUND,
        `Backup "${name}" is on no storage node of the ring (${named([...ring])})`,
      );
    }
    this.deps.log(`backup "${name}" deleted on ${deleted.length} nodes`);
    return { deleted: true, nodes: deleted.sort() };
  }
}
