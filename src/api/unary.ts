// Placeholder with the agreed API; replaced by the shared implementation on merge.
import * as grpc from "@grpc/grpc-js";
export interface StatusLike {
  code: grpc.status;
  details: string;
}
export interface UnaryGuardOptions {
  server_name: string;
  in_flight_max: number;
  closing: () => boolean;
  to_status: (error: unknown) => StatusLike;
  log?: (message: string) => void;
}
export class UnaryGuard {
  #n = 0;
  constructor(readonly options: UnaryGuardOptions) {}
  get in_flight(): number {
    return this.#n;
  }
  wrap<Req, Res>(
    method: string,
    fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      if (this.options.closing()) {
        callback({
          code: grpc.status.UNAVAILABLE,
          details: `The ${this.options.server_name} is shutting down`,
        });
        return;
      }
      if (this.#n >= this.options.in_flight_max) {
        callback({
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: `${method}: ${this.#n} calls in flight (limit ${this.options.in_flight_max})`,
        });
        return;
      }
      this.#n++;
      Promise.resolve().then(() => fn(call.request, call)).then(
        (r) => callback(null, r),
        (e) => {
          const s = this.options.to_status(e);
          if (s.code === grpc.status.INTERNAL) this.options.log?.(`internal error: ${e}`);
          callback({ code: s.code, details: s.details });
        },
      ).finally(() => this.#n--);
    };
  }
}
