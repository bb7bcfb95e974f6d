// The control-plane addresses of one client, a channel to each, and failover from one to the next,
// as the Python SDK does (clients/python/hms_mgmt/_endpoints.py).
//
// One address is in use at a time. When a call finds its replica gone (UNAVAILABLE: refused, reset,
// shutting down), the client moves to the next address, round robin, waiting a short backoff only
// once every address has failed in a row. Calls that are safe to repeat are made again there, until
// every address has been tried once; streams reopen there from where they got to (see `resumable`).

import {
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ClientOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type Metadata,
  type ServiceError,
  status,
} from '@grpc/grpc-js';

import { describe, fromServiceError, isUnavailable, Unavailable } from './errors.js';
import { BusClient } from './gen/hms/mgmt/v1/bus.js';
import { RegistryClient } from './gen/hms/mgmt/v1/registry.js';
import { ScheduleClient } from './gen/hms/mgmt/v1/schedule.js';
import { WorkflowClient } from './gen/hms/mgmt/v1/workflow.js';

// A call without a deadline to a replica that hangs (stopped, partitioned, its host frozen) would wait
// forever; every unary call gets this one unless the client names its own (`callTimeoutMs`).
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
// HTTP/2 pings on a connection with calls open: a replica that stops answering them within the
// timeout is taken as gone (UNAVAILABLE), so a stream to a hung replica fails over instead of waiting
// for frames that never come. The control plane accepts pings this often (server.SERVER_OPTIONS);
// as in the Python SDK, an idle connection is not pinged (the server would count that as abuse).
export const KEEPALIVE_TIME_MS = 20_000;
export const KEEPALIVE_TIMEOUT_MS = 10_000;

/** How often a connection with calls open is pinged, and how long an answer may take. */
export interface Keepalive {
  timeMs: number;
  timeoutMs: number;
}

/** The SDK's channel options with its keepalive settings. */
export function channelOptions({ timeMs, timeoutMs }: Keepalive): Partial<ClientOptions> {
  return {
    // gRPC waits up to 120 s between reconnection attempts to an address that refused it; a replica
    // restarted there must be found sooner than that.
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 2000,
    'grpc.keepalive_time_ms': timeMs,
    'grpc.keepalive_timeout_ms': timeoutMs,
    'grpc.keepalive_permit_without_calls': 0,
  };
}
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 2000;

/** Where the SDK reports what it does about failures; `connect({logger})` replaces it. */
export interface Logger {
  warn(message: string): void;
  info(message: string): void;
}

/** Warnings to stderr (as Python's logging does without configuration), nothing else. */
export const defaultLogger: Logger = {
  warn: (message) => console.warn(`hms-mgmt: ${message}`),
  info: () => {},
};

/** "host:port" strings, in order and without repeats, from a list or comma-separated text. */
export function parseAddresses(addresses: string | readonly string[]): string[] {
  const items = typeof addresses === 'string' ? [addresses] : [...addresses];
  const parsed = items.flatMap((item) => item.split(',')).map((part) => part.trim()).filter(Boolean);
  if (parsed.length === 0) throw new TypeError('at least one control-plane address (host:port) is required');
  return [...new Set(parsed)];
}

/** One control-plane address with one channel and the service clients on it. */
export class Endpoint {
  readonly registry: RegistryClient;
  readonly bus: BusClient;
  readonly workflow: WorkflowClient;
  readonly schedule: ScheduleClient;

  constructor(
    readonly address: string,
    credentials: ChannelCredentials,
    keepalive: Keepalive = { timeMs: KEEPALIVE_TIME_MS, timeoutMs: KEEPALIVE_TIMEOUT_MS },
  ) {
    const options = channelOptions(keepalive);
    this.registry = new RegistryClient(address, credentials, options);
    const channelOverride = this.registry.getChannel();
    this.bus = new BusClient(address, credentials, { ...options, channelOverride });
    this.workflow = new WorkflowClient(address, credentials, { ...options, channelOverride });
    this.schedule = new ScheduleClient(address, credentials, { ...options, channelOverride });
  }

  /** Close the channel, ending the calls still open on it. */
  close(): void {
    this.registry.close();
  }

  toString(): string {
    return `Endpoint(${this.address})`;
  }
}

/** The addresses of one client, in order, and the one in use. */
export class Endpoints {
  readonly all: readonly Endpoint[];
  #index = 0;
  #failures = 0; // failovers since a call last got an answer: drives the backoff

  constructor(endpoints: readonly Endpoint[], readonly failoverTimeoutMs: number, readonly logger: Logger) {
    this.all = endpoints;
  }

