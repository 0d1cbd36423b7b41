/**
 * The OpenAPI 3.0 document of the HTTP/JSON API (`GET /openapi.json`), written by hand from
 * the route table (http_routes.ts) and the proto's messages (proto.ts). tests/http_api_test.ts
 * calls every operation it lists against a real router and node and checks that the status
 * answered is one the document lists, and http_routes_test.ts that it lists every route.
 *
 * @module
 */
import {
  BATCH_POINTS_MAX,
  DIMENSION_MAX,
  EF_CONSTRUCTION_MAX,
  EF_MAX,
  K_MAX,
  M_MAX,
  M_MIN,
  PAYLOAD_BYTES_MAX,
  PAYLOAD_DEPTH_MAX,
  PAYLOAD_KEY_BYTES_MAX,
  PAYLOAD_KEYS_MAX,
  SCROLL_LIMIT_DEFAULT,
  SCROLL_LIMIT_MAX,
  SEARCH_BATCH_MAX,
} from "../common/limits.ts";
import {
  DEFAULT_RESCORE,
  LAYOUT_CONFLICTS_MAX,
  REPLICATION_FACTOR_MAX,
  RESCORE_MAX,
  SHARDS_MAX,
} from "../common/limits.ts";
import { JSON_BYTES_FACTOR, ROUTES } from "./http_routes.ts";
import { ID_STRING_BYTES_MAX } from "../common/point_id.ts";

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const uint64: Schema = {
  type: "string",
  pattern: "^[0-9]+$",
  description: "uint64 as a decimal string (a number is accepted in requests)",
};
const vector: Schema = {
  type: "array",
  items: { type: "number", format: "float" },
  minItems: 1,
  maxItems: DIMENSION_MAX,
};
const payload: Schema = {
  type: "object",
  nullable: true,
  additionalProperties: true,
  description: `A JSON object kept with the point (null or absent: none): at most ` +
    `${PAYLOAD_BYTES_MAX} bytes as JSON, nested at most ${PAYLOAD_DEPTH_MAX} deep, at most ` +
    `${PAYLOAD_KEYS_MAX} keys in all, keys at most ${PAYLOAD_KEY_BYTES_MAX} bytes`,
};
const consistency: Schema = {
  type: "string",
  enum: ["", "one", "quorum", "all"],
  description: "Write consistency (router); empty: the router's default",
};

/**
 * A point id in a request body: a JSON integer 0 .. 2^53 - 1 (a larger JSON number has lost
 * precision in the parser and is refused; use the path, gRPC or the client for those) or a
 * string id (1 .. 128 bytes of UTF-8; the string "5" is not the integer 5).
 */
