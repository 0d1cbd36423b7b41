/**
 * The wire protocol of `vectordb.internal.Transfer` (proto/internal.proto): its message types,
 * service definition and a promise-based client. The storage node serves it
 * (src/node/transfer_service.ts); the router's rebalancing drives it.
 *
 * **Versions on the wire** are uint64 fields, which the loader (`longs: String`) decodes as
 * decimal strings. Requests may carry strings or numbers ({@link Uint64}); {@link TransferClient}
 * decodes the versions of Scan and Entries replies to numbers, so {@link ScanResponse} and
 * {@link EntriesResponse} have `number`s.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { channelSetup, type ClientSecurity, insecureClient } from "./security.ts";
import { loadServices } from "../common/proto_services.ts";
import { fileURLToPath } from "node:url";
import { CHANNEL_OPTIONS, type Uint64, type WireId } from "./proto.ts";
import { idFromWire, idsFromWire, type PointId } from "../common/point_id.ts";
import { POINT_FIELDS_MAX, SCAN_LIMIT_MAX, TRANSFER_REQUEST_BYTES_MAX } from "../common/limits.ts";
import { limitService, type RequestLimit } from "../common/wire_limits.ts";
import { DIGEST_BUCKETS } from "../common/digest.ts";

export type { PointId, Uint64, WireId };

/** Most entries in one Scan page, CopyBatch or Prune (common/limits.ts). */
export { SCAN_LIMIT_MAX };

// ------------------------------------------------------------------------------ protocol

/**
 * One entry as Scan returns it through {@link TransferClient}: `id` a canonical PointId (from
 * the wire's `id` and `string_id`, src/common/point_id.ts), `version` a number.
 */
export interface TransferPoint {
  id: PointId;
  /** The stored vector (normalised for cosine); empty for a tombstone. */
  vector: number[];
  /** 1 .. VERSION_MAX; 0 only for entries written before versions existed. */
  version: number;
  /** True for a tombstone (the id's last write was a delete). */
  deleted: boolean;
  /** A live entry's payload: compact JSON text; "" (or absent) for none. */
  payload?: string;
}

/** One entry of a CopyBatch request. */
export interface CopyPoint {
  /** The id as on the wire (`idToWire`): an integer id here, or 0 and `string_id`. */
  id: WireId;
  string_id?: string;
  /** The collection's dimension for a live entry; empty (or absent) for a tombstone. */
  vector?: number[];
  /** 1 .. VERSION_MAX, a number or a decimal string. */
  version: Uint64;
  deleted?: boolean;
  /** A live entry's payload as JSON text of an object; "" or absent for none. */
  payload?: string;
}

export interface ScanRequest {
  collection: string;
  /** The cursor as on the wire (`idToWire` of the last id of the previous page). */
  after_id: WireId;
  after_string_id?: string;
  from_start: boolean;
  limit: number;
  /** Only the entries of shard `shard` (see proto/internal.proto). */
  by_shard?: boolean;
  shard?: number;
}
/** A Scan page through {@link TransferClient} (the wire's next_after_* pair as `next_after`). */
export interface ScanResponse {
  points: TransferPoint[];
  next_after: PointId;
  done: boolean;
  dimension: number;
}
export interface CopyBatchRequest {
  collection: string;
  /** 1 .. 4,096 entries. */
  points: CopyPoint[];
}
export interface CopyBatchResponse {
  /** Entries whose version was above the node's (written). */
  applied: number;
  /** Entries the node already held at the same or a newer version. */
  skipped: number;
}
export interface PruneRequest {
  collection: string;
  /** 1 .. 4,096 ids in all: integer ids here, string ids in `string_ids` (`idsToWire`). */
  ids: WireId[];
  string_ids?: string[];
  /** The version scanned for each id of `ids` then `string_ids`: numbers or decimal strings. */
  versions: Uint64[];
}
export interface PruneResponse {
  /** Entries forgotten. */
  deleted: number;
  /** Ids absent, or held at a newer version. */
  skipped: number;
}

