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

import { statSync } from "node:fs";
import process from "node:process";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { ApiClient, describeGrpcError, isServiceError } from "../api/client.ts";
import { BATCH_POINTS_MAX, type Consistency, MESSAGE_BYTES_MAX } from "../common/limits.ts";
import type { Point } from "../api/proto.ts";
import {
  validateCollectionName,
  validateConsistency,
  validateCreateCollectionRequest,
  validateEf,
  validateId,
  validateK,
  validateVector,
  ValidationError,
} from "../api/validate.ts";
import {
  formatCollections,
  formatCount,
  formatCreated,
  formatLoadSummary,
  formatMembers,
  formatProgress,
  formatSearch,
  formatStats,
  formatVector,
  type LoadFailure,
  type LoadSummary,
  shorten,
} from "./format.ts";
import {
  decideRetry,
  DEFAULT_RETRY_POLICY,
  defaultAdaptLimits,
  LOAD_ATTEMPTS_MAX,
  LoadAdapter,
  loadRate,
  type RetryPolicy,
} from "./load_plan.ts";
import { PointsFileError, pointsFileFormat, readPointsFile } from "./points_file.ts";

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

/** Exit statuses. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The command line is wrong; the message says how. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export const USAGE = `Usage: client [global flags] <command> [flags]

Commands:
  put --id N --vector X,Y,... [--collection C] [--consistency one|quorum|all]
  get --id N [--collection C]
  delete --id N [--collection C] [--consistency one|quorum|all]
  search --vector X,Y,... [--k ${DEFAULT_K}] [--ef N] [--collection C]
  collections create --name C --dimension D [--metric l2|cosine|dot] [--m 16]
                     [--ef-construction 200]
  collections list
  collections drop --name C
  stats
  members
  drain              (with --addr of a storage node: it hands its data off and exits)
  load --file F.fvecs|F.jsonl [--batch ${DEFAULT_LOAD_BATCH}] [--start-id 0] \
[--concurrency ${DEFAULT_LOAD_CONCURRENCY}]
       [--attempts ${DEFAULT_RETRY_POLICY.attempts_max}] [--collection C] \
[--consistency one|quorum|all]

Global flags:
  --addr HOST:PORT   server to call (default ${DEFAULT_ADDR}, the router)
  --json             print each response as one JSON object
  --timeout-ms N     deadline of each call in milliseconds (default ${DEFAULT_CLI_TIMEOUT_MS})
  -h, --help         print this help

Vectors are comma-separated numbers, e.g. --vector 0.1,-0.2,3e-4. An empty --collection
selects "default". .fvecs ids are the row number plus --start-id; JSON lines carry their own
ids: {"id": 7, "vector": [0.1, 0.2]}. load retries UNAVAILABLE, DEADLINE_EXCEEDED and
RESOURCE_EXHAUSTED with backoff (up to --attempts per batch), halves its batch and concurrency
on overload and grows them back; other failures fail their points for good, counted in the
summary. Exit status: 0 ok, 1 failed call, bad file or any point failed for good, 2 bad
command line.`;

/** Flags common to every command. */
export interface GlobalOptions {
  addr: string;
  json: boolean;
  timeout_ms: number;
}

/** A parsed command. */
export type Command =
  | { kind: "help"; requested: boolean }
  | {
    kind: "put";
    id: number;
    vector: number[];
    collection: string;
    consistency: Consistency | undefined;
  }
  | { kind: "get"; id: number; collection: string }
  | { kind: "delete"; id: number; collection: string; consistency: Consistency | undefined }
  | { kind: "search"; vector: number[]; k: number; ef: number; collection: string }
  | {
    kind: "collections-create";
    name: string;
    dimension: number;
    metric: string;
    m: number;
    ef_construction: number;
  }
  | { kind: "collections-list" }
  | { kind: "collections-drop"; name: string }
  | { kind: "stats" }
  | { kind: "members" }
  | { kind: "drain" }
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
  help: { type: "boolean", short: "h" },
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
  file: { type: "string" },
  batch: { type: "string" },
  "start-id": { type: "string" },
  concurrency: { type: "string" },
  attempts: { type: "string" },
} as const;

type Flag = keyof typeof OPTIONS;

const GLOBAL_FLAGS: Flag[] = ["addr", "json", "timeout-ms", "help"];

