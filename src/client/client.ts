/**
 * {@link VectorDbClient}: the typed client library over {@link ApiClient}, with retries
 * (retry.ts), per-call deadlines, an API key and TLS. The public entry point is mod.ts.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { type ApiCallOptions, ApiClient, type RequestOf, type ResponseOf } from "../api/client.ts";
import { apiKeyInterceptor, checkApiKey } from "../api/auth.ts";
import type {
  BackupInfo,
  CollectionInfo,
  CreateCollectionRequest,
  CreateCollectionResponse,
  CreateFieldIndexResponse,
  DeleteBackupResponse,
  DeleteBatchResponse,
  DeleteByFilterResponse,
  DeleteResponse,
  DrainResponse,
  DropCollectionResponse,
  DropFieldIndexResponse,
  GetResponse,
  MembersResponse,
  MethodName,
  Point,
  PointRecord,
  PutBatchResponse,
  PutResponse,
  RestoreResponse,
  ScrollPoint,
  ScrollResponse,
  SearchResponse,
  SearchResult,
  StatsResponse,
  Uint64,
  WireId,
} from "../api/proto.ts";
import { packVector } from "../api/proto.ts";
import { canonicalId, idFromWire, idsToWire, type PointId } from "../common/point_id.ts";
import { type ClientSecurity, clientSecurity } from "../api/security.ts";
import { BATCH_POINTS_MAX, type Consistency, PUT_BATCH_BYTES_MAX } from "../common/limits.ts";
import { utf8Length } from "../common/utf8.ts";
import {
  DEFAULT_RETRY,
  REAL_CLOCK,
  type RetryClock,
  type RetryEvent,
  type RetryPolicy,
  retryPolicy,
  withRetry,
} from "./retry.ts";

/** Default address: a router on loopback. */
export const DEFAULT_ADDRESS = "127.0.0.1:50050";
/** Default deadline of each attempt. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Default `k` of {@link VectorDbClient.search}. */
export const DEFAULT_SEARCH_K = 10;

/** What the client sends calls through: {@link ApiClient} or a test double. */
export interface Transport {
  call<K extends MethodName>(
    method: K,
    request: RequestOf<K>,
    options?: ApiCallOptions,
  ): Promise<ResponseOf<K>>;
  close(): void;
}

/** Options of {@link VectorDbClient}. */
export interface VectorDbClientOptions {
  /** `host:port` of a router (or a storage node); default {@link DEFAULT_ADDRESS}. */
  address?: string;
  /** Sent as `authorization: Bearer KEY` on every call. */
  apiKey?: string;
  /** Call over TLS trusting this CA: a PEM file's path, or the PEM bytes. */
  tlsCa?: string | Uint8Array;
  /** Call over TLS trusting the system's CAs (when no `tlsCa` is given). */
  tls?: boolean;
  /** Deadline of each attempt in milliseconds; default {@link DEFAULT_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** Retry policy (completed from {@link DEFAULT_RETRY}); `false`: one attempt, no retries. */
  retry?: Partial<RetryPolicy> | false;
  /** Called before each retry's wait (logging, metrics). */
  onRetry?: (event: RetryEvent) => void;
  /** Extra grpc-js client/channel options. */
  grpcOptions?: Partial<grpc.ClientOptions>;
  /** How values are named in error messages, e.g. `{ tlsCa: "--tls-ca" }` (the CLI's flags). */
  sources?: { apiKey?: string; tlsCa?: string };
  /**
   * Send vectors packed (`vector_bytes`: little-endian float32, decoded by servers without
   * per-value work; default true), or as `repeated float vector` (false: for servers older than
   * `vector_bytes`, which would see an empty vector).
   */
  packedVectors?: boolean;
  /** Tests: the transport to use instead of a gRPC channel (security options are ignored). */
  transport?: Transport;
  /** Tests: time, waits and randomness of the retries. */
  clock?: RetryClock;
}

/** Options of one call. */
export interface CallOptions {
  /** Deadline of each attempt of this call; default the client's `timeoutMs`. */
  timeoutMs?: number;
  /** This call's retry policy (completed from the client's), or `false` for one attempt. */
  retry?: Partial<RetryPolicy> | false;
  /** Extra request metadata. */
  metadata?: grpc.Metadata;
}

