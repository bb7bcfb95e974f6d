import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientUnaryCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Duration } from "../../../google/protobuf/duration.js";
export declare const protobufPackage = "hms.mgmt.v1";
export declare const protobufFileName = "hms/mgmt/v1/mesh.proto";
/**
 * Mesh: the traffic policy of each registered service, as gRPC's own xDS clients apply it.
 *
 * The control plane also serves Envoy's xDS v3 Aggregated Discovery Service
 * (envoy.service.discovery.v3.AggregatedDiscoveryService) and the Client Status Discovery Service
 * (envoy.service.status.v3.ClientStatusDiscoveryService) on the same port, so that a channel to
 * `xds:///S` finds, balances across and follows the live instances of service S with no SDK. Those
 * two services are Envoy's; this one sets what they serve beyond the registry's instances: the
 * route of each service (version-weighted splits, timeout, retries), its load-balancing policy and
 * its request cap. A policy is stored durably and replicated like the registry; each change gets a
 * revision and reaches every connected xDS client at once. docs/mesh.md maps each field to xDS.
 */
/** How a client picks an instance among the healthy ones of a cluster. */
export declare enum LoadBalancing {
    /** LOAD_BALANCING_UNSPECIFIED - Unset: round robin. */
    LOAD_BALANCING_UNSPECIFIED = "LOAD_BALANCING_UNSPECIFIED",
    /** LOAD_BALANCING_ROUND_ROBIN - Each instance in turn, weighted by its locality and endpoint weights (xDS ROUND_ROBIN). */
    LOAD_BALANCING_ROUND_ROBIN = "LOAD_BALANCING_ROUND_ROBIN",
    /** LOAD_BALANCING_LEAST_REQUEST - The instance with the fewest outstanding requests of two picked at random (xDS LEAST_REQUEST). */
    LOAD_BALANCING_LEAST_REQUEST = "LOAD_BALANCING_LEAST_REQUEST",
    /** LOAD_BALANCING_RING_HASH - Consistent hashing over a ring (xDS RING_HASH); requests without a hash go to a random instance. */
    LOAD_BALANCING_RING_HASH = "LOAD_BALANCING_RING_HASH",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function loadBalancingFromJSON(object: any): LoadBalancing;
export declare function loadBalancingToJSON(object: LoadBalancing): string;
export declare function loadBalancingToNumber(object: LoadBalancing): number;
/** A share of a service's traffic sent to the instances whose version is in a range. */
export interface VersionSplit {
    /** A version or a PEP 440 range, as Lookup's version filter: "2.0.1", ">=1,<2", ">=2". */
    versionRange: string;
    /** Relative weight, 1..10000; the shares are weight / the sum of the weights. */
    weight: number;
}
/** Retries of a failed call, done by the client (gRFC A44). */
export interface RetryPolicy {
    /**
     * gRPC status codes retried, lowercase with hyphens as xDS writes them: "unavailable",
     * "cancelled", "deadline-exceeded", "internal", "resource-exhausted". At least one.
     */
    retryOn: string[];
    /** Retries after the first attempt, 1..4 (gRPC caps attempts at 5). */
    numRetries: number;
    /** First backoff; default 25ms (Envoy's); allowed 10ms..1h (gRPC clients stalled at 1ms). */
    baseInterval: Duration | undefined;
    /** Longest backoff; default 10 × base_interval; at least base_interval. */
    maxInterval: Duration | undefined;
}
/** The traffic policy of one service. */
export interface RoutePolicy {
    /** The service it applies to (the S of xds:///S), named as in the registry. */
    service: string;
    /** Version-weighted splits; empty sends traffic to every healthy instance. 0..16 splits. */
    splits: VersionSplit[];
    /** Deadline a client applies to each call (the shorter of it and the call's own); unset: none. */
    timeout: Duration | undefined;
    /** Retries; unset: none. */
    retry: RetryPolicy | undefined;
    /**
     * Most requests a client may have in flight to the service at once (per cluster, per client);
     * calls beyond it fail at once with UNAVAILABLE. 0: gRPC's default of 1024.
     */
    maxConcurrentRequests: number;
    /** How the client balances among instances. */
    loadBalancing: LoadBalancing;
    /** Output only: the mesh revision that set this policy (ignored in SetRoute). */
    revision: number;
    /** Output only: when it was set (ignored in SetRoute). */
    updatedAt: Date | undefined;
}
/** Request of SetRoute. */
export interface SetRouteRequest {
    /** The policy; its service must be a valid service name (it need not be registered yet). */
    route: RoutePolicy | undefined;
}
/** Response of SetRoute. */
export interface SetRouteResponse {
    /** The policy as stored, with its revision. */
    route: RoutePolicy | undefined;
}
/** Request of GetRoute. */
export interface GetRouteRequest {
    /** The service whose policy to read. */
    service: string;
}
/** Response of GetRoute. */
export interface GetRouteResponse {
    /** The policy as stored. */
    route: RoutePolicy | undefined;
}
/** Request of ListRoutes. */
export interface ListRoutesRequest {
}
/** Response of ListRoutes. */
export interface ListRoutesResponse {
    /** Every stored policy, in service name order. */
    routes: RoutePolicy[];
    /** The mesh revision they reflect (raised by every SetRoute and DeleteRoute). */
    revision: number;
}
/** Request of DeleteRoute. */
export interface DeleteRouteRequest {
    /** The service whose policy to remove; NOT_FOUND when it has none. */
    service: string;
}
/** Response of DeleteRoute. */
export interface DeleteRouteResponse {
    /** The mesh revision of the removal. */
    revision: number;
}
export declare const VersionSplit: MessageFns<VersionSplit>;
export declare const RetryPolicy: MessageFns<RetryPolicy>;
export declare const RoutePolicy: MessageFns<RoutePolicy>;
export declare const SetRouteRequest: MessageFns<SetRouteRequest>;
export declare const SetRouteResponse: MessageFns<SetRouteResponse>;
export declare const GetRouteRequest: MessageFns<GetRouteRequest>;
export declare const GetRouteResponse: MessageFns<GetRouteResponse>;
export declare const ListRoutesRequest: MessageFns<ListRoutesRequest>;
export declare const ListRoutesResponse: MessageFns<ListRoutesResponse>;
export declare const DeleteRouteRequest: MessageFns<DeleteRouteRequest>;
export declare const DeleteRouteResponse: MessageFns<DeleteRouteResponse>;
/** Traffic policy per service; read by anyone, changed by admins. */
export type MeshService = typeof MeshService;
export declare const MeshService: {
    /** Set (create or replace) the route policy of one service. */
    readonly setRoute: {
        readonly path: "/hms.mgmt.v1.Mesh/SetRoute";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: SetRouteRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SetRouteRequest;
        readonly responseSerialize: (value: SetRouteResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SetRouteResponse;
    };
    /** The route policy of one service; NOT_FOUND when it has none (defaults apply). */
    readonly getRoute: {
        readonly path: "/hms.mgmt.v1.Mesh/GetRoute";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetRouteRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetRouteRequest;
        readonly responseSerialize: (value: GetRouteResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetRouteResponse;
    };
    /** Every service's route policy, in service name order. */
    readonly listRoutes: {
        readonly path: "/hms.mgmt.v1.Mesh/ListRoutes";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListRoutesRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListRoutesRequest;
        readonly responseSerialize: (value: ListRoutesResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListRoutesResponse;
    };
    /** Remove the route policy of one service (its traffic goes back to the defaults). */
    readonly deleteRoute: {
        readonly path: "/hms.mgmt.v1.Mesh/DeleteRoute";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: DeleteRouteRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => DeleteRouteRequest;
        readonly responseSerialize: (value: DeleteRouteResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => DeleteRouteResponse;
    };
};
export interface MeshServer extends UntypedServiceImplementation {
    /** Set (create or replace) the route policy of one service. */
    setRoute: handleUnaryCall<SetRouteRequest, SetRouteResponse>;
    /** The route policy of one service; NOT_FOUND when it has none (defaults apply). */
    getRoute: handleUnaryCall<GetRouteRequest, GetRouteResponse>;
    /** Every service's route policy, in service name order. */
    listRoutes: handleUnaryCall<ListRoutesRequest, ListRoutesResponse>;
    /** Remove the route policy of one service (its traffic goes back to the defaults). */
    deleteRoute: handleUnaryCall<DeleteRouteRequest, DeleteRouteResponse>;
}
export interface MeshClient extends Client {
    /** Set (create or replace) the route policy of one service. */
    setRoute(request: SetRouteRequest, callback: (error: ServiceError | null, response: SetRouteResponse) => void): ClientUnaryCall;
    setRoute(request: SetRouteRequest, metadata: Metadata, callback: (error: ServiceError | null, response: SetRouteResponse) => void): ClientUnaryCall;
    setRoute(request: SetRouteRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: SetRouteResponse) => void): ClientUnaryCall;
    /** The route policy of one service; NOT_FOUND when it has none (defaults apply). */
    getRoute(request: GetRouteRequest, callback: (error: ServiceError | null, response: GetRouteResponse) => void): ClientUnaryCall;
    getRoute(request: GetRouteRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetRouteResponse) => void): ClientUnaryCall;
    getRoute(request: GetRouteRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetRouteResponse) => void): ClientUnaryCall;
    /** Every service's route policy, in service name order. */
    listRoutes(request: ListRoutesRequest, callback: (error: ServiceError | null, response: ListRoutesResponse) => void): ClientUnaryCall;
    listRoutes(request: ListRoutesRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListRoutesResponse) => void): ClientUnaryCall;
    listRoutes(request: ListRoutesRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListRoutesResponse) => void): ClientUnaryCall;
    /** Remove the route policy of one service (its traffic goes back to the defaults). */
    deleteRoute(request: DeleteRouteRequest, callback: (error: ServiceError | null, response: DeleteRouteResponse) => void): ClientUnaryCall;
    deleteRoute(request: DeleteRouteRequest, metadata: Metadata, callback: (error: ServiceError | null, response: DeleteRouteResponse) => void): ClientUnaryCall;
    deleteRoute(request: DeleteRouteRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: DeleteRouteResponse) => void): ClientUnaryCall;
}
export declare const MeshClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): MeshClient;
    service: typeof MeshService;
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
