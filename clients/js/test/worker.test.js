// The Worker against a real control plane: registration with a probe, tasks completed and failed,
// credit, heartbeats, cancellation, and the drain on SIGTERM (in a child process).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { connect, TaskCancelled, TaskFailure, Worker } from '../dist/index.js';
import { deadline, defer, event, recordingLogger, sharedControlPlane, until } from './support.js';

const WAIT_MS = 10_000;

// Each test has a service of its own (and its definition's latest version): one control plane serves them all.
const shared = sharedControlPlane();

async function setup(t, definition) {
  const plane = shared();
  const mgmt = connect({ addresses: [plane.address] });
  defer(t, () => mgmt.close());
  if (definition) await mgmt.workflow.apply(definition);
  return { plane, mgmt };
}

/** A running Worker (stopped and awaited when the test ends); resolves once it takes tasks. */
async function running(t, mgmt, options) {
  const worker = new Worker({ client: mgmt, stopSignals: [], logger: recordingLogger(), ...options });
  const run = worker.run();
  defer(t, async () => {
    worker.stop();
    await deadline(run, WAIT_MS, 'the worker to stop');
  });
  await deadline(Promise.race([worker.ready, run]), WAIT_MS, 'the worker to be ready');
  return worker;
}

const TWO_STEPS = `
name: two_steps
steps:
  - {id: quote, task: {service: Pricing, type: quote, version: ">=1.0,<2"}, input: {amount: "input.amount"}}
  - {id: confirm, task: {service: Pricing, type: confirm}, input: {price: "steps.quote.output.price"}}
output: {price: "steps.confirm.output.price", confirmed: "steps.confirm.output.confirmed"}
`;

test('a worker registers with its probe, is probed healthy and completes its tasks', async (t) => {
  const { mgmt } = await setup(t, TWO_STEPS);
  const seen = [];
  await running(t, mgmt, {
    service: 'Pricing',
    version: '1.4.0',
    instanceId: 'pricing-1',
    tags: ['js'],
    health: true,
    probe: { intervalMs: 200, timeoutMs: 100, threshold: 1 },
    handlers: {
      quote: (task) => {
        seen.push([task.stepId, task.attempt, task.input]);
        return { price: task.input.amount * 3 };
      },
      confirm: async (task) => ({ price: task.input.price, confirmed: true }),
    },
  });

  const id = await mgmt.workflow.start('two_steps', { amount: 7 });
  const final = await deadline(mgmt.workflow.wait(id), WAIT_MS, 'the process to end');
  await until(
    async () => (await mgmt.registry.lookup('Pricing')).length === 1, // healthy ones only
    WAIT_MS,
    'the probes to find the worker healthy',
  );
  const [instance] = await mgmt.registry.lookup('Pricing');

  assert.equal(final.state, 'PROCESS_STATE_COMPLETED');
  assert.deepEqual(final.output, { price: 21, confirmed: true });
  assert.deepEqual(seen, [['quote', 1, { amount: 7 }]]);
  assert.deepEqual([instance.instanceId, instance.version, instance.tags], ['pricing-1', '1.4.0', ['js']]);
  assert.match(instance.address, /^127\.0\.0\.1:\d+$/);
  assert.equal(instance.probe.threshold, 1);
  assert.equal(instance.health, 'HEALTH_STATUS_PASSING');
});

test('a TaskFailure fails the step with its code; an unexpected error is UNHANDLED and retried', async (t) => {
  const { mgmt } = await setup(
    t,
    `
name: failing
steps:
  - id: charge
    task: {service: Billing, type: charge}
    retry: {max_attempts: 2, initial_interval: 100ms, non_retryable: [DECLINED]}
`,
  );
  const attempts = [];
  await running(t, mgmt, {
    service: 'Billing',
    handlers: {
      charge: (task) => {
        attempts.push([task.businessKey, task.attempt]);
        if (task.businessKey === 'declined') throw new TaskFailure('DECLINED', 'card declined', { nonRetryable: true, details: { card: 'visa' } });
        throw new Error('socket hang up');
      },
    },
  });

  const declined = await mgmt.workflow.start('failing', {}, { businessKey: 'declined' });
  const broken = await mgmt.workflow.start('failing', {}, { businessKey: 'broken' });
  const [first, second] = await deadline(Promise.all([mgmt.workflow.wait(declined), mgmt.workflow.wait(broken)]), WAIT_MS, 'both to fail');

  assert.deepEqual(
    [first.state, first.error.code, first.error.message, first.error.details],
    ['PROCESS_STATE_FAILED', 'DECLINED', 'card declined', { card: 'visa' }],
  );
  assert.deepEqual([second.state, second.error.code, second.error.message], ['PROCESS_STATE_FAILED', 'UNHANDLED', 'Error: socket hang up']);
  assert.deepEqual(
    attempts.filter(([key]) => key === 'broken').map(([, attempt]) => attempt),
    [1, 2],
  );
  assert.equal(attempts.filter(([key]) => key === 'declined').length, 1);
});

test('the control plane gives a worker no more tasks than its credit (maxInFlight)', async (t) => {
  const { mgmt } = await setup(t, `name: one\nsteps:\n  - {id: work, task: {service: Batch, type: work}}\n`);
  const ids = await Promise.all([1, 2, 3, 4].map(() => mgmt.workflow.start('one', {})));
  const gates = [];
  const arrivals = ids.map(() => event()); // the nth task to reach its handler sets arrivals[n]
  let inFlight = 0;
  let most = 0;
  await running(t, mgmt, {
    service: 'Batch',
    maxInFlight: 2,
    handlers: {
      work: async () => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        const gate = event();
        arrivals[gates.length]?.set();
        gates.push(gate);
        await gate.happened;
        inFlight -= 1;
        return {};
      },
    },
  });

  for (let released = 0; released < ids.length; released++) {
    await deadline(arrivals[released].happened, WAIT_MS, `task ${released + 1}`);
    gates[released].set();
  }
  const finals = await deadline(Promise.all(ids.map((id) => mgmt.workflow.wait(id))), WAIT_MS, 'every process to end');

  assert.ok(finals.every((p) => p.state === 'PROCESS_STATE_COMPLETED'));
  assert.equal(most, 2);
});

