/**
 * The storage node's side of rebalancing: the `vectordb.internal.Transfer` service
 * (proto/internal.proto) and the copy tokens that make copying safe under concurrent writes.
 * The router drives it (src/router/rebalance.ts, which explains the whole protocol).
 *
 * **Copy tokens** ({@link CopyTokens}). A copy carries a value read from another node some time
 * ago; a client write routed here since then is newer and must win. So before the router routes any
 * write to this node under a new ring it opens a token (`BeginCopy`); from then on every write this
 * node accepts (Put, PutBatch, Delete, hinted or direct: the service reports them through
 * {@link CopyTokens.touch} BEFORE they reach the WAL) records its ids in every open token, and a
 * DropCollection records the collection. `CopyBatch` then writes a point only when its id is
 * untouched since the token (and its collection was not dropped since) and absent, or present too
 * with `replace` (the sender is sure to be at least as recent as anything written here before the
 * token); the check and the WAL append happen in one turn of the event loop, and the WAL applies in
 * order, so a client write either was recorded before the check (the copy is skipped) or is
 * appended after the copy (and overwrites it). A delete of an absent id is recorded too, which is
 * what keeps a copy from resurrecting a point deleted meanwhile. `Prune` (removing points the node
 * no longer owns) skips touched ids the same way.
 *
 * Limits: at most {@link TOKENS_MAX} open tokens (BeginCopy beyond: RESOURCE_EXHAUSTED); a
 * token records at most {@link TOKEN_IDS_MAX} ids, after which it is "overflowed" and refuses
 * every copy (FAILED_PRECONDITION: it can no longer tell which ids are safe); a token unused for
 * {@link TOKEN_IDLE_MS} expires. Tokens are in memory only: after a restart every CopyBatch
 * with an old token fails with FAILED_PRECONDITION, and the router must start over.
 *
 * **Scan** lists a collection's points in ascending id order. The index has no ordered id
 * list, so the first page (`from_start`) takes a snapshot of the live ids (one pass over the
 * index, then a sort: O(n log n), 4 bytes per id) that later pages walk with a binary search;
 * one snapshot per collection is cached ({@link SCAN_SNAPSHOT_TTL_MS}), and dropped when a scan
 * reaches its end. Pages hold at most {@link SCAN_LIMIT_MAX} points and about
 * {@link SCAN_PAGE_BYTES_MAX} of vector data.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { CHANNEL_OPTIONS } from "../api/proto.ts";
import { resolveCollection } from "../api/validate.ts";
import { validateId, validateVector } from "../index/hnsw.ts";
import type { Collection } from "../storage/collection.ts";
import type { NodeStore } from "../storage/node_store.ts";
import { toStatus } from "./service.ts";

/** Most copy tokens open at once on one node. */
export const TOKENS_MAX = 64;
/** Most ids one token records before it overflows. */
export const TOKEN_IDS_MAX = 4_000_000;
/** A token unused this long expires. */
export const TOKEN_IDLE_MS = 30 * 60_000;
/** Most points in one Scan page, CopyBatch or Prune. */
export const SCAN_LIMIT_MAX = 4096;
/** A Scan page stops once its vectors hold this many bytes. */
export const SCAN_PAGE_BYTES_MAX = 4 * 2 ** 20;
/** A cached id snapshot older than this is rebuilt even mid-scan. */
export const SCAN_SNAPSHOT_TTL_MS = 10 * 60_000;

/** A token that cannot be used (unknown, expired or overflowed). */
export class CopyTokenError extends Error {
  override name = "CopyTokenError";
}

/** Too many open tokens. */
export class TooManyTokensError extends Error {
  override name = "TooManyTokensError";
}

interface TokenState {
  /** Ids written since the token was issued, per collection. */
  touched: Map<string, Set<number>>;
  /** Collections dropped since the token was issued. */
  dropped: Set<string>;
  ids: number;
  overflowed: boolean;
  last_used_ms: number;
}

/** Open copy tokens and the ids written since each was issued (see the module comment). */
export class CopyTokens {
  readonly #tokens = new Map<string, TokenState>();
  readonly #ids_max: number;
  readonly #idle_ms: number;
  readonly #tokens_max: number;
  readonly #newToken: () => string;

