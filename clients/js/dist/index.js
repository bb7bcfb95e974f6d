// hms-mgmt: the JavaScript/TypeScript SDK of the hms-mgmt control plane.
//
//   import { connect, Worker } from 'hms-mgmt';
//   const mgmt = connect({ addresses: ['127.0.0.1:50051'] });
//   const id = await mgmt.workflow.start('building_permit', input);
export { Message, Subscription } from './bus.js';
export { Client, connect } from './client.js';
export { DEFAULT_CALL_TIMEOUT_MS, KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS, parseAddresses, } from './endpoints.js';
export { AlreadyExists, FailedPrecondition, fromServiceError, InvalidArgument, isUnavailable, MgmtError, NotFound, NotRegistered, OutOfRange, PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable, } from './errors.js';
export { duration, milliseconds, toPayload } from './payload.js';
export { Registration, RegistryWatch, } from './registry.js';
export { TaskCancelled, TaskFailure, Worker } from './worker.js';
export { FINAL_STATES } from './workflow.js';
// The contract's enums (values are their names, e.g. "PROCESS_STATE_COMPLETED") and message types.
export { HealthStatus } from './gen/hms/mgmt/v1/common.js';
export { ChangeType } from './gen/hms/mgmt/v1/registry.js';
export { AckAction, AckMode, AckResult, StartPosition } from './gen/hms/mgmt/v1/bus.js';
export { HistoryEventType, IncidentFilter, ProcessState, ReportResult, StepKind, StepState, TaskCancelReason, } from './gen/hms/mgmt/v1/workflow.js';
export { OverlapPolicy, TriggerOutcome } from './gen/hms/mgmt/v1/schedule.js';
