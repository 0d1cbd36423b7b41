/**
 * Limits and defaults of the public API (proto/vector_db.proto).
 *
 * Storage nodes and the router enforce the same numbers through `validate.ts`, and the client
 * CLI checks them before it sends anything, so a request is rejected with the same message
 * wherever it enters the cluster. Changing one of these is a protocol change: update the
 * comments in proto/vector_db.proto with it.
 *
 * @module
 */

/** Largest number of neighbours one Search may ask for (`SearchRequest.k`). */
export const K_MAX = 10_000;

/** Largest search beam (`SearchRequest.ef`); 0 means the server default. */
export const EF_MAX = 10_000;

/** Largest number of points in one PutBatch (`PutBatchRequest.points`). */
export const BATCH_POINTS_MAX = 10_000;

/** Most ids in one GetBatch (`GetBatchRequest.ids`). */
export const GET_BATCH_MAX = 1_000;

/** Most searches in one SearchBatch (`SearchBatchRequest.searches`). */
export const SEARCH_BATCH_MAX = 100;

/** Largest Scroll page (`ScrollRequest.limit`). */
export const SCROLL_LIMIT_MAX = 10_000;
/** Scroll page size when `ScrollRequest.limit` is 0. */
export const SCROLL_LIMIT_DEFAULT = 100;
/**
 * A Scroll page stops once its vectors hold this many bytes (32 MiB: half the message cap, so
 * ids, versions and framing always fit); its `next_cursor` then continues.
 */
export const SCROLL_PAGE_BYTES_MAX = 32 * 1024 * 1024;

/**
 * Most entries in one `vectordb.internal.Transfer` Entries page. Without vectors an entry is
 * about 15 bytes on the wire (id, version, flag), so a full page is about 240 KiB.
 */
export const ENTRIES_LIMIT_MAX = 16_384;

/** Largest vector dimension a collection may have (`CreateCollectionRequest.dimension`). */
export const DIMENSION_MAX = 65_536;

/**
 * Point payloads (`PutRequest.payload`, src/common/payload.ts): a JSON object, at most
 * PAYLOAD_BYTES_MAX bytes of UTF-8 JSON text (checked before parsing, and again on the compact
 * form stored), nested at most PAYLOAD_DEPTH_MAX objects/arrays deep (the top object is depth
 * 1), with at most PAYLOAD_KEYS_MAX keys counted over all its objects and no key longer than
 * PAYLOAD_KEY_BYTES_MAX UTF-8 bytes. 64 KiB keeps a point's payload within a few vectors' worth
 * of memory; the depth bound keeps every walk of a payload (validation, filters) shallow.
 */
export const PAYLOAD_BYTES_MAX = 65_536;
/** Deepest nesting of objects and arrays in a payload (the top object is depth 1). */
export const PAYLOAD_DEPTH_MAX = 32;
/** Most keys in one payload, counted over all its (nested) objects. */
export const PAYLOAD_KEYS_MAX = 1_024;
/** Longest key in a payload, in UTF-8 bytes. */
export const PAYLOAD_KEY_BYTES_MAX = 256;

/** Largest encoded gRPC message, in either direction: 64 MiB. */
export const MESSAGE_BYTES_MAX = 64 * 1024 * 1024;

/** Most entries in one Scan page, CopyBatch or Prune (`vectordb.internal.Transfer`). */
export const SCAN_LIMIT_MAX = 4096;

// ----- Request limits checked on the raw bytes, before protobuf decoding -----

/** Requests without a vector or a list: ids, names, a few numbers. */
export const SMALL_REQUEST_BYTES_MAX = 4 * 1024;

/** Requests with one vector (Put, Search): DIMENSION_MAX packed floats plus 4 KiB of framing. */
export const VECTOR_REQUEST_BYTES_MAX = DIMENSION_MAX * 4 + 4 * 1024;

