/**
 * Configuration of a server process (storage node, router) from one table of flags: the command
 * line, the environment and an optional JSON config file, merged with the precedence
 *
 *     command-line flag  >  environment variable  >  config file  >  the table's default
 *
 * | source      | how a flag `--data-dir` is given                    | booleans              |
 * |-------------|-----------------------------------------------------|-----------------------|
 * | flag        | `--data-dir DIR` or `--data-dir=DIR`                | `--insecure`          |
 * | environment | `VECTORDB_DATA_DIR=DIR` (empty: as if unset)        | `1`, `true`, `0`, `false` (any case) |
 * | config file | `--config FILE` (or `VECTORDB_CONFIG`), a JSON object: `{"data-dir": "DIR"}` | `true`, `false` |
 *
 * The config file is JSON (no TOML: that would need a parser we do not have). Its keys are the
 * flags' names without the dashes; string flags take a string or a number, list flags (`join`,
 * `nodes`) also an array, joined with ",", booleans `true` or `false`.
 *
 * **Mistakes.** An unknown flag, an unknown key in the config file, a value of the wrong type, a
 * bad boolean in the environment, an unreadable or malformed file: a {@link ConfigError} naming
 * the bad name and where it came from, with the nearest known name when one is close
 * (`unknown flag --data-dri; did you mean --data-dir?`). An environment variable that starts with
 * `VECTORDB_` but matches no flag is NOT an error, only a warning in {@link ResolvedConfig.warnings}:
 * one environment is often shared by several programs (the client reads `VECTORDB_API_KEY`; a
 * router-only `VECTORDB_NODES` may reach a storage node) and must not stop them.
 *
 * Every table gets `--config FILE`, `-h/--help` and `--version`; only `--config` may also come
 * from the environment. {@link formatHelp} writes the help from the same table, so the help and
 * the parser cannot drift apart.
 *
 * Pure apart from reading the config file (replaceable: `read_file`).
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

/** One flag of a program. */
export interface FlagSpec {
  readonly type: "string" | "boolean";
  /** The value when no source gives one. */
  readonly default?: string | boolean;
  /** One-letter alias, e.g. "h". */
  readonly short?: string;
  /** One line for `--help`: what the flag means. */
  readonly help: string;
  /** Placeholder of the value in `--help` (`--port PORT`); default "VALUE". */
  readonly arg?: string;
  /** Shown in `--help` instead of {@link default}, for defaults computed later (`node-<port>`). */
  readonly default_text?: string;
  /** A comma-separated list: the config file may give an array. */
  readonly list?: boolean;
}

/** A program's flags by name (without the dashes). */
export type FlagTable = Readonly<Record<string, FlagSpec>>;

/** Flags every table gets: they steer the configuration itself. */
export const CONFIG_FLAGS = {
  config: {
    type: "string",
    arg: "FILE",
    help: 'read settings from this JSON file, e.g. {"data-dir": "/var/lib/vectordb"}',
  },
  help: { type: "boolean", short: "h", help: "print this help and exit" },
  version: { type: "boolean", help: "print the version and exit" },
} as const satisfies FlagTable;

/** Prefix of the environment variables: `--data-dir` is `VECTORDB_DATA_DIR`. */
export const ENV_PREFIX = "VECTORDB_";

/** The command line, environment or config file is wrong; the message names the bad value. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Where a value came from. */
export type ConfigSource =
  | { kind: "flag" }
  | { kind: "env"; variable: string }
  | { kind: "file"; path: string }
  | { kind: "default" };

type ValueOf<S> = S extends { type: "boolean" } ? boolean : string;

/** The merged values of table `T`: flags with a default always have a value. */
export type ConfigValues<T extends FlagTable> = {
  -readonly [K in keyof T]: T[K] extends { default: string | boolean } ? ValueOf<T[K]>
    : ValueOf<T[K]> | undefined;
};

/** The result of {@link resolveConfig}. */
export interface ResolvedConfig<T extends FlagTable> {
  values: ConfigValues<T>;
  /** Where each value came from. */
  sources: Record<keyof T, ConfigSource>;
  /** Not fatal: `VECTORDB_*` variables that match no flag. Log them at warn. */
  warnings: string[];
  /** `--help` / `--version` was given: nothing else was read. */
  help: boolean;
  version: boolean;
  /** The config file read, if any. */
  config_file: string | null;
}