/** Options of writes. */
export interface WriteOptions extends CallOptions {
  /** `one`, `quorum` or `all` (router); default the router's `--consistency`. */
  consistency?: Consistency;
  /** The write's version (1 .. 2^53 - 1); default: the router stamps one. */
  version?: Uint64;
}

/**
 * A point's payload: a JSON object (see "Payloads" in proto/vector_db.proto for its limits).
 * The client sends it as JSON text; answers carry the text (`JSON.parse` it, or use
 * {@link parsePayload} of this module).
 */
export type Payload = Record<string, unknown>;

/**
 * A payload filter: an object in the form of "Filters and payload indexes" in
 * proto/vector_db.proto (`{ must, should, must_not }` of conditions such as
 * `{ key: "tenant", match: { value: "acme" } }` or `{ key: "year", range: { gte: 2020 } }`),
 * or its JSON text. The server checks it; a malformed one is INVALID_ARGUMENT naming the JSON
 * path of the bad part (e.g. `filter.must[0].range.gt`).
 */
export type FilterInput = Record<string, unknown> | string;

/** The JSON text of a filter for the wire ("" for none); a non-object is a TypeError. */
export function filterWire(filter: unknown, what = "filter"): string {
  if (filter === undefined || filter === null) return "";
  if (typeof filter === "string") return filter;
  if (typeof filter !== "object" || Array.isArray(filter)) {
    throw new TypeError(
      `${what} must be a filter object or its JSON text, got ${
        String(JSON.stringify(filter)).slice(0, 100)
      }`,
    );
  }
  return JSON.stringify(filter);
}

/** The index types of {@link VectorDbClient.createFieldIndex}. */
export type FieldIndexType = "keyword" | "integer" | "float" | "bool";

/** Options of {@link VectorDbClient.getBatch}. */
export interface GetBatchOptions extends CallOptions {
  /** Return the stored vectors of the points found. */
  withVector?: boolean;
  /** Return the payloads of the points found (`payload`, JSON text; see {@link parsePayload}). */
  withPayload?: boolean;
}

/** Options of {@link VectorDbClient.put}. */
export interface PutOptions extends WriteOptions {
  /** The point's payload; absent or null: none (a put replaces a payload the point had). */
  payload?: Payload | null;
}

/** Options of {@link VectorDbClient.upsert}. */
export interface UpsertOptions extends WriteOptions {
  /** Most points per PutBatch, 1 .. BATCH_POINTS_MAX (default); batches are also kept under
   * the 64 MiB request limit. */
  batchSize?: number;
}

/** Options of {@link VectorDbClient.search}. */
export interface SearchOptions extends CallOptions {
  /** Neighbours to return, 1 .. 10,000; default {@link DEFAULT_SEARCH_K}. */
  k?: number;
  /** Search breadth, 0 (server default) or 1 .. 10,000. */
  ef?: number;
  /** Results carry their payloads (`results[i].payload`, JSON text). */
  withPayload?: boolean;
  /** Results carry their stored vectors (`results[i].vector`). */
  withVector?: boolean;
  /** Only points matching this filter are candidates (see {@link FilterInput}). */
  filter?: FilterInput;
}

/** One search of {@link VectorDbClient.searchBatch}. */
export interface BatchSearch {
  /** The query; a typed array is fine. */
  vector: ArrayLike<number>;
  /** Neighbours to return, 1 .. 10,000; default {@link DEFAULT_SEARCH_K}. */
  k?: number;
  /** Search breadth, 0 (server default) or 1 .. 10,000. */
  ef?: number;
  /** The collection of this search; default the batch's. */
  collection?: string;
  /** Only points matching this filter are candidates (see {@link FilterInput}). */
  filter?: FilterInput;
  /** Results carry their payloads (JSON text). */
  withPayload?: boolean;
  /** Results carry their stored vectors. */
  withVector?: boolean;
}

/** Options of {@link VectorDbClient.scroll} and {@link VectorDbClient.scrollAll}. */
export interface ScrollOptions extends CallOptions {
  /** Points per page, 1 .. 10,000; default the server's (100). */
  limit?: number;
  /** Where to continue: an earlier page's `next_cursor`; default from the start. */
  cursor?: string;
  /** Return the vectors too. */
  withVector?: boolean;
  /** Return the payloads too (`points[i].payload`, JSON text; see {@link parsePayload}). */
  withPayload?: boolean;
  /** Only the points matching this filter (see {@link FilterInput}). */
  filter?: FilterInput;
}

