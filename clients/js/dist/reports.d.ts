import type { ClientWritableStream, ServiceError } from '@grpc/grpc-js';
import type { Logger } from './endpoints.js';
import { ReportTaskEventsRequest, type ReportTaskEventsResponse, type TaskEvent } from './gen/hms/mgmt/v1/workflow.js';
/** Opens a ReportTaskEvents stream on the session's replica; `done` gets its answer. */
export type ReportOpener = (done: (error: ServiceError | null, answer: ReportTaskEventsResponse) => void) => ClientWritableStream<ReportTaskEventsRequest>;
export declare class Reports {
    #private;
    constructor(owner: string, logger: Logger, { confirmEvery, confirmTimeoutMs }?: {
        confirmEvery?: number | undefined;
        confirmTimeoutMs?: number | undefined;
    });
    /** Outcomes not yet confirmed by the control plane. */
    get unsent(): number;
    /**
     * Send over a new session's streams; first resend what earlier sessions could not, and wait until
     * the control plane has applied it, so that it does not offer those tasks again.
     */
    attach(open: ReportOpener): Promise<void>;
    /** The session is over: close its stream; what it cannot confirm waits for the next session. */
    detach(): Promise<void>;
    /** Send (or keep, between sessions) one event; heartbeats between sessions are dropped. */
    send(event: TaskEvent): Promise<void>;
}
