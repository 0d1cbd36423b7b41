import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type PointsBatch,
  PointsFileError,
  pointsFileFormat,
  readFvecs,
  readJsonl,
  readPointsFile,
} from "./points_file.ts";

function fvecs(vectors: number[][]): Uint8Array {
  const size = vectors.reduce((s, v) => s + 4 + 4 * v.length, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let off = 0;
  for (const v of vectors) {
    view.setInt32(off, v.length, true);
    v.forEach((x, i) => view.setFloat32(off + 4 + 4 * i, x, true));
    off += 4 + 4 * v.length;
  }
  return out;
}

async function collect(gen: AsyncGenerator<PointsBatch>): Promise<PointsBatch[]> {
  const out: PointsBatch[] = [];
  for await (const b of gen) out.push(b);
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "points_file_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("format from extension", () => {
  assert.equal(pointsFileFormat("a/b.FVECS"), "fvecs");
  assert.equal(pointsFileFormat("x.jsonl"), "jsonl");
  assert.equal(pointsFileFormat("x.ndjson"), "jsonl");
  assert.throws(() => pointsFileFormat("x.csv"), PointsFileError);
});

Deno.test("fvecs: batches, ids from start_id, bytes_read, small read buffers", async () => {
  await withDir(async (dir) => {
    const vectors = Array.from({ length: 7 }, (_, i) => [i, i + 0.5, -i]);
    const path = join(dir, "a.fvecs");
    await Deno.writeFile(path, fvecs(vectors));
    // A 5-byte read buffer makes every record straddle chunk boundaries.
    const batches = await collect(
      readFvecs(path, { batch_points: 3, start_id: 100, read_bytes: 5 }),
    );
    assert.deepEqual(batches.map((b) => b.points.length), [3, 3, 1]);
    assert.deepEqual(batches.map((b) => b.bytes_read), [48, 96, 112]);
    const points = batches.flatMap((b) => b.points);
    assert.deepEqual(points.map((p) => p.id), [100, 101, 102, 103, 104, 105, 106]);
    assert.deepEqual(points[3].vector, [3, 3.5, -3]);
    // readPointsFile dispatches on the extension.
    const again = await collect(readPointsFile(path, { batch_points: 10 }));
    assert.equal(again[0].points[0].id, 0);
  });
});

Deno.test("fvecs: malformed files are rejected with the record named", async () => {
  await withDir(async (dir) => {
    const truncated = join(dir, "t.fvecs");
    await Deno.writeFile(truncated, fvecs([[1, 2], [3, 4]]).slice(0, 20));
    await assert.rejects(
      collect(readFvecs(truncated, { batch_points: 10 })),
      /t\.fvecs ends inside record 1: 8 of 12 bytes present/,
    );
    const mixed = join(dir, "m.fvecs");
    await Deno.writeFile(mixed, fvecs([[1, 2], [3, 4, 5]]));
    await assert.rejects(
      collect(readFvecs(mixed, { batch_points: 10 })),
      /m\.fvecs record 1 has dimension 3 but record 0 has 2/,
    );
    const nan = join(dir, "n.fvecs");
    await Deno.writeFile(nan, fvecs([[1, 2], [3, NaN]]));
    await assert.rejects(
      collect(readFvecs(nan, { batch_points: 10 })),
      /n\.fvecs record 1: vector\[1\] is NaN/,
    );
    const text = join(dir, "x.fvecs");
    await Deno.writeTextFile(text, "hello world, not vectors");
    await assert.rejects(
      collect(readFvecs(text, { batch_points: 10 })),
      (e: unknown) => e instanceof PointsFileError && /record 0 has dimension/.test(e.message),
    );
    await assert.rejects(
      collect(readFvecs(join(dir, "missing.fvecs"), { batch_points: 10 })),
      /Cannot read .*missing\.fvecs/,
    );
    await assert.rejects(collect(readFvecs(mixed, { batch_points: 0 })), /Batch size 0/);
    const two = join(dir, "two.fvecs");
    await Deno.writeFile(two, fvecs([[1, 2], [3, 4]]));
    await assert.rejects(
      collect(readFvecs(two, { batch_points: 1, start_id: Number.MAX_SAFE_INTEGER })),
      /record 1 would get id 9007199254740992/,
    );
  });
});

