/**
 * The public gRPC API (proto/vector_db.proto), loaded at runtime with @grpc/proto-loader, and
 * hand-written TypeScript types for its messages.
 *
 * Loader options: `keepCase` (fields keep their snake_case proto names), `longs: String`
 * (uint64 fields decode as decimal strings; numbers are accepted when encoding), `enums:
 * String`, `defaults` and `arrays` (absent scalars decode as their zero value, absent repeated
 * fields as `[]`). Repeated float fields must be plain arrays when encoding (protobufjs rejects
 * typed arrays); use `Array.from(float32Array)`.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import type * as protoLoader from "@grpc/proto-loader";
import type { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import {
  BATCH_POINTS_MAX,
  DIMENSION_MAX,
  GET_BATCH_MAX,
  MESSAGE_BYTES_MAX,
  POINT_FIELDS_MAX,
  REQUEST_FIELDS_MAX,
  SEARCH_BATCH_MAX,
  VECTORDB_REQUEST_BYTES_MAX,
} from "../common/limits.ts";
import { limitService, type RequestLimit } from "../common/wire_limits.ts";
import { decodePutBatchRequest } from "./batch_codec.ts";
import {
  decodeSearchBatchRequest,
  decodeSearchBatchResponse,
  decodeSearchRequest,
  decodeSearchResponse,
  encodeSearchBatchRequest,
  encodeSearchBatchResponse,
  encodeSearchRequest,
  encodeSearchResponse,
} from "./search_codec.ts";
import { loadServices } from "../common/proto_services.ts";

/** Absolute path of proto/vector_db.proto. */
export const PROTO_PATH: string = fileURLToPath(
  new URL("../../proto/vector_db.proto", import.meta.url),
);

/** Options passed to @grpc/proto-loader. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
};

/**
 * Channel/server options every client and server of this API uses: 64 MiB messages; channelz
 * off (grpc-js tracks every call and socket for the channelz service by default, which no
 * server here offers: docs/REQUEST_PATH.md measures its cost per call).
 */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MESSAGE_BYTES_MAX,
  "grpc.max_send_message_length": MESSAGE_BYTES_MAX,
  "grpc.enable_channelz": 0,
};

/** A uint64 field: decoded as a decimal string; a number or string when encoding. */
export type Uint64 = string | number;

/**
 * A point id field (uint64 `id`, see "Ids" in proto/vector_db.proto): decoded as a decimal
 * string; a number or decimal string when encoding. Read it with `idFromWire(id, string_id)`
 * (src/common/point_id.ts), write it with `idToWire`.
 */
export type WireId = string | number;

// ----- Messages (field names and numbers as in proto/vector_db.proto) -----

export interface PutRequest {
  id: WireId;
  /** A string id instead of `id`; "" or absent for an integer id. */
  string_id?: string;
  vector: number[];
  /**
   * The vector as packed little-endian float32 bytes instead of `vector` (then `vector` is
   * `[]`); see {@link packVector}.
   */
  vector_bytes?: Uint8Array;
  collection?: string;
  consistency?: string;
  /** 0 or absent: the server stamps it. At most 2^53 - 1 (VERSION_MAX). */
  version?: Uint64;
  /** JSON text of an object (common/payload.ts); "" or absent: none. */
  payload?: string;
  /** The sender's shard count of the collection (routers); 0 or absent: not checked. */
  shard_number?: number;
}
export interface PutResponse {
  ok: boolean;
  seq?: Uint64;
  replicas_acked?: number;
  /** The write's version, as stamped or given. */
  version?: Uint64;
}

export interface Point {
  id: WireId;
  /** A string id instead of `id`; "" or absent for an integer id. */
  string_id?: string;
  vector: number[];
  /**
   * The vector as packed little-endian float32 bytes instead of `vector` (then `vector` is
   * `[]`); see {@link packVector}.
   */
  vector_bytes?: Uint8Array;
  /** JSON text of an object (common/payload.ts); "" or absent: none. */
  payload?: string;
}
export interface PutBatchRequest {
  points: Point[];
  collection?: string;
  consistency?: string;
  /** Version of every point; 0 or absent: the server stamps one. */
  version?: Uint64;
  /** The sender's shard count of the collection (routers); 0 or absent: not checked. */
  shard_number?: number;
}
export interface PutBatchResponse {
  count: number;
  seq?: Uint64;
  /** The batch's version, as stamped or given. */
  version?: Uint64;
}

