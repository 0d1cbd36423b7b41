/**
 * The first phase of a rebalancing run that moves shards (rebalancer.ts): every shard a node
 * gained is streamed to it as a file (shard_move.ts), at most `transfers_max` at once, then the
 * run's point-level phase is narrowed, per collection whose files all arrived, to the units that
 * still need it: for each shard whose replica set changed at some point between the settled
 * placement and the one in use, the unit of every node that was one of its replicas on the way
 * (the catch-up, see the comment in {@link shardFilePhase}: copies to the shard's owners, which
 * skip what they hold, then the nodes that no longer own it forget it, conditionally on
 * versions), and units an earlier aborted attempt filled on a node that no longer owns them
 * (strays). Shards whose replicas never changed are not read at all.
 *
 * With digests, a loser (a node that no longer owns a changed shard) is only read by the sync,
 * never written, and its unit is emptied wholesale at the end of the run ({@link settleDrop},
 * `Transfer/ShardDrop`), conditional on the unit's root digest read BEFORE the sync: if the root
 * is unchanged at the drop, the unit held exactly what the sync put on the owners; a write that
 * reached it since changes the root, and the node refuses. Losers without ShardDrop list their
 * keys before the sync instead and forget them through Prune, conditional on versions.
 *
 * The file path is skipped, and the run does the full point-by-point pass as before, when:
 * there is no placement change (an anti-entropy run, which asks for the full pass); or, per
 * collection, an earlier attempt since the settled ring copied it whole, it has one shard (its
 * unit is the
 * collection's directory), a gained shard has no reachable source, a node lacks the file RPCs,
 * or a move failed on every source twice.
 *
 * @module
 */
import type { Placement, ShardLayout } from "../../cluster/placement.ts";
import type { PointId } from "../../common/point_id.ts";
import { DIGEST_BUCKETS } from "../../common/digest.ts";
import { type DigestPort, syncShard } from "./digest_sync.ts";
import {
  type ByteBucket,
  planShardFiles,
  ShardDropUnsupportedError,
  type ShardFileMove,
  type ShardMoveProgress,
  ShardRootChangedError,
  streamShard,
} from "./shard_move.ts";

/** Times a refused ShardDrop is retried after a fresh sync before its entries are pruned. */
export const DROP_RETRIES = 2;

/** One unit of the point-level phase: a node's entries of a collection (of one shard, or all). */
export interface ScanUnit {
  node: string;
  collection: string;
  /** Only this shard's unit; absent: every entry of the collection on the node. */
  shard?: number;
}

/** Entries a loser forgets at the end of the run (conditional on the versions listed). */
export interface FilePrune {
  node: string;
  collection: string;
  ids: PointId[];
  versions: number[];
}

/**
 * A loser's unit to empty at the end of the run (ShardDrop, {@link settleDrop}): its root
 * digest as read BEFORE the digest sync that put everything it held on `owners`.
 */
export interface FileDrop {
  node: string;
  collection: string;
  shard: number;
  /** The shard's replicas under the placement in use. */
  owners: readonly string[];
  root: Uint8Array;
  entries: number;
}

/** What {@link shardFilePhase} did. */
export interface FilePhaseResult {
  /** The point-level units of every collection the files covered (absent: the full pass). */
  covered: Map<string, ScanUnit[]>;
  /** Losers' entries of shards synced by digests, to forget once the run's copies landed. */
  prunes: FilePrune[];
  /** Losers' units of shards synced by digests, to empty once the run's copies landed. */
  drops: FileDrop[];
}

