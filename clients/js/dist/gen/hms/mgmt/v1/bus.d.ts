import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientDuplexStream, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type handleBidiStreamingCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Duration } from "../../../google/protobuf/duration.js";
import { FieldViolation } from "./common.js";
export declare const protobufPackage = "hms.mgmt.v1";
export declare const protobufFileName = "hms/mgmt/v1/bus.proto";
/**
 * Bus: durable publish/subscribe between services, with wildcards, queue groups, acks,
 * redelivery, dead letters and replay.
 *
 * Subjects are dot-separated tokens ("permit.application.submitted"). A token is a non-empty run
 * of printable ASCII other than '.', '*', '>' and whitespace; a subject has at most 16 tokens and
 * 255 characters. Subscription patterns may use '*' (exactly one token) and '>' (one or more
 * trailing tokens, last only), as NATS does: "permit.*.submitted", "permit.>". Subjects whose
 * first token starts with '$' are system subjects (dead letters live under "$DLQ"); a wildcard in
 * the first position does not match them (as MQTT's "$SYS"), only a pattern that names the
 * first token does ("$DLQ.>").
 *
 * Every stored message has two numbers: `sequence`, its position in the bus log (one log for
 * all subjects, strictly increasing, the number consumers, replays and acks refer to), and
 * `subject_sequence`, its position in its own subject's log (1, 2, 3, ... per subject).
 * A publish is acknowledged only once the message is on disk (fsync); publishes arriving
 * together share one commit (group commit).
 *
 * Throughput comes from batching: a gRPC frame costs about the same whatever it carries, so
 * PublishStream requests, Subscribe responses and Ack requests each carry many items. Batches are
 * bounded in bytes as well as in items (see common.proto for the sizes): a Subscribe response carries
 * about 1 MiB of messages at most. A message "weighs" its data, subject, header keys and values,
 * content type and message id (in bytes of data and characters of text).
 *
 * The server keeps the newest messages in memory, within a byte budget (`mgmt serve
 * --bus-tail-mib`, default 256 MiB); subscribers behind it read from the store, page by page.
 *
 * Retention is per subject prefix: the longest configured prefix (token-wise: "orders" covers
 * "orders" and "orders.eu.new") applies; the default policy (prefix "") keeps a message for
 * 7 days and at most the newest 1,000,000 messages of each subject (server settings may change
 * these defaults). Expired messages are removed in the background (at least every minute), pending
 * acks included; from then on no subscriber gets them, replays included.
 */
