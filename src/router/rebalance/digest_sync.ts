/**
 * Anti-entropy by digests: brings the replicas of one shard into agreement by comparing compact
 * digests (src/common/digest.ts) and exchanging only the buckets that differ, so a run's cost
 * grows with what differs, not with the data. It replaces reading every entry of every node
 * (the rebalancer's full Scan) for replicas that should already agree.
 *
 * {@link syncShard}, for one shard and its replica list:
 *
 * 1. `Digest` (root only) from every replica: 8 bytes and an entry count each. All equal: done
 *    (a few dozen bytes per replica; this is the whole cost on an unchanged cluster).
 * 2. Else `Digest` with the 1,024 bucket digests (8 KiB each) from every replica; the buckets
 *    where they disagree are the work. Per such bucket the replicas fall into groups of equal
 *    digests; one member of each group (the first in replica order) is read.
 * 3. Per chunk of {@link CHUNK_BUCKETS} differing buckets (bounding what the router holds):
 *    `BucketEntries` with `keys_only` from each chosen replica (ids, versions, deleted flags:
 *    about 20 bytes an entry); per id, the newest version among the groups, and the replicas
 *    whose group holds less. Tombstones are copied from those keys; puts are read in full
 *    (`BucketEntries` with `ids`) from one replica that holds them, once, and `CopyBatch`-ed to
 *    the replicas that lack them. So vectors travel only for entries some replica lacks. Copies
 *    are last-writer-wins by version on the receiver (transfer_service.ts), so they are safe in
 *    any order, alongside client writes and hints (an entry that changed between the passes is
 *    copied as it is then), and copying an entry twice changes nothing.
 * 4. The roots again: `converged` says whether the replicas agree now (writes arriving during
 *    the run, or a tombstone older than a receiver's grace, which it refuses, leave them apart
 *    until later).
 *
 * Replicas that fail a call are reported in `failed` and left out of the rest of the run; the
 * others still sync. Bytes are counted as the payloads of requests and replies (digests, ids,
 * versions, vectors as 4 bytes a value, payload text; {@link entryBytes}), without gRPC framing,
 * the same measure the bench applies to a full Scan (scripts/bench/anti_entropy.ts).
 *
 * Pure over {@link DigestPort}s: the unit tests use fake nodes; {@link transferDigestPort} is
 * the gRPC one.
 *
 * @module
 */
import { differingBuckets, DIGEST_BUCKETS } from "../../common/digest.ts";
import { bucketOf } from "../../common/digest.ts";
import { idsToWire, idToWire, type PointId } from "../../common/point_id.ts";
import { SCAN_LIMIT_MAX } from "../../common/limits.ts";
import { supersedes } from "../../common/version.ts";
import type { TransferClient } from "../../api/transfer.ts";

/** An entry as BucketEntries lists it and CopyBatch takes it. */
export interface DigestEntry {
  id: PointId;
  version: number;
  deleted: boolean;
  /** Empty for a tombstone. */
  vector: ArrayLike<number>;
  /** A live entry's payload as JSON text; "" or absent for none. */
  payload?: string;
}

/** One shard replica's digest as a node answers `Digest`. */
export interface ShardDigest {
  /** 8 bytes. */
  root: Uint8Array;
  entries: number;
  /** DIGEST_BUCKETS × 8 bytes when asked for; else empty. */
  bucket_digests: Uint8Array;
}

/** One `BucketEntries` page. */
export interface BucketPage {
  entries: DigestEntry[];
  next_after: PointId;
  done: boolean;
}

/** What a digest sync needs of one node (src/node/transfer_service.ts). */
export interface DigestPort {
  digest(collection: string, shard: number, with_buckets: boolean): Promise<ShardDigest>;
  bucketEntries(
    collection: string,
    shard: number,
    buckets: number[],
    after: PointId | null,
    limit: number,
    options?: { keys_only?: boolean; ids?: PointId[] },
  ): Promise<BucketPage>;
  copy(collection: string, entries: DigestEntry[]): Promise<{ applied: number; skipped: number }>;
}

/** What {@link syncShard} did. */
export interface ShardSyncReport {
  collection: string;
  shard: number;
  /** Whether the roots agreed at the start (nothing else was exchanged). */
  equal: boolean;
  /** Buckets where the replicas disagreed. */
  buckets_differing: number;
  /** Entries read in full (with vectors) from replicas: the puts some replica lacked. */
  entries_read: number;
  /** Entries that changed a replica (CopyBatch `applied`, summed over receivers). */
  entries_copied: number;
  /** Request and reply payload bytes of the whole sync (see the module comment). */
  bytes: number;
  /** Whether the replicas' roots agree at the end (every replica answered). */
  converged: boolean;
  /** Replicas whose calls failed, with the error. */
  failed: { node: string; error: string }[];
}