/** What {@link shardFilePhase} needs of the rebalancer. */
export interface FilePhaseContext {
  /** Settled and current member lists, the rings published in between, and placements. */
  settled: { nodes: string[]; placement: Placement };
  to: { nodes: string[]; placement: Placement };
  chain: readonly { nodes: string[]; placement: Placement }[];
  /** Collections that get the full point pass anyway (an earlier attempt copied points). */
  exclude: ReadonlySet<string>;
  leavers: readonly string[];
  collections: readonly string[];
  /**
   * Shard units that received entries (installs, copies) in earlier attempts since the settled
   * ring, keyed `node \0 collection \0 shard`: one no longer owned under `to` holds strays.
   */
  touched: Map<string, ScanUnit & { shard: number }>;
  layout(collection: string): Promise<ShardLayout>;
  files(node: string): import("./shard_move.ts").ShardFilePort | null;
  transfers_max: number;
  /** The node's digest port (digest_sync.ts); absent or null: catch-up by scans. */
  digest?: (node: string) => DigestPort | null;
  /** Entries per BucketEntries page. */
  page_points: number;
  /** Whether a loser may forget (enough nodes on the ring for RF). */
  mayPrune(layout: ShardLayout): boolean;
  /** Counts copies applied by digest syncs (Stats points_copied) and their bytes. */
  counted(copied: number, bytes: number): void;
  bucket: ByteBucket;
  stats: {
    shard_moves_active: number;
    shard_moves_done: number;
    shard_moves_failed: number;
    shard_bytes_moved: number;
    shard_moves: ShardMoveProgress[];
  };
  check(): void;
  /** Whether to retry a failed `beginInstall` (the target still lacks the collection). */
  beginWait(e: unknown): Promise<boolean>;
  isAbort(e: unknown): boolean;
  log(message: string): void;
  describe(e: unknown): string;
}

/**
 * Runs the file phase (module comment). Returns the point-level units of every collection the
 * files covered; a collection absent from the map needs the full pass. Throws only an abort.
 */
