/**
 * Client authentication and roles: API keys from a file, the role each RPC needs, and the
 * gRPC metadata that carries a key.
 *
 * **Keys file** (`--api-keys-file PATH` on routers and storage nodes; re-read on SIGHUP): one
 * `KEY ROLE` a line, `#` starts a comment, blank lines are skipped. A key is 16 to 256 printable
 * ASCII characters without spaces (`openssl rand -hex 32` makes a good one); a role is `read`,
 * `write` or `admin`. A file that breaks any rule is refused whole, with the line number (never
 * the key) in the message, so a typo cannot silently lock everyone out or let anyone in; on
 * SIGHUP the previous keys stay in force when the new file is refused.
 *
 * ```text
 * # who           role
 * 3f9c…e1 read    # dashboards
 * a77b…02 write   # the ingest job
 * 0d1e…9f admin   # operators
 * ```
 *
 * **Roles** are ordered: `admin` may do what `write` may, `write` what `read` may.
 *
 * | RPC (vectordb.VectorDB)                              | role needed |
 * |------------------------------------------------------|-------------|
 * | Get, Search, ListCollections, Stats, Members         | read        |
 * | SearchBatch, Scroll, Count, GetBatch                 | read        |
 * | CreateFieldIndex, DropFieldIndex, DeleteBatch, DeleteByFilter | write |
 * | Put, PutBatch, Delete                                | write       |
 * | CreateCollection, DropCollection, Drain              | admin       |
 * | Backup, ListBackups, Restore, DeleteBackup           | admin       |
 * | anything of `vectordb.internal.*` (Gossip, Transfer) | the cluster secret (cluster_proof.ts) |
 * | `grpc.health.v1.Health` (Check, Watch, List)         | nothing: open    |
 * | `grpc.reflection.v1[alpha].ServerReflection`         | read        |
 * | `vectordb.Metrics` (HTTP `GET /metrics` only)        | read        |
 *
 * Health is open because its callers are load balancers, kubelets and `grpc_health_probe`,
 * which carry no credentials, and it says only SERVING or NOT_SERVING (health.ts caps its
 * Watch streams). Reflection describes the API (every message and service, internal ones
 * included): not secret, but not for strangers either, so it needs the weakest role, like the
 * reads of data. So do the Prometheus metrics (`GET /metrics` checks the path
 * `/vectordb.Metrics/Scrape`): collection names, sizes and traffic are not for strangers; a
 * scraper is given a `read` key as its bearer token (Prometheus `authorization` /
 * `bearer_token_file`). Without `--api-keys-file` they are open, like every read.
 *
 * A client sends `authorization: Bearer KEY` as gRPC metadata (the same header HTTP uses). The
 * server keeps only SHA-256 digests of the keys and looks a presented key up by its digest, so
 * neither timing nor a heap dump gives keys away byte by byte.
 *
 * @example
 * ```ts
 * import { ApiKeys, accessOf } from "./auth.ts";
 * const keys = ApiKeys.parse("0123456789abcdef0123 read\n", "keys.txt");
 * console.assert(keys.roleOf("0123456789abcdef0123") === "read");
 * console.assert(accessOf("/vectordb.VectorDB/PutBatch") === "write");
 * ```
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

/** Client roles, weakest first. */
export const ROLES = ["read", "write", "admin"] as const;
/** A client role. */
export type Role = typeof ROLES[number];
/** What one RPC needs: a client role, proof of the cluster secret, or nothing ("open"). */
export type Access = Role | "cluster" | "open";

/** The metadata key that carries a client's API key (`Bearer KEY`). */
export const AUTHORIZATION_HEADER = "authorization";

/** Shortest and longest API key, in characters. */
export const API_KEY_CHARS_MIN = 16;
export const API_KEY_CHARS_MAX = 256;
/** Largest keys file and most keys in it. */
export const API_KEYS_FILE_BYTES_MAX = 1024 * 1024;
export const API_KEYS_MAX = 10_000;

const KEY_CHARS = /^[\x21-\x7e]+$/;

/** The role each public RPC needs (module comment's table). */
export const METHOD_ROLES: Readonly<Record<string, Role>> = {
  Get: "read",
  Search: "read",
  ListCollections: "read",
  Stats: "read",
  Members: "read",
  Put: "write",
  PutBatch: "write",
  Delete: "write",
  CreateCollection: "admin",
  DropCollection: "admin",
  Drain: "admin",
  Backup: "admin",
  ListBackups: "admin",
  Restore: "admin",
  DeleteBackup: "admin",
  SearchBatch: "read",
  Scroll: "read",
  Count: "read",
  CreateFieldIndex: "write",
  DropFieldIndex: "write",
  GetBatch: "read",
  DeleteBatch: "write",
  DeleteByFilter: "write",
};

/** The services open to anyone (the gRPC health protocol). */
export const OPEN_SERVICES: readonly string[] = ["grpc.health.v1.Health"];
/** The services that need role `read` (server reflection, both versions; metrics). */
export const READ_SERVICES: readonly string[] = [
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "vectordb.Metrics",
];

/**
 * What the RPC at gRPC path `path` (`/package.Service/Method`) needs: its role for the public
 * service, "cluster" for the internal ones, "open" for health, `read` for reflection. Anything
 * else (a public method missing from the table, an unknown service) needs `admin`, so a new RPC
 * is closed until someone places it.
 */
export function accessOf(path: string): Access {
  const m = /^\/([A-Za-z0-9_.]+)\/([A-Za-z0-9_]+)$/.exec(path);
  if (m === null) return "admin";
  const [, service, method] = m;
  if (service.startsWith("vectordb.internal.")) return "cluster";
  if (service === "vectordb.VectorDB") return METHOD_ROLES[method] ?? "admin";
  if (OPEN_SERVICES.includes(service)) return "open";
  if (READ_SERVICES.includes(service)) return "read";
  return "admin";
}

