// What every facade (registry, bus, workflow) shares: where calls go, the metadata they carry (the
// bearer token) and where failures are logged.
import { Metadata } from '@grpc/grpc-js';
import { DEFAULT_CALL_TIMEOUT_MS, unaryCall } from './endpoints.js';
export class Context {
    endpoints;
    token;
    logger;
    callTimeoutMs;
    constructor(endpoints, token, logger, 
    /** The deadline of every unary call that names none (each attempt gets its own). */
    callTimeoutMs = DEFAULT_CALL_TIMEOUT_MS) {
        this.endpoints = endpoints;
        this.token = token;
        this.logger = logger;
        this.callTimeoutMs = callTimeoutMs;
    }
    /** Fresh metadata for one call (grpc-js may keep a reference to what it is given). */
    metadata() {
        const metadata = new Metadata();
        if (this.token)
            metadata.set('authorization', `Bearer ${this.token}`);
        return metadata;
    }
    /** The same client pinned to one endpoint: no failover. */
    pinned(endpoint) {
        return new Context(this.endpoints.pinned(endpoint), this.token, this.logger, this.callTimeoutMs);
    }
    /**
     * A unary call on the current endpoint, with failover; `retry` when it is safe to repeat.
     * `pick` names the service client and its method: `(e) => [e.workflow, e.workflow.getProcess]`.
     * Each attempt has a deadline of `timeoutMs` (default `callTimeoutMs`).
     */
    unary(pick, request, retry = false, timeoutMs = this.callTimeoutMs) {
        return this.endpoints.unary((endpoint) => {
            const [client, method] = pick(endpoint);
            return unaryCall(client, method, request, this.metadata(), { deadlineMs: timeoutMs });
        }, { retry });
    }
}
