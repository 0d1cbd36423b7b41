/**
 * The HTTP/JSON API's routes, as data, and the pure parts of serving them: matching a method
 * and path, turning a path, query and JSON body into the request of the gRPC method the route
 * performs, the request limits, and the gRPC status → HTTP status mapping. The server
 * (http.ts) reads the body, checks the API key and calls the SAME handler the gRPC server
 * calls (its `UnaryGuard`), so validation, versions, limits and statuses are those of gRPC.
 *
 * | method | path                                  | gRPC method     | role  |
 * |--------|---------------------------------------|-----------------|-------|
 * | GET    | /healthz                              | (process alive) | open  |
 * | GET    | /readyz                               | (health of "")  | open  |
 * | GET    | /openapi.json                         | (like reflection) | read |
 * | GET    | /metrics                              | (Prometheus text) | read |
 * | GET    | /                                     | (web console: index.html) | open |
 * | GET    | /console/state                        | (router: ring shares, recall figures) | read |
 * | GET    | /console/{file}                       | (web console: a static file) | open |
 * | GET    | /collections                          | ListCollections | read  |
 * | GET    | /collections/{name}                   | ListCollections, one entry | read |
 * | PUT    | /collections/{name}                   | CreateCollection | admin |
 * | DELETE | /collections/{name}                   | DropCollection  | admin |
 * | PUT    | /collections/{name}/points            | PutBatch        | write |
 * | POST   | /collections/{name}/points/search     | Search          | read  |
 * | POST   | /collections/{name}/points/search/batch | SearchBatch (`searches` take no `collection`) | read |
 * | POST   | /collections/{name}/points/scroll     | Scroll          | read  |
 * | POST   | /collections/{name}/points/count      | Count           | read  |
 * | PUT    | /collections/{name}/index             | CreateFieldIndex (body `{field, type}`) | write |
 * | DELETE | /collections/{name}/index/{field}     | DropFieldIndex  | write |
 * | POST   | /collections/{name}/points/get        | GetBatch        | read  |
 * | POST   | /collections/{name}/points/delete     | DeleteBatch (`{ids}`) or DeleteByFilter (`{filter}`) | write |
 * | PUT    | /collections/{name}/points/{id}       | Put             | write |
 * | GET    | /collections/{name}/points/{id}       | Get (not found: 404) | read |
 * | DELETE | /collections/{name}/points/{id}       | Delete (`?consistency=&version=`) | write |
 * | GET    | /stats                                | Stats           | read  |
 * | GET    | /members                              | Members         | read  |
 * | POST   | /drain                                | Drain           | admin |
 * | POST   | /collections/{name}/backups           | Backup (body `{name}`) | admin |
 * | GET    | /backups                              | ListBackups     | admin |
 * | POST   | /backups/{name}/restore               | Restore (body `{collection}`) | admin |
 * | DELETE | /backups/{name}                       | DeleteBackup    | admin |
 *
 * Bodies are JSON objects with the proto's snake_case field names; a field the route does not
 * take (a typo, or `collection`/`name`, which come from the path) is INVALID_ARGUMENT naming
 * it. uint64 fields (`version`, counts) are answered as decimal strings, as in the proto3 JSON
 * mapping, and accepted as strings or numbers.
 *
 * **Payloads** are JSON objects in the bodies (`"payload": {...}` of a point, a Put, a Get
 * answer, a search result), where gRPC carries their JSON text; null or absent is none. Search
 * takes `with_payload` and `with_vector`; a result shows `payload` (an object) when asked for and
 * the point has one, and `vector` when asked for. A Get answer has `payload`: the object, or
 * null when the point has none.
 *
 * **Limits.** A body is read with a cap of {@link JSON_BYTES_FACTOR} times the method's gRPC
 * limit (common/limits.ts `VECTORDB_REQUEST_BYTES_MAX`: JSON spends about 3 bytes per
 * protobuf byte on floats) BEFORE parsing; over it: 413 RESOURCE_EXHAUSTED. After parsing, the
 * lists the gRPC server counts on the wire (`VECTORDB_REQUEST_LIMITS`: `points` ≤ 10,000,
 * `vector` ≤ 65,536) are counted: over: 413 RESOURCE_EXHAUSTED naming the field.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { SMALL_REQUEST_BYTES_MAX } from "../common/limits.ts";
import { formatBytes } from "../common/wire_limits.ts";
import { type MethodName, VECTORDB_REQUEST_LIMITS, vectorDbService, type WireId } from "./proto.ts";
import {
  canonicalId,
  formatId,
  idFromJson,
  idFromWire,
  type PointId,
  PointIdError,
  validateStringId,
} from "../common/point_id.ts";
import { quote, validateCollectionName, ValidationError } from "./validate.ts";

/** JSON bodies may be this many times the method's protobuf limit. */
export const JSON_BYTES_FACTOR = 4;