/** Options of {@link syncShard}. */
export interface SyncOptions {
  /** Entries per BucketEntries page (and so at most per CopyBatch); default 512. */
  page_limit?: number;
  /** Describes an error for the report; default its message. */
  describe?: (e: unknown) => string;
}

/** Bytes of a request's fixed part (collection name, shard, flags, cursor): an estimate. */
const REQUEST_BYTES = 32;
/** Bytes of a Digest reply without buckets: root 8, entries, buckets, shard_number, tags. */
const ROOT_REPLY_BYTES = 24;

/** Buckets handled at once: bounds the keys a sync holds in memory. */
const CHUNK_BUCKETS = 64;

/** The payload bytes of an id on the wire. */
function idBytes(id: PointId): number {
  const w = idToWire(id);
  return w.string_id !== "" ? w.string_id.length + 2 : 9;
}

/** The payload bytes of one entry on the wire: id, version, flag, vector, payload text. */
export function entryBytes(e: DigestEntry): number {
  return idBytes(e.id) + 9 + 2 + e.vector.length * 4 + (e.payload?.length ?? 0) + 4;
}

function rootsAgree(digests: ShardDigest[]): boolean {
  const first = digests[0];
  return digests.every((d) =>
    d.entries === first.entries && d.root.length === first.root.length &&
    d.root.every((b, i) => b === first.root[i])
  );
}

function bucketEqual(a: Uint8Array, b: Uint8Array, k: number): boolean {
  for (let j = 0; j < 8; j++) if (a[k * 8 + j] !== b[k * 8 + j]) return false;
  return true;
}

/**
 * Syncs the replicas `replicas` of shard `shard` of `collection` (see the module comment).
 * `ports(node)` is the node's DigestPort, or null when the router cannot reach it (reported as
 * failed).
 */