export async function shardFilePhase(ctx: FilePhaseContext): Promise<FilePhaseResult> {
  const out = new Map<string, ScanUnit[]>();
  const prunes: FilePrune[] = [];
  const drops: FileDrop[] = [];
  const settled = new Set(ctx.settled.nodes);
  const current = new Set(ctx.to.nodes);
  const same = ctx.settled.nodes.length === ctx.to.nodes.length &&
    ctx.to.nodes.every((n) => settled.has(n));
  if (same) return { covered: out, prunes, drops };
  const sourceOk = (n: string) =>
    (current.has(n) || ctx.leavers.includes(n)) && ctx.files(n) !== null;
  const plans = new Map<string, ShardFileMove[]>();
  for (const collection of ctx.collections) {
    const layout = await ctx.layout(collection);
    if (layout.shard_number === 1 || ctx.exclude.has(collection)) continue;
    const moves = planShardFiles(
      ctx.settled.placement,
      ctx.to.placement,
      collection,
      layout,
      ctx.to.nodes,
      sourceOk,
    );
    if (moves.some((m) => m.sources.length === 0 || ctx.files(m.target) === null)) continue;
    plans.set(collection, moves);
  }
  const all = [...plans.values()].flat();
  const failedCollections = new Set<string>();
  /** The source each move streamed from. */
  const usedSource = new Map<ShardFileMove, string>();
  let next = 0;
  let aborted: unknown = null;
  const worker = async () => {
    while (next < all.length && aborted === null) {
      const m = all[next++];
      if (failedCollections.has(m.collection)) continue;
      const attempts = [...m.sources, ...m.sources];
      let ok = false;
      for (const source of attempts) {
        const src = ctx.files(source);
        const dst = ctx.files(m.target);
        if (src === null || dst === null) continue;
        const progress: ShardMoveProgress = {
          collection: m.collection,
          shard: m.shard,
          source,
          target: m.target,
          bytes_done: 0,
          bytes_total: 0,
        };
        ctx.stats.shard_moves.push(progress);
        ctx.stats.shard_moves_active++;
        const t0 = Date.now();
        try {
          const r = await streamShard(
            m,
            src,
            dst,
            ctx.bucket,
            progress,
            () => ctx.check(),
            (e) => ctx.beginWait(e),
          );
          ctx.stats.shard_moves_done++;
          ctx.stats.shard_bytes_moved += r.bytes;
          usedSource.set(m, source);
          ctx.log(
            `rebalance: shard ${m.shard} of "${m.collection}" moved as a file ${source} -> ` +
              `${m.target}: ${r.bytes} bytes, ${r.points} points, ${r.merged} merged, ` +
              `${Date.now() - t0} ms`,
          );
          ok = true;
        } catch (e) {
          if (ctx.isAbort(e)) {
            aborted = e;
            return;
          }
          ctx.stats.shard_moves_failed++;
          ctx.log(
            `WARNING rebalance: moving shard ${m.shard} of "${m.collection}" from ${source} to ` +
              `${m.target} as a file failed: ${ctx.describe(e)}`,
          );
        } finally {
          ctx.stats.shard_moves_active--;
          const i = ctx.stats.shard_moves.indexOf(progress);
          if (i >= 0) ctx.stats.shard_moves.splice(i, 1);
        }
        if (ok) break;
      }
      if (!ok) failedCollections.add(m.collection);
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(ctx.transfers_max, all.length) }, worker),
  );
  if (aborted !== null) throw aborted;
  const result = { covered: out, prunes, drops };
  for (const [collection, moves] of plans) {
    if (failedCollections.has(collection)) {
      ctx.log(`rebalance: "${collection}" falls back to moving points`);
      continue;
    }
    const units: ScanUnit[] = [];
    const seen = new Set<string>();
    const add = (node: string, shard: number) => {
      const key = `${node}\u0000${shard}`;
      if (seen.has(key)) return;
      seen.add(key);
      units.push({ node, collection, shard });
    };
    // Catch-up: every shard whose replica set was not the same under the settled placement,
    // every one published since and the one in use is read from each node that was a replica
    // under any of them (writes went to the replicas of the placement current when they were
    // made; and replicas may differ: a write acknowledged without one of them has its hint
    // queued for that one only). Copies go to the owners under `to`, which skip what they hold;
    // the nodes that are no longer owners then forget the shard's entries.
    const layout = await ctx.layout(collection);
    const placements = [ctx.settled.placement, ...ctx.chain.map((r) => r.placement)];
    if (placements[placements.length - 1] !== ctx.to.placement) placements.push(ctx.to.placement);
    const synced: { shard: number; nodes: string[] }[] = [];
    const changed: { shard: number; nodes: string[] }[] = [];
    for (let k = 0; k < layout.shard_number; k++) {
      const sets = placements.map((p) => p.replicas(collection, layout, k));
      const first = [...sets[0]].sort().join(",");
      if (sets.every((r) => [...r].sort().join(",") === first)) continue;
      const nodes = [...new Set(sets.flat())].filter(sourceOk);
      changed.push({ shard: k, nodes });
    }
    // With digests (digest_sync.ts), the replicas of a changed shard are synced bucket by
    // bucket (vectors travel only for entries some replica lacks); its losers are then listed
    // by keys only and forgotten at the end of the run. A shard whose sync did not converge is
    // scanned instead.
    await pool(changed, ctx.transfers_max, async (ch) => {
      ctx.check();
      const r = await catchUpByDigests(
        ctx,
        collection,
        layout,
        ch.shard,
        ch.nodes,
        prunes,
        drops,
      );
      if (r) synced.push(ch);
      else for (const n of ch.nodes) add(n, ch.shard);
    });
    for (const m of moves) {
      if (!synced.some((x) => x.shard === m.shard)) add(usedSource.get(m)!, m.shard);
    }
    // Strays of earlier aborted attempts: a unit filled then, whose node no longer owns it.
    for (const t of ctx.touched.values()) {
      if (t.collection !== collection || !sourceOk(t.node)) continue;
      if (!ctx.to.placement.replicas(collection, layout, t.shard).includes(t.node)) {
        add(t.node, t.shard);
      }
    }
    // This attempt fills the owners of every shard it reads (installs, catch-up copies) and, by
    // digests, every replica it synced.
    for (const x of synced) {
      for (const node of x.nodes) {
        ctx.touched.set(`${node}\u0000${collection}\u0000${x.shard}`, {
          node,
          collection,
          shard: x.shard,
        });
      }
    }
    for (const u of units) {
      for (const node of ctx.to.placement.replicas(collection, layout, u.shard!)) {
        ctx.touched.set(`${node}\u0000${collection}\u0000${u.shard}`, {
          node,
          collection,
          shard: u.shard!,
        });
      }
    }
    out.set(collection, units);
  }
  return result;
}