export interface GetRequest {
  id: WireId;
  string_id?: string;
  collection?: string;
}
export interface GetResponse {
  found: boolean;
  vector: number[];
  /** Version of the put (found) or of the delete (`deleted`); 0 when never written. */
  version?: Uint64;
  /** True when the id's last write was a delete. */
  deleted?: boolean;
  /** The payload's compact JSON text when found; "" when none. */
  payload?: string;
}

export interface DeleteRequest {
  id: WireId;
  string_id?: string;
  collection?: string;
  consistency?: string;
  /** 0 or absent: the server stamps it. */
  version?: Uint64;
  /** The sender's shard count of the collection (routers); 0 or absent: not checked. */
  shard_number?: number;
}
export interface DeleteResponse {
  deleted: boolean;
  seq?: Uint64;
  /** The delete's version, as stamped or given. */
  version?: Uint64;
}

export interface SearchRequest {
  vector: number[];
  /**
   * The vector as packed little-endian float32 bytes instead of `vector` (then `vector` is
   * `[]`); see {@link packVector}.
   */
  vector_bytes?: Uint8Array;
  k: number;
  collection?: string;
  ef?: number;
  /** JSON filter; "" or absent: every point. */
  filter?: string;
  /** Results carry their payloads. */
  with_payload?: boolean;
  /** Results carry their stored vectors. */
  with_vector?: boolean;
  /** Brute force instead of the graph (exact top-k; `ef` ignored). */
  exact?: boolean;
  /** Storage nodes only: the shards to search (empty: every shard the node holds). */
  shards?: number[];
}
export interface SearchResult {
  id: WireId;
  /** The point's string id; "" or absent when its id is the integer `id`. */
  string_id?: string;
  distance: number;
  /** With `with_payload`: compact JSON text, "" for none. */
  payload?: string;
  /** With `with_vector`: the stored vector. */
  vector?: number[];
}
export interface SearchResponse {
  results: SearchResult[];
  partial?: boolean;
  shards_answered?: number;
  shards_total?: number;
  /** Router only: the storage nodes whose answers were merged, sorted. */
  nodes_answered?: string[];
  /** Graph (or exact) searches the query executed: one per shard searched, summed. */
  shard_searches?: number;
}

export interface CreateCollectionRequest {
  name: string;
  dimension: number;
  metric?: string;
  m?: number;
  ef_construction?: number;
  /** "" / "none" or "int8". */
  quantization?: string;
  /** Re-ranking factor of an int8 collection; 0 selects 4. */
  rescore?: number;
  /** Shards, 1 .. SHARDS_MAX; 0: the router chooses (a node: 1). */
  shard_number?: number;
  /** Replicas per shard, 1 .. REPLICATION_FACTOR_MAX; 0: the router's default. */
  replication_factor?: number;
}
export interface CollectionInfo {
  name: string;
  dimension: number;
  metric: string;
  m: number;
  ef_construction: number;
  /** Payload indexes, sorted by field. */
  field_indexes?: FieldIndex[];
  /** "none" or "int8". */
  quantization?: string;
  /** Re-ranking factor of an int8 collection (0 without quantization). */
  rescore?: number;
  /** Shards (1 for a collection made before shards existed). */
  shard_number?: number;
  /** Replicas per shard (0: the router's --replication-factor). */
  replication_factor?: number;
}
/** A payload index: `field` indexed as `type` ("keyword", "integer", "float", "bool"). */
export interface FieldIndex {
  field: string;
  type: string;
}
export interface CreateCollectionResponse {
  created: boolean;
  collection?: CollectionInfo | null;
}

export interface DropCollectionRequest {
  name: string;
}
export interface DropCollectionResponse {
  dropped: boolean;
}

// deno-lint-ignore no-empty-interface
export interface ListCollectionsRequest {}
export interface ListCollectionsResponse {
  collections: CollectionInfo[];
}

