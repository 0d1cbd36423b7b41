/**
 * The HTTP/JSON API of a storage node or router (`--http-port`, default the gRPC port + 1000;
 * 0 turns it off), served with node:http, or node:https with the process's `--tls-cert` and
 * `--tls-key`. Routes, bodies and the status mapping are in http_routes.ts; the document is
 * openapi.ts (`GET /openapi.json`).
 *
 * Every API route calls the SAME handler the gRPC server calls (`VectorDBHandlers`, wrapped by
 * the server's `UnaryGuard`): the same validation and messages, versions, statuses, the same
 * in-flight count (one limit for gRPC and HTTP together), UNAVAILABLE while closing. Each
 * request goes through, in order:
 *
 * | step | check                                                      | answer                   |
 * |------|------------------------------------------------------------|--------------------------|
 * | 1    | more than {@link HTTP_REQUESTS_MAX} requests in progress    | 429 RESOURCE_EXHAUSTED   |
 * | 2    | unknown path / path without this method                    | 404 / 405 (`Allow`)      |
 * | 3    | the API key (`authorization: Bearer KEY`), `SecurityConfig.check` of the route's gRPC method | 401 / 403 |
 * | 4    | `content-length` over the route's cap, or the body grows past it | 413 RESOURCE_EXHAUSTED (nothing parsed) |
 * | 5    | bodies being read would pass {@link HTTP_BODY_BYTES_IN_FLIGHT_MAX} | 429 RESOURCE_EXHAUSTED |
 * | 6    | the body has not arrived within the request timeout          | 408 DEADLINE_EXCEEDED    |
 * | 7    | not UTF-8, not JSON, not an object, unknown fields, lists over their count | 400 / 413 |
 * | 8    | the handler: the guard's checks, validation, the operation  | its gRPC status, mapped  |
 * | 9    | no answer within the request timeout ({@link HTTP_REQUEST_TIMEOUT_MS}) | 504 DEADLINE_EXCEEDED (a write may still apply) |
 *
 * `GET /metrics` answers the process's Prometheus metrics in the text exposition format
 * (common/metrics.ts; off with `--metrics false`, then 404). It needs role `read` when API keys
 * are configured (give the scraper a read key as its bearer token), and is open otherwise,
 * like every read. Every HTTP request is counted by `vectordb_http_requests_total` and
 * `vectordb_http_request_duration_seconds` (labels `method`, `route` (the template, or
 * `unmatched`), `code` (the HTTP status)).
 *
 * Errors are `{"error": {"status": "INVALID_ARGUMENT", "message": "..."}}`. A refusal sent
 * before the body was read keeps reading (and dropping) up to {@link HTTP_DRAIN_BYTES_MAX} so
 * the client sees the answer, then closes the connection.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { AUTHORIZATION_HEADER } from "./auth.ts";
import {
  bodyBytesMax,
  bodyTooLarge,
  errorBody,
  type HttpAnswer,
  HttpError,
  httpStatusOf,
  matchRoute,
  MethodNotAllowed,
  parseBody,
  parseQuery,
  type Route,
} from "./http_routes.ts";
import { openApiDocument } from "./openapi.ts";
import { CONSOLE_HEADERS, ConsoleFiles, defaultConsoleDir } from "./console_files.ts";
import type { VectorDBHandlers } from "./proto.ts";
import type { SecurityConfig } from "./security.ts";
import { VIA_HTTP } from "./unary.ts";
import { type Metrics, METRICS_CONTENT_TYPE, RequestMetrics } from "../common/metrics.ts";
import { ValidationError } from "./validate.ts";
import { stringifyWithIds } from "../common/point_id.ts";

/**
 * The HTTP door's flags, shared by the storage node and the router (their flag tables spread
 * it, like the security and log flags).
 */
export const HTTP_FLAGS = {
  "http-port": {
    type: "string",
    arg: "PORT",
    help: "HTTP/JSON API port (default the gRPC port + 1000; 0: off)",
  },
  metrics: {
    type: "string",
    default: "true",
    arg: "BOOL",
    help: "Prometheus metrics at GET /metrics on the HTTP port; false: none collected",
  },
} as const;

