/**
 * One wrapper for every unary gRPC handler a server answers (the storage node's VectorDB and
 * Transfer services, the router): the checks every call goes through, in one place.
 *
 * | step | check                                        | answer                         |
 * |------|----------------------------------------------|--------------------------------|
 * | 0    | the deserializer refused the request's bytes  | its status (not run; see below)|
 * | 1    | the server is shutting down (`closing()`)     | UNAVAILABLE                    |
 * | 2    | `in_flight_max` calls already in flight       | RESOURCE_EXHAUSTED             |
 * | 3    | the call's deadline passed before it arrived  | DEADLINE_EXCEEDED (not run)    |
 * | 4    | the handler rejects or throws                 | `to_status(error)`             |
 *
 * The in-flight count covers every method one guard wraps, so calls beyond the limit are
 * refused at once rather than queued until their deadlines fire. A call counts from the moment
 * it passes the checks until its handler settles (resolves, rejects or throws synchronously):
 * exactly one decrement and exactly one callback per call. An INTERNAL answer is logged with the
 * error's stack; the client sees only the message.
 *
 * Step 0: servers add service definitions whose request deserializers check each request's
 * raw bytes against its method's limits before decoding (common/wire_limits.ts
 * `limitService`); a request over a limit, or one that does not decode, arrives as a
 * `RefusedRequest` carrying RESOURCE_EXHAUSTED or INVALID_ARGUMENT and a message naming the
 * method, the value and the limit. The guard answers that status without running the handler.
 *
 * @example
 * ```ts ignore
 * const guard = new UnaryGuard({
 *   server_name: "router",
 *   in_flight_max: 4096,
 *   closing: () => stopping,
 *   to_status: toStatus,
 * });
 * const Put = guard.wrap("Put", (request) => put(request));
 * ```
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { RequestMetrics } from "../common/metrics.ts";
import { refusalOf } from "../common/wire_limits.ts";

/**
 * Marks a call object made by the HTTP API (http.ts), whose requests its own metrics count:
 * the guard leaves them out of the gRPC request metrics.
 */
export const VIA_HTTP = "via_http";

/** A gRPC status code and its message, as a handler's callback takes them. */
export interface StatusLike {
  code: grpc.status;
  details: string;
}

/** Options of {@link UnaryGuard}. */
export interface UnaryGuardOptions {
  /** Who answers, for messages: "storage node", "router". */
  server_name: string;
  /** Most calls in flight at once across all wrapped methods; beyond it RESOURCE_EXHAUSTED. */
  in_flight_max: number;
  /** True once the server is shutting down: new calls get UNAVAILABLE. */
  closing: () => boolean;
  /** Maps a handler error to a status (each server keeps its own mapping table). */
  to_status: (error: unknown) => StatusLike;
  /** Receives a line (with the stack) for every INTERNAL answer. */
  log?: (message: string) => void;
  /**
   * Counts every call that arrived over gRPC (refusals included) by method and status, with its
   * latency (`vectordb_grpc_requests_total`, `vectordb_grpc_request_duration_seconds`). Calls
   * the HTTP API makes are counted by its own metrics instead.
   */
  metrics?: RequestMetrics;
}

/** The deadline of `call` in epoch milliseconds; Infinity when it has none. */
function deadlineMs<Req, Res>(call: grpc.ServerUnaryCall<Req, Res>): number {
  // Test doubles may omit getDeadline; grpc-js always provides it (Infinity when unset).
  if (typeof call.getDeadline !== "function") return Infinity;
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return typeof ms === "number" && !Number.isNaN(ms) ? ms : Infinity;
}

function iso(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms);
}

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

/** Wraps unary handlers with one server's closing check, in-flight cap, deadline and mapping. */
export class UnaryGuard {
  readonly #options: UnaryGuardOptions;
  readonly #log: (message: string) => void;
  #in_flight = 0;

  constructor(options: UnaryGuardOptions) {
    if (typeof options.server_name !== "string" || options.server_name === "") {
      throw new TypeError(
        `server_name ${JSON.stringify(options.server_name)} must be a non-empty string`,
      );
    }
    if (!Number.isSafeInteger(options.in_flight_max) || options.in_flight_max < 1) {
      throw new RangeError(
        `in_flight_max ${options.in_flight_max} must be a positive integer`,
      );
    }
    this.#options = options;
    this.#log = options.log ?? ((m: string) => console.error(m));
  }

  /** Calls in flight now. */
  get in_flight(): number {
    return this.#in_flight;
  }

  /** Wraps an async handler: closing check, in-flight cap, deadline check, status mapping. */
  wrap<Req, Res>(
    method: string,
    fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    // Looked up once per method: recording a call allocates nothing.
    const recorder = this.#options.metrics?.method(method) ?? null;
    return (call, callback) => {
      const o = this.#options;
      const record = recorder !== null && (call as { [VIA_HTTP]?: boolean })[VIA_HTTP] !== true
        ? recorder
        : null;
      const t0 = record !== null ? performance.now() : 0;
      const refused = refusalOf(call.request);
      if (refused !== null) {
        if (record !== null) record(refused.code, (performance.now() - t0) / 1000);
        callback(refused);
        return;
      }
      if (o.closing()) {
        if (record !== null) record(grpc.status.UNAVAILABLE, (performance.now() - t0) / 1000);
        callback({
          code: grpc.status.UNAVAILABLE,
          details: `The ${o.server_name} is shutting down`,
        });
        return;
      }
      if (this.#in_flight >= o.in_flight_max) {
        if (record !== null) {
          record(grpc.status.RESOURCE_EXHAUSTED, (performance.now() - t0) / 1000);
        }
        callback({
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: `The ${o.server_name} has ${this.#in_flight} requests in flight, its limit ` +
            `of ${o.in_flight_max}; ${method} refused`,
        });
        return;
      }
      const deadline_ms = deadlineMs(call);
      if (deadline_ms <= Date.now()) {
        if (record !== null) {
          record(grpc.status.DEADLINE_EXCEEDED, (performance.now() - t0) / 1000);
        }
        callback({
          code: grpc.status.DEADLINE_EXCEEDED,
          details: `${method} arrived after its deadline ${iso(deadline_ms)}; ` +
            `the ${o.server_name} did not run it`,
        });
        return;
      }

      this.#in_flight++;
      let settled = false;
      const settle = (error: StatusLike | null, response?: Res): void => {
        if (settled) return;
        settled = true;
        this.#in_flight--;
        if (record !== null) {
          record(error === null ? grpc.status.OK : error.code, (performance.now() - t0) / 1000);
        }
        try {
          if (error === null) callback(null, response);
          else callback(error);
        } catch (e) {
          this.#log(`${method}: answering the call failed: ${describe(e)}`);
        }
      };
      const fail = (e: unknown): void => {
        let s: StatusLike;
        try {
          s = o.to_status(e);
        } catch (mapping) {
          s = { code: grpc.status.INTERNAL, details: e instanceof Error ? e.message : String(e) };
          this.#log(`${method}: mapping an error to a status failed: ${describe(mapping)}`);
        }
        if (s.code === grpc.status.INTERNAL) this.#log(`${method} failed: ${describe(e)}`);
        settle({ code: s.code, details: s.details });
      };

      let result: Promise<Res>;
      try {
        result = Promise.resolve(fn(call.request, call));
      } catch (e) {
        fail(e);
        return;
      }
      result.then((res) => settle(null, res), fail);
    };
  }
}
