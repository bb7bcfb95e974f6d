import { type Metadata } from '@grpc/grpc-js';
import { BusApi } from './bus.js';
import { Endpoint, Endpoints, type Logger } from './endpoints.js';
import { RegistryApi } from './registry.js';
import { ScheduleApi } from './schedule.js';
import { WorkflowApi } from './workflow.js';
/** TLS: `true` trusts the system's CAs; or PEM contents (not paths) of a CA and, for mutual TLS, a client certificate and key. */
export type TlsOptions = true | {
    ca?: Buffer | string;
    cert?: Buffer | string;
    key?: Buffer | string;
};
export interface ConnectOptions {
    /** One "host:port", several as a list, or several in one comma-separated string. */
    addresses: string | readonly string[];
    /** Bearer token sent with every call. */
    token?: string;
    /** Plaintext when unset. */
    tls?: TlsOptions;
    /** How long a stream keeps trying the addresses in turn before it gives up (default 30 s). */
    failoverTimeoutMs?: number;
    /** The deadline of each unary call (default 30 s; a definition's apply gets 120 s). */
    callTimeoutMs?: number;
    /** How often a connection with calls open is pinged (default 20 s). */
    keepaliveTimeMs?: number;
    /** How long a ping may go unanswered before the connection counts as gone (default 10 s). */
    keepaliveTimeoutMs?: number;
    /** Where failovers and retries are logged (default: warnings to stderr). */
    logger?: Logger;
}
/** The Registry and Workflow calls of one replica, without failover: a Worker's session stays there. */
export interface Pinned {
    endpoint: Endpoint;
    registry: RegistryApi;
    workflow: WorkflowApi;
    metadata(): Metadata;
}
/**
 * A client of the control plane. Calls go to one address at a time and move to the next when its
 * replica goes away: calls safe to repeat are tried on every address in turn, streams resume there
 * for up to `failoverTimeoutMs`. Each unary call has a deadline (`callTimeoutMs`) and connections
 * with calls open are pinged (`keepaliveTimeMs`), so a hung replica cannot hold a call forever.
 * TLS and the token apply to every address. Channels connect on first use.
 */
export declare class Client {
    #private;
    readonly registry: RegistryApi;
    readonly bus: BusApi;
    readonly workflow: WorkflowApi;
    readonly schedules: ScheduleApi;
    readonly endpoints: Endpoints;
    constructor(options: ConnectOptions);
    /** The address in use now. */
    get address(): string;
    /** Every address, in the order they are tried. */
    get addresses(): string[];
    get logger(): Logger;
    /** Registry and Workflow calls that all go to `endpoint` and never fail over. */
    pinned(endpoint: Endpoint): Pinned;
    /** Wait until a control plane accepts a connection (the first ready one is used from then on). */
    waitReady({ timeoutMs }?: {
        timeoutMs?: number | undefined;
    }): Promise<void>;
    /** Close the channels; idempotent. */
    close(): void;
    [Symbol.dispose](): void;
}
/**
 * A client of the control plane at `addresses`:
 * `connect({ addresses: ['127.0.0.1:50051'], token, tls })`, or just the address(es).
 */
export declare function connect(options: ConnectOptions | string | readonly string[]): Client;
