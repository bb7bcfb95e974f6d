import type { ClientDuplexStream } from '@grpc/grpc-js';
import { type Logger } from './endpoints.js';
import { ReportTaskEventBatchesRequest, type ReportTaskEventBatchesResponse, type TaskEvent } from './gen/hms/mgmt/v1/workflow.js';
/** Opens a ReportTaskEventBatches stream on the session's replica. */
export type ReportOpener = () => ClientDuplexStream<ReportTaskEventBatchesRequest, ReportTaskEventBatchesResponse>;
/** Whether `event` ends its attempt (completed or failed): the reports that must not be lost. */
export declare function isOutcome(event: TaskEvent): boolean;
export declare class Reports {
    #private;
    constructor(owner: string, logger: Logger);
    /** Completions and failures the control plane has not answered yet. */
    get unsent(): number;
    /** Queue one event for the stream (a heartbeat is dropped while no stream is open). */
    send(event: TaskEvent): void;
    /** Resolves once every event sent so far has been answered. */
    settled(): Promise<void>;
    /**
     * Keep a report stream open (made by `open`, on the session's replica) until `signal`: write what is
     * sent, read the answers; when the stream breaks, open another after a backoff and write again what
     * it left unanswered. Resolves once `signal` aborts.
     */
    serve(open: ReportOpener, signal: AbortSignal): Promise<void>;
}
