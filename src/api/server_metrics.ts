/**
 * The metrics every server (storage node or router) has: process metrics (prom-client's
 * defaults), build info, gRPC requests by method and status (counted by the {@link UnaryGuard}
 * wrapping each handler), and refusals of the API-key and cluster-secret checks (read at scrape
 * time from {@link SecurityConfig.refused}). HTTP requests are counted by the HTTP API itself
 * (http.ts). Node- and router-specific families are added by node/metrics.ts and
 * router/metrics.ts.
 *
 * | family                                       | type      | labels              |
 * |----------------------------------------------|-----------|---------------------|
 * | `vectordb_build_info`                        | gauge (1) | version, role       |
 * | `vectordb_grpc_requests_total`               | counter   | method, code        |
 * | `vectordb_grpc_request_duration_seconds`     | histogram | method, code        |
 * | `vectordb_auth_refusals_total`               | counter   | code                |
 * | `process_*`, `nodejs_*`                      | prom-client defaults |          |
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Metrics, RequestMetrics } from "../common/metrics.ts";
import type { SecurityConfig } from "./security.ts";

/** A server's metrics and the recorder its guards take. */
export interface ServerMetrics {
  metrics: Metrics;
  /** Pass as `UnaryGuardOptions.metrics`. */
  grpc: RequestMetrics;
}

/** The gRPC status name of `code` ("OK", "NOT_FOUND"). */
export function grpcCodeName(code: number): string {
  return grpc.status[code] ?? String(code);
}

/** The families every server has (see the module comment). */
export function serverMetrics(
  role: "node" | "router",
  version: string,
  security: SecurityConfig | null,
  options: { process?: boolean } = {},
): ServerMetrics {
  const metrics = new Metrics();
  if (options.process ?? true) metrics.processMetrics();
  metrics.gauge(
    "vectordb_build_info",
    "Always 1; the software version and the process's role",
    () => [{ labels: { version, role }, value: 1 }],
  );
  const requests = new RequestMetrics(metrics, "vectordb_grpc", "gRPC requests", grpcCodeName);
  if (security !== null) {
    metrics.counterFrom(
      "vectordb_auth_refusals_total",
      "Calls refused by the API-key or cluster-secret check (gRPC and HTTP), by status",
      () => Object.entries(security.refused).map(([code, value]) => ({ labels: { code }, value })),
    );
  }
  return { metrics, grpc: requests };
}
