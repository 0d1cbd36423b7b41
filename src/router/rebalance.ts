/**
 * Rebalancing, driven by the router: when its ring changes, points move to the nodes that own
 * them under the new ring, without losing or resurrecting concurrent writes.
 *
 * Protocol (decisions in src/cluster/rebalance_plan.ts, node side in
 * src/server/transfer_service.ts):
 *
 * 1. **Tokens before routing.** Before the router publishes a new ring it opens a copy token
 *    (`BeginCopy`) on every node of that ring that has none yet ({@link Rebalancer.prepare}). From
 *    then on each of those nodes records every id written to it; a copy is applied only to an id
 *    untouched since the token (and absent, unless its sender owned the point under every ring
 *    since the settled one: then it replaces a possibly stale value). Since no write routed by the
 *    new ring can reach a node before its token, a copy can never overwrite a newer put or
 *    resurrect a delete made under the new ring. Tokens stay open until the placement is settled,
 *    across further ring changes, so a write made under an intermediate ring is protected as well.
 *    A node whose BeginCopy fails (down, or restarted since) receives no copies in this rebalance:
 *    copying to it later with a later token would be unsafe. It is reported.
 * 2. **Old writes drain.** After publishing, the driver waits (up to
 *    {@link DRAIN_WAIT_TIMEOUTS} node timeouts) until no write planned on an older ring is in
 *    flight: such a write goes to the old owners only, so a scan that read a source before it
 *    landed would copy a stale value the new owner would then keep.
 *    **Joins wait.** While a move is unsettled the router keeps nodes that join off its ring
 *    (they enter once it settles); only deaths and departures change the ring meanwhile, so
 *    rings pile up only through failures.
 * 3. **Scan and copy.** After {@link Rebalancer.delay_ms} of ring stability, each node of the
 *    new ring is scanned, collection by collection (a *transfer*; at most `transfers_max` run
 *    at once), in pages of ascending ids; each point goes, through `CopyBatch`, to the new
 *    owners it lacks, sent only by its designated source (plan: the first old owner still on
 *    the ring, nodes with pending hints ranked last). A point with no such source (every node
 *    that owned it under all rings since the settled one is gone) is neither copied nor
 *    pruned: holders may disagree and, without per-write versions, a copy could resurrect a
 *    delete; it is counted in `points_unresolved`. A target that does not have the
 *    collection yet (its creation is still in its hint queue) is retried for up to
 *    {@link COLLECTION_WAIT_MS}. Searches ask every node meanwhile, so they stay complete; a Get
 *    prefers owners that held the point before the change ({@link Rebalancer.receiving}).
 * 4. **Settle and prune.** When every transfer succeeded, a point that a node gained (it did not
 *    own it under every ring since the settled one) and holds although no source sent it is removed
 *    from it with its copy token: the sources no longer have it, so it was deleted while that node
 *    was away (a node returning with old data) and must not come back. Then the points each node no
 *    longer owns are deleted from it (`Prune`, which keeps a tombstone and skips ids touched since
 *    a second token opened once step 2 is over: such a write can only come from a newer ring, or be
 *    a late hint), the tokens are closed and the new ring becomes the settled one, the base of the
 *    next plan. A failed run is retried (up to {@link RUN_ATTEMPTS} times, every
 *    {@link RETRY_DELAY_MS}; copies are idempotent under the same tokens) and then settled without
 *    pruning. A ring change during a run aborts it at the next page; the next run plans from the
 *    settled ring to the newest one, so nothing an aborted run skipped is lost.
 *
 * Membership events handled: a node that **joins** receives the ranges it now owns from their
 * previous owners; a node declared **dead** has its ranges re-replicated from the surviving
 * owners to the nodes replacing it; a node that **leaves** on purpose (SIGTERM: gossip shows it
 * `left`) is handled like a dead one: its ranges are re-replicated from the remaining owners
 * (the leaving node does not stream its own data, so with RF 1 its points are unavailable
 * until it returns).
 *
 * Limits and costs: every node of the new ring is read in full once per run (pages of up
 * to {@link PAGE_POINTS} points), although only about RF/N of the points move: the scan has
 * no ring filter. The prune lists, and the ids sent to each target, are kept in memory (prune
 * lists: at most {@link PRUNE_IDS_MAX} ids in all, beyond which pruning is skipped; the sets of
 * ids sent are as large as the moved share). The router that restarts
 * knows no settled ring: it takes its first ring as settled, so a change it did not witness is
 * not rebalanced. Several routers each rebalance (copies are idempotent; prunes could race
 * with a router whose view lags, so run one router per cluster, or accept that a point it
 * pruned by mistake is copied back by the next rebalance). Writes still in a TARGET's hint
 * queue from before the change are applied after its token, so they block the copy of their
 * ids: the target keeps the hinted value even if a newer one existed elsewhere.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { describeGrpcError, isServiceError } from "../api/client.ts";
import type { HashRing } from "../cluster/ring.ts";
import { RebalancePlan } from "../cluster/rebalance_plan.ts";
import type { TransferClient, TransferPoint } from "../server/transfer_service.ts";

/** Points per Scan page (and so per CopyBatch). */
export const PAGE_POINTS = 512;
/** Most transfers (one node × one collection) at once, by default. */
export const DEFAULT_TRANSFERS_MAX = 2;
/** Ring stability required before a run starts, by default. */
export const DEFAULT_DELAY_MS = 500;
/** How long a target may lack a collection (its creation queued) before the copy fails. */
export const COLLECTION_WAIT_MS = 30_000;
/** Node timeouts to wait for writes planned on older rings to finish. */
export const DRAIN_WAIT_TIMEOUTS = 5;
/** Attempts of a run before it settles anyway (without pruning). */
export const RUN_ATTEMPTS = 3;
/** Pause before a failed run is tried again. */
export const RETRY_DELAY_MS = 2000;
/** Most ids kept for pruning in one run. */
export const PRUNE_IDS_MAX = 16_000_000;