export async function syncShard(
  ports: (node: string) => DigestPort | null,
  collection: string,
  shard: number,
  replicas: readonly string[],
  options: SyncOptions = {},
): Promise<ShardSyncReport> {
  const limit = Math.max(1, Math.min(SCAN_LIMIT_MAX, options.page_limit ?? 512));
  const describe = options.describe ?? ((e: unknown) => (e as Error)?.message ?? String(e));
  const report: ShardSyncReport = {
    collection,
    shard,
    equal: false,
    buckets_differing: 0,
    entries_read: 0,
    entries_copied: 0,
    bytes: 0,
    converged: false,
    failed: [],
  };
  let live: string[] = [];
  const fail = (node: string, e: unknown) => {
    report.failed.push({ node, error: describe(e) });
    live = live.filter((n) => n !== node);
  };
  for (const node of replicas) {
    if (ports(node) === null) report.failed.push({ node, error: "no channel to the node" });
    else live.push(node);
  }
  /** Digests of the live replicas (those that fail drop out). */
  const digests = async (with_buckets: boolean): Promise<Map<string, ShardDigest>> => {
    const out = new Map<string, ShardDigest>();
    await Promise.all(live.map(async (node) => {
      report.bytes += REQUEST_BYTES;
      try {
        const d = await ports(node)!.digest(collection, shard, with_buckets);
        report.bytes += ROOT_REPLY_BYTES + d.bucket_digests.length;
        out.set(node, d);
      } catch (e) {
        fail(node, e);
      }
    }));
    return out;
  };

  const roots = await digests(false);
  if (live.length < 2) {
    report.equal = report.converged = live.length === replicas.length;
    return report;
  }
  if (rootsAgree(live.map((n) => roots.get(n)!))) {
    report.equal = true;
    report.converged = report.failed.length === 0;
    return report;
  }

  const full = await digests(true);
  const nodes = live.filter((n) => full.has(n));
  const buckets = nodes.map((n) => full.get(n)!.bucket_digests);
  // Buckets where some replica differs from the first: a bucket where every replica agrees
  // with the first agrees everywhere.
  const differing = new Set<number>();
  for (let i = 1; i < nodes.length; i++) {
    for (const k of differingBuckets(buckets[0], buckets[i])) differing.add(k);
  }
  report.buckets_differing = differing.size;
  /** The first replica (index) whose digest of bucket `k` equals replica `j`'s. */
  const repOf = (j: number, k: number): number => {
    for (let i = 0; i < j; i++) if (bucketEqual(buckets[i], buckets[j], k)) return i;
    return j;
  };
  /** Pages BucketEntries of `reader` over `chunk` (keys only, or only `ids`) into `visit`. */
  const page = async (
    reader: string,
    chunk: number[],
    keys_only: boolean,
    ids: PointId[] | undefined,
    visit: (e: DigestEntry) => void,
  ): Promise<boolean> => {
    let after: PointId | null = null;
    for (;;) {
      let p: BucketPage;
      report.bytes += REQUEST_BYTES + chunk.length * 2;
      if (ids !== undefined) { for (const id of ids) report.bytes += idBytes(id); }
      try {
        p = await ports(reader)!.bucketEntries(collection, shard, chunk, after, limit, {
          keys_only,
          ids,
        });
      } catch (e) {
        fail(reader, e);
        return false;
      }
      for (const e of p.entries) {
        report.bytes += entryBytes(e);
        visit(e);
      }
      if (!keys_only) report.entries_read += p.entries.length;
      if (p.done || (p.entries.length === 0 && p.next_after === after)) return true;
      after = p.next_after;
    }
  };
  const copyTo = async (target: string, entries: DigestEntry[]) => {
    if (!live.includes(target) || entries.length === 0) return;
    for (let i = 0; i < entries.length; i += limit) {
      const part = entries.slice(i, i + limit);
      for (const e of part) report.bytes += entryBytes(e);
      report.bytes += REQUEST_BYTES + 8;
      try {
        // Not `+= await`: that reads the sum before the await and loses concurrent copies.
        const r = await ports(target)!.copy(collection, part);
        report.entries_copied += r.applied;
      } catch (e) {
        fail(target, e);
        return;
      }
    }
  };
  const syncChunk = async (chunk: number[]): Promise<void> => {
    // Pass 1: every group representative's (id, version, deleted) in the chunk's buckets.
    const held = new Map<number, Map<PointId, { version: number; deleted: boolean }>>();
    const repBuckets = new Map<number, number[]>();
    for (const k of chunk) {
      for (let j = 0; j < nodes.length; j++) {
        if (repOf(j, k) !== j) continue;
        if (!repBuckets.has(j)) repBuckets.set(j, []);
        repBuckets.get(j)!.push(k);
      }
    }
    for (const [r, ks] of repBuckets) {
      if (!live.includes(nodes[r])) continue;
      const m = new Map<PointId, { version: number; deleted: boolean }>();
      held.set(r, m);
      await page(nodes[r], ks, true, undefined, (e) => {
        m.set(e.id, { version: e.version, deleted: e.deleted });
      });
    }
    // Decide: per id, the newest version among the representatives of its bucket (a delete
    // beats a put at equal versions: common/version.ts `supersedes`, the rule the nodes apply
    // copies by, so replicas with one version and different flags converge); every replica
    // whose group holds less gets it. Tombstones go from the keys; puts are fetched.
    const tombs = new Map<string, DigestEntry[]>();
    const fetch = new Map<number, Map<PointId, string[]>>(); // source rep → id → targets
    const ids = new Set<PointId>();
    for (const m of held.values()) for (const id of m.keys()) ids.add(id);
    for (const id of ids) {
      const k = bucketOf(id);
      let best = -1, src = -1, deleted = false;
      for (let j = 0; j < nodes.length; j++) {
        if (repOf(j, k) !== j) continue;
        const h = held.get(j)?.get(id);
        if (h !== undefined && supersedes(h.version, h.deleted, best, deleted)) {
          best = h.version;
          src = j;
          deleted = h.deleted;
        }
      }
      if (src < 0) continue;
      const targets: string[] = [];
      for (let j = 0; j < nodes.length; j++) {
        const r = repOf(j, k);
        if (!held.has(r)) continue; // its group's representative failed: not known
        const h = held.get(r)!.get(id);
        if (h === undefined || supersedes(best, deleted, h.version, h.deleted)) {
          targets.push(nodes[j]);
        }
      }
      if (targets.length === 0) continue;
      if (deleted) {
        for (const t of targets) {
          if (!tombs.has(t)) tombs.set(t, []);
          tombs.get(t)!.push({ id, version: best, deleted: true, vector: [] });
        }
      } else {
        if (!fetch.has(src)) fetch.set(src, new Map());
        fetch.get(src)!.set(id, targets);
      }
    }
    await Promise.all([...tombs].map(([t, entries]) => copyTo(t, entries)));
    // Pass 2: the puts some replica lacks, in full, from a replica that holds them.
    for (const [src, wanted] of fetch) {
      const all = [...wanted.keys()];
      for (let i = 0; i < all.length; i += SCAN_LIMIT_MAX) {
        const per = new Map<string, DigestEntry[]>();
        const ok = await page(nodes[src], chunk, false, all.slice(i, i + SCAN_LIMIT_MAX), (e) => {
          for (const t of wanted.get(e.id) ?? []) {
            if (!per.has(t)) per.set(t, []);
            per.get(t)!.push(e);
          }
        });
        await Promise.all([...per].map(([t, entries]) => copyTo(t, entries)));
        if (!ok) break;
      }
    }
  };
  // Per chunk of differing buckets (bounded memory): a keys-only pass from one replica of each
  // group of equal bucket digests, then only the entries some replica lacks travel in full.
  const list = [...differing].sort((x, y) => x - y);
  for (let c = 0; c < list.length; c += CHUNK_BUCKETS) {
    await syncChunk(list.slice(c, c + CHUNK_BUCKETS));
  }
  if (live.length >= 2) {
    const end = await digests(false);
    report.converged = report.failed.length === 0 && end.size === nodes.length &&
      rootsAgree([...end.values()]);
  }
  return report;
}

