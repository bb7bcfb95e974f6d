#!/usr/bin/env node
// NotificationService: the Node.js worker of the building-permit demo.
//
// It joins the hms-mgmt control plane with nothing but protos/: it serves grpc.health.v1 so the
// control plane can probe it, registers with the Registry and keeps its lease, subscribes to its
// sendDecision tasks and reports each one with CompleteTask / FailTask, sent again until answered.
//
//   node services/notification/index.js --server HOST:PORT [--instance-id ID] [--version 1.0.0]
//        [--outbox-file PATH] [--ttl SECONDS] [--heartbeat-interval SECONDS]
//
// stdout gets one line, `notification service ready <instance-id>`, once the first task stream is
// in place (and, without --outbox-file, one `notice {...}` line per notice sent); logs go to stderr.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const SERVICE = 'NotificationService';
const TASK_TYPE = 'sendDecision';
const MAX_IN_FLIGHT = 8;
const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
const FAILURE_RATE_ENV = 'HMS_FAILURE_RATE';
const RPC_DEADLINE_MS = 5000;
const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 5000;
// Failures after which a report may or may not have been applied: it is sent again (a repeat is
// answered ALREADY_REPORTED and changes nothing). Any other status is the report's own fault.
const RESEND_ON = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.CANCELLED,
]);

const USAGE = `usage: node services/notification/index.js --server HOST:PORT [options]

  --server HOST:PORT          control plane address (default: $MGMT_SERVER)
  --instance-id ID            registry instance id (default: notification-<random>)
  --version VERSION           version registered (default: 1.0.0)
  --outbox-file PATH          append each notice as a JSON line here (default: a stdout line)
  --ttl SECONDS               lease time to live (default: 10)
  --heartbeat-interval SECONDS  lease renewal period (default: 3)
  -h, --help                  show this help

Environment: MGMT_SERVER (default of --server), ${FAILURE_RATE_ENV} (share of attempts that fail
with a retryable TRANSIENT error, in [0, 1)).`;

// -- protos ---------------------------------------------------------------------------------------

// keepCase: fields stay snake_case as written in protos/. The google/protobuf imports resolve
// from the well-known types bundled with proto-loader (protobufjs).
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS, __dirname],
};

function loadProtos() {
  const definition = protoLoader.loadSync(
    ['hms/mgmt/v1/registry.proto', 'hms/mgmt/v1/workflow.proto', 'health.proto'],
    LOADER_OPTIONS,
  );
  const root = grpc.loadPackageDefinition(definition);
  return { mgmt: root.hms.mgmt.v1, health: root.grpc.health.v1 };
}

// -- google.protobuf.Struct <-> plain JSON ----------------------------------------------------------
// proto-loader takes the well-known types from protobufjs's bundled descriptors, whose Value
// members are camelCase (numberValue, structValue, ...) whatever keepCase says, so a Struct
// arrives as {fields: {k: {stringValue: 'x', kind: 'stringValue'}}}. Convert explicitly.

/** A plain JSON object as a google.protobuf.Struct message object. */
function toStruct(object) {
  const fields = {};
  for (const [key, value] of Object.entries(object || {})) {
    if (value !== undefined) fields[key] = toValue(value);
  }
  return { fields };
}

/** A JSON value as a google.protobuf.Value message object. */
function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  if (typeof value === 'object') return { structValue: toStruct(value) };
  return { stringValue: String(value) };
}

/** A google.protobuf.Struct message object as a plain JSON object. */
function fromStruct(struct) {
  const object = {};
  for (const [key, value] of Object.entries((struct && struct.fields) || {})) {
    object[key] = fromValue(value);
  }
  return object;
}

/** A google.protobuf.Value message object as a JSON value (camelCase or snake_case members). */
function fromValue(value) {
  if (!value) return null;
  const member = (camel, snake) => (value[camel] !== undefined && value[camel] !== null ? value[camel] : value[snake]);
  const kinds = {
    numberValue: 'number_value',
    stringValue: 'string_value',
    boolValue: 'bool_value',
    structValue: 'struct_value',
    listValue: 'list_value',
  };
  const camelOf = (name) => Object.keys(kinds).find((camel) => camel === name || kinds[camel] === name);
  const kind =
    camelOf(value.kind) ||
    Object.keys(kinds).find((camel) => {
      const v = member(camel, kinds[camel]);
      return v !== undefined && v !== null;
    });
  const inner = kind ? member(kind, kinds[kind]) : null;
  switch (kind) {
    case 'numberValue':
    case 'stringValue':
    case 'boolValue':
      return inner;
    case 'structValue':
      return fromStruct(inner);
    case 'listValue':
      return ((inner && inner.values) || []).map(fromValue);
    default:
      return null;
  }
}

