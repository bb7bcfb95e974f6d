// The Worker: registers a service instance, keeps its lease, takes its tasks, runs the handlers and
// reports back, with the Python SDK's behaviour (clients/python/hms_mgmt/_worker.py).
//
// A Worker's session (registration, lease renewal, task stream, report stream) lives on one replica.
// When that replica goes away the Worker starts a new session on the next address, under the same
// instance id, and sends again the reports the control plane had not answered; handlers keep running
// through it all. When the registry drops the instance (its lease lapsed) the Worker registers again
// on the same replica at once. A task the control plane withdraws (its process was cancelled, its
// attempt timed out) has its handler's AbortSignal aborted.

import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';

import { Client, type ConnectOptions, type Pinned } from './client.js';
import { type Endpoint, type Logger, pause, unaryCall, unavailable } from './endpoints.js';
import { describe, fromServiceError, isUnavailable, NotFound, NotRegistered } from './errors.js';
import { HeartbeatRequest } from './gen/hms/mgmt/v1/registry.js';
import {
  SubscribeTasksRequest,
  type SubscribeTasksResponse,
  type Task as WireTask,
  TaskCancelReason,
  type TaskCancellation,
  TaskEvent,
} from './gen/hms/mgmt/v1/workflow.js';
import { HealthServer } from './health.js';
import { type JsonObject, milliseconds, toPayload } from './payload.js';
import type { ProbeOptions } from './registry.js';
import { Reports } from './reports.js';

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5000;

/** Throw from a handler to fail the attempt with a code (and, non-retryable, the step for good). */
export class TaskFailure extends Error {
  readonly code: string;
  readonly nonRetryable: boolean;
  readonly details: object | undefined;

  constructor(code: string, message = '', { nonRetryable = false, details }: { nonRetryable?: boolean; details?: object } = {}) {
    super(message || code);
    this.name = 'TaskFailure';
    this.code = code;
    this.nonRetryable = nonRetryable;
    this.details = details;
  }
}

/** The reason of a task's AbortSignal when the control plane cancels the attempt. */
export class TaskCancelled extends Error {
  constructor(readonly reason: TaskCancelReason, message: string) {
    super(message || reason);
    this.name = 'TaskCancelled';
  }
}

/** What a handler knows about the attempt it runs, and how it tells the control plane it is alive. */
export interface Task {
  readonly token: string;
  readonly processId: string;
  readonly definition: string;
  readonly definitionVersion: number;
  readonly stepId: string;
  readonly taskType: string;
  /** 1-based. */
  readonly attempt: number;
  readonly businessKey: string;
  /** True for a compensate task (undoing `stepId`). */
  readonly compensation: boolean;
  readonly input: JsonObject;
  /** Progress a previous attempt reported with `heartbeat`, if any. */
  readonly heartbeatDetails: JsonObject | undefined;
  /** A completion after this is stale. */
  readonly deadline: Date | undefined;
  /** Longest allowed gap between heartbeats, when the step asks for them. */
  readonly heartbeatTimeoutMs: number | undefined;
  /**
   * W3C `traceparent` of the control plane's span of this attempt ('' when it does not trace): make it
   * the parent of the handler's spans, e.g. `propagation.extract(context.active(), { traceparent, tracestate })`
   * with @opentelemetry/api, so the worker's spans join the process's trace.
   */
  readonly traceparent: string;
  /** W3C `tracestate` to go with `traceparent` ('' for none). */
  readonly tracestate: string;
  /** Aborted (with a TaskCancelled reason) when the control plane no longer wants the attempt, or when a drain runs out. */
  readonly signal: AbortSignal;
  /** Push the attempt's heartbeat deadline, optionally with progress details for a later attempt. */
  heartbeat(details?: object): Promise<void>;
}

/** Runs one task attempt: resolves to its output (a plain object), or throws (TaskFailure for a coded failure). */
export type Handler = (task: Task) => Promise<object | void> | object | void;

