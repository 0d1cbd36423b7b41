/**
 * The servers' logger: levels (debug < info < warn < error), a minimum level, and two formats,
 * one line per message on stderr.
 *
 * | format | a line                                                                          |
 * |--------|---------------------------------------------------------------------------------|
 * | text   | `2024-05-01T12:00:00.000Z node-50051 opened ./data in 3 ms` (as before levels) |
 * | json   | `{"ts":"2024-05-01T12:00:00.000Z","level":"info","component":"node","node":"node-50051","msg":"opened ./data in 3 ms"}` |
 *
 * Text lines keep the servers' earlier shape, `<time> <name> <message>`, so people and tests
 * that read them see no change; a warn or error message that does not already start with
 * `WARNING`/`ERROR` gets that word in front. JSON lines carry `ts`, `level`, `component`,
 * `node` (when known) and `msg`, then any extra fields of the call (a field named like one of
 * those is written with a trailing `_`). Errors in fields are written as their message.
 *
 * Most of the code base still logs through `(message: string) => void` callbacks:
 * {@link Logger.legacy} is one, which files a message starting with `WARNING` under warn, one
 * starting with `ERROR` under error and everything else under info.
 *
 * @module
 */
import { ConfigError, type FlagTable } from "./config.ts";

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = typeof LOG_LEVELS[number];
export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = typeof LOG_FORMATS[number];

/** `--log-level` and `--log-format`, for a program's flag table. */
export const LOG_FLAGS = {
  "log-level": {
    type: "string",
    default: "info",
    arg: "LEVEL",
    help: "least important messages logged: debug, info, warn or error",
  },
  "log-format": {
    type: "string",
    default: "text",
    arg: "FORMAT",
    help: "text (readable lines) or json (one object per line) on stderr",
  },
} as const satisfies FlagTable;

/** `text` as a level; a ConfigError naming `what` otherwise. */
export function parseLogLevel(text: string, what = "--log-level"): LogLevel {
  const t = text.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(t)) return t as LogLevel;
  throw new ConfigError(`${what} ${JSON.stringify(text)} must be one of ${LOG_LEVELS.join(", ")}`);
}

/** `text` as a format; a ConfigError naming `what` otherwise. */
export function parseLogFormat(text: string, what = "--log-format"): LogFormat {
  const t = text.trim().toLowerCase();
  if ((LOG_FORMATS as readonly string[]).includes(t)) return t as LogFormat;
  throw new ConfigError(`${what} ${JSON.stringify(text)} must be text or json`);
}

/** The level of a message given to a `(message) => void` callback, from its first word. */
export function levelOf(message: string): LogLevel {
  if (/^WARN(ING)?\b/.test(message)) return "warn";
  if (/^(ERROR|FATAL)\b/.test(message)) return "error";
  return "info";
}

/** Extra fields of one message. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Options of {@link Logger}. */
export interface LoggerOptions {
  /** `node`, `router`…: the `component` field. */
  component: string;
  /** The process's member id: the `node` field. */
  node?: string;
  /** Name at the start of text lines; default `node`, else `component`. */
  text_name?: string;
  /** Default info. */
  level?: LogLevel;
  /** Default text. */
  format?: LogFormat;
  /** Where lines go (without the newline); default `console.error` (stderr). */
  write?: (line: string) => void;
  /** Default the wall clock. */
  now?: () => Date;
}

const RESERVED = new Set(["ts", "level", "component", "node", "msg"]);

function jsonValue(_key: string, v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (typeof v === "bigint") return v.toString();
  return v;
}

/** One logger per process (see the module doc). */
export class Logger {
  readonly component: string;
  readonly node: string | undefined;
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** A `(message: string) => void` callback for code that logs plain messages. */
  readonly legacy: (message: string) => void;
  readonly #name: string;
  readonly #write: (line: string) => void;
  readonly #now: () => Date;
  readonly #min: number;

  constructor(o: LoggerOptions) {
    this.component = o.component;
    this.node = o.node;
    this.level = o.level ?? "info";
    this.format = o.format ?? "text";
    this.#name = o.text_name ?? o.node ?? o.component;
    this.#write = o.write ?? ((line) => console.error(line));
    this.#now = o.now ?? (() => new Date());
    this.#min = LOG_LEVELS.indexOf(this.level);
    this.legacy = (message: string) => this.log(levelOf(message), message);
  }

  /** Whether messages of `level` are written. */
  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= this.#min;
  }

  log(level: LogLevel, msg: string, fields: LogFields = {}): void {
    if (!this.enabled(level)) return;
    this.#write(
      this.format === "json" ? this.#json(level, msg, fields) : this.#text(level, msg, fields),
    );
  }

  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.log("warn", msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }

  #json(level: LogLevel, msg: string, fields: LogFields): string {
    const o: Record<string, unknown> = {
      ts: this.#now().toISOString(),
      level,
      component: this.component,
    };
    if (this.node !== undefined) o.node = this.node;
    o.msg = msg;
    for (const [k, v] of Object.entries(fields)) o[RESERVED.has(k) ? `${k}_` : k] = v;
    return JSON.stringify(o, jsonValue);
  }

  #text(level: LogLevel, msg: string, fields: LogFields): string {
    let text = msg;
    if (level === "warn" && levelOf(msg) !== "warn") text = `WARNING ${msg}`;
    if (level === "error" && levelOf(msg) !== "error") text = `ERROR ${msg}`;
    if (level === "debug") text = `DEBUG ${msg}`;
    for (const [k, v] of Object.entries(fields)) {
      const s = typeof v === "string" ? v : JSON.stringify(v, jsonValue);
      text += ` ${k}=${typeof v === "string" && /[\s"=]/.test(v) ? JSON.stringify(v) : s}`;
    }
    return `${this.#now().toISOString()} ${this.#name} ${text}`;
  }
}
