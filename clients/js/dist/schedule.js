// mgmt.schedules: processes started on a cron or an interval (the Schedule service; docs/schedules.md).
import { CreateScheduleRequest, DeleteScheduleRequest, GetScheduleRequest, ListSchedulesRequest, OverlapPolicy, PauseScheduleRequest, TriggerScheduleRequest, UnpauseScheduleRequest, } from './gen/hms/mgmt/v1/schedule.js';
import { duration, toPayload } from './payload.js';
const OVERLAP = {
    skip: OverlapPolicy.OVERLAP_POLICY_SKIP,
    buffer_one: OverlapPolicy.OVERLAP_POLICY_BUFFER_ONE,
    allow_all: OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL,
};
/** Schedule calls; answers are the wire messages of hms.mgmt.v1 as plain objects. */
export class ScheduleApi {
    #ctx;
    constructor(ctx) {
        this.#ctx = ctx;
    }
    /**
     * Create schedule `id` starting `definition` with `input`, on `cron` (in `timeZone`) or `everyMs`.
     * Not retried on another replica: a retry after a lost answer would say ALREADY_EXISTS.
     */
    async create(id, definition, input, options = {}) {
        const overlap = options.overlap ?? 'skip';
        if (!Object.hasOwn(OVERLAP, overlap)) {
            throw new TypeError(`overlap must be one of ${Object.keys(OVERLAP).join(', ')}, got ${JSON.stringify(overlap)}`);
        }
        const ms = (value) => (value ? duration(value) : undefined);
        const request = CreateScheduleRequest.fromPartial({
            id,
            spec: {
                cron: options.cron ?? '',
                timeZone: options.timeZone ?? '',
                interval: ms(options.everyMs),
                phase: ms(options.phaseMs),
                jitter: ms(options.jitterMs),
                startTime: options.startTime,
                endTime: options.endTime,
            },
            action: { definition, version: options.version ?? 0, input: toPayload(input, 'input') },
            overlap: OVERLAP[overlap],
            catchupWindow: options.catchupWindowMs === undefined ? undefined : duration(options.catchupWindowMs),
            paused: options.paused ?? false,
            note: options.note ?? '',
        });
        return (await this.#ctx.unary((e) => [e.schedule, e.schedule.createSchedule], request)).schedule;
    }
    /** One schedule with its state (next nominal time, last process, counters). */
    async get(id) {
        const request = GetScheduleRequest.fromPartial({ id });
        return (await this.#ctx.unary((e) => [e.schedule, e.schedule.getSchedule], request, true)).schedule;
    }
    /** Every schedule, by id, every page. */
    async list() {
        const found = [];
        let pageToken = '';
        do {
            const request = ListSchedulesRequest.fromPartial({ pageSize: 1000, pageToken });
            const page = await this.#ctx.unary((e) => [e.schedule, e.schedule.listSchedules], request, true);
            found.push(...page.schedules);
            pageToken = page.nextPageToken;
        } while (pageToken);
        return found;
    }
    /** Stop firing (nominal times passing meanwhile are skipped); pausing a paused schedule changes nothing. */
    async pause(id, { note = '' } = {}) {
        const request = PauseScheduleRequest.fromPartial({ id, note });
        return (await this.#ctx.unary((e) => [e.schedule, e.schedule.pauseSchedule], request, true)).schedule;
    }
    /** Fire again from the next nominal time. */
    async unpause(id, { note = '' } = {}) {
        const request = UnpauseScheduleRequest.fromPartial({ id, note });
        return (await this.#ctx.unary((e) => [e.schedule, e.schedule.unpauseSchedule], request, true)).schedule;
    }
    /** Start a process now under the overlap policy; retried on another replica only with a `requestId`. */
    trigger(id, { requestId = '' } = {}) {
        const request = TriggerScheduleRequest.fromPartial({ id, requestId });
        return this.#ctx.unary((e) => [e.schedule, e.schedule.triggerSchedule], request, Boolean(requestId));
    }
    /** Delete a schedule (the processes it started stay). */
    async delete(id) {
        await this.#ctx.unary((e) => [e.schedule, e.schedule.deleteSchedule], DeleteScheduleRequest.fromPartial({ id }));
    }
}
