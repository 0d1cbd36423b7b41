/**
 * How much two threads get done now against one on a fixed pure-CPU loop (no memory, no shared
 * data): the most the machine allows at this moment. On a shared 2-core machine other processes
 * often leave about one core, and then nothing can show a 2x. Printed beside thread comparisons
 * (threads.ts, `deno task bench --build-threads`).
 * @module
 */
import { Worker } from "node:worker_threads";

/** The work two threads do in the time one does its share, on a pure-CPU loop (about 1-2 s). */
export async function cpuScaling(): Promise<number> {
  const code = `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (n) => { let s = 0; for (let i = 0; i < n; i++) s = (s + Math.imul(i, 40503)) | 0; parentPort.postMessage(s); });`;
  const ws = [new Worker(code, { eval: true }), new Worker(code, { eval: true })];
  const run = (k: number, n: number) =>
    Promise.all(
      ws.slice(0, k).map((w) =>
        new Promise((r) => {
          w.once("message", r);
          w.postMessage(n);
        })
      ),
    );
  try {
    await run(2, 1e6);
    let t0 = performance.now();
    await run(1, 4e8);
    const one = performance.now() - t0;
    t0 = performance.now();
    await run(2, 2e8);
    const two = performance.now() - t0;
    return one / two;
  } finally {
    for (const w of ws) await w.terminate();
  }
}
