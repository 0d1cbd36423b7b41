/**
 * The hint queue of one storage node as the router core uses it: the writes the router accepted
 * for the node but could not deliver yet, in acceptance order. {@link HintQueue} is implemented
 * durably by `HintLog` (hint_log.ts) and in memory by {@link MemoryHintQueue}, which the
 * simulations use (and which shows the contract in a few lines).
 *
 * Contract: `append` fixes the hint's place in the queue synchronously (`pending` grows at once)
 * or rejects with {@link HintQueueFullError} without queuing; its promise resolves once the hint
 * is durable. `peek` hands out durable, unsettled hints in order; each is settled in order with
 * `markDelivered` (resolving its `delivery` promise); `commit` makes the settlements durable and
 * removes the settled hints, resolving with how many it removed.
 *
 * @example
 * ```ts
 * import { MemoryHintQueue } from "./queue.ts";
 * const q = new MemoryHintQueue("n1", { hints_max: 10 });
 * const hint = await q.append({ kind: "drop_collection", collection: "c" });
 * q.markDelivered(hint.seq, true);
 * await q.commit(); // 1
 * ```
 * @module
 */
import { encodeRecord, type WalRecord } from "../../common/records.ts";

/** One pending hint. */
export interface Hint {
  /** Its sequence number in the node's hint queue (0 until durable). */
  seq: number;
  type: number;
  payload: Uint8Array;
  /** Resolves true once the node applied it, false once it was discarded as undeliverable. */
  delivery: Promise<boolean>;
}

/** The hint queue of one node (see the module comment for the contract). */
export interface HintQueue {
  readonly pending: number;
  append(record: WalRecord): Promise<Hint>;
  peek(max: number): Hint[];
  markDelivered(seq: number, delivered: boolean): void;
  commit(): Promise<number>;
  close(): Promise<void>;
}

/** The hint queue of a node is full. */
export class HintQueueFullError extends Error {
  constructor(
    readonly node: string,
    readonly pending: number,
    readonly pending_bytes: number,
    readonly hints_max: number,
    readonly hint_bytes_max: number,
  ) {
    super(
      `Hint queue for node ${node} is full: ${pending} hints of ${pending_bytes} bytes pending ` +
        `(limits ${hints_max} hints, ${hint_bytes_max} bytes)`,
    );
    this.name = "HintQueueFullError";
  }
}

interface Entry extends Hint {
  settled: boolean;
  resolve: (delivered: boolean) => void;
}

/** Limits of a {@link MemoryHintQueue}. */
export interface MemoryHintQueueOptions {
  hints_max?: number;
  hint_bytes_max?: number;
}

/**
 * A hint queue in memory: durable as soon as appended (a simulation's router does not crash).
 * Records are encoded as the durable log encodes them, so delivery decodes them the same way.
 */
export class MemoryHintQueue implements HintQueue {
  readonly hints_max: number;
  readonly hint_bytes_max: number;
  readonly #queue: Entry[] = [];
  #settled = 0;
  #next_seq = 1;
  #bytes = 0;
  #closed = false;

  constructor(readonly node: string, options: MemoryHintQueueOptions = {}) {
    this.hints_max = options.hints_max ?? 100_000;
    this.hint_bytes_max = options.hint_bytes_max ?? 256 * 2 ** 20;
  }

  get pending(): number {
    return this.#queue.length;
  }

  append(record: WalRecord): Promise<Hint> {
    if (this.#closed) return Promise.reject(new Error(`Hint queue of ${this.node} is closed`));
    const encoded = encodeRecord(record);
    const bytes = encoded.payload.length;
    if (this.#queue.length + 1 > this.hints_max || this.#bytes + bytes > this.hint_bytes_max) {
      return Promise.reject(
        new HintQueueFullError(
          this.node,
          this.#queue.length,
          this.#bytes,
          this.hints_max,
          this.hint_bytes_max,
        ),
      );
    }
    let resolve!: (delivered: boolean) => void;
    const delivery = new Promise<boolean>((r) => (resolve = r));
    const entry: Entry = {
      seq: this.#next_seq++,
      type: encoded.type,
      payload: encoded.payload,
      delivery,
      settled: false,
      resolve,
    };
    this.#queue.push(entry);
    this.#bytes += bytes;
    return Promise.resolve(entry);
  }

  peek(max: number): Hint[] {
    return this.#queue.slice(this.#settled, this.#settled + max);
  }

  markDelivered(seq: number, delivered: boolean): void {
    const e = this.#queue[this.#settled];
    if (e === undefined || e.seq !== seq) {
      throw new Error(
        `Hint ${seq} of node ${this.node} settled out of order (next is ${e?.seq ?? "none"})`,
      );
    }
    e.settled = true;
    this.#settled++;
    e.resolve(delivered);
  }

  commit(): Promise<number> {
    const n = this.#settled;
    for (const e of this.#queue.splice(0, n)) this.#bytes -= e.payload.length;
    this.#settled = 0;
    return Promise.resolve(n);
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
