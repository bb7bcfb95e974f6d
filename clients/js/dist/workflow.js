// mgmt.workflow: definitions, processes and their history (the task side is the Worker's).
import { resumable } from './endpoints.js';
import { CancelProcessRequest, CompleteTaskRequest, FailProcessRequest, FailTaskRequest, GetDefinitionRequest, GetHistoryRequest, GetProcessRequest, ListDefinitionsRequest, ListIncidentsRequest, ListProcessesRequest, ProcessState, RegisterDefinitionRequest, RetryProcessRequest, RetryStepRequest, SignalProcessRequest, SkipStepRequest, StartProcessRequest, WatchProcessRequest, } from './gen/hms/mgmt/v1/workflow.js';
import { toPayload } from './payload.js';
// Registering a large definition compiles and checks it: longer than the default deadline allows.
const APPLY_TIMEOUT_MS = 120_000;
/** The states a process never leaves. */
export const FINAL_STATES = new Set([
    ProcessState.PROCESS_STATE_COMPLETED,
    ProcessState.PROCESS_STATE_FAILED,
    ProcessState.PROCESS_STATE_COMPENSATED,
    ProcessState.PROCESS_STATE_CANCELLED,
]);
/** Workflow calls; answers are the wire messages of hms.mgmt.v1 as plain objects. */
export class WorkflowApi {
    #ctx;
    constructor(ctx) {
        this.#ctx = ctx;
    }
    /** Register a definition (YAML or JSON); a changed one becomes a new version. */
    apply(source, { validateOnly = false } = {}) {
        const request = RegisterDefinitionRequest.fromPartial({ source, validateOnly });
        // The same content is the same version, so registering it again is harmless.
        return this.#ctx.unary((e) => [e.workflow, e.workflow.registerDefinition], request, true, APPLY_TIMEOUT_MS);
    }
    /** A stored definition version (the latest when `version` is 0), with its source and spec. */
    async definition(name, version = 0) {
        const request = GetDefinitionRequest.fromPartial({ name, version });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.getDefinition], request, true)).definition;
    }
    /** Stored definitions (the latest version of each, or every version), without source, every page. */
    async definitions({ name = '', allVersions = false } = {}) {
        const found = [];
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
    async start(definition, input, options = {}) {
        const businessKey = options.businessKey ?? '';
        const request = StartProcessRequest.fromPartial({
            definition,
            version: options.version ?? 0,
            input: toPayload(input, 'input'),
            businessKey,
        });
        const reply = await this.#ctx.unary((e) => [e.workflow, e.workflow.startProcess], request, Boolean(businessKey));
        return reply.process.id;
    }
    /** A process with its steps, outputs, attempts and errors. */
    async get(processId) {
        const request = GetProcessRequest.fromPartial({ processId });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.getProcess], request, true)).process;
    }
    /** Where a process stands: its state, current steps, output or error. */
    async status(processId) {
        return statusOf(await this.get(processId));
    }
    /** The newest processes matching the filters (one page). */
    async list(options = {}) {
        const request = ListProcessesRequest.fromPartial({ ...options, pageSize: options.pageSize ?? 50 });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.listProcesses], request, true)).processes;
    }
    /** The newest incidents (one page): open ones, unless `includeResolved`. */
    async incidents(options = {}) {
        const request = ListIncidentsRequest.fromPartial({ ...options, pageSize: options.pageSize ?? 50 });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.listIncidents], request, true)).incidents;
    }
    /**
     * A fresh set of attempts for a step in INCIDENT (with `input` instead of its mapping, if given).
     * Operator actions are not retried on another replica: a repeat would find the step no longer in
     * INCIDENT and answer FAILED_PRECONDITION.
     */
    async retryStep(processId, stepId, reason, { input } = {}) {
        const request = RetryStepRequest.fromPartial({
            processId,
            stepId,
            reason,
            input: input === undefined ? undefined : toPayload(input, 'input'),
        });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.retryStep], request)).process;
    }
    /** A step in INCIDENT counts as completed with `output`; the steps after it enter. */
    async skipStep(processId, stepId, reason, { output } = {}) {
        const request = SkipStepRequest.fromPartial({ processId, stepId, reason, output: toPayload(output, 'output') });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.skipStep], request)).process;
    }
    /** Give up on a process's incidents: it compensates its completed steps, or fails. */
    async failProcess(processId, reason) {
        const request = FailProcessRequest.fromPartial({ processId, reason });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.failProcess], request)).process;
    }
    /** Resume a FAILED process from its failed step(s). */
    async retryProcess(processId, reason) {
        const request = RetryProcessRequest.fromPartial({ processId, reason });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.retryProcess], request)).process;
    }
    /** The whole history of a process, every page. */
    async history(processId) {
        const events = [];
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
    async *watch(processId, options = {}) {
        const endpoints = this.#ctx.endpoints;
        let seen = options.afterSequence ?? 0;
        let ended = false;
        const frames = resumable(endpoints, {
            open: (e) => e.workflow.watchProcess(WatchProcessRequest.fromPartial({ processId, afterSequence: seen }), this.#ctx.metadata()),
            // A stream that ends cleanly before the process did (older control planes did so when they
            // stopped): a replica gone, never a process to return; with one address, Unavailable.
            endedEarly: () => !ended,
            signal: options.signal,
        });
        for await (const frame of frames) {
            if (frame.events.length)
                seen = frame.events[frame.events.length - 1].sequence;
            ended ||= frame.process !== undefined && FINAL_STATES.has(frame.process.state);
            yield frame;
        }
        options.signal?.throwIfAborted();
    }
    /** Wait until the process ends; resolves to it. `signal` gives up (rejects with its reason). */
    async wait(processId, { signal } = {}) {
        let final;
        for await (const frame of this.watch(processId, signal ? { signal } : {})) {
            if (frame.process)
                final = frame.process;
        }
        return final && FINAL_STATES.has(final.state) ? final : this.get(processId);
    }
    /**
     * Send a signal (buffered until a wait_signal step of that name takes it). Retried on the next
     * replica only with a `signalId`, which the control plane deduplicates.
     */
    signal(processId, name, payload, { signalId = '' } = {}) {
        const request = SignalProcessRequest.fromPartial({ processId, name, payload: toPayload(payload), signalId });
        return this.#ctx.unary((e) => [e.workflow, e.workflow.signalProcess], request, Boolean(signalId));
    }
    /** Cancel a process, compensating its completed steps first when asked. */
    async cancel(processId, { reason = '', compensate = false } = {}) {
        const request = CancelProcessRequest.fromPartial({ processId, reason, compensate });
        return (await this.#ctx.unary((e) => [e.workflow, e.workflow.cancelProcess], request)).process;
    }
    /** Report a task attempt completed (retried: a repeat answers ALREADY_REPORTED and changes nothing). */
    complete(taskToken, output, { outbox = [] } = {}) {
        const request = CompleteTaskRequest.fromPartial({ taskToken, output: toPayload(output, 'output'), outbox });
        return this.#ctx.unary((e) => [e.workflow, e.workflow.completeTask], request, true);
    }
    /** Report a task attempt failed (retried: a repeat answers ALREADY_REPORTED and changes nothing). */
    fail(taskToken, errorCode, message = '', { nonRetryable = false, details } = {}) {
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
function statusOf(process) {
    return {
        id: process.id,
        definition: process.definition,
        definitionVersion: process.definitionVersion,
        businessKey: process.businessKey,
        state: process.state,
        final: FINAL_STATES.has(process.state),
        currentStepIds: process.currentStepIds,
        output: process.output,
        error: process.error,
        cancelReason: process.cancelReason,
        updatedAt: process.updatedAt,
    };
}