// deno-lint-ignore no-empty-interface
export interface StatsRequest {}
export interface CollectionStats {
  name: string;
  count: Uint64;
  dimension: number;
  metric: string;
  memory_bytes: Uint64;
  wal_bytes: Uint64;
  last_snapshot_seq: Uint64;
  last_snapshot_time_ms: Uint64;
  wal_syncs?: Uint64;
  /** Deleted points held as tombstones (router: logical, as `count`). */
  tombstones?: Uint64;
  /** Storage node, more than one shard: each shard unit (empty for one shard). */
  shards?: ShardStats[];
  /** Router only: live points summed over every node that answered (each replica counts). */
  replica_count?: Uint64;
}
/** One shard unit of a collection on a storage node. */
export interface ShardStats {
  shard: number;
  count: Uint64;
  tombstones: Uint64;
  last_seq: Uint64;
  last_snapshot_seq: Uint64;
  wal_bytes: Uint64;
}
export interface NodeStats {
  node_id: string;
  address: string;
  collections: CollectionStats[];
  uptime_ms: Uint64;
  rss_bytes: Uint64;
  heap_used_bytes: Uint64;
  error?: string;
  hints_pending?: Uint64;
  hints_refused?: Uint64;
}
export interface StatsResponse {
  node_id: string;
  collections: CollectionStats[];
  uptime_ms: Uint64;
  rss_bytes: Uint64;
  heap_used_bytes: Uint64;
  version?: string;
  is_router?: boolean;
  nodes?: NodeStats[];
  /** Router only: rebalancing progress (see proto/vector_db.proto). */
  rebalancing?: boolean;
  transfers_active?: number;
  transfers_pending?: number;
  transfers_done?: Uint64;
  transfers_failed?: Uint64;
  points_scanned?: Uint64;
  points_copied?: Uint64;
  points_pruned?: Uint64;
  rebalances_done?: Uint64;
  points_unresolved?: Uint64;
  /** Router only: shard files moved (src/router/rebalance/shard_move.ts). */
  shard_moves_active?: number;
  shard_moves_done?: Uint64;
  shard_moves_failed?: Uint64;
  shard_bytes_moved?: Uint64;
  shard_moves?: ShardMoveStats[];
  /** Router only: losers' shard units emptied wholesale (ShardDrop), refusals, entries. */
  shard_drops_done?: Uint64;
  shard_drops_refused?: Uint64;
  points_dropped?: Uint64;
  /** Router only: collections whose nodes disagree on their layout, one message each. */
  layout_conflicts?: string[];
}

/** One shard file move under way (Stats). */
export interface ShardMoveStats {
  collection: string;
  shard: number;
  source: string;
  target: string;
  bytes_done: Uint64;
  bytes_total: Uint64;
}

// deno-lint-ignore no-empty-interface
export interface MembersRequest {}
export interface Member {
  id: string;
  address: string;
  /** "alive" | "suspect" | "dead" | "left" */
  state: string;
  incarnation: number;
  is_router: boolean;
}
export interface MembersResponse {
  members: Member[];
  self_id: string;
}

// deno-lint-ignore no-empty-interface
export interface DrainRequest {}
export interface DrainResponse {
  started: boolean;
  node_id: string;
}

export interface BackupRequest {
  collection?: string;
  name: string;
}
export interface BackupInfo {
  name: string;
  collection: CollectionInfo | null;
  points: Uint64;
  bytes: Uint64;
  created_ms: Uint64;
  seq: Uint64;
  sha256: string;
  tombstones?: Uint64;
  /** Router only: each node's backup of this name, or why it has none. */
  nodes?: NodeBackup[];
  /** Router only: every node of the ring has it. */
  complete?: boolean;
}
/** Router only: one storage node's part of a cluster-wide backup. */
export interface NodeBackup {
  address: string;
  backup?: BackupInfo | null;
  error?: string;
}
export interface BackupResponse {
  backup: BackupInfo | null;
}
// deno-lint-ignore no-empty-interface
export interface ListBackupsRequest {}
export interface ListBackupsResponse {
  backups: BackupInfo[];
  /** Router only: nodes that did not answer, one line each. */
  errors?: string[];
}
export interface RestoreRequest {
  backup: string;
  collection: string;
}
export interface RestoreResponse {
  collection: CollectionInfo | null;
  points: Uint64;
  /** Router only: what each node did. */
  nodes?: NodeRestore[];
  /** Router only: an anti-entropy run was started to move points to their current owners. */
  anti_entropy_started?: boolean;
}
/** Router only: one storage node's part of a Restore. */
export interface NodeRestore {
  address: string;
  from_backup: boolean;
  points: Uint64;
}
export interface DeleteBackupRequest {
  name: string;
}
export interface DeleteBackupResponse {
  deleted: boolean;
  /** Router only: the nodes that had the backup and deleted it. */
  nodes?: string[];
}

