import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
export declare const protobufPackage = "hms.mgmt.v1";
export declare const protobufFileName = "hms/mgmt/v1/common.proto";
/**
 * Shared messages of the hms-mgmt control plane API.
 *
 * Sizes: a payload (a Bus message's data, a process input, a task output, a signal payload) is at
 * most 1 MiB; the messages of one publish batch or one task completion's outbox at most 4 MiB. The
 * control plane sends and accepts gRPC messages of up to 6 MiB encoded: the largest request, a task
 * completion with a 1 MiB output and a 4 MiB outbox, plus 1 MiB for everything around them. A
 * larger message is refused with RESOURCE_EXHAUSTED. gRPC's default receive limit is 4 MiB: set the
 * channel's max_receive_message_length and max_send_message_length to 6 MiB (6291456), as the
 * Python SDK does.
 */
/** How the control plane judges an instance's health. */
export declare enum HealthStatus {
    /** HEALTH_STATUS_UNSPECIFIED - Never sent by the server. */
    HEALTH_STATUS_UNSPECIFIED = "HEALTH_STATUS_UNSPECIFIED",
    /** HEALTH_STATUS_PASSING - Lease is live and, if probed, the last N probes agreed it serves. */
    HEALTH_STATUS_PASSING = "HEALTH_STATUS_PASSING",
    /** HEALTH_STATUS_CRITICAL - Probed and found not serving N times in a row (or not yet probed successfully). */
    HEALTH_STATUS_CRITICAL = "HEALTH_STATUS_CRITICAL",
    UNRECOGNIZED = "UNRECOGNIZED"
}
export declare function healthStatusFromJSON(object: any): HealthStatus;
export declare function healthStatusToJSON(object: HealthStatus): string;
export declare function healthStatusToNumber(object: HealthStatus): number;
/**
 * One field that failed validation; mirrors google.rpc.BadRequest.FieldViolation for clients that
 * want it in a response body rather than in status details.
 */
export interface FieldViolation {
    /** Path of the offending field, e.g. "instance.address". */
    field: string;
    /** Human-readable reason. */
    description: string;
}
export declare const FieldViolation: MessageFns<FieldViolation>;
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
