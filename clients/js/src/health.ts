// grpc.health.v1 for a Worker, so the control plane can probe it: SERVING while it takes tasks,
// NOT_SERVING once it drains.

import { Server, ServerCredentials, type ServerWritableStream, status } from '@grpc/grpc-js';

import {
  type HealthCheckRequest,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthServer as Implementation,
  HealthService,
} from './gen/grpc/health/v1/health.js';

export class HealthServer {
  readonly #server = new Server();
  readonly #known: Set<string>;
  readonly #watchers = new Set<ServerWritableStream<HealthCheckRequest, HealthCheckResponse>>();
  #serving = true;

  /** Answers about the whole server ("") and about `services`. */
  constructor(services: readonly string[]) {
    this.#known = new Set(['', ...services]);
    const implementation: Implementation = {
      check: (call, callback) => {
        if (!this.#known.has(call.request.service)) {
          callback({ code: status.NOT_FOUND, details: `unknown service ${call.request.service}` });
          return;
        }
        callback(null, HealthCheckResponse.fromPartial({ status: this.#status() }));
      },
      watch: (call) => {
        if (!this.#known.has(call.request.service)) {
          call.write(HealthCheckResponse.fromPartial({ status: ServingStatus.SERVICE_UNKNOWN }));
          return;
        }
        this.#watchers.add(call);
        call.on('cancelled', () => this.#watchers.delete(call));
        call.write(HealthCheckResponse.fromPartial({ status: this.#status() }));
      },
    };
    this.#server.addService(HealthService, implementation);
  }

  #status(): ServingStatus {
    return this.#serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  /** Listen on "host:port" (port 0: any free one); resolves to the address bound. */
  listen(address: string): Promise<string> {
    const host = address.slice(0, address.lastIndexOf(':'));
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) =>
        error ? reject(error) : resolve(`${host}:${port}`),
      );
    });
  }

  /** Answer SERVING or NOT_SERVING from now on (watchers are told). */
  setServing(serving: boolean): void {
    if (serving === this.#serving) return;
    this.#serving = serving;
    for (const call of this.#watchers) call.write(HealthCheckResponse.fromPartial({ status: this.#status() }));
  }

  /** Stop serving, ending open watches. */
  close(): void {
    for (const call of this.#watchers) call.end();
    this.#watchers.clear();
    this.#server.forceShutdown();
  }
}