export interface SearchBatchRequest {
  /** 1 .. SEARCH_BATCH_MAX searches. */
  searches: SearchRequest[];
}
export interface SearchBatchResponse {
  /** One answer per search, in request order. */
  results: SearchResponse[];
}

export interface ScrollRequest {
  collection?: string;
  /** 1 .. SCROLL_LIMIT_MAX; 0 or absent: SCROLL_LIMIT_DEFAULT. */
  limit?: number;
  /** "" or absent: from the start; else a `next_cursor` of an earlier answer. */
  cursor?: string;
  with_vector?: boolean;
  /** JSON filter; "" or absent: every point. */
  filter?: string;
  with_payload?: boolean;
}
export interface ScrollPoint {
  id: WireId;
  string_id?: string;
  /** Empty unless `with_vector`. */
  vector: number[];
  version: Uint64;
  /** Compact JSON with `with_payload`; "" or absent otherwise or when none. */
  payload?: string;
}
export interface ScrollResponse {
  points: ScrollPoint[];
  /** "" when there are no more points. */
  next_cursor: string;
  partial?: boolean;
  shards_answered?: number;
  shards_total?: number;
}

export interface CountRequest {
  collection?: string;
  /** JSON filter; "" or absent: every point. */
  filter?: string;
}
export interface CountResponse {
  count: Uint64;
  partial?: boolean;
  shards_answered?: number;
  shards_total?: number;
}

export interface CreateFieldIndexRequest {
  collection?: string;
  field: string;
  type: string;
}
export interface CreateFieldIndexResponse {
  created: boolean;
}
export interface DropFieldIndexRequest {
  collection?: string;
  field: string;
}
export interface DropFieldIndexResponse {
  dropped: boolean;
}
export interface GetBatchRequest {
  collection?: string;
  /** Integer ids; string ids go in `string_ids` (answered after the integers). */
  ids: WireId[];
  string_ids?: string[];
  with_vector?: boolean;
  with_payload?: boolean;
}
/** One id's state, as Get answers it. */
export interface PointRecord {
  id: WireId;
  string_id?: string;
  found: boolean;
  vector: number[];
  payload?: string;
  version: Uint64;
  deleted: boolean;
}
export interface GetBatchResponse {
  points: PointRecord[];
}
export interface DeleteBatchRequest {
  collection?: string;
  ids: WireId[];
  string_ids?: string[];
  consistency?: string;
  version?: Uint64;
  /** The sender's shard count of the collection (routers); 0 or absent: not checked. */
  shard_number?: number;
}
export interface DeleteBatchResponse {
  deleted: number;
  version: Uint64;
  /** From a node: per id in wire order, 1 where a live point was removed (empty from a router). */
  removed?: Uint8Array;
}
export interface DeleteByFilterRequest {
  collection?: string;
  filter: string;
  consistency?: string;
  version?: Uint64;
}
export interface DeleteByFilterResponse {
  deleted: Uint64;
  version: Uint64;
}

/**
 * `vector`'s packed wire form (`vector_bytes` of SearchRequest, PutRequest and Point): its
 * float32 values little-endian, 4 bytes each. A Float32Array is viewed, not copied, on a
 * little-endian host; anything else is converted (rounding to float32).
 */
export function packVector(vector: ArrayLike<number>): Uint8Array {
  if (vector instanceof Float32Array && LITTLE_ENDIAN) {
    return new Uint8Array(vector.buffer, vector.byteOffset, vector.byteLength);
  }
  const out = new Uint8Array(vector.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < vector.length; i++) view.setFloat32(i * 4, vector[i], true);
  return out;
}

/**
 * A validated vector in the form it came in: a plain array as `vector`, a Float32Array (from
 * `vector_bytes`) packed again as `vector_bytes` (a view, no per-value work): what a router
 * forwards to storage nodes.
 */
export function vectorToWire(
  vector: number[] | Float32Array,
): { vector: number[]; vector_bytes?: Uint8Array } {
  return Array.isArray(vector) ? { vector } : { vector: [], vector_bytes: packVector(vector) };
}

/** True when this host stores a Float32Array's values little-endian (every common one). */
export const LITTLE_ENDIAN: boolean = new Uint8Array(new Float32Array([1]).buffer)[3] === 0x3f;

// ----- Service -----

