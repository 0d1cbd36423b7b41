/**
 * WAL damage through the server. A node writes 40 points one record each and is SIGKILLed (no
 * snapshot), then its newest WAL segment is damaged:
 *
 * - torn tail (the file cut in the middle of its last record): the node starts, logs the
 *   truncation and serves every point but the last;
 * - a flipped byte in a record followed by valid ones: the node refuses to start, naming the
 *   file and the record's byte offset; with `--wal-recovery truncate` it starts and serves the
 *   points before the damaged record (the cut bytes kept, byte for byte, in `wal/cut-<ts>/`),
 *   and afterwards starts in strict mode again;
 * - the segment deleted: the node refuses to start, naming the missing file;
 * - a flipped byte in a record the snapshot covers: the node starts in both modes and serves
 *   every acknowledged write.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ApiClient } from "../src/api/client.ts";
import { NodeProcess } from "../harness/node.ts";
import { StartError } from "../harness/process.ts";
import { CRASH_DIM, crashVector, decodeCrashVector } from "./helpers/server_crash_model.ts";

const COLLECTION = "walc";
const POINTS = 40;
/** No snapshot may cover the records under test. */
const NO_SNAPSHOTS = ["--snapshot-every-ops", "100000000", "--snapshot-every-s", "100000000"];
const SEGMENT_HEADER_BYTES = 20;
const RECORD_HEADER_BYTES = 17;

/** Starts a node, writes ids 0..POINTS-1 (version = id + 1) one Put each, SIGKILLs it. */
async function writeAndKill(node: NodeProcess): Promise<void> {
  await node.start();
  const api = new ApiClient(node.address);
  try {
    await api.call("CreateCollection", { name: COLLECTION, dimension: CRASH_DIM });
    for (let id = 0; id < POINTS; id++) {
      await api.call("Put", { id, vector: crashVector(id, id + 1), collection: COLLECTION });
    }
  } finally {
    api.close();
  }
  await node.kill();
}

/** Path of the newest WAL segment of the collection. */
function newestSegment(node: NodeProcess): string {
  const dir = join(node.data_dir, "collections", COLLECTION, "wal");
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
    /^wal-\d{20}\.log$/.test(n)
  )
    .sort();
  assert.ok(names.length > 0, `No WAL segment in ${dir}`);
  return join(dir, names[names.length - 1]);
}

/** Byte offsets of the records of a segment. */
function recordOffsets(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const offsets: number[] = [];
  let at = SEGMENT_HEADER_BYTES;
  while (at + RECORD_HEADER_BYTES <= bytes.length) {
    offsets.push(at);
    at += RECORD_HEADER_BYTES + view.getUint32(at, true);
  }
  assert.equal(at, bytes.length, "The segment does not end on a record boundary");
  return offsets;
}

/** Asserts that ids [0, present) hold their vectors and ids [present, POINTS) are absent. */
async function expectPrefix(node: NodeProcess, present: number): Promise<void> {
  const api = new ApiClient(node.address);
  try {
    for (let id = 0; id < POINTS; id++) {
      const got = await api.call("Get", { id, collection: COLLECTION });
      assert.equal(
        got.found,
        id < present,
        `Point ${id} found=${got.found}, expected ${id < present}`,
      );
      if (got.found) assert.equal(decodeCrashVector(id, got.vector), id + 1);
    }
    const stats = await api.call("Stats", {});
    const c = stats.collections.find((x) => x.name === COLLECTION);
    assert.equal(Number(c?.count), present);
  } finally {
    api.close();
  }
}

Deno.test("storage node truncates a torn WAL tail and serves the prefix", async () => {
  const node = await NodeProcess.prepare({ args: NO_SNAPSHOTS });
  try {
    await writeAndKill(node);
    const path = newestSegment(node);
    const bytes = Deno.readFileSync(path);
    const offsets = recordOffsets(bytes);
    assert.equal(offsets.length, POINTS + 1, "one creation record, then one record per Put");
    // Cut the last record in the middle of its payload.
    const last = offsets[offsets.length - 1];
    Deno.truncateSync(path, last + RECORD_HEADER_BYTES + 5);
    await node.start();
    assert.match(node.stderr, /Truncated torn tail/);
    await expectPrefix(node, POINTS - 1);
    // The node keeps writing after the truncation point.
    const api = new ApiClient(node.address);
    try {
      const id = POINTS - 1;
      await api.call("Put", { id, vector: crashVector(id, id + 1), collection: COLLECTION });
    } finally {
      api.close();
    }
    await node.restart({ kill: true });
    await expectPrefix(node, POINTS);
    assert.deepEqual(node.unexpected_exits, []);
  } catch (e) {
    console.error(`node stderr:\n${node.tail()}`);
    throw e;
  } finally {
    await node.close();
  }
});

