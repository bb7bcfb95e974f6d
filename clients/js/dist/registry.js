// mgmt.registry: register an instance (and keep its lease), look instances up, watch changes.
import { pause, resumable, unavailable } from './endpoints.js';
import { describe, NotFound } from './errors.js';
import { DeregisterRequest, HeartbeatRequest, ListServicesRequest, LookupRequest, RegisterRequest, WatchRequest, } from './gen/hms/mgmt/v1/registry.js';
import { duration } from './payload.js';
/** The wire form of a probe. */
export function probeMessage(probe) {
    const ms = (value) => (value === undefined ? undefined : duration(value));
    return {
        serviceName: probe.serviceName ?? '',
        interval: ms(probe.intervalMs),
        timeout: ms(probe.timeoutMs),
        threshold: probe.threshold ?? 0,
        deregisterCriticalAfter: ms(probe.deregisterCriticalAfterMs),
    };
}
function registerRequest(options, instanceId) {
    return RegisterRequest.fromPartial({
        instance: {
            service: options.service,
            address: options.address,
            instanceId,
            version: options.version ?? '',
            tags: [...(options.tags ?? [])],
            metadata: { ...options.metadata },
            probe: options.probe ? probeMessage(options.probe) : undefined,
        },
        ttl: options.ttlMs === undefined ? undefined : duration(options.ttlMs),
    });
}
/** Registry calls; answers are the wire messages of hms.mgmt.v1 as plain objects. */
export class RegistryApi {
    #ctx;
    constructor(ctx) {
        this.#ctx = ctx;
    }
    /**
     * Register (or update) an instance. Unless `keepAlive: false`, its lease is renewed until
     * `registration.close()`, which deregisters it; a lease found lapsed is registered again under
     * the same instance id. Retried on the next replica only with an `instanceId`.
     */
    async register(options) {
        const reply = await this.registerInstance(options);
        return new Registration(this, options, reply, this.#ctx.logger);
    }
    /** Register once, without keeping the lease alive: the RegisterResponse. */
    registerInstance(options) {
        const instanceId = options.instanceId ?? '';
        const request = registerRequest(options, instanceId);
        return this.#ctx.unary((e) => [e.registry, e.registry.register], request, Boolean(instanceId));
    }
    /** Renew a lease once; rejects with NotFound when it has lapsed. */
    async heartbeat(leaseId) {
        const request = HeartbeatRequest.fromPartial({ leaseId });
        const reply = await this.#ctx.unary((e) => [e.registry, e.registry.heartbeat], request, true);
        return reply.lease;
    }
    /** Remove an instance now; the registry revision of the removal. */
    async deregister(service, instanceId) {
        const request = DeregisterRequest.fromPartial({ service, instanceId });
        return (await this.#ctx.unary((e) => [e.registry, e.registry.deregister], request)).revision;
    }
    /** Instances of a service (healthy ones unless asked), in a rotating order. */
    async lookup(service, options = {}) {
        const request = LookupRequest.fromPartial({
            service,
            tags: [...(options.tags ?? [])],
            version: options.version ?? '',
            includeUnhealthy: options.includeUnhealthy ?? false,
            limit: options.limit ?? 0,
        });
        return (await this.#ctx.unary((e) => [e.registry, e.registry.lookup], request, true)).instances;
    }
    /** Every service with its instance counts. */
    async services() {
        const request = ListServicesRequest.fromPartial({});
        return (await this.#ctx.unary((e) => [e.registry, e.registry.listServices], request, true)).services;
    }
    /**
     * A watch in place once this resolves: read `snapshot` and `revision`, then iterate the changes.
     * With several addresses it resumes on the next replica after the last revision seen.
     */
    async watch(service = '', options = {}) {
        const watch = new RegistryWatch(this.#ctx, service, options);
        await watch.start();
        return watch;
    }
}
/** A registered instance whose lease is kept alive until `close()`. */
export class Registration {
    instance;
    lease;
    revision;
    #registry;
    #options;
    #stop = new AbortController();
    #renewing;
    #logger;
    constructor(registry, options, reply, logger) {
        this.#registry = registry;
        this.#logger = logger;
        this.#options = options;
        this.instance = reply.instance;
        this.lease = reply.lease;
        this.revision = reply.revision;
        const every = options.renewEveryMs ?? (options.ttlMs ?? 10_000) / 3;
        this.#renewing = options.keepAlive === false ? Promise.resolve() : this.#renew(every);
    }
    get instanceId() {
        return this.instance.instanceId;
    }
    async #renew(everyMs) {
        const { signal } = this.#stop;
        const logger = this.#logger;
        while (!signal.aborted) {
            await pause(everyMs, signal);
            if (signal.aborted)
                return;
            try {
                this.lease = await this.#registry.heartbeat(this.lease.leaseId);
            }
            catch (err) {
                if (signal.aborted)
                    return;
                if (!(err instanceof NotFound)) {
                    logger.warn(`renewing the lease of ${this.#where()} failed (${describe(err)}); retrying`);
                    continue;
                }
                logger.warn(`the lease of ${this.#where()} lapsed; registering again`);
                try {
                    const reply = await this.#registry.registerInstance({ ...this.#options, instanceId: this.instanceId });
                    [this.instance, this.lease, this.revision] = [reply.instance, reply.lease, reply.revision];
                }
                catch (again) {
                    logger.warn(`registering ${this.#where()} again failed (${describe(again)}); retrying`);
                }
            }
        }
    }
    #where() {
        return `${this.instance.service}/${this.instanceId}`;
    }
    /** Stop renewing and deregister (unless `deregister: false`: the lease then lapses by itself). */
    async close({ deregister = true } = {}) {
        if (this.#stop.signal.aborted)
            return;
        this.#stop.abort();
        await this.#renewing;
        if (deregister)
            await this.#registry.deregister(this.instance.service, this.instanceId);
    }
    async [Symbol.asyncDispose]() {
        await this.close();
    }
}
/**
 * An open registry watch: `snapshot` (the instances at `revision`, unless resuming), then iterate
 * the WatchResponse frames (changes, or progress frames that only move `revision` on).
 */
export class RegistryWatch {
    snapshot = [];
    /** The revision the watcher is up to: resuming after it misses nothing. */
    revision;
    #snapshotWanted; // until the first frame has answered it
    #frames;
    #stop = new AbortController();
    #signal;
    constructor(ctx, service, options) {
        this.#signal = options.signal;
        this.#snapshotWanted = options.afterRevision === undefined;
        this.revision = options.afterRevision ?? 0;
        this.#frames = resumable(ctx.endpoints, {
            open: (e) => e.registry.watch(WatchRequest.fromPartial({ service, afterRevision: this.#snapshotWanted ? undefined : this.revision }), ctx.metadata()),
            signal: options.signal ? AbortSignal.any([options.signal, this.#stop.signal]) : this.#stop.signal,
        });
    }
    /** Wait for the `created` frame: from then on nothing is missed. */
    async start() {
        const first = await this.#frames.next();
        this.#signal?.throwIfAborted();
        if (first.done)
            throw unavailable('the watch stream closed before it was created');
        if (this.#snapshotWanted) {
            this.snapshot = first.value.snapshot;
            this.revision = first.value.revision;
            this.#snapshotWanted = false;
        }
    }
    async *[Symbol.asyncIterator]() {
        try {
            for (;;) {
                const next = await this.#frames.next();
                if (next.done)
                    break;
                if (next.value.created)
                    continue; // resumed on another replica: the missed changes follow
                this.revision = next.value.revision;
                yield next.value;
            }
            this.#signal?.throwIfAborted();
        }
        finally {
            this.close();
        }
    }
    /** End the watch (an iteration in progress ends). */
    close() {
        this.#stop.abort();
        void this.#frames.return();
    }
}