  constructor(
    options: {
      ids_max?: number;
      idle_ms?: number;
      tokens_max?: number;
      new_token?: () => string;
    } = {},
  ) {
    this.#ids_max = options.ids_max ?? TOKEN_IDS_MAX;
    this.#idle_ms = options.idle_ms ?? TOKEN_IDLE_MS;
    this.#tokens_max = options.tokens_max ?? TOKENS_MAX;
    this.#newToken = options.new_token ?? (() => randomBytes(12).toString("hex"));
  }

  /** Open tokens. */
  get size(): number {
    return this.#tokens.size;
  }

  /** Opens a token; TooManyTokensError when {@link TOKENS_MAX} are open. */
  begin(now_ms: number): string {
    this.expire(now_ms);
    if (this.#tokens.size >= this.#tokens_max) {
      throw new TooManyTokensError(
        `The node already has ${this.#tokens.size} copy tokens open, its limit`,
      );
    }
    const token = this.#newToken();
    this.#tokens.set(token, {
      touched: new Map(),
      dropped: new Set(),
      ids: 0,
      overflowed: false,
      last_used_ms: now_ms,
    });
    return token;
  }

  /** Closes a token; false when it was not open. */
  end(token: string): boolean {
    return this.#tokens.delete(token);
  }

  /** Forgets tokens unused for the idle time. */
  expire(now_ms: number): void {
    for (const [t, s] of this.#tokens) {
      if (now_ms - s.last_used_ms >= this.#idle_ms) this.#tokens.delete(t);
    }
  }

  /** Records writes of `ids` in `collection` in every open token. */
  touch(collection: string, ids: ArrayLike<number>): void {
    for (const s of this.#tokens.values()) {
      if (s.overflowed) continue;
      let set = s.touched.get(collection);
      if (set === undefined) {
        set = new Set();
        s.touched.set(collection, set);
      }
      for (let i = 0; i < ids.length; i++) {
        if (set.has(ids[i])) continue;
        set.add(ids[i]);
        if (++s.ids > this.#ids_max) {
          // Too many to remember: the token can no longer protect anything.
          s.overflowed = true;
          s.touched.clear();
          break;
        }
      }
    }
  }

  /** Records a dropped collection in every open token. */
  dropped(collection: string): void {
    for (const s of this.#tokens.values()) s.dropped.add(collection);
  }

  /**
   * A checker of "untouched since the token" for one collection; CopyTokenError when the
   * token is unknown or overflowed. Marks the token used.
   */
  untouched(token: string, collection: string, now_ms: number): (id: number) => boolean {
    this.expire(now_ms);
    const s = this.#tokens.get(token);
    if (s === undefined) {
      throw new CopyTokenError(
        `Copy token "${token.slice(0, 64)}" is unknown (expired, or the node restarted)`,
      );
    }
    if (s.overflowed) {
      throw new CopyTokenError(
        `Copy token "${token.slice(0, 64)}" overflowed: over ${this.#ids_max} ids were ` +
          `written since it was issued`,
      );
    }
    s.last_used_ms = now_ms;
    if (s.dropped.has(collection)) return () => false;
    const set = s.touched.get(collection);
    return set === undefined ? () => true : (id) => !set.has(id);
  }
}

// ------------------------------------------------------------------------------ protocol

/** One point of a transfer. */
export interface TransferPoint {
  id: number;
  vector: number[];
}

export interface ScanRequest {
  collection: string;
  after_id: number;
  from_start: boolean;
  limit: number;
}
export interface ScanResponse {
  points: TransferPoint[];
  next_after_id: number;
  done: boolean;
  dimension: number;
}
export interface CopyBatchRequest {
  token: string;
  collection: string;
  points: TransferPoint[];
  /** Apply present ids too (still never touched ones). */
  replace?: boolean;
}
export interface CopyBatchResponse {
  applied: number;
  skipped: number;
}
export interface PruneRequest {
  token: string;
  collection: string;
  ids: number[];
}
export interface PruneResponse {
  deleted: number;
  skipped: number;
}

/** The RPCs of `vectordb.internal.Transfer` with their request and response types. */
export interface TransferMethods {
  BeginCopy: { request: Record<string, never>; response: { token: string } };
  EndCopy: { request: { token: string }; response: { ended: boolean } };
  Scan: { request: ScanRequest; response: ScanResponse };
  CopyBatch: { request: CopyBatchRequest; response: CopyBatchResponse };
  Prune: { request: PruneRequest; response: PruneResponse };
}

const packageDefinition = protoLoader.loadSync(
  fileURLToPath(new URL("../../proto/internal.proto", import.meta.url)),
  { keepCase: true, longs: String, enums: String, defaults: true, arrays: true },
);

type Callback = (error: grpc.ServiceError | null, response?: unknown) => void;

/** A grpc-js client of `vectordb.internal.Transfer`. */
export type TransferGrpcClient =
  & grpc.Client
  & {
    [K in keyof TransferMethods]: (
      request: TransferMethods[K]["request"],
      options: Partial<grpc.CallOptions>,
      callback: Callback,
    ) => grpc.ClientUnaryCall;
  };

interface TransferClientConstructor {
  new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: Partial<grpc.ClientOptions>,
  ): TransferGrpcClient;
  service: grpc.ServiceDefinition;
}