/** A Put: one vector and one payload (PAYLOAD_BYTES_MAX of JSON text). */
export const PUT_REQUEST_BYTES_MAX = VECTOR_REQUEST_BYTES_MAX + PAYLOAD_BYTES_MAX;

/**
 * A PutBatch: the whole gRPC message cap. BATCH_POINTS_MAX points of dimension 1,536 fill 61.5
 * MB, and the CLI's load already sizes its batches to MESSAGE_BYTES_MAX; what bounds the decoding
 * cost is the point count and the field counts below, which the byte scan checks first.
 */
export const PUT_BATCH_BYTES_MAX = MESSAGE_BYTES_MAX;

/**
 * A CopyBatch: 16 MiB. The router copies part of one Scan page, which stops once its vectors
 * hold 4 MiB (SCAN_PAGE_BYTES_MAX in node/transfer_service.ts) plus at most one more vector
 * (256 KiB); 16 MiB leaves four times that, and bounds what one copy makes a node decode.
 */
export const COPY_BATCH_BYTES_MAX = 16 * 1024 * 1024;

/**
 * A SearchBatch: SEARCH_BATCH_MAX searches of one vector each (VECTOR_REQUEST_BYTES_MAX), 26 MiB.
 */
export const SEARCH_BATCH_BYTES_MAX = 26 * 1024 * 1024;

/**
 * Wire bytes of one string id at its longest in a repeated `string_ids` field: a tag byte, a
 * 2-byte length and 128 bytes of UTF-8 (ID_STRING_BYTES_MAX in common/point_id.ts).
 */
const STRING_ID_WIRE_BYTES_MAX = 1 + 2 + 128;

/**
 * A Prune: SCAN_LIMIT_MAX ids, all of them string ids at their longest (131 bytes each, 524 KiB;
 * an integer id takes at most 11), and as many versions unpacked (11 bytes each, 44 KiB), plus
 * framing: 576 KiB.
 */
export const PRUNE_BYTES_MAX = 576 * 1024;

/**
 * Most top-level wire fields of a request besides its repeated ones. An encoder writes each
 * singular field once; the rest is room for fields a newer client may add. Without it one 64 MiB
 * message of 2-byte `collection` fields costs protobufjs ~25 s of decoding.
 */
export const REQUEST_FIELDS_MAX = 64;

/**
 * Most wire fields inside one point of a PutBatch or CopyBatch: an id, a packed vector, a
 * version and a flag, with room to spare. Vectors in batches must be packed (the proto3 default
 * every encoder uses): an unpacked one takes a field per value.
 */
export const POINT_FIELDS_MAX = 16;