/** HTTP methods the API uses. */
export type HttpMethod = "GET" | "PUT" | "POST" | "DELETE";

/** What a route does besides calling a gRPC method. */
export type RouteKind =
  | "rpc"
  | "healthz"
  | "readyz"
  | "openapi"
  | "metrics"
  | "console"
  | "console_state";

/** Path parameters by name (decoded). */
export type Params = Readonly<Record<string, string>>;

/** One route of the HTTP API. */
export interface Route {
  method: HttpMethod;
  /** Template with `{name}` and `{id}` segments. */
  path: string;
  kind: RouteKind;
  /** The gRPC method performed (kind "rpc"). */
  rpc?: MethodName;
  /** The gRPC path whose access rule (auth.ts `accessOf`) applies. */
  auth_path: string;
  /** Fields the JSON body may hold; null: the route takes no body. */
  body_fields: readonly string[] | null;
  /** Query parameters the route takes. */
  query: readonly string[];
  summary: string;
  /** Builds the gRPC request; throws a ValidationError or {@link HttpError}. */
  request?: (params: Params, body: Record<string, unknown>, query: Params) => unknown;
  /**
   * Picks the gRPC method from the built request when one route serves two (POST
   * .../points/delete: DeleteBatch or DeleteByFilter); both must have the role of `auth_path`.
   */
  rpcFor?: (request: Record<string, unknown>) => MethodName;
  /** Shapes the gRPC response into the HTTP answer (default: 200 and the response). */
  respond?: (params: Params, response: unknown) => HttpAnswer;
}

/** An HTTP answer: status and JSON body. */
export interface HttpAnswer {
  status: number;
  body: unknown;
}

/** An error answered as `{"error": {"status", "message"}}` with HTTP status `http`. */
export class HttpError extends Error {
  constructor(readonly http: number, readonly code: grpc.status, message: string) {
    super(message);
    this.name = "HttpError";
  }
}

/** HTTP status of each gRPC status (google.rpc's mapping; RESOURCE_EXHAUSTED is load here). */
export const HTTP_STATUS_OF: Readonly<Record<number, number>> = {
  [grpc.status.OK]: 200,
  [grpc.status.CANCELLED]: 499,
  [grpc.status.UNKNOWN]: 500,
  [grpc.status.INVALID_ARGUMENT]: 400,
  [grpc.status.DEADLINE_EXCEEDED]: 504,
  [grpc.status.NOT_FOUND]: 404,
  [grpc.status.ALREADY_EXISTS]: 409,
  [grpc.status.PERMISSION_DENIED]: 403,
  [grpc.status.RESOURCE_EXHAUSTED]: 429,
  [grpc.status.FAILED_PRECONDITION]: 400,
  [grpc.status.ABORTED]: 409,
  [grpc.status.OUT_OF_RANGE]: 400,
  [grpc.status.UNIMPLEMENTED]: 501,
  [grpc.status.INTERNAL]: 500,
  [grpc.status.UNAVAILABLE]: 503,
  [grpc.status.DATA_LOSS]: 500,
  [grpc.status.UNAUTHENTICATED]: 401,
};

/** The HTTP status of gRPC status `code` (500 for a code not in the table). */
export function httpStatusOf(code: number): number {
  return HTTP_STATUS_OF[code] ?? 500;
}

/** The name of gRPC status `code` ("INVALID_ARGUMENT"). */
export function statusName(code: number): string {
  return grpc.status[code] ?? "UNKNOWN";
}

/** The JSON error body. */
export function errorBody(
  code: number,
  message: string,
): { error: { status: string; message: string } } {
  return { error: { status: statusName(code), message } };
}

