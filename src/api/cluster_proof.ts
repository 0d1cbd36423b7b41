/**
 * Cluster authentication: every internal call (gossip, transfer, and the router's calls to
 * storage nodes) carries proof that the caller holds the cluster secret
 * (`--cluster-secret-file PATH`, the same file on every node and router).
 *
 * **The proof** is the metadata entry `x-vectordb-cluster-proof`:
 *
 * | part    | meaning                                                        |
 * |---------|----------------------------------------------------------------|
 * | `v1`    | format version                                                 |
 * | ts_ms   | the caller's clock, decimal milliseconds since the epoch       |
 * | nonce   | 16 random bytes, hex: makes each proof single-use              |
 * | mac     | HMAC-SHA256(secret, "vectordb-cluster-v1\n" path "\n" ts_ms "\n" nonce), base64url |
 *
 * joined with dots. The receiver recomputes the MAC (compared in constant time), accepts a
 * timestamp within {@link PROOF_SKEW_MS} of its own clock, and refuses a nonce it has already
 * accepted within that window, so a proof can be used once, for one RPC (the path is signed),
 * for a minute at most. Without the secret nobody can make one: a stranger cannot join gossip,
 * vouch for or suspect members, copy, scan or prune entries, or write through the nodes' port
 * as the router. The proof does not sign the request body: against someone who can read and
 * alter traffic on the wire, add TLS (tls.ts), which protects the whole channel.
 *
 * The replay cache holds at most {@link PROOF_NONCES_MAX} nonces (those of the last two
 * windows); beyond that a proof is refused with UNAVAILABLE (the caller retries), never
 * accepted unchecked. Only proofs with a valid MAC reach the cache, so strangers cannot fill it.
 *
 * @example
 * ```ts
 * import { ClusterSecret } from "./cluster_proof.ts";
 * const secret = ClusterSecret.fromText("x".repeat(32), "test");
 * const proof = secret.sign("/vectordb.internal.Gossip/Exchange", Date.now());
 * console.assert(secret.verify("/vectordb.internal.Gossip/Exchange", proof, Date.now()) === null);
 * console.assert(secret.verify("/vectordb.internal.Gossip/Exchange", proof, Date.now()) !== null);
 * ```
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";

/** The metadata key of the proof. */
export const PROOF_HEADER = "x-vectordb-cluster-proof";
/** Largest difference between the caller's and the receiver's clocks. */
export const PROOF_SKEW_MS = 30_000;
/** Most nonces remembered (two windows' worth); beyond, proofs are refused with UNAVAILABLE. */
export const PROOF_NONCES_MAX = 500_000;
/** Shortest and longest secret, in bytes. */
export const SECRET_BYTES_MIN = 32;
export const SECRET_BYTES_MAX = 4096;
/** Longest proof header accepted before it is parsed. */
export const PROOF_CHARS_MAX = 160;

const PREFIX = "vectordb-cluster-v1\n";

/** A secret file or text broke a rule. */
export class ClusterSecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ClusterSecretError";
  }
}

/** Why a proof was refused: the gRPC status and a message for the caller. */
export interface ProofRefusal {
  code: grpc.status;
  details: string;
}

/** The cluster secret: signs and verifies proofs, remembers the nonces it accepted. */
export class ClusterSecret {
  readonly #key: Buffer;
  /** Where the secret came from, for messages. */
  readonly source: string;
  /** Accepted nonce -> when it may be forgotten (ms); insertion order is expiry order. */
  readonly #nonces = new Map<string, number>();
  /** Proofs accepted and refused, for Stats and tests. */
  readonly counters = { accepted: 0, refused: 0 };

  private constructor(key: Buffer, source: string) {
    this.#key = key;
    this.source = source;
  }

  /** A secret from text (surrounding whitespace dropped); at least 32 bytes. */
  static fromText(text: string, source: string): ClusterSecret {
    const t = text.trim();
    const key = Buffer.from(t, "utf8");
    if (key.length < SECRET_BYTES_MIN || key.length > SECRET_BYTES_MAX) {
      throw new ClusterSecretError(
        `Cluster secret in ${source} has ${key.length} bytes; it must have ${SECRET_BYTES_MIN} ` +
          `to ${SECRET_BYTES_MAX} (make one with: openssl rand -hex 32 > ${source})`,
      );
    }
    return new ClusterSecret(key, source);
  }