/**
 * Largest encoded request per RPC, checked on the raw bytes before decoding (see
 * common/wire_limits.ts); a larger one is refused with RESOURCE_EXHAUSTED naming the method,
 * the size and the limit. The lists below are counted in the same scan.
 *
 * | service                    | method                                  | bytes max | counted                      |
 * |----------------------------|-----------------------------------------|-----------|------------------------------|
 * | vectordb.VectorDB          | Put                                     | 324 KiB   | vector <= DIMENSION_MAX      |
 * | vectordb.VectorDB          | Search                                  | 260 KiB   | vector <= DIMENSION_MAX      |
 * | vectordb.VectorDB          | PutBatch                                | 64 MiB    | points <= BATCH_POINTS_MAX, 16 fields per point |
 * | vectordb.VectorDB          | SearchBatch                             | 26 MiB    | searches <= SEARCH_BATCH_MAX, 64 fields per search |
 * | vectordb.VectorDB          | Get, Delete, Create/DropCollection, ListCollections, Stats, Members, Drain, Backup, ListBackups, Restore, DeleteBackup, Create/DropFieldIndex | 4 KiB | |
 * | vectordb.VectorDB          | Scroll, Count, DeleteByFilter (a filter)| 20 KiB    |                              |
 * | vectordb.VectorDB          | GetBatch                                | 132 KiB   | string_ids <= GET_BATCH_MAX (ids + string_ids <= GET_BATCH_MAX checked decoded) |
 * | vectordb.VectorDB          | DeleteBatch                             | 1,284 KiB | string_ids <= BATCH_POINTS_MAX (ids + string_ids <= BATCH_POINTS_MAX checked decoded) |
 * | vectordb.internal.Transfer | Scan (a cursor of up to 128 B)          | 4 KiB     |                              |
 * | vectordb.internal.Transfer | Entries (a filter)                      | 20 KiB    |                              |
 * | vectordb.internal.Transfer | CopyBatch                               | 16 MiB    | points <= SCAN_LIMIT_MAX, 16 fields per point |
 * | vectordb.internal.Transfer | Prune                                   | 576 KiB   | ids, string_ids, versions <= SCAN_LIMIT_MAX each (ids + string_ids checked decoded) |
 * | vectordb.internal.Transfer | Digest                                  | 4 KiB     |                              |
 * | vectordb.internal.Transfer | BucketEntries                           | 588 KiB   | buckets <= DIGEST_BUCKETS (1,024); ids, string_ids <= SCAN_LIMIT_MAX each |
 * | vectordb.internal.Transfer | ShardImageOpen, ShardImageRead, ShardImageClose, ShardInstallBegin, ShardInstallCommit, ShardDrop | 4 KiB | |
 * | vectordb.internal.Transfer | ShardInstallChunk (a chunk <= SHARD_CHUNK_BYTES_MAX) | 1,028 KiB | |
 * | vectordb.internal.Gossip   | Exchange (cluster/gossip_transport.ts)  | 65 KiB    | (payload 64 KiB + sender)    |
 *
 * Every request also has at most REQUEST_FIELDS_MAX other top-level fields.
 */
/**
 * Requests that carry a filter (Scroll, Count, DeleteByFilter, Transfer.Entries): a filter's
 * FILTER_BYTES_MAX (16 KiB) plus room for the other fields. Written out (not derived) because
 * the filter limits are declared further down.
 */
const FILTER_REQUEST_BYTES_MAX = 20 * 1024;
/**
 * GetBatch: GET_BATCH_MAX ids (`ids` and `string_ids` together), all of them string ids at their
 * longest (131 bytes each on the wire; an integer id takes at most 10 packed), plus 4 KiB for the
 * other fields: 132 KiB.
 */
const GET_BATCH_BYTES_MAX = Math.ceil((GET_BATCH_MAX * STRING_ID_WIRE_BYTES_MAX) / 1024) * 1024 +
  4 * 1024;
/**
 * DeleteBatch: BATCH_POINTS_MAX ids (`ids` and `string_ids` together), all of them string ids at
 * their longest, plus 4 KiB for the other fields: 1,284 KiB.
 */
const DELETE_BATCH_BYTES_MAX =
  Math.ceil((BATCH_POINTS_MAX * STRING_ID_WIRE_BYTES_MAX) / 1024) * 1024 + 4 * 1024;

export const VECTORDB_REQUEST_BYTES_MAX = {
  Put: PUT_REQUEST_BYTES_MAX,
  PutBatch: PUT_BATCH_BYTES_MAX,
  Get: SMALL_REQUEST_BYTES_MAX,
  Delete: SMALL_REQUEST_BYTES_MAX,
  Search: VECTOR_REQUEST_BYTES_MAX,
  CreateCollection: SMALL_REQUEST_BYTES_MAX,
  DropCollection: SMALL_REQUEST_BYTES_MAX,
  ListCollections: SMALL_REQUEST_BYTES_MAX,
  Stats: SMALL_REQUEST_BYTES_MAX,
  Members: SMALL_REQUEST_BYTES_MAX,
  Drain: SMALL_REQUEST_BYTES_MAX,
  Backup: SMALL_REQUEST_BYTES_MAX,
  ListBackups: SMALL_REQUEST_BYTES_MAX,
  Restore: SMALL_REQUEST_BYTES_MAX,
  DeleteBackup: SMALL_REQUEST_BYTES_MAX,
  SearchBatch: SEARCH_BATCH_BYTES_MAX,
  Scroll: FILTER_REQUEST_BYTES_MAX,
  Count: FILTER_REQUEST_BYTES_MAX,
  CreateFieldIndex: SMALL_REQUEST_BYTES_MAX,
  DropFieldIndex: SMALL_REQUEST_BYTES_MAX,
  GetBatch: GET_BATCH_BYTES_MAX,
  DeleteBatch: DELETE_BATCH_BYTES_MAX,
  DeleteByFilter: FILTER_REQUEST_BYTES_MAX,
} as const;

