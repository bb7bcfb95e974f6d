import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientUnaryCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Duration } from "../../../google/protobuf/duration.js";
export declare const protobufPackage = "hms.mgmt.v1";
export declare const protobufFileName = "hms/mgmt/v1/schedule.proto";
/**
 * Schedule: processes started on a calendar (cron in a time zone) or at a fixed interval.
 *
 * A schedule names a workflow definition (and optionally a version) and the input of each start.
 * Its spec produces nominal times: the times it is meant to fire, before jitter. Each start's
 * business key is "schedule:<schedule id>:<nominal time>", the nominal time in RFC 3339 UTC with
 * seconds (e.g. "schedule:nightly-reminders:2026-12-01T01:00:00Z"); StartProcess returns the
 * existing process for a business key, so a nominal time starts at most one process, whichever
 * replica fires it and however often it is retried after a crash. A start asked for by
 * TriggerSchedule uses "schedule:<schedule id>:trigger:<request id>" instead.
 *
 * Only the replica that leads (see the README, "Replicas") fires schedules; the others serve these
 * RPCs and the leader picks up their changes within a second. A schedule fires exactly once per
 * nominal time across restarts and failovers: the time of the last nominal time handled is stored
 * after its process is started, and a nominal time handled again finds the process its business
 * key already started.
 *
 * Overlap: the previous start of a schedule "overlaps" a new nominal time when the process it
 * started has not ended (COMPLETED, FAILED, COMPENSATED or CANCELLED) by then.
 *
 * Downtime: nominal times missed while no replica ran (or while the leader was failing over) are
 * started late when they are at most catchup_window old, in order and subject to the overlap
 * policy; older ones are skipped. Nominal times that pass while a schedule is paused are skipped.
 */