export interface WorkerOptions {
  service: string;
  /** Task type -> handler. */
  handlers: Record<string, Handler>;
  /** A client to use; or give the connection options (`addresses`, `token`, `tls`, ...) and the Worker makes one. */
  client?: Client;
  addresses?: ConnectOptions['addresses'];
  token?: string;
  tls?: ConnectOptions['tls'];
  failoverTimeoutMs?: number;
  /** The client's unary deadline and keepalive settings (see ConnectOptions). */
  callTimeoutMs?: number;
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
  logger?: Logger;
  version?: string;
  /** Default: `<service>-<random>`; kept across sessions and replicas. */
  instanceId?: string;
  /** Most tasks held at once: the credit the control plane respects (default 16). */
  maxInFlight?: number;
  tags?: readonly string[];
  metadata?: Record<string, string>;
  /**
   * Serve grpc.health.v1 on `listen` (default "127.0.0.1:0") and register that address with a
   * probe (`probe`, or the control plane's defaults).
   */
  health?: boolean | { listen?: string };
  /** How the control plane probes the instance; with `address` when you serve health yourself. */
  probe?: ProbeOptions;
  /** The address registered; default the health server's, else "127.0.0.1:1" (nothing to call). */
  address?: string;
  /** Lease time to live (default 10 s), renewed every third of it. */
  ttlMs?: number;
  /** How long `stop` lets running handlers finish and report (default 30 s); the rest are aborted. */
  drainTimeoutMs?: number;
  /** Signals that stop (drain) the Worker while it runs; default SIGTERM and SIGINT, [] for none. */
  stopSignals?: readonly NodeJS.Signals[];
}

interface Running {
  done: Promise<void>;
  controller: AbortController;
  abandoned: boolean; // cancelled by the control plane, or given up by a drain: its outcome is not reported
}

/**
 * Registers a service instance, keeps its lease, takes its tasks and runs the handlers; `run()` until
 * `stop()` (or SIGTERM/SIGINT). Emits 'ready' (the address of the replica) each time a session is
 * subscribed; `ready` resolves the first time.
 */
export class Worker extends EventEmitter {
  readonly service: string;
  readonly instanceId: string;
  readonly client: Client;
  /** Resolves once the first session is subscribed and takes tasks. */
  readonly ready: Promise<void>;
  readonly #options: WorkerOptions;
  readonly #ownsClient: boolean;
  readonly #handlers: Map<string, Handler>;
  readonly #running = new Map<string, Running>();
  readonly #stop = new AbortController();
  readonly #reports: Reports;
  readonly #logger: Logger;
  #health: HealthServer | undefined;
  #address: string;
  #isReady = false;
  #retryMs = RETRY_FIRST_MS;
  #ran = false;
  #markReady!: () => void;

