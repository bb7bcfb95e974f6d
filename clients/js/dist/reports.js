// A Worker's task events (started, heartbeat, completed, failed), sent over its session's
// ReportTaskEvents stream and kept until the control plane confirms them. The Worker only calls
// attach / detach / send, so that a change of the report protocol stays in this module.
//
// With the contract as it stands, ReportTaskEvents is a client stream answered once, when the client
// closes it, after every event on it is applied. So outcomes written on a stream that breaks first
// are sent again by the next session (a repeat answers ALREADY_REPORTED or STALE_ATTEMPT and changes
// nothing), and a stream is closed and its answer awaited every `confirmEvery` outcomes, which
// bounds what is kept. Events sent in one turn of the event loop go out in one frame, so the control
// plane applies them together.
import { describe } from './errors.js';
import { ReportTaskEventsRequest } from './gen/hms/mgmt/v1/workflow.js';
const MAX_FRAME = 1000;
function isOutcome(event) {
    return event.completed !== undefined || event.failed !== undefined;
}
export class Reports {
    #owner;
    #logger;
    #confirmEvery;
    #confirmTimeoutMs;
    #pending = []; // not yet written
    #open; // the session's; undefined between sessions
    #stream;
    #lock = Promise.resolve();
    #flushing; // the frame being gathered in this turn of the event loop
    constructor(owner, logger, { confirmEvery = 1000, confirmTimeoutMs = 30_000 } = {}) {
        this.#owner = owner;
        this.#logger = logger;
        this.#confirmEvery = confirmEvery;
        this.#confirmTimeoutMs = confirmTimeoutMs;
    }
    /** Outcomes not yet confirmed by the control plane. */
    get unsent() {
        return this.#pending.filter(isOutcome).length + (this.#stream?.outcomes.length ?? 0);
    }
    /**
     * Send over a new session's streams; first resend what earlier sessions could not, and wait until
     * the control plane has applied it, so that it does not offer those tasks again.
     */
    async attach(open) {
        this.#open = open;
        if (this.#pending.length) {
            this.#logger.info(`${this.#owner}: sending ${this.#pending.length} reports again`);
            await this.#locked(() => this.#write());
            await this.#locked(() => this.#close());
        }
    }
    /** The session is over: close its stream; what it cannot confirm waits for the next session. */
    async detach() {
        this.#open = undefined;
        await this.#locked(() => this.#close());
    }
    /** Send (or keep, between sessions) one event; heartbeats between sessions are dropped. */
    send(event) {
        if (!this.#open && !isOutcome(event))
            return Promise.resolve();
        this.#pending.push(event);
        if (!this.#open)
            return Promise.resolve();
        this.#flushing ??= new Promise((resolve) => setImmediate(resolve)).then(() => {
            this.#flushing = undefined;
            return this.#locked(() => this.#write());
        });
        return this.#flushing;
    }
    #locked(action) {
        const run = this.#lock.then(action);
        this.#lock = run.catch(() => { });
        return run;
    }
    async #write() {
        while (this.#pending.length && this.#open) {
            const stream = (this.#stream ??= this.#start(this.#open));
            const events = this.#pending.splice(0, MAX_FRAME);
            stream.call.write(ReportTaskEventsRequest.fromPartial({ events }));
            stream.outcomes.push(...events.filter(isOutcome));
            if (stream.outcomes.length >= this.#confirmEvery)
                await this.#close();
        }
    }
    #start(open) {
        let call;
        const answer = new Promise((resolve, reject) => {
            call = open((error, reply) => (error ? reject(error) : resolve(reply)));
        });
        call.on('error', () => { }); // failures reach `answer`
        const stream = { call, answer, outcomes: [], closing: false };
        answer.catch((err) => {
            if (stream.closing)
                return; // #close deals with it
            // It broke while open: what it carried may not have been applied.
            if (this.#stream === stream)
                this.#stream = undefined;
            this.#logger.warn(`${this.#owner}: report stream broke (${describe(err)}); reports kept for resending`);
            this.#keep(stream.outcomes);
            stream.outcomes = [];
        });
        return stream;
    }
    async #close() {
        const stream = this.#stream;
        this.#stream = undefined;
        if (!stream)
            return;
        stream.closing = true;
        const written = stream.outcomes;
        stream.outcomes = [];
        stream.call.end();
        let timer;
        const timeout = new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${this.#confirmTimeoutMs} ms`)), this.#confirmTimeoutMs);
        });
        try {
            const answer = await Promise.race([stream.answer, timeout]);
            if (answer.invalid) {
                const problems = answer.violations.slice(0, 3).map((v) => `${v.field}: ${v.description}`);
                this.#logger.warn(`${this.#owner}: ${answer.invalid} reports refused: ${problems.join('; ')}`);
            }
        }
        catch (err) {
            if (written.length) {
                this.#logger.warn(`${this.#owner}: ${written.length} reports unconfirmed (${describe(err)}); kept for resending`);
            }
            stream.call.cancel();
            this.#keep(written);
        }
        finally {
            clearTimeout(timer);
        }
    }
    /** Put `events` back in front of the pending ones, for the next stream. */
    #keep(events) {
        this.#pending.unshift(...events);
    }
}
