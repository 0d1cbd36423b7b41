/**
 * The client CLI of the vector database.
 *
 * ```sh
 * deno run -A src/cli/cli.ts search --vector 0.1,0.2,0.3 --k 5
 * deno run -A src/cli/cli.ts load --file data/base.fvecs --batch 1000
 * deno run -A src/cli/cli.ts --json stats
 * ```
 *
 * Run `client --help` for every command. Output is readable text by default and one JSON
 * object per command with `--json`. Any failure is ONE line on stderr (`error: STATUS: details`
 * for gRPC errors) and a non-zero exit status: 1 for a failed call or a bad file, 2 for a bad
 * command line.
 *
 * @module
 */

import { PAYLOAD_FIELD_TYPES } from "../common/limits.ts";
import process from "node:process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { BackupInfo, NodeRestore } from "../api/proto.ts";
import { vectorToWire } from "../api/proto.ts";
import { describeGrpcError } from "../api/client.ts";
import { checkApiKey } from "../api/auth.ts";
import { type FieldIndexType, VectorDbClient } from "../client/mod.ts";
import { BATCH_POINTS_MAX, type Consistency, SCROLL_LIMIT_MAX } from "../common/limits.ts";
import {
  canonicalId,
  formatId,
  idFromWire,
  idToWire,
  type PointId,
  PointIdError,
  validateStringId,
} from "../common/point_id.ts";
import { decodeCursor } from "../api/points_read.ts";
import { didYouMean, unknownFlagError } from "../common/config.ts";
import { versionLine } from "../common/software_version.ts";
import {
  validateCollectionName,
  validateConsistency,
  validateCreateCollectionRequest,
  validateEf,
  validateId,
  validateK,
  validatePayload,
  validateVector,
  ValidationError,
} from "../api/validate.ts";
import {
  formatCollections,
  formatCount,
  formatCreated,
  formatMembers,
  formatPointCount,
  formatScroll,
  formatSearch,
  formatStats,
  formatVector,
  shorten,
} from "./format.ts";
import { DEFAULT_RETRY_POLICY, LOAD_ATTEMPTS_MAX } from "./load_plan.ts";
import { pointsFileFormat } from "./points_file.ts";
import {
  type CliIo,
  collectionLabel,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  print,
  processIo,
  UsageError,
} from "./io.ts";
import { runLoad } from "./load.ts";

/** Default server address: the router. */
export const DEFAULT_ADDR = "127.0.0.1:50050";
/** Default deadline of each call. */
export const DEFAULT_CLI_TIMEOUT_MS = 10_000;
/** Default and largest number of PutBatch calls `load` keeps in flight. */
export const DEFAULT_LOAD_CONCURRENCY = 4;
export const LOAD_CONCURRENCY_MAX = 64;
/** Default points per PutBatch in `load`. */
export const DEFAULT_LOAD_BATCH = 1000;
/** Default `k` of `search`. */
export const DEFAULT_K = 10;

export const USAGE = `Usage: client [global flags] <command> [flags]

Commands:
  put --id ID --vector X,Y,... [--payload JSON] [--collection C] [--consistency one|quorum|all]
  get --id ID | --ids ID,ID,... [--collection C]
  delete --id ID | --ids ID,ID,... | --filter JSON | --filter-file F [--collection C]
                     [--consistency one|quorum|all]
  search --vector X,Y,... [--k ${DEFAULT_K}] [--ef N] [--filter JSON | --filter-file F]
                     [--with-payload] [--collection C]
  scroll [--collection C] [--limit N] [--cursor S] [--all] [--with-vector] [--with-payload]
         [--filter JSON | --filter-file F]
                     (points in id order, one page; --all: every page from the cursor on)
  count [--collection C] [--filter JSON | --filter-file F]
  collections create --name C --dimension D [--metric l2|cosine|dot] [--m 16]
                     [--ef-construction 200] [--quantization none|int8] [--rescore 4]
                     (int8: searches one-byte codes, re-ranks the best rescore x k exactly)
                     [--shard-number S] [--replication-factor R]
                     (through a router; default: one shard per storage node, the router's RF)
  collections list   (with each collection's payload indexes)
  collections drop --name C
  collections index --name C --field KEY --type keyword|integer|float|bool
  collections index --name C --field KEY --drop
  stats
  members
  drain              (with --addr of a storage node: it hands its data off and exits)
  backup create --collection C --name N   (router: on every storage node, or none; admin)
  backup list                             (router: each name with its nodes; admin)
  backup restore --name N --collection C  (into the new collection C; admin)
  backup delete --name N                  (router: on every storage node; admin)
  load --file F.fvecs|F.jsonl [--batch ${DEFAULT_LOAD_BATCH}] [--start-id 0] \
[--concurrency ${DEFAULT_LOAD_CONCURRENCY}]
       [--attempts ${DEFAULT_RETRY_POLICY.attempts_max}] [--collection C] \
[--consistency one|quorum|all]

Global flags:
  --addr HOST:PORT   server to call (default ${DEFAULT_ADDR}, the router)
  --json             print each response as one JSON object
  --timeout-ms N     deadline of each call in milliseconds (default ${DEFAULT_CLI_TIMEOUT_MS})
  --api-key KEY      API key, sent as "authorization: Bearer KEY" (default: $VECTORDB_API_KEY)
  --tls-ca FILE      call over TLS, trusting this PEM CA
  --tls              call over TLS, trusting the system's CAs
  -h, --help         print this help
  --version          print the version

Vectors are comma-separated numbers, e.g. --vector 0.1,-0.2,3e-4. An empty --collection
selects "default". An ID is an integer 0 .. 2^64-1 when it is all digits, else a string of at
most 128 bytes (a UUID, "doc-7"); a JSON-quoted ID ('"123"') is always a string. .fvecs ids
are the row number plus --start-id; JSON lines carry their own ids: {"id": 7, "vector": [0.1,
0.2]} or {"id": "doc-7", ...}, and may carry a payload: "payload": {"tag": "a"}. A
payload (--payload '{"tag":"a"}') is a JSON object of at most 64 KiB, kept with the point. A
filter is JSON in Qdrant's form, e.g. --filter '{"must":[{"key":"tenant","match":{"value":"a"}}]}'
(conditions: match value/any/except, range, has_id, is_empty, is_null, values_count; keys are
dotted paths such as meta.lang). load retries UNAVAILABLE, DEADLINE_EXCEEDED and
RESOURCE_EXHAUSTED with backoff (up to --attempts per batch), halves its batch and concurrency
on overload and grows them back; other failures fail their points for good, counted in the
summary. Exit status: 0 ok, 1 failed call, bad file or any point failed for good, 2 bad
command line.`;

