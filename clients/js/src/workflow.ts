// mgmt.workflow: definitions, processes and their history (the task side is the Worker's).

import type { Context } from './context.js';
import { resumable } from './endpoints.js';
import type { BusMessage } from './gen/hms/mgmt/v1/bus.js';
import {
  CancelProcessRequest,
  CompleteTaskRequest,
  FailProcessRequest,
  type CompleteTaskResponse,
  type Definition,
  type Failure,
  FailTaskRequest,
  type FailTaskResponse,
  GetDefinitionRequest,
  GetHistoryRequest,
  GetProcessRequest,
  ListDefinitionsRequest,
  type HistoryEvent,
  type Incident,
  IncidentFilter,
  ListIncidentsRequest,
  ListProcessesRequest,
  type Process,
  ProcessState,
  RegisterDefinitionRequest,
  type RegisterDefinitionResponse,
  RetryProcessRequest,
  RetryStepRequest,
  SignalProcessRequest,
  type SignalProcessResponse,
  SkipStepRequest,
  StartProcessRequest,
  WatchProcessRequest,
  type WatchProcessResponse,
} from './gen/hms/mgmt/v1/workflow.js';
import { type JsonObject, toPayload } from './payload.js';

// Registering a large definition compiles and checks it: longer than the default deadline allows.
const APPLY_TIMEOUT_MS = 120_000;

/** The states a process never leaves. */
export const FINAL_STATES: ReadonlySet<ProcessState> = new Set([
  ProcessState.PROCESS_STATE_COMPLETED,
  ProcessState.PROCESS_STATE_FAILED,
  ProcessState.PROCESS_STATE_COMPENSATED,
  ProcessState.PROCESS_STATE_CANCELLED,
]);

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
export class WorkflowApi {
  readonly #ctx: Context;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  /** Register a definition (YAML or JSON); a changed one becomes a new version. */
  apply(source: string, { validateOnly = false } = {}): Promise<RegisterDefinitionResponse> {
    const request = RegisterDefinitionRequest.fromPartial({ source, validateOnly });
    // The same content is the same version, so registering it again is harmless.
    return this.#ctx.unary((e) => [e.workflow, e.workflow.registerDefinition], request, true, APPLY_TIMEOUT_MS);
  }

