import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientDuplexStream, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type ClientWritableStream, type handleBidiStreamingCall, type handleClientStreamingCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Duration } from "../../../google/protobuf/duration.js";
import { BusMessage } from "./bus.js";
import { FieldViolation } from "./common.js";
export declare const protobufPackage = "hms.mgmt.v1";
export declare const protobufFileName = "hms/mgmt/v1/workflow.proto";
/**
 * Workflow: durable multi-step processes defined in YAML (or the same structure as JSON).
 *
 * A definition (name + version) lists steps of kinds task, parallel, choice, wait_signal and
 * sleep, with input mappings, retry policies, timeouts and compensate tasks. A process is one
 * run of one definition version. Every transition, its history event and the tasks and timers
 * it creates commit together, so a transition happens exactly once and survives a crash; tasks
 * reach workers at least once, and a report for a stale attempt changes nothing.
 *
 * Lifecycle events (HISTORY_EVENT_TYPE_PROCESS_*), step events (STEP_*) and compensation events
 * (COMPENSATION_*) are also published on the Bus, in the same transaction, on subject
 * "workflow.<definition>.<process id>.<event>", where <event> is the enum value name after
 * "HISTORY_EVENT_TYPE_" in lower case (e.g. "workflow.building_permit.3f2a....step_completed").
 * The data is the HistoryEvent in its protobuf JSON form (the proto3 JSON mapping: field names
 * in lowerCamelCase, the int64 sequence as a string, enums by name, time in RFC 3339, fields at
 * their default left out), content_type "application/json": parse it with your protobuf
 * library's JSON parser. Task and signal events (TASK_*, SIGNAL_RECEIVED) stay in the history.
 *
 * Worker side: SubscribeTasks delivers tasks, each with a task token naming one attempt;
 * ReportTaskEventBatches (or ReportTaskEvents, CompleteTask, FailTask) reports on them. When a worker's stream closes
 * or its Registry lease lapses, its outstanding tasks go back to the queue at once.
 *
 * A worker that is not (or no longer) registered — its lease lapsed, it was deregistered, or it
 * never registered — gets FAILED_PRECONDITION with a google.rpc.ErrorInfo whose reason is
 * "NOT_REGISTERED" (metadata: "service", "instance_id" and "cause", e.g. "lease_expired"), both
 * from SubscribeTasks and when its open task stream ends for that reason. It should Register
 * again (same instance id) and subscribe again; retrying SubscribeTasks alone cannot succeed.
 * UNAVAILABLE, by contrast, means this control plane is going away: subscribe elsewhere.
 *
 * JSON-shaped data (inputs, outputs, payloads, details) is google.protobuf.Struct, so grpcurl
 * users type plain JSON. Such a value must be JSON: numbers are finite (no NaN or infinities),
 * objects and lists nest at most 20 levels, and its size limit is measured on its compact UTF-8
 * JSON text. Invalid requests get INVALID_ARGUMENT with google.rpc.BadRequest details naming
 * each field at fault (e.g. "input.order.lines[3]"); a refused request changes nothing.
 */
/**
 * Lifecycle of a process: STARTED -> RUNNING -> COMPLETED | FAILED | COMPENSATING ->
 * COMPENSATED | CANCELLED. COMPLETED, FAILED, COMPENSATED and CANCELLED are final.
 */
