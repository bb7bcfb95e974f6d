// What every facade (registry, bus, workflow) shares: where calls go, the metadata they carry (the
// bearer token) and where failures are logged.

import { Metadata } from '@grpc/grpc-js';

import { DEFAULT_CALL_TIMEOUT_MS, type Endpoint, type Endpoints, type Logger, type UnaryMethod, unaryCall } from './endpoints.js';

export class Context {
  constructor(
    readonly endpoints: Endpoints,
    readonly token: string | undefined,
    readonly logger: Logger,
    /** The deadline of every unary call that names none (each attempt gets its own). */
    readonly callTimeoutMs: number = DEFAULT_CALL_TIMEOUT_MS,
  ) {}

  /** Fresh metadata for one call (grpc-js may keep a reference to what it is given). */
  metadata(): Metadata {
    const metadata = new Metadata();
    if (this.token) metadata.set('authorization', `Bearer ${this.token}`);
    return metadata;
  }

  /** The same client pinned to one endpoint: no failover. */
  pinned(endpoint: Endpoint): Context {
    return new Context(this.endpoints.pinned(endpoint), this.token, this.logger, this.callTimeoutMs);
  }

  /**
   * A unary call on the current endpoint, with failover; `retry` when it is safe to repeat.
   * `pick` names the service client and its method: `(e) => [e.workflow, e.workflow.getProcess]`.
   * Each attempt has a deadline of `timeoutMs` (default `callTimeoutMs`).
   */
  unary<Req, Res>(
    pick: (endpoint: Endpoint) => [client: Parameters<typeof unaryCall>[0], method: UnaryMethod<Req, Res>],
    request: Req,
    retry = false,
    timeoutMs: number = this.callTimeoutMs,
  ): Promise<Res> {
    return this.endpoints.unary(
      (endpoint) => {
        const [client, method] = pick(endpoint);
        return unaryCall(client, method, request, this.metadata(), { deadlineMs: timeoutMs });
      },
      { retry },
    );
  }
}
