// connect(): channels to one or more control-plane replicas, with the registry, bus and workflow facades.
import { credentials as grpcCredentials } from '@grpc/grpc-js';
import { BusApi } from './bus.js';
import { Context } from './context.js';
import { DEFAULT_CALL_TIMEOUT_MS, defaultLogger, Endpoint, Endpoints, KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS, parseAddresses, } from './endpoints.js';
import { RegistryApi } from './registry.js';
import { ScheduleApi } from './schedule.js';
import { WorkflowApi } from './workflow.js';
function channelCredentials(tls) {
    if (!tls)
        return grpcCredentials.createInsecure();
    if (tls === true)
        return grpcCredentials.createSsl();
    const pem = (value) => (value === undefined ? null : Buffer.from(value));
    return grpcCredentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}
/**
 * A client of the control plane. Calls go to one address at a time and move to the next when its
 * replica goes away: calls safe to repeat are tried on every address in turn, streams resume there
 * for up to `failoverTimeoutMs`. Each unary call has a deadline (`callTimeoutMs`) and connections
 * with calls open are pinged (`keepaliveTimeMs`), so a hung replica cannot hold a call forever.
 * TLS and the token apply to every address. Channels connect on first use.
 */
export class Client {
    registry;
    bus;
    workflow;
    schedules;
    endpoints;
    #ctx;
    #closed = false;
    constructor(options) {
        const credentials = channelCredentials(options.tls);
        const logger = options.logger ?? defaultLogger;
        const keepalive = {
            timeMs: options.keepaliveTimeMs ?? KEEPALIVE_TIME_MS,
            timeoutMs: options.keepaliveTimeoutMs ?? KEEPALIVE_TIMEOUT_MS,
        };
        const endpoints = parseAddresses(options.addresses).map((address) => new Endpoint(address, credentials, keepalive));
        this.endpoints = new Endpoints(endpoints, options.failoverTimeoutMs ?? 30_000, logger);
        this.#ctx = new Context(this.endpoints, options.token, logger, options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
        this.registry = new RegistryApi(this.#ctx);
        this.bus = new BusApi(this.#ctx);
        this.workflow = new WorkflowApi(this.#ctx);
        this.schedules = new ScheduleApi(this.#ctx);
    }
    /** The address in use now. */
    get address() {
        return this.endpoints.current.address;
    }
    /** Every address, in the order they are tried. */
    get addresses() {
        return this.endpoints.all.map((e) => e.address);
    }
    get logger() {
        return this.#ctx.logger;
    }
    /** Registry and Workflow calls that all go to `endpoint` and never fail over. */
    pinned(endpoint) {
        const ctx = this.#ctx.pinned(endpoint);
        return { endpoint, registry: new RegistryApi(ctx), workflow: new WorkflowApi(ctx), metadata: () => ctx.metadata() };
    }
    /** Wait until a control plane accepts a connection (the first ready one is used from then on). */
    async waitReady({ timeoutMs = 10_000 } = {}) {
        const deadline = Date.now() + timeoutMs;
        const ready = this.endpoints.all.map((endpoint) => new Promise((resolve, reject) => endpoint.registry.waitForReady(deadline, (error) => (error ? reject(error) : resolve(endpoint)))));
        try {
            this.endpoints.use(await Promise.any(ready));
        }
        catch {
            throw new Error(`no control plane ready at ${this.addresses.join(', ')} within ${timeoutMs} ms`);
        }
    }
    /** Close the channels; idempotent. */
    close() {
        if (this.#closed)
            return;
        this.#closed = true;
        this.endpoints.close();
    }
    [Symbol.dispose]() {
        this.close();
    }
}
/**
 * A client of the control plane at `addresses`:
 * `connect({ addresses: ['127.0.0.1:50051'], token, tls })`, or just the address(es).
 */
export function connect(options) {
    return new Client(typeof options === 'string' || Array.isArray(options) ? { addresses: options } : options);
}
