// hms-mgmt: the JavaScript/TypeScript SDK of the hms-mgmt control plane.
//
//   import { connect, Worker } from 'hms-mgmt';
//   const mgmt = connect({ addresses: ['127.0.0.1:50051'] });
//   const id = await mgmt.workflow.start('building_permit', input);

export { type Data, Message, type OutgoingMessage, type PublishOptions, type Start, type SubscribeOptions, Subscription } from './bus.js';
export type { BusApi } from './bus.js';
export { Client, connect, type ConnectOptions, type Pinned, type TlsOptions } from './client.js';
export {
  DEFAULT_CALL_TIMEOUT_MS,
  type Endpoint,
  type Endpoints,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  type Logger,
  parseAddresses,
} from './endpoints.js';
export {
  AlreadyExists,
  FailedPrecondition,
  type FieldViolation,
  fromServiceError,
  InvalidArgument,
  isUnavailable,
  MgmtError,
  NotFound,
  NotRegistered,
  OutOfRange,
  PermissionDenied,
  ResourceExhausted,
  Unauthenticated,
  Unavailable,
} from './errors.js';
export { duration, type Json, type JsonObject, milliseconds, toPayload } from './payload.js';
export {
  type InstanceOptions,
  type LookupOptions,
  type ProbeOptions,
  type RegisterOptions,
  Registration,
  type RegistryApi,
  RegistryWatch,
  type WatchOptions,
} from './registry.js';
export { type Overlap, type ScheduleApi, type ScheduleOptions } from './schedule.js';
export { type Handler, type Task, TaskCancelled, TaskFailure, Worker, type WorkerOptions } from './worker.js';
export { FINAL_STATES, type IncidentOptions, type ListOptions, type ProcessStatus, type ProcessWatchOptions, type StartOptions, type WorkflowApi } from './workflow.js';

// The contract's enums (values are their names, e.g. "PROCESS_STATE_COMPLETED") and message types.
export { HealthStatus } from './gen/hms/mgmt/v1/common.js';
export { ChangeType } from './gen/hms/mgmt/v1/registry.js';
export type { HealthProbe, Lease, RegistryChange, ServiceInstance, ServiceSummary, WatchResponse } from './gen/hms/mgmt/v1/registry.js';
export { AckAction, AckMode, AckResult, StartPosition } from './gen/hms/mgmt/v1/bus.js';
export type {
  BusMessage,
  ConsumerInfo,
  Delivery,
  Gap,
  PublishResponse,
  RetentionPolicy,
  SubjectInfo,
  SubscriptionReady,
} from './gen/hms/mgmt/v1/bus.js';
export {
  HistoryEventType,
  IncidentFilter,
  ProcessState,
  ReportResult,
  StepKind,
  StepState,
  TaskCancelReason,
} from './gen/hms/mgmt/v1/workflow.js';
export { OverlapPolicy, TriggerOutcome } from './gen/hms/mgmt/v1/schedule.js';
export type { ScheduleAction, ScheduleInfo, ScheduleSpec, TriggerScheduleResponse } from './gen/hms/mgmt/v1/schedule.js';
export type {
  CompleteTaskResponse,
  Definition,
  Failure,
  FailTaskResponse,
  HistoryEvent,
  Incident,
  Process,
  RegisterDefinitionResponse,
  SignalProcessResponse,
  StepStatus,
  WatchProcessResponse,
} from './gen/hms/mgmt/v1/workflow.js';
