// mgmt.bus: publish, publishMany, subscribe (an async iterator of messages to ack, nack, mark in
// progress or terminate), and the consumer and retention calls.

import { status } from '@grpc/grpc-js';

import type { Context } from './context.js';
import { type Endpoint, resumable, unavailable, unaryCall } from './endpoints.js';
import { fromServiceError, InvalidArgument } from './errors.js';
import {
  AckAction,
  AckItem,
  AckRequest,
  AckResult,
  AckMode,
  BusMessage,
  type ConsumerInfo,
  DeleteConsumerRequest,
  type Delivery,
  type Gap,
  GetConsumerInfoRequest,
  ListConsumersRequest,
  ListRetentionRequest,
  ListSubjectsRequest,
  NackRequest,
  PublishRequest,
  type PublishResponse,
  PublishStreamRequest,
  type PublishStreamResponse,
  type RetentionPolicy,
  SetRetentionRequest,
  StartPosition,
  SubscribeRequest,
  type SubscribeResponse,
  type SubjectInfo,
  type SubscriptionReady,
} from './gen/hms/mgmt/v1/bus.js';
import { duration } from './payload.js';

/** A payload: bytes as they are, a string as UTF-8, anything else as JSON (content type application/json). */
export type Data = Uint8Array | string | object;

export interface PublishOptions {
  headers?: Record<string, string>;
  contentType?: string;
  /** Deduplicated by the control plane within its window: with one, a publish is retried on the next replica. */
  messageId?: string;
}

export interface OutgoingMessage extends PublishOptions {
  subject: string;
  data: Data;
}

/** Where a new consumer starts: new messages only (default), all retained ones, or from a sequence or time. */
export type Start = 'new' | 'all' | { sequence: number } | { time: Date };

export interface SubscribeOptions {
  /** Durable consumer name: position and unacked deliveries survive disconnects and restarts. */
  durable?: string;
  /** Subscribers of one group share the messages. */
  queueGroup?: string;
  /** At least once: every delivery must be settled (ack, nack, inProgress, term). Default: at most once. */
  explicitAck?: boolean;
  start?: Start;
  ackWaitMs?: number;
  maxDeliveries?: number;
  backoffMs?: number[];
  deadLetterSubject?: string;
  maxInFlight?: number;
  maxBatch?: number;
  /** Ends the subscription; the iteration then rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface RetentionOptions {
  maxAgeMs?: number;
  maxMessages?: number;
  remove?: boolean;
}

/** A payload and its metadata as the wire message (data as bytes, content type filled in). */
export function busMessage(message: OutgoingMessage): BusMessage {
  const { data } = message;
  let bytes: Buffer;
  let contentType = message.contentType ?? '';
  if (data instanceof Uint8Array) {
    bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  } else if (typeof data === 'string') {
    bytes = Buffer.from(data, 'utf8');
  } else {
    bytes = Buffer.from(JSON.stringify(data), 'utf8');
    contentType ||= 'application/json';
  }
  return BusMessage.fromPartial({
    subject: message.subject,
    data: bytes,
    headers: { ...message.headers },
    contentType,
    messageId: message.messageId ?? '',
  });
}

/**
 * Settles deliveries in batches: the settlements asked for in one turn of the event loop go to each
 * replica as one Ack request (a frame costs about the same whatever it carries).
 */
class Settler {
  readonly #ctx: Context;
  readonly #queues = new Map<Endpoint, { item: AckItem; resolve: (r: AckResult) => void; reject: (e: unknown) => void }[]>();

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  settle(endpoint: Endpoint, item: AckItem): Promise<AckResult> {
    let queue = this.#queues.get(endpoint);
    if (!queue) {
      queue = [];
      this.#queues.set(endpoint, queue);
      setImmediate(() => void this.#flush(endpoint));
    }
    const waiting = queue;
    return new Promise((resolve, reject) => waiting.push({ item, resolve, reject }));
  }

  async #flush(endpoint: Endpoint): Promise<void> {
    const queue = this.#queues.get(endpoint) ?? [];
    this.#queues.delete(endpoint);
    for (let start = 0; start < queue.length; start += 10_000) {
      const chunk = queue.slice(start, start + 10_000);
      const request = AckRequest.fromPartial({ items: chunk.map((w) => w.item) });
      try {
        const { results } = await unaryCall(endpoint.bus, endpoint.bus.ack, request, this.#ctx.metadata(), {
          deadlineMs: this.#ctx.callTimeoutMs,
        });
        chunk.forEach((waiting, i) => waiting.resolve(results[i] ?? AckResult.ACK_RESULT_UNSPECIFIED));
      } catch (err) {
        const error = fromServiceError(err);
        for (const waiting of chunk) waiting.reject(error);
      }
    }
  }
}