/** A ring as the rebalancer sees it. */
export interface RingRef {
  /** Storage node addresses, sorted. */
  nodes: string[];
  ring: HashRing;
}

/** What the rebalancer needs from the router. */
export interface RebalanceHost {
  log(message: string): void;
  /** A Transfer client of a node on the current ring, or null. */
  transfer(address: string): TransferClient | null;
  /** Names of the collections the given nodes report (union). */
  collections(nodes: readonly string[]): Promise<string[]>;
  /** Hints pending for a node (sources with pending hints are ranked last). */
  hintsPending(address: string): number;
  /** The ring in use now. */
  current(): RingRef;
  /** Resolves once no write planned on a ring other than `ring` is in flight, or after `ms`. */
  drainOlderWrites(ring: RingRef, ms: number): Promise<boolean>;
  node_timeout_ms: number;
}

/** Options of {@link Rebalancer}. */
export interface RebalancerOptions {
  replication_factor: number;
  transfers_max?: number;
  delay_ms?: number;
  page_points?: number;
}

/** Progress counters (cumulative since the router started, except the first three). */
export interface RebalanceStats {
  rebalancing: boolean;
  transfers_active: number;
  transfers_pending: number;
  transfers_done: number;
  transfers_failed: number;
  points_scanned: number;
  points_copied: number;
  points_pruned: number;
  /** Point copies skipped because no node was sure to hold the point's latest value. */
  points_unresolved: number;
  rebalances_done: number;
}

/** Points of one page for one target. */
interface CopyJob {
  target: string;
  replace: boolean;
  points: TransferPoint[];
}

