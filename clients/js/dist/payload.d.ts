/** A JSON value, as a Struct carries it. */
export type Json = null | boolean | number | string | Json[] | {
    [key: string]: Json;
};
/** A JSON object: what payloads are. */
export type JsonObject = {
    [key: string]: Json;
};
/**
 * `value` as a JSON object, with JSON.stringify's rules (toJSON is called, so a Date becomes its ISO
 * string; undefined and functions are left out of objects and become null in arrays) and two
 * stricter ones: a bigint becomes a number when it is a safe integer and is refused otherwise, and so
 * is a number that is not finite, since the contract's numbers are doubles that JSON must be able to
 * print. `undefined` or `null` is the empty object.
 */
export declare function toPayload(value: unknown, where?: string): JsonObject;
/** Milliseconds as a google.protobuf.Duration. */
export declare function duration(ms: number): {
    seconds: number;
    nanos: number;
};
/** A google.protobuf.Duration as milliseconds. */
export declare function milliseconds(value: {
    seconds: number;
    nanos: number;
} | undefined): number | undefined;