const VECTORDB = "/vectordb.VectorDB/";
const HEALTH_PATH = "/grpc.health.v1.Health/Check";
const REFLECTION_PATH = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
/** No gRPC service answers it; auth.ts gives `vectordb.Metrics` role read. */
const METRICS_PATH = "/vectordb.Metrics/Scrape";

function rpc(
  method: HttpMethod,
  path: string,
  name: MethodName,
  summary: string,
  body_fields: readonly string[] | null,
  request: Route["request"],
  extra: Partial<Route> = {},
): Route {
  return {
    method,
    path,
    kind: "rpc",
    rpc: name,
    auth_path: VECTORDB + name,
    body_fields,
    query: [],
    summary,
    request,
    ...extra,
  };
}

/**
 * `response` as a gRPC client decodes it: encoded and decoded with the method's own serializers,
 * so the JSON has every field of the proto message (absent ones at their zero value, lists as
 * `[]`) and uint64 fields as decimal strings, whatever number types the handler built it with
 * (a storage node's Stats counts are numbers; the router's, copied from nodes, are strings).
 */
function asOnTheWire(method: MethodName, response: unknown): unknown {
  const m = vectorDbService[method];
  return m.responseDeserialize(m.responseSerialize(response));
}

/** Runs `fn`, answering a PointIdError as 400 INVALID_ARGUMENT with its message. */
function idChecked<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PointIdError) {
      throw new HttpError(400, grpc.status.INVALID_ARGUMENT, e.message);
    }
    throw e;
  }
}

/**
 * The id in a path (decoded): all digits is an integer id (0 .. 2^64 - 1, exact: it is text),
 * a JSON-quoted segment (`%22123%22`) the string inside, anything else the string id itself.
 */
export function pathPointId(segment: string): PointId {
  return idChecked(() => {
    if (/^[0-9]+$/.test(segment)) {
      if (segment.length > 20) {
        throw new PointIdError(
          "id in the path",
          segment,
          "is not an integer between 0 and 2^64 - 1",
        );
      }
      return canonicalId(BigInt(segment), "id in the path");
    }
    if (segment.length >= 2 && segment.startsWith('"') && segment.endsWith('"')) {
      let inner: unknown;
      try {
        inner = JSON.parse(segment);
      } catch {
        inner = segment;
      }
      if (typeof inner === "string") return validateStringId(inner, "id in the path");
    }
    return validateStringId(segment, "id in the path");
  });
}

/** An id as a request's wire fields: `{id}` (a bigint as decimal text) or `{id: 0, string_id}`. */
function wireFields(id: PointId): { id: WireId; string_id?: string } {
  if (typeof id === "string") return { id: 0, string_id: id };
  return { id: typeof id === "bigint" ? id.toString() : id };
}

/** A path id as the gRPC request's `id`/`string_id` fields. */
function pathId(segment: string): { id: WireId; string_id?: string } {
  return wireFields(pathPointId(segment));
}

/**
 * A JSON body's id (a number up to 2^53 - 1, or a string; see `idFromJson`) as wire fields;
 * absent stays absent (the handler names a missing id). A bad one is 400 naming `field`.
 */
function bodyId(value: unknown, field: string): { id?: WireId; string_id?: string } {
  if (value === undefined) return {};
  return wireFields(idChecked(() => idFromJson(value, field)));
}

/**
 * A JSON body's `ids` list (numbers and strings mixed) as the wire's `ids` and `string_ids`;
 * anything but a list is left for the handler to refuse. Each bad id is 400 naming `ids[i]`.
 */
function bodyIds(value: unknown): { ids?: unknown; string_ids?: string[] } {
  if (!Array.isArray(value)) return value === undefined ? {} : { ids: value };
  const ids: WireId[] = [];
  const string_ids: string[] = [];
  value.forEach((v, i) => {
    const f = wireFields(idChecked(() => idFromJson(v, `ids[${i}]`)));
    if (f.string_id !== undefined) string_ids.push(f.string_id);
    else ids.push(f.id);
  });
  return { ids, string_ids };
}

/** An answer item's id: its wire pair (`id`, `string_id`) as one JSON id (a bigint exact). */
function answerId(x: Record<string, unknown>): PointId {
  return idFromWire(x.id, x.string_id);
}

