// Failed calls as typed errors, so callers branch on classes (and on the fields at fault), not on
// text. The control plane puts google.rpc.BadRequest and google.rpc.ErrorInfo in the status details
// (the `grpc-status-details-bin` trailer); they are decoded here.
import { status } from '@grpc/grpc-js';
import { BadRequest, ErrorInfo } from './gen/google/rpc/error_details.js';
import { Status } from './gen/google/rpc/status.js';
const DETAILS_KEY = 'grpc-status-details-bin';
const TYPE_PREFIX = 'type.googleapis.com/';
/**
 * Any failed call. `code` is the gRPC status code (as `err.code` of a grpc-js ServiceError, so code
 * written against raw grpc-js keeps working), `codeName` its name; `reason` and `info` come from the
 * google.rpc.ErrorInfo detail when the control plane sent one; `cause` is the grpc-js error.
 */
export class MgmtError extends Error {
    code;
    codeName;
    details;
    violations;
    reason;
    info;
    metadata;
    constructor(message, fields) {
        super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
        this.name = new.target.name;
        this.code = fields.code;
        this.codeName = status[fields.code] ?? String(fields.code);
        this.details = fields.details;
        this.violations = fields.violations ?? [];
        this.reason = fields.reason ?? '';
        this.info = fields.info ?? {};
        this.metadata = fields.metadata;
    }
}
/** INVALID_ARGUMENT: nothing was changed; `violations` names each field at fault. */
export class InvalidArgument extends MgmtError {
}
/** NOT_FOUND: the thing named does not exist (any more); `kind` and `key` say which when known. */
export class NotFound extends MgmtError {
    get kind() {
        return this.info.kind ?? 'resource';
    }
    get key() {
        return this.info.key ?? this.details;
    }
}
/** ALREADY_EXISTS. */
export class AlreadyExists extends MgmtError {
}
/** FAILED_PRECONDITION: the system is not in a state that allows the call. */
export class FailedPrecondition extends MgmtError {
}
/**
 * FAILED_PRECONDITION with reason NOT_REGISTERED: a worker's instance is not (or no longer) in the
 * registry (its lease lapsed, it was deregistered): register it again, then subscribe.
 */
export class NotRegistered extends FailedPrecondition {
    get service() {
        return this.info.service ?? '';
    }
    get instanceId() {
        return this.info.instance_id ?? '';
    }
    /** Why it is gone: "not_registered", or the registry's reason ("lease_expired", ...). */
    get registryCause() {
        return this.info.cause ?? 'not_registered';
    }
}
/** OUT_OF_RANGE: a position (revision, sequence) outside what is kept; `info` says what is (e.g. oldest_revision). */
export class OutOfRange extends MgmtError {
}
/** RESOURCE_EXHAUSTED: a limit was reached; retry later. */
export class ResourceExhausted extends MgmtError {
}
/** UNAUTHENTICATED: no token, or an unknown one. */
export class Unauthenticated extends MgmtError {
}
/** PERMISSION_DENIED: the token's role (or a worker token's services) does not allow the call. */
export class PermissionDenied extends MgmtError {
}
/**
 * UNAVAILABLE: no control plane answered (refused, reset, shutting down). With several addresses the
 * client has moved on to the next one; calls that are not safe to repeat raise this instead.
 */
export class Unavailable extends MgmtError {
}
const CLASSES = {
    [status.INVALID_ARGUMENT]: InvalidArgument,
    [status.NOT_FOUND]: NotFound,
    [status.ALREADY_EXISTS]: AlreadyExists,
    [status.FAILED_PRECONDITION]: FailedPrecondition,
    [status.OUT_OF_RANGE]: OutOfRange,
    [status.RESOURCE_EXHAUSTED]: ResourceExhausted,
    [status.UNAUTHENTICATED]: Unauthenticated,
    [status.PERMISSION_DENIED]: PermissionDenied,
    [status.UNAVAILABLE]: Unavailable,
};
function isServiceError(err) {
    return err instanceof Error && typeof err.code === 'number';
}
/** What grpc-js says of a call this process cancelled (`call.cancel()`). */
const CANCELLED_HERE = 'Cancelled on client';
/**
 * Whether the other end cancelled the call: gRPC's core does so to every call that reached a server
 * after its shutdown began and before a handler took it (grpc/grpc#41785), a call that never ran. The
 * control plane cancels nothing else (past its shutdown grace, calls end UNAVAILABLE).
 */
function cancelledByShutdown(err) {
    return err.code === status.CANCELLED && err.details !== CANCELLED_HERE;
}
/** Whether `err` means the control plane in use went away, so that another address may answer. */
export function isUnavailable(err) {
    if (err instanceof MgmtError)
        return err.code === status.UNAVAILABLE;
    return isServiceError(err) && (err.code === status.UNAVAILABLE || cancelledByShutdown(err));
}
/** The typed error a failed call stands for; anything that is not a gRPC failure is returned as is. */
export function fromServiceError(err) {
    if (err instanceof MgmtError || !isServiceError(err))
        return err;
    const fields = { code: err.code, details: err.details ?? '', metadata: err.metadata, cause: err };
    if (cancelledByShutdown(err)) {
        fields.code = status.UNAVAILABLE;
        fields.details = `the control plane shut down before running the call (gRPC said CANCELLED: ${err.details})`;
    }
    for (const raw of err.metadata?.get(DETAILS_KEY) ?? []) {
        if (typeof raw === 'string')
            continue;
        let details;
        try {
            details = Status.decode(raw);
        }
        catch {
            continue; // a malformed trailer must not hide the error itself
        }
        for (const any of details.details) {
            if (any.typeUrl === `${TYPE_PREFIX}google.rpc.BadRequest`) {
                fields.violations = BadRequest.decode(any.value).fieldViolations.map(({ field, description }) => ({
                    field,
                    description,
                }));
            }
            else if (any.typeUrl === `${TYPE_PREFIX}google.rpc.ErrorInfo`) {
                const info = ErrorInfo.decode(any.value);
                fields.reason = info.reason;
                fields.info = { ...info.metadata };
            }
        }
    }
    const message = fields.violations?.length
        ? fields.violations.map((v) => (v.field ? `${v.field}: ${v.description}` : v.description)).join('; ')
        : fields.details || (status[err.code] ?? `status ${err.code}`);
    const Class = fields.code === status.FAILED_PRECONDITION && fields.reason === 'NOT_REGISTERED' ? NotRegistered : (CLASSES[fields.code] ?? MgmtError);
    return new Class(message, fields);
}
/** A one-line account of a failure, for logs. */
export function describe(err) {
    if (err instanceof MgmtError)
        return `${err.codeName}: ${err.message}`;
    if (isServiceError(err))
        return `${status[err.code] ?? err.code}: ${err.details}`;
    return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
