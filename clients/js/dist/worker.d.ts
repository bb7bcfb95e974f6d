import { EventEmitter } from 'node:events';
import { Client, type ConnectOptions } from './client.js';
import { type Logger } from './endpoints.js';
import { TaskCancelReason } from './gen/hms/mgmt/v1/workflow.js';
import { type JsonObject } from './payload.js';
import type { ProbeOptions } from './registry.js';
/** Throw from a handler to fail the attempt with a code (and, non-retryable, the step for good). */
export declare class TaskFailure extends Error {
    readonly code: string;
    readonly nonRetryable: boolean;
    readonly details: object | undefined;
    constructor(code: string, message?: string, { nonRetryable, details }?: {
        nonRetryable?: boolean;
        details?: object;
    });
}
/** The reason of a task's AbortSignal when the control plane cancels the attempt. */
export declare class TaskCancelled extends Error {
    readonly reason: TaskCancelReason;
    constructor(reason: TaskCancelReason, message: string);
}
/** What a handler knows about the attempt it runs, and how it tells the control plane it is alive. */
export interface Task {
    readonly token: string;
    readonly processId: string;
    readonly definition: string;
    readonly definitionVersion: number;
    readonly stepId: string;
    readonly taskType: string;
    /** 1-based. */
    readonly attempt: number;
    readonly businessKey: string;
    /** True for a compensate task (undoing `stepId`). */
    readonly compensation: boolean;
    readonly input: JsonObject;
    /** Progress a previous attempt reported with `heartbeat`, if any. */
    readonly heartbeatDetails: JsonObject | undefined;
    /** A completion after this is stale. */
    readonly deadline: Date | undefined;
    /** Longest allowed gap between heartbeats, when the step asks for them. */
    readonly heartbeatTimeoutMs: number | undefined;
    /**
     * W3C `traceparent` of the control plane's span of this attempt ('' when it does not trace): make it
     * the parent of the handler's spans, e.g. `propagation.extract(context.active(), { traceparent, tracestate })`
     * with @opentelemetry/api, so the worker's spans join the process's trace.
     */
    readonly traceparent: string;
    /** W3C `tracestate` to go with `traceparent` ('' for none). */
    readonly tracestate: string;
    /** Aborted (with a TaskCancelled reason) when the control plane no longer wants the attempt, or when a drain runs out. */
    readonly signal: AbortSignal;
    /** Push the attempt's heartbeat deadline, optionally with progress details for a later attempt. */
    heartbeat(details?: object): Promise<void>;
}
/** Runs one task attempt: resolves to its output (a plain object), or throws (TaskFailure for a coded failure). */
export type Handler = (task: Task) => Promise<object | void> | object | void;
export interface WorkerOptions {
    service: string;
    /** Task type -> handler. */
    handlers: Record<string, Handler>;
    /** A client to use; or give the connection options (`addresses`, `token`, `tls`, ...) and the Worker makes one. */
    client?: Client;
    addresses?: ConnectOptions['addresses'];
    token?: string;
    tls?: ConnectOptions['tls'];
    failoverTimeoutMs?: number;
    /** The client's unary deadline and keepalive settings (see ConnectOptions). */
    callTimeoutMs?: number;
    keepaliveTimeMs?: number;
    keepaliveTimeoutMs?: number;
    logger?: Logger;
    version?: string;
    /** Default: `<service>-<random>`; kept across sessions and replicas. */
    instanceId?: string;
    /** Most tasks held at once: the credit the control plane respects (default 16). */
    maxInFlight?: number;
    tags?: readonly string[];
    metadata?: Record<string, string>;
    /**
     * Serve grpc.health.v1 on `listen` (default "127.0.0.1:0") and register that address with a
     * probe (`probe`, or the control plane's defaults).
     */
    health?: boolean | {
        listen?: string;
    };
    /** How the control plane probes the instance; with `address` when you serve health yourself. */
    probe?: ProbeOptions;
    /** The address registered; default the health server's, else "127.0.0.1:1" (nothing to call). */
    address?: string;
    /** Lease time to live (default 10 s), renewed every third of it. */
    ttlMs?: number;
    /** How long `stop` lets running handlers finish and report (default 30 s); the rest are aborted. */
    drainTimeoutMs?: number;
    /** Signals that stop (drain) the Worker while it runs; default SIGTERM and SIGINT, [] for none. */
    stopSignals?: readonly NodeJS.Signals[];
}
/**
 * Registers a service instance, keeps its lease, takes its tasks and runs the handlers; `run()` until
 * `stop()` (or SIGTERM/SIGINT). Emits 'ready' (the address of the replica) each time a session is
 * subscribed; `ready` resolves the first time.
 */
export declare class Worker extends EventEmitter {
    #private;
    readonly service: string;
    readonly instanceId: string;
    readonly client: Client;
    /** Resolves once the first session is subscribed and takes tasks. */
    readonly ready: Promise<void>;
    constructor(options: WorkerOptions);
    /** Ask `run` to drain and return; idempotent. */
    stop(): void;
    /**
     * Serve until `stop`: register, subscribe, run handlers; start over on the next replica (or after a
     * backoff) when a session ends. Resolves once drained and deregistered.
     */
    run(): Promise<void>;
}
