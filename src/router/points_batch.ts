/**
 * Pure helpers of the router's many-id point RPCs (GetBatch, DeleteBatch, DeleteByFilter): how
 * ids are grouped by their owners, how the replicas' GetBatch answers are merged (the newest
 * version per id wins, as Get's `newestRead` decides), and the hint record of a DeleteBatch.
 *
 * **DeleteBatch hints.** A node that missed a DeleteBatch gets a durable hint: a WAL `copy`
 * record (common/records.ts) of its ids, every entry a tombstone at the batch's version (no
 * vectors; dimension 1 because the record format needs one). The hint replay
 * (hints/replay.ts) sends such a record as one DeleteBatch at that version, so the node ends in
 * exactly the state the direct call would have left.
 *
 * @module
 */
import type { PointRecord } from "../api/proto.ts";
import type { RecordIds, WalRecord } from "../common/records.ts";
import { idFromWire, isU32Id, type PointId } from "../common/point_id.ts";
import { ownersIn, type Placement, type ShardLayout } from "../cluster/placement.ts";
import { distinctSets, newestRead, type ReadAnswer } from "./plan.ts";

/** Ids split by owner: each owner's ids in request order, and the distinct owner lists. */
export interface IdSplit {
  per_owner: Map<string, PointId[]>;
  /** The distinct owner lists (primary first), in first-seen order. */
  owner_sets: string[][];
}

/**
 * Splits `ids` by their owners (each id under every replica of its shard of `collection` under
 * `placement`).
 */
export function splitIds(
  placement: Placement,
  collection: string,
  layout: ShardLayout,
  ids: readonly PointId[],
): IdSplit {
  const per_owner = new Map<string, PointId[]>();
  // Replica lists are shared per shard by the placement: the list itself is a cheap key.
  const sets = new Set<readonly string[]>();
  // Resolved once per request, not per id (Placement.shards builds a cache key per call).
  const shards = placement.shards(collection, layout);
  for (const id of ids) {
    const owners = ownersIn(shards, id);
    sets.add(owners);
    for (const o of owners) {
      let list = per_owner.get(o);
      if (list === undefined) per_owner.set(o, list = []);
      list.push(id);
    }
  }
  return { per_owner, owner_sets: distinctSets(sets) };
}

/** One node's GetBatch answer (its records, one per id it was asked, in its request order). */
export interface NodeRecords {
  node: string;
  points: readonly PointRecord[];
}

/** What {@link mergeGetBatch} decided for one id: the winning record and owners to repair. */
export interface MergedRecord {
  record: PointRecord;
  version: number;
  /** Owners that answered with an older version. */
  stale: string[];
}

/**
 * Merges the replicas' answers (records name their id by the wire pair `id`/`string_id`,
 * src/common/point_id.ts): for each distinct id, the record with the highest version (at
 * equal versions a found point beats an absent one), as Get's `newestRead`. `ownersOf(id)`
 * names the owners whose older answers are stale. Ids no node answered are absent from the map.
 */
export function mergeGetBatch(
  answers: readonly NodeRecords[],
  ownersOf: (id: PointId) => readonly string[],
): Map<PointId, MergedRecord> {
  const byId = new Map<PointId, { answers: ReadAnswer[]; records: PointRecord[] }>();
  for (const a of answers) {
    for (const r of a.points) {
      const id = idFromWire(r.id, r.string_id);
      let e = byId.get(id);
      if (e === undefined) byId.set(id, e = { answers: [], records: [] });
      e.answers.push({ node: a.node, version: Number(r.version ?? 0), found: r.found });
      e.records.push(r);
    }
  }
  const out = new Map<PointId, MergedRecord>();
  for (const [id, e] of byId) {
    const pick = newestRead(e.answers, ownersOf(id));
    out.set(id, { record: e.records[pick.index], version: pick.version, stale: pick.stale });
  }
  return out;
}

/** The hint record of one owner's share of a DeleteBatch: tombstones at `version`. */
export function deleteBatchRecord(
  collection: string,
  ids: readonly PointId[],
  version: number,
): WalRecord {
  return {
    kind: "copy",
    collection,
    dimension: 1,
    ids: toRecordIds(ids),
    versions: new Float64Array(ids.length).fill(version),
    deleted: new Uint8Array(ids.length).fill(1),
    vectors: new Float32Array(0),
  };
}

/**
 * The ids and version of a hint made by {@link deleteBatchRecord} (a `copy` record whose entries
 * are all tombstones at one version); null for any other record.
 */
export function deleteBatchOfRecord(
  r: WalRecord,
): { collection: string; ids: PointId[]; version: number; shard_number?: number } | null {
  if (r.kind !== "copy" || r.ids.length === 0) return null;
  const version = r.versions[0];
  for (let i = 0; i < r.ids.length; i++) {
    if (r.deleted[i] !== 1 || r.versions[i] !== version) return null;
  }
  const layout = r.shard_number !== undefined ? { shard_number: r.shard_number } : {};
  return { collection: r.collection ?? "", ids: Array.from(r.ids), version, ...layout };
}

/**
 * The ids of a batch record (common/records.ts): a Uint32Array when every id is a uint32 one
 * (the compact form every record type reads), else the PointIds as given.
 */
export function toRecordIds(ids: readonly PointId[]): RecordIds {
  for (const id of ids) if (!isU32Id(id)) return ids.slice();
  return Uint32Array.from(ids as readonly number[]);
}