/** Flags each command accepts: [required, optional]. */
const COMMAND_FLAGS: Record<string, [Flag[], Flag[]]> = {
  put: [["id", "vector"], ["collection", "consistency"]],
  get: [["id"], ["collection"]],
  delete: [["id"], ["collection", "consistency"]],
  search: [["vector"], ["k", "ef", "collection"]],
  "collections create": [["name", "dimension"], ["metric", "m", "ef-construction"]],
  "collections list": [[], []],
  "collections drop": [["name"], []],
  stats: [[], []],
  members: [[], []],
  drain: [[], []],
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

function collectionFlag(text: string | undefined): string {
  if (text === undefined || text === "") return "";
  return checked(() => validateCollectionName(text, "--collection"));
}

/** Parses the command line (without the program name). Throws UsageError. */
export function parseCli(argv: string[]): ParsedCli {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(argv),
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

  const pos = parsed.positionals;
  if (v.help === true || pos.length === 0) {
    return { global, command: { kind: "help", requested: v.help === true } };
  }
  let name = pos[0];
  let used = 1;
  if (name === "collections") {
    if (pos.length < 2) throw new UsageError(`"collections" needs create, list or drop`);
    name = `collections ${pos[1]}`;
    used = 2;
  }
  const spec = COMMAND_FLAGS[name];
  if (!spec) throw new UsageError(`Unknown command ${JSON.stringify(name)}`);
  if (pos.length > used) throw new UsageError(`Unexpected argument ${JSON.stringify(pos[used])}`);
  const [required, optional] = spec;
  for (const flag of Object.keys(v) as Flag[]) {
    if (!GLOBAL_FLAGS.includes(flag) && !required.includes(flag) && !optional.includes(flag)) {
      throw new UsageError(`--${flag} is not a flag of "${name}"`);
    }
  }
  for (const flag of required) {
    if (v[flag] === undefined) throw new UsageError(`"${name}" needs --${flag}`);
  }

  const id = () => checked(() => validateId(parseInteger("id", str("id")!), "--id"));
  const consistency = () => checked(() => validateConsistency(str("consistency"), "--consistency"));
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
      break;
    case "get":
      command = { kind: "get", id: id(), collection: collectionFlag(str("collection")) };
      break;
    case "delete":
      command = {
        kind: "delete",
        id: id(),
        collection: collectionFlag(str("collection")),
        consistency: consistency(),
      };
      break;
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
    case "stats":
      command = { kind: "stats" };
      break;
    case "members":
      command = { kind: "members" };
      break;
    case "drain":
      command = { kind: "drain" };
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

/** Where the CLI writes; injectable for tests. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Whether stderr is a terminal (draws the load progress bar). */
  stderr_is_tty: boolean;
  /** Milliseconds clock for throughput. */
  now(): number;
  /** Random numbers in [0, 1) for retry jitter; default Math.random. */
  random?: () => number;
  /** Waits `ms` before a retry; default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

/** The process's stdout/stderr. */
export function processIo(): CliIo {
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    stderr_is_tty: process.stderr.isTTY === true,
    now: () => performance.now(),
  };
}

function print(io: CliIo, json: boolean, value: unknown, text: string): void {
  io.stdout((json ? JSON.stringify(value) : text) + "\n");
}

function collectionLabel(c: string): string {
  return `"${c || "default"}"`;
}

/** Upper bound of the encoded size of a PutBatch of `points` points of dimension `dim`. */
export function batchBytesMax(points: number, dim: number): number {
  // Per point: id (tag + ≤5 bytes varint), vector (tag + ≤5 bytes length + 4 × dim), and the
  // point's own tag and length (≤6 bytes); plus the collection and consistency strings.
  return points * (6 + 6 + 4 * dim + 6) + 256;
}

/** Seconds between progress lines when stderr is not a terminal. */
export const LOAD_PROGRESS_LINE_MS = 5000;

/** A batch on its way: its points and the attempts made so far. */
interface LoadItem {
  points: Point[];
  attempts: number;
}

/**
 * `client load`: streams the file in batches, keeps up to the adapted number of PutBatch calls
 * in flight, retries UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED with backoff and
 * jitter (see load_plan.ts), and fails the points of any other failure for good (counted by
 * reason; the run goes on and exits 1). Memory is bounded: the file is read at most one reader
 * batch ahead, and retries come from calls that were in flight.
 *
 * A retried batch is safe because PutBatch is an upsert whose version the server stamps. After
 * an ambiguous failure (e.g. DEADLINE_EXCEEDED after the owners applied it) the retry applies
 * the batch again with a newer version, which may overwrite a concurrent writer's newer value
 * of the same ids: last writer wins, which we accept for bulk loads.
 */
async function runLoad(
  cmd: Extract<Command, { kind: "load" }>,
  api: ApiClient,
  global: GlobalOptions,
  io: CliIo,
): Promise<number> {
  let bytes_total: number;
  try {
    bytes_total = statSync(cmd.file).size;
  } catch (e) {
    throw new PointsFileError(`Cannot read ${cmd.file}: ${(e as Error).message}`);
  }
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, attempts_max: cmd.attempts };
  const adapter = new LoadAdapter(defaultAdaptLimits(cmd.batch, cmd.concurrency));
  const random = io.random ?? Math.random;
  const sleep = io.sleep ??
    ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const t0 = io.now();
  const inflight = new Set<Promise<void>>();
  /** Batches waiting for another attempt (each came from a call in flight: bounded). */
  const retry_queue: LoadItem[] = [];
  const failures = new Map<string, LoadFailure>();
  let file_error: unknown = undefined;
  let acked = 0;
  let failed = 0;
  let retries = 0;
  let batches = 0;
  let total: number | undefined = undefined;
  let drawn_at = io.now();
  const progress = (bar_chars: number) => {
    const elapsed_ms = io.now() - t0;
    const r = loadRate(acked, acked + failed, total, elapsed_ms);
    return formatProgress({ acked, failed, total, retries, ...r }, bar_chars);
  };
  const draw = (force: boolean) => {
    const now = io.now();
    if (io.stderr_is_tty) {
      if (!force && now - drawn_at < 100) return;
      drawn_at = now;
      io.stderr("\r\x1b[K" + progress(24));
    } else if (now - drawn_at >= LOAD_PROGRESS_LINE_MS) {
      drawn_at = now;
      io.stderr(progress(0) + "\n");
    }
  };
  const retry_reasons: Record<string, number> = {};
  const reasonOf = (error: unknown) =>
    isServiceError(error)
      ? grpc.status[error.code] ?? `STATUS_${error.code}`
      : error instanceof Error
      ? error.name
      : "Error";
  const failForGood = (item: LoadItem, error: unknown) => {
    const reason = reasonOf(error);
    const f = failures.get(reason);
    if (f) f.points += item.points.length;
    else {
      failures.set(reason, {
        reason,
        points: item.points.length,
        first_message: describeGrpcError(error),
      });
    }
    failed += item.points.length;
  };
  const send = async (item: LoadItem): Promise<void> => {
    item.attempts++;
    try {
      const res = await api.call("PutBatch", {
        points: item.points,
        collection: cmd.collection,
        consistency: cmd.consistency ?? "",
      });
      acked += res.count;
      adapter.onSuccess();
    } catch (e) {
      const code = isServiceError(e) ? e.code : undefined;
      adapter.onFailure(code, io.now());
      const d = decideRetry(code, item.attempts, policy, random);
      if (d.action === "fail") {
        failForGood(item, e);
      } else {
        retries++;
        const reason = reasonOf(e);
        retry_reasons[reason] = (retry_reasons[reason] ?? 0) + 1;
        // The slot stays taken while waiting, so a down cluster slows the load down.
        await sleep(d.wait_ms);
        retry_queue.push(item);
      }
    }
    draw(false);
  };

  // The file, read at most one reader batch ahead of what is sent.
  const reader = readPointsFile(cmd.file, { batch_points: cmd.batch, start_id: cmd.start_id });
  let buffer: Point[] = [];
  let buffer_at = 0;
  let reader_done = false;
  let dim_checked = false;
  const take = async (n: number): Promise<Point[] | undefined> => {
    while (buffer.length - buffer_at < n && !reader_done && file_error === undefined) {
      let r: IteratorResult<{ points: Point[]; bytes_read: number }>;
      try {
        r = await reader.next();
      } catch (e) {
        file_error = e;
        break;
      }
      if (r.done) {
        reader_done = true;
        break;
      }
      if (!dim_checked) {
        dim_checked = true;
        const dim = r.value.points[0].vector.length;
        if (batchBytesMax(cmd.batch, dim) > MESSAGE_BYTES_MAX) {
          const fit = Math.floor((MESSAGE_BYTES_MAX - 256) / (18 + 4 * dim));
          throw new UsageError(
            `--batch ${cmd.batch} of dimension ${dim} exceeds the 64 MiB message limit; ` +
              `use --batch ${fit} or less`,
          );
        }
        if (pointsFileFormat(cmd.file) === "fvecs") {
          total = Math.floor(bytes_total / (4 + 4 * dim));
        }
      }
      buffer = buffer.slice(buffer_at).concat(r.value.points);
      buffer_at = 0;
    }
    if (buffer.length - buffer_at === 0) return undefined;
    const points = buffer.slice(buffer_at, buffer_at + n);
    buffer_at += points.length;
    return points;
  };
  const next = async (): Promise<LoadItem | undefined> => {
    const retry = retry_queue.shift();
    if (retry !== undefined) {
      // A retried batch larger than the adapted size goes out in pieces.
      if (retry.points.length > adapter.batch) {
        retry_queue.unshift({
          points: retry.points.slice(adapter.batch),
          attempts: retry.attempts,
        });
        return { points: retry.points.slice(0, adapter.batch), attempts: retry.attempts };
      }
      return retry;
    }
    const points = await take(adapter.batch);
    return points === undefined ? undefined : { points, attempts: 0 };
  };

  try {
    for (;;) {
      while (inflight.size >= adapter.concurrency) await Promise.race(inflight);
      const item = await next();
      if (item === undefined) {
        if (inflight.size === 0) break;
        await Promise.race(inflight);
        continue;
      }
      const call: Promise<void> = send(item).finally(() => inflight.delete(call));
      inflight.add(call);
      batches++;
    }
  } finally {
    await Promise.all(inflight);
    if (io.stderr_is_tty) io.stderr("\r\x1b[K");
  }
  if (file_error !== undefined && acked === 0 && failed === 0) throw file_error;
  const elapsed_ms = Math.round(io.now() - t0);
  const summary: LoadSummary = {
    file: cmd.file,
    collection: cmd.collection || "default",
    points: acked,
    batches,
    bytes: bytes_total,
    elapsed_ms,
    retries,
    retry_reasons,
    failures: [...failures.values()],
  };
  print(
    io,
    global.json,
    {
      ...summary,
      failed,
      points_per_s: elapsed_ms > 0 ? Math.round(acked / (elapsed_ms / 1000)) : 0,
      ...(file_error !== undefined ? { file_error: describeGrpcError(file_error) } : {}),
    },
    formatLoadSummary(summary),
  );
  if (file_error !== undefined) {
    io.stderr(
      `error: ${describeGrpcError(file_error)} (${formatCount(acked)} points were loaded ` +
        `before the failure)\n`,
    );
    return EXIT_FAILURE;
  }
  if (failed > 0) {
    const first = summary.failures[0];
    io.stderr(
      `error: ${formatCount(failed)} points failed for good; first: ` +
        `${shorten(first.first_message)}\n`,
    );
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

/** Runs a parsed command against the server; returns the exit status. */
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
  const api = new ApiClient(global.addr, { timeout_ms: global.timeout_ms });
  try {
    switch (command.kind) {
      case "put": {
        const { kind: _, consistency, ...rest } = command;
        const res = await api.call("Put", { ...rest, consistency: consistency ?? "" });
        const acks = res.replicas_acked ? `, ${res.replicas_acked} replicas acknowledged` : "";
        const seq = res.seq && res.seq !== "0" ? `seq ${res.seq}` : "";
        const detail = [seq, acks.slice(2)].filter(Boolean).join(", ");
        print(
          io,
          global.json,
          res,
          res.ok
            ? `Put id ${command.id} into ${collectionLabel(command.collection)}` +
              (detail ? ` (${detail})` : "")
            : `Put id ${command.id} was not acknowledged`,
        );
        return res.ok ? EXIT_OK : EXIT_FAILURE;
      }
      case "get": {
        const res = await api.call("Get", { id: command.id, collection: command.collection });
        print(
          io,
          global.json,
          res,
          res.found
            ? `id ${command.id} in ${collectionLabel(command.collection)}: ${
              formatVector(res.vector)
            }`
            : `id ${command.id} not found in ${collectionLabel(command.collection)}`,
        );
        return EXIT_OK;
      }
      case "delete": {
        const res = await api.call("Delete", {
          id: command.id,
          collection: command.collection,
          consistency: command.consistency ?? "",
        });
        print(
          io,
          global.json,
          res,
          res.deleted
            ? `Deleted id ${command.id} from ${collectionLabel(command.collection)}`
            : `id ${command.id} not found in ${collectionLabel(command.collection)}`,
        );
        return EXIT_OK;
      }
      case "search": {
        const { kind: _, ...request } = command;
        const res = await api.call("Search", request);
        print(io, global.json, res, formatSearch(res));
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
      case "load":
        return await runLoad(command, api, global, io);
    }
  } finally {
    api.close();
  }
}

/** Parses and runs `argv`; every failure becomes one line on stderr. Returns the exit status. */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  try {
    return await runCommand(parseCli(argv), io);
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