/** Most HTTP requests in progress on one server (reading, running or answering). */
export const HTTP_REQUESTS_MAX = 1024;
/** Most body bytes being read at once, all requests together (reserved by `content-length`). */
export const HTTP_BODY_BYTES_IN_FLIGHT_MAX = 512 * 1024 * 1024;
/** A request's whole time: its body must arrive and its answer be ready within it. */
export const HTTP_REQUEST_TIMEOUT_MS = 30_000;
/** Time to send the request's headers. */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;
/** After a refusal sent before the body was read: the most body bytes read and dropped. */
export const HTTP_DRAIN_BYTES_MAX = 64 * 1024 * 1024;

/** The HTTP port: `flag` when given (0: off), else the gRPC port + 1000 (0 when that is 0). */
export function resolveHttpPort(flag: string | undefined, grpc_port: number): number {
  if (flag === undefined) {
    if (grpc_port === 0) return 0;
    const port = grpc_port + 1000;
    if (port > 65535) {
      throw new RangeError(
        `The default --http-port (--port ${grpc_port} + 1000 = ${port}) is above 65535: ` +
          `give --http-port N (0 turns the HTTP API off)`,
      );
    }
    return port;
  }
  const n = Number(flag);
  if (!/^[0-9]{1,5}$/.test(flag) || n > 65535) {
    throw new RangeError(`--http-port "${flag}" must be an integer between 0 and 65535 (0: off)`);
  }
  return n;
}

/** Options of {@link HttpApi}. */
export interface HttpApiOptions {
  /** Which document `/openapi.json` serves. */
  kind: "node" | "router";
  /** The gRPC server's handlers (guarded). */
  handlers: VectorDBHandlers;
  security: SecurityConfig;
  /** Whether the health status of "" is SERVING (`/readyz`). */
  ready: () => boolean;
  log?: (message: string) => void;
  /** The process's metrics, served at `GET /metrics`; absent or null: 404 there. */
  metrics?: Metrics | null;
  request_timeout_ms?: number;
  requests_max?: number;
  body_bytes_in_flight_max?: number;
  /**
   * The web console's files (`GET /`, `GET /console/{file}`); default: the `console/` folder
   * of this checkout (console_files.ts).
   */
  console_files?: ConsoleFiles;
  /** `GET /console/state` (the router's ring shares and recall figures); absent: 404. */
  console_state?: () => unknown;
}

/** The outcome of one handler call. */
type Outcome = { ok: true; value: unknown } | { ok: false; code: number; details: string };

/** The HTTP/JSON API over one server's handlers. */
export class HttpApi {
  readonly #o: HttpApiOptions;
  readonly #log: (message: string) => void;
  readonly #timeout_ms: number;
  readonly #requests_max: number;
  readonly #bytes_max: number;
  #server: http.Server | null = null;
  #active = 0;
  #body_bytes = 0;
  #idle: (() => void) | null = null;
  /** Requests answered, by HTTP status. */
  readonly answered: Record<number, number> = {};
  readonly #requests: RequestMetrics | null;
  /** Recorders by "METHOD route". */
  readonly #recorders = new Map<string, (code: number, seconds: number) => void>();
  readonly #console: ConsoleFiles;

  constructor(options: HttpApiOptions) {
    this.#o = options;
    this.#console = options.console_files ?? ConsoleFiles.load(defaultConsoleDir());
    this.#log = options.log ?? ((m) => console.error(m));
    this.#timeout_ms = options.request_timeout_ms ?? HTTP_REQUEST_TIMEOUT_MS;
    this.#requests_max = options.requests_max ?? HTTP_REQUESTS_MAX;
    this.#bytes_max = options.body_bytes_in_flight_max ?? HTTP_BODY_BYTES_IN_FLIGHT_MAX;
    this.#requests = options.metrics
      ? new RequestMetrics(options.metrics, "vectordb_http", "HTTP requests", String, ["route"])
      : null;
  }