/**
 * The searches of a batch body, each given the path's collection. A search may not name its own
 * collection (the path does): INVALID_ARGUMENT naming `searches[i].collection`. Anything that is
 * not a list of objects is left for the handler to refuse with its own message.
 */
/** The fields a search of a batch body may have (the path names the collection). */
const BATCH_SEARCH_FIELDS = new Set(["vector", "k", "ef", "filter", "with_payload", "with_vector"]);

function batchSearches(searches: unknown, collection: string): unknown {
  if (!Array.isArray(searches)) return searches;
  return searches.map((s, i) => {
    if (s === null || typeof s !== "object" || Array.isArray(s)) return s;
    const fields = s as Record<string, unknown>;
    for (const key of Object.keys(fields)) {
      if (!BATCH_SEARCH_FIELDS.has(key)) {
        throw new ValidationError(
          `searches[${i}].${key}`,
          fields[key],
          `searches[${i}].${key} is not a field of a search here (` +
            `${[...BATCH_SEARCH_FIELDS].join(", ")}; the collection comes from the path)`,
        );
      }
    }
    return {
      ...fields,
      ...(fields.filter === undefined
        ? {}
        : { filter: bodyFilter(fields.filter, `searches[${i}].filter`) }),
      collection,
    };
  });
}

/**
 * A filter in a JSON body (an object, Qdrant's form; null/absent for none) as the JSON text the
 * gRPC request carries; anything else is INVALID_ARGUMENT naming `field`. The filter itself
 * (common/filter.ts) is checked by the handler, which names the bad part's path.
 */
function bodyFilter(value: unknown, field: string): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError(
      400,
      grpc.status.INVALID_ARGUMENT,
      `${field} must be a JSON object (a filter: {"must": [...], ...}), got ${quote(value)}`,
    );
  }
  return JSON.stringify(value);
}

/** A body with its `filter` object (if any) as JSON text. */
function withFilter(b: Record<string, unknown>): Record<string, unknown> {
  return b.filter === undefined ? b : { ...b, filter: bodyFilter(b.filter, "filter") };
}

/**
 * Points of an answer (Scroll, GetBatch, search results) with their payload text as the object
 * it holds and their id pair as one JSON id (number, exact big integer, or string).
 */
function answerPoints(points: Record<string, unknown>[]): Record<string, unknown>[] {
  return points.map((x) => {
    const { string_id: _, ...rest } = x;
    const out: Record<string, unknown> = { ...rest, id: answerId(x) };
    if (typeof x.payload === "string") {
      if (x.payload === "") delete out.payload;
      else out.payload = answerPayload(x.payload);
    }
    return out;
  });
}

/**
 * A payload in a JSON body (an object, or null/absent for none) as the JSON text the gRPC
 * request carries; anything else is INVALID_ARGUMENT naming `field`. The limits
 * (common/payload.ts) are checked on that text by the handler.
 */
function bodyPayload(value: unknown, field: string): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError(
      400,
      grpc.status.INVALID_ARGUMENT,
      `${field} must be a JSON object (or null), got ${quote(value)}`,
    );
  }
  return JSON.stringify(value);
}

/** A payload's JSON text from a gRPC answer as the object it holds; null for none. */
function answerPayload(text: unknown): unknown {
  return typeof text === "string" && text !== "" ? JSON.parse(text) : null;
}

/** The points of a PutBatch body with their payloads as JSON text (others left to the validator). */
function bodyPoints(points: unknown): unknown {
  if (!Array.isArray(points)) return points;
  return points.map((p, i) => {
    if (p === null || typeof p !== "object" || Array.isArray(p)) return p;
    const point = p as Record<string, unknown>;
    const id = bodyId(point.id, `points[${i}].id`);
    if (point.payload === undefined) return { ...point, ...id };
    return { ...point, ...id, payload: bodyPayload(point.payload, `points[${i}].payload`) };
  });
}

/** The collection in the path (an invalid name is INVALID_ARGUMENT naming it). */
function pathCollection(p: Params): string {
  return validateCollectionName(p.name, "collection name in the path");
}