const pointIdIn: Schema = {
  oneOf: [
    { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    { type: "string", minLength: 1, maxLength: ID_STRING_BYTES_MAX },
  ],
};

/** A point id in an answer: an integer up to 2^64 - 1, written with every digit, or a string. */
const pointIdOut: Schema = {
  oneOf: [
    { type: "integer", format: "uint64", minimum: 0 },
    { type: "string", minLength: 1, maxLength: ID_STRING_BYTES_MAX },
  ],
};

const SCHEMAS: Record<string, Schema> = {
  Error: {
    type: "object",
    required: ["error"],
    properties: {
      error: {
        type: "object",
        required: ["status", "message"],
        properties: {
          status: { type: "string", example: "INVALID_ARGUMENT", description: "gRPC status name" },
          message: { type: "string" },
        },
      },
    },
  },
  Health: { type: "object", properties: { status: { type: "string" } } },
  CollectionInfo: {
    type: "object",
    properties: {
      name: { type: "string" },
      dimension: { type: "integer" },
      metric: { type: "string", enum: ["l2", "cosine", "dot"] },
      m: { type: "integer" },
      ef_construction: { type: "integer" },
      quantization: { type: "string", enum: ["none", "int8"] },
      rescore: { type: "integer", description: "re-ranking factor of an int8 collection" },
      shard_number: {
        type: "integer",
        description: "shards (1 for a collection from before shards)",
      },
      replication_factor: {
        type: "integer",
        description: "replicas per shard (0: the router's --replication-factor)",
      },
    },
  },
  CreateCollectionBody: {
    type: "object",
    required: ["dimension"],
    additionalProperties: false,
    properties: {
      dimension: { type: "integer", minimum: 1, maximum: DIMENSION_MAX },
      metric: { type: "string", enum: ["", "l2", "cosine", "dot"], default: "l2" },
      m: { type: "integer", minimum: 0, maximum: M_MAX, description: `0: 16; else ${M_MIN}..` },
      ef_construction: { type: "integer", minimum: 0, maximum: EF_CONSTRUCTION_MAX },
      quantization: {
        type: "string",
        enum: ["", "none", "int8"],
        default: "none",
        description: "int8: search one-byte codes, re-rank the best rescore x k exactly",
      },
      rescore: {
        type: "integer",
        minimum: 0,
        maximum: RESCORE_MAX,
        description: `0: ${DEFAULT_RESCORE}; ignored without quantization`,
      },
      shard_number: {
        type: "integer",
        minimum: 0,
        maximum: SHARDS_MAX,
        description: "shards; 0: the number of storage nodes at creation",
      },
      replication_factor: {
        type: "integer",
        minimum: 0,
        maximum: REPLICATION_FACTOR_MAX,
        description: "replicas per shard; 0: the router's --replication-factor",
      },
    },
  },
  CreateCollectionResponse: {
    type: "object",
    properties: { created: { type: "boolean" }, collection: ref("CollectionInfo") },
  },
  ListCollectionsResponse: {
    type: "object",
    properties: { collections: { type: "array", items: ref("CollectionInfo") } },
  },
  DropCollectionResponse: { type: "object", properties: { dropped: { type: "boolean" } } },
  Point: {
    type: "object",
    required: ["id", "vector"],
    additionalProperties: false,
    properties: { id: pointIdIn, vector, payload },
  },
  PutBatchBody: {
    type: "object",
    required: ["points"],
    additionalProperties: false,
    properties: {
      points: { type: "array", items: ref("Point"), minItems: 1, maxItems: BATCH_POINTS_MAX },
      consistency,
      version: { ...uint64, description: "0 or absent: the server stamps one" },
    },
  },
  PutBatchResponse: {
    type: "object",
    properties: { count: { type: "integer" }, seq: uint64, version: uint64 },
  },
  PutBody: {
    type: "object",
    required: ["vector"],
    additionalProperties: false,
    properties: { vector, payload, consistency, version: uint64 },
  },
  PutResponse: {
    type: "object",
    properties: {
      ok: { type: "boolean" },
      seq: uint64,
      replicas_acked: { type: "integer" },
      version: uint64,
    },
  },
  GetResponse: {
    type: "object",
    properties: {
      id: pointIdOut,
      found: { type: "boolean" },
      vector,
      payload,
      version: uint64,
      deleted: { type: "boolean" },
    },
  },
  DeleteResponse: {
    type: "object",
    properties: { deleted: { type: "boolean" }, seq: uint64, version: uint64 },
  },
  SearchBody: {
    type: "object",
    required: ["vector", "k"],
    additionalProperties: false,
    properties: {
      vector,
      k: { type: "integer", minimum: 1, maximum: K_MAX },
      ef: { type: "integer", minimum: 0, maximum: EF_MAX, description: "0: server default" },
      with_payload: { type: "boolean", description: "results carry their payloads" },
      with_vector: { type: "boolean", description: "results carry their stored vectors" },
      filter: ref("Filter"),
      exact: {
        type: "boolean",
        description: "brute force over every point (exact top-k; ef ignored): for measuring " +
          "recall, a scan of the collection (not in a batch)",
      },
    },
  },
  Filter: {
    type: "object",
    description: "A payload filter in Qdrant's form (src/common/filter.ts): " +
      '{"must": [C...], "should": [C...], "must_not": [C...]} with conditions ' +
      '{"key": "a.b", "match": {"value"|"any"|"except": ...}}, ' +
      '{"key": "n", "range": {"gt"|"gte"|"lt"|"lte": number}}, {"has_id": [ids]}, ' +
      '{"is_empty": {"key": k}}, {"is_null": {"key": k}}, ' +
      '{"key": k, "values_count": {...}}, or a nested filter. A malformed one is 400 naming ' +
      "its JSON path (filter.must[1].range.gt). Limits: 16 KiB, 16 levels, 256 conditions.",
    additionalProperties: true,
  },
  FieldIndexBody: {
    type: "object",
    required: ["field", "type"],
    additionalProperties: false,
    properties: {
      field: { type: "string", description: 'A dotted payload key, e.g. "meta.lang"' },
      type: { type: "string", enum: ["keyword", "integer", "float", "bool"] },
    },
  },
  CreateFieldIndexResponse: {
    type: "object",
    properties: {
      created: { type: "boolean", description: "false: the index already existed" },
    },
  },
  DropFieldIndexResponse: { type: "object", properties: { dropped: { type: "boolean" } } },
  GetBatchBody: {
    type: "object",
    required: ["ids"],
    additionalProperties: false,
    properties: {
      ids: { type: "array", minItems: 1, maxItems: 1000, items: pointIdIn },
      with_vector: { type: "boolean" },
      with_payload: { type: "boolean" },
    },
  },
  GetBatchResponse: {
    type: "object",
    properties: {
      points: {
        type: "array",
        description: "One record per requested id: the integer ids first, then the string " +
          "ids, each in request order",
        items: {
          type: "object",
          properties: {
            id: pointIdOut,
            found: { type: "boolean" },
            vector,
            payload,
            version: uint64,
            deleted: { type: "boolean" },
          },
        },
      },
    },
  },
  DeletePointsBody: {
    type: "object",
    additionalProperties: false,
    description: "Exactly one of ids (DeleteBatch) and filter (DeleteByFilter)",
    properties: {
      ids: { type: "array", minItems: 1, maxItems: 10000, items: pointIdIn },
      filter: ref("Filter"),
      consistency,
      version: uint64,
    },
  },
  DeletePointsResponse: {
    type: "object",
    properties: {
      deleted: {
        description: "Points deleted (a number for ids, a uint64 string for a filter)",
      },
      version: uint64,
    },
  },
  SearchResponse: {
    type: "object",
    properties: {
      results: {
        type: "array",
        items: {
          type: "object",
          properties: {
            id: pointIdOut,
            distance: { type: "number" },
            payload: { ...payload, description: "with_payload, when the point has one" },
            vector: { ...vector, description: "with_vector" },
          },
        },
      },
      partial: { type: "boolean" },
      shards_answered: { type: "integer" },
      shards_total: { type: "integer" },
      nodes_answered: {
        type: "array",
        items: { type: "string" },
        description: "router: the storage nodes whose answers were merged",
      },
    },
  },
  SearchBatchBody: {
    type: "object",
    required: ["searches"],
    additionalProperties: false,
    properties: {
      searches: {
        type: "array",
        minItems: 1,
        maxItems: SEARCH_BATCH_MAX,
        items: ref("SearchBody"),
      },
    },
  },
  SearchBatchResponse: {
    type: "object",
    properties: {
      results: {
        type: "array",
        description: "One answer per search, in request order",
        items: ref("SearchResponse"),
      },
    },
  },
  ScrollBody: {
    type: "object",
    additionalProperties: false,
    properties: {
      limit: {
        type: "integer",
        minimum: 0,
        maximum: SCROLL_LIMIT_MAX,
        description: `0 or absent: ${SCROLL_LIMIT_DEFAULT}`,
      },
      cursor: {
        type: "string",
        description: 'Absent or "": from the start; else an earlier answer\'s next_cursor',
      },
      with_vector: { type: "boolean" },
      with_payload: { type: "boolean" },
      filter: ref("Filter"),
    },
  },
  ScrollResponse: {
    type: "object",
    properties: {
      points: {
        type: "array",
        items: {
          type: "object",
          properties: { id: pointIdOut, vector, version: uint64, payload },
        },
      },
      next_cursor: { type: "string", description: '"" when there are no more points' },
      partial: { type: "boolean" },
      shards_answered: { type: "integer" },
      shards_total: { type: "integer" },
    },
  },
  CountBody: {
    type: "object",
    additionalProperties: false,
    properties: { filter: ref("Filter") },
  },
  CountResponse: {
    type: "object",
    properties: {
      count: uint64,
      partial: { type: "boolean" },
      shards_answered: { type: "integer" },
      shards_total: { type: "integer" },
    },
  },
  StatsResponse: {
    type: "object",
    description: "StatsResponse of proto/vector_db.proto, every field present (uint64 fields as " +
      "strings). The rebalancing, shard move, shard drop and layout conflict fields are a " +
      "router's (zero or empty on a storage node)",
    properties: {
      node_id: { type: "string" },
      collections: {
        type: "array",
        description: "Storage node: its own. Router: logical, each point once",
        items: ref("CollectionStats"),
      },
      uptime_ms: uint64,
      rss_bytes: uint64,
      heap_used_bytes: uint64,
      version: { type: "string" },
      is_router: { type: "boolean" },
      nodes: {
        type: "array",
        description: "Router only: each storage node's own statistics, or why it has none",
        items: ref("NodeStats"),
      },
      rebalancing: { type: "boolean" },
      transfers_active: { type: "integer", minimum: 0 },
      transfers_pending: { type: "integer", minimum: 0 },
      transfers_done: uint64,
      transfers_failed: uint64,
      points_scanned: uint64,
      points_copied: uint64,
      points_pruned: uint64,
      rebalances_done: uint64,
      points_unresolved: uint64,
      shard_moves_active: { type: "integer", minimum: 0 },
      shard_moves_done: uint64,
      shard_moves_failed: uint64,
      shard_bytes_moved: uint64,
      shard_moves: { type: "array", items: ref("ShardMoveStats") },
      shard_drops_done: {
        ...uint64,
        description: "Shard units of nodes that lost the shard emptied wholesale (ShardDrop)",
      },
      shard_drops_refused: {
        ...uint64,
        description: "ShardDrops a node refused: the unit was written after its digest was read",
      },
      points_dropped: { ...uint64, description: "Entries dropped with their shard units" },
      layout_conflicts: {
        type: "array",
        maxItems: LAYOUT_CONFLICTS_MAX,
        description: "Collections whose nodes report different layouts (shard_number, " +
          "replication_factor), one message each; their writes answer FAILED_PRECONDITION",
        items: { type: "string" },
      },
    },
  },
  NodeStats: {
    type: "object",
    properties: {
      node_id: { type: "string" },
      address: { type: "string" },
      collections: { type: "array", items: ref("CollectionStats") },
      uptime_ms: uint64,
      rss_bytes: uint64,
      heap_used_bytes: uint64,
      error: { type: "string", description: '"" when the node answered' },
      hints_pending: uint64,
      hints_refused: uint64,
    },
  },
  CollectionStats: {
    type: "object",
    properties: {
      name: { type: "string" },
      count: uint64,
      dimension: { type: "integer", minimum: 0, maximum: DIMENSION_MAX },
      metric: { type: "string", enum: ["l2", "cosine", "dot"] },
      memory_bytes: uint64,
      wal_bytes: uint64,
      last_snapshot_seq: uint64,
      last_snapshot_time_ms: uint64,
      wal_syncs: uint64,
      tombstones: uint64,
      shards: {
        type: "array",
        maxItems: SHARDS_MAX,
        description: "Storage node, collection of more than one shard: each shard unit it " +
          "holds, in shard order (empty for one shard)",
        items: ref("ShardStats"),
      },
      replica_count: { ...uint64, description: "Router only: live points over every replica" },
    },
  },
  ShardStats: {
    type: "object",
    properties: {
      shard: { type: "integer", minimum: 0, maximum: SHARDS_MAX - 1 },
      count: uint64,
      tombstones: uint64,
      last_seq: uint64,
      last_snapshot_seq: uint64,
      wal_bytes: uint64,
    },
  },
  ShardMoveStats: {
    type: "object",
    properties: {
      collection: { type: "string" },
      shard: { type: "integer", minimum: 0, maximum: SHARDS_MAX - 1 },
      source: { type: "string" },
      target: { type: "string" },
      bytes_done: uint64,
      bytes_total: uint64,
    },
  },
  MembersResponse: {
    type: "object",
    properties: {
      self_id: { type: "string" },
      members: {
        type: "array",
        items: {
          type: "object",
          properties: {
            id: { type: "string" },
            address: { type: "string" },
            state: { type: "string", enum: ["alive", "suspect", "dead", "left"] },
            incarnation: { type: "integer" },
            is_router: { type: "boolean" },
          },
        },
      },
    },
  },
  DrainResponse: {
    type: "object",
    properties: { started: { type: "boolean" }, node_id: { type: "string" } },
  },
  BackupBody: {
    type: "object",
    required: ["name"],
    properties: { name: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" } },
  },
  BackupInfo: {
    type: "object",
    properties: {
      name: { type: "string" },
      collection: ref("CollectionInfo"),
      points: uint64,
      bytes: uint64,
      created_ms: uint64,
      seq: uint64,
      sha256: { type: "string" },
      tombstones: uint64,
      nodes: {
        type: "array",
        description: "Router only: each storage node's backup of this name, or why it has none",
        items: ref("NodeBackup"),
      },
      complete: { type: "boolean", description: "Router only: every node of the ring has it" },
    },
  },
  NodeBackup: {
    type: "object",
    properties: {
      address: { type: "string" },
      backup: ref("BackupInfo"),
      error: { type: "string" },
    },
  },
  BackupResponse: { type: "object", properties: { backup: ref("BackupInfo") } },
  ListBackupsResponse: {
    type: "object",
    properties: {
      backups: { type: "array", items: ref("BackupInfo") },
      errors: {
        type: "array",
        description: "Router only: nodes that did not answer, one line each",
        items: { type: "string" },
      },
    },
  },
  RestoreBody: {
    type: "object",
    required: ["collection"],
    properties: { collection: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" } },
  },
  RestoreResponse: {
    type: "object",
    properties: {
      collection: ref("CollectionInfo"),
      points: uint64,
      nodes: {
        type: "array",
        description: "Router only: what each storage node did",
        items: {
          type: "object",
          properties: {
            address: { type: "string" },
            from_backup: { type: "boolean" },
            points: uint64,
          },
        },
      },
      anti_entropy_started: { type: "boolean" },
    },
  },
  DeleteBackupResponse: {
    type: "object",
    properties: {
      deleted: { type: "boolean" },
      nodes: {
        type: "array",
        description: "Router only: the nodes that had the backup and deleted it",
        items: { type: "string" },
      },
    },
  },
  OpenApi: { type: "object", additionalProperties: true },
  ConsoleFile: {
    type: "string",
    description: "A static file of the web console (HTML, JavaScript, CSS or SVG; its " +
      "content-type says which), sent with a Content-Security-Policy",
  },
  ConsoleState: {
    type: "object",
    properties: {
      ring: {
        type: "array",
        items: {
          type: "object",
          properties: { address: { type: "string" }, share: { type: "number" } },
        },
        description: "each storage node's share of the hash ring as primary owner (sums to 1)",
      },
      replication_factor: { type: "integer" },
      recall: {
        type: "object",
        description: "the recall monitor: sample_rate, warn_below, counts and per collection " +
          "the rolling recall@k (null before a sample), samples, total, k, ef",
        additionalProperties: true,
      },
      time_ms: { type: "integer", description: "the router's clock, ms since the Unix epoch" },
    },
  },
  Metrics: {
    type: "string",
    description: "Prometheus text exposition format 0.0.4 (content-type text/plain; " +
      "version=0.0.4); families named vectordb_*, plus process_* and nodejs_*",
  },
};

/** Per route ("METHOD path"): request body schema, success schema, extra statuses. */
const OPERATIONS: Record<
  string,
  { body?: string; ok: string; ok_type?: string; ok_status?: string; errors: string[] }
> = {
  "GET /healthz": { ok: "Health", errors: [] },
  "GET /readyz": { ok: "Health", errors: ["503"] },
  "GET /openapi.json": { ok: "OpenApi", errors: ["401", "403"] },
  "GET /metrics": { ok: "Metrics", ok_type: "text/plain", errors: ["401", "403", "404"] },
  "GET /": { ok: "ConsoleFile", ok_type: "text/html", errors: ["404"] },
  "GET /console/state": { ok: "ConsoleState", errors: ["401", "403", "404"] },
  "GET /console/{file}": { ok: "ConsoleFile", ok_type: "text/javascript", errors: ["404"] },
  "GET /collections": { ok: "ListCollectionsResponse", errors: [] },
  "GET /collections/{name}": { ok: "CollectionInfo", errors: ["400", "404"] },
  "PUT /collections/{name}": {
    body: "CreateCollectionBody",
    ok: "CreateCollectionResponse",
    errors: ["400", "409", "413"],
  },
  "DELETE /collections/{name}": { ok: "DropCollectionResponse", errors: ["400", "404"] },
  "PUT /collections/{name}/points": {
    body: "PutBatchBody",
    ok: "PutBatchResponse",
    errors: ["400", "404", "413"],
  },
  "POST /collections/{name}/points/search": {
    body: "SearchBody",
    ok: "SearchResponse",
    errors: ["400", "404", "413"],
  },
  "POST /collections/{name}/points/search/batch": {
    body: "SearchBatchBody",
    ok: "SearchBatchResponse",
    errors: ["400", "404", "413"],
  },
  "POST /collections/{name}/points/scroll": {
    body: "ScrollBody",
    ok: "ScrollResponse",
    errors: ["400", "404", "413"],
  },
  "POST /collections/{name}/points/count": {
    body: "CountBody",
    ok: "CountResponse",
    errors: ["400", "404", "413"],
  },
  "PUT /collections/{name}/index": {
    body: "FieldIndexBody",
    ok: "CreateFieldIndexResponse",
    errors: ["400", "404", "409", "413"],
  },
  "DELETE /collections/{name}/index/{field}": {
    ok: "DropFieldIndexResponse",
    errors: ["400", "404"],
  },
  "POST /collections/{name}/points/get": {
    body: "GetBatchBody",
    ok: "GetBatchResponse",
    errors: ["400", "404", "413"],
  },
  "POST /collections/{name}/points/delete": {
    body: "DeletePointsBody",
    ok: "DeletePointsResponse",
    errors: ["400", "404", "413"],
  },
  "PUT /collections/{name}/points/{id}": {
    body: "PutBody",
    ok: "PutResponse",
    errors: ["400", "404", "413"],
  },
  "GET /collections/{name}/points/{id}": { ok: "GetResponse", errors: ["400", "404"] },
  "DELETE /collections/{name}/points/{id}": { ok: "DeleteResponse", errors: ["400", "404"] },
  "GET /stats": { ok: "StatsResponse", errors: [] },
  "GET /members": { ok: "MembersResponse", errors: [] },
  "POST /drain": { ok: "DrainResponse", errors: ["400"] },
  "POST /collections/{name}/backups": {
    body: "BackupBody",
    ok: "BackupResponse",
    errors: ["400", "404", "409", "413"],
  },
  "GET /backups": { ok: "ListBackupsResponse", errors: ["400"] },
  "POST /backups/{name}/restore": {
    body: "RestoreBody",
    ok: "RestoreResponse",
    errors: ["400", "404", "409", "413", "500"],
  },
  "DELETE /backups/{name}": { ok: "DeleteBackupResponse", errors: ["400", "404"] },
};

const ERROR_TEXT: Record<string, string> = {
  "400": "INVALID_ARGUMENT (or FAILED_PRECONDITION): the message names the field and value",
  "401": "UNAUTHENTICATED: no or an unknown API key",
  "403": "PERMISSION_DENIED: the key's role is too low",
  "404": "NOT_FOUND",
  "408": "DEADLINE_EXCEEDED: the body did not arrive in time",
  "409": "ALREADY_EXISTS",
  "413": "RESOURCE_EXHAUSTED: the body or a list is over its limit",
  "429": "RESOURCE_EXHAUSTED: too many requests in flight",
  "500": "INTERNAL",
  "503": "UNAVAILABLE (shutting down, owners unreachable) or not ready",
  "504": "DEADLINE_EXCEEDED",
};

/** The OpenAPI document a `kind` of server serves. */
export function openApiDocument(kind: "node" | "router"): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of ROUTES) {
    const key = `${r.method} ${r.path}`;
    const op = OPERATIONS[key];
    if (op === undefined) throw new Error(`openapi.ts does not describe ${key}`);
    const open = r.kind === "healthz" || r.kind === "readyz" || r.kind === "console";
    const errors = [...op.errors];
    if (!open) errors.push("401", "403", "429", "500", "503", "504");
    if (r.body_fields !== null) errors.push("408");
    const responses: Record<string, unknown> = {
      [op.ok_status ?? "200"]: {
        description: "OK",
        content: { [op.ok_type ?? "application/json"]: { schema: ref(op.ok) } },
      },
    };
    for (const s of [...new Set(errors)].sort()) {
      responses[s] = {
        description: ERROR_TEXT[s],
        content: { "application/json": { schema: ref(r.kind === "readyz" ? "Health" : "Error") } },
      };
    }
    const parameters: unknown[] = [];
    for (const m of r.path.matchAll(/\{(\w+)\}/g)) {
      parameters.push({
        name: m[1],
        in: "path",
        required: true,
        schema: m[1] === "id"
          ? {
            oneOf: [
              { type: "integer", format: "uint64", minimum: 0 },
              { type: "string", minLength: 1, maxLength: ID_STRING_BYTES_MAX },
            ],
            description: "All digits: an integer id (up to 2^64 - 1); anything else (or a " +
              "JSON-quoted segment, %22123%22) a string id, percent-encoded",
          }
          : m[1] === "field"
          ? { type: "string", description: "A dotted payload key (percent-encoded)" }
          : m[1] === "file"
          ? { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}\\.(html|js|css|svg)$" }
          : { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" },
      });
    }
    for (const q of r.query) {
      parameters.push({
        name: q,
        in: "query",
        required: false,
        schema: q === "version" ? uint64 : consistency,
      });
    }
    (paths[r.path] ??= {})[r.method.toLowerCase()] = {
      operationId: `${r.method.toLowerCase()}${
        r.path.replace(/[^A-Za-z]+(.)?/g, (_, c) => (c ?? "").toUpperCase())
      }`,
      summary: r.summary,
      ...(r.rpc !== undefined ? { "x-grpc-method": `vectordb.VectorDB/${r.rpc}` } : {}),
      ...(open ? { security: [] } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(op.body !== undefined
        ? {
          requestBody: {
            required: true,
            content: { "application/json": { schema: ref(op.body) } },
          },
        }
        : {}),
      responses,
    };
  }
  return {
    openapi: "3.0.3",
    info: {
      title: `vectordb HTTP/JSON API (${kind === "router" ? "router" : "storage node"})`,
      version: "1",
      description: "The gRPC API (proto/vector_db.proto) over HTTP with JSON bodies (snake_case " +
        "field names). Every route performs one gRPC method through the same handler. Bodies " +
        `may be ${JSON_BYTES_FACTOR} x the method's gRPC byte limit. Errors: ` +
        '{"error": {"status": GRPC_STATUS_NAME, "message": ...}}.' +
        (kind === "router"
          ? " POST /drain is a storage node's: the router answers 400. The backup routes " +
            "work on every storage node of the router's ring."
          : ""),
    },
    components: {
      schemas: SCHEMAS,
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: "An API key of --api-keys-file; roles read < write < admin " +
            "(src/api/auth.ts). Without --api-keys-file no key is needed.",
        },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
