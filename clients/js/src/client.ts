// connect(): channels to one or more control-plane replicas, with the registry, bus and workflow facades.

import { credentials as grpcCredentials, type ChannelCredentials, type Metadata } from '@grpc/grpc-js';

import { BusApi } from './bus.js';
import { Context } from './context.js';
import {
  DEFAULT_CALL_TIMEOUT_MS,
  defaultLogger,
  Endpoint,
  Endpoints,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  type Logger,
  parseAddresses,
} from './endpoints.js';
import { RegistryApi } from './registry.js';
import { ScheduleApi } from './schedule.js';
import { WorkflowApi } from './workflow.js';

/** TLS: `true` trusts the system's CAs; or PEM contents (not paths) of a CA and, for mutual TLS, a client certificate and key. */
export type TlsOptions = true | { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string };

export interface ConnectOptions {
  /** One "host:port", several as a list, or several in one comma-separated string. */
  addresses: string | readonly string[];
  /** Bearer token sent with every call. */
  token?: string;
  /** Plaintext when unset. */
  tls?: TlsOptions;
  /** How long a stream keeps trying the addresses in turn before it gives up (default 30 s). */
  failoverTimeoutMs?: number;
  /** The deadline of each unary call (default 30 s; a definition's apply gets 120 s). */
  callTimeoutMs?: number;
  /** How often a connection with calls open is pinged (default 20 s). */
  keepaliveTimeMs?: number;
  /** How long a ping may go unanswered before the connection counts as gone (default 10 s). */
  keepaliveTimeoutMs?: number;
  /** Where failovers and retries are logged (default: warnings to stderr). */
  logger?: Logger;
}

function channelCredentials(tls: TlsOptions | undefined): ChannelCredentials {
  if (!tls) return grpcCredentials.createInsecure();
  if (tls === true) return grpcCredentials.createSsl();
  const pem = (value: Buffer | string | undefined) => (value === undefined ? null : Buffer.from(value));
  return grpcCredentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

/** The Registry and Workflow calls of one replica, without failover: a Worker's session stays there. */
export interface Pinned {
  endpoint: Endpoint;
  registry: RegistryApi;
  workflow: WorkflowApi;
  metadata(): Metadata;
}

/**
 * A client of the control plane. Calls go to one address at a time and move to the next when its
 * replica goes away: calls safe to repeat are tried on every address in turn, streams resume there
 * for up to `failoverTimeoutMs`. Each unary call has a deadline (`callTimeoutMs`) and connections
 * with calls open are pinged (`keepaliveTimeMs`), so a hung replica cannot hold a call forever.
 * TLS and the token apply to every address. Channels connect on first use.
 */
export class Client {
  readonly registry: RegistryApi;
  readonly bus: BusApi;
  readonly workflow: WorkflowApi;
  readonly schedules: ScheduleApi;
  readonly endpoints: Endpoints;
  readonly #ctx: Context;
  #closed = false;

  constructor(options: ConnectOptions) {
    const credentials = channelCredentials(options.tls);
    const logger = options.logger ?? defaultLogger;
    const keepalive = {
      timeMs: options.keepaliveTimeMs ?? KEEPALIVE_TIME_MS,
      timeoutMs: options.keepaliveTimeoutMs ?? KEEPALIVE_TIMEOUT_MS,
    };
    const endpoints = parseAddresses(options.addresses).map((address) => new Endpoint(address, credentials, keepalive));
    this.endpoints = new Endpoints(endpoints, options.failoverTimeoutMs ?? 30_000, logger);
    this.#ctx = new Context(this.endpoints, options.token, logger, options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
    this.registry = new RegistryApi(this.#ctx);
    this.bus = new BusApi(this.#ctx);
    this.workflow = new WorkflowApi(this.#ctx);
    this.schedules = new ScheduleApi(this.#ctx);
  }

  /** The address in use now. */
  get address(): string {
    return this.endpoints.current.address;
  }

  /** Every address, in the order they are tried. */
  get addresses(): string[] {
    return this.endpoints.all.map((e) => e.address);
  }

  get logger(): Logger {
    return this.#ctx.logger;
  }

  /** Registry and Workflow calls that all go to `endpoint` and never fail over. */
  pinned(endpoint: Endpoint): Pinned {
    const ctx = this.#ctx.pinned(endpoint);
    return { endpoint, registry: new RegistryApi(ctx), workflow: new WorkflowApi(ctx), metadata: () => ctx.metadata() };
  }

  /** Wait until a control plane accepts a connection (the first ready one is used from then on). */
  async waitReady({ timeoutMs = 10_000 } = {}): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const ready = this.endpoints.all.map(
      (endpoint) =>
        new Promise<Endpoint>((resolve, reject) =>
          endpoint.registry.waitForReady(deadline, (error) => (error ? reject(error) : resolve(endpoint))),
        ),
    );
    try {
      this.endpoints.use(await Promise.any(ready));
    } catch {
      throw new Error(`no control plane ready at ${this.addresses.join(', ')} within ${timeoutMs} ms`);
    }
  }

  /** Close the channels; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.endpoints.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A client of the control plane at `addresses`:
 * `connect({ addresses: ['127.0.0.1:50051'], token, tls })`, or just the address(es).
 */
export function connect(options: ConnectOptions | string | readonly string[]): Client {
  return new Client(typeof options === 'string' || Array.isArray(options) ? { addresses: options as string | string[] } : (options as ConnectOptions));
}