/** Options of {@link resolveConfig}. */
export interface ResolveOptions<T extends FlagTable> {
  flags: T;
  /** The command line without the program (a leading "--" is the caller's to drop). */
  argv: readonly string[];
  /** The environment (`process.env`); `{}` to ignore it. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Reads the config file; default `readFileSync(path, "utf8")`. */
  read_file?: (path: string) => string;
}

/** `VECTORDB_DATA_DIR` for `data-dir`. */
export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replaceAll("-", "_");
}

/**
 * Edit distance between `a` and `b` (optimal string alignment: insertions, deletions,
 * substitutions and swaps of two neighbours cost 1).
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    d.push([i]);
    for (let j = 1; j <= b.length; j++) d[i].push(i === 0 ? j : 0);
  }
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate nearest to `name`, or undefined when none is close: within an edit distance of
 * a third of the name's length (at least 1, at most 3), else the one candidate that `name` is a
 * prefix of (3 characters or more). Ties go to the earlier candidate.
 */
export function suggest(name: string, candidates: Iterable<string>): string | undefined {
  const list = [...candidates];
  const limit = Math.max(1, Math.min(3, Math.floor(name.length / 3)));
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of list) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  if (best !== undefined && bestD <= limit && bestD < name.length) return best;
  const prefixed = list.filter((c) => name.length >= 3 && c.startsWith(name));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/** `; did you mean X?` for the nearest candidate, or "". */
export function didYouMean(
  name: string,
  candidates: Iterable<string>,
  show: (c: string) => string = (c) => c,
): string {
  const s = suggest(name, candidates);
  return s === undefined ? "" : `; did you mean ${show(s)}?`;
}

/** Parses a boolean from the environment: 1, true, 0, false (any case). */
export function parseBoolean(text: string, what: string): boolean {
  const t = text.trim().toLowerCase();
  if (t === "1" || t === "true") return true;
  if (t === "0" || t === "false") return false;
  throw new ConfigError(`${what} ${JSON.stringify(text)} must be 1, true, 0 or false`);
}

type ParseArgsOptions = Record<string, { type: "string" | "boolean"; short?: string }>;

function parseArgsOptions(table: FlagTable): ParseArgsOptions {
  const out: ParseArgsOptions = {};
  for (const [name, spec] of Object.entries(table)) {
    out[name] = spec.short === undefined
      ? { type: spec.type }
      : { type: spec.type, short: spec.short };
  }
  return out;
}

/**
 * The first option of `args` that `options` does not know, as a {@link ConfigError} with the
 * nearest known flag; null when every option is known. For any `node:util` parseArgs table.
 */