const TransferGrpc = (grpc.loadPackageDefinition(packageDefinition) as unknown as {
  vectordb: { internal: { Transfer: TransferClientConstructor } };
}).vectordb.internal.Transfer;

/** The service definition of `vectordb.internal.Transfer`. */
export const transferService: grpc.ServiceDefinition = TransferGrpc.service;

/** A promise-based client of one node's Transfer service. */
export class TransferClient {
  readonly address: string;
  readonly timeout_ms: number;
  readonly raw: TransferGrpcClient;

  constructor(address: string, timeout_ms: number, options: Partial<grpc.ClientOptions> = {}) {
    this.address = address;
    this.timeout_ms = timeout_ms;
    this.raw = new TransferGrpc(address, grpc.credentials.createInsecure(), {
      ...CHANNEL_OPTIONS,
      ...options,
    });
  }

  call<K extends keyof TransferMethods>(
    method: K,
    request: TransferMethods[K]["request"],
    timeout_ms: number = this.timeout_ms,
  ): Promise<TransferMethods[K]["response"]> {
    const fn = this.raw[method] as TransferGrpcClient[K];
    return new Promise((resolve, reject) => {
      fn.call(
        this.raw,
        request as never,
        { deadline: Date.now() + timeout_ms },
        (error: grpc.ServiceError | null, response?: unknown) => {
          if (error) reject(error);
          else resolve(response as TransferMethods[K]["response"]);
        },
      );
    });
  }

  close(): void {
    this.raw.close();
  }
}

// -------------------------------------------------------------------------------- server

function limitOf(n: unknown, field: string): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > SCAN_LIMIT_MAX) {
    throw new RangeError(`${field} ${n} must be between 1 and ${SCAN_LIMIT_MAX}`);
  }
  return n;
}

function tokenOf(t: unknown): string {
  if (typeof t !== "string" || t.length === 0 || t.length > 64) {
    throw new RangeError(`Copy token "${String(t).slice(0, 64)}" must be 1 to 64 characters`);
  }
  return t;
}

/** Live ids of a collection, ascending (one pass over the index; see the module comment). */
export function sortedIds(c: Collection): Uint32Array {
  const out: number[] = [];
  if (c.index.count > 0) {
    // The index has no id iterator: a brute-force search whose filter rejects everything
    // visits every live point once. Scan tests check that no point is missed.
    const probe = new Array<number>(c.index.dim).fill(1);
    c.index.exactSearch(probe, 1, {
      filter: (id) => {
        out.push(id);
        return false;
      },
    });
  }
  return Uint32Array.from(out).sort();
}

/** First index in sorted `ids` whose value is greater than `after`. */
function upperBound(ids: Uint32Array, after: number): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid] <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Options of {@link transferHandlers}. */
export interface TransferServiceOptions {
  logger?: (message: string) => void;
  clock?: () => number;
}

