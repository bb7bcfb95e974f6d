// mgmt.schedules: processes started on a cron or an interval (the Schedule service; docs/schedules.md).

import type { Context } from './context.js';
import {
  CreateScheduleRequest,
  DeleteScheduleRequest,
  GetScheduleRequest,
  ListSchedulesRequest,
  OverlapPolicy,
  PauseScheduleRequest,
  type ScheduleInfo,
  TriggerScheduleRequest,
  type TriggerScheduleResponse,
  UnpauseScheduleRequest,
} from './gen/hms/mgmt/v1/schedule.js';
import { duration, toPayload } from './payload.js';

/** What a nominal time does while the process of the previous one still runs. */
export type Overlap = 'skip' | 'buffer_one' | 'allow_all';

const OVERLAP: Record<Overlap, OverlapPolicy> = {
  skip: OverlapPolicy.OVERLAP_POLICY_SKIP,
  buffer_one: OverlapPolicy.OVERLAP_POLICY_BUFFER_ONE,
  allow_all: OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL,
};

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
export class ScheduleApi {
  readonly #ctx: Context;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  /**
   * Create schedule `id` starting `definition` with `input`, on `cron` (in `timeZone`) or `everyMs`.
   * Not retried on another replica: a retry after a lost answer would say ALREADY_EXISTS.
   */
  async create(id: string, definition: string, input?: object, options: ScheduleOptions = {}): Promise<ScheduleInfo> {
    const overlap = options.overlap ?? 'skip';
    if (!Object.hasOwn(OVERLAP, overlap)) {
      throw new TypeError(`overlap must be one of ${Object.keys(OVERLAP).join(', ')}, got ${JSON.stringify(overlap)}`);
    }
    const ms = (value: number | undefined) => (value ? duration(value) : undefined);
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
    return (await this.#ctx.unary((e) => [e.schedule, e.schedule.createSchedule], request)).schedule!;
  }

  /** One schedule with its state (next nominal time, last process, counters). */
  async get(id: string): Promise<ScheduleInfo> {
    const request = GetScheduleRequest.fromPartial({ id });
    return (await this.#ctx.unary((e) => [e.schedule, e.schedule.getSchedule], request, true)).schedule!;
  }

  /** Every schedule, by id, every page. */
  async list(): Promise<ScheduleInfo[]> {
    const found: ScheduleInfo[] = [];
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
  async pause(id: string, { note = '' } = {}): Promise<ScheduleInfo> {
    const request = PauseScheduleRequest.fromPartial({ id, note });
    return (await this.#ctx.unary((e) => [e.schedule, e.schedule.pauseSchedule], request, true)).schedule!;
  }

  /** Fire again from the next nominal time. */
  async unpause(id: string, { note = '' } = {}): Promise<ScheduleInfo> {
    const request = UnpauseScheduleRequest.fromPartial({ id, note });
    return (await this.#ctx.unary((e) => [e.schedule, e.schedule.unpauseSchedule], request, true)).schedule!;
  }

  /** Start a process now under the overlap policy; retried on another replica only with a `requestId`. */
  trigger(id: string, { requestId = '' } = {}): Promise<TriggerScheduleResponse> {
    const request = TriggerScheduleRequest.fromPartial({ id, requestId });
    return this.#ctx.unary((e) => [e.schedule, e.schedule.triggerSchedule], request, Boolean(requestId));
  }

  /** Delete a schedule (the processes it started stay). */
  async delete(id: string): Promise<void> {
    await this.#ctx.unary((e) => [e.schedule, e.schedule.deleteSchedule], DeleteScheduleRequest.fromPartial({ id }));
  }
}