/** Largest chunk of a shard image in ShardImageRead and ShardInstallChunk: 1 MiB. */
export const SHARD_CHUNK_BYTES_MAX = 1024 * 1024;
/** Largest shard image a node receives: 64 GiB. */
export const SHARD_IMAGE_BYTES_MAX = 64 * 2 ** 30;

/** Largest encoded request per RPC of `vectordb.internal.Transfer` (see the table above). */
export const TRANSFER_REQUEST_BYTES_MAX = {
  Scan: SMALL_REQUEST_BYTES_MAX,
  CopyBatch: COPY_BATCH_BYTES_MAX,
  Prune: PRUNE_BYTES_MAX,
  Entries: FILTER_REQUEST_BYTES_MAX,
  Digest: SMALL_REQUEST_BYTES_MAX,
  // 1,024 packed bucket numbers (at most 5 bytes each), a cursor of up to 128 bytes, the rest
  // (12 KiB), and up to 4,096 ids as Prune's.
  BucketEntries: 12 * 1024 + PRUNE_BYTES_MAX,
  ShardImageOpen: SMALL_REQUEST_BYTES_MAX,
  ShardImageRead: SMALL_REQUEST_BYTES_MAX,
  ShardImageClose: SMALL_REQUEST_BYTES_MAX,
  ShardInstallBegin: SMALL_REQUEST_BYTES_MAX,
  ShardInstallChunk: SHARD_CHUNK_BYTES_MAX + SMALL_REQUEST_BYTES_MAX,
  ShardInstallCommit: SMALL_REQUEST_BYTES_MAX,
  ShardDrop: SMALL_REQUEST_BYTES_MAX,
} as const;

/**
 * Largest gossip incarnation: 2^32 - 1, the range of `Member.incarnation` (uint32) in the
 * public API. A member raises its incarnation by one for each refutation, so it never gets
 * near; the bound exists so that a forged claim cannot be placed where its owner cannot answer
 * it. Claims (suspect, dead, left) are accepted only below it, so the owner can always refute
 * with one more; alive updates up to it; a member's own incarnation never goes above it.
 */
export const INCARNATION_MAX = 0xffff_ffff;

/**
 * Largest write version (`version` fields, see "Versions" in proto/vector_db.proto): 2^53 - 1.
 * 0 in a request means "stamp it for me".
 */
export { VERSION_MAX } from "./version.ts";

/** Largest point id: ids are uint32. */
export const ID_MAX = 0xffff_ffff;

/** Collection names: 1 to 64 characters from `[A-Za-z0-9_-]` (they name directories). */
export const COLLECTION_NAME_CHARS_MAX = 64;

/** The collection an empty `collection` field selects. */
export const DEFAULT_COLLECTION = "default";

/** Smallest and largest HNSW `m` (links per node per layer). */
export const M_MIN = 2;
export const M_MAX = 128;
/** HNSW `m` when `CreateCollectionRequest.m` is 0. */
export const DEFAULT_M = 16;

/** Largest HNSW `ef_construction`; it may not be smaller than `m`. */
export const EF_CONSTRUCTION_MAX = 10_000;
/** HNSW `ef_construction` when `CreateCollectionRequest.ef_construction` is 0. */
export const DEFAULT_EF_CONSTRUCTION = 200;