/** Runs `f` over `items`, at most `n` at once; the first error is rethrown after all ended. */
async function pool<T>(items: readonly T[], n: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length && failure === null) {
      try {
        await f(items[next++]);
      } catch (e) {
        failure ??= e;
      }
    }
  }));
  if (failure !== null) throw failure;
}

/**
 * Syncs shard `shard`'s replicas `nodes` by digests and lists what its losers (those of `nodes`
 * that do not own it under `to`) must forget into `prunes`. False when digests are unavailable
 * or a replica failed (the caller scans the shard instead).
 */
async function catchUpByDigests(
  ctx: FilePhaseContext,
  collection: string,
  layout: ShardLayout,
  shard: number,
  nodes: string[],
  prunes: FilePrune[],
  drops: FileDrop[],
): Promise<boolean> {
  const digest = ctx.digest;
  if (digest === undefined || nodes.length < 2 || nodes.some((n) => digest(n) === null)) {
    return false;
  }
  // The losers' keys are listed BEFORE the sync: once it converged, every (id, version)
  // listed is on every owner (at that version or newer), so forgetting them loses nothing; a
  // write reaching a loser later is not listed and stays for the next run.
  // Likewise a loser that can drop its unit wholesale has its root digest read BEFORE the sync:
  // if the root is the same at the drop, the unit held exactly what the sync read.
  const owners = ctx.to.placement.replicas(collection, layout, shard);
  const lists: FilePrune[] = [];
  const dropping: FileDrop[] = [];
  try {
    if (ctx.mayPrune(layout)) {
      for (const loser of nodes.filter((n) => !owners.includes(n))) {
        if (ctx.files(loser)?.dropShard !== undefined) {
          ctx.check();
          const d = await digest(loser)!.digest(collection, shard, false);
          dropping.push({
            node: loser,
            collection,
            shard,
            owners,
            root: d.root,
            entries: d.entries,
          });
          continue;
        }
        const list = await listKeys(ctx, digest(loser)!, loser, collection, shard);
        if (list.ids.length > 0) lists.push(list);
      }
    }
    const r = await syncShard(readOnlyLosers(digest, owners), collection, shard, nodes, {
      page_limit: ctx.page_points,
      describe: ctx.describe,
    });
    ctx.counted(r.entries_copied, r.bytes);
    // Not `converged`: writes arriving meanwhile (to the owners, not the losers) keep roots
    // apart. What matters is that every bucket that differed was reconciled among replicas that
    // all answered: then each entry a replica held at its digest reached the others.
    if (r.failed.length > 0) return false;
  } catch (e) {
    if (ctx.isAbort(e)) throw e;
    ctx.log(`WARNING rebalance: digest sync of shard ${shard} failed: ${ctx.describe(e)}`);
    return false;
  }
  prunes.push(...lists);
  drops.push(...dropping);
  return true;
}

/**
 * The digest ports of a shard's sync where the nodes not in `owners` (losers) are read, never
 * written: a copy to one would only be forgotten again (and would raise its version above the
 * one listed, so the prune would skip it, or change the root a drop expects).
 */
function readOnlyLosers(
  digest: (node: string) => DigestPort | null,
  owners: readonly string[],
): (node: string) => DigestPort | null {
  return (n) => {
    const p = digest(n);
    if (p === null || owners.includes(n)) return p;
    return {
      digest: (c, k, b) => p.digest(c, k, b),
      bucketEntries: (c, k, b, after, limit, o) => p.bucketEntries(c, k, b, after, limit, o),
      copy: (_c, entries) => Promise.resolve({ applied: 0, skipped: entries.length }),
    };
  };
}

