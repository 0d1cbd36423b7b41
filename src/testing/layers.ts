/**
 * The layers of `src/`, written once as data, and a pure checker for the import graph
 * (tests/layering_test.ts walks the tree and feeds it).
 *
 * Each top folder of `src/` is a layer; a file belongs to the top folder it lives under
 * (`src/router/hints/delivery.ts` is "router"). A layer may import from itself and from the
 * layers {@link LAYERS} lists for it, nothing else: lower layers never reach up. A folder not in
 * the table is an error too, so a new folder must be placed before it is used.
 *
 * | layer   | may import from                                  |
 * |---------|--------------------------------------------------|
 * | io      | (nothing)                                        |
 * | common  | io                                               |
 * | kernels | common, io                                       |
 * | index   | kernels, common, io                              |
 * | storage | index, kernels, common, io                       |
 * | cluster | common, io                                       |
 * | sim     | common, io                                       |
 * | testing | storage, index, kernels, common, io              |
 * | api     | common, io                                       |
 * | node    | api, storage, index, kernels, cluster, common, io |
 * | router  | api, cluster, common, io                         |
 * | client  | api, common, io                                  |
 * | cli     | client, api, common, io                          |
 *
 * Imports are read with a small scanner, not a regular expression over raw text: comments
 * (JSDoc `@example` blocks included) and the contents of string and template literals are
 * blanked first, so only real `import … from "…"`, `import "…"`, `export … from "…"` and
 * `import("…")` with a literal specifier count. Only relative specifiers make edges; `node:` and
 * npm imports are outside the table.
 *
 * @module
 */
import { posix } from "node:path";

/** Layer (top folder of `src/`) -> the layers it may import from, besides itself. */
export const LAYERS: Readonly<Record<string, readonly string[]>> = {
  io: [],
  common: ["io"],
  kernels: ["common", "io"],
  index: ["kernels", "common", "io"],
  storage: ["index", "kernels", "common", "io"],
  cluster: ["common", "io"],
  sim: ["common", "io"],
  testing: ["storage", "index", "kernels", "common", "io"],
  api: ["common", "io"],
  node: ["api", "storage", "index", "kernels", "cluster", "common", "io"],
  router: ["api", "cluster", "common", "io"],
  client: ["api", "common", "io"],
  cli: ["client", "api", "common", "io"],
};

/** One import: both ends as repository-relative POSIX paths, e.g. `src/node/main.ts`. */
export interface ImportEdge {
  from: string;
  to: string;
}

/** A source file scanned for imports: code with comments and literal contents blanked. */
interface Scanned {
  /** Same length as the source; comments and string/template contents replaced by spaces. */
  code: string;
  /** Offset of each string literal's opening quote -> its contents. */
  strings: Map<number, string>;
}

const REGEX_AFTER_WORDS = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);

/** Whether a `/` at `i` starts a regular expression literal rather than a division. */
function regexStarts(code: string[], i: number): boolean {
  let j = i - 1;
  while (j >= 0 && /\s/.test(code[j])) j--;
  if (j < 0) return true;
  const c = code[j];
  if (/[\w$]/.test(c)) {
    let k = j;
    while (k >= 0 && /[\w$]/.test(code[k])) k--;
    return REGEX_AFTER_WORDS.has(code.slice(k + 1, j + 1).join(""));
  }
  return !/[)\]}"'`]/.test(c);
}

/** Blanks comments and literal contents of TypeScript `source`, keeping offsets and newlines. */
function scan(source: string): Scanned {
  const out = source.split("");
  const strings = new Map<number, string>();
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n") out[k] = " ";
  };
  // Brace depth of each `${ … }` the scanner is inside, innermost last.
  const templates: number[] = [];
  let i = 0;
  const n = source.length;

  /** Scans a template literal's text from `i` (after "`" or "}"); returns to code at "${". */
  const templateText = () => {
    const start = i;
    while (i < n) {
      const c = source[i];
      if (c === "\\") {
        i += 2;
      } else if (c === "`") {
        blank(start, i);
        i++;
        return;
      } else if (c === "$" && source[i + 1] === "{") {
        blank(start, i);
        templates.push(0);
        i += 2;
        return;
      } else {
        i++;
      }
    }
    blank(start, n);
  };

  while (i < n) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      const stop = end < 0 ? n : end;
      blank(i, stop);
      i = stop;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      blank(i, stop);
      i = stop;
    } else if (c === '"' || c === "'") {
      const open = i;
      i++;
      while (i < n && source[i] !== c && source[i] !== "\n") i += source[i] === "\\" ? 2 : 1;
      strings.set(open, source.slice(open + 1, i));
      blank(open + 1, Math.min(i, n));
      i++;
    } else if (c === "`") {
      i++;
      templateText();
    } else if (c === "/" && regexStarts(out, i)) {
      const open = i;
      i++;
      let inClass = false;
      while (i < n && source[i] !== "\n") {
        const r = source[i];
        if (r === "\\") i++;
        else if (r === "[") inClass = true;
        else if (r === "]") inClass = false;
        else if (r === "/" && !inClass) break;
        i++;
      }
      blank(open + 1, Math.min(i, n));
      i++;
    } else if (c === "{" && templates.length > 0) {
      templates[templates.length - 1]++;
      i++;
    } else if (c === "}" && templates.length > 0) {
      if (templates[templates.length - 1] === 0) {
        templates.pop();
        i++;
        templateText();
      } else {
        templates[templates.length - 1]--;
        i++;
      }
    } else {
      i++;
    }
  }
  return { code: out.join(""), strings };
}

