/**
 * Test support for fake NodePorts (scatter_test.ts, search_coalescer_test.ts,
 * hints/replay_test.ts), which each had a copy of the same unused members: a fake extends
 * {@link CallOnlyPort} and writes only `call`.
 *
 * @example
 * ```ts
 * class Echo extends CallOnlyPort {
 *   call<K extends MethodName>(_node: string, _method: K, request: RequestOf<K>) {
 *     return Promise.resolve(request as unknown as ResponseOf<K>);
 *   }
 * }
 * ```
 * @module
 */
import type { RequestOf, ResponseOf } from "../api/client.ts";
import type { MethodName } from "../api/proto.ts";
import type { NodeCallOptions, NodePort } from "./node_port.ts";

/** A NodePort whose only member in use is `call`: no entries, no Transfer, channels no-ops. */
export abstract class CallOnlyPort implements NodePort {
  abstract call<K extends MethodName>(
    node: string,
    method: K,
    request: RequestOf<K>,
    options?: NodeCallOptions,
  ): Promise<ResponseOf<K>>;
  entries(): never {
    throw new Error("not used");
  }
  transfer(): null {
    return null;
  }
  open(): void {}
  close(): void {}
}