/** Every route, most specific first. */
export const ROUTES: readonly Route[] = [
  {
    method: "GET",
    path: "/healthz",
    kind: "healthz",
    auth_path: HEALTH_PATH,
    body_fields: null,
    query: [],
    summary: "Liveness: 200 while the process serves HTTP",
  },
  {
    method: "GET",
    path: "/readyz",
    kind: "readyz",
    auth_path: HEALTH_PATH,
    body_fields: null,
    query: [],
    summary: 'Readiness: 200 when the health status of "" is SERVING, else 503',
  },
  {
    method: "GET",
    path: "/openapi.json",
    kind: "openapi",
    auth_path: REFLECTION_PATH,
    body_fields: null,
    query: [],
    summary: "This API as an OpenAPI 3.0 document (role read, like gRPC reflection)",
  },
  {
    method: "GET",
    path: "/metrics",
    kind: "metrics",
    auth_path: METRICS_PATH,
    body_fields: null,
    query: [],
    summary: "Prometheus metrics, text exposition format (role read when API keys are " +
      "configured; 404 with --metrics false)",
  },
  {
    method: "GET",
    path: "/",
    kind: "console",
    auth_path: HEALTH_PATH,
    body_fields: null,
    query: [],
    summary: "The web console (console/index.html; open: it holds no data, and asks for the " +
      "API key when the API needs one)",
  },
  {
    method: "GET",
    path: "/console/state",
    kind: "console_state",
    auth_path: METRICS_PATH,
    body_fields: null,
    query: [],
    summary: "Router: each storage node's share of the ring and the recall monitor's figures " +
      "(a node: 404)",
  },
  {
    method: "GET",
    path: "/console/{file}",
    kind: "console",
    auth_path: HEALTH_PATH,
    body_fields: null,
    query: [],
    summary: "One static file of the web console (only names in the console folder)",
  },
  rpc("GET", "/collections", "ListCollections", "List collections", null, () => ({})),
  rpc(
    "GET",
    "/collections/{name}",
    "ListCollections",
    "One collection's settings (404 when it does not exist)",
    null,
    (p) => (pathCollection(p), {}),
    {
      respond: (p, response) => {
        const found = (response as { collections: { name: string }[] }).collections
          .find((c) => c.name === p.name);
        if (found === undefined) {
          throw new HttpError(
            404,
            grpc.status.NOT_FOUND,
            `Collection ${quote(p.name)} does not exist`,
          );
        }
        return { status: 200, body: found };
      },
    },
  ),
  rpc(
    "PUT",
    "/collections/{name}",
    "CreateCollection",
    "Create a collection (idempotent with the same settings)",
    [
      "dimension",
      "metric",
      "m",
      "ef_construction",
      "quantization",
      "rescore",
      "shard_number",
      "replication_factor",
    ],
    (p, b) => ({ ...b, name: pathCollection(p) }),
  ),
  rpc(
    "DELETE",
    "/collections/{name}",
    "DropCollection",
    "Drop a collection and its data",
    null,
    (p) => ({ name: pathCollection(p) }),
  ),
  rpc(
    "PUT",
    "/collections/{name}/points",
    "PutBatch",
    "Upsert a batch of points (all of one dimension)",
    ["points", "consistency", "version"],
    (p, b) => ({
      ...b,
      ...(b.points === undefined ? {} : { points: bodyPoints(b.points) }),
      collection: pathCollection(p),
    }),
  ),
  rpc(
    "POST",
    "/collections/{name}/points/search",
    "Search",
    "The k nearest points to a vector (only points matching `filter` when given)",
    ["vector", "k", "ef", "filter", "with_payload", "with_vector", "exact"],
    (p, b) => ({ ...withFilter(b), collection: pathCollection(p) }),
    {
      respond: (_p, response) => {
        const r = response as { results: Record<string, unknown>[] };
        const results = r.results.map((x) => {
          const out: Record<string, unknown> = { id: answerId(x), distance: x.distance };
          if (typeof x.payload === "string" && x.payload !== "") {
            out.payload = answerPayload(x.payload);
          }
          if (Array.isArray(x.vector) && x.vector.length > 0) out.vector = x.vector;
          return out;
        });
        return { status: 200, body: { ...r, results } };
      },
    },
  ),
  rpc(
    "POST",
    "/collections/{name}/points/search/batch",
    "SearchBatch",
    "Up to 100 searches of the collection, answered in request order",
    ["searches"],
    (p, b) => ({ searches: batchSearches(b.searches, pathCollection(p)) }),
    {
      respond: (_p, response) => {
        const r = response as { results: { results: Record<string, unknown>[] }[] };
        const results = r.results.map((one) => ({
          ...one,
          results: answerPoints(one.results).map((x) => {
            if (Array.isArray(x.vector) && x.vector.length === 0) delete x.vector;
            return x;
          }),
        }));
        return { status: 200, body: { results } };
      },
    },
  ),
  rpc(
    "POST",
    "/collections/{name}/points/scroll",
    "Scroll",
    "One page of the collection's points in id order (pass next_cursor back as cursor; " +
      "only points matching `filter` when given)",
    ["limit", "cursor", "with_vector", "filter", "with_payload"],
    (p, b) => ({ ...withFilter(b), collection: pathCollection(p) }),
    {
      respond: (_p, response) => {
        const r = response as { points: Record<string, unknown>[] };
        return { status: 200, body: { ...r, points: answerPoints(r.points) } };
      },
    },
  ),
  rpc(
    "POST",
    "/collections/{name}/points/count",
    "Count",
    "The exact number of points in the collection (matching `filter` when given)",
    ["filter"],
    (p, b) => ({ ...withFilter(b), collection: pathCollection(p) }),
  ),
  rpc(
    "PUT",
    "/collections/{name}/index",
    "CreateFieldIndex",
    "Build a payload index over `field` (keyword, integer, float or bool; idempotent)",
    ["field", "type"],
    (p, b) => ({ ...b, collection: pathCollection(p) }),
  ),
  rpc(
    "DELETE",
    "/collections/{name}/index/{field}",
    "DropFieldIndex",
    "Drop the payload index of `field`",
    null,
    (p) => ({ field: p.field, collection: pathCollection(p) }),
  ),
  rpc(
    "POST",
    "/collections/{name}/points/get",
    "GetBatch",
    "Up to 1,000 points by id (integers and strings): one record per id, the integer ids " +
      "first, then the string ids, each in request order",
    ["ids", "with_vector", "with_payload"],
    (p, b) => ({ ...b, ...bodyIds(b.ids), collection: pathCollection(p) }),
    {
      respond: (_p, response) => {
        const r = response as { points: Record<string, unknown>[] };
        return { status: 200, body: { points: answerPoints(r.points) } };
      },
    },
  ),
  rpc(
    "POST",
    "/collections/{name}/points/delete",
    "DeleteBatch",
    "Delete points by `ids` (up to 10,000), or every point matching `filter` " +
      "(DeleteByFilter), at one version",
    ["ids", "filter", "consistency", "version"],
    (p, b) => {
      if (b.filter !== undefined && b.ids !== undefined) {
        throw new HttpError(
          400,
          grpc.status.INVALID_ARGUMENT,
          "ids and filter: give one of them, not both",
        );
      }
      return { ...withFilter(b), ...bodyIds(b.ids), collection: pathCollection(p) };
    },
    {
      rpcFor: (r) => (r.filter !== undefined ? "DeleteByFilter" : "DeleteBatch"),
    },
  ),
  rpc(
    "PUT",
    "/collections/{name}/points/{id}",
    "Put",
    "Upsert one point",
    ["vector", "payload", "consistency", "version"],
    (p, b) => ({
      ...b,
      ...(b.payload === undefined ? {} : { payload: bodyPayload(b.payload, "payload") }),
      ...pathId(p.id),
      collection: pathCollection(p),
    }),
  ),
  rpc(
    "GET",
    "/collections/{name}/points/{id}",
    "Get",
    "One point's vector, payload and version (404 when absent or deleted)",
    null,
    (p) => ({ ...pathId(p.id), collection: pathCollection(p) }),
    {
      respond: (p, response) => {
        const r = response as { found: boolean; deleted?: boolean; version?: string };
        if (!r.found) {
          throw new HttpError(
            404,
            grpc.status.NOT_FOUND,
            `Point ${formatId(pathPointId(p.id))} is not in collection ${quote(p.name)}` +
              (r.deleted ? ` (deleted at version ${r.version})` : ""),
          );
        }
        const payload = answerPayload((r as { payload?: unknown }).payload);
        return { status: 200, body: { id: pathPointId(p.id), ...r, payload } };
      },
    },
  ),
  rpc(
    "DELETE",
    "/collections/{name}/points/{id}",
    "Delete",
    "Delete one point (a versioned tombstone)",
    null,
    (p, _b, q) => ({
      ...pathId(p.id),
      collection: pathCollection(p),
      ...(q.consistency !== undefined ? { consistency: q.consistency } : {}),
      ...(q.version !== undefined ? { version: q.version } : {}),
    }),
    { query: ["consistency", "version"] },
  ),
  rpc(
    "GET",
    "/stats",
    "Stats",
    "Statistics of this server (router: per node, per shard, rebalancing, layout conflicts)",
    null,
    () => ({}),
    { respond: (_p, response) => ({ status: 200, body: asOnTheWire("Stats", response) }) },
  ),
  rpc("GET", "/members", "Members", "Cluster members as this server sees them", null, () => ({})),
  rpc(
    "POST",
    "/collections/{name}/backups",
    "Backup",
    "Back the collection up as backup `name` (router: on every storage node, or on none)",
    ["name"],
    (p, b) => ({ collection: pathCollection(p), name: b.name }),
  ),
  rpc(
    "GET",
    "/backups",
    "ListBackups",
    "The backups (router: each name once, with every node's entry and `complete`)",
    null,
    () => ({}),
  ),
  rpc(
    "POST",
    "/backups/{name}/restore",
    "Restore",
    "Create the new collection `collection` from the backup (router: on every node)",
    ["collection"],
    (p, b) => ({
      backup: validateCollectionName(p.name, "backup name in the path"),
      collection: b.collection,
    }),
  ),
  rpc(
    "DELETE",
    "/backups/{name}",
    "DeleteBackup",
    "Delete the backup (router: on every storage node that has it)",
    null,
    (p) => ({ name: validateCollectionName(p.name, "backup name in the path") }),
  ),
  rpc(
    "POST",
    "/drain",
    "Drain",
    "Storage node: leave the cluster, hand data off, exit (router: 400)",
    null,
    () => ({}),
  ),
];

