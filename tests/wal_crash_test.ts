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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Run {
  acks: Map<number, number>;
  stderr: string;
}

/** Starts the child, kills it at a random moment, returns what it acknowledged. */
async function runChild(dir: string, idBase: number, random: () => number): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", CHILD, "--dir", dir, "--id-base", `${idBase}`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const acks = new Map<number, number>();
  let firstAck: () => void = () => {};
  const sawAck = new Promise<void>((resolve) => (firstAck = resolve));
  const readStdout = (async () => {
    let partial = "";
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!; // an unterminated last line was cut by the kill: not an ACK
      for (const line of lines) {
        const m = /^ACK (\d+) (\d+)$/.exec(line);
        assert.ok(m !== null, `Unexpected child output line ${JSON.stringify(line)}`);
        acks.set(Number(m[1]), Number(m[2]));
        firstAck();
      }
    }
  })();
  const readStderr = new Response(child.stderr).text();
  try {
    if (random() < 0.25) {
      // Anywhere from start-up (module loading, WAL open and recovery) to full speed.
      await sleep(random() * 400);
    } else {
      const timeout = sleep(20_000).then(() => {
        throw new Error("The child acknowledged nothing within 20 s");
      });
      await Promise.race([sawAck, timeout, child.status.then(() => {})]);
      await sleep(random() * 150);
    }
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }
  const status = await child.status;
  await readStdout;
  const stderr = await readStderr;
  assert.equal(status.signal, "SIGKILL", `The child exited on its own (${status.code}): ${stderr}`);
  return { acks, stderr };
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
