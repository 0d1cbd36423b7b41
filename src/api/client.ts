/**
 * A promise-based client of the public API with a deadline on every call.
 *
 * Used by the CLI and usable by the router and tests:
 *
 * ```ts
 * const api = new ApiClient("127.0.0.1:50050", { timeout_ms: 5000 });
 * const { results } = await api.call("Search", { vector: [0.1, 0.2], k: 5 });
 * api.close();
 * ```
 *
 * A failed call rejects with grpc-js's `ServiceError` (`code`, `details`);
 * {@link describeGrpcError} turns any error into one readable line.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { createClient, type MethodName, type UnaryMethod, type VectorDBClient } from "./proto.ts";
import type { VectorDBMethods } from "./proto.ts";
import { channelSetup, type ClientSecurity, insecureClient } from "./security.ts";

/** Request type of RPC `K`. */
export type RequestOf<K extends MethodName> = VectorDBMethods[K]["request"];
/** Response type of RPC `K`. */
export type ResponseOf<K extends MethodName> = VectorDBMethods[K]["response"];

/** Default deadline of a call. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Options of one call. */
export interface ApiCallOptions {
  /** Deadline relative to now; default the client's `timeout_ms`. */
  timeout_ms?: number;
  /** Extra request metadata. */
  metadata?: grpc.Metadata;
}

/** Options of {@link ApiClient}. */
export interface ApiClientOptions {
  /** Default deadline of each call; default {@link DEFAULT_TIMEOUT_MS}. */
  timeout_ms?: number;
  /** Extra grpc-js client/channel options. */
  client_options?: Partial<grpc.ClientOptions>;
  /**
   * Channel credentials (TLS) and interceptors (API key, cluster proof): see
   * api/security.ts `clientSecurity`. Default plaintext, no metadata.
   */
  security?: ClientSecurity;
  /**
   * False: calls capture no caller stack. grpc-js builds an `Error` at every call to append
   * its caller's stack to a failure's `stack`; a server that calls other servers on every
   * request (the router) pays that capture per call for a stack it never reads. Failures keep
   * their code, details and message. Default true.
   */
  caller_stacks?: boolean;
}

/** Thrown for a bad client option. */
export class ApiClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ApiClientError";
  }
}

function checkTimeout(timeout_ms: number): number {
  if (!Number.isFinite(timeout_ms) || timeout_ms <= 0) {
    throw new ApiClientError(`Timeout ${timeout_ms} ms must be a positive number of milliseconds`);
  }
  return timeout_ms;
}

/** Promise-based client of `vectordb.VectorDB` at one address. */
export class ApiClient {
  /** host:port this client talks to. */
  readonly address: string;
  /** Default deadline of each call, in milliseconds. */
  readonly timeout_ms: number;
  /** The underlying grpc-js client. */
  readonly raw: VectorDBClient;
  /** See {@link ApiClientOptions.caller_stacks}. */
  readonly caller_stacks: boolean;

  constructor(address: string, options: ApiClientOptions = {}) {
    this.address = address;
    this.timeout_ms = checkTimeout(options.timeout_ms ?? DEFAULT_TIMEOUT_MS);
    this.caller_stacks = options.caller_stacks ?? true;
    const security = options.security ?? insecureClient();
    const setup = channelSetup(security, address);
    const interceptors = [
      ...security.interceptors,
      ...(options.client_options?.interceptors ?? []),
    ];
    this.raw = createClient(
      address,
      { ...setup.options, ...options.client_options, interceptors },
      setup.credentials,
    );
  }

  /** Calls RPC `method`; rejects with a grpc-js `ServiceError` on failure. */
  call<K extends MethodName>(
    method: K,
    request: RequestOf<K>,
    options: ApiCallOptions = {},
  ): Promise<ResponseOf<K>> {
    const timeout_ms = checkTimeout(options.timeout_ms ?? this.timeout_ms);
    const fn = this.raw[method] as unknown as UnaryMethod<RequestOf<K>, ResponseOf<K>>;
    return new Promise((resolve, reject) => {
      const start = () =>
        fn.call(
          this.raw,
          request,
          options.metadata ?? new grpc.Metadata(),
          { deadline: Date.now() + timeout_ms },
          (error, response) => {
            if (error) reject(error);
            else if (response === undefined) {
              reject(new ApiClientError(`${method} returned no response and no error`));
            } else resolve(response);
          },
        );
      if (this.caller_stacks) start();
      else withoutStacks(start);
    });
  }

  /** Closes the channel; pending calls fail with CANCELLED. */
  close(): void {
    this.raw.close();
  }
}

/**
 * Runs `start` (which starts a grpc-js call, synchronously) with V8's stack capture off, so the
 * caller-stack `Error` grpc-js makes per call records no frames; restored before returning,
 * also when `start` throws. Only the synchronous start is affected: the call's own errors,
 * made later, have their stacks.
 */
export function withoutStacks<T>(start: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return start();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Whether `error` looks like a grpc-js `ServiceError`. */
export function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === "number";
}

/**
 * One line describing `error`: `STATUS_NAME: details` for a gRPC error (e.g.
 * `UNAVAILABLE: No connection established`), otherwise the error's message.
 */
export function describeGrpcError(error: unknown): string {
  let line: string;
  if (isServiceError(error)) {
    const name = grpc.status[error.code] ?? `STATUS_${error.code}`;
    line = `${name}: ${error.details || error.message}`;
  } else if (error instanceof Error) {
    line = error.message;
  } else {
    line = String(error);
  }
  // grpc-js decorates connection failures with "Last error: Error: …" and an empty
  // "Resolution note:"; drop that noise.
  return line
    .replace(/\s+/g, " ")
    .replace(/Last error: Error: /g, "Last error: ")
    .replace(/\s*Resolution note:\s*$/, "")
    .trim();
}
