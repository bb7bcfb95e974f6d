import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
export declare const protobufPackage = "hms.mgmt.v1";
export declare const protobufFileName = "hms/mgmt/v1/common.proto";
/** Shared messages of the hms-mgmt control plane API. */
/** How the control plane judges an instance's health. */
export declare enum HealthStatus {
    /** HEALTH_STATUS_UNSPECIFIED - Never sent by the server; treated as PASSING in requests that filter by health. */
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
