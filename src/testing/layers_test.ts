import assert from "node:assert/strict";
import {
  checkEdges,
  checkFolders,
  checkTable,
  importSpecifiers,
  layerOf,
  LAYERS,
  resolveImport,
} from "./layers.ts";

Deno.test("importSpecifiers finds static, type, re-export, side-effect and dynamic imports", () => {
  const source = [
    `import assert from "node:assert/strict";`,
    `import * as grpc from "@grpc/grpc-js";`,
    `import {`,
    `  a,`,
    `  type B,`,
    `  c as d,`,
    `} from "../common/a.ts";`,
    `import type { E } from '../io/e.ts';`,
    `import x, { y } from "./xy.ts";`,
    `import "./side_effect.ts";`,
    `export { f } from "./f.ts";`,
    `export type { G } from "./g.ts";`,
    `export * from "./all.ts";`,
    `export * as ns from "./ns.ts";`,
    `const h = await import("../index/h.ts");`,
    `export const k = 1;`,
    `export function from() {}`,
  ].join("\n");
  assert.deepEqual(importSpecifiers(source), [
    "node:assert/strict",
    "@grpc/grpc-js",
    "../common/a.ts",
    "../io/e.ts",
    "./xy.ts",
    "./side_effect.ts",
    "./f.ts",
    "./g.ts",
    "./all.ts",
    "./ns.ts",
    "../index/h.ts",
  ]);
});

Deno.test("importSpecifiers ignores comments, JSDoc examples, strings and regex literals", () => {
  const source = [
    `/**`,
    ` * @example`,
    " * ```ts",
    ` * import { Router } from "../router/server.ts";`,
    " * ```",
    ` */`,
    `// import { n } from "../node/main.ts";`,
    `/* export * from "../cli/cli.ts"; */ import { ok } from "./ok.ts";`,
    `const glob = "src/**/*.ts"; // a block-comment opener inside a string`,
    `const msg = 'import x from "../router/a.ts"';`,
    'const t = `import("../router/b.ts") ${glob} export * from "../node/c.ts"`;',
    "const nested = `a ${`b ${'import(\"../cli/d.ts\")'}`} c`;",
    `const re = /["'\`]import("..\\/node\\/e.ts")/g;`,
    `const ratio = 4 / 2; const q = "'"; // import "../node/f.ts"`,
    `const apostrophe = /'/; const lazy = import("./lazy.ts"); // a quote inside a regex`,
    `const half = total / 2; const halves = import("./half.ts"); // a division, not a regex`,
    `const mid = (lo + hi) / 2; const other = import("./mid.ts");`,
    `import { after } from "./after.ts";`,
    'const dyn = `${await import("./in_template.ts")}`;',
  ].join("\n");
  assert.deepEqual(importSpecifiers(source), [
    "./ok.ts",
    "./lazy.ts",
    "./half.ts",
    "./mid.ts",
    "./after.ts",
    "./in_template.ts",
  ]);
});

Deno.test("resolveImport and layerOf place files by their top folder under src/", () => {
  assert.equal(resolveImport("src/router/hints/delivery.ts", "../../io/wal.ts"), "src/io/wal.ts");
  assert.equal(resolveImport("src/node/main.ts", "./service.ts"), "src/node/service.ts");
  assert.equal(resolveImport("src/node/main.ts", "node:fs"), null);
  assert.equal(resolveImport("src/node/main.ts", "@grpc/grpc-js"), null);
  assert.equal(layerOf("src/router/hints/delivery.ts"), "router");
  assert.equal(layerOf("src/io/wal.ts"), "io");
  assert.equal(layerOf("src/loose.ts"), null);
  assert.equal(layerOf("tests/helpers/x.ts"), null);
});

Deno.test("the layer table names known layers only and has no cycle", () => {
  assert.deepEqual(checkTable(LAYERS), []);
  assert.deepEqual(checkTable({ a: ["b"], b: ["c"], c: ["a"] }), [
    "Layers form a cycle: a -> b -> c -> a",
  ]);
  assert.deepEqual(checkTable({ a: ["a", "zzz"] }), [
    "Layer a lists itself",
    "Layer a may import unknown layer zzz",
  ]);
});

Deno.test("checkEdges reports an upward import, an unplaced folder and an escape from src/", () => {
  const edges = [
    { from: "src/node/main.ts", to: "src/storage/node_store.ts" }, // down: fine
    { from: "src/router/hints/delivery.ts", to: "src/router/plan.ts" }, // same layer: fine
    { from: "src/storage/collection.ts", to: "src/node/service.ts" }, // up
    { from: "src/api/client.ts", to: "src/storage/collection.ts" }, // sideways, not listed
    { from: "src/gadgets/g.ts", to: "src/io/wal.ts" }, // unplaced folder
    { from: "src/io/wal.ts", to: "src/gadgets/g.ts" }, // into an unplaced folder
    { from: "src/cli/cli.ts", to: "tests/helpers/x.ts" }, // outside src/
    { from: "src/loose.ts", to: "src/io/wal.ts" }, // no layer folder
  ];
  assert.deepEqual(checkEdges(edges), [
    "src/api/client.ts -> src/storage/collection.ts (api may not import storage)",
    "src/cli/cli.ts -> tests/helpers/x.ts (cli may not import outside the src layers)",
    "src/gadgets/g.ts: folder gadgets is not in the layer table",
    "src/io/wal.ts -> src/gadgets/g.ts (folder gadgets is not in the layer table)",
    "src/loose.ts: not inside a layer folder of src/",
    "src/storage/collection.ts -> src/node/service.ts (storage may not import node)",
  ]);
  assert.deepEqual(checkEdges(edges.slice(0, 2)), []);
  assert.deepEqual(checkFolders(["io", "gadgets", "node"]), [
    "src/gadgets: folder gadgets is not in the layer table",
  ]);
});