/** Every RPC of `vectordb.VectorDB` with its request and response types. */
export interface VectorDBMethods {
  Put: { request: PutRequest; response: PutResponse };
  PutBatch: { request: PutBatchRequest; response: PutBatchResponse };
  Get: { request: GetRequest; response: GetResponse };
  Delete: { request: DeleteRequest; response: DeleteResponse };
  Search: { request: SearchRequest; response: SearchResponse };
  CreateCollection: { request: CreateCollectionRequest; response: CreateCollectionResponse };
  DropCollection: { request: DropCollectionRequest; response: DropCollectionResponse };
  ListCollections: { request: ListCollectionsRequest; response: ListCollectionsResponse };
  Stats: { request: StatsRequest; response: StatsResponse };
  Members: { request: MembersRequest; response: MembersResponse };
  Drain: { request: DrainRequest; response: DrainResponse };
  Backup: { request: BackupRequest; response: BackupResponse };
  ListBackups: { request: ListBackupsRequest; response: ListBackupsResponse };
  Restore: { request: RestoreRequest; response: RestoreResponse };
  DeleteBackup: { request: DeleteBackupRequest; response: DeleteBackupResponse };
  SearchBatch: { request: SearchBatchRequest; response: SearchBatchResponse };
  Scroll: { request: ScrollRequest; response: ScrollResponse };
  Count: { request: CountRequest; response: CountResponse };
  CreateFieldIndex: { request: CreateFieldIndexRequest; response: CreateFieldIndexResponse };
  DropFieldIndex: { request: DropFieldIndexRequest; response: DropFieldIndexResponse };
  GetBatch: { request: GetBatchRequest; response: GetBatchResponse };
  DeleteBatch: { request: DeleteBatchRequest; response: DeleteBatchResponse };
  DeleteByFilter: { request: DeleteByFilterRequest; response: DeleteByFilterResponse };
}

/** The RPC names, in proto order. */
export type MethodName = keyof VectorDBMethods;
export const METHOD_NAMES: readonly MethodName[] = [
  "Put",
  "PutBatch",
  "Get",
  "Delete",
  "Search",
  "CreateCollection",
  "DropCollection",
  "ListCollections",
  "Stats",
  "Members",
  "Drain",
  "Backup",
  "ListBackups",
  "Restore",
  "DeleteBackup",
  "SearchBatch",
  "Scroll",
  "Count",
  "CreateFieldIndex",
  "DropFieldIndex",
  "GetBatch",
  "DeleteBatch",
  "DeleteByFilter",
];

/** Callback of a unary call. */
export type UnaryCallback<Res> = (error: grpc.ServiceError | null, response?: Res) => void;

/** A unary client method with grpc-js's overloads. */
export interface UnaryMethod<Req, Res> {
  (request: Req, callback: UnaryCallback<Res>): grpc.ClientUnaryCall;
  (request: Req, metadata: grpc.Metadata, callback: UnaryCallback<Res>): grpc.ClientUnaryCall;
  (
    request: Req,
    options: Partial<grpc.CallOptions>,
    callback: UnaryCallback<Res>,
  ): grpc.ClientUnaryCall;
  (
    request: Req,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: UnaryCallback<Res>,
  ): grpc.ClientUnaryCall;
}

/** A grpc-js client of `vectordb.VectorDB`. */
export type VectorDBClient =
  & grpc.Client
  & {
    [K in MethodName]: UnaryMethod<VectorDBMethods[K]["request"], VectorDBMethods[K]["response"]>;
  };

/** Constructor of {@link VectorDBClient}. */
export interface VectorDBClientConstructor {
  new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: Partial<grpc.ClientOptions>,
  ): VectorDBClient;
  service: grpc.ServiceDefinition;
}

/** Server handlers for `vectordb.VectorDB`; pass to `server.addService(vectorDbService, h)`. */
export type VectorDBHandlers = {
  [K in MethodName]: grpc.handleUnaryCall<
    VectorDBMethods[K]["request"],
    VectorDBMethods[K]["response"]
  >;
};

/**
 * The service's definition, loaded from the .proto (src/common/proto_services.ts: the services
 * only; reflection loads the message descriptors with proto-loader when asked).
 */
export const packageDefinition: protoLoader.PackageDefinition = withSearchCodecs(
  loadServices(PROTO_PATH, LOADER_OPTIONS),
);

/**
 * `def` with Search and SearchBatch (de)serialized by api/search_codec.ts instead of protobufjs:
 * the same objects, without protobufjs's object conversions (the router's hot path).
 */
