/**
 * Layering: no production file under `src/` imports from a layer above its own. The layers are
 * the table in src/testing/layers.ts (`LAYERS`); a file's layer is its top folder under `src/`.
 *
 * Production files only: `*_test.ts` files may reach for helpers of other layers (src/testing,
 * for one) without shaping the runtime graph, so they are not checked. Every top folder of
 * `src/` must be in the table, test-only folders included.
 *
 * The imports are read from the source text by a scanner that skips comments and literals
 * (src/testing/layers.ts); a second test checks that reading against Deno's own module graph
 * (`deno info --json`), so a specifier the scanner misses cannot hide an edge.
 */
import assert from "node:assert/strict";
import { join, relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  checkEdges,
  checkFolders,
  checkTable,
  type ImportEdge,
  importSpecifiers,
  LAYERS,
  resolveImport,
} from "../src/testing/layers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Repository-relative POSIX path of an absolute path. */
function repoPath(absolute: string): string {
  return relative(ROOT, absolute).split(sep).join("/");
}

/** Every production .ts file under src/ (repository-relative, sorted). */
async function productionFiles(): Promise<string[]> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile && entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
        files.push(repoPath(path));
      }
    }
  };
  await walk(join(ROOT, "src"));
  return files.sort();
}

/** The top folders of src/. */
async function topFolders(): Promise<string[]> {
  const folders: string[] = [];
  for await (const entry of Deno.readDir(join(ROOT, "src"))) {
    if (entry.isDirectory) folders.push(entry.name);
  }
  return folders.sort();
}

/** The relative imports of every production file, as edges between repository paths. */
async function importEdges(files: readonly string[]): Promise<ImportEdge[]> {
  const edges: ImportEdge[] = [];
  for (const from of files) {
    const source = await Deno.readTextFile(join(ROOT, from));
    for (const specifier of importSpecifiers(source)) {
      const to = resolveImport(from, specifier);
      if (to !== null) edges.push({ from, to });
    }
  }
  return edges;
}

Deno.test("layering: no file under src/ imports from a layer above its own", async () => {
  assert.deepEqual(checkTable(LAYERS), [], "the layer table itself");
  const files = await productionFiles();
  const edges = await importEdges(files);
  assert.ok(files.length > 20 && edges.length > 20, `read ${files.length} files`);
  const violations = [...checkFolders(await topFolders()), ...checkEdges(edges)];
  if (violations.length > 0) {
    console.error(`Layering violations (${violations.length}):\n${violations.join("\n")}`);
  }
  assert.deepEqual(
    violations,
    [],
    `${violations.length} layering violation(s); place the folder or move the code:\n` +
      violations.join("\n"),
  );
});

Deno.test("layering: the check reports a deliberately wrong import", () => {
  const edges: ImportEdge[] = [
    { from: "src/node/main.ts", to: "src/storage/node_store.ts" },
    { from: "src/storage/collection.ts", to: "src/node/service.ts" },
    { from: "src/router/hints/delivery.ts", to: "src/io/wal.ts" },
  ];
  assert.deepEqual(checkEdges(edges), [
    "src/storage/collection.ts -> src/node/service.ts (storage may not import node)",
  ]);
  // The same through the scanner: a file whose only upward import sits after a comment that
  // quotes another one.
  const source = [
    `/** @example import { Router } from "../router/server.ts"; */`,
    `import { nodeHandlers } from "../node/service.ts";`,
  ].join("\n");
  const from = "src/storage/wrong.ts";
  const scanned = importSpecifiers(source).map((s) => ({ from, to: resolveImport(from, s)! }));
  assert.deepEqual(checkEdges(scanned), [
    "src/storage/wrong.ts -> src/node/service.ts (storage may not import node)",
  ]);
  assert.deepEqual(checkFolders(["io", "plugins"]), [
    "src/plugins: folder plugins is not in the layer table",
  ]);
});

Deno.test("layering: the scanner reads the same relative imports as deno info", async () => {
  const files = await productionFiles();
  const dir = await Deno.makeTempDir({ prefix: "layering_test_" });
  try {
    const root = join(dir, "root.ts");
    const lines = files.map((f) => `import ${JSON.stringify(pathToFileURL(join(ROOT, f)).href)};`);
    await Deno.writeTextFile(root, lines.join("\n") + "\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--config", join(ROOT, "deno.json"), root],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.ok(out.success, `deno info failed: ${stderr}`);
    const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: Array<{
        specifier: string;
        dependencies?: Array<{
          specifier: string;
          code?: { specifier: string };
          type?: { specifier: string };
        }>;
      }>;
    };
    const fromDeno = new Map<string, string[]>();
    for (const m of graph.modules) {
      if (!m.specifier.startsWith("file://")) continue;
      const path = repoPath(fileURLToPath(m.specifier));
      if (!files.includes(path)) continue;
      const targets = (m.dependencies ?? [])
        .filter((d) => d.specifier.startsWith("./") || d.specifier.startsWith("../"))
        .map((d) => repoPath(fileURLToPath((d.code ?? d.type)!.specifier)));
      fromDeno.set(path, [...new Set(targets)].sort());
    }
    const fromScanner = new Map<string, string[]>();
    for (const e of await importEdges(files)) {
      fromScanner.set(e.from, [...(fromScanner.get(e.from) ?? []), e.to]);
    }
    for (const file of files) {
      assert.deepEqual(
        [...new Set(fromScanner.get(file) ?? [])].sort(),
        fromDeno.get(file) ?? [],
        `imports of ${file}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