  /** Counts one answered request (methods outside the API's are "OTHER": bounded labels). */
  #record(method: string | undefined, route: string, status: number, t0: number): void {
    if (this.#requests === null) return;
    const verb = method === "GET" || method === "PUT" || method === "POST" ||
        method === "DELETE" || method === "HEAD"
      ? method
      : "OTHER";
    const key = `${verb} ${route}`;
    let recorder = this.#recorders.get(key);
    if (recorder === undefined) {
      recorder = this.#requests.method(verb, route);
      this.#recorders.set(key, recorder);
    }
    recorder(status, (performance.now() - t0) / 1000);
  }

  /** Requests in progress. */
  get active(): number {
    return this.#active;
  }

  /** Binds `host:port` (TLS when the security config serves TLS); resolves to the bound port. */
  listen(host: string, port: number): Promise<number> {
    const pem = this.#o.security.tls_pem;
    const server = pem !== null
      ? https.createServer({ cert: pem.cert, key: pem.key }, this.handle)
      : http.createServer(this.handle);
    server.headersTimeout = HTTP_HEADERS_TIMEOUT_MS;
    // A backstop: this API answers a slow body itself (408) before Node's own timeout fires.
    server.requestTimeout = this.#timeout_ms + 5000;
    server.maxHeadersCount = 64;
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `Cannot serve the HTTP API on ${host}:${port} (--http-port; 0 turns it off): ` +
              e.message,
          ),
        ));
      server.listen(port, host, () => {
        server.on("error", (e) => this.#log(`HTTP server error: ${e.message}`));
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  /**
   * Stops accepting, lets requests in progress finish (up to `grace_ms`), then closes every
   * connection. Requests that reach a handler meanwhile get its UNAVAILABLE once it closes.
   */
  async close(grace_ms = 5000): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    if (this.#active > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, grace_ms);
        this.#idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    server.closeAllConnections();
    await closed;
  }

  /** The request listener (also usable on a caller's own server). */
  readonly handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    this.#active++;
    let reserved = 0;
    const t0 = performance.now();
    const seen = { route: "unmatched" };
    res.on("close", () => {
      // 499 (client closed request) when the connection closed before an answer was sent.
      this.#record(req.method, seen.route, res.headersSent ? res.statusCode : 499, t0);
      this.#body_bytes -= reserved;
      reserved = 0;
      if (--this.#active === 0 && this.#idle !== null) {
        const idle = this.#idle;
        this.#idle = null;
        idle();
      }
    });
    const reserve = (n: number) => {
      reserved += n;
      this.#body_bytes += n;
    };
    this.#serve(req, res, reserve, seen).catch((e) => {
      if (!(e instanceof HttpError)) this.#log(`HTTP ${req.method} ${req.url}: ${describe(e)}`);
      this.#error(req, res, e);
    });
  };

  async #serve(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    reserve: (n: number) => void,
    seen: { route: string },
  ): Promise<void> {
    const t0_ms = performance.now();
    const deadline_ms = Date.now() + this.#timeout_ms;
    if (this.#active > this.#requests_max) {
      throw new HttpError(
        429,
        grpc.status.RESOURCE_EXHAUSTED,
        `The HTTP API has ${this.#active - 1} requests in progress, its limit of ` +
          `${this.#requests_max}; retry later`,
      );
    }
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://api.invalid");
    } catch {
      throw new HttpError(400, grpc.status.INVALID_ARGUMENT, "The request target is not a URL");
    }
    const { route, params } = matchRoute(req.method ?? "", url.pathname);
    seen.route = route.path;
    const metadata = new grpc.Metadata();
    const auth = req.headers[AUTHORIZATION_HEADER];
    if (typeof auth === "string") metadata.set(AUTHORIZATION_HEADER, auth);
    const refused = this.#o.security.authorize(route.auth_path, metadata, peerOf(req));
    if (refused !== null) {
      throw new HttpError(httpStatusOf(refused.code), refused.code, refused.details);
    }
    const query = parseQuery(route, url.searchParams);
    const text = await this.#readBody(req, route, reserve, deadline_ms);
    const body = parseBody(route, text);
    if (route.kind === "metrics") {
      const metrics = this.#o.metrics ?? null;
      if (metrics === null) {
        throw new HttpError(
          404,
          grpc.status.NOT_FOUND,
          "Metrics are off on this server (--metrics false)",
        );
      }
      this.#sendText(res, 200, await metrics.text(), METRICS_CONTENT_TYPE);
      return;
    }
    if (route.kind === "console") {
      const name = params.file ?? "index.html";
      const file = this.#console.get(name);
      if (file === null) {
        throw new HttpError(
          404,
          grpc.status.NOT_FOUND,
          `The web console has no file ${JSON.stringify(name.slice(0, 80))}`,
        );
      }
      this.answered[200] = (this.answered[200] ?? 0) + 1;
      res.writeHead(200, {
        "content-type": file.type,
        "content-length": file.body.length,
        ...CONSOLE_HEADERS,
      });
      res.end(file.body);
      return;
    }
    const answer = await this.#answer(route, params, body, query, metadata, deadline_ms, req);
    // The time this server took (the console's search playground shows it).
    const took_ms = (performance.now() - t0_ms).toFixed(2);
    this.#send(res, answer.status, answer.body, { "server-timing": `total;dur=${took_ms}` });
  }

  async #answer(
    route: Route,
    params: Readonly<Record<string, string>>,
    body: Record<string, unknown>,
    query: Readonly<Record<string, string>>,
    metadata: grpc.Metadata,
    deadline_ms: number,
    req: http.IncomingMessage,
  ): Promise<HttpAnswer> {
    switch (route.kind) {
      case "healthz":
        return { status: 200, body: { status: "alive" } };
      case "readyz":
        return this.#o.ready()
          ? { status: 200, body: { status: "SERVING" } }
          : { status: 503, body: { status: "NOT_SERVING" } };
      case "openapi":
        return { status: 200, body: openApiDocument(this.#o.kind) };
      case "metrics":
      case "console":
        throw new Error(`GET ${route.path} is answered by #serve`);
      case "console_state": {
        const state = this.#o.console_state;
        if (state === undefined) {
          throw new HttpError(
            404,
            grpc.status.NOT_FOUND,
            "GET /console/state is the router's (ring shares, recall figures); this is a " +
              "storage node",
          );
        }
        return { status: 200, body: state() };
      }
    }
    const request = route.request!(params, body, query);
    const outcome = await this.#invoke(route, request, metadata, deadline_ms, peerOf(req));
    if (!outcome.ok) {
      throw new HttpError(httpStatusOf(outcome.code), outcome.code, outcome.details);
    }
    return route.respond !== undefined
      ? route.respond(params, outcome.value)
      : { status: 200, body: outcome.value };
  }

  /** Calls the gRPC handler of the route with a call object carrying the request. */
  #invoke(
    route: Route,
    request: unknown,
    metadata: grpc.Metadata,
    deadline_ms: number,
    peer: string,
  ): Promise<Outcome> {
    const method = route.rpcFor?.(request as Record<string, unknown>) ?? route.rpc!;
    const handler = this.#o.handlers[method] as unknown as grpc.handleUnaryCall<unknown, unknown>;
    return new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() =>
        resolve({
          ok: false,
          code: grpc.status.DEADLINE_EXCEEDED,
          details: `${method} did not finish within ${this.#timeout_ms} ms (the HTTP request ` +
            `timeout); it may still complete`,
        }), Math.max(0, deadline_ms - Date.now()));
      const call = {
        request,
        metadata,
        getDeadline: () => deadline_ms,
        getPeer: () => peer,
        getPath: () => `/vectordb.VectorDB/${method}`,
        cancelled: false,
        [VIA_HTTP]: true,
      } as unknown as grpc.ServerUnaryCall<unknown, unknown>;
      handler(call, (error, value) => {
        clearTimeout(timer);
        if (error) {
          resolve({
            ok: false,
            code: error.code ?? grpc.status.INTERNAL,
            details: error.details ?? (error as { message?: string }).message ?? "",
          });
        } else resolve({ ok: true, value });
      });
    });
  }

  /** Reads the body as UTF-8 text within the route's cap and the request's deadline. */
  #readBody(
    req: http.IncomingMessage,
    route: Route,
    reserve: (n: number) => void,
    deadline_ms: number,
  ): Promise<string> {
    const cap = bodyBytesMax(route);
    const declared = req.headers["content-length"];
    let expected = cap;
    if (declared !== undefined) {
      if (!/^[0-9]{1,16}$/.test(declared)) {
        throw new HttpError(
          400,
          grpc.status.INVALID_ARGUMENT,
          `content-length ${JSON.stringify(declared.slice(0, 40))} is not a byte count`,
        );
      }
      const n = Number(declared);
      if (n > cap) throw bodyTooLarge(route, n);
      expected = n;
    } else if (req.headers["transfer-encoding"] === undefined) {
      expected = 0;
    }
    if (expected > 0 && this.#body_bytes + expected > this.#bytes_max) {
      throw new HttpError(
        429,
        grpc.status.RESOURCE_EXHAUSTED,
        `The HTTP API is reading ${this.#body_bytes} body bytes, near its limit of ` +
          `${this.#bytes_max}; a body of up to ${expected} bytes must wait: retry later`,
      );
    }
    reserve(expected);
    return new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let total = 0;
      let done = false;
      const finish = (e: Error | null, text?: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        req.off("data", onData);
        req.off("end", onEnd);
        req.off("error", onError);
        if (e !== null) reject(e);
        else resolve(text!);
      };
      const timer = setTimeout(() =>
        finish(
          new HttpError(
            408,
            grpc.status.DEADLINE_EXCEEDED,
            `The request body did not arrive within ${this.#timeout_ms} ms (${total} bytes ` +
              `read)`,
          ),
        ), Math.max(0, deadline_ms - Date.now()));
      const onData = (chunk: Buffer) => {
        total += chunk.length;
        if (total > cap) {
          finish(bodyTooLarge(route, total, true));
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = () => {
        try {
          const text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
          finish(null, text);
        } catch {
          finish(
            new HttpError(400, grpc.status.INVALID_ARGUMENT, "The request body is not UTF-8"),
          );
        }
      };
      const onError = (e: Error) => finish(e);
      req.on("data", onData);
      req.on("end", onEnd);
      req.on("error", onError);
    });
  }

  #send(res: http.ServerResponse, status: number, body: unknown, headers: object = {}): void {
    if (res.headersSent || res.destroyed) return;
    // 64-bit ids (bigints) are written as their exact digits.
    const text = stringifyWithIds(body);
    this.answered[status] = (this.answered[status] ?? 0) + 1;
    res.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(text),
      "cache-control": "no-store",
      ...headers,
    });
    res.end(text);
  }

  #sendText(res: http.ServerResponse, status: number, text: string, type: string): void {
    if (res.headersSent || res.destroyed) return;
    this.answered[status] = (this.answered[status] ?? 0) + 1;
    res.writeHead(status, {
      "content-type": type,
      "content-length": Buffer.byteLength(text),
      "cache-control": "no-store",
    });
    res.end(text);
  }

  #error(req: http.IncomingMessage, res: http.ServerResponse, e: unknown): void {
    let status = 500;
    let code: number = grpc.status.INTERNAL;
    let message = e instanceof Error ? e.message : String(e);
    const headers: Record<string, string> = {};
    if (e instanceof HttpError) {
      status = e.http;
      code = e.code;
      if (e instanceof MethodNotAllowed) headers.allow = e.allow.join(", ");
    } else if (e instanceof ValidationError) {
      status = 400;
      code = grpc.status.INVALID_ARGUMENT;
    } else {
      message = `Internal error: ${message}`;
    }
    if (status === 401) headers["www-authenticate"] = 'Bearer realm="vectordb"';
    if (!req.complete) {
      // Answer now, drop the rest of the body (bounded), then close the connection.
      headers.connection = "close";
      let dropped = 0;
      req.on("data", (chunk: Buffer) => {
        dropped += chunk.length;
        if (dropped > HTTP_DRAIN_BYTES_MAX) req.socket.destroy();
      });
      req.resume();
    }
    this.#send(res, status, errorBody(code, message), headers);
  }
}

function peerOf(req: http.IncomingMessage): string {
  return `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
}

function describe(e: unknown): string {
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}
