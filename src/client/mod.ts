/**
 * The vector database's client library, for Deno and Node (Node runs the TypeScript through
 * tsx). Import it by path, through `deno.json`'s `exports` (`"."`), or through `package.json`'s
 * `exports` after `npm link` / a `file:` dependency.
 *
 * @example
 * ```ts
 * import { VectorDbClient } from "./mod.ts";
 *
 * const db = new VectorDbClient({
 *   address: "127.0.0.1:50050",
 *   apiKey: Deno.env.get("VECTORDB_API_KEY"), // optional: "authorization: Bearer KEY"
 *   timeoutMs: 5_000, // deadline of each attempt
 *   retry: { attempts: 8, baseMs: 100, capMs: 5_000, totalMs: 30_000 },
 * });
 * try {
 *   await db.createCollection("docs", { dimension: 3, metric: "cosine" });
 *   const { count } = await db.upsert("docs", [
 *     { id: 1, vector: [0.1, 0.2, 0.3] },
 *     { id: 2, vector: [0.9, 0.8, 0.7] },
 *   ]);
 *   const { results } = await db.search("docs", [0.1, 0.2, 0.3], { k: 1 });
 *   const point = await db.get("docs", 2);
 *   console.log(count, results[0].id, point.found); // 2 1 true
 *   // Ids may also be 64-bit integers (bigint) or strings such as UUIDs:
 *   await db.upsert("docs", [
 *     { id: "3f2c5a9e-0b7d-4e1a-9c3b-2d6f8e4a1b0c", vector: [0.5, 0.5, 0.5] },
 *     { id: 18446744073709551615n, vector: [0.2, 0.1, 0.0] },
 *   ]);
 *   const [uuid] = await db.getBatch("docs", ["3f2c5a9e-0b7d-4e1a-9c3b-2d6f8e4a1b0c"]);
 *   console.log(uuid.id, uuid.found); // 3f2c5a9e-0b7d-4e1a-9c3b-2d6f8e4a1b0c true
 *   await db.delete("docs", 2);
 *   console.log((await db.listCollections()).map((c) => c.name));
 * } finally {
 *   db.close();
 * }
 * ```
 *
 * Failed calls reject with grpc-js's `ServiceError` (`code`, `details`; `describeGrpcError`
 * makes one line of it) after the retries of retry.ts.
 *
 * @module
 */
export {
  type BatchSearch,
  type CallOptions,
  ClientOptionError,
  type CountOptions,
  DEFAULT_ADDRESS,
  DEFAULT_SEARCH_K,
  DEFAULT_TIMEOUT_MS,
  type FieldIndexType,
  type FilterInput,
  filterWire,
  type GetBatchOptions,
  type IdInput,
  parsePayload,
  type Payload,
  type PointId,
  type PointInput,
  type PointState,
  type PutOptions,
  type ScrollOptions,
  type ScrollPage,
  type SearchAnswer,
  type SearchOptions,
  splitBatches,
  type Transport,
  UpsertError,
  type UpsertOptions,
  type UpsertResult,
  VectorDbClient,
  type VectorDbClientOptions,
  type WithPointId,
  type WriteOptions,
} from "./client.ts";
export { PointIdError } from "../common/point_id.ts";
export {
  backoffCapMs,
  backoffMs,
  DEFAULT_RETRY,
  IDEMPOTENT_METHODS,
  isRetryable,
  type RetryClock,
  type RetryEvent,
  type RetryPolicy,
  RetryPolicyError,
  withRetry,
} from "./retry.ts";
export {
  describeGrpcError,
  isServiceError,
  type RequestOf,
  type ResponseOf,
} from "../api/client.ts";
export type * from "../api/proto.ts";
export { METHOD_NAMES } from "../api/proto.ts";
export type { Consistency, Metric } from "../common/limits.ts";