class Aborted extends Error {
  override name = "Aborted";
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The router's rebalancing driver (see the module comment). */
export class Rebalancer {
  readonly replication_factor: number;
  readonly transfers_max: number;
  readonly delay_ms: number;
  readonly page_points: number;
  readonly stats: RebalanceStats = {
    rebalancing: false,
    transfers_active: 0,
    transfers_pending: 0,
    transfers_done: 0,
    transfers_failed: 0,
    points_scanned: 0,
    points_copied: 0,
    points_pruned: 0,
    points_unresolved: 0,
    rebalances_done: 0,
  };
  readonly #host: RebalanceHost;
  /** The last ring whose placement is complete; null before the first ring. */
  #settled: RingRef | null = null;
  /** Rings published since the settled one, oldest first (the last is the current one). */
  #chain: RingRef[] = [];
  /** Open copy tokens by node address (for the current unsettled period). */
  readonly #tokens = new Map<string, string>();
  /** Nodes whose BeginCopy failed in this period: they receive no copies. */
  readonly #untokened = new Set<string>();
  /** Bumped on every ring change; a run stops when it no longer matches. */
  #generation = 0;
  #running: Promise<void> | null = null;
  #wanted = false;
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(host: RebalanceHost, options: RebalancerOptions) {
    this.#host = host;
    this.replication_factor = options.replication_factor;
    this.transfers_max = options.transfers_max ?? DEFAULT_TRANSFERS_MAX;
    this.delay_ms = options.delay_ms ?? DEFAULT_DELAY_MS;
    this.page_points = options.page_points ?? PAGE_POINTS;
    for (
      const [n, v] of [["transfers_max", this.transfers_max], ["page_points", this.page_points]]
    ) {
      if (!Number.isInteger(v) || (v as number) < 1) {
        throw new RangeError(`Rebalance option ${n} ${v} must be a positive integer`);
      }
    }
  }

  /** The settled ring (null before the first one). */
  get settled(): RingRef | null {
    return this.#settled;
  }

  /**
   * Whether `owner` may still be receiving point `id` (a move is unsettled and it did not own
   * the point under the settled ring): its "not found" is then not authoritative.
   */
  receiving(owner: string, id: number): boolean {
    const s = this.#settled;
    if (s === null || !this.stats.rebalancing) return false;
    return !s.ring.owners(id, this.replication_factor).includes(owner);
  }

  /**
   * Called before a ring with `nodes` is published: opens a copy token on each node that has
   * none. The very first ring needs none (nothing to move).
   */
  async prepare(nodes: readonly string[]): Promise<void> {
    if (this.#settled === null || this.#stopped) return;
    const missing = nodes.filter((n) => !this.#tokens.has(n) && !this.#untokened.has(n));
    await Promise.all(missing.map(async (n) => {
      const client = this.#host.transfer(n);
      try {
        if (client === null) throw new Error("no channel to the node");
        const { token } = await client.call("BeginCopy", {});
        this.#tokens.set(n, token);
      } catch (e) {
        this.#untokened.add(n);
        this.#host.log(
          `WARNING rebalance: no copy token from ${n} (${describeGrpcError(e)}); it will ` +
            `receive no copies until the next ring change settles`,
        );
      }
    }));
  }

  /** Called after a ring was published. */
  changed(ring: RingRef): void {
    if (this.#stopped) return;
    if (this.#settled === null) {
      if (ring.nodes.length > 0) this.#settled = ring;
      return;
    }
    this.#generation++;
    this.#chain.push(ring);
    this.stats.rebalancing = true;
    this.#schedule(this.delay_ms);
  }

  /** Stops: the running transfer ends at its next page; tokens expire on the nodes. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#generation++;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#running;
  }

  /** Whether a move is unsettled (the router then defers nodes joining the ring). */
  get busy(): boolean {
    return this.stats.rebalancing;
  }

  /** Resolves when the placement is settled (for tests), or rejects after `timeout_ms`. */
  async idle(timeout_ms: number): Promise<void> {
    const deadline = Date.now() + timeout_ms;
    while (this.stats.rebalancing) {
      if (Date.now() > deadline) throw new Error(`Rebalance still running after ${timeout_ms} ms`);
      await sleep(50);
    }
  }

  #schedule(ms: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#kick();
    }, ms);
  }