  constructor(options: WorkerOptions) {
    super();
    if (!options.client && !options.addresses) throw new TypeError('a Worker needs `client` or `addresses`');
    this.#options = options;
    this.#ownsClient = !options.client;
    this.client =
      options.client ??
      new Client({
        addresses: options.addresses!,
        ...(options.token === undefined ? {} : { token: options.token }),
        ...(options.tls === undefined ? {} : { tls: options.tls }),
        ...(options.failoverTimeoutMs === undefined ? {} : { failoverTimeoutMs: options.failoverTimeoutMs }),
        ...(options.callTimeoutMs === undefined ? {} : { callTimeoutMs: options.callTimeoutMs }),
        ...(options.keepaliveTimeMs === undefined ? {} : { keepaliveTimeMs: options.keepaliveTimeMs }),
        ...(options.keepaliveTimeoutMs === undefined ? {} : { keepaliveTimeoutMs: options.keepaliveTimeoutMs }),
        ...(options.logger === undefined ? {} : { logger: options.logger }),
      });
    this.#logger = options.logger ?? this.client.logger;
    this.service = options.service;
    this.instanceId = options.instanceId || `${options.service}-${randomUUID().slice(0, 8)}`;
    this.#handlers = new Map(Object.entries(options.handlers));
    this.#address = options.address ?? '127.0.0.1:1';
    this.#reports = new Reports(`worker ${this.instanceId}`, this.#logger);
    this.ready = new Promise((resolve) => (this.#markReady = resolve));
  }

  /** Ask `run` to drain and return; idempotent. */
  stop(): void {
    if (this.#stop.signal.aborted) return;
    this.#health?.setServing(false);
    this.#stop.abort();
  }

  /**
   * Serve until `stop`: register, subscribe, run handlers; start over on the next replica (or after a
   * backoff) when a session ends. Resolves once drained and deregistered.
   */
  async run(): Promise<void> {
    if (this.#ran) throw new Error('Worker.run() may be called once');
    this.#ran = true;
    const signals = this.#options.stopSignals ?? ['SIGTERM', 'SIGINT'];
    const onSignal = (signal: NodeJS.Signals) => {
      this.#logger.info(`worker ${this.instanceId}: ${signal}, draining`);
      this.stop();
    };
    for (const signal of signals) process.on(signal, onSignal);
    try {
      if (this.#options.health) {
        this.#health = new HealthServer([this.service]);
        const listen = (typeof this.#options.health === 'object' && this.#options.health.listen) || '127.0.0.1:0';
        const bound = await this.#health.listen(listen);
        this.#address = this.#options.address ?? bound;
      }
      const stopped = this.#stop.signal;
      while (!stopped.aborted) {
        const endpoint = this.client.endpoints.current;
        let delay = 0;
        try {
          await this.#session(this.client.pinned(endpoint));
        } catch (err) {
          delay = this.#sessionEnded(endpoint, err);
        }
        this.#isReady = false;
        await pause(delay, stopped);
      }
      await this.#drain(); // handlers still running when the last session had already ended
      if (this.#reports.unsent) {
        this.#logger.warn(
          `worker ${this.instanceId}: ${this.#reports.unsent} reports never reached a control plane; their tasks will be offered again`,
        );
      }
      await this.client.registry.deregister(this.service, this.instanceId).catch(() => {});
    } finally {
      for (const signal of signals) process.off(signal, onSignal);
      this.#health?.close();
      if (this.#ownsClient) this.client.close();
    }
  }

  #sessionEnded(endpoint: Endpoint, failure: unknown): number {
    const err = fromServiceError(failure);
    if (err instanceof NotRegistered || (err instanceof NotFound && err.kind === 'lease')) {
      // The replica is fine; the registry dropped this instance. Register again there, at once the
      // first time (backing off only if that keeps happening before the worker gets going).
      const delay = this.#isReady ? 0 : this.#nextRetry();
      this.#logger.warn(`worker ${this.instanceId}: ${describe(err)}; registering again on ${endpoint.address}`);
      return delay;
    }
    const gone = isUnavailable(err);
    let delay: number;
    if (gone) {
      this.client.endpoints.failOver(endpoint, err);
      delay = this.client.endpoints.backoffMs();
    } else {
      delay = this.#nextRetry();
    }
    // While every replica is away, one warning when the session is lost, not one per attempt.
    const log = this.#isReady || !gone ? this.#logger.warn : this.#logger.info;
    log.call(
      this.#logger,
      `worker ${this.instanceId}: session on ${endpoint.address} ended (${describe(err)}); next in ${(delay / 1000).toFixed(1)}s`,
    );
    return delay;
  }

  #nextRetry(): number {
    const delay = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
    return delay;
  }

  /** One registration on one replica: take tasks there until `stop` (resolves) or a failure (rejects). */
  async #session(session: Pinned): Promise<void> {
    const options = this.#options;
    const reply = await session.registry.registerInstance({
      service: this.service,
      address: this.#address,
      instanceId: this.instanceId,
      version: options.version ?? '',
      tags: options.tags ?? [],
      metadata: options.metadata ?? {},
      ...(options.ttlMs === undefined ? {} : { ttlMs: options.ttlMs }),
      ...(options.probe || options.health ? { probe: options.probe ?? {} } : {}),
    });
    const ended = new AbortController(); // the session is over: stop renewing and reporting
    const { workflow } = session.endpoint;
    const renewing = this.#renew(session, reply.lease!.leaseId, ended.signal);
    const reporting = this.#reports.serve(() => workflow.reportTaskEventBatches(session.metadata()), ended.signal);
    // Rejects when the lease renewal fails (the lease may be lost) or the report stream ends; neither
    // ends by itself while the session lasts.
    const failed = Promise.race([renewing, reporting]).then(() => {
      if (!ended.signal.aborted) throw new Error('the lease renewal or the report stream ended');
    });
    failed.catch(() => {});
    try {
      // What earlier sessions left unanswered goes first, so that those tasks are not offered again.
      await this.#settleReports(failed);
      await this.#takeTasks(session, failed);
      await this.#drain(); // stopping: running handlers report over this session's stream
      await this.#settleReports(failed);
    } finally {
      ended.abort();
      await Promise.allSettled([renewing, reporting]);
    }
  }

  /** Wait (up to drainTimeoutMs) until the reports sent so far are answered; rejects if the session fails. */
  async #settleReports(failed: Promise<void>): Promise<void> {
    const giveUp = new AbortController();
    try {
      await Promise.race([this.#reports.settled(), pause(this.#options.drainTimeoutMs ?? 30_000, giveUp.signal), failed]);
    } finally {
      giveUp.abort();
    }
  }

  /**
   * Renew the lease every third of its TTL until `signal` (which also cancels a renewal in flight);
   * rejects when a renewal fails or takes longer than the TTL: the lease may be lost.
   */
  async #renew(session: Pinned, leaseId: string, signal: AbortSignal): Promise<void> {
    const ttl = this.#options.ttlMs ?? 10_000;
    const { registry } = session.endpoint;
    const request = HeartbeatRequest.fromPartial({ leaseId });
    for (;;) {
      await pause(ttl / 3, signal);
      if (signal.aborted) return;
      try {
        await unaryCall(registry, registry.heartbeat, request, session.metadata(), { signal, deadlineMs: ttl });
      } catch (err) {
        if (signal.aborted) return;
        throw fromServiceError(err);
      }
    }
  }

  /**
   * Start a handler for each task offered and abort those withdrawn, until `stop`; rejects when the
   * task stream ends or the session fails (`failed`).
   */
  #takeTasks(session: Pinned, failed: Promise<void>): Promise<void> {
    const request = SubscribeTasksRequest.fromPartial({
      service: this.service,
      instanceId: this.instanceId,
      taskTypes: [...this.#handlers.keys()],
      maxInFlight: this.#options.maxInFlight ?? 16,
    });
    const call = session.endpoint.workflow.subscribeTasks(request, session.metadata());
    const stopped = this.#stop.signal;
    return new Promise<void>((resolve, reject) => {
      const onStop = () => {
        call.cancel();
        resolve();
      };
      const fail = (err: unknown) => {
        stopped.removeEventListener('abort', onStop);
        call.cancel();
        reject(err);
      };
      stopped.addEventListener('abort', onStop, { once: true });
      if (stopped.aborted) onStop();
      call.on('data', (frame: SubscribeTasksResponse) => {
        if (frame.ready) this.#becameReady(session.endpoint);
        // Withdrawn first: a frame that frees credit may carry the task that takes it.
        for (const cancellation of frame.cancellations) this.#cancel(cancellation);
        for (const task of frame.tasks) this.#start(task);
      });
      call.on('error', fail);
      // A replica that stops may end the stream cleanly: to the worker that is a replica gone.
      call.on('end', () => fail(unavailable('the task stream ended')));
      failed.then(
        () => {},
        (err: unknown) => fail(err),
      );
    });
  }

  #becameReady(endpoint: Endpoint): void {
    this.#retryMs = RETRY_FIRST_MS;
    this.client.endpoints.succeeded();
    this.#isReady = true;
    this.#markReady();
    this.emit('ready', endpoint.address);
  }

  #start(wire: WireTask): void {
    const controller = new AbortController();
    const task: Task = {
      token: wire.taskToken,
      processId: wire.processId,
      definition: wire.definition,
      definitionVersion: wire.definitionVersion,
      stepId: wire.stepId,
      taskType: wire.taskType,
      attempt: wire.attempt,
      businessKey: wire.businessKey,
      compensation: wire.compensation,
      input: (wire.input ?? {}) as JsonObject,
      heartbeatDetails: wire.heartbeatDetails as JsonObject | undefined,
      deadline: wire.deadline,
      heartbeatTimeoutMs: milliseconds(wire.heartbeatTimeout),
      traceparent: wire.traceparent,
      tracestate: wire.tracestate,
      signal: controller.signal,
      heartbeat: (details) => this.#heartbeat(wire.taskToken, details),
    };
    const running: Running = { done: Promise.resolve(), controller, abandoned: false };
    running.done = this.#runTask(task, running).finally(() => {
      if (this.#running.get(task.token) === running) this.#running.delete(task.token);
    });
    this.#running.set(task.token, running);
  }

  /**
   * The control plane withdrew a task (its credit is already free there): abort its handler's signal.
   * Its outcome is not reported and a drain does not wait for it.
   */
  #cancel(cancellation: TaskCancellation): void {
    const running = this.#running.get(cancellation.taskToken);
    if (!running) return; // already finished; its report, if any, changes nothing
    this.#running.delete(cancellation.taskToken);
    running.abandoned = true;
    running.controller.abort(new TaskCancelled(cancellation.reason, cancellation.message));
    const detail = cancellation.message ? `: ${cancellation.message}` : '';
    this.#logger.info(`worker ${this.instanceId}: task ${cancellation.taskToken} withdrawn (${cancellation.reason}${detail}); aborting its handler`);
  }

  async #heartbeat(token: string, details: object | undefined): Promise<void> {
    const heartbeat = details === undefined ? {} : { details: toPayload(details, 'details') };
    this.#reports.send(TaskEvent.fromPartial({ taskToken: token, heartbeat }));
  }

  async #runTask(task: Task, running: Running): Promise<void> {
    let event: TaskEvent;
    try {
      const handler = this.#handlers.get(task.taskType);
      if (!handler) throw new TaskFailure('NO_HANDLER', `no handler for ${JSON.stringify(task.taskType)}`, { nonRetryable: true });
      const output = await handler(task);
      event = TaskEvent.fromPartial({ taskToken: task.token, completed: { output: toPayload(output, 'output') } });
    } catch (err) {
      if (running.abandoned) return;
      if (err instanceof TaskFailure) {
        event = TaskEvent.fromPartial({
          taskToken: task.token,
          failed: {
            errorCode: err.code,
            message: err.message,
            nonRetryable: err.nonRetryable,
            details: err.details === undefined ? undefined : toPayload(err.details, 'details'),
          },
        });
      } else {
        const error = err instanceof Error ? err : new Error(String(err));
        this.#logger.warn(`task ${task.taskType} (${task.processId}/${task.stepId}) failed: ${error.stack ?? error}`);
        event = TaskEvent.fromPartial({
          taskToken: task.token,
          failed: { errorCode: 'UNHANDLED', message: `${error.name}: ${error.message}` },
        });
      }
    }
    // A cancelled attempt's report would be stale; a drain that gave up has left it to be offered again.
    if (!running.abandoned) this.#reports.send(event);
  }

  /** Let running handlers finish (and report) for up to drainTimeoutMs; abandon and abort the rest. */
  async #drain(): Promise<void> {
    if (!this.#running.size) return;
    const giveUp = new AbortController();
    const all = Promise.allSettled([...this.#running.values()].map((r) => r.done));
    await Promise.race([all, pause(this.#options.drainTimeoutMs ?? 30_000, giveUp.signal)]);
    giveUp.abort();
    // Past the timeout the control plane requeues their tasks once this instance's stream is gone.
    for (const running of this.#running.values()) {
      running.abandoned = true;
      running.controller.abort(new Error('the worker stopped before the task finished'));
    }
  }
}