/** Flags common to every command. */
export interface GlobalOptions {
  addr: string;
  json: boolean;
  timeout_ms: number;
  /** Sent as `authorization: Bearer KEY` (`--api-key`, else `VECTORDB_API_KEY`). */
  api_key?: string;
  /** PEM CA file: call over TLS trusting it (`--tls-ca`). */
  tls_ca?: string;
  /** TLS with the system's roots (`--tls`). */
  tls?: boolean;
}

/** A parsed command. */
export type Command =
  | { kind: "help"; requested: boolean }
  | { kind: "version" }
  | {
    kind: "put";
    id: PointId;
    vector: number[];
    collection: string;
    consistency: Consistency | undefined;
    /** JSON text of an object (`--payload`); absent: none. */
    payload?: string;
  }
  | { kind: "get"; id: PointId; collection: string }
  | { kind: "get-batch"; ids: PointId[]; collection: string }
  | { kind: "delete"; id: PointId; collection: string; consistency: Consistency | undefined }
  | {
    kind: "delete-batch";
    ids: PointId[];
    collection: string;
    consistency: Consistency | undefined;
  }
  | {
    kind: "delete-filter";
    /** The filter's JSON text. */
    filter: string;
    collection: string;
    consistency: Consistency | undefined;
  }
  | {
    kind: "search";
    vector: number[];
    k: number;
    ef: number;
    collection: string;
    /** `--with-payload`: results carry (and print) their payloads. */
    with_payload?: boolean;
    /** `--filter` / `--filter-file`: the filter's JSON text. */
    filter?: string;
  }
  | {
    kind: "scroll";
    collection: string;
    limit: number;
    cursor: string;
    all: boolean;
    with_vector: boolean;
    with_payload?: boolean;
    /** The filter's JSON text; absent: every point. */
    filter?: string;
  }
  | { kind: "count"; collection: string; filter?: string }
  | {
    kind: "collections-create";
    name: string;
    dimension: number;
    metric: string;
    m: number;
    ef_construction: number;
    quantization?: string;
    rescore?: number;
    shard_number?: number;
    replication_factor?: number;
  }
  | { kind: "collections-list" }
  | { kind: "collections-drop"; name: string }
  | { kind: "collections-index"; name: string; field: string; type: string }
  | { kind: "collections-unindex"; name: string; field: string }
  | { kind: "stats" }
  | { kind: "members" }
  | { kind: "drain" }
  | { kind: "backup-create"; collection: string; name: string }
  | { kind: "backup-list" }
  | { kind: "backup-restore"; name: string; collection: string }
  | { kind: "backup-delete"; name: string }
  | {
    kind: "load";
    file: string;
    batch: number;
    start_id: number;
    concurrency: number;
    attempts: number;
    collection: string;
    consistency: Consistency | undefined;
  };

/** The result of {@link parseCli}. */
export interface ParsedCli {
  global: GlobalOptions;
  command: Command;
}