/** Options of {@link VectorDbClient.count}. */
export interface CountOptions extends CallOptions {
  /** Count only the points matching this filter (see {@link FilterInput}). */
  filter?: FilterInput;
}

/**
 * A point id as the client takes it: an integer 0 .. 2^64 - 1 (a `number` up to 2^53 - 1, a
 * `bigint` for any) or a string of 1 .. 128 bytes of UTF-8 (a UUID, a document key). Answers
 * carry ids as {@link PointId}s: a number, a bigint only above 2^53 - 1, or a string.
 */
export type IdInput = number | bigint | string;

export type { PointId };

/** An answer's item with its id as one {@link PointId} (the wire's `id`/`string_id` pair). */
export type WithPointId<T> = Omit<T, "id" | "string_id"> & { id: PointId };

/** A Search answer with PointIds. */
export type SearchAnswer = Omit<SearchResponse, "results"> & {
  results: WithPointId<SearchResult>[];
};

/** A Scroll page with PointIds. */
export type ScrollPage = Omit<ScrollResponse, "points"> & { points: WithPointId<ScrollPoint>[] };

/** A GetBatch record with its PointId. */
export type PointState = WithPointId<PointRecord>;

/**
 * The wire fields of an id (`field` names it in a PointIdError): `{id}` for an integer (a
 * bigint as a decimal string), `{id: 0, string_id}` for a string.
 */
function idFields(value: unknown, field: string): { id: WireId; string_id?: string } {
  const id = canonicalId(value, field);
  if (typeof id === "string") return { id: 0, string_id: id };
  return { id: typeof id === "bigint" ? id.toString() : id };
}

/** The wire lists of `ids`: integers in `ids`, strings in `string_ids`, each in order. */
function idLists(ids: readonly IdInput[]): { ids: WireId[]; string_ids?: string[] } {
  if (!Array.isArray(ids)) throw new TypeError(`ids ${String(ids)} must be an array of ids`);
  const wire = idsToWire(ids.map((value, i) => canonicalId(value, `ids[${i}]`)));
  return wire.string_ids.length > 0 ? wire : { ids: wire.ids };
}

/** An answer's item with its wire id pair made one PointId. */
function withPointId<T extends { id: WireId; string_id?: string }>(item: T): WithPointId<T> {
  const { string_id, ...rest } = item;
  return { ...rest, id: idFromWire(item.id, string_id) } as WithPointId<T>;
}

/** A Search answer with PointIds. */
function searchAnswer(res: SearchResponse): SearchAnswer {
  return { ...res, results: (res.results ?? []).map(withPointId) };
}

/** A point to upsert; the vector may be a typed array. */
export interface PointInput {
  /** An integer (number or bigint) or a string id ({@link IdInput}). */
  id: IdInput;
  vector: ArrayLike<number>;
  /** The point's payload; absent or null: none. */
  payload?: Payload | null;
}

/** The JSON text of a payload for the wire ("" for none); a non-object is a TypeError. */
function payloadWire(payload: unknown, what: string): string {
  if (payload === undefined || payload === null) return "";
  if (typeof payload !== "object" || Array.isArray(payload)) {
    throw new TypeError(`${what} must be a JSON object, got ${JSON.stringify(payload)}`);
  }
  return JSON.stringify(payload);
}

/** The object of a payload's JSON text from an answer (Get, Search); null for none. */
export function parsePayload(text: string | undefined): Payload | null {
  return text === undefined || text === "" ? null : JSON.parse(text) as Payload;
}

/** The outcome of {@link VectorDbClient.upsert}. */
export interface UpsertResult {
  /** Points acknowledged. */
  count: number;
  /** Each PutBatch's response, in order (each has its own version unless one was given). */
  batches: PutBatchResponse[];
}

/** A client option is out of range; the message names the value. */
export class ClientOptionError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "ClientOptionError";
  }
}

/**
 * A batch of {@link VectorDbClient.upsert} failed (after its retries). `code` and `details` are
 * the gRPC error's, so `isServiceError` holds; `acknowledged` points (those before
 * `failedIndex`) were written, later ones were not sent.
 */
export class UpsertError extends Error {
  readonly code: number | undefined;
  readonly details: string;
  readonly metadata: grpc.Metadata | undefined;
  constructor(
    message: string,
    readonly acknowledged: number,
    readonly failedIndex: number,
    cause: unknown,
  ) {
    super(message, { cause });
    this.name = "UpsertError";
    const c = cause as Partial<grpc.ServiceError>;
    this.code = typeof c?.code === "number" ? c.code : undefined;
    this.details = typeof c?.details === "string" ? c.details : String(c?.message ?? cause);
    this.metadata = c?.metadata;
  }
}