export declare enum ProcessState {
    /** PROCESS_STATE_UNSPECIFIED - Never sent; as a filter, no filter. */
    PROCESS_STATE_UNSPECIFIED = "PROCESS_STATE_UNSPECIFIED",
    /**
     * PROCESS_STATE_STARTED - Accepted and recorded, its first step not yet entered. Seen only as the process_state of the
     * PROCESS_STARTED history event: the transaction that records it also enters the first step,
     * so StartProcess already answers RUNNING.
     */
    PROCESS_STATE_STARTED = "PROCESS_STATE_STARTED",
    /** PROCESS_STATE_RUNNING - Steps are running or waiting. */
    PROCESS_STATE_RUNNING = "PROCESS_STATE_RUNNING",
    /** PROCESS_STATE_COMPLETED - Every step finished; output is set. Final. */
    PROCESS_STATE_COMPLETED = "PROCESS_STATE_COMPLETED",
    /**
     * PROCESS_STATE_FAILED - A step failed for good with nothing to compensate, a compensation failed, the output mapping
     * failed, or the process timed out; error says which step and why. Final.
     */
    PROCESS_STATE_FAILED = "PROCESS_STATE_FAILED",
    /**
     * PROCESS_STATE_COMPENSATING - A step failed for good (or a cancel asked for compensation): the compensate tasks of the
     * completed steps are running, in reverse order.
     */
    PROCESS_STATE_COMPENSATING = "PROCESS_STATE_COMPENSATING",
    /** PROCESS_STATE_COMPENSATED - Compensation after a failure finished; error keeps the failure that caused it. Final. */
    PROCESS_STATE_COMPENSATED = "PROCESS_STATE_COMPENSATED",
    /** PROCESS_STATE_CANCELLED - Cancelled by CancelProcess (after compensating, if asked). Final. */
    PROCESS_STATE_CANCELLED = "PROCESS_STATE_CANCELLED",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function processStateFromJSON(object: any): ProcessState;
export declare function processStateToJSON(object: ProcessState): string;
export declare function processStateToNumber(object: ProcessState): number;
/** Kind of step, as in the definition. */
export declare enum StepKind {
    /** STEP_KIND_UNSPECIFIED - Never sent. */
    STEP_KIND_UNSPECIFIED = "STEP_KIND_UNSPECIFIED",
    /** STEP_KIND_TASK - A task run by a worker of a service. */
    STEP_KIND_TASK = "STEP_KIND_TASK",
    /** STEP_KIND_PARALLEL - Branches run concurrently and joined when all finish. */
    STEP_KIND_PARALLEL = "STEP_KIND_PARALLEL",
    /** STEP_KIND_CHOICE - The first branch whose `when` holds, else `default`. */
    STEP_KIND_CHOICE = "STEP_KIND_CHOICE",
    /** STEP_KIND_WAIT_SIGNAL - Waits for a named signal or a matching Bus message, with a timeout. */
    STEP_KIND_WAIT_SIGNAL = "STEP_KIND_WAIT_SIGNAL",
    /** STEP_KIND_SLEEP - Waits for a duration. */
    STEP_KIND_SLEEP = "STEP_KIND_SLEEP",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function stepKindFromJSON(object: any): StepKind;
export declare function stepKindToJSON(object: StepKind): string;
export declare function stepKindToNumber(object: StepKind): number;
/** State of one step of a process. */
export declare enum StepState {
    /** STEP_STATE_UNSPECIFIED - Never sent. */
    STEP_STATE_UNSPECIFIED = "STEP_STATE_UNSPECIFIED",
    /** STEP_STATE_PENDING - Not reached yet. Not sent: Process.steps leaves out the steps not reached. */
    STEP_STATE_PENDING = "STEP_STATE_PENDING",
    /**
     * STEP_STATE_SCHEDULED - Task attempt queued for a worker, or handed to one that has not reported `started` on it
     * (handing an attempt over records nothing: it costs no store write).
     */
    STEP_STATE_SCHEDULED = "STEP_STATE_SCHEDULED",
    /**
     * STEP_STATE_RUNNING - Task step: the worker holding the current attempt reported `started` (see TaskStarted).
     * Parallel step: its branches are running. Choice step: the branch it took is running.
     */
    STEP_STATE_RUNNING = "STEP_STATE_RUNNING",
    /** STEP_STATE_RETRYING - An attempt failed; the next one is scheduled at timer_at (retry backoff). */
    STEP_STATE_RETRYING = "STEP_STATE_RETRYING",
    /** STEP_STATE_WAITING - Waiting for a signal or Bus message (wait_signal) or for time to pass (sleep) until timer_at. */
    STEP_STATE_WAITING = "STEP_STATE_WAITING",
    /** STEP_STATE_COMPLETED - Finished; output is set (see StepStatus.output). */
    STEP_STATE_COMPLETED = "STEP_STATE_COMPLETED",
    /** STEP_STATE_FAILED - Failed for good; last_error says why. */
    STEP_STATE_FAILED = "STEP_STATE_FAILED",
    /** STEP_STATE_SKIPPED - Not run: it is in a branch its choice did not take (nested steps included). */
    STEP_STATE_SKIPPED = "STEP_STATE_SKIPPED",
    /**
     * STEP_STATE_CANCELLED - Was scheduled, running, retrying or waiting when the process was cancelled, timed out, or no
     * longer needed it (a step elsewhere, e.g. in a sibling parallel branch, failed for good).
     */
    STEP_STATE_CANCELLED = "STEP_STATE_CANCELLED",
    /** STEP_STATE_COMPENSATING - Completed earlier; its compensate task is running. */
    STEP_STATE_COMPENSATING = "STEP_STATE_COMPENSATING",
    /** STEP_STATE_COMPENSATED - Its compensate task completed. */
    STEP_STATE_COMPENSATED = "STEP_STATE_COMPENSATED",
    /** STEP_STATE_COMPENSATION_FAILED - Its compensate task failed for good; last_error says why. */
    STEP_STATE_COMPENSATION_FAILED = "STEP_STATE_COMPENSATION_FAILED",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function stepStateFromJSON(object: any): StepState;
export declare function stepStateToJSON(object: StepState): string;
export declare function stepStateToNumber(object: StepState): number;
/** Kinds of history event. The Bus event name is the lower-case name after the prefix. */
export declare enum HistoryEventType {
    /** HISTORY_EVENT_TYPE_UNSPECIFIED - Never sent. */
    HISTORY_EVENT_TYPE_UNSPECIFIED = "HISTORY_EVENT_TYPE_UNSPECIFIED",
    /** HISTORY_EVENT_TYPE_PROCESS_STARTED - Process started. Details: {"input", "business_key"}. Published. */
    HISTORY_EVENT_TYPE_PROCESS_STARTED = "HISTORY_EVENT_TYPE_PROCESS_STARTED",
    /** HISTORY_EVENT_TYPE_PROCESS_RUNNING - First step scheduled; the process is RUNNING. Published. */
    HISTORY_EVENT_TYPE_PROCESS_RUNNING = "HISTORY_EVENT_TYPE_PROCESS_RUNNING",
    /** HISTORY_EVENT_TYPE_PROCESS_COMPLETED - Process completed. Details: {"output"}. Published. */
    HISTORY_EVENT_TYPE_PROCESS_COMPLETED = "HISTORY_EVENT_TYPE_PROCESS_COMPLETED",
    /** HISTORY_EVENT_TYPE_PROCESS_FAILED - Process failed. Details: {"error"}. Published. */
    HISTORY_EVENT_TYPE_PROCESS_FAILED = "HISTORY_EVENT_TYPE_PROCESS_FAILED",
    /** HISTORY_EVENT_TYPE_PROCESS_COMPENSATING - Compensation started. Details: {"error"} (the cause), or {"cancel_reason"}. Published. */
    HISTORY_EVENT_TYPE_PROCESS_COMPENSATING = "HISTORY_EVENT_TYPE_PROCESS_COMPENSATING",
    /** HISTORY_EVENT_TYPE_PROCESS_COMPENSATED - Compensation finished after a failure. Details: {"error"} (the cause). Published. */
    HISTORY_EVENT_TYPE_PROCESS_COMPENSATED = "HISTORY_EVENT_TYPE_PROCESS_COMPENSATED",
    /** HISTORY_EVENT_TYPE_PROCESS_CANCEL_REQUESTED - CancelProcess accepted. Details: {"reason", "compensate"}. Published. */
    HISTORY_EVENT_TYPE_PROCESS_CANCEL_REQUESTED = "HISTORY_EVENT_TYPE_PROCESS_CANCEL_REQUESTED",
    /** HISTORY_EVENT_TYPE_PROCESS_CANCELLED - Process cancelled. Details: {"error"} (code "CANCELLED"). Published. */
    HISTORY_EVENT_TYPE_PROCESS_CANCELLED = "HISTORY_EVENT_TYPE_PROCESS_CANCELLED",
    /**
     * HISTORY_EVENT_TYPE_STEP_STARTED - A step was entered. Details: choice {"branch"} (index of the branch taken, the default
     * counted last, null when none); sleep and wait_signal {"until"} (when it ends or times out,
     * null when it waits forever); task and parallel {}. Published.
     */
    HISTORY_EVENT_TYPE_STEP_STARTED = "HISTORY_EVENT_TYPE_STEP_STARTED",
    /** HISTORY_EVENT_TYPE_STEP_COMPLETED - A step completed. Details: {"output"}. Published. */
    HISTORY_EVENT_TYPE_STEP_COMPLETED = "HISTORY_EVENT_TYPE_STEP_COMPLETED",
    /** HISTORY_EVENT_TYPE_STEP_FAILED - A step failed for good. Details: {"error"}. Published. */
    HISTORY_EVENT_TYPE_STEP_FAILED = "HISTORY_EVENT_TYPE_STEP_FAILED",
    /**
     * HISTORY_EVENT_TYPE_STEP_SKIPPED - A step of a branch its choice did not take: one per such step, nested ones included, in
     * definition order, right after the choice's STEP_STARTED. Published.
     */
    HISTORY_EVENT_TYPE_STEP_SKIPPED = "HISTORY_EVENT_TYPE_STEP_SKIPPED",
    /**
     * HISTORY_EVENT_TYPE_TASK_SCHEDULED - A task (or compensate task) attempt was queued. Details: {"service", "task_type", "input",
     * "compensation", "timeout", "heartbeat_timeout"}: the timeouts in seconds, null when none. The
     * attempt's deadline is set when a worker takes it (Task.deadline, and TASK_STARTED).
     */
    HISTORY_EVENT_TYPE_TASK_SCHEDULED = "HISTORY_EVENT_TYPE_TASK_SCHEDULED",
    /**
     * HISTORY_EVENT_TYPE_TASK_STARTED - The worker holding the attempt reported `started` (once per attempt). Details:
     * {"worker_instance_id", "deadline", "compensation"}, deadline null when the attempt has none.
     */
    HISTORY_EVENT_TYPE_TASK_STARTED = "HISTORY_EVENT_TYPE_TASK_STARTED",
    /** HISTORY_EVENT_TYPE_TASK_FAILED - An attempt failed. Details: {"error", "will_retry", "retry_at"}. */
    HISTORY_EVENT_TYPE_TASK_FAILED = "HISTORY_EVENT_TYPE_TASK_FAILED",
    /**
     * HISTORY_EVENT_TYPE_TASK_TIMED_OUT - An attempt ran out of time (start-to-close or heartbeat).
     * Details: {"error", "will_retry", "retry_at"}.
     */
    HISTORY_EVENT_TYPE_TASK_TIMED_OUT = "HISTORY_EVENT_TYPE_TASK_TIMED_OUT",
    /**
     * HISTORY_EVENT_TYPE_SIGNAL_RECEIVED - A signal arrived with no step waiting for it (step_id empty, buffered true), or a wait_signal
     * step took one (step_id set; buffered true when it had waited in the buffer). Details:
     * {"name", "payload", "buffered"}. For a matching Bus message: {"subject", "sequence",
     * "payload"}, step_id set.
     */
    HISTORY_EVENT_TYPE_SIGNAL_RECEIVED = "HISTORY_EVENT_TYPE_SIGNAL_RECEIVED",
    /** HISTORY_EVENT_TYPE_COMPENSATION_STARTED - A completed step's compensate task was scheduled. Published. */
    HISTORY_EVENT_TYPE_COMPENSATION_STARTED = "HISTORY_EVENT_TYPE_COMPENSATION_STARTED",
    /** HISTORY_EVENT_TYPE_COMPENSATION_COMPLETED - A compensate task completed. Details: {"output"}. Published. */
    HISTORY_EVENT_TYPE_COMPENSATION_COMPLETED = "HISTORY_EVENT_TYPE_COMPENSATION_COMPLETED",
    /** HISTORY_EVENT_TYPE_COMPENSATION_FAILED - A compensate task failed for good. Details: {"error"}. Published. */
    HISTORY_EVENT_TYPE_COMPENSATION_FAILED = "HISTORY_EVENT_TYPE_COMPENSATION_FAILED",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function historyEventTypeFromJSON(object: any): HistoryEventType;
export declare function historyEventTypeToJSON(object: HistoryEventType): string;
export declare function historyEventTypeToNumber(object: HistoryEventType): number;
/** Why a worker should stop working on a task. */
export declare enum TaskCancelReason {
    /** TASK_CANCEL_REASON_UNSPECIFIED - Never sent. */
    TASK_CANCEL_REASON_UNSPECIFIED = "TASK_CANCEL_REASON_UNSPECIFIED",
    /** TASK_CANCEL_REASON_PROCESS_CANCELLED - The process was cancelled. */
    TASK_CANCEL_REASON_PROCESS_CANCELLED = "TASK_CANCEL_REASON_PROCESS_CANCELLED",
    /** TASK_CANCEL_REASON_TIMED_OUT - The attempt ran out of time (start-to-close or heartbeat); a retry may go elsewhere. */
    TASK_CANCEL_REASON_TIMED_OUT = "TASK_CANCEL_REASON_TIMED_OUT",
    /** TASK_CANCEL_REASON_NOT_NEEDED - The process ended or no longer needs it (e.g. a sibling parallel branch failed). */
    TASK_CANCEL_REASON_NOT_NEEDED = "TASK_CANCEL_REASON_NOT_NEEDED",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function taskCancelReasonFromJSON(object: any): TaskCancelReason;
export declare function taskCancelReasonToJSON(object: TaskCancelReason): string;
export declare function taskCancelReasonToNumber(object: TaskCancelReason): number;
/** Outcome of one task report. */
export declare enum ReportResult {
    /** REPORT_RESULT_UNSPECIFIED - Never sent. */
    REPORT_RESULT_UNSPECIFIED = "REPORT_RESULT_UNSPECIFIED",
    /** REPORT_RESULT_ACCEPTED - Recorded. */
    REPORT_RESULT_ACCEPTED = "REPORT_RESULT_ACCEPTED",
    /** REPORT_RESULT_ALREADY_REPORTED - This attempt's outcome was already recorded (a repeat of the same report is harmless). */
    REPORT_RESULT_ALREADY_REPORTED = "REPORT_RESULT_ALREADY_REPORTED",
    /** REPORT_RESULT_STALE_ATTEMPT - The attempt is no longer current: it timed out or a later attempt exists. Nothing changed. */
    REPORT_RESULT_STALE_ATTEMPT = "REPORT_RESULT_STALE_ATTEMPT",
    /** REPORT_RESULT_TASK_CANCELLED - The process was cancelled or ended, or the task was cancelled. Nothing changed. */
    REPORT_RESULT_TASK_CANCELLED = "REPORT_RESULT_TASK_CANCELLED",
    /**
     * REPORT_RESULT_INVALID - ReportTaskEventBatches only: the event was refused as invalid (malformed token, unknown
     * process, no event set, bad outbox message, a task outside the caller's services, ...); the
     * response's violations say why. Nothing changed. (CompleteTask and FailTask answer
     * INVALID_ARGUMENT, NOT_FOUND or PERMISSION_DENIED instead.)
     */
    REPORT_RESULT_INVALID = "REPORT_RESULT_INVALID",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function reportResultFromJSON(object: any): ReportResult;
export declare function reportResultToJSON(object: ReportResult): string;
export declare function reportResultToNumber(object: ReportResult): number;
/** One version of a workflow definition. */
export interface Definition {
    /**
     * Definition name: 1-128 characters of [A-Za-z0-9_-] starting with a letter (it is a Bus
     * subject token).
     */
    name: string;
    /** Version, 1-based, incremented each time the definition changes. */
    version: number;
    /** The definition's `description`, if any. */
    description: string;
    /** The document exactly as registered (YAML or JSON). Omitted by ListDefinitions. */
    source: string;
    /** The document parsed, as JSON. Omitted by ListDefinitions. */
    spec: {
        [key: string]: any;
    } | undefined;
    /**
     * Hex SHA-256 of the canonical JSON of spec (keys sorted, no whitespace, non-ASCII escaped as
     * \uXXXX); equal digests mean the same definition.
     */
    digest: string;
    /** When this version was registered. */
    createdAt: Date | undefined;
}
/** Request of RegisterDefinition. */
export interface RegisterDefinitionRequest {
    /** The definition as YAML or JSON text (JSON is read as YAML). At most 1 MiB. */
    source: string;
    /** Only validate: store nothing; the response says which version it would be. */
    validateOnly: boolean;
}
/** Response of RegisterDefinition. */
export interface RegisterDefinitionResponse {
    /** Definition name, from the document. */
    name: string;
    /** Version the document is stored as (or would be, with validate_only). */
    version: number;
    /**
     * True when this made a new version; false when the latest version has the same content
     * (compared by parsed content, so formatting and comments alone make no new version).
     */
    created: boolean;
    /** The stored definition version. */
    definition: Definition | undefined;
}
/** Request of GetDefinition. */
export interface GetDefinitionRequest {
    /** Definition name. */
    name: string;
    /** Version to get; 0 means the latest. */
    version: number;
}
/** Response of GetDefinition. */
export interface GetDefinitionResponse {
    /** The definition version, with source and spec. */
    definition: Definition | undefined;
}
/** Request of ListDefinitions. */
export interface ListDefinitionsRequest {
    /** Only this definition name; empty lists every name. */
    name: string;
    /** Every version, newest first per name; default only the latest version of each name. */
    allVersions: boolean;
    /** Most definitions per page. Default 100; allowed 1..1,000. */
    pageSize: number;
    /** next_page_token of the previous page; empty for the first page. */
    pageToken: string;
}
/** Response of ListDefinitions. */
export interface ListDefinitionsResponse {
    /** Definitions in name order, without source and spec. */
    definitions: Definition[];
    /** Token for the next page; empty on the last page. */
    nextPageToken: string;
}
/** An error, as reported by a worker or raised by the engine. */
export interface Failure {
    /**
     * Machine-readable code, e.g. "PAYMENT_DECLINED" (a worker's TaskFailed.error_code). Engine
     * codes: "TIMEOUT" and "HEARTBEAT_TIMEOUT" (an attempt ran out of time), "SIGNAL_TIMEOUT" (a
     * wait_signal step), "PROCESS_TIMEOUT" (the definition's timeout), "INPUT_MAPPING" (a task's
     * input mapping could not be evaluated), "CONDITION" (a choice's condition could not be
     * evaluated), "OUTPUT_MAPPING" (the definition's output mapping), and "CANCELLED" (the error of
     * a process that ended CANCELLED; message: the cancel reason).
     */
    code: string;
    /** Human-readable message. */
    message: string;
    /** Structured details, as the worker sent them. */
    details: {
        [key: string]: any;
    } | undefined;
    /** Step at fault, empty when the error is not a step's. */
    stepId: string;
    /** Attempt of that step (1-based), 0 when not a task attempt's. */
    attempt: number;
    /** When it happened. */
    time: Date | undefined;
}
/** Where one step of a process stands. */
export interface StepStatus {
    /** Step id from the definition (unique in the definition, branch steps included). */
    stepId: string;
    /** Kind of step. */
    kind: StepKind;
    /** Current state. */
    state: StepState;
    /** Attempts made so far (task steps), including the running one. */
    attempts: number;
    /**
     * Output of the completed step: a task's output; for wait_signal the signal payload (or the
     * Bus message's data); for parallel {"<last step id of each branch>": its output}; for choice
     * the output of the last step of the branch taken (unset when it took none). Sleep: unset.
     */
    output: {
        [key: string]: any;
    } | undefined;
    /** Last failed attempt's error, kept after a successful retry. */
    lastError: Failure | undefined;
    /** When the step was entered; unset while PENDING. */
    startedAt: Date | undefined;
    /** When the step completed, failed, was skipped or cancelled (compensating it later leaves it). */
    endedAt: Date | undefined;
    /**
     * RETRYING: when the next attempt is scheduled. WAITING: when the sleep ends or the wait times
     * out (unset when it waits forever). RUNNING task step: the current attempt's start-to-close
     * deadline (Task.deadline; unset when it has none). COMPENSATING: when the compensate task's
     * next attempt is due, while it waits to be retried. Unset otherwise (SCHEDULED: the deadline
     * only starts when a worker takes the attempt; and once the step ended).
     */
    timerAt: Date | undefined;
    /** Id of the enclosing parallel or choice step, empty for top-level steps. */
    parentStepId: string;
    /**
     * Instance id of the worker that reported `started` on the current attempt (of the task, or of
     * the compensate task while COMPENSATING); kept once the step ended, empty when its worker did
     * not report `started` and from the moment a new attempt is scheduled.
     */
    workerInstanceId: string;
    /** Details of the last heartbeat of the current or last attempt. */
    heartbeatDetails: {
        [key: string]: any;
    } | undefined;
    /** wait_signal: the signal name (or Bus subject pattern) it waits for. */
    waitingFor: string;
}
/** One process: a run of one definition version. */
export interface Process {
    /** Process id, a server-generated UUID. */
    id: string;
    /** Definition name. */
    definition: string;
    /** Definition version the process runs (fixed at start). */
    definitionVersion: number;
    /** Business key given at start, empty for none. */
    businessKey: string;
    /** Lifecycle state. */
    state: ProcessState;
    /** Input given at start. Omitted by ListProcesses unless include_details. */
    input: {
        [key: string]: any;
    } | undefined;
    /**
     * Output (the definition's output mapping, or else the last step's output, unset when that
     * step has none), set when COMPLETED. Omitted by ListProcesses unless include_details.
     */
    output: {
        [key: string]: any;
    } | undefined;
    /**
     * Steps scheduled, running, retrying, waiting or compensating now (the parallel and choice
     * steps around them included); empty once the process ended.
     */
    currentStepIds: string[];
    /**
     * Every step reached so far, and the steps of branches a choice did not take (SKIPPED), in
     * definition order. Omitted by ListProcesses unless include_details.
     */
    steps: StepStatus[];
    /**
     * Why it failed (FAILED), the failure that triggered compensation (COMPENSATING, COMPENSATED),
     * or, once CANCELLED, code "CANCELLED" with the cancel reason as message. Unset otherwise.
     */
    error: Failure | undefined;
    /** Reason given to CancelProcess, once cancelled (or cancelling). */
    cancelReason: string;
    /** When the process was started. */
    createdAt: Date | undefined;
    /** When its last transition committed. */
    updatedAt: Date | undefined;
    /** When it reached a final state; unset before. */
    endedAt: Date | undefined;
    /** Sequence of its last history event (WatchProcess and GetHistory can resume after it). */
    lastEventSequence: number;
}
/** Request of StartProcess. */
export interface StartProcessRequest {
    /** Definition name. */
    definition: string;
    /** Definition version; 0 means the latest. */
    version: number;
    /**
     * Process input, checked against the definition's input JSON Schema if it has one (a mismatch
     * is INVALID_ARGUMENT naming the field). At most 1 MiB as JSON.
     */
    input: {
        [key: string]: any;
    } | undefined;
    /**
     * Optional business key, up to 256 characters, unique per definition name: a start with a key
     * that already has a process returns that process (whatever its state, version or input)
     * instead of starting another.
     */
    businessKey: string;
}
/** Response of StartProcess. */
export interface StartProcessResponse {
    /** The process (new, or the existing one for the business key). */
    process: Process | undefined;
    /** True when a process with this business key already existed and nothing was started. */
    alreadyExisted: boolean;
}
/** Request of GetProcess. */
export interface GetProcessRequest {
    /** Process id. */
    processId: string;
}
/** Response of GetProcess. */
export interface GetProcessResponse {
    /** The process with input, output and every step status. */
    process: Process | undefined;
}
/** Request of ListProcesses. */
export interface ListProcessesRequest {
    /** Only processes of this definition name; empty for all. */
    definition: string;
    /** Only this version of it; 0 for all versions. */
    definitionVersion: number;
    /** Only processes in one of these states; empty for all. */
    states: ProcessState[];
    /** Only the process with this business key; empty for all. */
    businessKey: string;
    /** Include input, output and steps in each process. */
    includeDetails: boolean;
    /** Most processes per page. Default 50; allowed 1..1,000. */
    pageSize: number;
    /** next_page_token of the previous page (with the same filters); empty for the first page. */
    pageToken: string;
}
/** Response of ListProcesses. */
export interface ListProcessesResponse {
    /** Processes, newest first. */
    processes: Process[];
    /** Token for the next page; empty on the last page. */
    nextPageToken: string;
}
/** One entry of a process's history (worker heartbeats are not recorded). */
export interface HistoryEvent {
    /** Position in the process's history: 1, 2, 3, ... without gaps. */
    sequence: number;
    /** Process the event belongs to. */
    processId: string;
    /** When the transition that recorded it committed. */
    time: Date | undefined;
    /** What happened. */
    type: HistoryEventType;
    /** Step concerned, empty for process-level events. */
    stepId: string;
    /** Task attempt concerned (1-based), 0 when none. */
    attempt: number;
    /** Process state after this event. */
    processState: ProcessState;
    /**
     * Event data, by type (see HistoryEventType). Errors appear as Failure does: {"code",
     * "message", "details", "step_id", "attempt", "time"}. Times ("time", "retry_at", "until",
     * "deadline") are Unix seconds, as numbers; durations ("timeout", ...) are seconds.
     */
    details: {
        [key: string]: any;
    } | undefined;
}
/** Request of WatchProcess. */
export interface WatchProcessRequest {
    /** Process to watch. NOT_FOUND if none. */
    processId: string;
    /** Resume: send only events with a greater sequence. 0 sends the whole history. */
    afterSequence: number;
}
/**
 * One frame of a WatchProcess stream. The first frame carries `process` (its state when the
 * watch began) and history events up to process.last_event_sequence (split over several frames
 * when long); live events follow as they commit. The last frame carries the final `process`,
 * after which the stream ends with OK. A stream that ends otherwise (UNAVAILABLE when the control
 * plane stops) has not seen the process end.
 */
export interface WatchProcessResponse {
    /** Snapshot of the process: on the first and last frames only. */
    process: Process | undefined;
    /** History events in sequence order. */
    events: HistoryEvent[];
}
/** Request of SignalProcess. */
export interface SignalProcessRequest {
    /** Process to signal. NOT_FOUND if none; FAILED_PRECONDITION if it already ended. */
    processId: string;
    /** Signal name, 1-128 characters, matched against wait_signal steps. */
    name: string;
    /**
     * Signal payload; becomes the wait_signal step's output. At most 1 MiB as JSON
     * (INVALID_ARGUMENT beyond).
     */
    payload: {
        [key: string]: any;
    } | undefined;
    /**
     * Optional sender-chosen id, up to 128 characters: a repeated signal with the same id for the
     * same process is ignored (duplicate = true), so senders may retry.
     */
    signalId: string;
}
/** Response of SignalProcess. */
export interface SignalProcessResponse {
    /**
     * True when no step was waiting for it: it is kept, in arrival order per name, until one does
     * (within the limits given on SignalProcess).
     */
    buffered: boolean;
    /** True when signal_id was already received: nothing changed. */
    duplicate: boolean;
}
/** Request of CancelProcess. */
export interface CancelProcessRequest {
    /**
     * Process to cancel. NOT_FOUND if none; FAILED_PRECONDITION if it already ended otherwise than
     * CANCELLED (cancelling a cancelled process is a no-op).
     */
    processId: string;
    /** Why, kept on the process and in its history. Up to 1,024 characters. */
    reason: string;
    /**
     * Run the compensate tasks of the completed steps (in reverse order) before ending CANCELLED
     * (FAILED if a compensation fails for good). Default false: end CANCELLED at once.
     */
    compensate: boolean;
}
/** Response of CancelProcess. */
export interface CancelProcessResponse {
    /** The process after the cancel was recorded (CANCELLED, or COMPENSATING with compensate). */
    process: Process | undefined;
}
/** Request of GetHistory. */
export interface GetHistoryRequest {
    /** Process whose history to read. NOT_FOUND if none. */
    processId: string;
    /** Start after this event sequence; 0 from the beginning. Ignored when page_token is set. */
    afterSequence: number;
    /** Most events per page. Default 100; allowed 1..1,000. */
    pageSize: number;
    /** next_page_token of the previous page; empty for the first page. */
    pageToken: string;
}
/** Response of GetHistory. */
export interface GetHistoryResponse {
    /** Events in sequence order. */
    events: HistoryEvent[];
    /** Token for the next page; empty when no more events exist yet. */
    nextPageToken: string;
}
/** One task attempt for a worker. */
export interface Task {
    /** Opaque token naming this attempt; every report about it carries it. */
    taskToken: string;
    /** Process the task belongs to. */
    processId: string;
    /** Definition name of the process. */
    definition: string;
    /** Definition version of the process. */
    definitionVersion: number;
    /** Step the task runs (for a compensation, the step being compensated). */
    stepId: string;
    /** Task type, as named in the step's `task`. */
    taskType: string;
    /** Attempt number, 1-based. */
    attempt: number;
    /** Start-to-close deadline of this attempt: a completion after it is stale. Unset: none. */
    deadline: Date | undefined;
    /**
     * Longest allowed gap between heartbeats (and from delivery to the first one); unset: no
     * heartbeat needed. Each heartbeat pushes the attempt's heartbeat deadline to now + this.
     */
    heartbeatTimeout: Duration | undefined;
    /** Task input: the step's input mapping evaluated (a JSON object). */
    input: {
        [key: string]: any;
    } | undefined;
    /** Business key of the process, empty for none. */
    businessKey: string;
    /** True for a compensate task (undoing step_id), false for the step's own task. */
    compensation: boolean;
    /** Details of the last heartbeat of an earlier attempt, for resuming progress; unset if none. */
    heartbeatDetails: {
        [key: string]: any;
    } | undefined;
    /**
     * W3C Trace Context `traceparent` of this attempt's span in the process's trace
     * ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"), empty when the control plane does not
     * trace. A worker continues it (as the parent of the spans it makes for the task) with any
     * W3C propagator, e.g. OpenTelemetry's TraceContextTextMapPropagator on {"traceparent": this}.
     */
    traceparent: string;
    /** W3C Trace Context `tracestate` to go with `traceparent`, empty for none. */
    tracestate: string;
}
/** Tells a worker that a task it holds is no longer wanted; any report on it will be stale. */
export interface TaskCancellation {
    /** Token of the attempt to stop. */
    taskToken: string;
    /** Why. */
    reason: TaskCancelReason;
    /** Human-readable detail, e.g. "the process was cancelled". */
    message: string;
}
/** Request of SubscribeTasks. */
export interface SubscribeTasksRequest {
    /** Service the worker belongs to. */
    service: string;
    /**
     * Its instance id in the Registry: the instance must be registered and its lease live (else
     * FAILED_PRECONDITION, reason NOT_REGISTERED). When the lease lapses (or the instance is
     * deregistered) the stream ends the same way and its tasks are requeued.
     */
    instanceId: string;
    /** Task types to receive; empty receives every task type of the service. Up to 256. */
    taskTypes: string[];
    /**
     * Most tasks held at once (delivered, not yet completed or failed).
     * Default 16; allowed 1..10,000.
     */
    maxInFlight: number;
}
/** One frame of a SubscribeTasks stream. The first frame has only `ready` set. */
export interface SubscribeTasksResponse {
    /** Set on the first frame only: the worker is subscribed and will be offered tasks. */
    ready: boolean;
    /** New task attempts, at most the free credit. */
    tasks: Task[];
    /** Tasks held by this worker that it should stop (their credit is returned). */
    cancellations: TaskCancellation[];
}
/**
 * A worker began an attempt. Optional: it counts as a heartbeat, and is recorded once per
 * attempt (TASK_STARTED; the step shows RUNNING on this worker, the attempt's deadline as its
 * timer_at) in a store transition of its own. Send it when the step's progress is worth watching (long tasks);
 * without it a step stays SCHEDULED until its outcome. The SDK workers do not send it.
 */
export interface TaskStarted {
}
/** A worker is still working on an attempt. */
export interface TaskHeartbeat {
    /**
     * Optional progress details, kept on the step and handed to a later attempt. At most 64 KiB
     * as JSON.
     */
    details: {
        [key: string]: any;
    } | undefined;
}
/** An attempt succeeded. */
export interface TaskCompleted {
    /** The task's output, available to later steps as steps.<id>.output. At most 1 MiB as JSON. */
    output: {
        [key: string]: any;
    } | undefined;
    /**
     * Bus messages published in the same transaction that records the completion: all of them if
     * and only if the completion is accepted. Validated as in Publish; at most 100. Their
     * sequence, subject_sequence and published_at are ignored.
     */
    outbox: BusMessage[];
}
/** An attempt failed. */
export interface TaskFailed {
    /** Machine-readable error code, 1-128 characters, matched against the step's non-retryable codes. */
    errorCode: string;
    /** Human-readable message, up to 4,096 characters. */
    message: string;
    /**
     * Fail the step now, without further attempts, whatever the retry policy. Default false: the
     * retry policy decides. (Named for its default, so a report that omits it is retried.)
     */
    nonRetryable: boolean;
    /** Structured error details. At most 64 KiB as JSON. */
    details: {
        [key: string]: any;
    } | undefined;
}
/** One report about one task attempt. */
export interface TaskEvent {
    /** Token of the attempt, from Task.task_token. */
    taskToken: string;
    /** The worker began working on it (STALE_ATTEMPT when no worker holds the attempt any more). */
    started?: TaskStarted | undefined;
    /** The worker is still working (extends the heartbeat deadline). */
    heartbeat?: TaskHeartbeat | undefined;
    /** The attempt succeeded. */
    completed?: TaskCompleted | undefined;
    /** The attempt failed. */
    failed?: TaskFailed | undefined;
}
/** One frame of a ReportTaskEvents stream. */
export interface ReportTaskEventsRequest {
    /**
     * Events, 1 to 1,000 per frame. Events of many tasks may share a frame. The events of one task
     * are applied in the order they were written (across frames too); those of different tasks
     * concurrently.
     */
    events: TaskEvent[];
}
/**
 * Response of ReportTaskEvents, sent when the client closes its side of the stream, once every
 * event of the stream has been applied or refused. A failure that is not the events' fault (the
 * store unreachable, the control plane shutting down, an internal error) ends the stream with
 * that status instead, and no answer: any event of the stream may or may not have been applied,
 * so send them all again (a repeat answers ALREADY_REPORTED and changes nothing).
 */
export interface ReportTaskEventsResponse {
    /** Events recorded (heartbeats and started events included). */
    accepted: number;
    /** Events that changed nothing: ALREADY_REPORTED, STALE_ATTEMPT or TASK_CANCELLED. */
    stale: number;
    /** Events refused as invalid (malformed token, no event set, bad outbox message, ...). */
    invalid: number;
    /**
     * The first 100 problems of invalid events; field is "events[<n>]..." with n counted from 0
     * over the whole stream, e.g. "events[12].task_token".
     */
    violations: FieldViolation[];
}
/**
 * One frame of a ReportTaskEventBatches stream: a batch of events, answered by one
 * ReportTaskEventBatchesResponse with the same batch_id.
 */
export interface ReportTaskEventBatchesRequest {
    /** Client-chosen batch id, echoed in the response that answers this request; not interpreted. */
    batchId: number;
    /**
     * Events, 1 to 1,000 per request. Events of many tasks may share a request. The events of one
     * task are applied in the order they were written (across requests too); those of different
     * tasks concurrently.
     */
    events: TaskEvent[];
}
/**
 * The answer to one ReportTaskEventBatchesRequest, sent once every event of it has been applied
 * or refused. Responses may come in another order than their requests: match them by batch_id.
 * At most 1,000 events of one stream are read and not yet answered: a client that does not read
 * its answers is not read from either.
 *
 * Failures that are not the events' fault (the store unreachable, the control plane shutting
 * down, an internal error) end the stream with that status instead. Events of requests not yet
 * answered then may or may not have been applied: send them again, on a new stream. A repeat is
 * harmless: it answers ALREADY_REPORTED (or STALE_ATTEMPT / TASK_CANCELLED) and changes nothing.
 */
export interface ReportTaskEventBatchesResponse {
    /** batch_id of the request this answers. */
    batchId: number;
    /**
     * One result per event of the request, in the request's order (heartbeats and started events
     * included: ACCEPTED when the attempt is still held); INVALID for each event of a request
     * refused as a whole (no events, or more than 1,000).
     */
    results: ReportResult[];
    /**
     * Why INVALID events were refused; field is "events[<n>]..." with n the event's index in the
     * request (from 0), e.g. "events[3].task_token", or "events" for the request as a whole.
     */
    violations: FieldViolation[];
}
/** Request of CompleteTask. */
export interface CompleteTaskRequest {
    /** Token of the attempt. */
    taskToken: string;
    /** The task's output. At most 1 MiB as JSON. */
    output: {
        [key: string]: any;
    } | undefined;
    /** Bus messages published atomically with the completion, as in TaskCompleted.outbox. */
    outbox: BusMessage[];
}
/** Response of CompleteTask. */
export interface CompleteTaskResponse {
    /** ACCEPTED, or why nothing changed. */
    result: ReportResult;
    /** Human-readable explanation when not ACCEPTED. */
    message: string;
}
/** Request of FailTask. */
export interface FailTaskRequest {
    /** Token of the attempt. */
    taskToken: string;
    /** Machine-readable error code, as TaskFailed.error_code. */
    errorCode: string;
    /** Human-readable message, as TaskFailed.message. */
    message: string;
    /** Fail the step now, without further attempts, as TaskFailed.non_retryable. */
    nonRetryable: boolean;
    /** Structured error details, as TaskFailed.details. */
    details: {
        [key: string]: any;
    } | undefined;
}
/** Response of FailTask. */
export interface FailTaskResponse {
    /** ACCEPTED, or why nothing changed. */
    result: ReportResult;
    /** Human-readable explanation when not ACCEPTED. */
    message: string;
    /** ACCEPTED only: another attempt is scheduled (false: the step failed for good). */
    willRetry: boolean;
    /** ACCEPTED with will_retry: when the next attempt becomes due. */
    retryAt: Date | undefined;
}
export declare const Definition: MessageFns<Definition>;
export declare const RegisterDefinitionRequest: MessageFns<RegisterDefinitionRequest>;
export declare const RegisterDefinitionResponse: MessageFns<RegisterDefinitionResponse>;
export declare const GetDefinitionRequest: MessageFns<GetDefinitionRequest>;
export declare const GetDefinitionResponse: MessageFns<GetDefinitionResponse>;
export declare const ListDefinitionsRequest: MessageFns<ListDefinitionsRequest>;
export declare const ListDefinitionsResponse: MessageFns<ListDefinitionsResponse>;
export declare const Failure: MessageFns<Failure>;
export declare const StepStatus: MessageFns<StepStatus>;
export declare const Process: MessageFns<Process>;
export declare const StartProcessRequest: MessageFns<StartProcessRequest>;
export declare const StartProcessResponse: MessageFns<StartProcessResponse>;
export declare const GetProcessRequest: MessageFns<GetProcessRequest>;
export declare const GetProcessResponse: MessageFns<GetProcessResponse>;
export declare const ListProcessesRequest: MessageFns<ListProcessesRequest>;
export declare const ListProcessesResponse: MessageFns<ListProcessesResponse>;
export declare const HistoryEvent: MessageFns<HistoryEvent>;
export declare const WatchProcessRequest: MessageFns<WatchProcessRequest>;
export declare const WatchProcessResponse: MessageFns<WatchProcessResponse>;
export declare const SignalProcessRequest: MessageFns<SignalProcessRequest>;
export declare const SignalProcessResponse: MessageFns<SignalProcessResponse>;
export declare const CancelProcessRequest: MessageFns<CancelProcessRequest>;
export declare const CancelProcessResponse: MessageFns<CancelProcessResponse>;
export declare const GetHistoryRequest: MessageFns<GetHistoryRequest>;
export declare const GetHistoryResponse: MessageFns<GetHistoryResponse>;
export declare const Task: MessageFns<Task>;
export declare const TaskCancellation: MessageFns<TaskCancellation>;
export declare const SubscribeTasksRequest: MessageFns<SubscribeTasksRequest>;
export declare const SubscribeTasksResponse: MessageFns<SubscribeTasksResponse>;
export declare const TaskStarted: MessageFns<TaskStarted>;
export declare const TaskHeartbeat: MessageFns<TaskHeartbeat>;
export declare const TaskCompleted: MessageFns<TaskCompleted>;
export declare const TaskFailed: MessageFns<TaskFailed>;
export declare const TaskEvent: MessageFns<TaskEvent>;
export declare const ReportTaskEventsRequest: MessageFns<ReportTaskEventsRequest>;
export declare const ReportTaskEventsResponse: MessageFns<ReportTaskEventsResponse>;
export declare const ReportTaskEventBatchesRequest: MessageFns<ReportTaskEventBatchesRequest>;
export declare const ReportTaskEventBatchesResponse: MessageFns<ReportTaskEventBatchesResponse>;
export declare const CompleteTaskRequest: MessageFns<CompleteTaskRequest>;
export declare const CompleteTaskResponse: MessageFns<CompleteTaskResponse>;
export declare const FailTaskRequest: MessageFns<FailTaskRequest>;
export declare const FailTaskResponse: MessageFns<FailTaskResponse>;
/** Definitions, processes, and the task protocol of the workers that run their steps. */
export type WorkflowService = typeof WorkflowService;
export declare const WorkflowService: {
    /**
     * Validate and store a definition; a changed definition becomes a new version. Validation
     * errors (unknown step references, cycles, bad expressions, unknown fields, ...) are
     * INVALID_ARGUMENT with one google.rpc.BadRequest violation per problem, its field being the
     * path in the document (e.g. "steps[2].retry.backoff"), its description ending with the line
     * (and the column, for syntax errors) when known, e.g. "(line 7)".
     */
    readonly registerDefinition: {
        readonly path: "/hms.mgmt.v1.Workflow/RegisterDefinition";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: RegisterDefinitionRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => RegisterDefinitionRequest;
        readonly responseSerialize: (value: RegisterDefinitionResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => RegisterDefinitionResponse;
    };
    /** One version of a definition (the latest by default). NOT_FOUND if none. */
    readonly getDefinition: {
        readonly path: "/hms.mgmt.v1.Workflow/GetDefinition";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetDefinitionRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetDefinitionRequest;
        readonly responseSerialize: (value: GetDefinitionResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetDefinitionResponse;
    };
    /** Definitions (latest versions, or every version), paged. */
    readonly listDefinitions: {
        readonly path: "/hms.mgmt.v1.Workflow/ListDefinitions";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListDefinitionsRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListDefinitionsRequest;
        readonly responseSerialize: (value: ListDefinitionsResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListDefinitionsResponse;
    };
    /** Start a process, or return the existing one for the same definition and business key. */
    readonly startProcess: {
        readonly path: "/hms.mgmt.v1.Workflow/StartProcess";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: StartProcessRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => StartProcessRequest;
        readonly responseSerialize: (value: StartProcessResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => StartProcessResponse;
    };
    /** A process with its current steps, step outputs, attempts and errors. NOT_FOUND if none. */
    readonly getProcess: {
        readonly path: "/hms.mgmt.v1.Workflow/GetProcess";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetProcessRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetProcessRequest;
        readonly responseSerialize: (value: GetProcessResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetProcessResponse;
    };
    /** Processes filtered by definition, state and business key, newest first, paged. */
    readonly listProcesses: {
        readonly path: "/hms.mgmt.v1.Workflow/ListProcesses";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListProcessesRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListProcessesRequest;
        readonly responseSerialize: (value: ListProcessesResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListProcessesResponse;
    };
    /**
     * The process and its history so far, then live events; the stream ends (OK) after the
     * process ends. A control plane that stops first ends it with UNAVAILABLE: watch again
     * (elsewhere) with after_sequence set to the last event seen.
     */
    readonly watchProcess: {
        readonly path: "/hms.mgmt.v1.Workflow/WatchProcess";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: WatchProcessRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => WatchProcessRequest;
        readonly responseSerialize: (value: WatchProcessResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => WatchProcessResponse;
    };
    /**
     * Send a named signal; buffered until a wait_signal step of that name consumes it. A process
     * buffers at most 100 signals, under at most 16 distinct names, with payloads of at most 1 MiB
     * (as JSON) together; a signal beyond that is refused with RESOURCE_EXHAUSTED and changes
     * nothing (retry once a step has consumed some).
     */
    readonly signalProcess: {
        readonly path: "/hms.mgmt.v1.Workflow/SignalProcess";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: SignalProcessRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SignalProcessRequest;
        readonly responseSerialize: (value: SignalProcessResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SignalProcessResponse;
    };
    /** Cancel a process: running tasks are told over their worker stream; optionally compensate. */
    readonly cancelProcess: {
        readonly path: "/hms.mgmt.v1.Workflow/CancelProcess";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: CancelProcessRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => CancelProcessRequest;
        readonly responseSerialize: (value: CancelProcessResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => CancelProcessResponse;
    };
    /** A process's history events in order, paged. */
    readonly getHistory: {
        readonly path: "/hms.mgmt.v1.Workflow/GetHistory";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetHistoryRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetHistoryRequest;
        readonly responseSerialize: (value: GetHistoryResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetHistoryResponse;
    };
    /** Worker: receive tasks of some task types of a service, up to max_in_flight at a time. */
    readonly subscribeTasks: {
        readonly path: "/hms.mgmt.v1.Workflow/SubscribeTasks";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: SubscribeTasksRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SubscribeTasksRequest;
        readonly responseSerialize: (value: SubscribeTasksResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SubscribeTasksResponse;
    };
    /**
     * Worker: report started / heartbeat / completed / failed events over one stream, answered
     * once, with counts, when the client closes its side. Fits a short-lived sender (grpcurl, a
     * script); a long-lived worker wants ReportTaskEventBatches, whose every batch is answered.
     */
    readonly reportTaskEvents: {
        readonly path: "/hms.mgmt.v1.Workflow/ReportTaskEvents";
        readonly requestStream: true;
        readonly responseStream: false;
        readonly requestSerialize: (value: ReportTaskEventsRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ReportTaskEventsRequest;
        readonly responseSerialize: (value: ReportTaskEventsResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ReportTaskEventsResponse;
    };
    /**
     * Worker: report started / heartbeat / completed / failed events over one long-lived stream;
     * every request is answered by one response (same batch_id) once each of its events is applied.
     */
    readonly reportTaskEventBatches: {
        readonly path: "/hms.mgmt.v1.Workflow/ReportTaskEventBatches";
        readonly requestStream: true;
        readonly responseStream: true;
        readonly requestSerialize: (value: ReportTaskEventBatchesRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ReportTaskEventBatchesRequest;
        readonly responseSerialize: (value: ReportTaskEventBatchesResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ReportTaskEventBatchesResponse;
    };
    /** Worker: report a task completed (unary form of a completed event). */
    readonly completeTask: {
        readonly path: "/hms.mgmt.v1.Workflow/CompleteTask";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: CompleteTaskRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => CompleteTaskRequest;
        readonly responseSerialize: (value: CompleteTaskResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => CompleteTaskResponse;
    };
    /** Worker: report a task attempt failed (unary form of a failed event). */
    readonly failTask: {
        readonly path: "/hms.mgmt.v1.Workflow/FailTask";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: FailTaskRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => FailTaskRequest;
        readonly responseSerialize: (value: FailTaskResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => FailTaskResponse;
    };
};
export interface WorkflowServer extends UntypedServiceImplementation {
    /**
     * Validate and store a definition; a changed definition becomes a new version. Validation
     * errors (unknown step references, cycles, bad expressions, unknown fields, ...) are
     * INVALID_ARGUMENT with one google.rpc.BadRequest violation per problem, its field being the
     * path in the document (e.g. "steps[2].retry.backoff"), its description ending with the line
     * (and the column, for syntax errors) when known, e.g. "(line 7)".
     */
    registerDefinition: handleUnaryCall<RegisterDefinitionRequest, RegisterDefinitionResponse>;
    /** One version of a definition (the latest by default). NOT_FOUND if none. */
    getDefinition: handleUnaryCall<GetDefinitionRequest, GetDefinitionResponse>;
    /** Definitions (latest versions, or every version), paged. */
    listDefinitions: handleUnaryCall<ListDefinitionsRequest, ListDefinitionsResponse>;
    /** Start a process, or return the existing one for the same definition and business key. */
    startProcess: handleUnaryCall<StartProcessRequest, StartProcessResponse>;
    /** A process with its current steps, step outputs, attempts and errors. NOT_FOUND if none. */
    getProcess: handleUnaryCall<GetProcessRequest, GetProcessResponse>;
    /** Processes filtered by definition, state and business key, newest first, paged. */
    listProcesses: handleUnaryCall<ListProcessesRequest, ListProcessesResponse>;
    /**
     * The process and its history so far, then live events; the stream ends (OK) after the
     * process ends. A control plane that stops first ends it with UNAVAILABLE: watch again
     * (elsewhere) with after_sequence set to the last event seen.
     */
    watchProcess: handleServerStreamingCall<WatchProcessRequest, WatchProcessResponse>;
    /**
     * Send a named signal; buffered until a wait_signal step of that name consumes it. A process
     * buffers at most 100 signals, under at most 16 distinct names, with payloads of at most 1 MiB
     * (as JSON) together; a signal beyond that is refused with RESOURCE_EXHAUSTED and changes
     * nothing (retry once a step has consumed some).
     */
    signalProcess: handleUnaryCall<SignalProcessRequest, SignalProcessResponse>;
    /** Cancel a process: running tasks are told over their worker stream; optionally compensate. */
    cancelProcess: handleUnaryCall<CancelProcessRequest, CancelProcessResponse>;
    /** A process's history events in order, paged. */
    getHistory: handleUnaryCall<GetHistoryRequest, GetHistoryResponse>;
    /** Worker: receive tasks of some task types of a service, up to max_in_flight at a time. */
    subscribeTasks: handleServerStreamingCall<SubscribeTasksRequest, SubscribeTasksResponse>;
    /**
     * Worker: report started / heartbeat / completed / failed events over one stream, answered
     * once, with counts, when the client closes its side. Fits a short-lived sender (grpcurl, a
     * script); a long-lived worker wants ReportTaskEventBatches, whose every batch is answered.
     */
    reportTaskEvents: handleClientStreamingCall<ReportTaskEventsRequest, ReportTaskEventsResponse>;
    /**
     * Worker: report started / heartbeat / completed / failed events over one long-lived stream;
     * every request is answered by one response (same batch_id) once each of its events is applied.
     */
    reportTaskEventBatches: handleBidiStreamingCall<ReportTaskEventBatchesRequest, ReportTaskEventBatchesResponse>;
    /** Worker: report a task completed (unary form of a completed event). */
    completeTask: handleUnaryCall<CompleteTaskRequest, CompleteTaskResponse>;
    /** Worker: report a task attempt failed (unary form of a failed event). */
    failTask: handleUnaryCall<FailTaskRequest, FailTaskResponse>;
}
export interface WorkflowClient extends Client {
    /**
     * Validate and store a definition; a changed definition becomes a new version. Validation
     * errors (unknown step references, cycles, bad expressions, unknown fields, ...) are
     * INVALID_ARGUMENT with one google.rpc.BadRequest violation per problem, its field being the
     * path in the document (e.g. "steps[2].retry.backoff"), its description ending with the line
     * (and the column, for syntax errors) when known, e.g. "(line 7)".
     */
    registerDefinition(request: RegisterDefinitionRequest, callback: (error: ServiceError | null, response: RegisterDefinitionResponse) => void): ClientUnaryCall;
    registerDefinition(request: RegisterDefinitionRequest, metadata: Metadata, callback: (error: ServiceError | null, response: RegisterDefinitionResponse) => void): ClientUnaryCall;
    registerDefinition(request: RegisterDefinitionRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: RegisterDefinitionResponse) => void): ClientUnaryCall;
    /** One version of a definition (the latest by default). NOT_FOUND if none. */
    getDefinition(request: GetDefinitionRequest, callback: (error: ServiceError | null, response: GetDefinitionResponse) => void): ClientUnaryCall;
    getDefinition(request: GetDefinitionRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetDefinitionResponse) => void): ClientUnaryCall;
    getDefinition(request: GetDefinitionRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetDefinitionResponse) => void): ClientUnaryCall;
    /** Definitions (latest versions, or every version), paged. */
    listDefinitions(request: ListDefinitionsRequest, callback: (error: ServiceError | null, response: ListDefinitionsResponse) => void): ClientUnaryCall;
    listDefinitions(request: ListDefinitionsRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListDefinitionsResponse) => void): ClientUnaryCall;
    listDefinitions(request: ListDefinitionsRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListDefinitionsResponse) => void): ClientUnaryCall;
    /** Start a process, or return the existing one for the same definition and business key. */
    startProcess(request: StartProcessRequest, callback: (error: ServiceError | null, response: StartProcessResponse) => void): ClientUnaryCall;
    startProcess(request: StartProcessRequest, metadata: Metadata, callback: (error: ServiceError | null, response: StartProcessResponse) => void): ClientUnaryCall;
    startProcess(request: StartProcessRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: StartProcessResponse) => void): ClientUnaryCall;
    /** A process with its current steps, step outputs, attempts and errors. NOT_FOUND if none. */
    getProcess(request: GetProcessRequest, callback: (error: ServiceError | null, response: GetProcessResponse) => void): ClientUnaryCall;
    getProcess(request: GetProcessRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetProcessResponse) => void): ClientUnaryCall;
    getProcess(request: GetProcessRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetProcessResponse) => void): ClientUnaryCall;
    /** Processes filtered by definition, state and business key, newest first, paged. */
    listProcesses(request: ListProcessesRequest, callback: (error: ServiceError | null, response: ListProcessesResponse) => void): ClientUnaryCall;
    listProcesses(request: ListProcessesRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListProcessesResponse) => void): ClientUnaryCall;
    listProcesses(request: ListProcessesRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListProcessesResponse) => void): ClientUnaryCall;
    /**
     * The process and its history so far, then live events; the stream ends (OK) after the
     * process ends. A control plane that stops first ends it with UNAVAILABLE: watch again
     * (elsewhere) with after_sequence set to the last event seen.
     */
    watchProcess(request: WatchProcessRequest, options?: Partial<CallOptions>): ClientReadableStream<WatchProcessResponse>;
    watchProcess(request: WatchProcessRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<WatchProcessResponse>;
    /**
     * Send a named signal; buffered until a wait_signal step of that name consumes it. A process
     * buffers at most 100 signals, under at most 16 distinct names, with payloads of at most 1 MiB
     * (as JSON) together; a signal beyond that is refused with RESOURCE_EXHAUSTED and changes
     * nothing (retry once a step has consumed some).
     */
    signalProcess(request: SignalProcessRequest, callback: (error: ServiceError | null, response: SignalProcessResponse) => void): ClientUnaryCall;
    signalProcess(request: SignalProcessRequest, metadata: Metadata, callback: (error: ServiceError | null, response: SignalProcessResponse) => void): ClientUnaryCall;
    signalProcess(request: SignalProcessRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: SignalProcessResponse) => void): ClientUnaryCall;
    /** Cancel a process: running tasks are told over their worker stream; optionally compensate. */
    cancelProcess(request: CancelProcessRequest, callback: (error: ServiceError | null, response: CancelProcessResponse) => void): ClientUnaryCall;
    cancelProcess(request: CancelProcessRequest, metadata: Metadata, callback: (error: ServiceError | null, response: CancelProcessResponse) => void): ClientUnaryCall;
    cancelProcess(request: CancelProcessRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: CancelProcessResponse) => void): ClientUnaryCall;
    /** A process's history events in order, paged. */
    getHistory(request: GetHistoryRequest, callback: (error: ServiceError | null, response: GetHistoryResponse) => void): ClientUnaryCall;
    getHistory(request: GetHistoryRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetHistoryResponse) => void): ClientUnaryCall;
    getHistory(request: GetHistoryRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetHistoryResponse) => void): ClientUnaryCall;
    /** Worker: receive tasks of some task types of a service, up to max_in_flight at a time. */
    subscribeTasks(request: SubscribeTasksRequest, options?: Partial<CallOptions>): ClientReadableStream<SubscribeTasksResponse>;
    subscribeTasks(request: SubscribeTasksRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<SubscribeTasksResponse>;
    /**
     * Worker: report started / heartbeat / completed / failed events over one stream, answered
     * once, with counts, when the client closes its side. Fits a short-lived sender (grpcurl, a
     * script); a long-lived worker wants ReportTaskEventBatches, whose every batch is answered.
     */
    reportTaskEvents(callback: (error: ServiceError | null, response: ReportTaskEventsResponse) => void): ClientWritableStream<ReportTaskEventsRequest>;
    reportTaskEvents(metadata: Metadata, callback: (error: ServiceError | null, response: ReportTaskEventsResponse) => void): ClientWritableStream<ReportTaskEventsRequest>;
    reportTaskEvents(options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ReportTaskEventsResponse) => void): ClientWritableStream<ReportTaskEventsRequest>;
    reportTaskEvents(metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ReportTaskEventsResponse) => void): ClientWritableStream<ReportTaskEventsRequest>;
    /**
     * Worker: report started / heartbeat / completed / failed events over one long-lived stream;
     * every request is answered by one response (same batch_id) once each of its events is applied.
     */
    reportTaskEventBatches(): ClientDuplexStream<ReportTaskEventBatchesRequest, ReportTaskEventBatchesResponse>;
    reportTaskEventBatches(options: Partial<CallOptions>): ClientDuplexStream<ReportTaskEventBatchesRequest, ReportTaskEventBatchesResponse>;
    reportTaskEventBatches(metadata: Metadata, options?: Partial<CallOptions>): ClientDuplexStream<ReportTaskEventBatchesRequest, ReportTaskEventBatchesResponse>;
    /** Worker: report a task completed (unary form of a completed event). */
    completeTask(request: CompleteTaskRequest, callback: (error: ServiceError | null, response: CompleteTaskResponse) => void): ClientUnaryCall;
    completeTask(request: CompleteTaskRequest, metadata: Metadata, callback: (error: ServiceError | null, response: CompleteTaskResponse) => void): ClientUnaryCall;
    completeTask(request: CompleteTaskRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: CompleteTaskResponse) => void): ClientUnaryCall;
    /** Worker: report a task attempt failed (unary form of a failed event). */
    failTask(request: FailTaskRequest, callback: (error: ServiceError | null, response: FailTaskResponse) => void): ClientUnaryCall;
    failTask(request: FailTaskRequest, metadata: Metadata, callback: (error: ServiceError | null, response: FailTaskResponse) => void): ClientUnaryCall;
    failTask(request: FailTaskRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: FailTaskResponse) => void): ClientUnaryCall;
}
export declare const WorkflowClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): WorkflowClient;
    service: typeof WorkflowService;
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