const OPTIONS = {
  addr: { type: "string" },
  json: { type: "boolean" },
  "timeout-ms": { type: "string" },
  "api-key": { type: "string" },
  "tls-ca": { type: "string" },
  tls: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
  id: { type: "string" },
  vector: { type: "string" },
  collection: { type: "string" },
  consistency: { type: "string" },
  k: { type: "string" },
  ef: { type: "string" },
  name: { type: "string" },
  dimension: { type: "string" },
  metric: { type: "string" },
  m: { type: "string" },
  "ef-construction": { type: "string" },
  quantization: { type: "string" },
  rescore: { type: "string" },
  "shard-number": { type: "string" },
  "replication-factor": { type: "string" },
  file: { type: "string" },
  batch: { type: "string" },
  "start-id": { type: "string" },
  concurrency: { type: "string" },
  attempts: { type: "string" },
  limit: { type: "string" },
  cursor: { type: "string" },
  all: { type: "boolean" },
  "with-vector": { type: "boolean" },
  payload: { type: "string" },
  "with-payload": { type: "boolean" },
  filter: { type: "string" },
  "filter-file": { type: "string" },
  ids: { type: "string" },
  field: { type: "string" },
  type: { type: "string" },
  drop: { type: "boolean" },
} as const;

type Flag = keyof typeof OPTIONS;

const GLOBAL_FLAGS: Flag[] = [
  "addr",
  "json",
  "timeout-ms",
  "api-key",
  "tls-ca",
  "tls",
  "help",
  "version",
];

/** Flags each command accepts: [required, optional]. */
const COMMAND_FLAGS: Record<string, [Flag[], Flag[]]> = {
  put: [["id", "vector"], ["collection", "consistency", "payload"]],
  get: [[], ["id", "ids", "collection"]],
  delete: [[], ["id", "ids", "filter", "filter-file", "collection", "consistency"]],
  search: [["vector"], ["k", "ef", "collection", "with-payload", "filter", "filter-file"]],
  scroll: [[], [
    "collection",
    "limit",
    "cursor",
    "all",
    "with-vector",
    "with-payload",
    "filter",
    "filter-file",
  ]],
  count: [[], ["collection", "filter", "filter-file"]],
  "collections create": [["name", "dimension"], [
    "metric",
    "m",
    "ef-construction",
    "quantization",
    "rescore",
    "shard-number",
    "replication-factor",
  ]],
  "collections list": [[], []],
  "collections drop": [["name"], []],
  "collections index": [["name", "field"], ["type", "drop"]],
  stats: [[], []],
  members: [[], []],
  drain: [[], []],
  "backup create": [["collection", "name"], []],
  "backup list": [[], []],
  "backup restore": [["name", "collection"], []],
  "backup delete": [["name"], []],
  load: [["file"], [
    "batch",
    "start-id",
    "concurrency",
    "attempts",
    "collection",
    "consistency",
  ]],
};

/**
 * Rewrites `--flag -0.5,…` into `--flag=-0.5,…` for string flags, so that values starting with
 * a minus sign are not mistaken for flags.
 */
function joinNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const name = a.startsWith("--") ? a.slice(2) : "";
    const next = argv[i + 1];
    if (
      name in OPTIONS && OPTIONS[name as Flag].type === "string" && next !== undefined &&
      /^-[\d.]/.test(next)
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Runs a validator with the flag name as field and turns its error into a UsageError. */
function checked<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ValidationError) throw new UsageError(e.message);
    throw e;
  }
}

/** Parses a non-negative decimal integer flag value. */
export function parseInteger(flag: string, text: string): number {
  if (!/^\d+$/.test(text.trim())) {
    throw new UsageError(`--${flag} ${JSON.stringify(text)} is not a non-negative integer`);
  }
  return Number(text.trim());
}

function integerIn(flag: string, text: string, min: number, max: number): number {
  const n = parseInteger(flag, text);
  if (n < min || n > max) throw new UsageError(`--${flag} ${n} must be between ${min} and ${max}`);
  return n;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Parses "0.1,0.2,0.3" (optionally in brackets) into finite float32-range numbers. */
export function parseVector(text: string, flag = "vector"): number[] {
  let body = text.trim();
  if (body.startsWith("[") && body.endsWith("]")) body = body.slice(1, -1);
  if (body.trim() === "") throw new UsageError(`--${flag} is empty`);
  const parts = body.split(",");
  const vector = new Array<number>(parts.length);
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i].trim();
    if (!DECIMAL.test(p)) {
      throw new UsageError(`--${flag}[${i}] ${JSON.stringify(p)} is not a number`);
    }
    vector[i] = Number(p);
  }
  return checked(() => validateVector(vector, `--${flag}`));
}

/** Field index types of `collections index --type`. */
export const FIELD_INDEX_TYPES = PAYLOAD_FIELD_TYPES;

/**
 * Parses one point id flag value: all digits is an integer id (0 .. 2^64 - 1), a JSON-quoted
 * string (`"123"`) is that string, anything else is the string as given (a UUID, `doc-7`).
 * Errors name `field` (`--id`, `--ids[2]`) and the value.
 */