  /** Reads the secret file at `path`. */
  static load(path: string): ClusterSecret {
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      throw new ClusterSecretError(
        `Cannot read cluster secret file ${path}: ${(e as Error).message}`,
      );
    }
    if (bytes.length > SECRET_BYTES_MAX + 16) {
      throw new ClusterSecretError(
        `Cluster secret file ${path} has ${bytes.length} bytes, more than ${SECRET_BYTES_MAX}`,
      );
    }
    return ClusterSecret.fromText(new TextDecoder().decode(bytes), path);
  }

  #mac(path: string, ts: string, nonce: string): Buffer {
    return createHmac("sha256", this.#key).update(`${PREFIX}${path}\n${ts}\n${nonce}`).digest();
  }

  /** A fresh proof for one call of `path` at `now_ms`. */
  sign(path: string, now_ms: number): string {
    const ts = String(Math.floor(now_ms));
    const nonce = randomBytes(16).toString("hex");
    return `v1.${ts}.${nonce}.${this.#mac(path, ts, nonce).toString("base64url")}`;
  }

  /** Null when `proof` is valid for `path` at `now_ms` (and consumes it), else why not. */
  verify(path: string, proof: string, now_ms: number): ProofRefusal | null {
    const r = this.#check(path, proof, now_ms);
    if (r === null) this.counters.accepted++;
    else this.counters.refused++;
    return r;
  }

  #check(path: string, proof: string, now_ms: number): ProofRefusal | null {
    const bad = (why: string): ProofRefusal => ({
      code: grpc.status.UNAUTHENTICATED,
      details: `Cluster proof for ${path} refused: ${why}`,
    });
    if (proof.length > PROOF_CHARS_MAX) {
      return bad(`${proof.length} characters, more than ${PROOF_CHARS_MAX}`);
    }
    const parts = proof.split(".");
    if (parts.length !== 4 || parts[0] !== "v1") {
      return bad(`not of the form v1.TS.NONCE.MAC (starts ${JSON.stringify(proof.slice(0, 8))})`);
    }
    const [, ts, nonce, mac] = parts;
    if (!/^\d{1,16}$/.test(ts) || !/^[0-9a-f]{32}$/.test(nonce) || !/^[\w-]{43}$/.test(mac)) {
      return bad("a part is malformed");
    }
    const expected = this.#mac(path, ts, nonce);
    const given = Buffer.from(mac, "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return bad("wrong MAC (is the cluster secret the same file on every member?)");
    }
    const skew = Number(ts) - now_ms;
    if (Math.abs(skew) > PROOF_SKEW_MS) {
      return bad(
        `timestamp ${ts} is ${Math.round(skew / 1000)} s from this member's clock (more than ` +
          `${PROOF_SKEW_MS / 1000} s: are the clocks synchronised?)`,
      );
    }
    this.#forget(now_ms);
    if (this.#nonces.has(nonce)) return bad("this proof was already used (a replay)");
    if (this.#nonces.size >= PROOF_NONCES_MAX) {
      return {
        code: grpc.status.UNAVAILABLE,
        details: `Cluster proof for ${path} not checked: ${PROOF_NONCES_MAX} proofs in the ` +
          `last ${(2 * PROOF_SKEW_MS) / 1000} s fill the replay cache; retry`,
      };
    }
    // Kept until no clock within the window could still accept the proof.
    this.#nonces.set(nonce, now_ms + 2 * PROOF_SKEW_MS);
    return null;
  }

  /** Drops nonces whose proofs can no longer be accepted (oldest first; amortised O(1)). */
  #forget(now_ms: number): void {
    for (const [nonce, until_ms] of this.#nonces) {
      if (until_ms > now_ms) break;
      this.#nonces.delete(nonce);
    }
  }

  /** Nonces remembered now. */
  get nonces(): number {
    return this.#nonces.size;
  }
}

/** A client interceptor that adds a fresh proof of `secret` to every call. */
export function clusterProofInterceptor(
  secret: ClusterSecret,
  now_ms: () => number = Date.now,
): grpc.Interceptor {
  return (options, nextCall) => {
    const path = options.method_definition.path;
    return new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(PROOF_HEADER, secret.sign(path, now_ms()));
        next(metadata, listener);
      },
    });
  };
}
