/**
 * A process's security, from its flags: who may call it (API keys, the cluster secret), how
 * its port is served (TLS or plaintext), and how it calls other members. Storage nodes and
 * routers take the same flags and build this once; the CLI builds the client half.
 *
 * | flag                       | effect                                                        |
 * |----------------------------|---------------------------------------------------------------|
 * | `--api-keys-file PATH`     | clients must send `authorization: Bearer KEY` (auth.ts); re-read on SIGHUP |
 * | `--cluster-secret-file PATH` | internal RPCs need a proof of this secret and carry one (cluster_proof.ts) |
 * | `--tls-cert PATH`, `--tls-key PATH` | serve TLS (PEM certificate chain and private key)      |
 * | `--tls-ca PATH`            | trust this CA (PEM) when calling other members over TLS; TLS to members is used when this process serves TLS or this flag is given |
 * | `--insecure`               | allow a non-loopback bind without API keys and a cluster secret |
 *
 * **Secure by default.** Binding an address other than loopback (127.0.0.0/8, ::1, localhost)
 * without API keys AND a cluster secret refuses to start, saying what to add, unless
 * `--insecure` is given: the port would otherwise let anyone delete data.
 *
 * **Checks on every call** ({@link SecurityConfig.serverInterceptor}), before the request is
 * handed to the service, in this order:
 *
 * | case                                                   | answer            |
 * |--------------------------------------------------------|-------------------|
 * | a cluster proof is present and this process has a secret | valid: allowed (any RPC); invalid: UNAUTHENTICATED |
 * | internal RPC, secret configured, no proof              | UNAUTHENTICATED   |
 * | internal RPC, no secret configured                     | allowed (loopback or `--insecure` only) |
 * | health (`grpc.health.v1.Health`), no proof             | allowed, without a key (probes) |
 * | public RPC, no API keys configured                     | allowed           |
 * | public RPC, no or unknown key                          | UNAUTHENTICATED   |
 * | public RPC, key's role too low                         | PERMISSION_DENIED |
 *
 * Refusals are logged at most once a second per kind, with the peer's address.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import { accessOf, apiKeyInterceptor, ApiKeys, bearerKey, maskKey, roleAllows } from "./auth.ts";
import { clusterProofInterceptor, ClusterSecret, PROOF_HEADER } from "./cluster_proof.ts";
import type { FlagTable } from "../common/config.ts";

/**
 * The security flags (shared by nodes and routers): a flag table for src/common/config.ts, whose
 * entries are also `node:util` parseArgs options.
 */
export const SECURITY_FLAGS = {
  "api-keys-file": {
    type: "string",
    arg: "PATH",
    help: "clients need `authorization: Bearer KEY` from this file (re-read on SIGHUP)",
  },
  "cluster-secret-file": {
    type: "string",
    arg: "PATH",
    help: "internal RPCs need a proof of the secret in this file",
  },
  "tls-cert": { type: "string", arg: "PATH", help: "serve TLS with this PEM certificate chain" },
  "tls-key": { type: "string", arg: "PATH", help: "... and this PEM private key" },
  "tls-ca": { type: "string", arg: "PATH", help: "trust this PEM CA when calling members" },
  insecure: {
    type: "boolean",
    default: false,
    help: "allow a non-loopback --host without API keys and a cluster secret",
  },
} as const satisfies FlagTable;

/** Values of {@link SECURITY_FLAGS}. */
export interface SecurityFlags {
  "api-keys-file"?: string;
  "cluster-secret-file"?: string;
  "tls-cert"?: string;
  "tls-key"?: string;
  "tls-ca"?: string;
  insecure?: boolean;
}

/** The security setup refused to start; the message says what to change. */
export class SecurityConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SecurityConfigError";
  }
}

/** Whether `host` is a loopback address or name. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function readPem(path: string, what: string): Buffer {
  try {
    const b = readFileSync(path);
    if (b.length > 1024 * 1024) throw new Error(`${b.length} bytes, more than 1 MiB`);
    if (!b.toString("latin1").includes("-----BEGIN ")) throw new Error("not PEM");
    return b;
  } catch (e) {
    throw new SecurityConfigError(`Cannot use ${what} ${path}: ${(e as Error).message}`);
  }
}

/** How to call members or a router: TLS or plaintext, and the interceptors that add metadata. */
export interface ClientSecurity {
  /** null: plaintext; else TLS trusting `ca` (PEM; null: the system's roots). */
  tls: { ca: Buffer | null } | null;
  /** API key and/or cluster proof interceptors. */
  interceptors: grpc.Interceptor[];
}