/** One delivery of a subscription. */
export class Message {
  readonly subject: string;
  readonly data: Buffer;
  readonly headers: Record<string, string>;
  readonly contentType: string;
  readonly messageId: string;
  /** Position in the bus log. */
  readonly sequence: number;
  /** Position in its subject's log. */
  readonly subjectSequence: number;
  readonly publishedAt: Date | undefined;
  /** Names this delivery attempt; empty without explicit acks. */
  readonly deliveryId: string;
  /** 1 for the first delivery, 2 and up for redeliveries. */
  readonly attempt: number;
  readonly consumer: string;
  readonly #settle: (item: Partial<AckItem>) => Promise<AckResult>;

  constructor(delivery: Delivery, settle: (item: Partial<AckItem>) => Promise<AckResult>) {
    const message = delivery.message!;
    this.subject = message.subject;
    this.data = message.data;
    this.headers = message.headers;
    this.contentType = message.contentType;
    this.messageId = message.messageId;
    this.sequence = message.sequence;
    this.subjectSequence = message.subjectSequence;
    this.publishedAt = message.publishedAt;
    this.deliveryId = delivery.deliveryId;
    this.attempt = delivery.attempt;
    this.consumer = delivery.consumer;
    this.#settle = settle;
  }

  /** The data as UTF-8 text. */
  text(): string {
    return this.data.toString('utf8');
  }

  /** The data parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }

  /** Done: the message leaves the consumer. */
  ack(): Promise<AckResult> {
    return this.#settle({ action: AckAction.ACK_ACTION_ACK });
  }

  /** Not done: redeliver after `delayMs` (or the consumer's backoff). */
  nack({ delayMs }: { delayMs?: number } = {}): Promise<AckResult> {
    return this.#settle({ action: AckAction.ACK_ACTION_NACK, delay: delayMs === undefined ? undefined : duration(delayMs) });
  }

  /** Still working: restart the ack deadline. */
  inProgress(): Promise<AckResult> {
    return this.#settle({ action: AckAction.ACK_ACTION_IN_PROGRESS });
  }

  /** Give up: straight to the dead-letter subject, with `reason`. */
  term(reason = ''): Promise<AckResult> {
    return this.#settle({ action: AckAction.ACK_ACTION_TERMINATE, reason });
  }
}

/**
 * An open subscription (its `ready` frame was read): iterate its messages. With several addresses, a
 * durable subscription whose replica goes away subscribes again on the next one under the same name
 * (the control plane keeps the consumer's position; unacked deliveries come again); an ephemeral one
 * ends with Unavailable, as its consumer went with the replica.
 */
export class Subscription implements AsyncIterable<Message> {
  ready: SubscriptionReady | undefined;
  /** Gap markers received (at-most-once subscribers that fell behind). */
  readonly gaps: Gap[] = [];
  /** The replica this subscription's stream is on: its settlements go there. */
  endpoint: Endpoint;
  readonly #request: SubscribeRequest;
  readonly #frames: AsyncGenerator<SubscribeResponse, void, undefined>;
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal | undefined;
  readonly #settler: Settler;
  #resumable = true;

  constructor(ctx: Context, request: SubscribeRequest, settler: Settler, signal: AbortSignal | undefined) {
    this.#request = request;
    this.#settler = settler;
    this.#signal = signal;
    this.endpoint = ctx.endpoints.current;
    this.#frames = resumable<SubscribeResponse>(ctx.endpoints, {
      open: (e) => {
        this.endpoint = e;
        return e.bus.subscribe(this.#resumeRequest(), ctx.metadata());
      },
      resumable: () => this.#resumable,
      signal: signal ? AbortSignal.any([signal, this.#stop.signal]) : this.#stop.signal,
    });
  }

  /** The consumer's name. */
  get consumer(): string {
    return this.ready?.consumer?.name ?? '';
  }

  /**
   * The request, once subscribed starting no earlier than the first subscription did: should a
   * replica not know the consumer, it starts where this subscription started, never from the
   * (possibly much older) start position asked for.
   */
  #resumeRequest(): SubscribeRequest {
    if (!this.ready?.startSequence) return this.#request;
    return {
      ...this.#request,
      start: StartPosition.START_POSITION_FROM_SEQUENCE,
      startSequence: this.ready.startSequence,
      startTime: undefined,
    };
  }