function withSearchCodecs(def: protoLoader.PackageDefinition): protoLoader.PackageDefinition {
  const name = "vectordb.VectorDB";
  const service = def[name] as protoLoader.ServiceDefinition;
  const codecs = (
    base: protoLoader.MethodDefinition<object, object>,
    c: {
      requestSerialize: (v: never) => Buffer;
      requestDeserialize: (b: Buffer) => object;
      responseSerialize: (v: never) => Buffer;
      responseDeserialize: (b: Buffer) => object;
    },
  ) => ({ ...base, ...c }) as unknown as protoLoader.MethodDefinition<object, object>;
  return {
    ...def,
    [name]: {
      ...service,
      Search: codecs(service.Search, {
        requestSerialize: encodeSearchRequest,
        requestDeserialize: decodeSearchRequest,
        responseSerialize: encodeSearchResponse,
        responseDeserialize: decodeSearchResponse,
      }),
      SearchBatch: codecs(service.SearchBatch, {
        requestSerialize: encodeSearchBatchRequest,
        requestDeserialize: decodeSearchBatchRequest,
        responseSerialize: encodeSearchBatchResponse,
        responseDeserialize: decodeSearchBatchResponse,
      }),
    },
  };
}

const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
  vectordb: { VectorDB: VectorDBClientConstructor };
};

/** Client constructor: `new VectorDBClient("127.0.0.1:50050", credentials, CHANNEL_OPTIONS)`. */
export const VectorDBClient: VectorDBClientConstructor = loaded.vectordb.VectorDB;

/**
 * The limits of each request, checked on its raw bytes before decoding (common/wire_limits.ts):
 * the byte limits of VECTORDB_REQUEST_BYTES_MAX (common/limits.ts) and the lists counted.
 */
export const VECTORDB_REQUEST_LIMITS: Readonly<Record<MethodName, RequestLimit>> = (() => {
  const vector = (field: number): RequestLimit["repeated"] => [
    { field, name: "vector", max: DIMENSION_MAX, unit: "values" },
  ];
  const out = {} as Record<MethodName, RequestLimit>;
  for (const method of METHOD_NAMES) {
    out[method] = { bytes_max: VECTORDB_REQUEST_BYTES_MAX[method] };
  }
  out.Put.repeated = vector(2);
  out.Search.repeated = vector(1);
  out.SearchBatch.repeated = [{
    field: 1,
    name: "searches",
    max: SEARCH_BATCH_MAX,
    unit: "searches",
    // A search's vector must be packed (one field), like a batch point's.
    element_fields_max: REQUEST_FIELDS_MAX,
  }];
  out.PutBatch.repeated = [{
    field: 1,
    name: "points",
    max: BATCH_POINTS_MAX,
    unit: "points",
    element_fields_max: POINT_FIELDS_MAX,
  }];
  // String ids are counted here; `ids` + `string_ids` is checked against the same limit decoded.
  out.GetBatch.repeated = [{ field: 5, name: "string_ids", max: GET_BATCH_MAX, unit: "ids" }];
  out.DeleteBatch.repeated = [{
    field: 3,
    name: "string_ids",
    max: BATCH_POINTS_MAX,
    unit: "ids",
  }];
  return out;
})();

/**
 * The service definition servers add (`server.addService(vectorDbService, handlers)`): each
 * request deserializer first checks {@link VECTORDB_REQUEST_LIMITS} on the raw bytes and hands a
 * refused request to the handler as a `RefusedRequest`, which `UnaryGuard` answers. PutBatch
 * requests are decoded by `decodePutBatchRequest` (batch_codec.ts), ~20x faster than protobufjs;
 * Search and SearchBatch by search_codec.ts (as their clients' messages, {@link packageDefinition}).
 */
export const vectorDbService: grpc.ServiceDefinition = limitService(
  {
    ...VectorDBClient.service,
    PutBatch: { ...VectorDBClient.service.PutBatch, requestDeserialize: decodePutBatchRequest },
  },
  VECTORDB_REQUEST_LIMITS,
);

/**
 * A client of `address` (host:port) with {@link CHANNEL_OPTIONS}; plaintext unless
 * `credentials` say otherwise (api/security.ts builds TLS credentials).
 */
export function createClient(
  address: string,
  options: Partial<grpc.ClientOptions> = {},
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
): VectorDBClient {
  return new VectorDBClient(address, credentials, {
    ...CHANNEL_OPTIONS,
    ...options,
  });
}