/** Credentials and channel options of one channel to `address` (host:port). */
export interface ChannelSetup {
  credentials: grpc.ChannelCredentials;
  options: Partial<grpc.ClientOptions>;
}

/**
 * The channel credentials and options to reach `address` under `security`. For a TLS target
 * given as an IP address, the certificate is checked against that IP (its SAN must list it)
 * while the TLS server name (SNI) is a placeholder: Deno's node:tls refuses an IP as server
 * name, and our servers present one certificate whatever name is asked for.
 */
export function channelSetup(security: ClientSecurity, address: string): ChannelSetup {
  if (security.tls === null) {
    return { credentials: grpc.credentials.createInsecure(), options: {} };
  }
  const host = address.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  if (isIP(host) === 0) {
    return { credentials: grpc.credentials.createSsl(security.tls.ca), options: {} };
  }
  return {
    credentials: grpc.credentials.createSsl(security.tls.ca, null, null, {
      checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
    }),
    options: { "grpc.ssl_target_name_override": "vectordb.invalid" },
  };
}

/** Plaintext, no metadata: loopback tests and `--insecure` clusters. */
export function insecureClient(): ClientSecurity {
  return { tls: null, interceptors: [] };
}

/** Client half for the CLI and applications: an API key and/or TLS. */
export function clientSecurity(options: {
  api_key?: string;
  /** PEM CA file; implies TLS. */
  tls_ca?: string;
  /** What the CA file is called in errors; default `--tls-ca`. */
  tls_ca_source?: string;
  /** TLS with the system's roots (no CA file). */
  tls?: boolean;
}): ClientSecurity {
  return {
    tls: options.tls_ca !== undefined
      ? { ca: readPem(options.tls_ca, options.tls_ca_source ?? "--tls-ca") }
      : options.tls
      ? { ca: null }
      : null,
    interceptors: options.api_key !== undefined ? [apiKeyInterceptor(options.api_key)] : [],
  };
}

/** One process's security (module comment). Build with {@link SecurityConfig.fromFlags}. */
export class SecurityConfig {
  #keys: ApiKeys | null;
  readonly keys_file: string | null;
  readonly secret: ClusterSecret | null;
  readonly server_credentials: grpc.ServerCredentials;
  /** How this process calls other members (TLS when configured, the cluster proof). */
  readonly peers: ClientSecurity;
  readonly tls: boolean;
  /** The PEM certificate chain and key served (the HTTP API serves them too); null: plaintext. */
  readonly tls_pem: { cert: Buffer; key: Buffer } | null;
  readonly #log: (message: string) => void;
  readonly #last_log_ms = new Map<string, number>();
  /** Calls refused, by status name. */
  readonly refused: Record<string, number> = {};

  private constructor(
    keys: ApiKeys | null,
    keys_file: string | null,
    secret: ClusterSecret | null,
    server_credentials: grpc.ServerCredentials,
    peers: ClientSecurity,
    tls_pem: { cert: Buffer; key: Buffer } | null,
    log: (message: string) => void,
  ) {
    this.#keys = keys;
    this.keys_file = keys_file;
    this.secret = secret;
    this.server_credentials = server_credentials;
    this.peers = peers;
    this.tls = tls_pem !== null;
    this.tls_pem = tls_pem;
    this.#log = log;
  }

  /** No authentication, plaintext: what tests and loopback development use. */
  static insecure(log: (message: string) => void = () => {}): SecurityConfig {
    return new SecurityConfig(
      null,
      null,
      null,
      grpc.ServerCredentials.createInsecure(),
      insecureClient(),
      null,
      log,
    );
  }