/** Every (id, version) of `node`'s unit of `shard`, keys only (a prune list). */
async function listKeys(
  ctx: Pick<FilePhaseContext, "check" | "page_points">,
  port: DigestPort,
  node: string,
  collection: string,
  shard: number,
): Promise<FilePrune> {
  const all = Array.from({ length: DIGEST_BUCKETS }, (_, i) => i);
  const list: FilePrune = { node, collection, ids: [], versions: [] };
  let after: PointId | null = null;
  for (;;) {
    ctx.check();
    const page = await port.bucketEntries(collection, shard, all, after, ctx.page_points, {
      keys_only: true,
    });
    for (const e of page.entries) {
      list.ids.push(e.id);
      list.versions.push(e.version);
    }
    if (page.done) return list;
    after = page.next_after;
  }
}

/** What {@link settleDrop} needs of the rebalancer. */
export type DropContext = Pick<
  FilePhaseContext,
  "files" | "digest" | "page_points" | "counted" | "check" | "isAbort" | "log" | "describe"
>;

/** What {@link settleDrop} did. */
export interface DropOutcome {
  /** Entries the loser's unit held when it was emptied (0 when it was not). */
  dropped: number;
  /** Times the loser refused because its root had changed. */
  refused: number;
  /** When the unit was not emptied: its entries to forget by Prune (listed before a sync). */
  prune: FilePrune | null;
}

/**
 * Empties a loser's unit (ShardDrop with the root read before the run's sync). When the root
 * changed (a write reached the loser since, e.g. a hint or a router on an older ring), the root
 * is read again, the shard synced again from the loser to its owners, and the drop retried, at
 * most {@link DROP_RETRIES} times; then, or when the node lacks ShardDrop, its keys are listed,
 * the shard synced once more, and the keys come back to be pruned (conditional on versions).
 * Throws when a sync fails (the run does not settle) or on an abort.
 */
export async function settleDrop(ctx: DropContext, d: FileDrop): Promise<DropOutcome> {
  const files = ctx.files(d.node);
  const digest = ctx.digest;
  if (files?.dropShard === undefined || digest === undefined || digest(d.node) === null) {
    throw new Error(`${d.node} can no longer be reached to drop shard ${d.shard}`);
  }
  const nodes = [...d.owners, d.node];
  const sync = async () => {
    const r = await syncShard(readOnlyLosers(digest, d.owners), d.collection, d.shard, nodes, {
      page_limit: ctx.page_points,
      describe: ctx.describe,
    });
    ctx.counted(r.entries_copied, r.bytes);
    if (r.failed.length > 0) {
      throw new Error(
        `digest sync of shard ${d.shard} of "${d.collection}" before dropping it on ${d.node} ` +
          `failed: ${r.failed.map((f) => `${f.node}: ${f.error}`).join("; ")}`,
      );
    }
  };
  let root = d.root;
  let entries = d.entries;
  let refused = 0;
  for (let attempt = 0;; attempt++) {
    ctx.check();
    try {
      const dropped = await files.dropShard(d.collection, d.shard, root, entries);
      return { dropped, refused, prune: null };
    } catch (e) {
      if (ctx.isAbort(e)) throw e;
      if (e instanceof ShardDropUnsupportedError) break;
      if (!(e instanceof ShardRootChangedError)) throw e;
      refused++;
      ctx.log(
        `rebalance: ${d.node} kept shard ${d.shard} of "${d.collection}" (${ctx.describe(e)}); ` +
          (attempt < DROP_RETRIES ? "syncing it again" : "pruning it entry by entry"),
      );
      if (attempt >= DROP_RETRIES) break;
      ctx.check();
      const now = await digest(d.node)!.digest(d.collection, d.shard, false);
      root = now.root;
      entries = now.entries;
      await sync();
    }
  }
  const list = await listKeys(ctx, digest(d.node)!, d.node, d.collection, d.shard);
  await sync();
  return { dropped: 0, refused, prune: list.ids.length > 0 ? list : null };
}
