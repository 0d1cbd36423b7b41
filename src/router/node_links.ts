/**
 * The production {@link NodePort}: one grpc-js channel per storage node for `vectordb.VectorDB`
 * and one for `vectordb.internal.Transfer`, opened when the node comes onto the ring (or stays
 * for its hand-off) and closed when it leaves. Reconnects back off up to
 * {@link RECONNECT_BACKOFF_MAX_MS}, so a node that returns is reachable again within about a
 * second.
 *
 * @module
 */
import { idsToWire, idToWire } from "../common/point_id.ts";
import * as grpc from "@grpc/grpc-js";
import {
  ApiClient,
  describeGrpcError,
  isServiceError,
  type RequestOf,
  type ResponseOf,
  withoutStacks,
} from "../api/client.ts";
import type { MethodName, UnaryMethod } from "../api/proto.ts";
import { type EntriesRequest, type EntriesResponse, TransferClient } from "../api/transfer.ts";
import { type ClientSecurity, insecureClient } from "../api/security.ts";
import { type NodeCallOptions, type NodePort, RouterStatusError } from "./node_port.ts";
import { MissingCollectionError, type TransferPort } from "./rebalance/rebalancer.ts";
import { type DigestPort, transferDigestPort } from "./rebalance/digest_sync.ts";
import { ShardDropUnsupportedError, ShardRootChangedError } from "./rebalance/shard_move.ts";

/** Deadline of ShardInstallCommit: the receiver loads the image and merges before answering. */
export const SHARD_COMMIT_TIMEOUT_MS = 300_000;

/** Longest pause between a node channel's reconnect attempts. */
export const RECONNECT_BACKOFF_MAX_MS = 1000;

const RECONNECT_OPTIONS: Partial<grpc.ClientOptions> = {
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_MAX_MS,
  "grpc.min_reconnect_backoff_ms": 100,
};

interface Link {
  client: ApiClient;
  transfer: TransferClient;
}

/** grpc-js channels to the storage nodes. */
export class GrpcNodeLinks implements NodePort {
  readonly #links = new Map<string, Link>();

  /**
   * `security`: how the router reaches nodes (TLS credentials; the cluster proof interceptor
   * when a cluster secret is configured); default plaintext without proof.
   */
  constructor(
    readonly node_timeout_ms: number,
    readonly security: ClientSecurity = insecureClient(),
  ) {}