/** One shard to sync in a {@link digestRun}. */
export interface ShardReplicas {
  collection: string;
  shard: number;
  /** Its replicas under the current placement. */
  replicas: readonly string[];
}

/** What a {@link digestRun} did, summed over its shards. */
export interface DigestRunReport {
  shards: number;
  shards_equal: number;
  shards_converged: number;
  buckets_differing: number;
  entries_read: number;
  entries_copied: number;
  bytes: number;
  failed: { node: string; error: string }[];
  reports: ShardSyncReport[];
}

/**
 * A periodic anti-entropy run by digests: {@link syncShard} over every listed shard, at most
 * `concurrency` (default 4) at a time. An unchanged cluster costs one root exchange per replica.
 */
export async function digestRun(
  ports: (node: string) => DigestPort | null,
  shards: readonly ShardReplicas[],
  options: SyncOptions & { concurrency?: number } = {},
): Promise<DigestRunReport> {
  const reports: ShardSyncReport[] = new Array(shards.length);
  let next = 0;
  const worker = async () => {
    while (next < shards.length) {
      const i = next++;
      const s = shards[i];
      reports[i] = await syncShard(ports, s.collection, s.shard, s.replicas, options);
    }
  };
  const n = Math.max(1, Math.min(options.concurrency ?? 4, shards.length));
  await Promise.all(Array.from({ length: n }, worker));
  const out: DigestRunReport = {
    shards: shards.length,
    shards_equal: 0,
    shards_converged: 0,
    buckets_differing: 0,
    entries_read: 0,
    entries_copied: 0,
    bytes: 0,
    failed: [],
    reports,
  };
  for (const r of reports) {
    if (r.equal) out.shards_equal++;
    if (r.converged) out.shards_converged++;
    out.buckets_differing += r.buckets_differing;
    out.entries_read += r.entries_read;
    out.entries_copied += r.entries_copied;
    out.bytes += r.bytes;
    out.failed.push(...r.failed);
  }
  return out;
}

/** The {@link DigestPort} of one node over its Transfer client (src/api/transfer.ts). */
export function transferDigestPort(client: TransferClient, timeout_ms?: number): DigestPort {
  return {
    async digest(collection, shard, with_buckets) {
      const r = await client.call("Digest", { collection, shard, with_buckets }, timeout_ms);
      if (r.bucket_digests.length !== 0 && r.bucket_digests.length !== DIGEST_BUCKETS * 8) {
        throw new RangeError(
          `Digest reply of ${client.address} has ${r.bucket_digests.length} bytes of bucket ` +
            `digests, not ${DIGEST_BUCKETS * 8}`,
        );
      }
      return {
        root: new Uint8Array(r.root),
        entries: r.entries,
        bucket_digests: new Uint8Array(r.bucket_digests),
      };
    },
    async bucketEntries(collection, shard, buckets, after, limit, options = {}) {
      const cursor = after === null ? { id: 0, string_id: "" } : idToWire(after);
      const listed = options.ids === undefined
        ? { ids: [], string_ids: [] }
        : idsToWire(options.ids);
      const page = await client.call("BucketEntries", {
        collection,
        shard,
        buckets,
        after_id: cursor.id,
        after_string_id: cursor.string_id,
        from_start: after === null,
        limit,
        keys_only: options.keys_only === true,
        ids: listed.ids,
        string_ids: listed.string_ids,
      }, timeout_ms);
      return { entries: page.points, next_after: page.next_after, done: page.done };
    },
    async copy(collection, entries) {
      const r = await client.call("CopyBatch", {
        collection,
        points: entries.map((e) => {
          const w = idToWire(e.id);
          return {
            id: w.id,
            string_id: w.string_id,
            vector: e.deleted ? [] : Array.from(e.vector),
            // An entry from before versions (0) travels as 1, the oldest: any real write wins
            // (as the rebalancer's copies, node_links.ts).
            version: String(Math.max(1, e.version)),
            deleted: e.deleted,
            payload: e.deleted ? "" : e.payload ?? "",
          };
        }),
      }, timeout_ms);
      return { applied: r.applied, skipped: r.skipped };
    },
  };
}