// Each pattern ends at the opening quote of the specifier (a string literal the scanner kept).
const IMPORT_PATTERNS = [
  // import x from "…", import type { a, b as c } from "…", import * as ns from "…"
  /(?<![\w$.])import\s+(?:type\s+)?[\w$*{}\s,]+?\s*from\s*(?=["'])/g,
  // import "…" (side effects only)
  /(?<![\w$.])import\s*(?=["'])/g,
  // export { a } from "…", export type { a } from "…", export * from "…", export * as ns from "…"
  /(?<![\w$.])export\s+(?:type\s+)?(?:\*(?:\s+as\s+[\w$]+)?|\{[\w$\s,]*\})\s*from\s*(?=["'])/g,
  // import("…")
  /(?<![\w$.])import\s*\(\s*(?=["'])/g,
];

/** The module specifiers `source` imports or re-exports from, in order of appearance. */
export function importSpecifiers(source: string): string[] {
  const { code, strings } = scan(source);
  const found: Array<[number, string]> = [];
  for (const pattern of IMPORT_PATTERNS) {
    for (const m of code.matchAll(pattern)) {
      const quote = m.index + m[0].length;
      const specifier = strings.get(quote);
      if (specifier !== undefined) found.push([quote, specifier]);
    }
  }
  return found.sort((a, b) => a[0] - b[0]).map(([, s]) => s);
}

/**
 * The file `specifier` names when imported from `from` (both repository-relative), or null for a
 * non-relative specifier (`node:…`, npm packages).
 */
export function resolveImport(from: string, specifier: string): string | null {
  if (!specifier.startsWith("./") && !specifier.startsWith("../")) return null;
  return posix.normalize(posix.join(posix.dirname(from), specifier));
}

/** The layer of a repository-relative path (`src/<layer>/…`), or null outside any src folder. */
export function layerOf(path: string): string | null {
  const parts = posix.normalize(path).split("/");
  return parts.length >= 3 && parts[0] === "src" ? parts[1] : null;
}

/** Problems with the table itself: unknown layers named, self-references, and cycles. */
export function checkTable(layers: Readonly<Record<string, readonly string[]>>): string[] {
  const problems: string[] = [];
  for (const [layer, allowed] of Object.entries(layers)) {
    for (const a of allowed) {
      if (a === layer) problems.push(`Layer ${layer} lists itself`);
      else if (!(a in layers)) problems.push(`Layer ${layer} may import unknown layer ${a}`);
    }
  }
  // Depth-first search for a cycle: with one, "above" would mean nothing.
  const state = new Map<string, "open" | "done">();
  const visit = (layer: string, path: string[]): void => {
    if (state.get(layer) === "done") return;
    if (state.get(layer) === "open") {
      const cycle = [...path.slice(path.indexOf(layer)), layer];
      problems.push(`Layers form a cycle: ${cycle.join(" -> ")}`);
      return;
    }
    state.set(layer, "open");
    for (const a of layers[layer] ?? []) if (a !== layer && a in layers) visit(a, [...path, layer]);
    state.set(layer, "done");
  };
  for (const layer of Object.keys(layers)) visit(layer, []);
  return problems;
}

/**
 * The violations among `edges`, one line each, sorted: an import of a layer `from`'s layer may
 * not use (`src/a/x.ts -> src/b/y.ts (a may not import b)`), a file in a folder the table does
 * not place, and an import of a file outside `src/`'s layers.
 */
export function checkEdges(
  edges: readonly ImportEdge[],
  layers: Readonly<Record<string, readonly string[]>> = LAYERS,
): string[] {
  const lines = new Set<string>();
  for (const { from, to } of edges) {
    const a = layerOf(from);
    const b = layerOf(to);
    if (a === null) {
      lines.add(`${from}: not inside a layer folder of src/`);
      continue;
    }
    if (!(a in layers)) {
      lines.add(`${from}: folder ${a} is not in the layer table`);
      continue;
    }
    if (b === null) {
      lines.add(`${from} -> ${to} (${a} may not import outside the src layers)`);
    } else if (!(b in layers)) {
      lines.add(`${from} -> ${to} (folder ${b} is not in the layer table)`);
    } else if (a !== b && !layers[a].includes(b)) {
      lines.add(`${from} -> ${to} (${a} may not import ${b})`);
    }
  }
  return [...lines].sort();
}

/** Lines for the top folders of `src/` that the table does not place. */
export function checkFolders(
  folders: readonly string[],
  layers: Readonly<Record<string, readonly string[]>> = LAYERS,
): string[] {
  return folders.filter((f) => !(f in layers)).sort().map((f) =>
    `src/${f}: folder ${f} is not in the layer table`
  );
}