  /** A stored definition version (the latest when `version` is 0), with its source and spec. */
  async definition(name: string, version = 0): Promise<Definition> {
    const request = GetDefinitionRequest.fromPartial({ name, version });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.getDefinition], request, true)).definition!;
  }

  /** Stored definitions (the latest version of each, or every version), without source, every page. */
  async definitions({ name = '', allVersions = false } = {}): Promise<Definition[]> {
    const found: Definition[] = [];
    let pageToken = '';
    do {
      const request = ListDefinitionsRequest.fromPartial({ name, allVersions, pageSize: 1000, pageToken });
      const page = await this.#ctx.unary((e) => [e.workflow, e.workflow.listDefinitions], request, true);
      found.push(...page.definitions);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return found;
  }

  /**
   * Start a process of `definition` with `input` (a plain object); resolves to its id. With a
   * `businessKey` an existing process for that key is returned instead, and the call is retried on
   * the next replica (without one each try could start a process, so it is not).
   */
  async start(definition: string, input?: object, options: StartOptions = {}): Promise<string> {
    const businessKey = options.businessKey ?? '';
    const request = StartProcessRequest.fromPartial({
      definition,
      version: options.version ?? 0,
      input: toPayload(input, 'input'),
      businessKey,
    });
    const reply = await this.#ctx.unary((e) => [e.workflow, e.workflow.startProcess], request, Boolean(businessKey));
    return reply.process!.id;
  }

  /** A process with its steps, outputs, attempts and errors. */
  async get(processId: string): Promise<Process> {
    const request = GetProcessRequest.fromPartial({ processId });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.getProcess], request, true)).process!;
  }

  /** Where a process stands: its state, current steps, output or error. */
  async status(processId: string): Promise<ProcessStatus> {
    return statusOf(await this.get(processId));
  }

  /** The newest processes matching the filters (one page). */
  async list(options: ListOptions = {}): Promise<Process[]> {
    const request = ListProcessesRequest.fromPartial({ ...options, pageSize: options.pageSize ?? 50 });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.listProcesses], request, true)).processes;
  }

  /** The newest incidents (one page): open ones, unless `includeResolved`. */
  async incidents(options: IncidentOptions = {}): Promise<Incident[]> {
    const request = ListIncidentsRequest.fromPartial({ ...options, pageSize: options.pageSize ?? 50 });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.listIncidents], request, true)).incidents;
  }

  /**
   * A fresh set of attempts for a step in INCIDENT (with `input` instead of its mapping, if given).
   * Operator actions are not retried on another replica: a repeat would find the step no longer in
   * INCIDENT and answer FAILED_PRECONDITION.
   */
  async retryStep(processId: string, stepId: string, reason: string, { input }: { input?: object } = {}): Promise<Process> {
    const request = RetryStepRequest.fromPartial({
      processId,
      stepId,
      reason,
      input: input === undefined ? undefined : toPayload(input, 'input'),
    });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.retryStep], request)).process!;
  }

  /** A step in INCIDENT counts as completed with `output`; the steps after it enter. */
  async skipStep(processId: string, stepId: string, reason: string, { output }: { output?: object } = {}): Promise<Process> {
    const request = SkipStepRequest.fromPartial({ processId, stepId, reason, output: toPayload(output, 'output') });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.skipStep], request)).process!;
  }

  /** Give up on a process's incidents: it compensates its completed steps, or fails. */
  async failProcess(processId: string, reason: string): Promise<Process> {
    const request = FailProcessRequest.fromPartial({ processId, reason });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.failProcess], request)).process!;
  }

  /** Resume a FAILED process from its failed step(s). */
  async retryProcess(processId: string, reason: string): Promise<Process> {
    const request = RetryProcessRequest.fromPartial({ processId, reason });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.retryProcess], request)).process!;
  }

  /** The whole history of a process, every page. */
  async history(processId: string): Promise<HistoryEvent[]> {
    const events: HistoryEvent[] = [];
    let pageToken = '';
    do {
      const request = GetHistoryRequest.fromPartial({ processId, pageSize: 1000, pageToken });
      const page = await this.#ctx.unary((e) => [e.workflow, e.workflow.getHistory], request, true);
      events.push(...page.events);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return events;
  }

  /**
   * The process and its history so far, then live events until it ends (the last frame carries the
   * final process). With several addresses a watch whose replica goes away resumes on the next one
   * after the last event seen; its first frame there carries the process again.
   */
  async *watch(processId: string, options: ProcessWatchOptions = {}): AsyncGenerator<WatchProcessResponse, void, undefined> {
    const endpoints = this.#ctx.endpoints;
    let seen = options.afterSequence ?? 0;
    let ended = false;
    const frames = resumable<WatchProcessResponse>(endpoints, {
      open: (e) =>
        e.workflow.watchProcess(WatchProcessRequest.fromPartial({ processId, afterSequence: seen }), this.#ctx.metadata()),
      // A stream that ends cleanly before the process did (older control planes did so when they
      // stopped): a replica gone, never a process to return; with one address, Unavailable.
      endedEarly: () => !ended,
      signal: options.signal,
    });
    for await (const frame of frames) {
      if (frame.events.length) seen = frame.events[frame.events.length - 1]!.sequence;
      ended ||= frame.process !== undefined && FINAL_STATES.has(frame.process.state);
      yield frame;
    }
    options.signal?.throwIfAborted();
  }

  /** Wait until the process ends; resolves to it. `signal` gives up (rejects with its reason). */
  async wait(processId: string, { signal }: { signal?: AbortSignal } = {}): Promise<Process> {
    let final: Process | undefined;
    for await (const frame of this.watch(processId, signal ? { signal } : {})) {
      if (frame.process) final = frame.process;
    }
    return final && FINAL_STATES.has(final.state) ? final : this.get(processId);
  }

  /**
   * Send a signal (buffered until a wait_signal step of that name takes it). Retried on the next
   * replica only with a `signalId`, which the control plane deduplicates.
   */
  signal(processId: string, name: string, payload?: object, { signalId = '' } = {}): Promise<SignalProcessResponse> {
    const request = SignalProcessRequest.fromPartial({ processId, name, payload: toPayload(payload), signalId });
    return this.#ctx.unary((e) => [e.workflow, e.workflow.signalProcess], request, Boolean(signalId));
  }

  /** Cancel a process, compensating its completed steps first when asked. */
  async cancel(processId: string, { reason = '', compensate = false } = {}): Promise<Process> {
    const request = CancelProcessRequest.fromPartial({ processId, reason, compensate });
    return (await this.#ctx.unary((e) => [e.workflow, e.workflow.cancelProcess], request)).process!;
  }

  /** Report a task attempt completed (retried: a repeat answers ALREADY_REPORTED and changes nothing). */
  complete(taskToken: string, output?: object, { outbox = [] }: { outbox?: Partial<BusMessage>[] } = {}): Promise<CompleteTaskResponse> {
    const request = CompleteTaskRequest.fromPartial({ taskToken, output: toPayload(output, 'output'), outbox });
    return this.#ctx.unary((e) => [e.workflow, e.workflow.completeTask], request, true);
  }

  /** Report a task attempt failed (retried: a repeat answers ALREADY_REPORTED and changes nothing). */
  fail(
    taskToken: string,
    errorCode: string,
    message = '',
    { nonRetryable = false, details }: { nonRetryable?: boolean; details?: object } = {},
  ): Promise<FailTaskResponse> {
    const request = FailTaskRequest.fromPartial({
      taskToken,
      errorCode,
      message,
      nonRetryable,
      details: details === undefined ? undefined : toPayload(details, 'details'),
    });
    return this.#ctx.unary((e) => [e.workflow, e.workflow.failTask], request, true);
  }
}

function statusOf(process: Process): ProcessStatus {
  return {
    id: process.id,
    definition: process.definition,
    definitionVersion: process.definitionVersion,
    businessKey: process.businessKey,
    state: process.state,
    final: FINAL_STATES.has(process.state),
    currentStepIds: process.currentStepIds,
    output: process.output as JsonObject | undefined,
    error: process.error,
    cancelReason: process.cancelReason,
    updatedAt: process.updatedAt,
  };
}