  /**
   * Reads the files the flags name and applies the secure-by-default rule for `host`; throws
   * {@link SecurityConfigError} (or the file's own error) with what to change.
   */
  static fromFlags(
    flags: SecurityFlags,
    host: string,
    who: string,
    log: (message: string) => void,
  ): SecurityConfig {
    const keysFile = flags["api-keys-file"];
    const secretFile = flags["cluster-secret-file"];
    if (
      !isLoopback(host) && !flags.insecure && (keysFile === undefined || secretFile === undefined)
    ) {
      const missing = [
        keysFile === undefined ? "--api-keys-file PATH (one `KEY ROLE` a line)" : "",
        secretFile === undefined
          ? "--cluster-secret-file PATH (the same secret on every node and router; " +
            "openssl rand -hex 32 > PATH)"
          : "",
      ].filter((s) => s !== "");
      throw new SecurityConfigError(
        `Refusing to serve the ${who} on ${host}, which is not loopback, without ` +
          `authentication: anyone who reaches the port could read, write and delete data. Add ` +
          `${missing.join(" and ")}, or pass --insecure to serve it unauthenticated anyway`,
      );
    }
    const cert = flags["tls-cert"];
    const key = flags["tls-key"];
    if ((cert === undefined) !== (key === undefined)) {
      throw new SecurityConfigError("--tls-cert and --tls-key go together: give both or neither");
    }
    const keys = keysFile !== undefined ? ApiKeys.load(keysFile) : null;
    const secret = secretFile !== undefined ? ClusterSecret.load(secretFile) : null;
    const tls = cert !== undefined && key !== undefined;
    const tls_pem = tls
      ? { cert: readPem(cert, "--tls-cert"), key: readPem(key, "--tls-key") }
      : null;
    const server_credentials = tls_pem !== null
      ? grpc.ServerCredentials.createSsl(null, [{
        cert_chain: tls_pem.cert,
        private_key: tls_pem.key,
      }], false)
      : grpc.ServerCredentials.createInsecure();
    const ca = flags["tls-ca"];
    const peers: ClientSecurity = {
      tls: ca !== undefined ? { ca: readPem(ca, "--tls-ca") } : tls ? { ca: null } : null,
      interceptors: secret !== null ? [clusterProofInterceptor(secret)] : [],
    };
    const config = new SecurityConfig(
      keys,
      keysFile ?? null,
      secret,
      server_credentials,
      peers,
      tls_pem,
      log,
    );
    log(config.describe());
    if (!isLoopback(host) && !tls) {
      log(
        `WARNING serving on ${host} without TLS: keys and data cross the network in the ` +
          `clear (add --tls-cert and --tls-key)`,
      );
    }
    return config;
  }

  /** One line on what is enforced, for the start-up log. */
  describe(): string {
    const k = this.#keys;
    const c = k?.counts();
    return `security: ${
      k !== null
        ? `${k.size} API keys (${c!.read} read, ${c!.write} write, ${c!.admin} admin)`
        : "no API keys (clients unauthenticated)"
    }; ${
      this.secret !== null
        ? "cluster secret on (internal RPCs need its proof)"
        : "no cluster secret (internal RPCs unauthenticated)"
    }; ${this.tls ? "TLS" : "plaintext"}`;
  }

  /** The keys in force (null: clients are not authenticated). */
  get keys(): ApiKeys | null {
    return this.#keys;
  }

  /**
   * Re-reads the keys file (SIGHUP). On an error the keys in force stay and the error is
   * logged and returned; on success the new keys apply to every later call.
   */
  reloadKeys(): Error | null {
    if (this.keys_file === null) {
      this.#log("SIGHUP: no --api-keys-file to re-read");
      return null;
    }
    try {
      this.#keys = ApiKeys.load(this.keys_file);
      this.#log(`SIGHUP: re-read ${this.keys_file}; ${this.describe()}`);
      return null;
    } catch (e) {
      this.#log(`SIGHUP: ${(e as Error).message}; the previous ${this.#keys?.size} keys stay`);
      return e as Error;
    }
  }

