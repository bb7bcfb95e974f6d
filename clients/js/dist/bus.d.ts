import type { Context } from './context.js';
import { type Endpoint } from './endpoints.js';
import { AckItem, AckResult, BusMessage, type ConsumerInfo, type Delivery, type Gap, type PublishResponse, type RetentionPolicy, SubscribeRequest, type SubscribeResponse, type SubjectInfo, type SubscriptionReady } from './gen/hms/mgmt/v1/bus.js';
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
export type Start = 'new' | 'all' | {
    sequence: number;
} | {
    time: Date;
};
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
export declare function busMessage(message: OutgoingMessage): BusMessage;
/**
 * Settles deliveries in batches: the settlements asked for in one turn of the event loop go to each
 * replica as one Ack request (a frame costs about the same whatever it carries).
 */
declare class Settler {
    #private;
    constructor(ctx: Context);
    settle(endpoint: Endpoint, item: AckItem): Promise<AckResult>;
}
/** One delivery of a subscription. */
export declare class Message {
    #private;
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
    constructor(delivery: Delivery, settle: (item: Partial<AckItem>) => Promise<AckResult>);
    /** The data as UTF-8 text. */
    text(): string;
    /** The data parsed as JSON. */
    json<T = unknown>(): T;
    /** Done: the message leaves the consumer. */
    ack(): Promise<AckResult>;
    /** Not done: redeliver after `delayMs` (or the consumer's backoff). */
    nack({ delayMs }?: {
        delayMs?: number;
    }): Promise<AckResult>;
    /** Still working: restart the ack deadline. */
    inProgress(): Promise<AckResult>;
    /** Give up: straight to the dead-letter subject, with `reason`. */
    term(reason?: string): Promise<AckResult>;
}
/**
 * An open subscription (its `ready` frame was read): iterate its messages. With several addresses, a
 * durable subscription whose replica goes away subscribes again on the next one under the same name
 * (the control plane keeps the consumer's position; unacked deliveries come again); an ephemeral one
 * ends with Unavailable, as its consumer went with the replica.
 */
export declare class Subscription implements AsyncIterable<Message> {
    #private;
    ready: SubscriptionReady | undefined;
    /** Gap markers received (at-most-once subscribers that fell behind). */
    readonly gaps: Gap[];
    /** The replica this subscription's stream is on: its settlements go there. */
    endpoint: Endpoint;
    constructor(ctx: Context, request: SubscribeRequest, settler: Settler, signal: AbortSignal | undefined);
    /** The consumer's name. */
    get consumer(): string;
    /** Wait for the `ready` frame: from then on the subscription is in place. */
    start(): Promise<void>;
    /** Whole frames (a batch of deliveries and/or a gap marker), for batch processing. */
    frames(): AsyncGenerator<SubscribeResponse, void, undefined>;
    [Symbol.asyncIterator](): AsyncGenerator<Message, void, undefined>;
    /** End the subscription's stream (an iteration in progress ends). */
    close(): void;
}
/** Bus calls; answers are the wire messages of hms.mgmt.v1 as plain objects. */
export declare class BusApi {
    #private;
    constructor(ctx: Context);
    /** Store one message; resolves once it is on disk. Retried on the next replica only with a `messageId`. */
    publish(subject: string, data: Data, options?: PublishOptions): Promise<PublishResponse>;
    /**
     * Store many messages over one PublishStream, in batches, each stored whole or not at all;
     * resolves to their bus-log sequences. Sent again whole on the next replica only when every
     * message has a `messageId`. A refused batch rejects with InvalidArgument (fields numbered in
     * `messages`); the batches before it are stored, none after it.
     */
    publishMany(messages: readonly OutgoingMessage[], { batchSize }?: {
        batchSize?: number | undefined;
    }): Promise<number[]>;
    /** A subscription in place once this resolves (its `ready` frame was read); iterate its messages. */
    subscribe(pattern: string, options?: SubscribeOptions): Promise<Subscription>;
    /** Settle deliveries by id (on the current replica): ack by default, or per item nack, in progress, terminate. */
    settle(items: readonly Partial<AckItem>[]): Promise<AckResult[]>;
    /** Acknowledge deliveries by id; one result per id. */
    ack(...deliveryIds: string[]): Promise<AckResult[]>;
    /** Ask for redelivery, after `delayMs` or the consumer's backoff. */
    nack(deliveryIds: readonly string[], { delayMs }?: {
        delayMs?: number;
    }): Promise<AckResult[]>;
    /** Every stored subject (matching `pattern`), every page. */
    subjects(pattern?: string): Promise<SubjectInfo[]>;
    /** Every consumer, every page. */
    consumers({ includeEphemeral }?: {
        includeEphemeral?: boolean | undefined;
    }): Promise<ConsumerInfo[]>;
    /** One consumer's configuration and state. */
    consumerInfo(name: string): Promise<ConsumerInfo>;
    /** Every retention policy in force, the default ("") first. */
    retention(): Promise<RetentionPolicy[]>;
    /** Remove a durable consumer. */
    deleteConsumer(name: string): Promise<void>;
    /** Set (or remove) the retention of a subject prefix; the policy now in force. */
    setRetention(subjectPrefix: string, options?: RetentionOptions): Promise<RetentionPolicy>;
}
export {};