  open(node: string): void {
    this.close(node);
    const s = this.security;
    this.#links.set(node, {
      client: new ApiClient(node, {
        timeout_ms: this.node_timeout_ms,
        client_options: RECONNECT_OPTIONS,
        security: s,
        // Every client query costs a node call or more: no caller stack per call.
        caller_stacks: false,
      }),
      transfer: new TransferClient(node, this.node_timeout_ms, RECONNECT_OPTIONS, s),
    });
  }

  close(node: string): void {
    const l = this.#links.get(node);
    if (l === undefined) return;
    this.#links.delete(node);
    l.client.close();
    l.transfer.close();
  }

  /** Closes every channel. */
  closeAll(): void {
    for (const node of [...this.#links.keys()]) this.close(node);
  }

  #link(node: string): Link {
    const l = this.#links.get(node);
    if (l === undefined) {
      throw new RouterStatusError(
        grpc.status.UNAVAILABLE,
        `The router has no channel to node ${node} (it is off the ring)`,
      );
    }
    return l;
  }

  call<K extends MethodName>(
    node: string,
    method: K,
    request: RequestOf<K>,
    options: NodeCallOptions = {},
  ): Promise<ResponseOf<K>> {
    let link: Link;
    try {
      link = this.#link(node);
    } catch (e) {
      return Promise.reject(e);
    }
    if (options.wait_for_ready !== true) {
      return link.client.call(method, request, { timeout_ms: options.timeout_ms });
    }
    // Like ApiClient.call, but the call waits for the channel to connect (up to the deadline).
    const fn = link.client.raw[method] as unknown as UnaryMethod<RequestOf<K>, ResponseOf<K>>;
    const timeout_ms = options.timeout_ms ?? this.node_timeout_ms;
    return new Promise((resolve, reject) => {
      withoutStacks(() =>
        fn.call(
          link.client.raw,
          request,
          new grpc.Metadata(),
          { deadline: Date.now() + timeout_ms, waitForReady: true },
          (error, response) => {
            if (error) reject(error);
            else if (response === undefined) reject(new Error(`${method} returned no response`));
            else resolve(response);
          },
        )
      );
    });
  }

  entries(
    node: string,
    request: EntriesRequest,
    options: NodeCallOptions = {},
  ): Promise<EntriesResponse> {
    let link: Link;
    try {
      link = this.#link(node);
    } catch (e) {
      return Promise.reject(e);
    }
    return link.transfer.call("Entries", request, options.timeout_ms, options.wait_for_ready);
  }

  digest(node: string): DigestPort | null {
    const l = this.#links.get(node);
    return l === undefined ? null : transferDigestPort(l.transfer);
  }

  transfer(node: string): TransferPort | null {
    const l = this.#links.get(node);
    if (l === undefined) return null;
    const client = l.transfer;
    const missing = (e: unknown) => {
      if (isServiceError(e) && e.code === grpc.status.NOT_FOUND) {
        throw new MissingCollectionError(describeGrpcError(e));
      }
      throw e;
    };
    return {
      scan: async (collection, after, from_start, limit, shard) => {
        const cursor = idToWire(after);
        const page = await client.call("Scan", {
          collection,
          after_id: cursor.id,
          after_string_id: cursor.string_id,
          from_start,
          limit,
          ...(shard === undefined ? {} : { by_shard: true, shard }),
        }).catch(missing);
        return {
          entries: page.points.map((p) => ({
            id: p.id,
            version: p.version, // TransferClient already made it a number
            deleted: p.deleted === true,
            vector: p.vector,
            payload: p.payload ?? "",
          })),
          next_after: page.next_after,
          done: page.done,
        };
      },
      copy: async (collection, entries) => {
        const points = entries.map((e) => ({
          ...idToWire(e.id),
          // An entry from before versions (0) travels as 1, the oldest: any real write wins.
          version: String(Math.max(1, e.version)),
          deleted: e.deleted,
          vector: e.deleted ? [] : Array.from(e.vector),
          payload: e.deleted ? "" : e.payload ?? "",
        }));
        const r = await client.call("CopyBatch", { collection, points }).catch(missing);
        return { applied: r.applied, skipped: r.skipped };
      },
      prune: async (collection, ids, versions) => {
        // The node reads `versions` as those of `ids` then `string_ids`: integers first.
        const order = ids.map((_, i) => i);
        order.sort((a, b) =>
          Number(typeof ids[a] === "string") - Number(typeof ids[b] === "string")
        );
        const wire = idsToWire(order.map((i) => ids[i]));
        const r = await client.call("Prune", {
          collection,
          ...wire,
          versions: order.map((i) => String(versions[i])),
        }).catch(missing);
        return r.deleted;
      },
      files: {
        openImage: async (collection, shard) => {
          // The source snapshots the unit before answering.
          const r = await client.call(
            "ShardImageOpen",
            { collection, shard },
            Math.max(client.timeout_ms, SHARD_COMMIT_TIMEOUT_MS),
          ).catch(missing);
          return {
            image_id: r.image_id,
            size: Number(r.size),
            seq: Number(r.seq),
            crc32: r.crc32,
            points: Number(r.points),
          };
        },
        readImage: (image_id, offset, max_bytes) =>
          client.call("ShardImageRead", { image_id, offset: String(offset), max_bytes }),
        closeImage: async (image_id) => {
          await client.call("ShardImageClose", { image_id });
        },
        beginInstall: async (collection, shard, image) => {
          const r = await client.call("ShardInstallBegin", {
            collection,
            shard,
            size: String(image.size),
            seq: String(image.seq),
            crc32: image.crc32,
          }).catch(missing);
          return r.install_id;
        },
        installChunk: async (install_id, offset, data, crc32) => {
          await client.call("ShardInstallChunk", {
            install_id,
            offset: String(offset),
            data,
            crc32,
          });
        },
        commitInstall: async (install_id) => {
          // Loading a large image and swapping it in takes longer than a point call.
          const r = await client.call(
            "ShardInstallCommit",
            { install_id },
            Math.max(client.timeout_ms, SHARD_COMMIT_TIMEOUT_MS),
          );
          return { merged: Number(r.merged), points: Number(r.points) };
        },
        dropShard: async (collection, shard, root, entries) => {
          try {
            // The node swaps in an empty unit (fsyncs, renames) before answering.
            const r = await client.call(
              "ShardDrop",
              { collection, shard, expected_root: root, expected_entries: String(entries) },
              Math.max(client.timeout_ms, SHARD_COMMIT_TIMEOUT_MS),
            );
            return Number(r.dropped);
          } catch (e) {
            if (isServiceError(e) && e.code === grpc.status.FAILED_PRECONDITION) {
              throw new ShardRootChangedError(describeGrpcError(e));
            }
            if (isServiceError(e) && e.code === grpc.status.UNIMPLEMENTED) {
              throw new ShardDropUnsupportedError(describeGrpcError(e));
            }
            return missing(e);
          }
        },
      },
    };
  }
}
