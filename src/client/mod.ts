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
  parsePayload,
  type Payload,
  type PointInput,
  type PutOptions,
  type ScrollOptions,
  type SearchOptions,
  splitBatches,
  type Transport,
  UpsertError,
  type UpsertOptions,
  type UpsertResult,
  VectorDbClient,
  type VectorDbClientOptions,
  type WriteOptions,
} from "./client.ts";
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