/** Seconds as a google.protobuf.Duration message object. */
function duration(seconds) {
  const whole = Math.floor(seconds);
  return { seconds: whole, nanos: Math.round((seconds - whole) * 1e9) };
}

// -- small helpers ----------------------------------------------------------------------------------

function log(message) {
  process.stderr.write(`${new Date().toISOString()} notification: ${message}\n`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A unary call as a promise, with a deadline. */
function unary(client, method, request, deadlineMs = RPC_DEADLINE_MS) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + deadlineMs }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

function codeName(err) {
  const name = Object.keys(grpc.status).find((key) => grpc.status[key] === err.code);
  return name || String(err.code);
}

function parseOptions(argv, env) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      server: { type: 'string' },
      'instance-id': { type: 'string' },
      version: { type: 'string', default: '1.0.0' },
      'outbox-file': { type: 'string' },
      ttl: { type: 'string', default: '10' },
      'heartbeat-interval': { type: 'string', default: '3' },
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
  const heartbeat = Number(values['heartbeat-interval']);
  if (!(ttl >= 1)) throw new Error(`--ttl must be a number of seconds >= 1, got ${values.ttl}`);
  if (!(heartbeat > 0 && heartbeat < ttl)) {
    throw new Error(`--heartbeat-interval must be > 0 and < --ttl, got ${values['heartbeat-interval']}`);
  }
  const rateText = (env[FAILURE_RATE_ENV] || '').trim();
  const failureRate = rateText ? Number(rateText) : 0;
  if (!(failureRate >= 0 && failureRate < 1)) {
    throw new Error(`${FAILURE_RATE_ENV} must be in [0, 1), got ${JSON.stringify(rateText)}`);
  }
  return {
    server,
    instanceId: values['instance-id'] || `notification-${crypto.randomUUID().slice(0, 8)}`,
    version: values.version,
    outboxFile: values['outbox-file'] || '',
    ttlS: ttl,
    heartbeatS: heartbeat,
    failureRate,
  };
}

// -- the service ------------------------------------------------------------------------------------

class NotificationService {
  constructor(options, protos) {
    this.options = options;
    this.protos = protos;
    const channelOptions = {
      'grpc.initial_reconnect_backoff_ms': BACKOFF_MIN_MS,
      'grpc.max_reconnect_backoff_ms': 2000,
    };
    const credentials = grpc.credentials.createInsecure();
    this.registry = new protos.mgmt.Registry(options.server, credentials, channelOptions);
    this.workflow = new protos.mgmt.Workflow(options.server, credentials, {
      ...channelOptions,
      channelOverride: this.registry.getChannel(),
    });
    this.healthServer = null;
    this.address = '';
    this.leaseId = '';
    this.registering = null;
    this.heartbeatTimer = null;
    this.stream = null;
    this.announced = false;
    this.stopping = false;
    this.sent = new Map(); // notice_id -> notice: a redelivered task sends nothing twice
  }

