/**
 * The model a crash test checks a storage node against: per point id, the state last verified
 * on the node, then the writes issued since, each acknowledged or uncertain (failed or in
 * flight when the node was killed).
 *
 * Writes to one id are issued one at a time (each client owns its ids and waits for each call),
 * so their order is the log's order. After a crash the node may hold the result of the last
 * acknowledged write or of any write issued after it; with nothing acknowledged since the last
 * verification, also the verified state. A version that was never issued, or a point with no
 * issued write, is a phantom.
 *
 * Vectors encode their id and version: `[id, version, ...6 values derived from the version]`,
 * and so do payloads ({@link crashPayload}): a point must hold exactly the payload of the
 * version its vector names, byte for byte (every fourth version has none).
 * @module
 */
import { churnVector } from "../../harness/workloads/churn_vectors.ts";

export const CRASH_DIM = 8;

/** `null`: absent (deleted or never written). */
export type PointState = number | null;

export interface Write {
  /** The version put, or `null` for a delete. */
  result: PointState;
  acked: boolean;
}

/** The vector of version `version` of point `id` (a plain array of exact float32 values). */
export function crashVector(id: number, version: number): number[] {
  return [id, version, ...churnVector(version, CRASH_DIM - 2)];
}

/**
 * The payload text of version `version` of point `id` ("" for none: every fourth version), in
 * the compact form a node stores (JSON.stringify output), so it comes back byte for byte.
 */
export function crashPayload(id: number, version: number): string {
  if (version % 4 === 0) return "";
  return JSON.stringify({
    id,
    version,
    name: `point ${id} v${version} — ünïcödé`,
    tags: version % 2 === 0 ? ["even", id % 10] : ["odd", null, true],
    pad: "p".repeat((version * 37) % 1500),
  });
}

/** The version a stored vector encodes; throws when it is no vector this test ever made. */
export function decodeCrashVector(id: number, vector: ArrayLike<number>): number {
  const v = Array.from(vector);
  const version = v[1];
  const expected = crashVector(id, version);
  if (v.length !== CRASH_DIM || v.some((x, i) => x !== expected[i])) {
    throw new Error(`Point ${id} holds a vector this test never wrote: [${v.join(", ")}]`);
  }
  return version;
}

export class CrashModel {
  /** Verified state per id (ids absent here were never written: absent). */
  private readonly verified = new Map<number, PointState>();
  /** Writes since the last verification, per id, in issue order. */
  private readonly pending = new Map<number, Write[]>();
  private nextVersion = 1;

  /** A fresh version number (never reused). */
  version(): number {
    return this.nextVersion++;
  }

  /** Records a write as issued; mark it with {@link ack} when acknowledged. */
  issue(id: number, result: PointState): Write {
    const w: Write = { result, acked: false };
    let list = this.pending.get(id);
    if (list === undefined) this.pending.set(id, list = []);
    list.push(w);
    return w;
  }

  ack(w: Write): void {
    w.acked = true;
  }

  /** Ids with writes since the last verification. */
  touched(): number[] {
    return [...this.pending.keys()];
  }

  /** States the node may hold for `id`. */
  allowed(id: number): PointState[] {
    const writes = this.pending.get(id) ?? [];
    let last = -1;
    writes.forEach((w, i) => {
      if (w.acked) last = i;
    });
    const states = writes.slice(Math.max(0, last)).map((w) => w.result);
    if (last < 0) states.unshift(this.verified.get(id) ?? null);
    return [...new Set(states)];
  }

  /** Checks what the node holds for `id`; returns an error line, or null when it is allowed. */
  check(id: number, observed: PointState): string | null {
    const allowed = this.allowed(id);
    if (allowed.includes(observed)) return null;
    const writes = (this.pending.get(id) ?? [])
      .map((w) =>
        `${w.result === null ? "delete" : `put v${w.result}`}${w.acked ? " (acked)" : ""}`
      )
      .join(", ");
    return `Point ${id} is ${observed === null ? "absent" : `version ${observed}`}; allowed: ` +
      `${allowed.map((s) => (s === null ? "absent" : `v${s}`)).join(" or ")} ` +
      `(verified ${this.verified.get(id) ?? "absent"}, then ${writes})`;
  }

  /** Makes `observed` the verified state of `id` and forgets its pending writes. */
  settle(id: number, observed: PointState): void {
    this.verified.set(id, observed);
    this.pending.delete(id);
  }

  /** Points present according to the verified states (valid right after settling all). */
  presentCount(): number {
    let n = 0;
    for (const s of this.verified.values()) if (s !== null) n++;
    return n;
  }
}
