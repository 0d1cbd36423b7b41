/**
 * Disk-full drill: a storage node on a real, small tmpfs runs out of space, refuses writes with
 * RESOURCE_EXHAUSTED naming its data directory, keeps answering Get and Search, takes writes
 * again by itself once space is freed (no restart), and after a SIGTERM + restart holds every
 * acknowledged write and none of the refused ones.
 *
 * Steps:
 *
 * 1. mount a `--size-mb` tmpfs (default 24 MiB) on a fresh temporary directory (needs root);
 * 2. start one node (Node 20 through tsx, harness/node.ts) with its data directory on it, and
 *    create a collection of dimension `--dim`;
 * 3. fill the tmpfs with a filler file, then shrink the filler so `--leave-mb` MiB stay free;
 * 4. PutBatch `--batch` points at a time until a batch is refused; record the status and
 *    message, and check that a few more writes (Put, PutBatch, Delete) are refused too;
 * 5. while full: Get acknowledged ids (vectors compared), Get refused ids (absent), Search;
 * 6. delete the filler, then retry PutBatch every `--retry-ms` until one is acknowledged (the
 *    time from the delete is "time to resume"), then write `--after-batches` more batches;
 * 7. SIGTERM the node, start it again on the same data directory, Get every acknowledged id
 *    (vector compared), every refused id and every id whose delete was acknowledged (absent).
 *
 * `--snapshot-every-ops N` (default the node's 20000) is passed to the node: a small N makes
 * snapshots run into the full disk too (they fail, are retried with a backoff, and succeed once
 * space is back; see the node log lines printed at the end).
 *
 * Always stops the node (by its pid, through harness/), unmounts the tmpfs and removes the
 * directory, also on failure. Exit status 1 when a check fails, 2 when the tmpfs cannot be
 * mounted (not root, or no mount permission in this container).
 *
 * @example
 * ```sh
 * npx --yes deno@2.9.6 task disk-full
 * npx --yes deno@2.9.6 task disk-full --size-mb 32 --leave-mb 6 --dim 128
 * ```
 * @module
 */
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { ApiClient, describeGrpcError, isServiceError } from "../../src/api/client.ts";
import { NodeProcess } from "../../harness/node.ts";
import { runProcess } from "../../harness/process.ts";
import { sleep } from "../../harness/wait.ts";

const { values: args } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    "size-mb": { type: "string", default: "24" },
    "leave-mb": { type: "string", default: "4" },
    dim: { type: "string", default: "64" },
    batch: { type: "string", default: "200" },
    "retry-ms": { type: "string", default: "50" },
    "after-batches": { type: "string", default: "5" },
    "resume-timeout-s": { type: "string", default: "30" },
    "snapshot-every-ops": { type: "string", default: "20000" },
  },
});

function positive(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`disk_full: --${name} ${JSON.stringify(text)} must be a positive integer`);
    process.exit(2);
  }
  return n;
}

const SIZE_MB = positive("size-mb", args["size-mb"]);
const LEAVE_MB = positive("leave-mb", args["leave-mb"]);
const DIM = positive("dim", args.dim);
const BATCH = positive("batch", args.batch);
const RETRY_MS = positive("retry-ms", args["retry-ms"]);
const AFTER_BATCHES = positive("after-batches", args["after-batches"]);
const RESUME_TIMEOUT_MS = positive("resume-timeout-s", args["resume-timeout-s"]) * 1000;
const SNAPSHOT_EVERY_OPS = positive("snapshot-every-ops", args["snapshot-every-ops"]);
const COLLECTION = "diskfull";
/** Batches written at most before the disk must have filled (a bound, not a target). */
const BATCHES_MAX = Math.ceil((SIZE_MB * 2 ** 20) / (BATCH * DIM * 4)) * 4 + 100;

/** The vector of a point: exactly representable in float32, so it compares exactly. */
function vectorOf(id: number): number[] {
  const v = new Array<number>(DIM);
  v[0] = id / 8; // distinct per id (exact below 2^27)
  for (let j = 1; j < DIM; j++) v[j] = ((id * 31 + j * 17) % 1000) / 8;
  return v;
}

function sameVector(got: number[], id: number): boolean {
  const want = vectorOf(id);
  return got.length === want.length && got.every((x, j) => x === want[j]);
}

const failures: string[] = [];
function check(ok: boolean, what: string): void {
  if (!ok) failures.push(what);
  console.log(`  ${ok ? "ok  " : "FAIL"} ${what}`);
}