function checkTimeout(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new ClientOptionError(`${name} ${String(value)} must be a positive number of ms`);
  }
  return value;
}

function checkAddress(address: unknown): string {
  if (typeof address !== "string" || !/^(unix:.+|.+:\d+)$/.test(address)) {
    throw new ClientOptionError(`address ${JSON.stringify(address)} must be host:port`);
  }
  return address;
}

/** A plain number[] of `vector` (protobufjs rejects typed arrays). */
function plainVector(vector: ArrayLike<number>, what: string): number[] {
  if (Array.isArray(vector)) return vector;
  if (vector === null || typeof vector !== "object" || typeof vector.length !== "number") {
    throw new TypeError(`${what} ${String(vector)} is not an array of numbers`);
  }
  return Array.from(vector);
}

/** `vector`'s wire fields: packed as `vector_bytes` (see {@link VectorDbClientOptions.packedVectors}) or plain. */
function vectorFields(
  vector: ArrayLike<number>,
  what: string,
  packed: boolean,
): { vector: number[]; vector_bytes?: Uint8Array } {
  if (!packed) return { vector: plainVector(vector, what) };
  if (!(vector instanceof Float32Array)) vector = plainVector(vector, what);
  return { vector: [], vector_bytes: packVector(vector) };
}

/** Upper bound of the encoded size of one point of dimension `dim` in a PutBatch. */
function pointBytesMax(dim: number, payload_bytes = 0, string_id_bytes = 0): number {
  // id (tag + ≤10 varint of a uint64), vector (tag + ≤5 length + 4 × dim), the point's tag and
  // length (≤6), a payload (tag + ≤5 length + its bytes), a string id (tag + ≤2 length + bytes).
  return 11 + 6 + 4 * dim + 6 + (payload_bytes > 0 ? 6 + payload_bytes : 0) +
    (string_id_bytes > 0 ? 3 + string_id_bytes : 0);
}

/** Split `points` into batches of at most `size` points and under the PutBatch byte limit. */
export function splitBatches<
  T extends {
    vector: ArrayLike<number>;
    vector_bytes?: Uint8Array;
    payload?: string;
    string_id?: string;
  },