/** The Transfer handlers over `store`; `state.closing` makes calls fail with UNAVAILABLE. */
export function transferHandlers(
  store: NodeStore,
  tokens: CopyTokens,
  state: { closing: boolean },
  options: TransferServiceOptions = {},
): grpc.UntypedServiceImplementation {
  const log = options.logger ?? ((m: string) => console.error(m));
  const now = options.clock ?? (() => Date.now());
  const snapshots = new Map<string, { ids: Uint32Array; built_ms: number; c: Collection }>();

  function unary<Req, Res>(
    name: string,
    fn: (req: Req) => Promise<Res> | Res,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      if (state.closing) {
        callback({ code: grpc.status.UNAVAILABLE, details: "The node is shutting down" });
        return;
      }
      let result: Promise<Res>;
      try {
        result = Promise.resolve(fn(call.request));
      } catch (e) {
        result = Promise.reject(e);
      }
      result.then((res) => callback(null, res), (e) => {
        let s = toStatus(e);
        if (e instanceof CopyTokenError) {
          s = { code: grpc.status.FAILED_PRECONDITION, details: e.message };
        } else if (e instanceof TooManyTokensError) {
          s = { code: grpc.status.RESOURCE_EXHAUSTED, details: e.message };
        }
        if (s.code === grpc.status.INTERNAL) log(`${name} failed: ${(e as Error)?.stack ?? e}`);
        callback({ code: s.code, details: s.details });
      });
    };
  }

  return {
    BeginCopy: unary("BeginCopy", () => ({ token: tokens.begin(now()) })),
    EndCopy: unary<{ token: string }, { ended: boolean }>(
      "EndCopy",
      (req) => ({ ended: tokens.end(tokenOf(req.token)) }),
    ),
    Scan: unary<ScanRequest, ScanResponse>("Scan", (req) => {
      const name = resolveCollection(req.collection);
      const limit = limitOf(req.limit, "limit");
      const c = store.get(name);
      let snap = snapshots.get(name);
      if (
        req.from_start || snap === undefined || snap.c !== c ||
        now() - snap.built_ms > SCAN_SNAPSHOT_TTL_MS
      ) {
        snap = { ids: sortedIds(c), built_ms: now(), c };
        snapshots.set(name, snap);
      }
      const after = req.from_start ? -1 : req.after_id;
      const points: TransferPoint[] = [];
      let bytes = 0;
      let i = upperBound(snap.ids, after);
      let last = after < 0 ? 0 : after;
      for (; i < snap.ids.length && points.length < limit && bytes < SCAN_PAGE_BYTES_MAX; i++) {
        const id = snap.ids[i];
        last = id;
        const v = c.get(id);
        if (v === null) continue;
        points.push({ id, vector: Array.from(v) });
        bytes += v.byteLength;
      }
      const done = i >= snap.ids.length;
      if (done) snapshots.delete(name);
      return { points, next_after_id: last, done, dimension: c.config.dimension };
    }),
    CopyBatch: unary<CopyBatchRequest, CopyBatchResponse>("CopyBatch", async (req) => {
      const token = tokenOf(req.token);
      const name = resolveCollection(req.collection);
      const points = req.points ?? [];
      limitOf(points.length, "points count");
      const c = store.get(name);
      points.forEach((p, i) => {
        validateId(p.id);
        validateVector(p.vector, c.config.dimension, `points[${i}].vector`);
      });
      // Check and append in one turn of the event loop (see the module comment).
      const ok = tokens.untouched(token, name, now());
      const replace = req.replace === true;
      const fresh = points.filter((p) => ok(p.id) && (replace || c.get(p.id) === null));
      if (fresh.length > 0) await c.putBatch(fresh);
      return { applied: fresh.length, skipped: points.length - fresh.length };
    }),
    Prune: unary<PruneRequest, PruneResponse>("Prune", async (req) => {
      const token = tokenOf(req.token);
      const name = resolveCollection(req.collection);
      const ids = req.ids ?? [];
      limitOf(ids.length, "ids count");
      for (const id of ids) validateId(id);
      const c = store.get(name);
      const ok = tokens.untouched(token, name, now());
      const gone = ids.filter((id) => ok(id) && c.get(id) !== null);
      let deleted = 0;
      // Deletes are logged one by one; they share group commits.
      const results = await Promise.all(gone.map((id) => c.delete(id)));
      for (const r of results) if (r.deleted) deleted++;
      return { deleted, skipped: ids.length - deleted };
    }),
  };
}

/** Adds `vectordb.internal.Transfer` to `server`. */
export function addTransferService(
  server: grpc.Server,
  store: NodeStore,
  tokens: CopyTokens,
  state: { closing: boolean },
  options: TransferServiceOptions = {},
): void {
  server.addService(transferService, transferHandlers(store, tokens, state, options));
}