  #kick(): void {
    this.#wanted = true;
    if (this.#running !== null) return;
    this.#running = (async () => {
      let attempt = 0;
      let last_generation = -1;
      while (this.#wanted && !this.#stopped) {
        this.#wanted = false;
        const generation = this.#generation;
        if (generation !== last_generation) attempt = 0;
        last_generation = generation;
        attempt++;
        let outcome: "done" | "failed" | "aborted";
        try {
          outcome = await this.#run(generation, attempt >= RUN_ATTEMPTS);
        } catch (e) {
          this.#host.log(`ERROR rebalance: ${(e as Error)?.stack ?? e}`);
          outcome = "failed";
        }
        if (outcome === "failed" && attempt < RUN_ATTEMPTS && !this.#stopped) {
          this.#host.log(`rebalance: attempt ${attempt} failed; retrying in ${RETRY_DELAY_MS} ms`);
          await sleep(RETRY_DELAY_MS);
          this.#wanted = true;
        }
      }
    })().finally(() => {
      this.#running = null;
      if (this.#wanted && !this.#stopped) this.#kick();
    });
  }

  /** One run from the settled ring to the current one. */
  async #run(generation: number, last_attempt: boolean): Promise<"done" | "failed" | "aborted"> {
    const host = this.#host;
    const from = this.#settled!;
    const to = host.current();
    const t0 = Date.now();
    const drained = await host.drainOlderWrites(to, DRAIN_WAIT_TIMEOUTS * host.node_timeout_ms);
    if (!drained) host.log("WARNING rebalance: writes planned on an older ring still in flight");
    if (this.#stopped || generation !== this.#generation) return "aborted";
    // Prune tokens, opened once older writes drained: a write to a node for a point it no
    // longer owns can then only come from a newer ring (or a late hint), and prune skips it.
    const pruneTokens = new Map<string, string>();
    if (drained) {
      await Promise.all(to.nodes.map(async (n) => {
        try {
          const client = host.transfer(n);
          if (client !== null) pruneTokens.set(n, (await client.call("BeginCopy", {})).token);
        } catch {
          // No pruning on that node this time.
        }
      }));
    }
    try {
      return await this.#transfers(generation, last_attempt, from, to, pruneTokens, t0);
    } finally {
      for (const [n, token] of pruneTokens) {
        host.transfer(n)?.call("EndCopy", { token }).catch(() => {});
      }
    }
  }

  async #transfers(
    generation: number,
    last_attempt: boolean,
    from: RingRef,
    to: RingRef,
    pruneTokens: Map<string, string>,
    t0: number,
  ): Promise<"done" | "failed" | "aborted"> {
    const host = this.#host;
    const check = () => {
      if (this.#stopped || generation !== this.#generation) throw new Aborted("ring changed");
    };
    // Old owners: owners under the settled ring and every ring published since, before `to`.
    const chain = this.#chain.slice(0, this.#chain.lastIndexOf(to));
    const plan = new RebalancePlan({
      from: [from.ring, ...chain.map((r) => r.ring)],
      to: to.ring,
      replication_factor: this.replication_factor,
      source_rank: (n) => (host.hintsPending(n) > 0 ? 1 : 0),
    });
    const collections = await host.collections(to.nodes);
    const units: { node: string; collection: string }[] = [];
    for (const node of plan.sources()) {
      for (const collection of collections) units.push({ node, collection });
    }
    host.log(
      `rebalance: ring [${from.nodes.join(", ")}] -> [${to.nodes.join(", ")}]; ` +
        `${units.length} transfers (${plan.sources().length} nodes x ${collections.length} ` +
        `collections), at most ${this.transfers_max} at once`,
    );
    const prune = new Map<string, Map<string, number[]>>();
    let pruneIds = 0;
    let pruneOverflow = false;
    let failed = 0;
    let copied = 0;
    let unresolved = 0;
    /** Ids each target (`node\ncollection`) was sent by a designated source. */
    const sent = new Map<string, Set<number>>();
    /** Ids a node holds and gained without being their source (`node\ncollection`). */
    const suspect = new Map<string, number[]>();
    this.stats.transfers_pending = units.length;
    const transfer = async (u: { node: string; collection: string }) => {
      const client = host.transfer(u.node);
      if (client === null) throw new Error(`no channel to ${u.node}`);
      let after = 0;
      let first = true;
      const keep: number[] = [];
      const suspects: number[] = [];
      for (;;) {
        check();
        const page = await client.call("Scan", {
          collection: u.collection,
          after_id: after,
          from_start: first,
          limit: this.page_points,
        }).catch((e) => {
          // A node without the collection holds none of its points.
          if (isServiceError(e) && e.code === grpc.status.NOT_FOUND) return null;
          throw e;
        });
        if (page === null) return;
        first = false;
        this.stats.points_scanned += page.points.length;
        // One batch per target and replace flag.
        const per = new Map<string, CopyJob>();
        for (const p of page.points) {
          if (plan.source(p.id) === null) {
            // No node that owned it under every ring since the settled one survives: the
            // holders may disagree, and a copy could resurrect a delete or keep a stale value.
            // Leave it where it is (no copy, no prune) and report it.
            if (plan.gained(p.id).length > 0) unresolved++;
            continue;
          }
          const r = plan.route(p.id, u.node);
          if (r.targets.length === 0 && plan.source(p.id) !== u.node) {
            // The holder gained the point but is not its source: its value may be one the
            // sources no longer have (deleted while it was away). Checked after the scans.
            if (plan.gained(p.id).includes(u.node)) suspects.push(p.id);
          }
          for (const t of r.targets) {
            if (!this.#tokens.has(t)) continue;
            const key2 = `${t}\n${u.collection}`;
            let set = sent.get(key2);
            if (set === undefined) sent.set(key2, set = new Set());
            set.add(p.id);
            const key = `${r.replace ? "r" : "a"}${t}`;
            let job = per.get(key);
            if (job === undefined) {
              per.set(key, job = { target: t, replace: r.replace, points: [] });
            }
            job.points.push(p);
          }
          if (r.prune) keep.push(p.id);
        }
        await Promise.all([...per.values()].map(async (b) => {
          const n = await this.#copy(b.target, u.collection, b.points, b.replace, check);
          this.stats.points_copied += n;
          copied += n;
        }));
        if (page.done) break;
        after = page.next_after_id;
      }
      if (suspects.length > 0) suspect.set(`${u.node}\n${u.collection}`, suspects);
      if (keep.length > 0) {
        if (pruneIds + keep.length > PRUNE_IDS_MAX) pruneOverflow = true;
        else {
          pruneIds += keep.length;
          let m = prune.get(u.node);
          if (m === undefined) prune.set(u.node, m = new Map());
          m.set(u.collection, keep);
        }
      }
    };
    // A pool of `transfers_max` workers over the units.
    let next = 0;
    let aborted = false;
    const worker = async () => {
      while (next < units.length && !aborted) {
        const u = units[next++];
        this.stats.transfers_pending--;
        this.stats.transfers_active++;
        try {
          await transfer(u);
          this.stats.transfers_done++;
        } catch (e) {
          if (e instanceof Aborted) {
            aborted = true;
          } else {
            failed++;
            this.stats.transfers_failed++;
            host.log(
              `ERROR rebalance: transfer of "${u.collection}" from ${u.node} failed: ` +
                describeGrpcError(e),
            );
          }
        } finally {
          this.stats.transfers_active--;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.transfers_max, units.length) }, worker));
    this.stats.transfers_pending = 0;
    if (aborted || this.#stopped || generation !== this.#generation) {
      host.log(`rebalance: run aborted by a ring change after ${Date.now() - t0} ms`);
      return "aborted";
    }
    if (failed > 0 && !last_attempt) return "failed";
    let pruned = 0;
    // A node that gained a point the sources no longer hold (deleted while it was away, or
    // never copied) keeps a value nobody else has: remove it, unless written since its token.
    let retracted = 0;
    if (failed === 0) {
      for (const [key, ids] of suspect) {
        const [node, collection] = key.split("\n");
        const token = this.#tokens.get(node);
        const client = host.transfer(node);
        if (token === undefined || client === null) continue;
        const have = sent.get(key) ?? new Set<number>();
        const stale = ids.filter((id) => !have.has(id));
        for (let i = 0; i < stale.length; i += this.page_points) {
          if (this.#stopped || generation !== this.#generation) return "aborted";
          const r = await client.call("Prune", {
            token,
            collection,
            ids: stale.slice(i, i + this.page_points),
          });
          retracted += r.deleted;
          this.stats.points_pruned += r.deleted;
        }
      }
    }
    if (unresolved > 0) {
      this.stats.points_unresolved += unresolved;
      host.log(
        `WARNING rebalance: ${unresolved} point copies have no source that owned them under ` +
          `every ring since the last settled one; they stay where they are, possibly with ` +
          `fewer than RF replicas`,
      );
    }
    if (failed === 0 && this.#untokened.size === 0 && !pruneOverflow && unresolved === 0) {
      for (const [node, byCollection] of prune) {
        const client = host.transfer(node);
        const token = pruneTokens.get(node);
        if (client === null || token === undefined) continue;
        for (const [collection, ids] of byCollection) {
          for (let i = 0; i < ids.length; i += this.page_points) {
            if (this.#stopped || generation !== this.#generation) return "aborted";
            try {
              const r = await client.call("Prune", {
                token,
                collection,
                ids: ids.slice(i, i + this.page_points),
              });
              pruned += r.deleted;
              this.stats.points_pruned += r.deleted;
            } catch (e) {
              host.log(`WARNING rebalance: prune on ${node} failed: ${describeGrpcError(e)}`);
              break;
            }
          }
        }
      }
    } else {
      host.log(
        `WARNING rebalance: not pruning (${failed} failed transfers, ` +
          `${this.#untokened.size} nodes without a token${pruneOverflow ? ", too many ids" : ""}` +
          `${unresolved > 0 ? `, ${unresolved} unresolved copies` : ""})`,
      );
    }
    if (this.#stopped || generation !== this.#generation) return "aborted";
    // Settled: close the tokens.
    for (const [node, token] of this.#tokens) {
      host.transfer(node)?.call("EndCopy", { token }).catch(() => {});
    }
    this.#tokens.clear();
    this.#untokened.clear();
    this.#settled = to;
    this.#chain = [];
    this.stats.rebalancing = false;
    this.stats.rebalances_done++;
    host.log(
      `rebalance: settled on [${to.nodes.join(", ")}] in ${Date.now() - t0} ms: ` +
        `${copied} points copied, ${pruned} pruned, ${retracted} stale removed` +
        (failed > 0 ? `; ${failed} transfers FAILED (their points may lack replicas)` : ""),
    );
    return failed > 0 ? "failed" : "done";
  }

  /** Copies points to `target`, waiting for a collection still being created there. */
  async #copy(
    target: string,
    collection: string,
    points: TransferPoint[],
    replace: boolean,
    check: () => void,
  ): Promise<number> {
    const token = this.#tokens.get(target)!;
    const deadline = Date.now() + COLLECTION_WAIT_MS;
    for (;;) {
      check();
      const client = this.#host.transfer(target);
      if (client === null) throw new Error(`target ${target} is no longer on the ring`);
      try {
        const r = await client.call("CopyBatch", { token, collection, points, replace });
        return r.applied;
      } catch (e) {
        if (
          isServiceError(e) && e.code === grpc.status.NOT_FOUND && Date.now() < deadline
        ) {
          await sleep(200);
          continue;
        }
        throw new Error(`CopyBatch to ${target}: ${describeGrpcError(e)}`);
      }
    }
  }
}