>(
  points: readonly T[],
  size: number = BATCH_POINTS_MAX,
  bytes_max: number = PUT_BATCH_BYTES_MAX - 4096,
): T[][] {
  const out: T[][] = [];
  let batch: T[] = [];
  let bytes = 0;
  for (const p of points) {
    const b = pointBytesMax(
      Math.max(p.vector?.length ?? 0, Math.ceil((p.vector_bytes?.length ?? 0) / 4)),
      typeof p.payload === "string" ? utf8Length(p.payload) : 0,
      typeof p.string_id === "string" ? utf8Length(p.string_id) : 0,
    );
    if (batch.length > 0 && (batch.length >= size || bytes + b > bytes_max)) {
      out.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(p);
    bytes += b;
  }
  if (batch.length > 0) out.push(batch);
  return out;
}

/**
 * A typed client of the vector database (a router or a storage node), usable from Deno and
 * from Node (through tsx). Calls fail with grpc-js's `ServiceError` (`code`, `details`);
 * retryable failures are retried first (see retry.ts: UNAVAILABLE always, DEADLINE_EXCEEDED
 * and RESOURCE_EXHAUSTED for reads and writes, which are versioned upserts). Field names of
 * requests and responses are the proto's (snake_case); uint64 values come back as decimal
 * strings. An empty `collection` selects "default".
 *
 * @example
 * ```ts
 * import { VectorDbClient } from "./mod.ts";
 *
 * const db = new VectorDbClient({ address: "127.0.0.1:50050", timeoutMs: 5_000 });
 * try {
 *   await db.createCollection("docs", { dimension: 3, metric: "cosine" });
 *   await db.upsert("docs", [
 *     { id: 1, vector: [0.1, 0.2, 0.3] },
 *     { id: 2, vector: new Float32Array([0.9, 0.8, 0.7]) },
 *   ]);
 *   const { results } = await db.search("docs", [0.1, 0.2, 0.3], { k: 1 });
 *   console.log(results[0].id); // 1
 * } finally {
 *   db.close();
 * }
 * ```
 */
export class VectorDbClient {
  /** host:port this client calls. */
  readonly address: string;
  /** Deadline of each attempt, in milliseconds. */
  readonly timeoutMs: number;
  /** The retry policy of calls without their own. */
  readonly retry: Readonly<RetryPolicy>;
  /** The transport: an {@link ApiClient} unless the options gave one. */
  readonly transport: Transport;
  readonly #clock: RetryClock;
  readonly #onRetry: ((event: RetryEvent) => void) | undefined;
  /** Vectors go as `vector_bytes`. */
  readonly #packed: boolean;

  constructor(options: VectorDbClientOptions = {}) {
    this.address = checkAddress(options.address ?? DEFAULT_ADDRESS);
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
    this.retry = options.retry === false
      ? retryPolicy({ attempts: 1 })
      : retryPolicy(options.retry ?? {}, DEFAULT_RETRY);
    this.#clock = options.clock ?? REAL_CLOCK;
    this.#onRetry = options.onRetry;
    this.#packed = options.packedVectors ?? true;
    this.transport = options.transport ??
      new ApiClient(this.address, {
        timeout_ms: this.timeoutMs,
        client_options: options.grpcOptions,
        security: securityOf(options),
      });
  }

  /** Calls RPC `method` with retries (see retry.ts); the escape hatch to every RPC. */
  call<K extends MethodName>(
    method: K,
    request: RequestOf<K>,
    options: CallOptions = {},
  ): Promise<ResponseOf<K>> {
    const timeoutMs = options.timeoutMs === undefined
      ? this.timeoutMs
      : checkTimeout(options.timeoutMs, "timeoutMs");
    const policy = options.retry === false
      ? retryPolicy({ attempts: 1 }, this.retry)
      : options.retry === undefined
      ? this.retry
      : retryPolicy(options.retry, this.retry);
    const once = (timeout_ms: number) =>
      this.transport.call(method, request, { timeout_ms, metadata: options.metadata });
    if (policy.attempts === 1) return once(timeoutMs);
    return withRetry(method, once, {
      policy,
      timeoutMs,
      clock: this.#clock,
      onRetry: this.#onRetry,
    });
  }

  /**
   * Creates collection `name` (`created: false` when it exists with the same parameters;
   * ALREADY_EXISTS when with others). Not retried on DEADLINE_EXCEEDED.
   */
  createCollection(
    name: string,
    spec: Omit<CreateCollectionRequest, "name">,
    options?: CallOptions,
  ): Promise<CreateCollectionResponse> {
    return this.call("CreateCollection", { ...spec, name }, options);
  }

  /** Drops collection `name` and its data (`dropped: false` when there was none). */
  dropCollection(name: string, options?: CallOptions): Promise<DropCollectionResponse> {
    return this.call("DropCollection", { name }, options);
  }

  /** Every collection with its parameters. */
  async listCollections(options?: CallOptions): Promise<CollectionInfo[]> {
    return (await this.call("ListCollections", {}, options)).collections;
  }

  /**
   * Writes `points` (insert or replace by id) in PutBatch calls of at most `batchSize` points,
   * one after the other, each retried. On a batch's final failure throws {@link UpsertError}
   * saying how many points were acknowledged before it.
   */
  async upsert(
    collection: string,
    points: readonly PointInput[],
    options: UpsertOptions = {},
  ): Promise<UpsertResult> {
    if (!Array.isArray(points)) {
      throw new TypeError(`points ${String(points)} must be an array of {id, vector}`);
    }
    const size = options.batchSize ?? BATCH_POINTS_MAX;
    if (!Number.isInteger(size) || size < 1 || size > BATCH_POINTS_MAX) {
      throw new ClientOptionError(
        `batchSize ${size} must be an integer from 1 to ${BATCH_POINTS_MAX}`,
      );
    }
    const wire: Point[] = points.map((p, i) => {
      const point: Point = {
        ...idFields(p?.id, `points[${i}].id`),
        ...vectorFields(p?.vector, `points[${i}].vector`, this.#packed),
      };
      const payload = payloadWire(p?.payload, `points[${i}].payload`);
      if (payload !== "") point.payload = payload;
      return point;
    });
    const batches = splitBatches(wire, size);
    const result: UpsertResult = { count: 0, batches: [] };
    let index = 0;
    for (let b = 0; b < batches.length; b++) {
      const batch = batches[b];
      try {
        const res = await this.call("PutBatch", {
          points: batch,
          collection,
          consistency: options.consistency ?? "",
          version: options.version ?? 0,
        }, options);
        result.count += res.count;
        result.batches.push(res);
      } catch (e) {
        const attempts = (e as { attempts?: number }).attempts;
        throw new UpsertError(
          `upsert into ${JSON.stringify(collection || "default")}: batch ${b + 1} of ` +
            `${batches.length} (points ${index}..${index + batch.length - 1}) failed` +
            (attempts ? ` after ${attempts} attempt${attempts === 1 ? "" : "s"}` : "") +
            `: ${(e as Error)?.message ?? String(e)}; the ${result.count} points before it ` +
            `were acknowledged`,
          result.count,
          index,
          e,
        );
      }
      index += batch.length;
    }
    return result;
  }

  /** Writes one point (a Put), with `options.payload` when given; {@link upsert} for many. */
  put(
    collection: string,
    id: IdInput,
    vector: ArrayLike<number>,
    options: PutOptions = {},
  ): Promise<PutResponse> {
    const payload = payloadWire(options.payload, "payload");
    return this.call("Put", {
      ...idFields(id, "id"),
      ...vectorFields(vector, "vector", this.#packed),
      ...(payload === "" ? {} : { payload }),
      collection,
      consistency: options.consistency ?? "",
      version: options.version ?? 0,
    }, options);
  }

  /**
   * Point `id` of `collection`: `found`, its `vector`, `payload` (JSON text, "" for none; see
   * {@link parsePayload}) and `version` (`deleted` after a delete).
   */
  get(collection: string, id: IdInput, options?: CallOptions): Promise<GetResponse> {
    return this.call("Get", { ...idFields(id, "id"), collection }, options);
  }

  /** Deletes point `id` (`deleted: false` when it was not there). */
  delete(collection: string, id: IdInput, options: WriteOptions = {}): Promise<DeleteResponse> {
    return this.call("Delete", {
      ...idFields(id, "id"),
      collection,
      consistency: options.consistency ?? "",
      version: options.version ?? 0,
    }, options);
  }

  /**
   * The `k` nearest points to `vector`, nearest first (`partial` when a shard did not answer);
   * with `filter`, the `k` nearest of the points that match it.
   *
   * @example
   * ```ts
   * const { results } = await db.search("docs", [0.1, 0.2, 0.3], {
   *   k: 5,
   *   filter: { must: [{ key: "tenant", match: { value: "acme" } }] },
   *   withPayload: true,
   * });
   * for (const r of results) console.log(r.id, parsePayload(r.payload)?.tenant);
   * ```
   */
  search(
    collection: string,
    vector: ArrayLike<number>,
    options: SearchOptions = {},
  ): Promise<SearchAnswer> {
    const filter = filterWire(options.filter);
    return this.call("Search", {
      ...vectorFields(vector, "vector", this.#packed),
      k: options.k ?? DEFAULT_SEARCH_K,
      ef: options.ef ?? 0,
      collection,
      ...(filter === "" ? {} : { filter }),
      ...(options.withPayload ? { with_payload: true } : {}),
      ...(options.withVector ? { with_vector: true } : {}),
    }, options).then(searchAnswer);
  }

  /**
   * Up to 100 searches in one call (each {@link BatchSearch} in `collection` unless it names
   * its own), answered in request order; every search is validated before any runs.
   */
  async searchBatch(
    collection: string,
    searches: readonly BatchSearch[],
    options?: CallOptions,
  ): Promise<SearchAnswer[]> {
    const res = await this.call("SearchBatch", {
      searches: searches.map((s, i) => {
        const filter = filterWire(s.filter, `searches[${i}].filter`);
        return {
          ...vectorFields(s.vector, `searches[${i}].vector`, this.#packed),
          k: s.k ?? DEFAULT_SEARCH_K,
          ef: s.ef ?? 0,
          collection: s.collection ?? collection,
          ...(filter === "" ? {} : { filter }),
          ...(s.withPayload ? { with_payload: true } : {}),
          ...(s.withVector ? { with_vector: true } : {}),
        };
      }),
    }, options);
    return res.results.map(searchAnswer);
  }

  /**
   * One page of `collection`'s points in ascending id order; pass its `next_cursor` as
   * `cursor` for the next page ("" when there is none). Through a router each id comes once.
   * With `filter` only the matching points (a page may then hold fewer than `limit` points
   * and still have a `next_cursor`).
   */
  scroll(collection: string, options: ScrollOptions = {}): Promise<ScrollPage> {
    const filter = filterWire(options.filter);
    return this.call("Scroll", {
      collection,
      limit: options.limit ?? 0,
      cursor: options.cursor ?? "",
      with_vector: options.withVector ?? false,
      ...(filter === "" ? {} : { filter }),
      ...(options.withPayload ? { with_payload: true } : {}),
    }, options).then((res) => ({ ...res, points: (res.points ?? []).map(withPointId) }));
  }

  /**
   * Every page of `collection` from `options.cursor` (default the start) to the end, one
   * {@link scroll} call per page as the loop asks for it.
   *
   * @example
   * ```ts
   * for await (const page of db.scrollAll("docs", { limit: 1000 })) {
   *   for (const p of page.points) console.log(p.id);
   * }
   * // Only tenant "acme"'s points, with their payloads:
   * const filter = { must: [{ key: "tenant", match: { value: "acme" } }] };
   * for await (const page of db.scrollAll("docs", { filter, withPayload: true })) {
   *   for (const p of page.points) console.log(p.id, parsePayload(p.payload));
   * }
   * ```
   */
  async *scrollAll(
    collection: string,
    options: ScrollOptions = {},
  ): AsyncGenerator<ScrollPage, void, undefined> {
    let cursor = options.cursor ?? "";
    do {
      const page = await this.scroll(collection, { ...options, cursor });
      yield page;
      cursor = page.next_cursor;
    } while (cursor !== "");
  }

  /**
   * The exact number of points of `collection` (`partial` when a shard did not answer); with
   * `filter`, of the points that match it.
   *
   * @example
   * ```ts
   * const { count } = await db.count("docs", {
   *   filter: { must: [{ key: "year", range: { gte: 2020 } }] },
   * });
   * ```
   */
  async count(
    collection: string,
    options: CountOptions = {},
  ): Promise<{ count: number; partial: boolean }> {
    const filter = filterWire(options.filter);
    const res = await this.call("Count", {
      collection,
      ...(filter === "" ? {} : { filter }),
    }, options);
    return { count: Number(res.count), partial: res.partial === true };
  }

  /**
   * Indexes payload key `field` (a dotted path such as `meta.lang`) of `collection` as `type`,
   * so filters on it pick candidates from the index instead of reading every payload
   * (`created: false` when it already had this index). Through a router on every node.
   *
   * @example
   * ```ts
   * await db.createFieldIndex("docs", "tenant", "keyword");
   * ```
   */
  createFieldIndex(
    collection: string,
    field: string,
    type: FieldIndexType,
    options?: CallOptions,
  ): Promise<CreateFieldIndexResponse> {
    return this.call("CreateFieldIndex", { collection, field, type }, options);
  }

  /** Drops the payload index of `field` (`dropped: false` when there was none). */
  dropFieldIndex(
    collection: string,
    field: string,
    options?: CallOptions,
  ): Promise<DropFieldIndexResponse> {
    return this.call("DropFieldIndex", { collection, field }, options);
  }

  /**
   * The state of each of `ids` (1 .. 1,000): the integer ids first, then the string ids, each
   * in request order; `found`, and with the options the `vector` and `payload` (JSON text, ""
   * for none; see {@link parsePayload}). Ids are {@link PointId}s (a bigint only above
   * 2^53 - 1).
   *
   * @example
   * ```ts
   * const points = await db.getBatch("docs", [1, "doc-7", 2n ** 63n], { withPayload: true });
   * // ids 1, 9223372036854775808n, then "doc-7"
   * for (const p of points) if (p.found) console.log(p.id, parsePayload(p.payload));
   * ```
   */
  async getBatch(
    collection: string,
    ids: readonly IdInput[],
    options: GetBatchOptions = {},
  ): Promise<PointState[]> {
    const res = await this.call("GetBatch", {
      collection,
      ...idLists(ids),
      with_vector: options.withVector ?? false,
      with_payload: options.withPayload ?? false,
    }, options);
    return res.points.map(withPointId);
  }

  /** Deletes points `ids` (1 .. 10,000) in one write; `deleted` counts those that were live. */
  deleteBatch(
    collection: string,
    ids: readonly IdInput[],
    options: WriteOptions = {},
  ): Promise<DeleteBatchResponse> {
    return this.call("DeleteBatch", {
      collection,
      ...idLists(ids),
      consistency: options.consistency ?? "",
      version: options.version ?? 0,
    }, options);
  }

  /**
   * Deletes every point matching `filter` (required; see {@link FilterInput}); `deleted` is
   * how many ids matched. Not retried on DEADLINE_EXCEEDED (a second run could also delete
   * points written since).
   *
   * @example
   * ```ts
   * const { deleted } = await db.deleteByFilter("docs", {
   *   must: [{ key: "tenant", match: { value: "gone" } }],
   * });
   * ```
   */
  async deleteByFilter(
    collection: string,
    filter: FilterInput,
    options: WriteOptions = {},
  ): Promise<{ deleted: number; version: Uint64 }> {
    const text = filterWire(filter);
    if (text === "") throw new TypeError("deleteByFilter needs a filter");
    const res: DeleteByFilterResponse = await this.call("DeleteByFilter", {
      collection,
      filter: text,
      consistency: options.consistency ?? "",
      version: options.version ?? 0,
    }, options);
    return { deleted: Number(res.deleted), version: res.version };
  }

  /** Counts, memory and WAL sizes (a router adds every node's). */
  stats(options?: CallOptions): Promise<StatsResponse> {
    return this.call("Stats", {}, options);
  }

  /** The cluster's members as the called process sees them. */
  members(options?: CallOptions): Promise<MembersResponse> {
    return this.call("Members", {}, options);
  }

  /** Decommissions the called storage node (it hands its data off and exits; admin role). */
  drain(options?: CallOptions): Promise<DrainResponse> {
    return this.call("Drain", {}, options);
  }

  /**
   * Backs `collection` up as backup `name` (admin role; ALREADY_EXISTS when the name is taken).
   * A storage node writes `<data-dir>/backups/<name>/`; a router makes every storage node of its
   * ring back up its replicas, or none (the reply's `nodes` has each node's backup).
   */
  async backup(collection: string, name: string, options?: CallOptions): Promise<BackupInfo> {
    const res = await this.call("Backup", { collection, name }, options);
    return res.backup!;
  }

  /**
   * The backups, by name (admin role). Through a router each name once, with every node's entry
   * and `complete` when every node of the ring has it.
   */
  async listBackups(options?: CallOptions): Promise<BackupInfo[]> {
    return (await this.call("ListBackups", {}, options)).backups;
  }

  /**
   * Creates the new collection `collection` from backup `backup` (admin role; ALREADY_EXISTS
   * when the collection exists; DATA_LOSS when the backup's sha256 does not match). Through a
   * router every storage node restores its own backup (one without it creates the collection
   * empty).
   */
  restore(backup: string, collection: string, options?: CallOptions): Promise<RestoreResponse> {
    return this.call("Restore", { backup, collection }, options);
  }

  /**
   * Deletes backup `name` (admin role; NOT_FOUND when it does not exist). Through a router on
   * every storage node that has it (the reply's `nodes`).
   */
  deleteBackup(name: string, options?: CallOptions): Promise<DeleteBackupResponse> {
    return this.call("DeleteBackup", { name }, options);
  }

  /** Closes the channel; calls still pending fail with CANCELLED. */
  close(): void {
    this.transport.close();
  }
}

/** The channel security of `options`: TLS (CA file, PEM bytes or system roots) and API key. */
function securityOf(options: VectorDbClientOptions): ClientSecurity {
  const interceptors = options.apiKey === undefined
    ? []
    : [apiKeyInterceptor(checkApiKey(options.apiKey, options.sources?.apiKey ?? "apiKey"))];
  const ca = options.tlsCa;
  if (typeof ca === "string") {
    return {
      ...clientSecurity({ tls_ca: ca, tls_ca_source: options.sources?.tlsCa ?? "tlsCa" }),
      interceptors,
    };
  }
  if (ca instanceof Uint8Array) {
    if (!new TextDecoder("latin1").decode(ca).includes("-----BEGIN ")) {
      throw new ClientOptionError(`tlsCa (${ca.length} bytes) is not PEM`);
    }
    return { tls: { ca: Buffer.from(ca) }, interceptors };
  }
  if (ca !== undefined) {
    throw new ClientOptionError(`tlsCa ${String(ca)} must be a file path or PEM bytes`);
  }
  return { tls: options.tls ? { ca: null } : null, interceptors };
}