/** Whether `role` may do what `needed` requires. */
export function roleAllows(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** A keys file (or its text) broke a rule; the message names the file and the line. */
export class ApiKeysFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ApiKeysFileError";
  }
}

function digest(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** A key shortened for a message: its first 4 characters and its length, never more. */
export function maskKey(key: string): string {
  const head = [...key.slice(0, 4)].map((c) => (c >= "\x21" && c <= "\x7e" ? c : "?")).join("");
  return `${head}… (${key.length} characters)`;
}

/** The API keys of one process: digest → role. Immutable; a reload makes a new one. */
export class ApiKeys {
  readonly #roles: ReadonlyMap<string, Role>;
  /** Where the keys came from, for messages. */
  readonly source: string;

  private constructor(roles: Map<string, Role>, source: string) {
    this.#roles = roles;
    this.source = source;
  }

  /** Number of keys. */
  get size(): number {
    return this.#roles.size;
  }

  /** How many keys hold each role. */
  counts(): Record<Role, number> {
    const c: Record<Role, number> = { read: 0, write: 0, admin: 0 };
    for (const r of this.#roles.values()) c[r]++;
    return c;
  }

  /** The role of `key`, or undefined for an unknown key. */
  roleOf(key: string): Role | undefined {
    if (key.length < API_KEY_CHARS_MIN || key.length > API_KEY_CHARS_MAX) return undefined;
    return this.#roles.get(digest(key));
  }

  /** Parses a keys file's text; throws {@link ApiKeysFileError} naming `source` and the line. */
  static parse(text: string, source: string): ApiKeys {
    const roles = new Map<string, Role>();
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].replace(/#.*$/, "").trim();
      if (line === "") continue;
      const where = `${source} line ${i + 1}`;
      const parts = line.split(/\s+/);
      if (parts.length !== 2) {
        throw new ApiKeysFileError(
          `${where}: expected "KEY ROLE" (2 words), found ${parts.length} words`,
        );
      }
      const [key, role] = parts;
      if (!KEY_CHARS.test(key)) {
        throw new ApiKeysFileError(`${where}: the key has characters outside printable ASCII`);
      }
      if (key.length < API_KEY_CHARS_MIN || key.length > API_KEY_CHARS_MAX) {
        throw new ApiKeysFileError(
          `${where}: the key ${maskKey(key)} must be ${API_KEY_CHARS_MIN} to ` +
            `${API_KEY_CHARS_MAX} characters`,
        );
      }
      if (!(ROLES as readonly string[]).includes(role)) {
        throw new ApiKeysFileError(
          `${where}: role ${JSON.stringify(role.slice(0, 32))} must be one of ${ROLES.join(", ")}`,
        );
      }
      const d = digest(key);
      if (roles.has(d)) {
        throw new ApiKeysFileError(`${where}: the key ${maskKey(key)} is listed twice`);
      }
      if (roles.size >= API_KEYS_MAX) {
        throw new ApiKeysFileError(`${where}: more than ${API_KEYS_MAX} keys`);
      }
      roles.set(d, role as Role);
    }
    if (roles.size === 0) {
      throw new ApiKeysFileError(`${source} holds no key: every client would be refused`);
    }
    return new ApiKeys(roles, source);
  }

  /** Reads and parses the keys file at `path` (at most {@link API_KEYS_FILE_BYTES_MAX}). */
  static load(path: string): ApiKeys {
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      throw new ApiKeysFileError(`Cannot read API keys file ${path}: ${(e as Error).message}`);
    }
    if (bytes.length > API_KEYS_FILE_BYTES_MAX) {
      throw new ApiKeysFileError(
        `API keys file ${path} has ${bytes.length} bytes, more than ${API_KEYS_FILE_BYTES_MAX}`,
      );
    }
    return ApiKeys.parse(new TextDecoder().decode(bytes), path);
  }
}

/**
 * The API key in `metadata` (`authorization: Bearer KEY`), undefined when the header is
 * absent, or an Error describing a malformed header.
 */
export function bearerKey(metadata: grpc.Metadata): string | undefined | Error {
  const values = metadata.get(AUTHORIZATION_HEADER);
  if (values.length === 0) return undefined;
  if (values.length > 1) return new Error(`${values.length} authorization headers were sent`);
  const v = values[0];
  if (typeof v !== "string") return new Error("the authorization header is not text");
  const m = /^Bearer\s+(\S+)\s*$/i.exec(v);
  if (m === null) {
    // Only the scheme word: the rest may be someone's credentials.
    const scheme = v.trim().split(/\s+/)[0].slice(0, 16);
    return new Error(
      `the authorization header must be "Bearer KEY", found scheme ${JSON.stringify(scheme)}`,
    );
  }
  return m[1];
}

/** Checks an API key on the client side before it is sent; throws naming the problem. */
export function checkApiKey(key: string, source: string): string {
  if (!KEY_CHARS.test(key) || key.length < API_KEY_CHARS_MIN || key.length > API_KEY_CHARS_MAX) {
    throw new ApiKeysFileError(
      `${source}: an API key is ${API_KEY_CHARS_MIN} to ${API_KEY_CHARS_MAX} printable ASCII ` +
        `characters without spaces; got ${maskKey(key)}`,
    );
  }
  return key;
}

/** A client interceptor that sends `authorization: Bearer KEY` on every call. */
export function apiKeyInterceptor(key: string): grpc.Interceptor {
  const value = `Bearer ${key}`;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(AUTHORIZATION_HEADER, value);
        next(metadata, listener);
      },
    });
}