/** Distance metrics a collection may use. */
export const METRICS = ["l2", "cosine", "dot"] as const;
/** A distance metric name as it travels in `CreateCollectionRequest.metric`. */
export type Metric = typeof METRICS[number];
/** Metric when `CreateCollectionRequest.metric` is empty. */
export const DEFAULT_METRIC: Metric = "l2";

/**
 * Vector quantization of a collection's index (`CreateCollectionRequest.quantization`):
 * `none` keeps floats only; `int8` walks one-byte codes and re-ranks exactly (index/quantizer.ts).
 */
export const QUANTIZATIONS = ["none", "int8"] as const;
/** A quantization name as it travels in `CreateCollectionRequest.quantization`. */
export type Quantization = typeof QUANTIZATIONS[number];
/** Re-ranking factor of an int8 collection when `CreateCollectionRequest.rescore` is 0. */
export const DEFAULT_RESCORE = 4;
/** Largest re-ranking factor (the best `rescore * k` candidates are scored exactly). */
export const RESCORE_MAX = 1000;

/**
 * Most shards of one collection (`CreateCollectionRequest.shard_number`). A shard is a unit of
 * placement, search and movement (src/cluster/placement.ts); each replica of it on a node has
 * its own index, WAL and snapshots, so the bound also bounds a node's open files per collection.
 */
export const SHARDS_MAX = 256;
/**
 * Most collections a router holds as layout conflicts (its nodes report two layouts of one
 * collection; StatsResponse.layout_conflicts); the set is cleared as a whole when full.
 */
export const LAYOUT_CONFLICTS_MAX = 1024;
/** Most replicas of one shard (`replication_factor`, and the router's `--replication-factor`). */
export const REPLICATION_FACTOR_MAX = 64;

/** Write consistency levels; the empty string selects the server default. */
export const CONSISTENCY_LEVELS = ["one", "quorum", "all"] as const;
/** A write consistency level as it travels in the `consistency` request fields. */
export type Consistency = typeof CONSISTENCY_LEVELS[number];

/** Membership states as they travel in `Member.state`. */
export const MEMBER_STATES = ["alive", "suspect", "dead", "left"] as const;
/** A membership state name. */
export type MemberState = typeof MEMBER_STATES[number];

// ----- Payload filters (common/filter.ts) and payload indexes (storage/payload_index.ts) -----
//
// A filter arrives from a client as JSON (Qdrant's form); every size below is checked while it
// is parsed, before any part of it is believed, so a hostile filter costs at most a bounded
// walk. A filter that breaks one is refused with a `FilterError` naming its JSON path.

/** Largest filter as JSON text, in UTF-8 bytes: 16 KiB, room for ~1,000 short conditions. */
export const FILTER_BYTES_MAX = 16 * 1024;

/** Deepest nesting of filters inside conditions; the top-level filter is depth 1. */
export const FILTER_DEPTH_MAX = 16;

/** Most conditions in one filter, nested ones included (a nested filter counts as one too). */
export const FILTER_CONDITIONS_MAX = 256;

/** Longest list in one condition: `match.any`, `match.except`, `has_id`. */
export const FILTER_VALUES_MAX = 1024;

/** Most list elements in one filter, all conditions together. */
export const FILTER_VALUES_TOTAL_MAX = 8192;

/** Longest payload key in a condition or an index (`meta.lang`), in UTF-16 code units. */
export const FILTER_KEY_CHARS_MAX = 256;

/** Most dot-separated parts of one payload key; bounds the walk into a payload per test. */
export const FILTER_KEY_PARTS_MAX = 16;

/**
 * Longest string value in a `match` condition, in UTF-16 code units. Keyword indexes skip
 * longer payload strings: no condition can name them.
 */
export const FILTER_STRING_CHARS_MAX = 1024;

/** Most payload indexes (indexed fields) one collection may define. */
export const PAYLOAD_INDEXES_MAX = 64;
/** Payload index types (Qdrant's names): CreateFieldIndex's `type`. */
export const PAYLOAD_FIELD_TYPES = ["keyword", "integer", "float", "bool"] as const;
