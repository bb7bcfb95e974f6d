import { type CallOptions, type ChannelCredentials, type Client, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { Unavailable } from './errors.js';
import { BusClient } from './gen/hms/mgmt/v1/bus.js';
import { RegistryClient } from './gen/hms/mgmt/v1/registry.js';
import { ScheduleClient } from './gen/hms/mgmt/v1/schedule.js';
import { WorkflowClient } from './gen/hms/mgmt/v1/workflow.js';
export declare const DEFAULT_CALL_TIMEOUT_MS = 30000;
export declare const KEEPALIVE_TIME_MS = 20000;
export declare const KEEPALIVE_TIMEOUT_MS = 10000;
/** How often a connection with calls open is pinged, and how long an answer may take. */
export interface Keepalive {
    timeMs: number;
    timeoutMs: number;
}
/** The SDK's channel options with its keepalive settings. */
export declare function channelOptions({ timeMs, timeoutMs }: Keepalive): Partial<ClientOptions>;
/** Where the SDK reports what it does about failures; `connect({logger})` replaces it. */
export interface Logger {
    warn(message: string): void;
    info(message: string): void;
}
/** Warnings to stderr (as Python's logging does without configuration), nothing else. */
export declare const defaultLogger: Logger;
/** "host:port" strings, in order and without repeats, from a list or comma-separated text. */
export declare function parseAddresses(addresses: string | readonly string[]): string[];
/** One control-plane address with one channel and the service clients on it. */
export declare class Endpoint {
    readonly address: string;
    readonly registry: RegistryClient;
    readonly bus: BusClient;
    readonly workflow: WorkflowClient;
    readonly schedule: ScheduleClient;
    constructor(address: string, credentials: ChannelCredentials, keepalive?: Keepalive);
    /** Close the channel, ending the calls still open on it. */
    close(): void;
    toString(): string;
}
/** The addresses of one client, in order, and the one in use. */
export declare class Endpoints {
    #private;
    readonly failoverTimeoutMs: number;
    readonly logger: Logger;
    readonly all: readonly Endpoint[];
    constructor(endpoints: readonly Endpoint[], failoverTimeoutMs: number, logger: Logger);
    /** The endpoint calls go to now. */
    get current(): Endpoint;
    /** Whether there is another address to fail over to. */
    get many(): boolean;
    /** A view of one endpoint that never fails over: what a Worker's session uses. */
    pinned(endpoint: Endpoint): Endpoints;
    /** Send calls to `endpoint` from now on (it was found ready). */
    use(endpoint: Endpoint): void;
    /** Whether `err` means the replica went away and another address may answer. */
    mayFailOver(err: unknown): boolean;
    /**
     * Move off `failed` to the next address, unless an earlier failure did already; returns the one in
     * use. Only the call that moves logs, so each failover is logged once however many calls saw it.
     */
    failOver(failed: Endpoint, reason: unknown): Endpoint;
    /** How long to wait before using the current address: nothing until every address failed in a row. */
    backoffMs(): number;
    /** A call got an answer: the next failure starts a fresh round without backoff. */
    succeeded(): void;
    /**
     * `send` on the current endpoint; if its replica is gone, move on and, when `retry` (the call is
     * safe to repeat), send again on the next one, until every address has been tried once. Failures
     * reject with the typed error they stand for.
     */
    unary<T>(send: (endpoint: Endpoint) => Promise<T>, { retry }?: {
        retry?: boolean | undefined;
    }): Promise<T>;
    /** Close every channel. */
    close(): void;
}
type Callback<Res> = (error: ServiceError | null, response: Res) => void;
/** A generated unary method, in its (request, metadata, options, callback) form. */
export type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: Callback<Res>) => ClientUnaryCall;
/**
 * One unary call of `client` as a promise; the raw grpc-js error on failure (callers type it).
 * `signal` cancels it; `deadlineMs` gives it a deadline (DEADLINE_EXCEEDED past it).
 */
export declare function unaryCall<Req, Res>(client: Client, method: UnaryMethod<Req, Res>, request: Req, metadata: Metadata, { signal, deadlineMs }?: {
    signal?: AbortSignal;
    deadlineMs?: number;
}): Promise<Res>;
/** Resolve after `ms`, or at once when `signal` aborts (never rejects). */
export declare function pause(ms: number, signal?: AbortSignal): Promise<void>;
/** An UNAVAILABLE error made by the SDK (a stream that ended while its replica went away). */
export declare function unavailable(details: string): Unavailable;
export interface ResumeOptions<T> {
    /** Make the call on an endpoint, its request built from where the owner got to (a revision, a sequence). */
    open(endpoint: Endpoint): ClientReadableStream<T>;
    /** Whether the stream may resume elsewhere now (default: always). */
    resumable?: () => boolean;
    /** Whether a clean end of the stream means its replica went away (default: never). */
    endedEarly?: () => boolean;
    /** Ends the stream: the iteration returns. */
    signal?: AbortSignal | undefined;
}
/**
 * The frames of a server stream that reopens on the next address when its replica goes away. It
 * keeps trying the addresses in turn for up to `failoverTimeoutMs`, then rejects; when the stream
 * may not resume (or there is one address) the first failure rejects, as from a plain call.
 */
export declare function resumable<T>(endpoints: Endpoints, options: ResumeOptions<T>): AsyncGenerator<T, void, undefined>;
export {};