export function unknownFlagError(
  args: readonly string[],
  options: Readonly<Record<string, { type: "string" | "boolean"; short?: string }>>,
): ConfigError | null {
  const { tokens } = parseArgs({
    args: [...args],
    options: options as ParseArgsOptions,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const t of tokens) {
    if (t.kind !== "option" || Object.hasOwn(options, t.name)) continue;
    const raw = t.rawName.startsWith("--") ? `--${t.name}` : t.rawName;
    const hint = didYouMean(t.name, Object.keys(options), (n) => `--${n}`);
    return new ConfigError(`unknown flag ${raw}${hint}`);
  }
  return null;
}

/** Parses `argv` against `table` (no defaults applied): the values given on the command line. */
function parseCommandLine(
  table: FlagTable,
  argv: readonly string[],
): Record<string, string | boolean | undefined> {
  const options = parseArgsOptions(table);
  const unknown = unknownFlagError(argv, options);
  if (unknown !== null) throw unknown;
  try {
    const { values } = parseArgs({
      args: [...argv],
      options,
      strict: true,
      allowPositionals: false,
    });
    return values as Record<string, string | boolean | undefined>;
  } catch (e) {
    // e.g. "Option '--port <value>' argument missing"; the first line says it.
    throw new ConfigError((e as Error).message.split("\n")[0]);
  }
}

/** `VECTORDB_*` variables: values for known flags; warnings for the others. */
function readEnv(
  table: FlagTable,
  env: Readonly<Record<string, string | undefined>>,
  warnings: string[],
): Record<string, string | boolean> {
  const byVariable = new Map<string, string>();
  for (const name of Object.keys(table)) {
    if (name !== "help" && name !== "version") byVariable.set(envName(name), name);
  }
  const out: Record<string, string | boolean> = {};
  for (const variable of Object.keys(env).sort()) {
    if (!variable.startsWith(ENV_PREFIX)) continue;
    const value = env[variable];
    const name = byVariable.get(variable);
    if (name === undefined) {
      warnings.push(
        `ignoring environment variable ${variable}: it sets no flag of this program` +
          didYouMean(
            variable.slice(ENV_PREFIX.length),
            [...byVariable.keys()].map((v) => v.slice(ENV_PREFIX.length)),
            (v) => ENV_PREFIX + v,
          ),
      );
      continue;
    }
    if (value === undefined || value === "") continue;
    out[name] = table[name].type === "boolean" ? parseBoolean(value, variable) : value;
  }
  return out;
}

function describeJson(v: unknown): string {
  return v === undefined ? "nothing" : JSON.stringify(v);
}

/** Reads and checks the config file. */
function readFile(
  table: FlagTable,
  path: string,
  read: (path: string) => string,
): Record<string, string | boolean> {
  let text: string;
  try {
    text = read(path);
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ConfigError(
      `config file ${path} must hold a JSON object of flag names to values, not ` +
        describeJson(Array.isArray(doc) ? "an array" : doc),
    );
  }
  const keys = Object.keys(table).filter((k) => !(k in CONFIG_FLAGS));
  const out: Record<string, string | boolean> = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const spec = keys.includes(key) ? table[key] : undefined;
    if (spec === undefined) {
      const why = key in CONFIG_FLAGS ? ` (--${key} is only a command-line flag)` : "";
      const hint = why !== "" ? "" : didYouMean(key, keys, (k) => JSON.stringify(k));
      throw new ConfigError(`config file ${path}: unknown key ${JSON.stringify(key)}${why}${hint}`);
    }
    const bad = (expected: string) =>
      new ConfigError(
        `config file ${path}: key ${JSON.stringify(key)} must be ${expected}, not ${
          describeJson(value)
        }`,
      );
    if (spec.type === "boolean") {
      if (typeof value !== "boolean") throw bad("true or false");
      out[key] = value;
    } else if (typeof value === "string") {
      out[key] = value;
    } else if (typeof value === "number" && Number.isFinite(value)) {
      out[key] = String(value);
    } else if (spec.list && Array.isArray(value)) {
      if (!value.every((v) => typeof v === "string" || typeof v === "number")) {
        throw bad("a string or an array of strings");
      }
      out[key] = value.join(",");
    } else {
      throw bad(spec.list ? "a string or an array of strings" : "a string or a number");
    }
  }
  return out;
}

/**
 * Merges the command line, the environment and the config file over the defaults of `flags`
 * (see the module doc). Throws {@link ConfigError}. With `--help` or `--version` on the command
 * line, returns at once (defaults only) so that they work whatever the environment holds.
 */
export function resolveConfig<T extends FlagTable>(
  options: ResolveOptions<T>,
): ResolvedConfig<T & typeof CONFIG_FLAGS> {
  for (const name of Object.keys(CONFIG_FLAGS)) {
    if (Object.hasOwn(options.flags, name)) {
      throw new Error(`The flag table must not define --${name}: every table gets it`);
    }
  }
  const table: FlagTable = { ...options.flags, ...CONFIG_FLAGS };
  const cli = parseCommandLine(table, options.argv);
  const warnings: string[] = [];
  const early = cli.help === true || cli.version === true;
  const env = early ? {} : readEnv(table, options.env ?? {}, warnings);
  const sourceOfFile: ConfigSource = cli.config !== undefined
    ? { kind: "flag" }
    : { kind: "env", variable: envName("config") };
  const configFile = early ? undefined : (cli.config ?? env.config) as string | undefined;
  const file = configFile === undefined
    ? {}
    : readFile(table, configFile, options.read_file ?? ((p) => readFileSync(p, "utf8")));

  const values: Record<string, string | boolean | undefined> = {};
  const sources: Record<string, ConfigSource> = {};
  for (const [name, spec] of Object.entries(table)) {
    if (cli[name] !== undefined) {
      values[name] = cli[name];
      sources[name] = { kind: "flag" };
    } else if (env[name] !== undefined) {
      values[name] = env[name];
      sources[name] = { kind: "env", variable: envName(name) };
    } else if (file[name] !== undefined) {
      values[name] = file[name];
      sources[name] = { kind: "file", path: configFile! };
    } else {
      values[name] = spec.default;
      sources[name] = { kind: "default" };
    }
  }
  if (configFile !== undefined) sources.config = sourceOfFile;
  return {
    values: values as ConfigValues<T & typeof CONFIG_FLAGS>,
    sources: sources as Record<keyof (T & typeof CONFIG_FLAGS), ConfigSource>,
    warnings,
    help: cli.help === true,
    version: cli.version === true,
    config_file: configFile ?? null,
  };
}