/** A route found for a request, with its decoded path parameters. */
export interface Match {
  route: Route;
  params: Params;
}

function segments(path: string): string[] {
  return path.split("/").slice(1);
}

const TEMPLATES = ROUTES.map((r) => segments(r.path));

/**
 * The route of `method` and `pathname`; an {@link HttpError} 404 when no route has the path,
 * 405 (with the allowed methods in `allow`) when routes have it but not the method, 400 when a
 * path segment is not valid percent-encoding.
 */
export function matchRoute(method: string, pathname: string): Match {
  const parts = segments(pathname);
  const allowed: string[] = [];
  for (let i = 0; i < ROUTES.length; i++) {
    const t = TEMPLATES[i];
    if (t.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let j = 0; j < t.length && ok; j++) {
      if (t[j].startsWith("{")) {
        if (parts[j] === "") ok = false;
        else {
          try {
            params[t[j].slice(1, -1)] = decodeURIComponent(parts[j]);
          } catch {
            throw new HttpError(
              400,
              grpc.status.INVALID_ARGUMENT,
              `Path segment ${quote(parts[j].slice(0, 80))} is not valid percent-encoding`,
            );
          }
        }
      } else if (t[j] !== parts[j]) ok = false;
    }
    if (!ok) continue;
    if (ROUTES[i].method === method) return { route: ROUTES[i], params };
    allowed.push(ROUTES[i].method);
  }
  if (allowed.length > 0) {
    throw new MethodNotAllowed(method, pathname, [...new Set(allowed)]);
  }
  throw new HttpError(
    404,
    grpc.status.NOT_FOUND,
    `No route ${method} ${quote(pathname.slice(0, 200))}; GET /openapi.json lists the routes`,
  );
}