test('heartbeats keep an attempt alive and hand their details to the next attempt', async (t) => {
  const { mgmt } = await setup(
    t,
    `
name: long
steps:
  - id: crunch
    task: {service: Crunch, type: crunch}
    heartbeat_timeout: 10s
    retry: {max_attempts: 2, initial_interval: 100ms}
`,
  );
  const seen = [];
  await running(t, mgmt, {
    service: 'Crunch',
    handlers: {
      crunch: async (task) => {
        seen.push([task.attempt, task.heartbeatDetails, task.heartbeatTimeoutMs]);
        if (task.attempt === 1) {
          await task.heartbeat({ done: 3 });
          throw new TaskFailure('INTERRUPTED', 'stopped half way');
        }
        return { resumedFrom: task.heartbeatDetails.done };
      },
    },
  });

  const final = await deadline(mgmt.workflow.wait(await mgmt.workflow.start('long', {})), WAIT_MS, 'the process to end');

  assert.equal(final.state, 'PROCESS_STATE_COMPLETED');
  assert.deepEqual(final.output, { resumedFrom: 3 });
  assert.deepEqual(seen, [
    [1, undefined, 10_000],
    [2, { done: 3 }, 10_000],
  ]);
});

test('cancelling the process aborts the running handler with the reason', async (t) => {
  const { mgmt } = await setup(t, `name: one\nsteps:\n  - {id: work, task: {service: Slow, type: work}}\n`);
  const started = event();
  const aborted = event();
  await running(t, mgmt, {
    service: 'Slow',
    handlers: {
      work: async (task) => {
        started.set();
        await once(task.signal, 'abort');
        aborted.set(task.signal.reason);
        return { ignored: true }; // its report would be stale: the Worker does not send it
      },
    },
  });

  const id = await mgmt.workflow.start('one', {});
  await deadline(started.happened, WAIT_MS, 'the task to start');
  await mgmt.workflow.cancel(id, { reason: 'withdrawn' });
  const reason = await deadline(aborted.happened, WAIT_MS, 'the cancellation to reach the handler');
  const final = await mgmt.workflow.wait(id);

  assert.ok(reason instanceof TaskCancelled, String(reason));
  assert.equal(reason.reason, 'TASK_CANCEL_REASON_PROCESS_CANCELLED');
  assert.equal(final.state, 'PROCESS_STATE_CANCELLED');
  assert.equal(final.output, undefined);
});

test('on SIGTERM a worker drains: the running task completes and reports, then it deregisters and exits', async (t) => {
  const { plane, mgmt } = await setup(t, `name: slow\nsteps:\n  - {id: work, task: {service: Drain, type: slow}}\n`);
  const script = fileURLToPath(new URL('fixtures/draining-worker.js', import.meta.url));
  const child = spawn(process.execPath, [script, plane.address], { stdio: ['pipe', 'pipe', 'inherit'] });
  defer(t, () => child.exitCode === null && child.kill('SIGKILL'));
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const line = async () => (await deadline(lines.next(), WAIT_MS, 'a line from the worker')).value;

  assert.equal(await line(), 'ready');
  const id = await mgmt.workflow.start('slow', {});
  assert.equal(await line(), `started ${id}`);
  child.kill('SIGTERM');
  await until(
    async () => (await mgmt.registry.lookup('Drain', { includeUnhealthy: true })).length === 1,
    WAIT_MS,
    'the instance to stay registered while it drains',
  );
  child.stdin.write('finish\n');
  assert.equal(await line(), 'stopped');
  const [code] = await deadline(exited, WAIT_MS, 'the worker to exit');
  const final = await mgmt.workflow.wait(id);

  assert.equal(code, 0);
  assert.deepEqual([final.state, final.output], ['PROCESS_STATE_COMPLETED', { drained: true }]);
  assert.deepEqual(await mgmt.registry.lookup('Drain', { includeUnhealthy: true }), []);
});

test('a worker dropped by the registry registers again at once and goes on taking tasks', async (t) => {
  const { mgmt } = await setup(t, `name: one\nsteps:\n  - {id: work, task: {service: Dropped, type: work}}\n`);
  const logger = recordingLogger();
  const worker = await running(t, mgmt, { service: 'Dropped', instanceId: 'dropped-1', logger, handlers: { work: () => ({ ok: true }) } });
  let sessions = 0;
  const again = event();
  worker.on('ready', () => ++sessions === 1 && again.set());

  await mgmt.registry.deregister('Dropped', 'dropped-1'); // its task stream ends: NOT_REGISTERED
  await deadline(again.happened, WAIT_MS, 'the worker to subscribe again');
  const final = await deadline(mgmt.workflow.wait(await mgmt.workflow.start('one', {})), WAIT_MS, 'the process to end');

  assert.deepEqual(final.output, { ok: true });
  assert.deepEqual(
    (await mgmt.registry.lookup('Dropped')).map((i) => i.instanceId),
    ['dropped-1'],
  );
  assert.ok(
    logger.lines.some((l) => l.startsWith('WARN worker dropped-1: FAILED_PRECONDITION: ') && l.includes('registering again on')),
    logger.lines.join('\n'),
  );
});