  /** Serve grpc.health.v1.Health on 127.0.0.1:0; resolves to the bound address. */
  async serveHealth() {
    const SERVING = 'SERVING';
    const known = (name) => name === '' || name === SERVICE;
    const server = new grpc.Server();
    server.addService(this.protos.health.Health.service, {
      Check: (call, callback) => {
        if (!known(call.request.service)) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${call.request.service}` });
          return;
        }
        callback(null, { status: this.stopping ? 'NOT_SERVING' : SERVING });
      },
      Watch: (call) => {
        call.write({ status: known(call.request.service) ? SERVING : 'SERVICE_UNKNOWN' });
        call.on('cancelled', () => call.end());
      },
    });
    const port = await new Promise((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) =>
        err ? reject(err) : resolve(bound),
      );
    });
    this.healthServer = server;
    this.address = `127.0.0.1:${port}`;
    log(`health service on ${this.address}`);
  }

  /** Register (again); concurrent callers share one attempt. */
  register() {
    if (!this.registering) {
      this.registering = this._register().finally(() => {
        this.registering = null;
      });
    }
    return this.registering;
  }

  async _register() {
    const { instanceId, version, ttlS } = this.options;
    const request = {
      instance: {
        service: SERVICE,
        instance_id: instanceId,
        address: this.address,
        version,
        tags: ['node'],
        metadata: { language: 'node', runtime: process.version, pid: String(process.pid) },
        probe: {
          service_name: '',
          interval: duration(1),
          timeout: duration(0.5),
          threshold: 2,
          deregister_critical_after: duration(30),
        },
      },
      ttl: duration(ttlS),
    };
    const response = await unary(this.registry, 'Register', request);
    this.leaseId = response.lease.lease_id;
    log(`registered ${SERVICE}/${instanceId} at ${this.address} (lease ${this.leaseId})`);
  }

  /** Register, retrying with backoff until it works or the service stops. */
  async registerUntilDone() {
    let backoff = BACKOFF_MIN_MS;
    while (!this.stopping) {
      try {
        await this.register();
        return;
      } catch (err) {
        log(`register failed (${codeName(err)}: ${err.details || err.message}); retrying in ${backoff} ms`);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /** Renew the lease every heartbeat interval; a lapsed lease (NOT_FOUND) means register again. */
  startHeartbeats() {
    const beat = async () => {
      if (this.stopping || this.registering) return;
      try {
        if (!this.leaseId) {
          await this.register();
          return;
        }
        await unary(this.registry, 'Heartbeat', { lease_id: this.leaseId });
      } catch (err) {
        if (err.code === grpc.status.NOT_FOUND) {
          log(`lease ${this.leaseId} lapsed; registering again`);
          this.leaseId = '';
          await this.register().catch((e) => log(`register failed: ${e.details || e.message}`));
        } else if (!this.stopping) {
          log(`heartbeat failed (${codeName(err)}); will retry`);
        }
      }
    };
    this.heartbeatTimer = setInterval(beat, this.options.heartbeatS * 1000);
  }

  /** Keep a task stream open, reconnecting with backoff when it breaks. */
  async subscribeForever() {
    let backoff = BACKOFF_MIN_MS;
    while (!this.stopping) {
      if (!this.leaseId) await this.registerUntilDone();
      if (this.stopping) return;
      let wasReady = false;
      try {
        await this.subscribeOnce(() => {
          wasReady = true;
          backoff = BACKOFF_MIN_MS;
        });
        log('task stream ended');
      } catch (err) {
        if (this.stopping) return;
        log(`task stream broke (${codeName(err)}: ${err.details || err.message})`);
        if (err.code === grpc.status.FAILED_PRECONDITION || err.code === grpc.status.NOT_FOUND) {
          // NOT_REGISTERED: the registry no longer knows this instance (its lease lapsed); register
          // again before subscribing, which alone would only be refused the same way.
          this.leaseId = '';
        }
      }
      if (this.stopping) return;
      const wait = wasReady ? BACKOFF_MIN_MS : backoff;
      log(`resubscribing in ${wait} ms`);
      await sleep(wait);
      if (!wasReady) backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  /** One SubscribeTasks stream; resolves when it ends, rejects when it fails. */
  subscribeOnce(onReady) {
    return new Promise((resolve, reject) => {
      const stream = this.workflow.SubscribeTasks({
        service: SERVICE,
        instance_id: this.options.instanceId,
        task_types: [TASK_TYPE],
        max_in_flight: MAX_IN_FLIGHT,
      });
      this.stream = stream;
      let ready = false;
      stream.on('data', (frame) => {
        if (frame.ready && !ready) {
          ready = true;
          onReady();
          log(`subscribed to ${SERVICE}/${TASK_TYPE} as ${this.options.instanceId}`);
          if (!this.announced) {
            this.announced = true;
            process.stdout.write(`notification service ready ${this.options.instanceId}\n`);
          }
        }
        for (const task of frame.tasks || []) {
          this.handle(task).catch((err) => log(`task ${task.process_id}/${task.step_id}: ${err.stack || err}`));
        }
        for (const cancellation of frame.cancellations || []) {
          log(`task cancelled (${cancellation.reason}): ${cancellation.message}`);
        }
      });
      stream.on('error', (err) => {
        this.stream = null;
        reject(err);
      });
      stream.on('end', () => {
        this.stream = null;
        resolve();
      });
    });
  }

  /** "Send" one decision notice and report the attempt. */
  async handle(task) {
    const input = fromStruct(task.input);
    const where = `${task.process_id}/${task.step_id} attempt ${task.attempt}`;
    if (this.options.failureRate && Math.random() < this.options.failureRate) {
      log(`injecting a transient failure into ${where}`);
      await this.fail(task, 'TRANSIENT', `injected failure in ${task.task_type} (attempt ${task.attempt})`, false);
      return;
    }
    if (task.compensation) {
      // A notice cannot be unsent; there is nothing to undo.
      await this.complete(task, {});
      return;
    }
    const decision = input.decision;
    if (decision === undefined || decision === null || decision === '') {
      await this.fail(task, 'INVALID_INPUT', 'task input has no "decision"', true);
      return;
    }
    const noticeId = `ntc-${crypto
      .createHash('sha256')
      .update(`${task.process_id}/${task.step_id}`)
      .digest('hex')
      .slice(0, 16)}`;
    if (!this.sent.has(noticeId)) {
      const notice = {
        process_id: task.process_id,
        business_key: task.business_key,
        decision,
        to: input.to ?? input.applicant ?? input.email ?? '',
        sent_at: new Date().toISOString(),
      };
      const line = JSON.stringify(notice);
      if (this.options.outboxFile) {
        fs.appendFileSync(this.options.outboxFile, `${line}\n`);
      } else {
        process.stdout.write(`notice ${line}\n`);
      }
      this.sent.set(noticeId, notice);
      log(`sent ${noticeId} (${decision}) for ${where}`);
    }
    await this.complete(task, { notice_id: noticeId, decision });
  }

  /**
   * A CompleteTask / FailTask call, sent again (with backoff) until the control plane answers it: a
   * report lost to a failure would leave the task held by this instance, its process stuck.
   */
  async report(method, request, where) {
    let backoff = BACKOFF_MIN_MS;
    for (;;) {
      try {
        return await unary(this.workflow, method, request);
      } catch (err) {
        if (this.stopping || !RESEND_ON.has(err.code)) throw err;
        log(`${method} for ${where} not answered (${codeName(err)}: ${err.details || err.message}); `
          + `sending it again in ${backoff} ms`);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  async complete(task, output) {
    const where = `${task.process_id}/${task.step_id}`;
    const request = { task_token: task.task_token, output: toStruct(output) };
    const response = await this.report('CompleteTask', request, where);
    if (response.result !== 'REPORT_RESULT_ACCEPTED') {
      log(`completion of ${where}: ${response.result} ${response.message}`);
    }
  }

  async fail(task, code, message, nonRetryable) {
    const where = `${task.process_id}/${task.step_id}`;
    const request = { task_token: task.task_token, error_code: code, message, non_retryable: nonRetryable };
    const response = await this.report('FailTask', request, where);
    log(`failed ${where} with ${code}: ${response.result}`);
  }

  async start() {
    await this.serveHealth();
    await this.registerUntilDone();
    this.startHeartbeats();
    this.subscribeForever().catch((err) => {
      log(`subscription loop crashed: ${err.stack || err}`);
      process.exit(1);
    });
  }

  /** Deregister and stop; exits 0. */
  async shutdown(signal) {
    if (this.stopping) return;
    this.stopping = true;
    log(`${signal}: deregistering and stopping`);
    setTimeout(() => process.exit(0), 3000).unref();
    clearInterval(this.heartbeatTimer);
    if (this.stream) this.stream.cancel();
    try {
      await unary(this.registry, 'Deregister', { service: SERVICE, instance_id: this.options.instanceId }, 2000);
      log(`deregistered ${SERVICE}/${this.options.instanceId}`);
    } catch (err) {
      log(`deregister failed (${codeName(err)}); the lease will lapse`);
    }
    this.registry.close();
    if (this.healthServer) this.healthServer.forceShutdown();
    process.exit(0);
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
  const service = new NotificationService(options, loadProtos());
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => service.shutdown(signal));
  }
  log(`starting ${SERVICE} ${options.version} as ${options.instanceId}, control plane ${options.server}`);
  await service.start();
}

if (require.main === module) {
  main().catch((err) => {
    log(`fatal: ${err.stack || err}`);
    process.exit(1);
  });
}

module.exports = { toStruct, fromStruct, toValue, fromValue, duration };