/** 405: the path exists, the method does not. */
export class MethodNotAllowed extends HttpError {
  constructor(method: string, pathname: string, readonly allow: string[]) {
    super(
      405,
      grpc.status.UNIMPLEMENTED,
      `${quote(pathname.slice(0, 200))} takes ${allow.join(", ")}, not ${method.slice(0, 16)}`,
    );
  }
}

/** Largest body (bytes) the route reads: {@link JSON_BYTES_FACTOR} x the method's gRPC limit. */
export function bodyBytesMax(route: Route): number {
  const base = route.rpc !== undefined
    ? VECTORDB_REQUEST_LIMITS[route.rpc].bytes_max
    : SMALL_REQUEST_BYTES_MAX;
  return base * JSON_BYTES_FACTOR;
}

/** The error for a body of `bytes` (or more) over the route's limit: 413 RESOURCE_EXHAUSTED. */
export function bodyTooLarge(route: Route, bytes: number, more = false): HttpError {
  return new HttpError(
    413,
    grpc.status.RESOURCE_EXHAUSTED,
    `${route.method} ${route.path} (${route.rpc ?? route.kind}): the body has ` +
      `${more ? "more than " : ""}${formatBytes(bytes)}; the limit is ` +
      `${formatBytes(bodyBytesMax(route))} (${JSON_BYTES_FACTOR} x the gRPC limit)`,
  );
}

