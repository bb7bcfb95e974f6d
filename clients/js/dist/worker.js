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
import { Client } from './client.js';
import { pause, unaryCall, unavailable } from './endpoints.js';
import { describe, fromServiceError, isUnavailable, NotFound, NotRegistered } from './errors.js';
import { HeartbeatRequest } from './gen/hms/mgmt/v1/registry.js';
import { SubscribeTasksRequest, TaskEvent, } from './gen/hms/mgmt/v1/workflow.js';
import { HealthServer } from './health.js';
import { milliseconds, toPayload } from './payload.js';
import { Reports } from './reports.js';
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5000;
/** Throw from a handler to fail the attempt with a code (and, non-retryable, the step for good). */
export class TaskFailure extends Error {
    code;
    nonRetryable;
    details;
    constructor(code, message = '', { nonRetryable = false, details } = {}) {
        super(message || code);
        this.name = 'TaskFailure';
        this.code = code;
        this.nonRetryable = nonRetryable;
        this.details = details;
    }
}
/** The reason of a task's AbortSignal when the control plane cancels the attempt. */
export class TaskCancelled extends Error {
    reason;
    constructor(reason, message) {
        super(message || reason);
        this.reason = reason;
        this.name = 'TaskCancelled';
    }
}
/**
 * Registers a service instance, keeps its lease, takes its tasks and runs the handlers; `run()` until
 * `stop()` (or SIGTERM/SIGINT). Emits 'ready' (the address of the replica) each time a session is
 * subscribed; `ready` resolves the first time.
 */