  /** The endpoint calls go to now. */
  get current(): Endpoint {
    return this.all[this.#index]!;
  }

  /** Whether there is another address to fail over to. */
  get many(): boolean {
    return this.all.length > 1;
  }

  /** A view of one endpoint that never fails over: what a Worker's session uses. */
  pinned(endpoint: Endpoint): Endpoints {
    return new Endpoints([endpoint], this.failoverTimeoutMs, this.logger);
  }

  /** Send calls to `endpoint` from now on (it was found ready). */
  use(endpoint: Endpoint): void {
    this.#index = this.all.indexOf(endpoint);
  }

  /** Whether `err` means the replica went away and another address may answer. */
  mayFailOver(err: unknown): boolean {
    return this.many && isUnavailable(err);
  }

  /**
   * Move off `failed` to the next address, unless an earlier failure did already; returns the one in
   * use. Only the call that moves logs, so each failover is logged once however many calls saw it.
   */
  failOver(failed: Endpoint, reason: unknown): Endpoint {
    if (failed !== this.current) return this.current;
    this.#failures += 1;
    if (this.many) {
      this.#index = (this.#index + 1) % this.all.length;
      // A warning when a working replica goes; quieter while every address keeps failing.
      const log = this.#failures === 1 ? this.logger.warn : this.logger.info;
      log.call(
        this.logger,
        `control plane ${failed.address} unavailable (${describe(reason)}), switching to ${this.current.address}`,
      );
    }
    return this.current;
  }

  /** How long to wait before using the current address: nothing until every address failed in a row. */
  backoffMs(): number {
    const rounds = Math.floor(this.#failures / this.all.length);
    return rounds === 0 ? 0 : Math.min(BACKOFF_FIRST_MS * 2 ** (rounds - 1), BACKOFF_MAX_MS);
  }

  /** A call got an answer: the next failure starts a fresh round without backoff. */
  succeeded(): void {
    this.#failures = 0;
  }

  /**
   * `send` on the current endpoint; if its replica is gone, move on and, when `retry` (the call is
   * safe to repeat), send again on the next one, until every address has been tried once. Failures
   * reject with the typed error they stand for.
   */
  async unary<T>(send: (endpoint: Endpoint) => Promise<T>, { retry = false } = {}): Promise<T> {
    const attempts = retry ? this.all.length : 1;
    for (let attempt = 1; ; attempt++) {
      const endpoint = this.current;
      try {
        const answer = await send(endpoint);
        this.succeeded();
        return answer;
      } catch (err) {
        if (isUnavailable(err)) this.failOver(endpoint, err);
        if (attempt >= attempts || !this.mayFailOver(err)) throw fromServiceError(err);
        await pause(this.backoffMs());
      }
    }
  }

  /** Close every channel. */
  close(): void {
    for (const endpoint of this.all) endpoint.close();
  }
}

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
/** A generated unary method, in its (request, metadata, options, callback) form. */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: Callback<Res>,
) => ClientUnaryCall;

/**
 * One unary call of `client` as a promise; the raw grpc-js error on failure (callers type it).
 * `signal` cancels it; `deadlineMs` gives it a deadline (DEADLINE_EXCEEDED past it).
 */
export function unaryCall<Req, Res>(
  client: Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
  metadata: Metadata,
  { signal, deadlineMs }: { signal?: AbortSignal; deadlineMs?: number } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const options = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
    const call = method.call(client, request, metadata, options, (error, response) =>
      error ? reject(error) : resolve(response),
    );
    signal?.addEventListener('abort', () => call.cancel(), { once: true });
  });
}

/** Resolve after `ms`, or at once when `signal` aborts (never rejects). */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** An UNAVAILABLE error made by the SDK (a stream that ended while its replica went away). */
export function unavailable(details: string): Unavailable {
  return new Unavailable(details, { code: status.UNAVAILABLE, details });
}

export interface ResumeOptions<T> {
  /** Make the call on an endpoint, its request built from where the owner got to (a revision, a sequence). */
  open(endpoint: Endpoint): ClientReadableStream<T>;
  /** Whether the stream may resume elsewhere now (default: always). */
  resumable?: () => boolean;
  /** Whether a clean end of the stream means its replica went away (default: never). */
  endedEarly?: () => boolean;
  /** Ends the stream: the iteration returns. */
  signal?: AbortSignal | undefined;
}

/**
 * The frames of a server stream that reopens on the next address when its replica goes away. It
 * keeps trying the addresses in turn for up to `failoverTimeoutMs`, then rejects; when the stream
 * may not resume (or there is one address) the first failure rejects, as from a plain call.
 */
export async function* resumable<T>(endpoints: Endpoints, options: ResumeOptions<T>): AsyncGenerator<T, void, undefined> {
  const { signal } = options;
  let endpoint = endpoints.current;
  let giveUpAt: number | undefined; // set while the stream is failing over
  while (!signal?.aborted) {
    const call = options.open(endpoint);
    const cancel = () => call.cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    let failure: unknown;
    try {
      for await (const frame of call) {
        giveUpAt = undefined;
        endpoints.succeeded();
        yield frame as T;
      }
      if (!options.endedEarly?.()) return;
      failure = unavailable('stream ended early');
    } catch (err) {
      if (signal?.aborted) return;
      failure = err;
    } finally {
      signal?.removeEventListener('abort', cancel);
      call.cancel();
    }
    giveUpAt ??= Date.now() + endpoints.failoverTimeoutMs;
    if (isUnavailable(failure)) endpoint = endpoints.failOver(endpoint, failure);
    const mayResume = (options.resumable?.() ?? true) && endpoints.mayFailOver(failure);
    if (!mayResume || Date.now() >= giveUpAt) throw fromServiceError(failure);
    await pause(Math.min(endpoints.backoffMs(), giveUpAt - Date.now()), signal);
  }
}
