// A Worker's task events (started, heartbeat, completed, failed), written in batches on its
// session's ReportTaskEventBatches stream, each batch kept until the control plane answers it and
// written again when the stream breaks first, as the Python SDK's Reports do
// (clients/python/hms_mgmt/_reports.py). The Worker only calls send / serve / settled, so that the report
// protocol stays in this module.
//
// Events sent in one turn of the event loop go out in one batch, so the control plane applies them
// concurrently and their transitions share commits. The control plane answers every batch once its
// events are applied; a stream that ends first (its replica went away, the store was unreachable)
// leaves its unanswered batches to be written again, on a new stream of the same session after a
// backoff or on the next session's. A repeat is harmless: it is answered ALREADY_REPORTED (or
// STALE_ATTEMPT, TASK_CANCELLED) and changes nothing. Only completions and failures are kept; a
// heartbeat is worth sending only while a stream is open.
import { pause, unavailable } from './endpoints.js';
import { describe } from './errors.js';
import { ReportResult, ReportTaskEventBatchesRequest, } from './gen/hms/mgmt/v1/workflow.js';
const BATCH = 1000; // events per request, the most the control plane takes
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2000;
/** Whether `event` ends its attempt (completed or failed): the reports that must not be lost. */
export function isOutcome(event) {
    return event.completed !== undefined || event.failed !== undefined;
}
export class Reports {
    #owner;
    #logger;
    #pending = []; // not yet written
    #unanswered = new Map(); // written on the open stream, by batch id
    #nextBatchId = 1;
    #write; // writes what is pending on the open stream
    #writeScheduled = false;
    #answeredAny = false; // on the current stream
    #settledWaiters = [];
    constructor(owner, logger) {
        this.#owner = owner;
        this.#logger = logger;
    }
    /** Completions and failures the control plane has not answered yet. */
    get unsent() {
        return this.#countUnanswered() + this.#pending.filter(isOutcome).length;
    }
    /** Queue one event for the stream (a heartbeat is dropped while no stream is open). */
    send(event) {
        if (!this.#write && !isOutcome(event))
            return;
        this.#pending.push(event);
        if (this.#write && !this.#writeScheduled) {
            this.#writeScheduled = true;
            setImmediate(() => {
                this.#writeScheduled = false;
                this.#write?.();
            });
        }
    }
    /** Resolves once every event sent so far has been answered. */
    settled() {
        if (!this.#pending.length && !this.#unanswered.size)
            return Promise.resolve();
        return new Promise((resolve) => this.#settledWaiters.push(resolve));
    }
    /**
     * Keep a report stream open (made by `open`, on the session's replica) until `signal`: write what is
     * sent, read the answers; when the stream breaks, open another after a backoff and write again what
     * it left unanswered. Resolves once `signal` aborts.
     */
    async serve(open, signal) {
        let delay = RETRY_FIRST_MS;
        while (!signal.aborted) {
            const failure = await this.#exchange(open(), signal);
            const kept = this.#countUnanswered();
            this.#requeue();
            if (signal.aborted)
                return;
            // One warning when a working stream breaks, not one per attempt while it keeps failing.
            const log = this.#answeredAny || delay === RETRY_FIRST_MS ? this.#logger.warn : this.#logger.info;
            log.call(this.#logger, `${this.#owner}: report stream ended (${describe(failure)}); ${kept} reports kept for sending again`);
            if (this.#answeredAny)
                delay = RETRY_FIRST_MS;
            await pause(delay, signal); // the replica (or its store) may need a moment
            delay = Math.min(delay * 2, RETRY_MAX_MS);
        }
    }
    /** Write batches and read answers until the stream fails or `signal` aborts; resolves to the failure. */
    #exchange(call, signal) {
        this.#answeredAny = false;
        const kept = this.#pending.filter(isOutcome).length;
        if (kept)
            this.#logger.info(`${this.#owner}: sending ${kept} reports kept since the last stream broke`);
        return new Promise((resolve) => {
            const finish = (failure) => {
                if (this.#write !== write)
                    return;
                this.#write = undefined;
                signal.removeEventListener('abort', cancel);
                call.cancel();
                resolve(failure);
            };
            const cancel = () => finish(undefined);
            const write = () => {
                while (this.#pending.length) {
                    const events = this.#pending.splice(0, BATCH);
                    const batchId = this.#nextBatchId++;
                    this.#unanswered.set(batchId, events);
                    call.write(ReportTaskEventBatchesRequest.fromPartial({ batchId, events }));
                }
            };
            this.#write = write;
            call.on('data', (answer) => this.#answered(answer));
            call.on('error', finish);
            call.on('end', () => finish(unavailable('the control plane ended the report stream')));
            signal.addEventListener('abort', cancel, { once: true });
            write();
        });
    }
    #answered(answer) {
        this.#answeredAny = true;
        if (!this.#unanswered.delete(answer.batchId))
            return;
        const refused = answer.results.filter((r) => r === ReportResult.REPORT_RESULT_INVALID).length;
        if (refused) {
            const problems = answer.violations.slice(0, 3).map((v) => `${v.field}: ${v.description}`);
            this.#logger.warn(`${this.#owner}: ${refused} reports refused: ${problems.join('; ')}`);
        }
        this.#checkSettled();
    }
    #countUnanswered() {
        let count = 0;
        for (const events of this.#unanswered.values())
            count += events.filter(isOutcome).length;
        return count;
    }
    /** A stream is gone: its unanswered outcomes go back in front of what is pending, in order. */
    #requeue() {
        const again = [...this.#unanswered.keys()].sort((a, b) => a - b).flatMap((id) => this.#unanswered.get(id).filter(isOutcome));
        this.#unanswered.clear();
        this.#pending = [...again, ...this.#pending.filter(isOutcome)];
        this.#checkSettled();
    }
    #checkSettled() {
        if (this.#pending.length || this.#unanswered.size)
            return;
        const waiters = this.#settledWaiters;
        this.#settledWaiters = [];
        for (const resolve of waiters)
            resolve();
    }
}
