#!/usr/bin/env node
// NotificationService: the Node.js worker of the building-permit demo, on the hms-mgmt JavaScript SDK
// (clients/js). The SDK's Worker serves grpc.health.v1 so the control plane can probe it, registers
// with the Registry and keeps its lease, takes its sendDecision tasks and reports each one; this file
// only says what a notice is.
//
//   node services/notification/index.js --server HOST:PORT[,HOST:PORT...] [--instance-id ID]
//        [--version 1.0.0] [--outbox-file PATH] [--ttl SECONDS]
//
// stdout gets one line, `notification service ready <instance-id>`, once the first task stream is
// in place (and, without --outbox-file, one `notice {...}` line per notice sent); logs go to stderr.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { TaskFailure, Worker } from 'hms-mgmt';

import { configureTracing, traced } from './tracing.js';

const SERVICE = 'NotificationService';
const TASK_TYPE = 'sendDecision';
const MAX_IN_FLIGHT = 8;
const FAILURE_RATE_ENV = 'HMS_FAILURE_RATE';
const DRAIN_TIMEOUT_MS = 2000;

const USAGE = `usage: node services/notification/index.js --server HOST:PORT [options]

  --server HOST:PORT[,...]    control plane address(es) (default: $MGMT_SERVER)
  --instance-id ID            registry instance id (default: notification-<random>)
  --version VERSION           version registered (default: 1.0.0)
  --outbox-file PATH          append each notice as a JSON line here (default: a stdout line)
  --ttl SECONDS               lease time to live, renewed every third of it (default: 10)
  -h, --help                  show this help

Environment: MGMT_SERVER (default of --server), MGMT_TOKEN (bearer token), ${FAILURE_RATE_ENV} (share
of attempts that fail with a retryable TRANSIENT error, in [0, 1)); OTEL_* (traces to an OTLP collector,
off unless OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT is set).`;

function log(message) {
  process.stderr.write(`${new Date().toISOString()} notification: ${message}\n`);
}

export function parseOptions(argv, env) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      server: { type: 'string' },
      'instance-id': { type: 'string' },
      version: { type: 'string', default: '1.0.0' },
      'outbox-file': { type: 'string' },
      ttl: { type: 'string', default: '10' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const server = values.server || env.MGMT_SERVER;
  if (!server) throw new Error('--server HOST:PORT (or MGMT_SERVER) is required');
  const ttl = Number(values.ttl);
  if (!(ttl >= 1)) throw new Error(`--ttl must be a number of seconds >= 1, got ${values.ttl}`);
  const rateText = (env[FAILURE_RATE_ENV] || '').trim();
  const failureRate = rateText ? Number(rateText) : 0;
  if (!(failureRate >= 0 && failureRate < 1)) {
    throw new Error(`${FAILURE_RATE_ENV} must be in [0, 1), got ${JSON.stringify(rateText)}`);
  }
  return {
    server,
    token: env.MGMT_TOKEN || undefined,
    instanceId: values['instance-id'] || `notification-${crypto.randomUUID().slice(0, 8)}`,
    version: values.version,
    outboxFile: values['outbox-file'] || '',
    ttlMs: ttl * 1000,
    failureRate,
  };
}

/** "Sends" decision notices: one per process step, whatever the retries (a redelivered task sends nothing twice). */
export class Notifier {
  constructor({ outboxFile = '', failureRate = 0 } = {}) {
    this.outboxFile = outboxFile;
    this.failureRate = failureRate;
    this.sent = new Map(); // notice_id -> notice
  }

  /** The sendDecision handler: send the notice, answer its id. */
  async sendDecision(task) {
    const where = `${task.processId}/${task.stepId} attempt ${task.attempt}`;
    if (this.failureRate && Math.random() < this.failureRate) {
      log(`injecting a transient failure into ${where}`);
      throw new TaskFailure('TRANSIENT', `injected failure in ${task.taskType} (attempt ${task.attempt})`);
    }
    if (task.compensation) return {}; // a notice cannot be unsent; there is nothing to undo
    const { decision } = task.input;
    if (decision === undefined || decision === null || decision === '') {
      throw new TaskFailure('INVALID_INPUT', 'task input has no "decision"', { nonRetryable: true });
    }
    const digest = crypto.createHash('sha256').update(`${task.processId}/${task.stepId}`).digest('hex');
    const noticeId = `ntc-${digest.slice(0, 16)}`;
    if (!this.sent.has(noticeId)) {
      const notice = {
        process_id: task.processId,
        business_key: task.businessKey,
        decision,
        to: task.input.to ?? task.input.applicant ?? task.input.email ?? '',
        sent_at: new Date().toISOString(),
      };
      const line = JSON.stringify(notice);
      if (this.outboxFile) fs.appendFileSync(this.outboxFile, `${line}\n`);
      else process.stdout.write(`notice ${line}\n`);
      this.sent.set(noticeId, notice);
      log(`sent ${noticeId} (${decision}) for ${where}`);
    }
    return { notice_id: noticeId, decision };
  }
}

async function main() {
  let options;
  try {
    options = parseOptions(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`${err.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  const notifier = new Notifier(options);
  // Off unless the OTEL_* variables ask for traces (see tracing.js).
  const tracing = await configureTracing(process.env, SERVICE);
  const worker = new Worker({
    addresses: options.server,
    token: options.token,
    service: SERVICE,
    instanceId: options.instanceId,
    version: options.version,
    tags: ['node'],
    metadata: { language: 'node', runtime: process.version, pid: String(process.pid) },
    maxInFlight: MAX_IN_FLIGHT,
    ttlMs: options.ttlMs,
    drainTimeoutMs: DRAIN_TIMEOUT_MS,
    // The SDK serves grpc.health.v1 on 127.0.0.1:0 and registers that address with this probe.
    health: true,
    probe: { intervalMs: 1000, timeoutMs: 500, threshold: 2, deregisterCriticalAfterMs: 30_000 },
    handlers: { [TASK_TYPE]: traced(tracing.tracer, SERVICE, (task) => notifier.sendDecision(task)) },
    logger: { warn: log, info: log },
  });
  let announced = false;
  worker.on('ready', (address) => {
    log(`subscribed to ${SERVICE}/${TASK_TYPE} as ${options.instanceId} on ${address}`);
    if (!announced) {
      announced = true;
      process.stdout.write(`notification service ready ${options.instanceId}\n`);
    }
  });
  log(`starting ${SERVICE} ${options.version} as ${options.instanceId}, control plane ${options.server}`);
  await worker.run(); // until SIGTERM or SIGINT: drains, deregisters
  log(`deregistered ${SERVICE}/${options.instanceId}; stopping`);
  await tracing.shutdown();
  process.exit(0);
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    log(`fatal: ${err.stack || err}`);
    process.exit(1);
  });
}