export interface EntriesRequest {
  collection: string;
  /** The cursor as on the wire (`idToWire` of the last id of the previous page). */
  after_id: WireId;
  after_string_id?: string;
  from_start: boolean;
  /** 1 .. ENTRIES_LIMIT_MAX. */
  limit: number;
  with_vector: boolean;
  /** JSON filter: sets `matched`; "" or absent: every live entry matches. */
  filter?: string;
  /** Include the payloads of live entries. */
  with_payload?: boolean;
}
/**
 * An Entries page: parallel lists through {@link TransferClient}: `ids` canonical PointIds
 * (the wire's `ids` then `string_ids`, ascending by `compareIds`), versions as numbers.
 */
export interface EntriesResponse {
  ids: PointId[];
  versions: number[];
  deleted: boolean[];
  /** With `with_vector`: the live entries' vectors, in order, `dimension` values each. */
  vectors: number[];
  dimension: number;
  done: boolean;
  /** One per entry: a live entry matching the request's filter. */
  matched?: boolean[];
  /** With `with_payload`: one per live entry, its payload's JSON text ("" for none). */
  payloads?: string[];
}

/**
 * One Scan entry as a server sends it: the id as the wire's pair (`idToWire`: an integer id in
 * `id`, bigints as decimal strings; or 0 and `string_id`).
 */
export interface TransferPointWire extends Omit<TransferPoint, "id"> {
  id: WireId;
  string_id: string;
}

/** A Scan page as a server sends it (the cursor as the wire's `next_after_*` pair). */
export interface ScanWireResponse {
  points: TransferPointWire[];
  next_after_id: WireId;
  next_after_string_id: string;
  done: boolean;
  dimension: number;
}

/**
 * An Entries page as a server sends it: integer ids in `ids` (bigints as decimal strings), then
 * string ids in `string_ids`; `versions`, `deleted` and `matched` go with the concatenation.
 */
export interface EntriesWireResponse extends Omit<EntriesResponse, "ids"> {
  ids: WireId[];
  string_ids: string[];
}

/** The RPCs of `vectordb.internal.Transfer` with their request and response types. */
export interface TransferMethods {
  Scan: { request: ScanRequest; response: ScanResponse };
  CopyBatch: { request: CopyBatchRequest; response: CopyBatchResponse };
  Prune: { request: PruneRequest; response: PruneResponse };
  Entries: { request: EntriesRequest; response: EntriesResponse };
  Digest: { request: DigestRequest; response: DigestResponse };
  BucketEntries: { request: BucketEntriesRequest; response: ScanResponse };
  ShardImageOpen: { request: ShardImageOpenRequest; response: ShardImageOpenResponse };
  ShardImageRead: { request: ShardImageReadRequest; response: ShardImageReadResponse };
  ShardImageClose: { request: { image_id: string }; response: Record<string, never> };
  ShardInstallBegin: { request: ShardInstallBeginRequest; response: { install_id: string } };
  ShardInstallChunk: { request: ShardInstallChunkRequest; response: { received: Uint64 } };
  ShardInstallCommit: {
    request: { install_id: string };
    response: { merged: Uint64; points: Uint64 };
  };
  ShardDrop: { request: ShardDropRequest; response: { dropped: Uint64 } };
}

/** ShardDrop (proto/internal.proto): empty a shard unit whose root is still `expected_root`. */
export interface ShardDropRequest {
  collection: string;
  shard: number;
  /** 8 bytes: the root digest read before the sync (common/digest.ts `rootBytes`). */
  expected_root: Uint8Array;
  /** The entry count of that digest. */
  expected_entries: Uint64;
}