/** What to do with a nominal time whose previous start is still running. */
export declare enum OverlapPolicy {
    /** OVERLAP_POLICY_UNSPECIFIED - Never sent; a request leaving it unset gets OVERLAP_POLICY_SKIP. */
    OVERLAP_POLICY_UNSPECIFIED = "OVERLAP_POLICY_UNSPECIFIED",
    /** OVERLAP_POLICY_SKIP - Skip the nominal time (counted in skipped_overlaps). */
    OVERLAP_POLICY_SKIP = "OVERLAP_POLICY_SKIP",
    /**
     * OVERLAP_POLICY_BUFFER_ONE - Keep one start for when the running process ends (its nominal time in the business key);
     * further nominal times while one is buffered are skipped.
     */
    OVERLAP_POLICY_BUFFER_ONE = "OVERLAP_POLICY_BUFFER_ONE",
    /** OVERLAP_POLICY_ALLOW_ALL - Start anyway: processes of the schedule may run side by side. */
    OVERLAP_POLICY_ALLOW_ALL = "OVERLAP_POLICY_ALLOW_ALL",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function overlapPolicyFromJSON(object: any): OverlapPolicy;
export declare function overlapPolicyToJSON(object: OverlapPolicy): string;
export declare function overlapPolicyToNumber(object: OverlapPolicy): number;
/** What became of a trigger. */
export declare enum TriggerOutcome {
    /** TRIGGER_OUTCOME_UNSPECIFIED - Never sent. */
    TRIGGER_OUTCOME_UNSPECIFIED = "TRIGGER_OUTCOME_UNSPECIFIED",
    /** TRIGGER_OUTCOME_STARTED - A process was started (or, for a repeated request id, had been). */
    TRIGGER_OUTCOME_STARTED = "TRIGGER_OUTCOME_STARTED",
    /** TRIGGER_OUTCOME_SKIPPED - SKIP policy and the previous start still runs: nothing was started. */
    TRIGGER_OUTCOME_SKIPPED = "TRIGGER_OUTCOME_SKIPPED",
    /** TRIGGER_OUTCOME_BUFFERED - BUFFER_ONE policy and the previous start still runs: a start is buffered for when it ends. */
    TRIGGER_OUTCOME_BUFFERED = "TRIGGER_OUTCOME_BUFFERED",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function triggerOutcomeFromJSON(object: any): TriggerOutcome;
export declare function triggerOutcomeToJSON(object: TriggerOutcome): string;
export declare function triggerOutcomeToNumber(object: TriggerOutcome): number;
/** When a schedule fires: exactly one of cron or interval. */
export interface ScheduleSpec {
    /**
     * A cron expression of five fields (minute hour day-of-month month day-of-week), as in
     * crontab(5), including ranges, steps, names (JAN, MON), L and #; e.g. "0 1 * * *" for 01:00
     * every day. Evaluated in time_zone, across daylight-saving changes as Debian's cron does: a
     * time that the clocks skip that day fires right after they moved forward, a time that happens
     * twice fires once.
     */
    cron: string;
    /** An IANA time zone for cron, e.g. "Europe/Berlin"; empty means UTC. */
    timeZone: string;
    /**
     * Fire every interval instead (at least 1 s; whole milliseconds), at times aligned on
     * start_time when set, else on the Unix epoch (plus phase).
     */
    interval: Duration | undefined;
    /** Offset of the interval's times from their alignment, less than interval. */
    phase: Duration | undefined;
    /**
     * Delay each start by a random amount in [0, jitter), the same for a nominal time on every
     * replica; the business key keeps the nominal time. At most 1 day.
     */
    jitter: Duration | undefined;
    /** No nominal time before this one; unset: from creation on. */
    startTime: Date | undefined;
    /** No nominal time after this one; unset: no end. */
    endTime: Date | undefined;
}
/** What a schedule starts. */
export interface ScheduleAction {
    /** Definition name. */
    definition: string;
    /** Definition version; 0 means the latest at each start. */
    version: number;
    /** Process input of every start, checked against the definition's input schema when created. */
    input: {
        [key: string]: any;
    } | undefined;
}
/** A schedule with its state. */
export interface ScheduleInfo {
    /** Schedule id: 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit. */
    id: string;
    /** When it fires. */
    spec: ScheduleSpec | undefined;
    /** What it starts. */
    action: ScheduleAction | undefined;
    /** Overlap policy (never UNSPECIFIED). */
    overlap: OverlapPolicy;
    /** How old a missed nominal time may be and still start late. */
    catchupWindow: Duration | undefined;
    /** Whether it is paused. */
    paused: boolean;
    /** The note of the last pause or unpause. */
    note: string;
    /** The next nominal time it fires at (unset when the schedule has ended). */
    nextNominalTime: Date | undefined;
    /** The nominal time waiting for the previous start to end (BUFFER_ONE); unset when none. */
    bufferedNominalTime: Date | undefined;
    /** The process of the last start, if any. */
    lastProcessId: string;
    /** The nominal time of the last start (a trigger's is its time), if any. */
    lastNominalTime: Date | undefined;
    /** Processes started by the schedule (triggers included). */
    started: number;
    /** Nominal times skipped because the previous start was still running. */
    skippedOverlaps: number;
    /** Nominal times skipped because they were older than catchup_window when handled. */
    missedCatchup: number;
    /** When it was created. */
    createdAt: Date | undefined;
    /**
     * Why the last start failed (the definition was deleted, the input no longer fits a new
     * version's schema, ...): that nominal time was given up. Empty after a start that worked.
     */
    lastError: string;
}
/** Request of CreateSchedule. */
export interface CreateScheduleRequest {
    /** Schedule id (see ScheduleInfo.id), unique. */
    id: string;
    /** When it fires. */
    spec: ScheduleSpec | undefined;
    /** What it starts. */
    action: ScheduleAction | undefined;
    /** Overlap policy; unset means SKIP. */
    overlap: OverlapPolicy;
    /**
     * How old a missed nominal time may be and still start; unset means 1 minute, 0 s is not
     * allowed (use 1 s to start nothing late). At most 365 days.
     */
    catchupWindow: Duration | undefined;
    /** Create it paused. */
    paused: boolean;
    /** A note kept with it (e.g. who asked for it, and why), at most 1,000 characters. */
    note: string;
}
/** Response of CreateSchedule. */
export interface CreateScheduleResponse {
    /** The schedule as stored. */
    schedule: ScheduleInfo | undefined;
}
/** Request of GetSchedule. */
export interface GetScheduleRequest {
    /** Schedule id. */
    id: string;
}
/** Response of GetSchedule. */
export interface GetScheduleResponse {
    /** The schedule with its state. */
    schedule: ScheduleInfo | undefined;
}
/** Request of ListSchedules. */
export interface ListSchedulesRequest {
    /** Most schedules per page. Default 50; allowed 1..1,000. */
    pageSize: number;
    /** next_page_token of the previous page; empty for the first page. */
    pageToken: string;
}
/** Response of ListSchedules. */
export interface ListSchedulesResponse {
    /** Schedules by id. */
    schedules: ScheduleInfo[];
    /** Token for the next page; empty on the last page. */
    nextPageToken: string;
}
/** Request of PauseSchedule. */
export interface PauseScheduleRequest {
    /** Schedule id. */
    id: string;
    /** Why, at most 1,000 characters (kept as the schedule's note). */
    note: string;
}
/** Response of PauseSchedule. */
export interface PauseScheduleResponse {
    /** The schedule after the change. */
    schedule: ScheduleInfo | undefined;
}
/** Request of UnpauseSchedule. */
export interface UnpauseScheduleRequest {
    /** Schedule id. */
    id: string;
    /** Why, at most 1,000 characters (kept as the schedule's note). */
    note: string;
}
/** Response of UnpauseSchedule. */
export interface UnpauseScheduleResponse {
    /** The schedule after the change. */
    schedule: ScheduleInfo | undefined;
}
/** Request of TriggerSchedule. */
export interface TriggerScheduleRequest {
    /** Schedule id. */
    id: string;
    /**
     * Optional, up to 64 characters of [A-Za-z0-9._-]: the business key's last part, so that a
     * trigger retried with the same id starts nothing more. Empty: a new id per request.
     */
    requestId: string;
}
/** Response of TriggerSchedule. */
export interface TriggerScheduleResponse {
    /** What happened. */
    outcome: TriggerOutcome;
    /** The process started (STARTED only). */
    processId: string;
    /** The schedule after the trigger. */
    schedule: ScheduleInfo | undefined;
}
/** Request of DeleteSchedule. */
export interface DeleteScheduleRequest {
    /** Schedule id. */
    id: string;
}
/** Response of DeleteSchedule. */
export interface DeleteScheduleResponse {
}
export declare const ScheduleSpec: MessageFns<ScheduleSpec>;
export declare const ScheduleAction: MessageFns<ScheduleAction>;
export declare const ScheduleInfo: MessageFns<ScheduleInfo>;
export declare const CreateScheduleRequest: MessageFns<CreateScheduleRequest>;
export declare const CreateScheduleResponse: MessageFns<CreateScheduleResponse>;
export declare const GetScheduleRequest: MessageFns<GetScheduleRequest>;
export declare const GetScheduleResponse: MessageFns<GetScheduleResponse>;
export declare const ListSchedulesRequest: MessageFns<ListSchedulesRequest>;
export declare const ListSchedulesResponse: MessageFns<ListSchedulesResponse>;
export declare const PauseScheduleRequest: MessageFns<PauseScheduleRequest>;
export declare const PauseScheduleResponse: MessageFns<PauseScheduleResponse>;
export declare const UnpauseScheduleRequest: MessageFns<UnpauseScheduleRequest>;
export declare const UnpauseScheduleResponse: MessageFns<UnpauseScheduleResponse>;
export declare const TriggerScheduleRequest: MessageFns<TriggerScheduleRequest>;
export declare const TriggerScheduleResponse: MessageFns<TriggerScheduleResponse>;
export declare const DeleteScheduleRequest: MessageFns<DeleteScheduleRequest>;
export declare const DeleteScheduleResponse: MessageFns<DeleteScheduleResponse>;
/** Schedules that start workflow processes. */
export type ScheduleService = typeof ScheduleService;
export declare const ScheduleService: {
    /**
     * Create a schedule. ALREADY_EXISTS if one with the id exists; NOT_FOUND if the definition (or
     * version) does not; INVALID_ARGUMENT naming the field for a bad spec (e.g. "spec.cron").
     */
    readonly createSchedule: {
        readonly path: "/hms.mgmt.v1.Schedule/CreateSchedule";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: CreateScheduleRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => CreateScheduleRequest;
        readonly responseSerialize: (value: CreateScheduleResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => CreateScheduleResponse;
    };
    /** One schedule with its state (next nominal time, last start, counters). NOT_FOUND if none. */
    readonly getSchedule: {
        readonly path: "/hms.mgmt.v1.Schedule/GetSchedule";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetScheduleRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetScheduleRequest;
        readonly responseSerialize: (value: GetScheduleResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetScheduleResponse;
    };
    /** Every schedule, by id, paged. */
    readonly listSchedules: {
        readonly path: "/hms.mgmt.v1.Schedule/ListSchedules";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListSchedulesRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListSchedulesRequest;
        readonly responseSerialize: (value: ListSchedulesResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListSchedulesResponse;
    };
    /**
     * Stop firing: nominal times that pass while paused are skipped. Pausing a paused schedule
     * changes only its note.
     */
    readonly pauseSchedule: {
        readonly path: "/hms.mgmt.v1.Schedule/PauseSchedule";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: PauseScheduleRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PauseScheduleRequest;
        readonly responseSerialize: (value: PauseScheduleResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PauseScheduleResponse;
    };
    /** Fire again, from the first nominal time after now. */
    readonly unpauseSchedule: {
        readonly path: "/hms.mgmt.v1.Schedule/UnpauseSchedule";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: UnpauseScheduleRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => UnpauseScheduleRequest;
        readonly responseSerialize: (value: UnpauseScheduleResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => UnpauseScheduleResponse;
    };
    /**
     * Start a process now (paused or not), subject to the overlap policy; a request id makes a
     * repeated trigger return the process of the first.
     */
    readonly triggerSchedule: {
        readonly path: "/hms.mgmt.v1.Schedule/TriggerSchedule";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: TriggerScheduleRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => TriggerScheduleRequest;
        readonly responseSerialize: (value: TriggerScheduleResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => TriggerScheduleResponse;
    };
    /** Delete a schedule; the processes it started are not touched. NOT_FOUND if none. */
    readonly deleteSchedule: {
        readonly path: "/hms.mgmt.v1.Schedule/DeleteSchedule";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: DeleteScheduleRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => DeleteScheduleRequest;
        readonly responseSerialize: (value: DeleteScheduleResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => DeleteScheduleResponse;
    };
};
export interface ScheduleServer extends UntypedServiceImplementation {
    /**
     * Create a schedule. ALREADY_EXISTS if one with the id exists; NOT_FOUND if the definition (or
     * version) does not; INVALID_ARGUMENT naming the field for a bad spec (e.g. "spec.cron").
     */
    createSchedule: handleUnaryCall<CreateScheduleRequest, CreateScheduleResponse>;
    /** One schedule with its state (next nominal time, last start, counters). NOT_FOUND if none. */
    getSchedule: handleUnaryCall<GetScheduleRequest, GetScheduleResponse>;
    /** Every schedule, by id, paged. */
    listSchedules: handleUnaryCall<ListSchedulesRequest, ListSchedulesResponse>;
    /**
     * Stop firing: nominal times that pass while paused are skipped. Pausing a paused schedule
     * changes only its note.
     */
    pauseSchedule: handleUnaryCall<PauseScheduleRequest, PauseScheduleResponse>;
    /** Fire again, from the first nominal time after now. */
    unpauseSchedule: handleUnaryCall<UnpauseScheduleRequest, UnpauseScheduleResponse>;
    /**
     * Start a process now (paused or not), subject to the overlap policy; a request id makes a
     * repeated trigger return the process of the first.
     */
    triggerSchedule: handleUnaryCall<TriggerScheduleRequest, TriggerScheduleResponse>;
    /** Delete a schedule; the processes it started are not touched. NOT_FOUND if none. */
    deleteSchedule: handleUnaryCall<DeleteScheduleRequest, DeleteScheduleResponse>;
}
export interface ScheduleClient extends Client {
    /**
     * Create a schedule. ALREADY_EXISTS if one with the id exists; NOT_FOUND if the definition (or
     * version) does not; INVALID_ARGUMENT naming the field for a bad spec (e.g. "spec.cron").
     */
    createSchedule(request: CreateScheduleRequest, callback: (error: ServiceError | null, response: CreateScheduleResponse) => void): ClientUnaryCall;
    createSchedule(request: CreateScheduleRequest, metadata: Metadata, callback: (error: ServiceError | null, response: CreateScheduleResponse) => void): ClientUnaryCall;
    createSchedule(request: CreateScheduleRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: CreateScheduleResponse) => void): ClientUnaryCall;
    /** One schedule with its state (next nominal time, last start, counters). NOT_FOUND if none. */
    getSchedule(request: GetScheduleRequest, callback: (error: ServiceError | null, response: GetScheduleResponse) => void): ClientUnaryCall;
    getSchedule(request: GetScheduleRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetScheduleResponse) => void): ClientUnaryCall;
    getSchedule(request: GetScheduleRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetScheduleResponse) => void): ClientUnaryCall;
    /** Every schedule, by id, paged. */
    listSchedules(request: ListSchedulesRequest, callback: (error: ServiceError | null, response: ListSchedulesResponse) => void): ClientUnaryCall;
    listSchedules(request: ListSchedulesRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListSchedulesResponse) => void): ClientUnaryCall;
    listSchedules(request: ListSchedulesRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListSchedulesResponse) => void): ClientUnaryCall;
    /**
     * Stop firing: nominal times that pass while paused are skipped. Pausing a paused schedule
     * changes only its note.
     */
    pauseSchedule(request: PauseScheduleRequest, callback: (error: ServiceError | null, response: PauseScheduleResponse) => void): ClientUnaryCall;
    pauseSchedule(request: PauseScheduleRequest, metadata: Metadata, callback: (error: ServiceError | null, response: PauseScheduleResponse) => void): ClientUnaryCall;
    pauseSchedule(request: PauseScheduleRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PauseScheduleResponse) => void): ClientUnaryCall;
    /** Fire again, from the first nominal time after now. */
    unpauseSchedule(request: UnpauseScheduleRequest, callback: (error: ServiceError | null, response: UnpauseScheduleResponse) => void): ClientUnaryCall;
    unpauseSchedule(request: UnpauseScheduleRequest, metadata: Metadata, callback: (error: ServiceError | null, response: UnpauseScheduleResponse) => void): ClientUnaryCall;
    unpauseSchedule(request: UnpauseScheduleRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: UnpauseScheduleResponse) => void): ClientUnaryCall;
    /**
     * Start a process now (paused or not), subject to the overlap policy; a request id makes a
     * repeated trigger return the process of the first.
     */
    triggerSchedule(request: TriggerScheduleRequest, callback: (error: ServiceError | null, response: TriggerScheduleResponse) => void): ClientUnaryCall;
    triggerSchedule(request: TriggerScheduleRequest, metadata: Metadata, callback: (error: ServiceError | null, response: TriggerScheduleResponse) => void): ClientUnaryCall;
    triggerSchedule(request: TriggerScheduleRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: TriggerScheduleResponse) => void): ClientUnaryCall;
    /** Delete a schedule; the processes it started are not touched. NOT_FOUND if none. */
    deleteSchedule(request: DeleteScheduleRequest, callback: (error: ServiceError | null, response: DeleteScheduleResponse) => void): ClientUnaryCall;
    deleteSchedule(request: DeleteScheduleRequest, metadata: Metadata, callback: (error: ServiceError | null, response: DeleteScheduleResponse) => void): ClientUnaryCall;
    deleteSchedule(request: DeleteScheduleRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: DeleteScheduleResponse) => void): ClientUnaryCall;
}
export declare const ScheduleClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): ScheduleClient;
    service: typeof ScheduleService;
    serviceName: string;
};
type Builtin = Date | Function | Uint8Array | string | number | boolean | undefined;
export type DeepPartial<T> = T extends Builtin ? T : T extends globalThis.Array<infer U> ? globalThis.Array<DeepPartial<U>> : T extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T extends {} ? {
    [K in keyof T]?: DeepPartial<T[K]>;
} : Partial<T>;
type KeysOfUnion<T> = T extends T ? keyof T : never;
export type Exact<P, I extends P> = P extends Builtin ? P : P & {
    [K in keyof P]: Exact<P[K], I[K]>;
} & {
    [K in Exclude<keyof I, KeysOfUnion<P>>]: never;
};
export interface MessageFns<T> {
    encode(message: T, writer?: BinaryWriter): BinaryWriter;
    decode(input: BinaryReader | Uint8Array, length?: number): T;
    fromJSON(object: any): T;
    toJSON(message: T): unknown;
    create<I extends Exact<DeepPartial<T>, I>>(base?: I): T;
    fromPartial<I extends Exact<DeepPartial<T>, I>>(object: I): T;
}
export {};
