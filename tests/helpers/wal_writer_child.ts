/**
 * Crash-test child: opens the WAL in `--dir` and appends PUT records forever from `--clients`
 * concurrent loops. Each append uses a fresh id (`--id-base` + a counter, assigned in call order)
 * and a vector derived from the id ({@link vectorFor}). After an append's promise resolves, the
 * child prints `ACK <seq> <id>` on stdout. It never exits on its own; the parent SIGKILLs it.
 *
 * Usage: deno run --allow-read --allow-write tests/helpers/wal_writer_child.ts \
 *   --dir DIR --id-base N [--clients 16] [--segment-bytes 262144]
 */
import { parseArgs } from "node:util";
import { encodeRecord } from "../../src/common/records.ts";
import { Wal } from "../../src/io/wal.ts";

/** The vector stored with `id`; the parent recomputes it to check record contents. */
export function vectorFor(id: number): Float32Array {
  return new Float32Array([id % 65536, Math.floor(id / 65536), ((id * 7) % 1000) / 4, 1]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: "string" },
      "id-base": { type: "string" },
      clients: { type: "string", default: "16" },
      "segment-bytes": { type: "string", default: "262144" },
    },
  });
  if (values.dir === undefined || values["id-base"] === undefined) {
    throw new Error("Usage: wal_writer_child.ts --dir DIR --id-base N [--clients C]");
  }
  const idBase = Number(values["id-base"]);
  const clients = Number(values.clients);
  const wal = await Wal.open(values.dir, {
    segment_bytes_max: Number(values["segment-bytes"]),
    logger: (m) => console.error(`child: ${m}`),
  });
  const encoder = new TextEncoder();
  const print = (line: string) => {
    const bytes = encoder.encode(line);
    let done = 0;
    while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (true) {
        const id = idBase + next++;
        const { type, payload } = encodeRecord({
          kind: "put",
          id,
          vector: vectorFor(id),
          version: id + 1,
        });
        const seq = await wal.append(type, payload);
        print(`ACK ${seq} ${id}\n`);
      }
    }),
  );
}

if (import.meta.main) await main();