/** A Digest request: one shard replica's digest (common/digest.ts). */
export interface DigestRequest {
  collection: string;
  /** 0 .. shard_number - 1. */
  shard: number;
  /** Include the bucket digests (8 KiB). */
  with_buckets: boolean;
}
/** A Digest reply (through {@link TransferClient}: `entries` a number). */
export interface DigestResponse {
  /** 8 bytes: the root digest (common/digest.ts `rootBytes`). */
  root: Uint8Array;
  entries: number;
  buckets: number;
  /** With `with_buckets`: `buckets` × 8 bytes; else empty. */
  bucket_digests: Uint8Array;
  shard_number: number;
}
/** A BucketEntries request: a page of one shard replica's entries in the given buckets. */
export interface BucketEntriesRequest {
  collection: string;
  shard: number;
  /** 1 .. DIGEST_BUCKETS distinct buckets. */
  buckets: number[];
  /** The cursor as on the wire (`idToWire` of the previous page's `next_after`). */
  after_id: WireId;
  after_string_id?: string;
  from_start: boolean;
  /** 1 .. SCAN_LIMIT_MAX. */
  limit: number;
  /** Ids, versions and deleted flags only. */
  keys_only?: boolean;
  /** Only these ids (`idsToWire`: integer ids here, string ids in `string_ids`). */
  ids?: WireId[];
  string_ids?: string[];
}

/** ShardImageOpen (proto/internal.proto): one shard unit of a collection. */
export interface ShardImageOpenRequest {
  collection: string;
  shard: number;
}
/** A pinned image: id, size, the seq it covers, CRC-32, entries (uint64s as decimal strings). */
export interface ShardImageOpenResponse {
  image_id: string;
  size: Uint64;
  seq: Uint64;
  crc32: number;
  points: Uint64;
  tombstones: Uint64;
}
export interface ShardImageReadRequest {
  image_id: string;
  offset: Uint64;
  /** 1 .. SHARD_CHUNK_BYTES_MAX. */
  max_bytes: number;
}
export interface ShardImageReadResponse {
  data: Uint8Array;
  crc32: number;
  done: boolean;
}
export interface ShardInstallBeginRequest {
  collection: string;
  shard: number;
  size: Uint64;
  seq: Uint64;
  crc32: number;
}
export interface ShardInstallChunkRequest {
  install_id: string;
  offset: Uint64;
  data: Uint8Array;
  crc32: number;
}

const packageDefinition = loadServices(
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

/**
 * The limits of each Transfer request, checked on its raw bytes before decoding
 * (common/wire_limits.ts; byte limits in common/limits.ts TRANSFER_REQUEST_BYTES_MAX).
 */
export const TRANSFER_REQUEST_LIMITS: Readonly<Record<keyof TransferMethods, RequestLimit>> = {
  Scan: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.Scan },
  CopyBatch: {
    bytes_max: TRANSFER_REQUEST_BYTES_MAX.CopyBatch,
    repeated: [{
      field: 3,
      name: "points",
      max: SCAN_LIMIT_MAX,
      unit: "points",
      element_fields_max: POINT_FIELDS_MAX,
    }],
  },
  Entries: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.Entries },
  Digest: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.Digest },
  BucketEntries: {
    bytes_max: TRANSFER_REQUEST_BYTES_MAX.BucketEntries,
    repeated: [
      { field: 3, name: "buckets", max: DIGEST_BUCKETS, unit: "buckets" },
      // Each list bounded here; `ids` + `string_ids` is checked decoded.
      { field: 9, name: "ids", max: SCAN_LIMIT_MAX, unit: "ids" },
      { field: 10, name: "string_ids", max: SCAN_LIMIT_MAX, unit: "ids" },
    ],
  },
  Prune: {
    bytes_max: TRANSFER_REQUEST_BYTES_MAX.Prune,
    repeated: [
      { field: 3, name: "ids", max: SCAN_LIMIT_MAX, unit: "ids" },
      { field: 4, name: "versions", max: SCAN_LIMIT_MAX, unit: "versions" },
      // Each list bounded here; `ids` + `string_ids` is checked decoded (validatePrune).
      { field: 5, name: "string_ids", max: SCAN_LIMIT_MAX, unit: "ids" },
    ],
  },
  ShardImageOpen: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.ShardImageOpen },
  ShardImageRead: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.ShardImageRead },
  ShardImageClose: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.ShardImageClose },
  ShardInstallBegin: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.ShardInstallBegin },
  ShardInstallChunk: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.ShardInstallChunk },
  ShardInstallCommit: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.ShardInstallCommit },
  ShardDrop: { bytes_max: TRANSFER_REQUEST_BYTES_MAX.ShardDrop },
};

