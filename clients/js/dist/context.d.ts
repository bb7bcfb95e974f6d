import { Metadata } from '@grpc/grpc-js';
import { type Endpoint, type Endpoints, type Logger, type UnaryMethod, unaryCall } from './endpoints.js';
export declare class Context {
    readonly endpoints: Endpoints;
    readonly token: string | undefined;
    readonly logger: Logger;
    constructor(endpoints: Endpoints, token: string | undefined, logger: Logger);
    /** Fresh metadata for one call (grpc-js may keep a reference to what it is given). */
    metadata(): Metadata;
    /** The same client pinned to one endpoint: no failover. */
    pinned(endpoint: Endpoint): Context;
    /**
     * A unary call on the current endpoint, with failover; `retry` when it is safe to repeat.
     * `pick` names the service client and its method: `(e) => [e.workflow, e.workflow.getProcess]`.
     */
    unary<Req, Res>(pick: (endpoint: Endpoint) => [client: Parameters<typeof unaryCall>[0], method: UnaryMethod<Req, Res>], request: Req, retry?: boolean): Promise<Res>;
}