  /** Wait for the `ready` frame: from then on the subscription is in place. */
  async start(): Promise<void> {
    const first = await this.#frames.next();
    this.#signal?.throwIfAborted();
    if (first.done || !first.value.ready) throw unavailable('the subscribe stream closed before it was ready');
    this.ready = first.value.ready;
    this.#resumable = Boolean(this.#request.durable);
  }

  /** Whole frames (a batch of deliveries and/or a gap marker), for batch processing. */
  async *frames(): AsyncGenerator<SubscribeResponse, void, undefined> {
    try {
      for (;;) {
        const next = await this.#frames.next();
        if (next.done) break;
        if (next.value.ready) continue; // subscribed again on another replica; the first `ready` is kept
        if (next.value.gap) this.gaps.push(next.value.gap);
        yield next.value;
      }
      this.#signal?.throwIfAborted();
    } finally {
      this.close();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Message, void, undefined> {
    for await (const frame of this.frames()) {
      const endpoint = this.endpoint; // the replica that delivered them, where they are settled
      for (const delivery of frame.deliveries) {
        yield new Message(delivery, (item) => this.#settler.settle(endpoint, AckItem.fromPartial({ ...item, deliveryId: delivery.deliveryId })));
      }
    }
  }

  /** End the subscription's stream (an iteration in progress ends). */
  close(): void {
    this.#stop.abort();
    void this.#frames.return();
  }
}

/** Bus calls; answers are the wire messages of hms.mgmt.v1 as plain objects. */
export class BusApi {
  readonly #ctx: Context;
  readonly #settler: Settler;

  constructor(ctx: Context) {
    this.#ctx = ctx;
    this.#settler = new Settler(ctx);
  }

  /** Store one message; resolves once it is on disk. Retried on the next replica only with a `messageId`. */
  publish(subject: string, data: Data, options: PublishOptions = {}): Promise<PublishResponse> {
    const request = PublishRequest.fromPartial({ message: busMessage({ ...options, subject, data }) });
    return this.#ctx.unary((e) => [e.bus, e.bus.publish], request, Boolean(options.messageId));
  }

  /**
   * Store many messages over one PublishStream, in batches, each stored whole or not at all;
   * resolves to their bus-log sequences. Sent again whole on the next replica only when every
   * message has a `messageId`. A refused batch rejects with InvalidArgument (fields numbered in
   * `messages`); the batches before it are stored, none after it.
   */
  publishMany(messages: readonly OutgoingMessage[], { batchSize = 500 } = {}): Promise<number[]> {
    const wire = messages.map(busMessage);
    const retry = wire.every((m) => m.messageId);
    return this.#ctx.endpoints.unary((e) => this.#publishStream(e, wire, batchSize), { retry });
  }

  async #publishStream(endpoint: Endpoint, messages: BusMessage[], batchSize: number): Promise<number[]> {
    const call = endpoint.bus.publishStream(this.#ctx.metadata());
    const answers = call[Symbol.asyncIterator]() as AsyncIterator<PublishStreamResponse>;
    const sequences: number[] = [];
    try {
      for (let start = 0; start < messages.length; start += batchSize) {
        call.write(PublishStreamRequest.fromPartial({ batchId: start, messages: messages.slice(start, start + batchSize) }));
        const answer = await answers.next();
        if (answer.done) throw unavailable('the publish stream ended early');
        if (answer.value.violations.length) {
          const violations = answer.value.violations.map(({ field, description }) => ({
            field: field.replace(/^messages\[(\d+)\]/, (_, i: string) => `messages[${start + Number(i)}]`),
            description,
          }));
          const text = violations.map((v) => `${v.field}: ${v.description}`).join('; ');
          throw new InvalidArgument(text, { code: status.INVALID_ARGUMENT, details: text, violations });
        }
        sequences.push(...answer.value.sequences);
      }
      call.end();
      await answers.next(); // the server's end of the stream
    } catch (err) {
      call.cancel();
      throw err;
    }
    return sequences;
  }

  /** A subscription in place once this resolves (its `ready` frame was read); iterate its messages. */
  async subscribe(pattern: string, options: SubscribeOptions = {}): Promise<Subscription> {
    const request = SubscribeRequest.fromPartial({
      pattern,
      durable: options.durable ?? '',
      queueGroup: options.queueGroup ?? '',
      ...startFields(options.start ?? 'new'),
      ackMode: options.explicitAck ? AckMode.ACK_MODE_EXPLICIT : AckMode.ACK_MODE_NONE,
      ackWait: options.ackWaitMs === undefined ? undefined : duration(options.ackWaitMs),
      maxDeliveries: options.maxDeliveries ?? 0,
      backoff: (options.backoffMs ?? []).map(duration),
      deadLetterSubject: options.deadLetterSubject ?? '',
      maxInFlight: options.maxInFlight ?? 0,
      maxBatch: options.maxBatch ?? 0,
    });
    const subscription = new Subscription(this.#ctx, request, this.#settler, options.signal);
    await subscription.start();
    return subscription;
  }

  /** Settle deliveries by id (on the current replica): ack by default, or per item nack, in progress, terminate. */
  async settle(items: readonly Partial<AckItem>[]): Promise<AckResult[]> {
    const request = AckRequest.fromPartial({ items: [...items] });
    return (await this.#ctx.unary((e) => [e.bus, e.bus.ack], request)).results;
  }

  /** Acknowledge deliveries by id; one result per id. */
  ack(...deliveryIds: string[]): Promise<AckResult[]> {
    return this.settle(deliveryIds.map((deliveryId) => ({ deliveryId })));
  }

  /** Ask for redelivery, after `delayMs` or the consumer's backoff. */
  async nack(deliveryIds: readonly string[], { delayMs }: { delayMs?: number } = {}): Promise<AckResult[]> {
    const request = NackRequest.fromPartial({
      deliveryIds: [...deliveryIds],
      delay: delayMs === undefined ? undefined : duration(delayMs),
    });
    return (await this.#ctx.unary((e) => [e.bus, e.bus.nack], request)).results;
  }

  /** Every stored subject (matching `pattern`), every page. */
  async subjects(pattern = ''): Promise<SubjectInfo[]> {
    const found: SubjectInfo[] = [];
    let pageToken = '';
    do {
      const request = ListSubjectsRequest.fromPartial({ pattern, pageSize: 1000, pageToken });
      const page = await this.#ctx.unary((e) => [e.bus, e.bus.listSubjects], request, true);
      found.push(...page.subjects);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return found;
  }

  /** Every consumer, every page. */
  async consumers({ includeEphemeral = false } = {}): Promise<ConsumerInfo[]> {
    const found: ConsumerInfo[] = [];
    let pageToken = '';
    do {
      const request = ListConsumersRequest.fromPartial({ includeEphemeral, pageSize: 1000, pageToken });
      const page = await this.#ctx.unary((e) => [e.bus, e.bus.listConsumers], request, true);
      found.push(...page.consumers);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return found;
  }

  /** One consumer's configuration and state. */
  async consumerInfo(name: string): Promise<ConsumerInfo> {
    const request = GetConsumerInfoRequest.fromPartial({ name });
    return (await this.#ctx.unary((e) => [e.bus, e.bus.getConsumerInfo], request, true)).consumer!;
  }

  /** Every retention policy in force, the default ("") first. */
  async retention(): Promise<RetentionPolicy[]> {
    const request = ListRetentionRequest.fromPartial({});
    return (await this.#ctx.unary((e) => [e.bus, e.bus.listRetention], request, true)).policies;
  }

  /** Remove a durable consumer. */
  async deleteConsumer(name: string): Promise<void> {
    await this.#ctx.unary((e) => [e.bus, e.bus.deleteConsumer], DeleteConsumerRequest.fromPartial({ name }));
  }

  /** Set (or remove) the retention of a subject prefix; the policy now in force. */
  async setRetention(subjectPrefix: string, options: RetentionOptions = {}): Promise<RetentionPolicy> {
    const request = SetRetentionRequest.fromPartial({
      policy: {
        subjectPrefix,
        maxAge: options.maxAgeMs ? duration(options.maxAgeMs) : undefined,
        maxMessages: options.maxMessages ?? 0,
      },
      remove: options.remove ?? false,
    });
    // Setting the same policy twice is harmless, so it is retried like a read.
    return (await this.#ctx.unary((e) => [e.bus, e.bus.setRetention], request, true)).policy!;
  }
}

function startFields(start: Start): Pick<SubscribeRequest, 'start'> & Partial<SubscribeRequest> {
  if (start === 'new') return { start: StartPosition.START_POSITION_NEW_ONLY };
  if (start === 'all') return { start: StartPosition.START_POSITION_ALL };
  if ('sequence' in start) return { start: StartPosition.START_POSITION_FROM_SEQUENCE, startSequence: start.sequence };
  return { start: StartPosition.START_POSITION_FROM_TIME, startTime: start.time };
}