/**
 * The service definition of `vectordb.internal.Transfer` that the node adds: request
 * deserializers check {@link TRANSFER_REQUEST_LIMITS} first (see `limitService`).
 */
export const transferService: grpc.ServiceDefinition = limitService(
  TransferGrpc.service,
  TRANSFER_REQUEST_LIMITS,
);

/** A promise-based client of one node's Transfer service. */
export class TransferClient {
  readonly address: string;
  readonly timeout_ms: number;
  readonly raw: TransferGrpcClient;

  /** `security`: TLS and the cluster proof (api/security.ts); default plaintext, no proof. */
  constructor(
    address: string,
    timeout_ms: number,
    options: Partial<grpc.ClientOptions> = {},
    security: ClientSecurity = insecureClient(),
  ) {
    this.address = address;
    this.timeout_ms = timeout_ms;
    const setup = channelSetup(security, address);
    this.raw = new TransferGrpc(address, setup.credentials, {
      ...CHANNEL_OPTIONS,
      ...setup.options,
      ...options,
      interceptors: [...security.interceptors, ...(options.interceptors ?? [])],
    });
  }

  /**
   * Calls `method`; Scan and Entries replies come back with numeric versions (see the module
   * comment). `wait_for_ready`: wait for a reconnecting channel (up to the deadline).
   */
  call<K extends keyof TransferMethods>(
    method: K,
    request: TransferMethods[K]["request"],
    timeout_ms: number = this.timeout_ms,
    wait_for_ready = false,
  ): Promise<TransferMethods[K]["response"]> {
    const fn = this.raw[method] as TransferGrpcClient[K];
    return new Promise((resolve, reject) => {
      fn.call(
        this.raw,
        request as never,
        { deadline: Date.now() + timeout_ms, waitForReady: wait_for_ready },
        (error: grpc.ServiceError | null, response?: unknown) => {
          if (error) reject(error);
          else if (method === "Scan" || method === "BucketEntries") {
            resolve(decodeScanResponse(response) as TransferMethods[K]["response"]);
          } else if (method === "Entries") {
            resolve(decodeEntriesResponse(response) as TransferMethods[K]["response"]);
          } else if (method === "Digest") {
            const d = response as DigestResponse & { entries: Uint64 };
            resolve({ ...d, entries: Number(d.entries) } as TransferMethods[K]["response"]);
          } else resolve(response as TransferMethods[K]["response"]);
        },
      );
    });
  }

  close(): void {
    this.raw.close();
  }
}

/**
 * A Scan reply as the loader decodes it (ids and versions as strings), with PointIds and
 * numeric versions. A peer's ids are checked as a client's (PointIdError when invalid).
 */
export function decodeScanResponse(response: unknown): ScanResponse {
  const r = response as Omit<ScanResponse, "points" | "next_after"> & {
    points: (Omit<TransferPoint, "version" | "id"> & {
      id: WireId;
      string_id?: string;
      version: Uint64;
    })[];
    next_after_id: WireId;
    next_after_string_id?: string;
  };
  return {
    done: r.done,
    dimension: r.dimension,
    next_after: idFromWire(r.next_after_id, r.next_after_string_id, "next_after_"),
    points: r.points.map((p, i) => ({
      id: idFromWire(p.id, p.string_id, `points[${i}].`),
      vector: p.vector,
      version: Number(p.version),
      deleted: p.deleted,
      payload: p.payload,
    })),
  };
}

/**
 * An Entries reply as the loader decodes it (ids and versions as strings), with PointIds (the
 * integer ids, then the string ids) and numeric versions.
 */
export function decodeEntriesResponse(response: unknown): EntriesResponse {
  const r = response as Omit<EntriesResponse, "versions" | "ids"> & {
    ids: WireId[];
    string_ids?: string[];
    versions: Uint64[];
  };
  const { string_ids: _s, ...rest } = r;
  return { ...rest, ids: idsFromWire(r.ids, r.string_ids), versions: r.versions.map(Number) };
}