export function parseId(text: string, field = "--id"): PointId {
  const t = text.trim();
  if (t === "") throw new UsageError(`${field} is empty`);
  try {
    if (/^[0-9]+$/.test(t)) {
      if (t.length > 20) {
        throw new PointIdError(field, t, "is not an integer between 0 and 2^64 - 1");
      }
      return canonicalId(BigInt(t), field);
    }
    if (t.startsWith('"')) {
      let s: unknown;
      try {
        s = JSON.parse(t);
      } catch {
        throw new UsageError(`${field} ${t} is not a JSON string (a quoted id must be one)`);
      }
      if (typeof s !== "string") throw new UsageError(`${field} ${t} is not a JSON string`);
      return validateStringId(s, field);
    }
    return validateStringId(t, field);
  } catch (e) {
    if (e instanceof PointIdError) throw new UsageError(e.message);
    throw e;
  }
}

/**
 * Parses "1,doc-7,\"42\"" into point ids (each as {@link parseId}); commas inside a JSON-quoted
 * item belong to it.
 */
export function parseIds(text: string, flag = "ids"): PointId[] {
  if (text.trim() === "") throw new UsageError(`--${flag} is empty`);
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === "\\") i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p, i) => parseId(p, `--${flag}[${i}]`));
}

/**
 * The filter of `--filter TEXT` or `--filter-file F` (one at most) as compact JSON text;
 * undefined when neither is given. Only JSON syntax and the top-level object are checked here
 * (naming the flag); the server checks the rest and names the JSON path of a bad part.
 */
export function filterFlag(
  text: string | undefined,
  file: string | undefined,
  read: (path: string) => string = (path) => readFileSync(path, "utf8"),
): string | undefined {
  if (text !== undefined && file !== undefined) {
    throw new UsageError("give --filter or --filter-file, not both");
  }
  let source = "--filter";
  if (file !== undefined) {
    source = `--filter-file ${JSON.stringify(file)}`;
    try {
      text = read(file);
    } catch (e) {
      throw new UsageError(`${source}: ${(e as Error).message}`);
    }
  }
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${source} is not valid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new UsageError(
      `${source} must be a JSON object such as {"must": [...]}, got ${
        shorten(JSON.stringify(value), 80)
      }`,
    );
  }
  return JSON.stringify(value);
}

function collectionFlag(text: string | undefined): string {
  if (text === undefined || text === "") return "";
  return checked(() => validateCollectionName(text, "--collection"));
}

/**
 * Parses the command line (without the program name); `env` supplies `VECTORDB_API_KEY` when
 * `--api-key` is absent. Throws UsageError.
 */
