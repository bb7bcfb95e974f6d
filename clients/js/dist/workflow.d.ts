import type { Context } from './context.js';
import type { BusMessage } from './gen/hms/mgmt/v1/bus.js';
import { type CompleteTaskResponse, type Definition, type Failure, type FailTaskResponse, type HistoryEvent, type Incident, IncidentFilter, type Process, ProcessState, type RegisterDefinitionResponse, type SignalProcessResponse, type WatchProcessResponse } from './gen/hms/mgmt/v1/workflow.js';
import { type JsonObject } from './payload.js';
/** The states a process never leaves. */
export declare const FINAL_STATES: ReadonlySet<ProcessState>;
/** Where a process stands, without its steps (`get` has them). */
export interface ProcessStatus {
    id: string;
    definition: string;
    definitionVersion: number;
    businessKey: string;
    state: ProcessState;
    /** Whether `state` is final (COMPLETED, FAILED, COMPENSATED, CANCELLED). */
    final: boolean;
    /** Steps running, scheduled, retrying or waiting now. */
    currentStepIds: string[];
    /** Set once COMPLETED. */
    output: JsonObject | undefined;
    /** Why it failed (or what triggered compensation). */
    error: Failure | undefined;
    cancelReason: string;
    updatedAt: Date | undefined;
}
export interface StartOptions {
    /** Unique per definition: a start with a key that already has a process returns that process. */
    businessKey?: string;
    /** Definition version; the latest when unset. */
    version?: number;
}
export interface ProcessWatchOptions {
    /** Resume: only events with a greater sequence. */
    afterSequence?: number;
    /** Ends the watch; the iteration then rejects with the signal's reason. */
    signal?: AbortSignal;
}
export interface ListOptions {
    definition?: string;
    states?: ProcessState[];
    businessKey?: string;
    includeDetails?: boolean;
    pageSize?: number;
    /** Only the processes started by this process's call steps (its children). */
    parentProcessId?: string;
    /** Only processes whose business key starts with this. */
    businessKeyPrefix?: string;
    /** Only processes with this step running, scheduled, retrying, waiting or in INCIDENT now. */
    currentStepId?: string;
    /** Only processes with (INCIDENT_FILTER_WITH) or without (INCIDENT_FILTER_WITHOUT) a step in INCIDENT. */
    incidents?: IncidentFilter;
    /** Only processes whose declared search attributes have these values (all of them). */
    searchAttributes?: Record<string, string>;
    startedAfter?: Date;
    startedBefore?: Date;
    endedAfter?: Date;
    endedBefore?: Date;
}
export interface IncidentOptions {
    definition?: string;
    processId?: string;
    /** Resolved incidents too (by default only open ones). */
    includeResolved?: boolean;
    pageSize?: number;
}
/** Workflow calls; answers are the wire messages of hms.mgmt.v1 as plain objects. */
export declare class WorkflowApi {
    #private;
    constructor(ctx: Context);
    /** Register a definition (YAML or JSON); a changed one becomes a new version. */
    apply(source: string, { validateOnly }?: {
        validateOnly?: boolean | undefined;
    }): Promise<RegisterDefinitionResponse>;
    /** A stored definition version (the latest when `version` is 0), with its source and spec. */
    definition(name: string, version?: number): Promise<Definition>;
    /** Stored definitions (the latest version of each, or every version), without source, every page. */
    definitions({ name, allVersions }?: {
        name?: string | undefined;
        allVersions?: boolean | undefined;
    }): Promise<Definition[]>;
    /**
     * Start a process of `definition` with `input` (a plain object); resolves to its id. With a
     * `businessKey` an existing process for that key is returned instead, and the call is retried on
     * the next replica (without one each try could start a process, so it is not).
     */
    start(definition: string, input?: object, options?: StartOptions): Promise<string>;
    /** A process with its steps, outputs, attempts and errors. */
    get(processId: string): Promise<Process>;
    /** Where a process stands: its state, current steps, output or error. */
    status(processId: string): Promise<ProcessStatus>;
    /** The newest processes matching the filters (one page). */
    list(options?: ListOptions): Promise<Process[]>;
    /** The newest incidents (one page): open ones, unless `includeResolved`. */
    incidents(options?: IncidentOptions): Promise<Incident[]>;
    /**
     * A fresh set of attempts for a step in INCIDENT (with `input` instead of its mapping, if given).
     * Operator actions are not retried on another replica: a repeat would find the step no longer in
     * INCIDENT and answer FAILED_PRECONDITION.
     */
    retryStep(processId: string, stepId: string, reason: string, { input }?: {
        input?: object;
    }): Promise<Process>;
    /** A step in INCIDENT counts as completed with `output`; the steps after it enter. */
    skipStep(processId: string, stepId: string, reason: string, { output }?: {
        output?: object;
    }): Promise<Process>;
    /** Give up on a process's incidents: it compensates its completed steps, or fails. */
    failProcess(processId: string, reason: string): Promise<Process>;
    /** Resume a FAILED process from its failed step(s). */
    retryProcess(processId: string, reason: string): Promise<Process>;
    /** The whole history of a process, every page. */
    history(processId: string): Promise<HistoryEvent[]>;
    /**
     * The process and its history so far, then live events until it ends (the last frame carries the
     * final process). With several addresses a watch whose replica goes away resumes on the next one
     * after the last event seen; its first frame there carries the process again.
     */
    watch(processId: string, options?: ProcessWatchOptions): AsyncGenerator<WatchProcessResponse, void, undefined>;
    /** Wait until the process ends; resolves to it. `signal` gives up (rejects with its reason). */
    wait(processId: string, { signal }?: {
        signal?: AbortSignal;
    }): Promise<Process>;
    /**
     * Send a signal (buffered until a wait_signal step of that name takes it). Retried on the next
     * replica only with a `signalId`, which the control plane deduplicates.
     */
    signal(processId: string, name: string, payload?: object, { signalId }?: {
        signalId?: string | undefined;
    }): Promise<SignalProcessResponse>;
    /** Cancel a process, compensating its completed steps first when asked. */
    cancel(processId: string, { reason, compensate }?: {
        reason?: string | undefined;
        compensate?: boolean | undefined;
    }): Promise<Process>;
    /** Report a task attempt completed (retried: a repeat answers ALREADY_REPORTED and changes nothing). */
    complete(taskToken: string, output?: object, { outbox }?: {
        outbox?: Partial<BusMessage>[];
    }): Promise<CompleteTaskResponse>;
    /** Report a task attempt failed (retried: a repeat answers ALREADY_REPORTED and changes nothing). */
    fail(taskToken: string, errorCode: string, message?: string, { nonRetryable, details }?: {
        nonRetryable?: boolean;
        details?: object;
    }): Promise<FailTaskResponse>;
}
