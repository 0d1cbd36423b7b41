/**
 * Crash test: a child process appends to a WAL from many concurrent clients and is SIGKILLed at
 * seeded-random moments; after every kill the log is reopened and checked:
 *
 * - every record the child acknowledged (`ACK <seq> <id>`) is present with that seq and id;
 * - every record present is one the child appended: it decodes, its vector matches its id, and
 *   ids are contiguous in seq order within each child's run (ids are handed out in call order),
 *   so no record is invented, duplicated, reordered or skipped.
 *
 * Reproduce a failure with `WAL_CRASH_SEED=<seed>`; `WAL_CRASH_ITERATIONS` changes the count.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ChildProc, denoPath, type StartError } from "../harness/process.ts";
import { sleep } from "../harness/wait.ts";
import { decodeRecord } from "../src/common/records.ts";
import { Wal, type WalEntry } from "../src/io/wal.ts";
import { vectorFor } from "./helpers/wal_writer_child.ts";
import { Rng } from "../src/testing/random.ts";

const CHILD = fileURLToPath(new URL("./helpers/wal_writer_child.ts", import.meta.url));
const ID_STRIDE = 10_000_000;

/** Seeded uniform [0, 1) numbers: the project's mulberry32 generator. */
function mulberry32(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

interface Run {
  acks: Map<number, number>;
  stderr: string;
}

/** Starts the child, kills it at a random moment, returns what it acknowledged. */
async function runChild(dir: string, idBase: number, random: () => number): Promise<Run> {
  const acks = new Map<number, number>();
  const strange: string[] = [];
  // An unterminated last line was cut by the kill: it is no line here, so not an ACK.
  const child = new ChildProc({
    name: "wal-writer",
    command: denoPath(),
    args: ["run", "--allow-read", "--allow-write", CHILD, "--dir", dir, "--id-base", `${idBase}`],
    ready_prefix: "ACK ",
    ready_timeout_ms: 20_000,
    lines_kept: 20,
    on_line: (line, stream) => {
      if (stream !== "stdout") return;
      const m = /^ACK (\d+) (\d+)$/.exec(line);
      if (m === null) strange.push(line);
      else acks.set(Number(m[1]), Number(m[2]));
    },
  });
  try {
    if (random() < 0.25) {
      // Anywhere from start-up (module loading, WAL open and recovery) to full speed.
      await sleep(random() * 400);
    } else {
      await child.ready.catch((e: StartError) => {
        if (e.status === null) throw new Error("The child acknowledged nothing within 20 s");
      });
      await sleep(random() * 150);
    }
  } finally {
    await child.kill();
  }
  const status = child.status!;
  assert.deepEqual(strange, [], "Unexpected child output lines");
  assert.equal(
    status.signal,
    "SIGKILL",
    `The child exited on its own (${status.code}): ${child.stderr}`,
  );
  return { acks, stderr: child.stderr };
}

Deno.test("wal survives SIGKILL at random moments without losing acked records", async () => {
  const seed = Number(Deno.env.get("WAL_CRASH_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  const iterations = Number(Deno.env.get("WAL_CRASH_ITERATIONS") ?? 40);
  const random = mulberry32(seed);
  const dir = await Deno.makeTempDir({ prefix: "wal_crash_" });
  let lastSeq = 0;
  let totalAcks = 0;
  let tornTails = 0;
  try {
    for (let it = 0; it < iterations; it++) {
      const idBase = (it + 1) * ID_STRIDE;
      const run = await runChild(dir, idBase, random);
      totalAcks += run.acks.size;

      const entries: WalEntry[] = [];
      const logs: string[] = [];
      const wal = await Wal.open(dir, {
        afterSeq: lastSeq,
        segment_bytes_max: 262144,
        logger: (m) => logs.push(m),
        onRecord: (e) => {
          entries.push(e);
        },
      });
      await wal.close();
      for (const line of logs) {
        assert.match(line, /Truncated torn tail|Removed leftover temporary segment/, line);
      }
      tornTails += logs.filter((l) => l.includes("torn tail")).length;

      const found = new Map<number, number>();
      entries.forEach((e, k) => {
        assert.equal(e.seq, lastSeq + 1 + k);
        const rec = decodeRecord(e.type, e.payload);
        assert.equal(rec.kind, "put");
        if (rec.kind !== "put") return;
        assert.equal(rec.id, idBase + k, `seq ${e.seq} holds id ${rec.id}, never appended there`);
        assert.deepEqual(rec.vector, vectorFor(rec.id));
        assert.equal(rec.version, rec.id + 1);
        found.set(e.seq, rec.id);
      });
      for (const [seq, id] of run.acks) {
        assert.equal(found.get(seq), id, `Acknowledged seq ${seq} (id ${id}) is missing`);
      }
      assert.equal(wal.lastSeq, lastSeq + entries.length);
      lastSeq = wal.lastSeq;
    }
    // The whole log replays end to end.
    let count = 0;
    const wal = await Wal.open(dir, {
      onRecord: (e) => {
        assert.equal(e.seq, ++count);
      },
    });
    assert.equal(wal.lastSeq, lastSeq);
    await wal.close();
    assert.equal(count, lastSeq);
    assert.ok(totalAcks > 0, "No run acknowledged anything");
    console.log(
      `seed ${seed}: ${iterations} kills, ${totalAcks} acks, ${lastSeq} records, ` +
        `${tornTails} torn tails`,
    );
  } catch (e) {
    console.error(`wal_crash_test failed with WAL_CRASH_SEED=${seed}`);
    throw e;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