export function parseCli(
  argv: string[],
  env: { VECTORDB_API_KEY?: string } = {},
): ParsedCli {
  let parsed;
  const args = joinNegativeValues(argv);
  const unknown = unknownFlagError(args, OPTIONS);
  if (unknown !== null) throw new UsageError(unknown.message);
  try {
    parsed = parseArgs({
      args,
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]);
  }
  const v = parsed.values as Partial<Record<Flag, string | boolean>>;
  const str = (f: Flag) => v[f] as string | undefined;

  const addr = str("addr") ?? DEFAULT_ADDR;
  if (!/^(unix:.+|.+:\d+)$/.test(addr)) {
    throw new UsageError(`--addr ${JSON.stringify(addr)} must be host:port`);
  }
  const global: GlobalOptions = {
    addr,
    json: v.json === true,
    timeout_ms: str("timeout-ms") === undefined
      ? DEFAULT_CLI_TIMEOUT_MS
      : integerIn("timeout-ms", str("timeout-ms")!, 1, 86_400_000),
  };
  const key = str("api-key") ?? (env.VECTORDB_API_KEY || undefined);
  if (key !== undefined) {
    const source = str("api-key") !== undefined ? "--api-key" : "VECTORDB_API_KEY";
    try {
      global.api_key = checkApiKey(key, source);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  if (str("tls-ca") !== undefined) global.tls_ca = str("tls-ca");
  if (v.tls === true) global.tls = true;

  const pos = parsed.positionals;
  if (v.version === true && v.help !== true) return { global, command: { kind: "version" } };
  if (v.help === true || pos.length === 0) {
    return { global, command: { kind: "help", requested: v.help === true } };
  }
  let name = pos[0];
  let used = 1;
  if (name === "collections") {
    if (pos.length < 2) throw new UsageError(`"collections" needs create, list, drop or index`);
    name = `collections ${pos[1]}`;
    used = 2;
  } else if (name === "backup") {
    if (pos.length < 2) throw new UsageError(`"backup" needs create, list, restore or delete`);
    name = `backup ${pos[1]}`;
    used = 2;
  }
  const spec = COMMAND_FLAGS[name];
  if (!spec) {
    const hint = didYouMean(name, Object.keys(COMMAND_FLAGS), (c) => JSON.stringify(c));
    throw new UsageError(`Unknown command ${JSON.stringify(name)}${hint}`);
  }
  if (pos.length > used) throw new UsageError(`Unexpected argument ${JSON.stringify(pos[used])}`);
  const [required, optional] = spec;
  for (const flag of Object.keys(v) as Flag[]) {
    if (!GLOBAL_FLAGS.includes(flag) && !required.includes(flag) && !optional.includes(flag)) {
      const own = [...GLOBAL_FLAGS, ...required, ...optional].map((f) => `--${f}`);
      throw new UsageError(`--${flag} is not a flag of "${name}"${didYouMean(`--${flag}`, own)}`);
    }
  }
  for (const flag of required) {
    if (v[flag] === undefined) throw new UsageError(`"${name}" needs --${flag}`);
  }

  const id = () => parseId(str("id")!, "--id");
  const consistency = () => checked(() => validateConsistency(str("consistency"), "--consistency"));
  let filter_text: string | undefined | null = null;
  /** The filter of --filter / --filter-file, read and checked once. */
  const filter = () =>
    filter_text !== null
      ? filter_text
      : (filter_text = filterFlag(str("filter"), str("filter-file")));
  /** Exactly one of `flags` must be given (--filter and --filter-file count as one); which. */
  const oneOf = (command: string, flags: Flag[]): Flag => {
    const given = flags.filter((f) => v[f] !== undefined);
    if (given.length === 1 || (given.length === 2 && given.join() === "filter,filter-file")) {
      return given[0];
    }
    const names = flags.map((f) => `--${f}`).join(", ");
    throw new UsageError(
      given.length === 0
        ? `"${command}" needs one of ${names}`
        : `"${command}" takes one of ${names}, got ${given.map((f) => `--${f}`).join(" and ")}`,
    );
  };
  let command: Command;
  switch (name) {
    case "put":
      command = {
        kind: "put",
        id: id(),
        vector: parseVector(str("vector")!),
        collection: collectionFlag(str("collection")),
        consistency: consistency(),
      };
      if (str("payload") !== undefined) {
        // Checked here with the server's limits, so a bad payload never leaves the client.
        checked(() => validatePayload(str("payload"), "--payload"));
        command.payload = str("payload")!;
      }
      break;
    case "get":
      oneOf(name, ["id", "ids"]);
      command = str("ids") !== undefined
        ? {
          kind: "get-batch",
          ids: parseIds(str("ids")!),
          collection: collectionFlag(str("collection")),
        }
        : { kind: "get", id: id(), collection: collectionFlag(str("collection")) };
      break;
    case "delete": {
      const by = oneOf(name, ["id", "ids", "filter", "filter-file"]);
      const collection = collectionFlag(str("collection"));
      command = by === "id"
        ? { kind: "delete", id: id(), collection, consistency: consistency() }
        : by === "ids"
        ? {
          kind: "delete-batch",
          ids: parseIds(str("ids")!),
          collection,
          consistency: consistency(),
        }
        : { kind: "delete-filter", filter: filter()!, collection, consistency: consistency() };
      break;
    }
    case "search":
      command = {
        kind: "search",
        vector: parseVector(str("vector")!),
        k: str("k") === undefined
          ? DEFAULT_K
          : checked(() => validateK(parseInteger("k", str("k")!), "--k")),
        ef: str("ef") === undefined
          ? 0
          : checked(() => validateEf(parseInteger("ef", str("ef")!), "--ef")),
        collection: collectionFlag(str("collection")),
      };
      if (v["with-payload"] === true) command.with_payload = true;
      if (filter() !== undefined) command.filter = filter();
      break;
    case "scroll": {
      const limit = str("limit") === undefined ? 0 : parseInteger("limit", str("limit")!);
      if ((str("limit") !== undefined && limit < 1) || limit > SCROLL_LIMIT_MAX) {
        throw new UsageError(`--limit ${limit} must be between 1 and ${SCROLL_LIMIT_MAX}`);
      }
      const cursor = str("cursor") ?? "";
      checked(() => decodeCursor(cursor, "--cursor"));
      command = {
        kind: "scroll",
        collection: collectionFlag(str("collection")),
        limit,
        cursor,
        all: v.all === true,
        with_vector: v["with-vector"] === true,
      };
      if (v["with-payload"] === true) command.with_payload = true;
      if (filter() !== undefined) command.filter = filter();
      break;
    }
    case "count":
      command = { kind: "count", collection: collectionFlag(str("collection")) };
      if (filter() !== undefined) command.filter = filter();
      break;
    case "collections create": {
      const num = (f: Flag) => str(f) === undefined ? 0 : parseInteger(f, str(f)!);
      const c = checked(() =>
        validateCreateCollectionRequest({
          name: str("name"),
          dimension: parseInteger("dimension", str("dimension")!),
          metric: str("metric") ?? "",
          m: num("m"),
          ef_construction: num("ef-construction"),
          quantization: str("quantization") ?? "",
          rescore: num("rescore"),
          shard_number: num("shard-number"),
          replication_factor: num("replication-factor"),
        })
      );
      command = { kind: "collections-create", ...c };
      break;
    }
    case "collections list":
      command = { kind: "collections-list" };
      break;
    case "collections drop":
      command = {
        kind: "collections-drop",
        name: checked(() => validateCollectionName(str("name"), "--name")),
      };
      break;
    case "collections index": {
      const index_name = checked(() => validateCollectionName(str("name"), "--name"));
      const field = str("field")!;
      if (field.trim() === "") throw new UsageError("--field is empty");
      if (oneOf(name, ["type", "drop"]) === "drop") {
        command = { kind: "collections-unindex", name: index_name, field };
      } else {
        const type = str("type")!;
        if (!(FIELD_INDEX_TYPES as readonly string[]).includes(type)) {
          throw new UsageError(
            `--type ${JSON.stringify(type)} must be one of ${FIELD_INDEX_TYPES.join(", ")}` +
              didYouMean(type, FIELD_INDEX_TYPES, (t) => t),
          );
        }
        command = { kind: "collections-index", name: index_name, field, type };
      }
      break;
    }
    case "stats":
      command = { kind: "stats" };
      break;
    case "members":
      command = { kind: "members" };
      break;
    case "drain":
      command = { kind: "drain" };
      break;
    case "backup create":
      command = {
        kind: "backup-create",
        collection: checked(() => validateCollectionName(str("collection"), "--collection")),
        name: checked(() => validateCollectionName(str("name"), "--name")),
      };
      break;
    case "backup list":
      command = { kind: "backup-list" };
      break;
    case "backup restore":
      command = {
        kind: "backup-restore",
        name: checked(() => validateCollectionName(str("name"), "--name")),
        collection: checked(() => validateCollectionName(str("collection"), "--collection")),
      };
      break;
    case "backup delete":
      command = {
        kind: "backup-delete",
        name: checked(() => validateCollectionName(str("name"), "--name")),
      };
      break;
    default: {
      const file = str("file")!;
      const format = (() => {
        try {
          return pointsFileFormat(file);
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
      })();
      const start_id = str("start-id") === undefined
        ? 0
        : checked(() => validateId(parseInteger("start-id", str("start-id")!), "--start-id"));
      if (format === "jsonl" && start_id !== 0) {
        throw new UsageError("--start-id applies only to .fvecs files; JSON lines carry their ids");
      }
      command = {
        kind: "load",
        file,
        batch: str("batch") === undefined
          ? DEFAULT_LOAD_BATCH
          : integerIn("batch", str("batch")!, 1, BATCH_POINTS_MAX),
        start_id,
        concurrency: str("concurrency") === undefined
          ? DEFAULT_LOAD_CONCURRENCY
          : integerIn("concurrency", str("concurrency")!, 1, LOAD_CONCURRENCY_MAX),
        attempts: str("attempts") === undefined
          ? DEFAULT_RETRY_POLICY.attempts_max
          : integerIn("attempts", str("attempts")!, 1, LOAD_ATTEMPTS_MAX),
        collection: collectionFlag(str("collection")),
        consistency: consistency(),
      };
    }
  }
  return { global, command };
}

export async function runCommand(parsed: ParsedCli, io: CliIo): Promise<number> {
  const { global, command } = parsed;
  if (command.kind === "help") {
    if (command.requested) {
      io.stdout(USAGE + "\n");
      return EXIT_OK;
    }
    io.stderr(USAGE + "\n");
    return EXIT_USAGE;
  }
  if (command.kind === "version") {
    io.stdout(versionLine("client") + "\n");
    return EXIT_OK;
  }
  // The library's client without its retries: one attempt per command, as before (load
  // retries PutBatch itself, with its own policy).
  const api = new VectorDbClient({
    address: global.addr,
    timeoutMs: global.timeout_ms,
    apiKey: global.api_key,
    tlsCa: global.tls_ca,
    tls: global.tls,
    retry: false,
    sources: { apiKey: "--api-key", tlsCa: "--tls-ca" },
  });
  try {
    switch (command.kind) {
      case "put": {
        const { kind: _, consistency, id, vector, ...rest } = command;
        const res = await api.call("Put", {
          ...rest,
          // Packed: the servers decode it without per-value work.
          ...vectorToWire(Float32Array.from(vector)),
          ...idToWire(id),
          consistency: consistency ?? "",
        });
        const acks = res.replicas_acked ? `, ${res.replicas_acked} replicas acknowledged` : "";
        const seq = res.seq && res.seq !== "0" ? `seq ${res.seq}` : "";
        const detail = [seq, acks.slice(2)].filter(Boolean).join(", ");
        print(
          io,
          global.json,
          res,
          res.ok
            ? `Put id ${formatId(command.id)} into ${collectionLabel(command.collection)}` +
              (detail ? ` (${detail})` : "")
            : `Put id ${formatId(command.id)} was not acknowledged`,
        );
        return res.ok ? EXIT_OK : EXIT_FAILURE;
      }
      case "get": {
        const res = await api.call("Get", {
          ...idToWire(command.id),
          collection: command.collection,
        });
        print(
          io,
          global.json,
          res,
          res.found
            ? `id ${formatId(command.id)} in ${collectionLabel(command.collection)}: ${
              formatVector(res.vector)
            }` + (res.payload ? `\npayload: ${res.payload}` : "")
            : `id ${formatId(command.id)} not found in ${collectionLabel(command.collection)}`,
        );
        return EXIT_OK;
      }
      case "get-batch": {
        const points = await api.getBatch(command.collection, command.ids, {
          withVector: true,
          withPayload: true,
        });
        print(
          io,
          global.json,
          { points },
          points.map((p) =>
            p.found
              ? `id ${formatId(p.id)}: ${formatVector(p.vector)}` +
                (p.payload ? `  payload: ${p.payload}` : "")
              : `id ${formatId(p.id)}: not found`
          ).join("\n"),
        );
        return EXIT_OK;
      }
      case "delete-batch": {
        const res = await api.deleteBatch(command.collection, command.ids, {
          consistency: command.consistency,
        });
        print(
          io,
          global.json,
          res,
          `Deleted ${res.deleted} of ${command.ids.length} ids from ` +
            `${collectionLabel(command.collection)} (the others were not there)`,
        );
        return EXIT_OK;
      }
      case "delete-filter": {
        const res = await api.deleteByFilter(command.collection, command.filter, {
          consistency: command.consistency,
        });
        print(
          io,
          global.json,
          res,
          `Deleted ${formatCount(res.deleted)} ${res.deleted === 1 ? "point" : "points"} ` +
            `matching the filter from ${collectionLabel(command.collection)}`,
        );
        return EXIT_OK;
      }
      case "delete": {
        const res = await api.call("Delete", {
          ...idToWire(command.id),
          collection: command.collection,
          consistency: command.consistency ?? "",
        });
        print(
          io,
          global.json,
          res,
          res.deleted
            ? `Deleted id ${formatId(command.id)} from ${collectionLabel(command.collection)}`
            : `id ${formatId(command.id)} not found in ${collectionLabel(command.collection)}`,
        );
        return EXIT_OK;
      }
      case "search": {
        const { kind: _, vector, ...request } = command;
        const wire = await api.call("Search", {
          ...request,
          ...vectorToWire(Float32Array.from(vector)),
        });
        // Each result's wire pair (id, string_id) as one id, printed exactly.
        const res = {
          ...wire,
          results: wire.results.map(({ string_id, ...r }) => ({
            ...r,
            id: idFromWire(r.id, string_id),
          })),
        };
        print(io, global.json, res, formatSearch(res, command.with_payload === true));
        return EXIT_OK;
      }
      case "scroll": {
        let cursor = command.cursor;
        do {
          const res = await api.scroll(command.collection, {
            limit: command.limit,
            cursor,
            withVector: command.with_vector,
            withPayload: command.with_payload,
            filter: command.filter,
          });
          print(io, global.json, res, formatScroll(res, command.all, command.with_payload));
          cursor = res.next_cursor;
        } while (command.all && cursor !== "");
        return EXIT_OK;
      }
      case "count": {
        const res = await api.call("Count", {
          collection: command.collection,
          ...(command.filter === undefined ? {} : { filter: command.filter }),
        });
        print(
          io,
          global.json,
          res,
          formatPointCount(command.collection, res, command.filter !== undefined),
        );
        return EXIT_OK;
      }
      case "collections-create": {
        const { kind: _, ...request } = command;
        const res = await api.call("CreateCollection", request);
        print(io, global.json, res, formatCreated(command.name, res));
        return EXIT_OK;
      }
      case "collections-list": {
        const res = await api.call("ListCollections", {});
        print(io, global.json, res, formatCollections(res.collections));
        return EXIT_OK;
      }
      case "collections-drop": {
        const res = await api.call("DropCollection", { name: command.name });
        print(
          io,
          global.json,
          res,
          res.dropped ? `Dropped collection "${command.name}"` : `No collection "${command.name}"`,
        );
        return EXIT_OK;
      }
      case "collections-index": {
        const res = await api.createFieldIndex(
          command.name,
          command.field,
          command.type as FieldIndexType,
        );
        print(
          io,
          global.json,
          res,
          res.created
            ? `Indexed field "${command.field}" of collection "${command.name}" as ${command.type}`
            : `Field "${command.field}" of collection "${command.name}" already has a ` +
              `${command.type} index`,
        );
        return EXIT_OK;
      }
      case "collections-unindex": {
        const res = await api.dropFieldIndex(command.name, command.field);
        print(
          io,
          global.json,
          res,
          res.dropped
            ? `Dropped the index of field "${command.field}" of collection "${command.name}"`
            : `Field "${command.field}" of collection "${command.name}" has no index`,
        );
        return EXIT_OK;
      }
      case "stats": {
        const res = await api.call("Stats", {});
        print(io, global.json, res, formatStats(res));
        return EXIT_OK;
      }
      case "members": {
        const res = await api.call("Members", {});
        print(io, global.json, res, formatMembers(res));
        return EXIT_OK;
      }
      case "drain": {
        const res = await api.call("Drain", {});
        print(
          io,
          global.json,
          res,
          res.started
            ? `Node ${res.node_id} is leaving: it hands its data off to the other nodes, then exits`
            : `Node ${res.node_id} is already stopping`,
        );
        return EXIT_OK;
      }
      case "backup-create": {
        const res = await api.call("Backup", {
          collection: command.collection,
          name: command.name,
        });
        const b = res.backup!;
        const nodes = b.nodes ?? [];
        print(
          io,
          global.json,
          res,
          nodes.length > 0
            ? `Backup "${b.name}" of collection "${command.collection}" on ${nodes.length} ` +
              `storage nodes: ${b.points} points (every replica), ${b.bytes} bytes`
            : `Backup "${b.name}" of collection "${command.collection}": ${b.points} points, ` +
              `${b.bytes} bytes, seq ${b.seq}, sha256 ${b.sha256}`,
        );
        return EXIT_OK;
      }
      case "backup-list": {
        const res = await api.call("ListBackups", {});
        const errors = (res.errors ?? []).map((e) => `\nnode did not answer: ${e}`).join("");
        print(io, global.json, res, formatBackups(res.backups) + errors);
        return EXIT_OK;
      }
      case "backup-restore": {
        const res = await api.call("Restore", {
          backup: command.name,
          collection: command.collection,
        });
        print(
          io,
          global.json,
          res,
          `Restored backup "${command.name}" into collection "${command.collection}": ` +
            `${res.points} points` + restoreNodes(res.nodes ?? [], res.anti_entropy_started),
        );
        return EXIT_OK;
      }
      case "backup-delete": {
        const res = await api.call("DeleteBackup", { name: command.name });
        const nodes = res.nodes ?? [];
        print(
          io,
          global.json,
          res,
          `Deleted backup "${command.name}"` +
            (nodes.length > 0 ? ` on ${nodes.length} storage nodes` : ""),
        );
        return EXIT_OK;
      }
      case "load":
        return await runLoad(command, api, global, io);
    }
  } finally {
    api.close();
  }
}

/**
 * One line per backup: name, collection, points, bytes, created (UTC); through a router also
 * on how many nodes it is and whether it is complete (on every node of the ring).
 */
export function formatBackups(backups: readonly BackupInfo[]): string {
  if (backups.length === 0) return "No backups";
  return backups.map((b) => {
    const nodes = b.nodes ?? [];
    const on = nodes.filter((n) => n.backup).length;
    return `${b.name}  collection=${b.collection?.name ?? "?"}  points=${b.points}  ` +
      `bytes=${b.bytes}  created=${new Date(Number(b.created_ms)).toISOString()}` +
      (nodes.length > 0 ? `  nodes=${on}/${nodes.length}${b.complete ? "" : " INCOMPLETE"}` : "");
  }).join("\n");
}

/** The router's part of a restore line: how many nodes restored, and the anti-entropy run. */
function restoreNodes(nodes: readonly NodeRestore[], anti_entropy_started?: boolean): string {
  if (nodes.length === 0) return "";
  const from = nodes.filter((n) => n.from_backup).length;
  return ` (every replica) on ${nodes.length} storage nodes, ${from} from their backup` +
    (from < nodes.length ? `, ${nodes.length - from} created empty` : "") +
    (anti_entropy_started
      ? "; an anti-entropy run moves points to their current owners (watch stats)"
      : "");
}

function envApiKey(): string | undefined {
  try {
    return process.env.VECTORDB_API_KEY;
  } catch {
    return undefined; // no --allow-env: as if unset
  }
}

/** Parses and runs `argv`; every failure becomes one line on stderr. Returns the exit status. */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  try {
    return await runCommand(parseCli(argv, { VECTORDB_API_KEY: envApiKey() }), io);
  } catch (e) {
    const usage = e instanceof UsageError;
    const hint = usage ? " (run with --help for usage)" : "";
    io.stderr(`error: ${describeGrpcError(e)}${hint}\n`);
    return usage ? EXIT_USAGE : EXIT_FAILURE;
  }
}

const isMain = (import.meta as { main?: boolean }).main ??
  (process.argv[1] !== undefined &&
    resolve(process.argv[1]) === fileURLToPath(import.meta.url));

if (isMain) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
