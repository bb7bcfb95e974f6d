import type { Context } from './context.js';
import { type ScheduleInfo, type TriggerScheduleResponse } from './gen/hms/mgmt/v1/schedule.js';
/** What a nominal time does while the process of the previous one still runs. */
export type Overlap = 'skip' | 'buffer_one' | 'allow_all';
export interface ScheduleOptions {
    /** A five-field cron expression (give this or `everyMs`). */
    cron?: string;
    /** The IANA time zone `cron` is read in (UTC when empty). */
    timeZone?: string;
    /** A fixed interval between nominal times. */
    everyMs?: number;
    /** Where in the interval the nominal times fall. */
    phaseMs?: number;
    /** Each start is delayed by up to this much at random (the nominal time and business key stay). */
    jitterMs?: number;
    /** No nominal time before this. */
    startTime?: Date;
    /** No nominal time after this. */
    endTime?: Date;
    /** Definition version; the latest at each start when unset. */
    version?: number;
    /** Default 'skip'. */
    overlap?: Overlap;
    /** How far back missed nominal times are still started after an outage (the server's default when unset). */
    catchupWindowMs?: number;
    /** Created paused. */
    paused?: boolean;
    note?: string;
}
/** Schedule calls; answers are the wire messages of hms.mgmt.v1 as plain objects. */
export declare class ScheduleApi {
    #private;
    constructor(ctx: Context);
    /**
     * Create schedule `id` starting `definition` with `input`, on `cron` (in `timeZone`) or `everyMs`.
     * Not retried on another replica: a retry after a lost answer would say ALREADY_EXISTS.
     */
    create(id: string, definition: string, input?: object, options?: ScheduleOptions): Promise<ScheduleInfo>;
    /** One schedule with its state (next nominal time, last process, counters). */
    get(id: string): Promise<ScheduleInfo>;
    /** Every schedule, by id, every page. */
    list(): Promise<ScheduleInfo[]>;
    /** Stop firing (nominal times passing meanwhile are skipped); pausing a paused schedule changes nothing. */
    pause(id: string, { note }?: {
        note?: string | undefined;
    }): Promise<ScheduleInfo>;
    /** Fire again from the next nominal time. */
    unpause(id: string, { note }?: {
        note?: string | undefined;
    }): Promise<ScheduleInfo>;
    /** Start a process now under the overlap policy; retried on another replica only with a `requestId`. */
    trigger(id: string, { requestId }?: {
        requestId?: string | undefined;
    }): Promise<TriggerScheduleResponse>;
    /** Delete a schedule (the processes it started stay). */
    delete(id: string): Promise<void>;
}