export class Worker extends EventEmitter {
    service;
    instanceId;
    client;
    /** Resolves once the first session is subscribed and takes tasks. */
    ready;
    #options;
    #ownsClient;
    #handlers;
    #running = new Map();
    #stop = new AbortController();
    #reports;
    #logger;
    #health;
    #address;
    #isReady = false;
    #retryMs = RETRY_FIRST_MS;
    #ran = false;
    #markReady;
    constructor(options) {
        super();
        if (!options.client && !options.addresses)
            throw new TypeError('a Worker needs `client` or `addresses`');
        this.#options = options;
        this.#ownsClient = !options.client;
        this.client =
            options.client ??
                new Client({
                    addresses: options.addresses,
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
    stop() {
        if (this.#stop.signal.aborted)
            return;
        this.#health?.setServing(false);
        this.#stop.abort();
    }
    /**
     * Serve until `stop`: register, subscribe, run handlers; start over on the next replica (or after a
     * backoff) when a session ends. Resolves once drained and deregistered.
     */
    async run() {
        if (this.#ran)
            throw new Error('Worker.run() may be called once');
        this.#ran = true;
        const signals = this.#options.stopSignals ?? ['SIGTERM', 'SIGINT'];
        const onSignal = (signal) => {
            this.#logger.info(`worker ${this.instanceId}: ${signal}, draining`);
            this.stop();
        };
        for (const signal of signals)
            process.on(signal, onSignal);
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
                }
                catch (err) {
                    delay = this.#sessionEnded(endpoint, err);
                }
                this.#isReady = false;
                await pause(delay, stopped);
            }
            await this.#drain(); // handlers still running when the last session had already ended
            if (this.#reports.unsent) {
                this.#logger.warn(`worker ${this.instanceId}: ${this.#reports.unsent} reports never reached a control plane; their tasks will be offered again`);
            }
            await this.client.registry.deregister(this.service, this.instanceId).catch(() => { });
        }
        finally {
            for (const signal of signals)
                process.off(signal, onSignal);
            this.#health?.close();
            if (this.#ownsClient)
                this.client.close();
        }
    }
    #sessionEnded(endpoint, failure) {
        const err = fromServiceError(failure);
        if (err instanceof NotRegistered || (err instanceof NotFound && err.kind === 'lease')) {
            // The replica is fine; the registry dropped this instance. Register again there, at once the
            // first time (backing off only if that keeps happening before the worker gets going).
            const delay = this.#isReady ? 0 : this.#nextRetry();
            this.#logger.warn(`worker ${this.instanceId}: ${describe(err)}; registering again on ${endpoint.address}`);
            return delay;
        }
        const gone = isUnavailable(err);
        let delay;
        if (gone) {
            this.client.endpoints.failOver(endpoint, err);
            delay = this.client.endpoints.backoffMs();
        }
        else {
            delay = this.#nextRetry();
        }
        // While every replica is away, one warning when the session is lost, not one per attempt.
        const log = this.#isReady || !gone ? this.#logger.warn : this.#logger.info;
        log.call(this.#logger, `worker ${this.instanceId}: session on ${endpoint.address} ended (${describe(err)}); next in ${(delay / 1000).toFixed(1)}s`);
        return delay;
    }
    #nextRetry() {
        const delay = this.#retryMs;
        this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
        return delay;
    }
    /** One registration on one replica: take tasks there until `stop` (resolves) or a failure (rejects). */
    async #session(session) {
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
        const renewing = this.#renew(session, reply.lease.leaseId, ended.signal);
        const reporting = this.#reports.serve(() => workflow.reportTaskEventBatches(session.metadata()), ended.signal);
        // Rejects when the lease renewal fails (the lease may be lost) or the report stream ends; neither
        // ends by itself while the session lasts.
        const failed = Promise.race([renewing, reporting]).then(() => {
            if (!ended.signal.aborted)
                throw new Error('the lease renewal or the report stream ended');
        });
        failed.catch(() => { });
        try {
            // What earlier sessions left unanswered goes first, so that those tasks are not offered again.
            await this.#settleReports(failed);
            await this.#takeTasks(session, failed);
            await this.#drain(); // stopping: running handlers report over this session's stream
            await this.#settleReports(failed);
        }
        finally {
            ended.abort();
            await Promise.allSettled([renewing, reporting]);
        }
    }
    /** Wait (up to drainTimeoutMs) until the reports sent so far are answered; rejects if the session fails. */
    async #settleReports(failed) {
        const giveUp = new AbortController();
        try {
            await Promise.race([this.#reports.settled(), pause(this.#options.drainTimeoutMs ?? 30_000, giveUp.signal), failed]);
        }
        finally {
            giveUp.abort();
        }
    }
    /**
     * Renew the lease every third of its TTL until `signal` (which also cancels a renewal in flight);
     * rejects when a renewal fails or takes longer than the TTL: the lease may be lost.
     */
    async #renew(session, leaseId, signal) {
        const ttl = this.#options.ttlMs ?? 10_000;
        const { registry } = session.endpoint;
        const request = HeartbeatRequest.fromPartial({ leaseId });
        for (;;) {
            await pause(ttl / 3, signal);
            if (signal.aborted)
                return;
            try {
                await unaryCall(registry, registry.heartbeat, request, session.metadata(), { signal, deadlineMs: ttl });
            }
            catch (err) {
                if (signal.aborted)
                    return;
                throw fromServiceError(err);
            }
        }
    }
    /**
     * Start a handler for each task offered and abort those withdrawn, until `stop`; rejects when the
     * task stream ends or the session fails (`failed`).
     */
    #takeTasks(session, failed) {
        const request = SubscribeTasksRequest.fromPartial({
            service: this.service,
            instanceId: this.instanceId,
            taskTypes: [...this.#handlers.keys()],
            maxInFlight: this.#options.maxInFlight ?? 16,
        });
        const call = session.endpoint.workflow.subscribeTasks(request, session.metadata());
        const stopped = this.#stop.signal;
        return new Promise((resolve, reject) => {
            const onStop = () => {
                call.cancel();
                resolve();
            };
            const fail = (err) => {
                stopped.removeEventListener('abort', onStop);
                call.cancel();
                reject(err);
            };
            stopped.addEventListener('abort', onStop, { once: true });
            if (stopped.aborted)
                onStop();
            call.on('data', (frame) => {
                if (frame.ready)
                    this.#becameReady(session.endpoint);
                // Withdrawn first: a frame that frees credit may carry the task that takes it.
                for (const cancellation of frame.cancellations)
                    this.#cancel(cancellation);
                for (const task of frame.tasks)
                    this.#start(task);
            });
            call.on('error', fail);
            // A replica that stops may end the stream cleanly: to the worker that is a replica gone.
            call.on('end', () => fail(unavailable('the task stream ended')));
            failed.then(() => { }, (err) => fail(err));
        });
    }
    #becameReady(endpoint) {
        this.#retryMs = RETRY_FIRST_MS;
        this.client.endpoints.succeeded();
        this.#isReady = true;
        this.#markReady();
        this.emit('ready', endpoint.address);
    }
    #start(wire) {
        const controller = new AbortController();
        const task = {
            token: wire.taskToken,
            processId: wire.processId,
            definition: wire.definition,
            definitionVersion: wire.definitionVersion,
            stepId: wire.stepId,
            taskType: wire.taskType,
            attempt: wire.attempt,
            businessKey: wire.businessKey,
            compensation: wire.compensation,
            input: (wire.input ?? {}),
            heartbeatDetails: wire.heartbeatDetails,
            deadline: wire.deadline,
            heartbeatTimeoutMs: milliseconds(wire.heartbeatTimeout),
            traceparent: wire.traceparent,
            tracestate: wire.tracestate,
            signal: controller.signal,
            heartbeat: (details) => this.#heartbeat(wire.taskToken, details),
        };
        const running = { done: Promise.resolve(), controller, abandoned: false };
        running.done = this.#runTask(task, running).finally(() => {
            if (this.#running.get(task.token) === running)
                this.#running.delete(task.token);
        });
        this.#running.set(task.token, running);
    }
    /**
     * The control plane withdrew a task (its credit is already free there): abort its handler's signal.
     * Its outcome is not reported and a drain does not wait for it.
     */
    #cancel(cancellation) {
        const running = this.#running.get(cancellation.taskToken);
        if (!running)
            return; // already finished; its report, if any, changes nothing
        this.#running.delete(cancellation.taskToken);
        running.abandoned = true;
        running.controller.abort(new TaskCancelled(cancellation.reason, cancellation.message));
        const detail = cancellation.message ? `: ${cancellation.message}` : '';
        this.#logger.info(`worker ${this.instanceId}: task ${cancellation.taskToken} withdrawn (${cancellation.reason}${detail}); aborting its handler`);
    }
    async #heartbeat(token, details) {
        const heartbeat = details === undefined ? {} : { details: toPayload(details, 'details') };
        this.#reports.send(TaskEvent.fromPartial({ taskToken: token, heartbeat }));
    }
    async #runTask(task, running) {
        let event;
        try {
            const handler = this.#handlers.get(task.taskType);
            if (!handler)
                throw new TaskFailure('NO_HANDLER', `no handler for ${JSON.stringify(task.taskType)}`, { nonRetryable: true });
            const output = await handler(task);
            event = TaskEvent.fromPartial({ taskToken: task.token, completed: { output: toPayload(output, 'output') } });
        }
        catch (err) {
            if (running.abandoned)
                return;
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
            }
            else {
                const error = err instanceof Error ? err : new Error(String(err));
                this.#logger.warn(`task ${task.taskType} (${task.processId}/${task.stepId}) failed: ${error.stack ?? error}`);
                event = TaskEvent.fromPartial({
                    taskToken: task.token,
                    failed: { errorCode: 'UNHANDLED', message: `${error.name}: ${error.message}` },
                });
            }
        }
        // A cancelled attempt's report would be stale; a drain that gave up has left it to be offered again.
        if (!running.abandoned)
            this.#reports.send(event);
    }
    /** Let running handlers finish (and report) for up to drainTimeoutMs; abandon and abort the rest. */
    async #drain() {
        if (!this.#running.size)
            return;
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