/** Parses the body text into the object the route takes (checks fields and list counts). */
export function parseBody(route: Route, text: string): Record<string, unknown> {
  if (route.body_fields === null) {
    if (text.trim() !== "") {
      throw new HttpError(
        400,
        grpc.status.INVALID_ARGUMENT,
        `${route.method} ${route.path} takes no request body; got ${text.length} characters`,
      );
    }
    return {};
  }
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new HttpError(
      400,
      grpc.status.INVALID_ARGUMENT,
      `The request body is not valid JSON: ${(e as Error).message.slice(0, 200)}`,
    );
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new HttpError(
      400,
      grpc.status.INVALID_ARGUMENT,
      `The request body must be a JSON object with fields ${route.body_fields.join(", ")}; ` +
        `got ${quote(body)}`,
    );
  }
  const obj = body as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!route.body_fields.includes(key)) {
      throw new HttpError(
        400,
        grpc.status.INVALID_ARGUMENT,
        `Unknown field ${quote(key.slice(0, 80))} in the body of ${route.method} ${route.path}` +
          `; it takes ${route.body_fields.join(", ")}` +
          (key === "collection" || key === "name" ? " (the collection name is in the path)" : ""),
      );
    }
  }
  checkCounts(route, obj);
  if (route.rpc === "PutBatch" && Array.isArray(obj.points)) {
    const points = obj.points as unknown[];
    for (let i = 0; i < points.length; i++) {
      const p = points[i];
      if (p === null || typeof p !== "object" || Array.isArray(p)) continue; // the validator names it
      for (const key in p) {
        if (key !== "id" && key !== "vector" && key !== "payload") {
          throw new HttpError(
            400,
            grpc.status.INVALID_ARGUMENT,
            `Unknown field ${quote(key.slice(0, 80))} in points[${i}]; a point has id, vector, ` +
              `payload`,
          );
        }
      }
    }
  }
  return obj;
}

/** The list counts the gRPC server checks on the wire, on the parsed body: 413 when over. */
function checkCounts(route: Route, body: Record<string, unknown>): void {
  if (route.rpc === undefined) return;
  for (const r of VECTORDB_REQUEST_LIMITS[route.rpc].repeated ?? []) {
    const v = body[r.name];
    if (Array.isArray(v) && v.length > r.max) {
      throw new HttpError(
        413,
        grpc.status.RESOURCE_EXHAUSTED,
        `${route.rpc}: ${r.name} has ${v.length} ${r.unit}; the limit is ${r.max}`,
      );
    }
  }
}

/** The query parameters of `search` the route takes; unknown or repeated ones are errors. */
export function parseQuery(route: Route, search: URLSearchParams): Params {
  const out: Record<string, string> = {};
  for (const [key, value] of search) {
    if (!route.query.includes(key)) {
      throw new HttpError(
        400,
        grpc.status.INVALID_ARGUMENT,
        `Unknown query parameter ${quote(key.slice(0, 80))} of ${route.method} ${route.path}` +
          (route.query.length > 0 ? `; it takes ${route.query.join(", ")}` : "; it takes none"),
      );
    }
    if (key in out) {
      throw new HttpError(
        400,
        grpc.status.INVALID_ARGUMENT,
        `Query parameter ${quote(key)} is given more than once`,
      );
    }
    out[key] = value;
  }
  return out;
}