/** Where a new consumer starts reading the log. */
export declare enum StartPosition {
    /** START_POSITION_UNSPECIFIED - Same as NEW_ONLY. */
    START_POSITION_UNSPECIFIED = "START_POSITION_UNSPECIFIED",
    /** START_POSITION_NEW_ONLY - Only messages published after the subscription is in place (the default). */
    START_POSITION_NEW_ONLY = "START_POSITION_NEW_ONLY",
    /** START_POSITION_ALL - Every retained message matching the pattern, then new ones. */
    START_POSITION_ALL = "START_POSITION_ALL",
    /** START_POSITION_FROM_SEQUENCE - Retained messages with sequence >= start_sequence (bus-log sequence), then new ones. */
    START_POSITION_FROM_SEQUENCE = "START_POSITION_FROM_SEQUENCE",
    /** START_POSITION_FROM_TIME - Retained messages published at or after start_time, then new ones. */
    START_POSITION_FROM_TIME = "START_POSITION_FROM_TIME",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function startPositionFromJSON(object: any): StartPosition;
export declare function startPositionToJSON(object: StartPosition): string;
export declare function startPositionToNumber(object: StartPosition): number;
/** Whether the subscriber acknowledges deliveries. */
export declare enum AckMode {
    /** ACK_MODE_UNSPECIFIED - Same as NONE. */
    ACK_MODE_UNSPECIFIED = "ACK_MODE_UNSPECIFIED",
    /**
     * ACK_MODE_NONE - At most once: a message counts as handled once sent on the stream; no acks, no redelivery.
     * A subscriber that falls max_in_flight messages behind skips messages and gets a gap marker.
     */
    ACK_MODE_NONE = "ACK_MODE_NONE",
    /**
     * ACK_MODE_EXPLICIT - At least once: each delivery must be acked within ack_wait or it is redelivered (with the
     * backoff), up to max_deliveries attempts, after which it goes to the dead-letter subject.
     */
    ACK_MODE_EXPLICIT = "ACK_MODE_EXPLICIT",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function ackModeFromJSON(object: any): AckMode;
export declare function ackModeToJSON(object: AckMode): string;
export declare function ackModeToNumber(object: AckMode): number;
/** What to do with a delivery. */
export declare enum AckAction {
    /** ACK_ACTION_UNSPECIFIED - Same as ACK, so {"delivery_id": "..."} acks. */
    ACK_ACTION_UNSPECIFIED = "ACK_ACTION_UNSPECIFIED",
    /** ACK_ACTION_ACK - Done: the message leaves the consumer. */
    ACK_ACTION_ACK = "ACK_ACTION_ACK",
    /**
     * ACK_ACTION_NACK - Not done: redeliver after `delay` (or the consumer's backoff when unset). Counts as an
     * attempt: at max_deliveries the message is dead-lettered instead.
     */
    ACK_ACTION_NACK = "ACK_ACTION_NACK",
    /** ACK_ACTION_IN_PROGRESS - Still working: restart the ack deadline (now + ack_wait) without settling. */
    ACK_ACTION_IN_PROGRESS = "ACK_ACTION_IN_PROGRESS",
    /** ACK_ACTION_TERMINATE - Give up: send the message straight to the dead-letter subject with `reason`. */
    ACK_ACTION_TERMINATE = "ACK_ACTION_TERMINATE",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function ackActionFromJSON(object: any): AckAction;
export declare function ackActionToJSON(object: AckAction): string;
export declare function ackActionToNumber(object: AckAction): number;
/** Outcome of one item of an Ack or Nack. */
export declare enum AckResult {
    /** ACK_RESULT_UNSPECIFIED - Never sent. */
    ACK_RESULT_UNSPECIFIED = "ACK_RESULT_UNSPECIFIED",
    /** ACK_RESULT_ACCEPTED - The action was applied. */
    ACK_RESULT_ACCEPTED = "ACK_RESULT_ACCEPTED",
    /** ACK_RESULT_ALREADY_ACKED - The message was already settled (acked, or dead-lettered); nothing changed. Harmless. */
    ACK_RESULT_ALREADY_ACKED = "ACK_RESULT_ALREADY_ACKED",
    /**
     * ACK_RESULT_STALE - Refused: this attempt was superseded (the message was redelivered after it); nothing
     * changed. The newer attempt must be settled instead.
     */
    ACK_RESULT_STALE = "ACK_RESULT_STALE",
    /**
     * ACK_RESULT_NOT_FOUND - No such pending delivery: its consumer was deleted or was ephemeral and ended, or the message
     * was removed by retention.
     */
    ACK_RESULT_NOT_FOUND = "ACK_RESULT_NOT_FOUND",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function ackResultFromJSON(object: any): AckResult;
export declare function ackResultToJSON(object: AckResult): string;
export declare function ackResultToNumber(object: AckResult): number;
/** One message on the bus. */
export interface BusMessage {
    /** Subject to publish on: no wildcards, see the file comment for the syntax. */
    subject: string;
    /** Payload, opaque to the bus. At most 1 MiB. In JSON (grpcurl) it is base64. */
    data: Buffer;
    /**
     * Application headers. At most 64 entries; keys 1-128 characters, values up to 4,096.
     * Keys starting with "hms-" are reserved for the bus (see SubscribeRequest.dead_letter_subject).
     * "traceparent" is the W3C Trace Context of the message's publisher: a control plane that traces
     * sets it (to its span of the publishing call, which continues the call's own traceparent
     * metadata) when the publisher did not, and links its delivery spans to it.
     */
    headers: {
        [key: string]: string;
    };
    /** MIME type of data, e.g. "application/json"; empty means unknown. Up to 128 characters. */
    contentType: string;
    /**
     * Optional publisher-chosen id, up to 128 characters: a publish whose id was already stored
     * within the dedup window (default 2 min) stores nothing and returns the first message's
     * sequences with duplicate = true. Ids are bus-wide, not per subject.
     */
    messageId: string;
    /** Position in the bus log, assigned by the server (ignored on publish). Starts at 1. */
    sequence: number;
    /** Position in this subject's own log, assigned by the server (ignored on publish). Starts at 1. */
    subjectSequence: number;
    /** When the server stored the message (ignored on publish). */
    publishedAt: Date | undefined;
}
export interface BusMessage_HeadersEntry {
    key: string;
    value: string;
}
/** Request of Publish. */
export interface PublishRequest {
    /** The message to store; sequence, subject_sequence and published_at are ignored. */
    message: BusMessage | undefined;
}
/** Response of Publish. */
export interface PublishResponse {
    /** Position of the message in the bus log. */
    sequence: number;
    /** Position of the message in its subject's log. */
    subjectSequence: number;
    /**
     * True when message_id was seen within the dedup window: nothing new was stored and the
     * sequences are those of the first publish.
     */
    duplicate: boolean;
    /** When the message was stored (the first publish's time for a duplicate). */
    publishedAt: Date | undefined;
}
/** One batch on a PublishStream. */
export interface PublishStreamRequest {
    /** Client-chosen batch id, echoed in the response that answers this request; not interpreted. */
    batchId: number;
    /**
     * Messages to store, in order: 1 to 1,000 per request, weighing at most 4 MiB in all (see the file
     * comment; the encoded request is a little larger). The batch is validated as a whole and stored
     * in one transaction: either every message is stored or none.
     */
    messages: BusMessage[];
}
/** The answer to one PublishStreamRequest; responses come in request order. */
export interface PublishStreamResponse {
    /** batch_id of the request this answers. */
    batchId: number;
    /**
     * Bus-log sequence of each message, in request order (same length as the request's messages);
     * empty when the batch was rejected.
     */
    sequences: number[];
    /** Subject-log sequence of each message, in request order; empty when the batch was rejected. */
    subjectSequences: number[];
    /**
     * Indexes (0-based, into the request's messages) of duplicates: their message_id was already
     * stored within the dedup window, and their sequences above are the first publish's.
     */
    duplicates: number[];
    /**
     * When the batch was stored: every new message of one batch shares it (a duplicate keeps its
     * first publish's time, which is earlier; a batch of duplicates only gives the latest of those).
     * Unset when rejected.
     */
    publishedAt: Date | undefined;
    /**
     * Why the batch was rejected, one entry per problem, e.g. field "messages[3].subject". When
     * non-empty nothing of the batch was stored; the stream stays open for the next batch.
     * Failures that are not the batch's fault (storage full, shutdown) end the stream with a status
     * instead; batches not yet answered then may or may not be stored (retry with message_id).
     */
    violations: FieldViolation[];
}
/**
 * Request of Subscribe. Fields marked "consumer setting" are stored with a durable consumer:
 * when the durable already exists, pattern, queue_group and ack_mode must equal the stored
 * ones (else FAILED_PRECONDITION; delete the consumer to change them), start fields are ignored
 * (it resumes where it was), and other settings left at 0/empty keep their stored values while
 * set ones replace them.
 */
export interface SubscribeRequest {
    /** Subject pattern to receive, with '*' and '>' wildcards. Required. Consumer setting. */
    pattern: string;
    /**
     * Durable consumer name, 1-128 characters of [A-Za-z0-9_-]. Its position and unacked
     * deliveries survive disconnects and restarts of the control plane, until DeleteConsumer.
     * Empty: an ephemeral consumer, named by the server and removed when its last subscriber leaves.
     */
    durable: string;
    /**
     * Queue group name, same charset as durable. Subscribers of one group share the messages: each
     * message goes to one member. Members are subscribers giving the same durable and queue_group
     * or, for ephemeral consumers, the same pattern and queue_group. A durable consumer without a
     * queue group takes one subscriber at a time (another gets FAILED_PRECONDITION).
     * Consumer setting.
     */
    queueGroup: string;
    /** Where a new consumer starts. Default NEW_ONLY. Ignored when a durable consumer resumes. */
    start: StartPosition;
    /**
     * First bus-log sequence to deliver, with START_POSITION_FROM_SEQUENCE (>= 1). A sequence
     * older than the oldest retained starts at the oldest retained.
     */
    startSequence: number;
    /** Earliest publish time to deliver, with START_POSITION_FROM_TIME. */
    startTime: Date | undefined;
    /** Default NONE (at most once). Consumer setting. */
    ackMode: AckMode;
    /**
     * EXPLICIT: time a delivery may stay unacked before it is redelivered; InProgress restarts it.
     * Default 30s; allowed 1s..12h. Consumer setting.
     */
    ackWait: Duration | undefined;
    /**
     * EXPLICIT: attempts (first delivery included) before a message is dead-lettered.
     * Default 5; allowed 1..100. Consumer setting.
     */
    maxDeliveries: number;
    /**
     * EXPLICIT: subject that receives messages that exhausted max_deliveries or were terminated.
     * Default "$DLQ.<consumer name>". The dead letter is a new message with the original data,
     * content_type and headers plus "hms-dlq-subject", "hms-dlq-sequence", "hms-dlq-consumer",
     * "hms-dlq-attempts" and "hms-dlq-reason" ("max_deliveries" or "terminated: <reason>").
     * Must not match pattern. Consumer setting.
     */
    deadLetterSubject: string;
    /**
     * EXPLICIT: most unacked deliveries outstanding on this stream (its credit; an ack returns
     * credit). Default 1,000; allowed 1..10,000.
     * NONE: most messages queued for this subscriber that it has not yet taken off the stream;
     * beyond it messages are skipped and a gap marker sent. Default 10,000; allowed 1..100,000.
     * Per subscriber stream, not per consumer.
     */
    maxInFlight: number;
    /**
     * EXPLICIT: delay before redelivering after attempt n failed (a nack without delay, or
     * ack_wait ran out), entry n-1, the last entry repeating. Default [1s, 5s, 30s, 120s];
     * at most 16 entries, each 0..1h. Consumer setting.
     */
    backoff: Duration[];
    /**
     * Most deliveries in one response. Default 256; allowed 1..1,000. A response also stops at about
     * 1 MiB of messages; a message larger than that comes alone in its own response. The server sends
     * what is ready without waiting to fill a batch.
     */
    maxBatch: number;
}
/** Configuration and state of one consumer, as of the moment it was read. */
export interface ConsumerInfo {
    /** Consumer name: the durable name, or a server-generated "_eph-<id>" for an ephemeral consumer. */
    name: string;
    /** True for a durable consumer. */
    durable: boolean;
    /** Subject pattern it receives. */
    pattern: string;
    /** Queue group its subscribers share, empty for none. */
    queueGroup: string;
    /** Acknowledgement mode. */
    ackMode: AckMode;
    /** Ack deadline of each delivery (EXPLICIT). */
    ackWait: Duration | undefined;
    /** Attempts before dead-lettering (EXPLICIT). */
    maxDeliveries: number;
    /** Redelivery delays (EXPLICIT), as in SubscribeRequest.backoff. */
    backoff: Duration[];
    /** Where dead letters go (EXPLICIT). */
    deadLetterSubject: string;
    /** Highest bus-log sequence delivered at least once; the next delivery is after it. 0 = none yet. */
    deliveredSequence: number;
    /** Every matching message at or below this sequence is settled (acked or dead-lettered). */
    ackFloorSequence: number;
    /** Matching retained messages after delivered_sequence, not yet delivered. */
    numPending: number;
    /** Delivered and not yet settled (EXPLICIT). */
    numAckPending: number;
    /** Of num_ack_pending, how many have been delivered more than once. */
    numRedelivered: number;
    /** Messages sent to the dead-letter subject since the consumer was created. */
    numDeadLettered: number;
    /** Subscriber streams attached now. */
    activeSubscribers: number;
    /** When the consumer was created. */
    createdAt: Date | undefined;
    /** Last time a subscriber was attached or a delivery settled; unset if never. */
    lastActiveAt: Date | undefined;
}
/** First response of every Subscribe: the subscription is in place. */
export interface SubscriptionReady {
    /** The consumer as configured after this subscription (effective defaults filled in). */
    consumer: ConsumerInfo | undefined;
    /** True when this subscription created the consumer; false when it resumed or joined one. */
    created: boolean;
    /**
     * Nothing published with a sequence at or above this one will be missed (subject to the
     * consumer's start position and, in NONE mode, to gaps).
     */
    startSequence: number;
}
/** One message handed to a subscriber. */
export interface Delivery {
    /** The message, with its sequences and publish time. */
    message: BusMessage | undefined;
    /**
     * Opaque token naming this delivery attempt (consumer, sequence, attempt), for Ack and Nack.
     * Empty in NONE mode.
     */
    deliveryId: string;
    /** Delivery attempt, 1-based: 2 and up are redeliveries. Always 1 in NONE mode. */
    attempt: number;
    /** Name of the consumer this delivery belongs to (SubscriptionReady.consumer.name). */
    consumer: string;
}
/**
 * Tells a NONE-mode subscriber that it fell behind and messages were skipped. The messages are
 * still in the log: a subscription with START_POSITION_FROM_SEQUENCE can replay them.
 */
export interface Gap {
    /** Lowest bus-log sequence skipped. */
    firstSequence: number;
    /** Highest bus-log sequence skipped. */
    lastSequence: number;
    /** How many messages matching the pattern were skipped in that range. */
    skipped: number;
}
/**
 * One frame of a Subscribe stream. The first one carries only `ready`; later ones carry
 * deliveries and/or a gap. When a subscriber's stream ends, its unsettled deliveries are
 * released at once to the other members (or kept for the durable's next subscriber); an Ack
 * of such an attempt still counts until the message is redelivered.
 */
export interface SubscribeResponse {
    /** Set on the first response only. */
    ready: SubscriptionReady | undefined;
    /** Deliveries in sequence order (redeliveries may come out of order), at most max_batch. */
    deliveries: Delivery[];
    /** Set when messages were skipped (NONE mode) before the deliveries of this response. */
    gap: Gap | undefined;
}
/** One delivery to settle. */
export interface AckItem {
    /** Delivery.delivery_id of the attempt being settled. */
    deliveryId: string;
    /** What to do; default ACK. */
    action: AckAction;
    /** NACK only: redeliver no sooner than this. Unset: the consumer's backoff. Allowed 0..12h. */
    delay: Duration | undefined;
    /** TERMINATE only: why, copied into the dead letter's "hms-dlq-reason". Up to 1,024 characters. */
    reason: string;
}
/** Request of Ack. */
export interface AckRequest {
    /**
     * Deliveries to settle, 1 to 10,000, applied in order; they may belong to different consumers.
     * A malformed delivery_id rejects the whole request with INVALID_ARGUMENT
     * (field "items[i].delivery_id"); nothing is applied then.
     */
    items: AckItem[];
}
/** Response of Ack. */
export interface AckResponse {
    /** One result per item, in request order. */
    results: AckResult[];
}
/** Request of Nack. */
export interface NackRequest {
    /** Deliveries to redeliver, 1 to 10,000. */
    deliveryIds: string[];
    /** Redeliver no sooner than this. Unset: each consumer's backoff. Allowed 0..12h. */
    delay: Duration | undefined;
}
/** Response of Nack. */
export interface NackResponse {
    /** One result per delivery id, in request order. */
    results: AckResult[];
}
/** How long messages under a subject prefix are kept. */
export interface RetentionPolicy {
    /**
     * Token-wise subject prefix it covers ("orders" covers "orders" and "orders.eu"); "" is the
     * default for every subject. No wildcards.
     */
    subjectPrefix: string;
    /**
     * Messages older than this are removed. 0 or unset: no age limit. Default policy: 7 days.
     * Allowed up to 100 years.
     */
    maxAge: Duration | undefined;
    /**
     * Keep at most this many of the newest messages of each subject. 0: no count limit.
     * Default policy: 1,000,000.
     */
    maxMessages: number;
}
/** Messages stored on one subject. */
export interface SubjectInfo {
    /** The subject. */
    subject: string;
    /** Messages retained. */
    messages: number;
    /** Bytes of data retained (payloads only). */
    bytes: number;
    /** Bus-log sequence of the oldest retained message. */
    firstSequence: number;
    /** Bus-log sequence of the newest message. */
    lastSequence: number;
    /** Subject-log sequence of the newest message (messages ever published on this subject). */
    lastSubjectSequence: number;
    /** Publish time of the oldest retained message. */
    firstPublishedAt: Date | undefined;
    /** Publish time of the newest message. */
    lastPublishedAt: Date | undefined;
    /** The retention policy that applies (longest matching prefix). */
    retention: RetentionPolicy | undefined;
}
/** Request of ListSubjects. */
export interface ListSubjectsRequest {
    /** Only subjects matching this pattern; empty means all (system subjects included). */
    pattern: string;
    /** Most subjects per page. Default 100; allowed 1..1,000. */
    pageSize: number;
    /** next_page_token of the previous page; empty for the first page. */
    pageToken: string;
}
/** Response of ListSubjects. */
export interface ListSubjectsResponse {
    /** Subjects in name order. */
    subjects: SubjectInfo[];
    /** Token for the next page; empty on the last page. */
    nextPageToken: string;
}
/** Request of ListConsumers. */
export interface ListConsumersRequest {
    /** Also list ephemeral consumers with a subscriber attached now. */
    includeEphemeral: boolean;
    /** Most consumers per page. Default 100; allowed 1..1,000. */
    pageSize: number;
    /** next_page_token of the previous page; empty for the first page. */
    pageToken: string;
}
/** Response of ListConsumers. */
export interface ListConsumersResponse {
    /** Consumers in name order. */
    consumers: ConsumerInfo[];
    /** Token for the next page; empty on the last page. */
    nextPageToken: string;
}
/** Request of GetConsumerInfo. */
export interface GetConsumerInfoRequest {
    /** Consumer name (a durable name, or an ephemeral consumer's generated name). NOT_FOUND if none. */
    name: string;
}
/** Response of GetConsumerInfo. */
export interface GetConsumerInfoResponse {
    /** The consumer. */
    consumer: ConsumerInfo | undefined;
}
/** Request of DeleteConsumer. */
export interface DeleteConsumerRequest {
    /** Durable consumer to delete. NOT_FOUND if none. */
    name: string;
}
/** Response of DeleteConsumer. */
export interface DeleteConsumerResponse {
}
/** Request of SetRetention. */
export interface SetRetentionRequest {
    /**
     * The policy for policy.subject_prefix; replaces any existing one for that prefix. Required
     * (an empty request is refused rather than read as "keep the default forever"); to remove the
     * default policy send {"policy": {}, "remove": true}.
     */
    policy: RetentionPolicy | undefined;
    /**
     * Remove the policy of policy.subject_prefix instead (its subjects fall back to a shorter
     * prefix). Removing the default ("") restores the server's default.
     */
    remove: boolean;
}
/** Response of SetRetention. */
export interface SetRetentionResponse {
    /**
     * The policy now in force for that prefix (the inherited one after a removal). Existing
     * messages are trimmed to it in the background, within a minute.
     */
    policy: RetentionPolicy | undefined;
}
/** Request of ListRetention. */
export interface ListRetentionRequest {
}
/** Response of ListRetention. */
export interface ListRetentionResponse {
    /** Every policy, by prefix; the default (prefix "") always first. */
    policies: RetentionPolicy[];
}
export declare const BusMessage: MessageFns<BusMessage>;
export declare const BusMessage_HeadersEntry: MessageFns<BusMessage_HeadersEntry>;
export declare const PublishRequest: MessageFns<PublishRequest>;
export declare const PublishResponse: MessageFns<PublishResponse>;
export declare const PublishStreamRequest: MessageFns<PublishStreamRequest>;
export declare const PublishStreamResponse: MessageFns<PublishStreamResponse>;
export declare const SubscribeRequest: MessageFns<SubscribeRequest>;
export declare const ConsumerInfo: MessageFns<ConsumerInfo>;
export declare const SubscriptionReady: MessageFns<SubscriptionReady>;
export declare const Delivery: MessageFns<Delivery>;
export declare const Gap: MessageFns<Gap>;
export declare const SubscribeResponse: MessageFns<SubscribeResponse>;
export declare const AckItem: MessageFns<AckItem>;
export declare const AckRequest: MessageFns<AckRequest>;
export declare const AckResponse: MessageFns<AckResponse>;
export declare const NackRequest: MessageFns<NackRequest>;
export declare const NackResponse: MessageFns<NackResponse>;
export declare const RetentionPolicy: MessageFns<RetentionPolicy>;
export declare const SubjectInfo: MessageFns<SubjectInfo>;
export declare const ListSubjectsRequest: MessageFns<ListSubjectsRequest>;
export declare const ListSubjectsResponse: MessageFns<ListSubjectsResponse>;
export declare const ListConsumersRequest: MessageFns<ListConsumersRequest>;
export declare const ListConsumersResponse: MessageFns<ListConsumersResponse>;
export declare const GetConsumerInfoRequest: MessageFns<GetConsumerInfoRequest>;
export declare const GetConsumerInfoResponse: MessageFns<GetConsumerInfoResponse>;
export declare const DeleteConsumerRequest: MessageFns<DeleteConsumerRequest>;
export declare const DeleteConsumerResponse: MessageFns<DeleteConsumerResponse>;
export declare const SetRetentionRequest: MessageFns<SetRetentionRequest>;
export declare const SetRetentionResponse: MessageFns<SetRetentionResponse>;
export declare const ListRetentionRequest: MessageFns<ListRetentionRequest>;
export declare const ListRetentionResponse: MessageFns<ListRetentionResponse>;
/** Durable publish/subscribe with per-delivery acknowledgements. */
export type BusService = typeof BusService;
export declare const BusService: {
    /** Store one message and return its sequences once it is on disk. */
    readonly publish: {
        readonly path: "/hms.mgmt.v1.Bus/Publish";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: PublishRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PublishRequest;
        readonly responseSerialize: (value: PublishResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PublishResponse;
    };
    /**
     * Publish batches over one long-lived stream; each request is answered by one response.
     *
     * Bidirectional rather than a client stream answered once at the end: a long-lived publisher
     * learns each batch's sequences (that is, that the batch is durable) while the stream stays
     * open, so it can pipeline several batches, retire each as it is answered, and keep only the
     * unanswered ones for a retry (idempotent with message_id). The server reads a bounded number
     * of unanswered batches ahead and otherwise lets HTTP/2 flow control push back on the client.
     */
    readonly publishStream: {
        readonly path: "/hms.mgmt.v1.Bus/PublishStream";
        readonly requestStream: true;
        readonly responseStream: true;
        readonly requestSerialize: (value: PublishStreamRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PublishStreamRequest;
        readonly responseSerialize: (value: PublishStreamResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PublishStreamResponse;
    };
    /** Receive messages matching a pattern: first a `ready` response, then batches of deliveries. */
    readonly subscribe: {
        readonly path: "/hms.mgmt.v1.Bus/Subscribe";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: SubscribeRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SubscribeRequest;
        readonly responseSerialize: (value: SubscribeResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SubscribeResponse;
    };
    /** Settle many deliveries at once: ack (the default), or per item nack, in-progress, terminate. */
    readonly ack: {
        readonly path: "/hms.mgmt.v1.Bus/Ack";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: AckRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => AckRequest;
        readonly responseSerialize: (value: AckResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => AckResponse;
    };
    /** Shorthand for Ack with action NACK on every item: redeliver, optionally after a delay. */
    readonly nack: {
        readonly path: "/hms.mgmt.v1.Bus/Nack";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: NackRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => NackRequest;
        readonly responseSerialize: (value: NackResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => NackResponse;
    };
    /** Subjects with stored messages, their counts and sequence ranges, paged. */
    readonly listSubjects: {
        readonly path: "/hms.mgmt.v1.Bus/ListSubjects";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListSubjectsRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListSubjectsRequest;
        readonly responseSerialize: (value: ListSubjectsResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListSubjectsResponse;
    };
    /** Consumers (durable ones, and ephemeral ones while a subscriber is attached), paged. */
    readonly listConsumers: {
        readonly path: "/hms.mgmt.v1.Bus/ListConsumers";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListConsumersRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListConsumersRequest;
        readonly responseSerialize: (value: ListConsumersResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListConsumersResponse;
    };
    /** One consumer's configuration, position and pending acknowledgements. */
    readonly getConsumerInfo: {
        readonly path: "/hms.mgmt.v1.Bus/GetConsumerInfo";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetConsumerInfoRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetConsumerInfoRequest;
        readonly responseSerialize: (value: GetConsumerInfoResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetConsumerInfoResponse;
    };
    /**
     * Remove a durable consumer and its pending acknowledgements; its subscribers' streams end with
     * NOT_FOUND, and acks of its deliveries answer NOT_FOUND.
     */
    readonly deleteConsumer: {
        readonly path: "/hms.mgmt.v1.Bus/DeleteConsumer";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: DeleteConsumerRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => DeleteConsumerRequest;
        readonly responseSerialize: (value: DeleteConsumerResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => DeleteConsumerResponse;
    };
    /** Create or replace (or remove) the retention policy of a subject prefix. */
    readonly setRetention: {
        readonly path: "/hms.mgmt.v1.Bus/SetRetention";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: SetRetentionRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SetRetentionRequest;
        readonly responseSerialize: (value: SetRetentionResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SetRetentionResponse;
    };
    /** Every retention policy in force, the default (prefix "") first. */
    readonly listRetention: {
        readonly path: "/hms.mgmt.v1.Bus/ListRetention";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListRetentionRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListRetentionRequest;
        readonly responseSerialize: (value: ListRetentionResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListRetentionResponse;
    };
};
export interface BusServer extends UntypedServiceImplementation {
    /** Store one message and return its sequences once it is on disk. */
    publish: handleUnaryCall<PublishRequest, PublishResponse>;
    /**
     * Publish batches over one long-lived stream; each request is answered by one response.
     *
     * Bidirectional rather than a client stream answered once at the end: a long-lived publisher
     * learns each batch's sequences (that is, that the batch is durable) while the stream stays
     * open, so it can pipeline several batches, retire each as it is answered, and keep only the
     * unanswered ones for a retry (idempotent with message_id). The server reads a bounded number
     * of unanswered batches ahead and otherwise lets HTTP/2 flow control push back on the client.
     */
    publishStream: handleBidiStreamingCall<PublishStreamRequest, PublishStreamResponse>;
    /** Receive messages matching a pattern: first a `ready` response, then batches of deliveries. */
    subscribe: handleServerStreamingCall<SubscribeRequest, SubscribeResponse>;
    /** Settle many deliveries at once: ack (the default), or per item nack, in-progress, terminate. */
    ack: handleUnaryCall<AckRequest, AckResponse>;
    /** Shorthand for Ack with action NACK on every item: redeliver, optionally after a delay. */
    nack: handleUnaryCall<NackRequest, NackResponse>;
    /** Subjects with stored messages, their counts and sequence ranges, paged. */
    listSubjects: handleUnaryCall<ListSubjectsRequest, ListSubjectsResponse>;
    /** Consumers (durable ones, and ephemeral ones while a subscriber is attached), paged. */
    listConsumers: handleUnaryCall<ListConsumersRequest, ListConsumersResponse>;
    /** One consumer's configuration, position and pending acknowledgements. */
    getConsumerInfo: handleUnaryCall<GetConsumerInfoRequest, GetConsumerInfoResponse>;
    /**
     * Remove a durable consumer and its pending acknowledgements; its subscribers' streams end with
     * NOT_FOUND, and acks of its deliveries answer NOT_FOUND.
     */
    deleteConsumer: handleUnaryCall<DeleteConsumerRequest, DeleteConsumerResponse>;
    /** Create or replace (or remove) the retention policy of a subject prefix. */
    setRetention: handleUnaryCall<SetRetentionRequest, SetRetentionResponse>;
    /** Every retention policy in force, the default (prefix "") first. */
    listRetention: handleUnaryCall<ListRetentionRequest, ListRetentionResponse>;
}
export interface BusClient extends Client {
    /** Store one message and return its sequences once it is on disk. */
    publish(request: PublishRequest, callback: (error: ServiceError | null, response: PublishResponse) => void): ClientUnaryCall;
    publish(request: PublishRequest, metadata: Metadata, callback: (error: ServiceError | null, response: PublishResponse) => void): ClientUnaryCall;
    publish(request: PublishRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PublishResponse) => void): ClientUnaryCall;
    /**
     * Publish batches over one long-lived stream; each request is answered by one response.
     *
     * Bidirectional rather than a client stream answered once at the end: a long-lived publisher
     * learns each batch's sequences (that is, that the batch is durable) while the stream stays
     * open, so it can pipeline several batches, retire each as it is answered, and keep only the
     * unanswered ones for a retry (idempotent with message_id). The server reads a bounded number
     * of unanswered batches ahead and otherwise lets HTTP/2 flow control push back on the client.
     */
    publishStream(): ClientDuplexStream<PublishStreamRequest, PublishStreamResponse>;
    publishStream(options: Partial<CallOptions>): ClientDuplexStream<PublishStreamRequest, PublishStreamResponse>;
    publishStream(metadata: Metadata, options?: Partial<CallOptions>): ClientDuplexStream<PublishStreamRequest, PublishStreamResponse>;
    /** Receive messages matching a pattern: first a `ready` response, then batches of deliveries. */
    subscribe(request: SubscribeRequest, options?: Partial<CallOptions>): ClientReadableStream<SubscribeResponse>;
    subscribe(request: SubscribeRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<SubscribeResponse>;
    /** Settle many deliveries at once: ack (the default), or per item nack, in-progress, terminate. */
    ack(request: AckRequest, callback: (error: ServiceError | null, response: AckResponse) => void): ClientUnaryCall;
    ack(request: AckRequest, metadata: Metadata, callback: (error: ServiceError | null, response: AckResponse) => void): ClientUnaryCall;
    ack(request: AckRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: AckResponse) => void): ClientUnaryCall;
    /** Shorthand for Ack with action NACK on every item: redeliver, optionally after a delay. */
    nack(request: NackRequest, callback: (error: ServiceError | null, response: NackResponse) => void): ClientUnaryCall;
    nack(request: NackRequest, metadata: Metadata, callback: (error: ServiceError | null, response: NackResponse) => void): ClientUnaryCall;
    nack(request: NackRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: NackResponse) => void): ClientUnaryCall;
    /** Subjects with stored messages, their counts and sequence ranges, paged. */
    listSubjects(request: ListSubjectsRequest, callback: (error: ServiceError | null, response: ListSubjectsResponse) => void): ClientUnaryCall;
    listSubjects(request: ListSubjectsRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListSubjectsResponse) => void): ClientUnaryCall;
    listSubjects(request: ListSubjectsRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListSubjectsResponse) => void): ClientUnaryCall;
    /** Consumers (durable ones, and ephemeral ones while a subscriber is attached), paged. */
    listConsumers(request: ListConsumersRequest, callback: (error: ServiceError | null, response: ListConsumersResponse) => void): ClientUnaryCall;
    listConsumers(request: ListConsumersRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListConsumersResponse) => void): ClientUnaryCall;
    listConsumers(request: ListConsumersRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListConsumersResponse) => void): ClientUnaryCall;
    /** One consumer's configuration, position and pending acknowledgements. */
    getConsumerInfo(request: GetConsumerInfoRequest, callback: (error: ServiceError | null, response: GetConsumerInfoResponse) => void): ClientUnaryCall;
    getConsumerInfo(request: GetConsumerInfoRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetConsumerInfoResponse) => void): ClientUnaryCall;
    getConsumerInfo(request: GetConsumerInfoRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetConsumerInfoResponse) => void): ClientUnaryCall;
    /**
     * Remove a durable consumer and its pending acknowledgements; its subscribers' streams end with
     * NOT_FOUND, and acks of its deliveries answer NOT_FOUND.
     */
    deleteConsumer(request: DeleteConsumerRequest, callback: (error: ServiceError | null, response: DeleteConsumerResponse) => void): ClientUnaryCall;
    deleteConsumer(request: DeleteConsumerRequest, metadata: Metadata, callback: (error: ServiceError | null, response: DeleteConsumerResponse) => void): ClientUnaryCall;
    deleteConsumer(request: DeleteConsumerRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: DeleteConsumerResponse) => void): ClientUnaryCall;
    /** Create or replace (or remove) the retention policy of a subject prefix. */
    setRetention(request: SetRetentionRequest, callback: (error: ServiceError | null, response: SetRetentionResponse) => void): ClientUnaryCall;
    setRetention(request: SetRetentionRequest, metadata: Metadata, callback: (error: ServiceError | null, response: SetRetentionResponse) => void): ClientUnaryCall;
    setRetention(request: SetRetentionRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: SetRetentionResponse) => void): ClientUnaryCall;
    /** Every retention policy in force, the default (prefix "") first. */
    listRetention(request: ListRetentionRequest, callback: (error: ServiceError | null, response: ListRetentionResponse) => void): ClientUnaryCall;
    listRetention(request: ListRetentionRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListRetentionResponse) => void): ClientUnaryCall;
    listRetention(request: ListRetentionRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListRetentionResponse) => void): ClientUnaryCall;
}
export declare const BusClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): BusClient;
    service: typeof BusService;
    serviceName: string;
};
type Builtin = Date | Function | Uint8Array | string | number | boolean | undefined;
export type DeepPartial<T> = T extends Builtin ? T : T extends globalThis.Array<infer U> ? globalThis.Array<DeepPartial<U>> : T extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T extends {} ? {
    [K in keyof T]?: DeepPartial<T[K]>;
} : Partial<T>;
type KeysOfUnion<T> = T extends T ? keyof T : never;
export type Exact<P, I extends P> = P extends Builtin ? P : P & {
    [K in keyof P]: Exact<P[K], I[K]>;
} & {
    [K in Exclude<keyof I, KeysOfUnion<P>>]: never;
};
export interface MessageFns<T> {
    encode(message: T, writer?: BinaryWriter): BinaryWriter;
    decode(input: BinaryReader | Uint8Array, length?: number): T;
    fromJSON(object: any): T;
    toJSON(message: T): unknown;
    create<I extends Exact<DeepPartial<T>, I>>(base?: I): T;
    fromPartial<I extends Exact<DeepPartial<T>, I>>(object: I): T;
}
export {};