  /** Why a call of `path` with `metadata` is refused, or null when it may go on. */
  check(
    path: string,
    metadata: grpc.Metadata,
    now_ms: number = Date.now(),
  ): grpc.StatusObject | null {
    const refuse = (code: grpc.status, details: string): grpc.StatusObject => ({
      code,
      details,
      metadata: new grpc.Metadata(),
    });
    const access = accessOf(path);
    const proofs = metadata.get(PROOF_HEADER);
    if (proofs.length > 0 && this.secret !== null) {
      if (proofs.length > 1 || typeof proofs[0] !== "string") {
        return refuse(
          grpc.status.UNAUTHENTICATED,
          `${path}: one cluster proof expected, got ${proofs.length}`,
        );
      }
      const r = this.secret.verify(path, proofs[0], now_ms);
      return r === null ? null : refuse(r.code, r.details);
    }
    if (access === "cluster") {
      if (this.secret === null) return null;
      return refuse(
        grpc.status.UNAUTHENTICATED,
        `${path} is internal: it needs a proof of the cluster secret (${PROOF_HEADER}); the ` +
          `caller sent none (is --cluster-secret-file given to every member?)`,
      );
    }
    if (access === "open") return null;
    const keys = this.#keys;
    if (keys === null) return null;
    const key = bearerKey(metadata);
    const method = path.slice(path.lastIndexOf("/") + 1);
    if (key === undefined) {
      return refuse(
        grpc.status.UNAUTHENTICATED,
        `${method} needs an API key: send the metadata "authorization: Bearer KEY" ` +
          `(CLI: --api-key or VECTORDB_API_KEY)`,
      );
    }
    if (key instanceof Error) {
      return refuse(grpc.status.UNAUTHENTICATED, `${method}: ${key.message}`);
    }
    const role = keys.roleOf(key);
    if (role === undefined) {
      return refuse(grpc.status.UNAUTHENTICATED, `${method}: API key ${maskKey(key)} is not valid`);
    }
    if (!roleAllows(role, access)) {
      return refuse(
        grpc.status.PERMISSION_DENIED,
        `${method} needs role ${access}; API key ${maskKey(key)} has role ${role}`,
      );
    }
    return null;
  }

  /**
   * {@link check}, with a refusal counted and logged like the gRPC interceptor's (the HTTP API
   * calls this with a `grpc.Metadata` holding the request's `authorization` header).
   */
  authorize(path: string, metadata: grpc.Metadata, peer: string): grpc.StatusObject | null {
    const status = this.check(path, metadata);
    if (status !== null) this.#noteRefusal(status, path, peer);
    return status;
  }

  #noteRefusal(status: grpc.StatusObject, path: string, peer: string): void {
    const name = grpc.status[status.code] ?? String(status.code);
    this.refused[name] = (this.refused[name] ?? 0) + 1;
    const now = Date.now();
    const kind = `${name} ${path}`;
    if (now - (this.#last_log_ms.get(kind) ?? 0) < 1000) return;
    if (this.#last_log_ms.size > 1000) this.#last_log_ms.clear();
    this.#last_log_ms.set(kind, now);
    this.#log(`refused ${path} from ${peer}: ${name}: ${status.details}`);
  }

  /** The server interceptor that applies {@link check} to every call before its handler. */
  serverInterceptor(): grpc.ServerInterceptor {
    return (method, call) => {
      let refused = false;
      return new grpc.ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (metadata, mdNext) => {
              const status = this.authorize(method.path, metadata, call.getPeer());
              if (status === null) {
                mdNext(metadata);
                return;
              }
              refused = true;
              call.sendStatus(status);
            },
            onReceiveMessage: (message, msgNext) => {
              if (!refused) msgNext(message);
            },
            onReceiveHalfClose: (hcNext) => {
              if (!refused) hcNext();
            },
          }),
      });
    };
  }

  /**
   * Whether {@link check} allows every call whatever its metadata: no cluster secret, no API
   * keys and no keys file that SIGHUP could load some from (loopback or `--insecure`).
   */
  get allowsAll(): boolean {
    return this.secret === null && this.#keys === null && this.keys_file === null;
  }

  /**
   * grpc.Server options with this process's interceptor, merged into `options`; none when
   * {@link allowsAll}: it would let every call through, and costs a wrapper call object with
   * its closures, and a peer lookup, per call (a few % of a router's CPU per search).
   */
  serverOptions(options: grpc.ServerOptions): grpc.ServerOptions {
    if (this.allowsAll) return options;
    return {
      ...options,
      interceptors: [...(options.interceptors ?? []), this.serverInterceptor()],
    };
  }
}