function statusName(e: unknown): string {
  return isServiceError(e) ? (grpc.status[e.code] ?? String(e.code)) : "(not a gRPC error)";
}

/**
 * Fills `path` with zeros in `chunk_bytes` writes until the file system refuses (ENOSPC), then
 * gives back `leave_bytes` of it; returns the file's size.
 */
function fillUntilFull(path: string, chunk_bytes: number, leave_bytes: number): number {
  const fd = openSync(path, "w");
  const chunk = new Uint8Array(chunk_bytes);
  let size = 0;
  try {
    for (;;) {
      try {
        const n = writeSync(fd, chunk, 0, chunk.length, size);
        if (n <= 0) break;
        size += n;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOSPC") break;
        throw e;
      }
    }
    size = Math.max(0, size - leave_bytes);
    ftruncateSync(fd, size);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return size;
}

/** Get of many ids, 64 at a time; returns the ids whose answer is not what `expect` says. */
async function verifyIds(
  api: ApiClient,
  ids: number[],
  expect: "present" | "absent",
): Promise<{ wrong: number[]; errors: string[] }> {
  const wrong: number[] = [];
  const errors: string[] = [];
  for (let at = 0; at < ids.length; at += 64) {
    await Promise.all(
      ids.slice(at, at + 64).map(async (id) => {
        try {
          const r = await api.call("Get", { id, collection: COLLECTION });
          const ok = expect === "present" ? r.found && sameVector(r.vector, id) : !r.found;
          if (!ok) wrong.push(id);
        } catch (e) {
          errors.push(`Get ${id}: ${describeGrpcError(e)}`);
        }
      }),
    );
  }
  return { wrong, errors };
}

async function main(): Promise<number> {
  const mountDir = mkdtempSync(join(tmpdir(), "vdb-disk-full-"));
  const mount = await runProcess("mount", [
    "-t",
    "tmpfs",
    "-o",
    `size=${SIZE_MB}m`,
    "tmpfs",
    mountDir,
  ]);
  if (mount.code !== 0) {
    rmSync(mountDir, { recursive: true, force: true });
    console.error(
      `disk_full: cannot mount a ${SIZE_MB} MiB tmpfs on ${mountDir} (mount exited with ` +
        `${mount.code ?? mount.signal}: ${mount.stderr.trim() || mount.stdout.trim()}); this ` +
        `drill needs root and permission to mount (run it as root, outside a locked-down container)`,
    );
    return 2;
  }
  const dataDir = join(mountDir, "data");
  const filler = join(mountDir, "filler");
  const filler2 = join(mountDir, "filler-2");
  const nodeLines: string[] = [];
  let node: NodeProcess | null = null;
  let api: ApiClient | null = null;
  try {
    console.log(`tmpfs of ${SIZE_MB} MiB mounted on ${mountDir}; data directory ${dataDir}`);
    node = await NodeProcess.start({
      data_dir: dataDir,
      args: ["--snapshot-every-ops", String(SNAPSHOT_EVERY_OPS)],
      on_line: (line, stream) => {
        if (stream === "stderr") nodeLines.push(line);
      },
    });
    console.log(`node started (pid ${node.pid}) on ${node.address}`);
    api = new ApiClient(node.address, { timeout_ms: 30_000 });
    await api.call("CreateCollection", { name: COLLECTION, dimension: DIM, metric: "l2" });

    const fillerBytes = fillUntilFull(filler, 1 << 20, LEAVE_MB * 2 ** 20);
    console.log(
      `filler file ${filler}: ${(fillerBytes / 2 ** 20).toFixed(1)} MiB, leaving about ` +
        `${LEAVE_MB} MiB free`,
    );

    // Write until refused.
    const acked: number[] = [];
    const refused = new Set<number>();
    /** Ids whose delete was acknowledged. */
    const deleted: number[] = [];
    let nextId = 1;
    let firstRefusal: { status: string; message: string; after_acked: number } | null = null;
    const started = performance.now();
    for (let b = 0; b < BATCHES_MAX && firstRefusal === null; b++) {
      const ids = Array.from({ length: BATCH }, () => nextId++);
      try {
        await api.call("PutBatch", {
          collection: COLLECTION,
          points: ids.map((id) => ({ id, vector: vectorOf(id) })),
        });
        acked.push(...ids);
      } catch (e) {
        for (const id of ids) refused.add(id);
        firstRefusal = {
          status: statusName(e),
          message: isServiceError(e) ? e.details : String(e),
          after_acked: acked.length,
        };
      }
    }
    const fillMs = performance.now() - started;
    console.log(`\nwriting until refused (${BATCH} points per PutBatch, dimension ${DIM}):`);
    if (firstRefusal === null) {
      check(false, `writes were refused within ${BATCHES_MAX} batches`);
      return 1;
    }
    console.log(`  ${acked.length} points acknowledged in ${fillMs.toFixed(0)} ms, then refused:`);
    console.log(`  status:  ${firstRefusal.status}`);
    console.log(`  message: ${firstRefusal.message}`);
    check(firstRefusal.status === "RESOURCE_EXHAUSTED", "the refusal is RESOURCE_EXHAUSTED");
    check(
      firstRefusal.message.includes(`in data directory ${dataDir}`),
      "the message names the data directory",
    );
    check(!/\n\s+at /.test(firstRefusal.message), "the message carries no stack trace");

    // A batch no longer fits, but a single small write still might: take that last space too
    // (a second filler, 4 KiB at a time), so every kind of write meets a full disk.
    const topUp = fillUntilFull(filler2, 4096, 0);
    console.log(
      `  second filler ${filler2}: ${(topUp / 1024).toFixed(0)} KiB, the disk is now full`,
    );
    // Small writes still fit in the last, partly used page of the log (tmpfs allocates whole
    // pages): write single points, then deletes, until each is refused too. What is
    // acknowledged meanwhile counts (an acknowledged delete must stay deleted).
    const small = async (
      method: "Put" | "Delete",
      call: () => Promise<unknown>,
      onAck: () => void,
      onRefuse: () => void,
    ): Promise<void> => {
      for (let n = 0; n < 10_000; n++) {
        try {
          await call();
          onAck();
        } catch (e) {
          onRefuse();
          check(
            statusName(e) === "RESOURCE_EXHAUSTED",
            `${method} refused too once the last page was full (after ${n} more were ` +
              `acknowledged): ${statusName(e)}`,
          );
          return;
        }
      }
      check(false, `${method} was refused within 10,000 attempts`);
    };
    let putId = nextId++;
    await small(
      "Put",
      () => api!.call("Put", { id: putId, vector: vectorOf(putId), collection: COLLECTION }),
      () => {
        acked.push(putId);
        putId = nextId++;
      },
      () => refused.add(putId),
    );
    await small(
      "Delete",
      () => api!.call("Delete", { id: acked[0], collection: COLLECTION }),
      () => deleted.push(acked.shift()!),
      () => {},
    );
    const batchIds = Array.from({ length: BATCH }, () => nextId++);
    try {
      await api.call("PutBatch", {
        collection: COLLECTION,
        points: batchIds.map((id) => ({ id, vector: vectorOf(id) })),
      });
      check(false, "PutBatch while full is refused (it was acknowledged)");
      acked.push(...batchIds);
    } catch (e) {
      for (const id of batchIds) refused.add(id);
      check(statusName(e) === "RESOURCE_EXHAUSTED", `PutBatch while full: ${statusName(e)}`);
    }

    // Reads while full.
    console.log(`\nreads while the disk is full:`);
    const sample = acked.filter((_, i) => i % Math.max(1, Math.floor(acked.length / 200)) === 0);
    const readFull = await verifyIds(api, sample, "present");
    check(
      readFull.errors.length === 0 && readFull.wrong.length === 0,
      `Get of ${sample.length} acknowledged ids answers their vectors (${readFull.errors.length} ` +
        `errors, ${readFull.wrong.length} wrong)`,
    );
    const refusedList = [...refused];
    const absentFull = await verifyIds(api, refusedList, "absent");
    check(
      absentFull.errors.length === 0 && absentFull.wrong.length === 0,
      `Get of ${refusedList.length} refused ids finds none of them`,
    );
    try {
      const s = await api.call("Search", {
        collection: COLLECTION,
        vector: vectorOf(acked[7]),
        k: 5,
      });
      check(
        s.results.length === 5 && s.results[0].id === acked[7],
        `Search answers (nearest id ${s.results[0]?.id}, expected ${acked[7]})`,
      );
    } catch (e) {
      check(false, `Search while full answers: ${describeGrpcError(e)}`);
    }

    // Free space; keep writing.
    console.log(`\nfreeing space (deleting the fillers) and writing again, no restart:`);
    unlinkSync(filler);
    unlinkSync(filler2);
    const freedAt = performance.now();
    let attempts = 0;
    let resumeMs = -1;
    while (performance.now() - freedAt < RESUME_TIMEOUT_MS) {
      const ids = Array.from({ length: BATCH }, () => nextId++);
      attempts++;
      try {
        await api.call("PutBatch", {
          collection: COLLECTION,
          points: ids.map((id) => ({ id, vector: vectorOf(id) })),
        });
        acked.push(...ids);
        resumeMs = performance.now() - freedAt;
        break;
      } catch (e) {
        for (const id of ids) refused.add(id);
        if (statusName(e) !== "RESOURCE_EXHAUSTED") {
          check(false, `a write after freeing space failed with ${describeGrpcError(e)}`);
        }
        await sleep(RETRY_MS);
      }
    }
    check(resumeMs >= 0, `writes resumed without a restart`);
    if (resumeMs < 0) return 1;
    console.log(`  time to resume: ${resumeMs.toFixed(1)} ms (${attempts} attempt(s))`);
    let afterOk = 0;
    for (let b = 0; b < AFTER_BATCHES; b++) {
      const ids = Array.from({ length: BATCH }, () => nextId++);
      try {
        await api.call("PutBatch", {
          collection: COLLECTION,
          points: ids.map((id) => ({ id, vector: vectorOf(id) })),
        });
        acked.push(...ids);
        afterOk++;
      } catch (e) {
        for (const id of ids) refused.add(id);
        check(false, `PutBatch after resuming: ${describeGrpcError(e)}`);
      }
    }
    check(afterOk === AFTER_BATCHES, `${afterOk} of ${AFTER_BATCHES} more batches acknowledged`);

    // Restart and verify.
    console.log(`\nSIGTERM and restart on the same data directory:`);
    api.close();
    api = null;
    const pidBefore = node.pid;
    await node.stop();
    await node.start();
    console.log(`  node ${pidBefore} stopped (exit 0); started again as pid ${node.pid}`);
    api = new ApiClient(node.address, { timeout_ms: 30_000 });
    const present = await verifyIds(api, acked, "present");
    check(
      present.errors.length === 0 && present.wrong.length === 0,
      `all ${acked.length} acknowledged ids present with their vectors (${present.wrong.length} ` +
        `missing or wrong, ${present.errors.length} errors)`,
    );
    const absent = await verifyIds(api, [...refused], "absent");
    check(
      absent.errors.length === 0 && absent.wrong.length === 0,
      `none of the ${refused.size} refused ids present (${absent.wrong.length} found)`,
    );
    const gone = await verifyIds(api, deleted, "absent");
    check(
      gone.errors.length === 0 && gone.wrong.length === 0,
      `all ${deleted.length} ids whose delete was acknowledged stay deleted`,
    );
    const stats = await api.call("Stats", {});
    const count = Number(stats.collections.find((c) => c.name === COLLECTION)?.count ?? -1);
    check(count === acked.length, `Stats count ${count} equals the acknowledged ${acked.length}`);

    const spaceLines = nodeLines.filter((l) =>
      /space|disk|snapshot failed|writes resume|cut /i.test(l)
    );
    console.log(`\nnode log lines about the full disk (${spaceLines.length}):`);
    for (const l of spaceLines.slice(0, 20)) console.log(`  ${l}`);

    console.log(`\nreport:`);
    console.log(`  tmpfs ${SIZE_MB} MiB, ${LEAVE_MB} MiB left free by the filler`);
    console.log(`  acknowledged before full: ${firstRefusal.after_acked} points`);
    console.log(`  refused status:           ${firstRefusal.status}`);
    console.log(`  refused message:          ${firstRefusal.message}`);
    console.log(`  refused ids:              ${refused.size}`);
    console.log(`  acknowledged deletes:     ${deleted.length}`);
    console.log(`  time to resume:           ${resumeMs.toFixed(1)} ms after freeing space`);
    console.log(`  acknowledged in total:    ${acked.length}, all present after restart`);
    console.log(`  checks failed:            ${failures.length}`);
    return failures.length === 0 ? 0 : 1;
  } finally {
    api?.close();
    if (node !== null) await node.close();
    const umount = await runProcess("umount", [mountDir]);
    if (umount.code !== 0) {
      console.error(`disk_full: umount ${mountDir} failed: ${umount.stderr.trim()}`);
    } else {
      rmSync(mountDir, { recursive: true, force: true });
    }
  }
}

const code = await main().catch((e) => {
  console.error(`disk_full: ${(e as Error)?.stack ?? e}`);
  return 1;
});
if (failures.length > 0) console.error(`disk_full: ${failures.length} check(s) failed`);
Deno.exit(code);
