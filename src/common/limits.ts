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

/** Largest vector dimension a collection may have (`CreateCollectionRequest.dimension`). */
export const DIMENSION_MAX = 65_536;

/** Largest encoded gRPC message, in either direction: 64 MiB. */
export const MESSAGE_BYTES_MAX = 64 * 1024 * 1024;

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

/** Write consistency levels; the empty string selects the server default. */
export const CONSISTENCY_LEVELS = ["one", "quorum", "all"] as const;
/** A write consistency level as it travels in the `consistency` request fields. */
export type Consistency = typeof CONSISTENCY_LEVELS[number];

/** Membership states as they travel in `Member.state`. */
export const MEMBER_STATES = ["alive", "suspect", "dead", "left"] as const;
/** A membership state name. */
export type MemberState = typeof MEMBER_STATES[number];