Deno.test("storage node refuses a corrupt WAL record and recovers with --wal-recovery truncate", async () => {
  const node = await NodeProcess.prepare({ args: NO_SNAPSHOTS });
  try {
    await writeAndKill(node);
    const path = newestSegment(node);
    const bytes = Deno.readFileSync(path);
    const offsets = recordOffsets(bytes);
    // Record k holds the Put of id k - 1 (record 0 creates the collection).
    const k = 25;
    bytes[offsets[k] + RECORD_HEADER_BYTES + 3] ^= 0x10;
    Deno.writeFileSync(path, bytes);

    const failure = await node.start().then(() => null, (e) => e);
    assert.ok(failure instanceof StartError, `The node started on a corrupt WAL: ${failure}`);
    assert.notEqual(failure.status?.code, 0);
    assert.ok(
      failure.stderr.includes(`WAL segment ${path} is corrupt at byte offset ${offsets[k]}`),
      `stderr does not name ${path} at offset ${offsets[k]}:\n${failure.stderr}`,
    );
    assert.deepEqual(node.unexpected_exits, []);

    await node.start(["--wal-recovery", "truncate"]);
    assert.match(node.stderr, new RegExp(`corrupt at byte offset ${offsets[k]}`));
    await expectPrefix(node, k - 1);
    const walDir = join(node.data_dir, "collections", COLLECTION, "wal");
    const asides = [...Deno.readDirSync(walDir)].map((e) => e.name).filter((n) =>
      n.startsWith("cut-")
    );
    assert.equal(asides.length, 1, `one cut-<ts> folder in ${walDir}`);
    const kept = Deno.readFileSync(
      join(walDir, asides[0], `${path.replace(/^.*\//, "")}.from-${offsets[k]}`),
    );
    assert.deepEqual(kept, bytes.subarray(offsets[k]), "the cut bytes are kept aside");
    await node.restart({ kill: true }); // strict again: the log was cut, so it is clean
    await expectPrefix(node, k - 1);
  } catch (e) {
    console.error(`node stderr:\n${node.tail()}`);
    throw e;
  } finally {
    await node.close();
  }
});

Deno.test("storage node refuses to start when its newest WAL segment is missing", async () => {
  const node = await NodeProcess.prepare({ args: NO_SNAPSHOTS });
  try {
    await writeAndKill(node);
    const path = newestSegment(node);
    Deno.removeSync(path);
    const failure = await node.start().then(() => null, (e) => e);
    assert.ok(failure instanceof StartError, `The node started without ${path}: ${failure}`);
    assert.ok(
      failure.stderr.includes(path) && failure.stderr.includes("is missing"),
      `stderr does not name ${path}:\n${failure.stderr}`,
    );
    assert.deepEqual(node.unexpected_exits, []);
  } catch (e) {
    console.error(`node stderr:\n${node.tail()}`);
    throw e;
  } finally {
    await node.close();
  }
});

Deno.test("storage node starts over a damaged WAL record its snapshot covers, in both modes", async () => {
  const node = await NodeProcess.prepare({ args: NO_SNAPSHOTS });
  try {
    // 30 points, a graceful stop (snapshot), 10 more points, SIGKILL.
    await node.start();
    let api = new ApiClient(node.address);
    try {
      await api.call("CreateCollection", { name: COLLECTION, dimension: CRASH_DIM });
      for (let id = 0; id < 30; id++) {
        await api.call("Put", { id, vector: crashVector(id, id + 1), collection: COLLECTION });
      }
    } finally {
      api.close();
    }
    await node.stop();
    await node.start();
    api = new ApiClient(node.address);
    try {
      for (let id = 30; id < POINTS; id++) {
        await api.call("Put", { id, vector: crashVector(id, id + 1), collection: COLLECTION });
      }
    } finally {
      api.close();
    }
    await node.kill();
    const path = newestSegment(node);
    const bytes = Deno.readFileSync(path);
    const offsets = recordOffsets(bytes);
    assert.equal(offsets.length, POINTS + 1, "the segment holds every record");
    const k = 10; // the Put of id 9, covered by the snapshot at seq 31
    bytes[offsets[k] + RECORD_HEADER_BYTES + 3] ^= 0x10;
    Deno.writeFileSync(path, bytes);
    for (const mode of ["strict", "truncate"]) {
      await node.start(["--wal-recovery", mode]);
      // The open walks the records a snapshot covers header to header and reads none of their
      // payloads, so the damage is neither read nor reported, and nothing is skipped or cut.
      assert.doesNotMatch(node.stderr, new RegExp(`byte offset ${offsets[k]}.*skipped`));
      await expectPrefix(node, POINTS);
      await node.kill();
    }
    assert.deepEqual(Deno.readFileSync(path).subarray(0, bytes.length), bytes, "nothing cut");
    assert.deepEqual(node.unexpected_exits, []);
  } catch (e) {
    console.error(`node stderr:\n${node.tail()}`);
    throw e;
  } finally {
    await node.close();
  }
});
