/**
 * `client load`: the IO side of a bulk load (reading the file a batch ahead, PutBatch calls in
 * flight, retries, progress and the summary); the decisions (which errors are retried, backoff,
 * adapting batch and concurrency) are the pure rules of load_plan.ts.
 *
 * @module
 */
import { statSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { describeGrpcError, isServiceError } from "../api/client.ts";
import type { VectorDbClient } from "../client/mod.ts";
import { MESSAGE_BYTES_MAX } from "../common/limits.ts";
import type { Point } from "../api/proto.ts";
import type { Command, GlobalOptions } from "./cli.ts";
import {
  formatCount,
  formatLoadSummary,
  formatProgress,
  type LoadFailure,
  type LoadSummary,
  shorten,
} from "./format.ts";
import { type CliIo, EXIT_FAILURE, EXIT_OK, print, UsageError } from "./io.ts";
import {
  decideRetry,
  DEFAULT_RETRY_POLICY,
  defaultAdaptLimits,
  LoadAdapter,
  loadRate,
  type RetryPolicy,
} from "./load_plan.ts";
import { PointsFileError, pointsFileFormat, readPointsFile } from "./points_file.ts";
import { utf8Length } from "../common/utf8.ts";

/** Upper bound of the encoded size of one point in a PutBatch (its payload included). */
function pointBytesMax(p: Point): number {
  // A uint64 id is a varint of up to 10 bytes (plus its tag); a string id its tag, a length of
  // up to 2 bytes and its UTF-8.
  return 11 + 6 + 4 * p.vector.length + 6 + (p.payload ? 6 + utf8Length(p.payload) : 0) +
    (p.string_id ? 3 + utf8Length(p.string_id) : 0);
}

/** Upper bound of the encoded size of a PutBatch of `points` points of dimension `dim`. */
export function batchBytesMax(points: number, dim: number): number {
  // Per point: id (tag + ≤10 bytes varint of a uint64), vector (tag + ≤5 bytes length +
  // 4 × dim), and the point's own tag and length (≤6 bytes); plus the collection and
  // consistency strings. (String ids are counted per point by pointBytesMax.)
  return points * (11 + 6 + 4 * dim + 6) + 256;
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
export async function runLoad(
  cmd: Extract<Command, { kind: "load" }>,
  api: Pick<VectorDbClient, "call">,
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
    // Payloads make points' sizes differ: a batch also stops before the message limit.
    let end = buffer_at;
    let bytes = 256;
    while (end < buffer.length && end - buffer_at < n) {
      bytes += pointBytesMax(buffer[end]);
      if (end > buffer_at && bytes > MESSAGE_BYTES_MAX) break;
      end++;
    }
    const points = buffer.slice(buffer_at, end);
    buffer_at = end;
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
