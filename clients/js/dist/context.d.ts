import { Metadata } from '@grpc/grpc-js';
import { type Endpoint, type Endpoints, type Logger, type UnaryMethod, unaryCall } from './endpoints.js';
export declare class Context {
    readonly endpoints: Endpoints;
    readonly token: string | undefined;
    readonly logger: Logger;
    /** The deadline of every unary call that names none (each attempt gets its own). */
    readonly callTimeoutMs: number;
    constructor(endpoints: Endpoints, token: string | undefined, logger: Logger, 
    /** The deadline of every unary call that names none (each attempt gets its own). */
    callTimeoutMs?: number);
    /** Fresh metadata for one call (grpc-js may keep a reference to what it is given). */
    metadata(): Metadata;
    /** The same client pinned to one endpoint: no failover. */
    pinned(endpoint: Endpoint): Context;
    /**
     * A unary call on the current endpoint, with failover; `retry` when it is safe to repeat.
     * `pick` names the service client and its method: `(e) => [e.workflow, e.workflow.getProcess]`.
     * Each attempt has a deadline of `timeoutMs` (default `callTimeoutMs`).
     */
    unary<Req, Res>(pick: (endpoint: Endpoint) => [client: Parameters<typeof unaryCall>[0], method: UnaryMethod<Req, Res>], request: Req, retry?: boolean, timeoutMs?: number): Promise<Res>;
}
