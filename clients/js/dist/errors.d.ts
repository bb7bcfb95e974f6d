import { type Metadata, status } from '@grpc/grpc-js';
/** One field of a request that was refused, and why (google.rpc.BadRequest.FieldViolation). */
export interface FieldViolation {
    field: string;
    description: string;
}
interface ErrorFields {
    code: status;
    details: string;
    violations?: FieldViolation[];
    reason?: string;
    info?: Record<string, string>;
    metadata?: Metadata;
    cause?: unknown;
}
/**
 * Any failed call. `code` is the gRPC status code (as `err.code` of a grpc-js ServiceError, so code
 * written against raw grpc-js keeps working), `codeName` its name; `reason` and `info` come from the
 * google.rpc.ErrorInfo detail when the control plane sent one; `cause` is the grpc-js error.
 */
export declare class MgmtError extends Error {
    readonly code: status;
    readonly codeName: string;
    readonly details: string;
    readonly violations: FieldViolation[];
    readonly reason: string;
    readonly info: Record<string, string>;
    readonly metadata: Metadata | undefined;
    constructor(message: string, fields: ErrorFields);
}
/** INVALID_ARGUMENT: nothing was changed; `violations` names each field at fault. */
export declare class InvalidArgument extends MgmtError {
}
/** NOT_FOUND: the thing named does not exist (any more); `kind` and `key` say which when known. */
export declare class NotFound extends MgmtError {
    get kind(): string;
    get key(): string;
}
/** ALREADY_EXISTS. */
export declare class AlreadyExists extends MgmtError {
}
/** FAILED_PRECONDITION: the system is not in a state that allows the call. */
export declare class FailedPrecondition extends MgmtError {
}
/**
 * FAILED_PRECONDITION with reason NOT_REGISTERED: a worker's instance is not (or no longer) in the
 * registry (its lease lapsed, it was deregistered): register it again, then subscribe.
 */
export declare class NotRegistered extends FailedPrecondition {
    get service(): string;
    get instanceId(): string;
    /** Why it is gone: "not_registered", or the registry's reason ("lease_expired", ...). */
    get registryCause(): string;
}
/** OUT_OF_RANGE: a position (revision, sequence) outside what is kept; `info` says what is (e.g. oldest_revision). */
export declare class OutOfRange extends MgmtError {
}
/** RESOURCE_EXHAUSTED: a limit was reached; retry later. */
export declare class ResourceExhausted extends MgmtError {
}
/** UNAUTHENTICATED: no token, or an unknown one. */
export declare class Unauthenticated extends MgmtError {
}
/** PERMISSION_DENIED: the token's role (or a worker token's services) does not allow the call. */
export declare class PermissionDenied extends MgmtError {
}
/**
 * UNAVAILABLE: no control plane answered (refused, reset, shutting down). With several addresses the
 * client has moved on to the next one; calls that are not safe to repeat raise this instead.
 */
export declare class Unavailable extends MgmtError {
}
/** Whether `err` means the control plane in use went away, so that another address may answer. */
export declare function isUnavailable(err: unknown): boolean;
/** The typed error a failed call stands for; anything that is not a gRPC failure is returned as is. */
export declare function fromServiceError(err: unknown): unknown;
/** A one-line account of a failure, for logs. */
export declare function describe(err: unknown): string;
export {};
