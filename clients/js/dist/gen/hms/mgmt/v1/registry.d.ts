import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientDuplexStream, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type handleBidiStreamingCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Duration } from "../../../google/protobuf/duration.js";
import { HealthStatus } from "./common.js";
export declare const protobufPackage = "hms.mgmt.v1";
export declare const protobufFileName = "hms/mgmt/v1/registry.proto";
/**
 * Registry: services sign in with a lease so that others can find them.
 *
 * Every change (an instance coming up, being updated, changing health, going down) gets one
 * global, strictly increasing revision. Watch streams those changes in order and can resume
 * from any revision still kept.
 */
/** What happened to an instance. */
export declare enum ChangeType {
    /** CHANGE_TYPE_UNSPECIFIED - Never sent; the zero value of the enum. */
    CHANGE_TYPE_UNSPECIFIED = "CHANGE_TYPE_UNSPECIFIED",
    /** CHANGE_TYPE_UP - A new instance registered. */
    CHANGE_TYPE_UP = "CHANGE_TYPE_UP",
    /**
     * CHANGE_TYPE_UPDATED - A registered instance registered again (every Register of a registered instance is one,
     * whether or not its data changed).
     */
    CHANGE_TYPE_UPDATED = "CHANGE_TYPE_UPDATED",
    /** CHANGE_TYPE_HEALTH - Health changed (PASSING <-> CRITICAL). */
    CHANGE_TYPE_HEALTH = "CHANGE_TYPE_HEALTH",
    /** CHANGE_TYPE_DOWN - The instance is gone; see reason. */
    CHANGE_TYPE_DOWN = "CHANGE_TYPE_DOWN",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function changeTypeFromJSON(object: any): ChangeType;
export declare function changeTypeToJSON(object: ChangeType): string;
export declare function changeTypeToNumber(object: ChangeType): number;
/** How the control plane should actively probe an instance with grpc.health.v1.Health/Check. */
export interface HealthProbe {
    /** Service name passed in HealthCheckRequest.service; empty asks about the whole server. */
    serviceName: string;
    /** Time between probes. Default 10s; allowed 100ms..1h. */
    interval: Duration | undefined;
    /** Deadline of one probe. Default 2s; must not exceed interval. */
    timeout: Duration | undefined;
    /** Consecutive results needed to flip between PASSING and CRITICAL. Default 3 (Consul); 1..10. */
    threshold: number;
    /** Deregister the instance after it stayed CRITICAL this long. Default 60s; 0 keeps it forever. */
    deregisterCriticalAfter: Duration | undefined;
}
/** One registered instance of a service, as the registry knows it. */
export interface ServiceInstance {
    /** Service name: 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit. */
    service: string;
    /** Unique within the service; generated (a UUID) when empty at registration. Same charset, up to 128. */
    instanceId: string;
    /** Where the instance serves: "host:port" (IPv6 hosts in brackets). */
    address: string;
    /**
     * Version the instance runs, e.g. "2.1.0"; compared numerically by Lookup's version filter.
     * Up to 64 characters.
     */
    version: string;
    /** Free-form labels used for filtering, e.g. "zone-a", "canary". Up to 32, each up to 64 characters. */
    tags: string[];
    /** Free-form key/value data. Up to 64 entries, keys up to 128 and values up to 1024 characters. */
    metadata: {
        [key: string]: string;
    };
    /** Active probe settings; absent means the lease alone decides health. */
    probe: HealthProbe | undefined;
    /** Current health; PASSING for instances without a probe. */
    health: HealthStatus;
    /** Lease that keeps this instance registered. */
    leaseId: string;
    /** When the instance was first registered. */
    registeredAt: Date | undefined;
    /** Revision of the last change to this instance. */
    revision: number;
}
export interface ServiceInstance_MetadataEntry {
    key: string;
    value: string;
}
/** A lease: the instance disappears when expires_at passes without a renewal. */
export interface Lease {
    /** Opaque lease identifier, used by Heartbeat and KeepAlive. */
    leaseId: string;
    /** Time to live granted at each renewal. */
    ttl: Duration | undefined;
    /** Absolute time at which the lease lapses unless renewed. */
    expiresAt: Date | undefined;
}
/** Request of Register. */
export interface RegisterRequest {
    /** The instance to register. health, lease_id, registered_at and revision are ignored. */
    instance: ServiceInstance | undefined;
    /** Lease time to live. Default 10s; allowed 1s..1h. */
    ttl: Duration | undefined;
}
/** Response of Register. */
export interface RegisterResponse {
    /** The instance as stored (with its generated instance_id if none was given). */
    instance: ServiceInstance | undefined;
    /** The lease granted; renew it before it expires. */
    lease: Lease | undefined;
    /** Registry revision after this registration. */
    revision: number;
}
/** Request of Heartbeat. */
export interface HeartbeatRequest {
    /** Lease to renew, from RegisterResponse.lease. */
    leaseId: string;
}
/** Response of Heartbeat. */
export interface HeartbeatResponse {
    /** The renewed lease with its new expiry. */
    lease: Lease | undefined;
}
/** One renewal on a KeepAlive stream. */
export interface KeepAliveRequest {
    /** Lease to renew. */
    leaseId: string;
}
/** The answer to one KeepAliveRequest, in request order. */
export interface KeepAliveResponse {
    /** The renewed lease. */
    lease: Lease | undefined;
    /** Set instead of renewing when the lease is unknown (lapsed or revoked); the stream stays open. */
    notFound: boolean;
    /** The lease id this response answers (echoed even when not_found). */
    leaseId: string;
}
/** Request of Deregister. */
export interface DeregisterRequest {
    /** Service of the instance. */
    service: string;
    /** Instance to remove. */
    instanceId: string;
}
/** Response of Deregister. */
export interface DeregisterResponse {
    /** Registry revision after the removal. */
    revision: number;
}
/** Request of Lookup. */
export interface LookupRequest {
    /** Service to look up. */
    service: string;
    /** Only instances carrying every one of these tags. */
    tags: string[];
    /** Version filter: an exact version ("2.1.0") or a comma-separated range (">=2.0,<3"). */
    version: string;
    /** Also return CRITICAL instances. */
    includeUnhealthy: boolean;
    /** At most this many instances; 0 means all. */
    limit: number;
}
/** Response of Lookup. */
export interface LookupResponse {
    /** Matching instances; the order rotates between calls so naive clients spread their load. */
    instances: ServiceInstance[];
    /** Registry revision the answer reflects. */
    revision: number;
}
/** Request of ListServices (no parameters). */
export interface ListServicesRequest {
}
/** Summary of one service. */
export interface ServiceSummary {
    /** Service name. */
    name: string;
    /** Registered instances. */
    instances: number;
    /** Instances currently PASSING. */
    passing: number;
    /** Distinct versions registered, sorted. */
    versions: string[];
}
/** Response of ListServices. */
export interface ListServicesResponse {
    /** Services in name order. */
    services: ServiceSummary[];
    /** Registry revision the answer reflects. */
    revision: number;
}
/** Request of Watch. */
export interface WatchRequest {
    /** Only changes of this service; empty watches every service. */
    service: string;
    /**
     * Resume: when set, stream every change with a revision greater than this one and skip the
     * snapshot (0 is a valid resume point: the empty registry). Unset starts with a snapshot.
     * A revision older than the oldest kept gets OUT_OF_RANGE, whose google.rpc.ErrorInfo
     * metadata carries "oldest_revision".
     */
    afterRevision?: number | undefined;
}
/** One change in the registry's history. */
export interface RegistryChange {
    /** Global revision of this change. */
    revision: number;
    /** Kind of change. */
    type: ChangeType;
    /** The instance after the change (before it, for DOWN). */
    instance: ServiceInstance | undefined;
    /** Why, for DOWN: "deregistered", "lease_expired" or "critical_too_long". */
    reason: string;
    /** When the change was committed. */
    time: Date | undefined;
}
/** One message of a Watch stream: the snapshot, a batch of changes, or a progress message. */
export interface WatchResponse {
    /** Set on the first message only: the watch is in place and nothing after `revision` will be missed. */
    created: boolean;
    /**
     * The revision this message brings the watcher up to. On a progress message (no changes)
     * it is the current revision: resuming from it misses nothing.
     */
    revision: number;
    /** On the first message of a watch without after_revision: every instance at `revision`. */
    snapshot: ServiceInstance[];
    /** Changes in revision order. */
    changes: RegistryChange[];
}
export declare const HealthProbe: MessageFns<HealthProbe>;
export declare const ServiceInstance: MessageFns<ServiceInstance>;
export declare const ServiceInstance_MetadataEntry: MessageFns<ServiceInstance_MetadataEntry>;
export declare const Lease: MessageFns<Lease>;
export declare const RegisterRequest: MessageFns<RegisterRequest>;
export declare const RegisterResponse: MessageFns<RegisterResponse>;
export declare const HeartbeatRequest: MessageFns<HeartbeatRequest>;
export declare const HeartbeatResponse: MessageFns<HeartbeatResponse>;
export declare const KeepAliveRequest: MessageFns<KeepAliveRequest>;
export declare const KeepAliveResponse: MessageFns<KeepAliveResponse>;
export declare const DeregisterRequest: MessageFns<DeregisterRequest>;
export declare const DeregisterResponse: MessageFns<DeregisterResponse>;
export declare const LookupRequest: MessageFns<LookupRequest>;
export declare const LookupResponse: MessageFns<LookupResponse>;
export declare const ListServicesRequest: MessageFns<ListServicesRequest>;
export declare const ServiceSummary: MessageFns<ServiceSummary>;
export declare const ListServicesResponse: MessageFns<ListServicesResponse>;
export declare const WatchRequest: MessageFns<WatchRequest>;
export declare const RegistryChange: MessageFns<RegistryChange>;
export declare const WatchResponse: MessageFns<WatchResponse>;
/** Service discovery with leases, active health probing and a resumable change feed. */
export type RegistryService = typeof RegistryService;
export declare const RegistryService: {
    /** Register (or re-register, which updates) an instance and grant it a lease. */
    readonly register: {
        readonly path: "/hms.mgmt.v1.Registry/Register";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: RegisterRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => RegisterRequest;
        readonly responseSerialize: (value: RegisterResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => RegisterResponse;
    };
    /** Renew a lease once. NOT_FOUND when the lease already lapsed: register again. */
    readonly heartbeat: {
        readonly path: "/hms.mgmt.v1.Registry/Heartbeat";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: HeartbeatRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => HeartbeatRequest;
        readonly responseSerialize: (value: HeartbeatResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => HeartbeatResponse;
    };
    /** Renew leases over one long-lived stream: each request renews one lease, each response answers it. */
    readonly keepAlive: {
        readonly path: "/hms.mgmt.v1.Registry/KeepAlive";
        readonly requestStream: true;
        readonly responseStream: true;
        readonly requestSerialize: (value: KeepAliveRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => KeepAliveRequest;
        readonly responseSerialize: (value: KeepAliveResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => KeepAliveResponse;
    };
    /** Remove an instance now and revoke its lease. */
    readonly deregister: {
        readonly path: "/hms.mgmt.v1.Registry/Deregister";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: DeregisterRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => DeregisterRequest;
        readonly responseSerialize: (value: DeregisterResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => DeregisterResponse;
    };
    /** Instances of one service, healthy ones only unless asked, in a rotating order. */
    readonly lookup: {
        readonly path: "/hms.mgmt.v1.Registry/Lookup";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: LookupRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => LookupRequest;
        readonly responseSerialize: (value: LookupResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => LookupResponse;
    };
    /** Every service with its instance counts. */
    readonly listServices: {
        readonly path: "/hms.mgmt.v1.Registry/ListServices";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListServicesRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListServicesRequest;
        readonly responseSerialize: (value: ListServicesResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListServicesResponse;
    };
    /** A snapshot (or a resume point), then every change as it happens. */
    readonly watch: {
        readonly path: "/hms.mgmt.v1.Registry/Watch";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: WatchRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => WatchRequest;
        readonly responseSerialize: (value: WatchResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => WatchResponse;
    };
};
export interface RegistryServer extends UntypedServiceImplementation {
    /** Register (or re-register, which updates) an instance and grant it a lease. */
    register: handleUnaryCall<RegisterRequest, RegisterResponse>;
    /** Renew a lease once. NOT_FOUND when the lease already lapsed: register again. */
    heartbeat: handleUnaryCall<HeartbeatRequest, HeartbeatResponse>;
    /** Renew leases over one long-lived stream: each request renews one lease, each response answers it. */
    keepAlive: handleBidiStreamingCall<KeepAliveRequest, KeepAliveResponse>;
    /** Remove an instance now and revoke its lease. */
    deregister: handleUnaryCall<DeregisterRequest, DeregisterResponse>;
    /** Instances of one service, healthy ones only unless asked, in a rotating order. */
    lookup: handleUnaryCall<LookupRequest, LookupResponse>;
    /** Every service with its instance counts. */
    listServices: handleUnaryCall<ListServicesRequest, ListServicesResponse>;
    /** A snapshot (or a resume point), then every change as it happens. */
    watch: handleServerStreamingCall<WatchRequest, WatchResponse>;
}
export interface RegistryClient extends Client {
    /** Register (or re-register, which updates) an instance and grant it a lease. */
    register(request: RegisterRequest, callback: (error: ServiceError | null, response: RegisterResponse) => void): ClientUnaryCall;
    register(request: RegisterRequest, metadata: Metadata, callback: (error: ServiceError | null, response: RegisterResponse) => void): ClientUnaryCall;
    register(request: RegisterRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: RegisterResponse) => void): ClientUnaryCall;
    /** Renew a lease once. NOT_FOUND when the lease already lapsed: register again. */
    heartbeat(request: HeartbeatRequest, callback: (error: ServiceError | null, response: HeartbeatResponse) => void): ClientUnaryCall;
    heartbeat(request: HeartbeatRequest, metadata: Metadata, callback: (error: ServiceError | null, response: HeartbeatResponse) => void): ClientUnaryCall;
    heartbeat(request: HeartbeatRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: HeartbeatResponse) => void): ClientUnaryCall;
    /** Renew leases over one long-lived stream: each request renews one lease, each response answers it. */
    keepAlive(): ClientDuplexStream<KeepAliveRequest, KeepAliveResponse>;
    keepAlive(options: Partial<CallOptions>): ClientDuplexStream<KeepAliveRequest, KeepAliveResponse>;
    keepAlive(metadata: Metadata, options?: Partial<CallOptions>): ClientDuplexStream<KeepAliveRequest, KeepAliveResponse>;
    /** Remove an instance now and revoke its lease. */
    deregister(request: DeregisterRequest, callback: (error: ServiceError | null, response: DeregisterResponse) => void): ClientUnaryCall;
    deregister(request: DeregisterRequest, metadata: Metadata, callback: (error: ServiceError | null, response: DeregisterResponse) => void): ClientUnaryCall;
    deregister(request: DeregisterRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: DeregisterResponse) => void): ClientUnaryCall;
    /** Instances of one service, healthy ones only unless asked, in a rotating order. */
    lookup(request: LookupRequest, callback: (error: ServiceError | null, response: LookupResponse) => void): ClientUnaryCall;
    lookup(request: LookupRequest, metadata: Metadata, callback: (error: ServiceError | null, response: LookupResponse) => void): ClientUnaryCall;
    lookup(request: LookupRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: LookupResponse) => void): ClientUnaryCall;
    /** Every service with its instance counts. */
    listServices(request: ListServicesRequest, callback: (error: ServiceError | null, response: ListServicesResponse) => void): ClientUnaryCall;
    listServices(request: ListServicesRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListServicesResponse) => void): ClientUnaryCall;
    listServices(request: ListServicesRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListServicesResponse) => void): ClientUnaryCall;
    /** A snapshot (or a resume point), then every change as it happens. */
    watch(request: WatchRequest, options?: Partial<CallOptions>): ClientReadableStream<WatchResponse>;
    watch(request: WatchRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<WatchResponse>;
}
export declare const RegistryClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): RegistryClient;
    service: typeof RegistryService;
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