Deno.test("jsonl: ids from the file, blank lines skipped, errors name the line", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "p.jsonl");
    await Deno.writeTextFile(
      path,
      '{"id": 5, "vector": [0.5, 1]}\n\n{"id": 9, "vector": [2, 3]}\r\n{"id": 1, "vector": [4, 5]}',
    );
    const batches = await collect(readJsonl(path, { batch_points: 2 }));
    assert.deepEqual(batches.map((b) => b.points.map((p) => p.id)), [[5, 9], [1]]);
    assert.deepEqual(batches[1].points[0].vector, [4, 5]);

    const cases: [string, RegExp][] = [
      ['{"id": 1, "vector": [1]}\nnot json\n', /line 2 is not valid JSON/],
      ["[1, 2]\n", /line 1 must be an object/],
      ['{"id": -1, "vector": [1]}\n', /line 1: id -1 is not an integer between 0 and 2\^64 - 1/],
      ['{"id": "", "vector": [1]}\n', /line 1: id "" is empty/],
      ['{"id": 1.5, "vector": [1]}\n', /line 1: id 1.5 is not an integer/],
      ['{"id": 18446744073709551616, "vector": [1]}\n', /line 1: id 18446744073709551616 is not/],
      ['{"id": [1], "vector": [1]}\n', /line 1: id \[1\] is not an id/],
      ['{"id": 1, "vector": []}\n', /line 1: vector is empty/],
      ['{"id": 1, "vector": [1, 2]}\n{"id": 2, "vector": [1]}\n', /line 2: vector dimension 1/],
    ];
    for (const [text, error] of cases) {
      await Deno.writeTextFile(path, text);
      await assert.rejects(collect(readJsonl(path, { batch_points: 10 })), error);
    }
    await assert.rejects(
      collect(readJsonl(path, { batch_points: 10, start_id: 3 })),
      /start id applies only to \.fvecs/,
    );
  });
});

Deno.test("jsonl: payloads are kept as JSON text; bad ones name the line", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "p.jsonl");
    await Deno.writeTextFile(
      path,
      '{"id": 1, "vector": [1], "payload": {"tag": "a", "n": [1, 2]}}\n' +
        '{"id": 2, "vector": [2], "payload": null}\n{"id": 3, "vector": [3]}\n',
    );
    const [batch] = await collect(readJsonl(path, { batch_points: 10 }));
    assert.deepEqual(batch.points, [
      { id: 1, vector: [1], payload: '{"tag":"a","n":[1,2]}' },
      { id: 2, vector: [2] },
      { id: 3, vector: [3] },
    ]);
    const cases: [string, RegExp][] = [
      ['{"id": 1, "vector": [1], "payload": [1]}\n', /line 1: payload must be a JSON object/],
      ['{"id": 1, "vector": [1], "payload": "x"}\n', /line 1: payload must be a JSON object/],
      [
        `{"id": 1, "vector": [1]}\n{"id": 2, "vector": [1], "payload": {"a": "${
          "x".repeat(70_000)
        }"}}\n`,
        /line 2: payload .* is at least 70008 bytes; the limit is 65536/,
      ],
    ];
    for (const [text, error] of cases) {
      await Deno.writeTextFile(path, text);
      await assert.rejects(collect(readJsonl(path, { batch_points: 10 })), error);
    }
  });
});

Deno.test("jsonl: string ids and 64-bit ids are kept exactly, with payloads", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "s.jsonl");
    await Deno.writeTextFile(
      path,
      '{"id": "doc-7", "vector": [1, 2], "payload": {"id": 12345678901234567, "t": "a"}}\n' +
        '{"id": 18446744073709551615, "vector": [3, 4]}\n' +
        '{"id": 9007199254740993, "vector": [5, 6]}\n' +
        '{"id": "7", "vector": [7, 8]}\n{"id": 7, "vector": [9, 9]}\n',
    );
    const [batch] = await collect(readJsonl(path, { batch_points: 10 }));
    assert.deepEqual(batch.points.map((p) => [p.id, p.string_id]), [
      [0, "doc-7"],
      ["18446744073709551615", undefined],
      ["9007199254740993", undefined],
      [0, "7"],
      [7, undefined],
    ]);
    // A payload's own "id" member is the payload's, not read as a point id.
    assert.equal(batch.points[0].payload, JSON.stringify({ id: 12345678901234567, t: "a" }));
  });
});