/** `--port`, `VECTORDB_PORT`, `"port" in config file F`, `the default` */
export function describeSource(name: string, source: ConfigSource): string {
  switch (source.kind) {
    case "flag":
      return `--${name}`;
    case "env":
      return source.variable;
    case "file":
      return `${JSON.stringify(name)} in config file ${source.path}`;
    case "default":
      return "the default";
  }
}

/**
 * `message` with where the value came from when it names a flag that was set by the environment
 * or the config file: `--port "x" must be … (set by VECTORDB_PORT)`.
 */
export function annotateError<T extends FlagTable>(
  message: string,
  config: Pick<ResolvedConfig<T>, "sources">,
): string {
  const sources = config.sources as Record<string, ConfigSource>;
  for (const m of message.matchAll(/--([a-z0-9][a-z0-9-]*)/g)) {
    const source = sources[m[1]];
    if (source === undefined) continue;
    if (source.kind === "env" || source.kind === "file") {
      return `${message} (set by ${describeSource(m[1], source)})`;
    }
    return message;
  }
  return message;
}

/**
 * One line per setting that came from the environment or the config file, for the start-up log:
 * `port=50061 (VECTORDB_PORT), node-id=n1 ("node-id" in config file /etc/vectordb.json)`; "" when
 * none did.
 */
export function describeSettings<T extends FlagTable>(config: ResolvedConfig<T>): string {
  const parts: string[] = [];
  const sources = config.sources as Record<string, ConfigSource>;
  const values = config.values as Record<string, unknown>;
  for (const [name, source] of Object.entries(sources)) {
    if (source.kind !== "env" && source.kind !== "file") continue;
    parts.push(`${name}=${JSON.stringify(values[name])} (${describeSource(name, source)})`);
  }
  return parts.join(", ");
}

/** What {@link formatHelp} prints around the table. */
export interface HelpText {
  /** `server [flags]` */
  usage: string;
  /** A paragraph under the usage line. */
  about: string;
  /** Paragraphs after the flags. */
  notes?: string;
}

/**
 * The `--help` text of a program: every flag of `flags` (and `--config`, `--help`, `--version`)
 * with its value placeholder, meaning, default and environment variable.
 */
export function formatHelp(flags: FlagTable, text: HelpText): string {
  const table: FlagTable = { ...flags, ...CONFIG_FLAGS };
  const lines = [`Usage: ${text.usage}`, "", wrap(text.about), "", "Flags:"];
  const heads = Object.entries(table).map(([name, spec]) => {
    const short = spec.short === undefined ? "" : `-${spec.short}, `;
    const arg = spec.type === "string" ? ` ${spec.arg ?? "VALUE"}` : "";
    return `  ${short}--${name}${arg}`;
  });
  const width = Math.max(...heads.map((h) => h.length)) + 2;
  Object.entries(table).forEach(([name, spec], i) => {
    lines.push(heads[i].padEnd(width) + spec.help);
    const extra: string[] = [];
    const def = spec.default_text ??
      (spec.default === undefined || spec.default === "" || spec.default === false
        ? undefined
        : String(spec.default));
    if (def !== undefined) extra.push(`default ${def}`);
    if (name !== "help" && name !== "version") extra.push(`env ${envName(name)}`);
    if (extra.length > 0) lines.push(" ".repeat(width) + `(${extra.join("; ")})`);
  });
  lines.push(
    "",
    wrap(
      "Each flag may also be set by its environment variable (booleans: 1, true, 0, false; an " +
        "empty value counts as unset) or by a key of the --config JSON file, the flag's name " +
        'without dashes: {"port": 50051, "join": ["h1:50051", "h2:50051"], "insecure": false}. ' +
        "Precedence: command line > environment > config file > default. Unknown flags and " +
        "config keys are errors; VECTORDB_* variables that match no flag are ignored with a " +
        "warning.",
    ),
  );
  if (text.notes !== undefined) lines.push("", wrap(text.notes));
  return lines.join("\n");
}

/** `text` broken into lines of at most `width` characters, at spaces. */
function wrap(text: string, width = 96): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") lines.push(line);
  return lines.join("\n");
}
