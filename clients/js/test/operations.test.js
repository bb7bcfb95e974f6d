// mgmt.workflow's operator actions and search filters, and mgmt.schedules, against a real control plane
// (as tests/test_workflow_operations.py and tests/test_schedules.py check them for the Python SDK).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  connect,
  FailedPrecondition,
  IncidentFilter,
  InvalidArgument,
  NotFound,
  OverlapPolicy,
  TaskFailure,
  TriggerOutcome,
  Worker,
} from '../dist/index.js';
import { deadline, defer, recordingLogger, startControlPlane, until } from './support.js';

const WAIT_MS = 20_000;

// The payment service is down (for a while): the charge step opens an incident.
const INCIDENT = `
name: permit_ops
on_failure: incident
search_attributes: {region: "input.region"}
steps:
  - id: charge
    task: {service: Ops, type: charge}
    input: {amount: "input.cost"}
    retry: {max_attempts: 2, initial_interval: 10ms, max_interval: 20ms}
  - id: decide
    task: {service: Ops, type: decide}
    input: {receipt: "steps.charge.output.receipt"}
output: {receipt: "steps.decide.output.receipt"}
`;

async function setup(t) {
  const plane = await startControlPlane(t);
  const mgmt = connect({ addresses: [plane.address] });
  defer(t, () => mgmt.close());
  return mgmt;
}

/** A Worker for the Ops service whose charge fails while `payment.broken`. */
async function opsWorker(t, mgmt, payment) {
  const worker = new Worker({
    client: mgmt,
    service: 'Ops',
    stopSignals: [],
    logger: recordingLogger(),
    handlers: {
      charge: async (task) => {
        payment.inputs.push(task.input);
        if (payment.broken) throw new TaskFailure('PAYMENT_DOWN', 'the payment provider is unreachable');
        return { receipt: `r-${task.input.amount}` };
      },
      decide: async (task) => ({ receipt: task.input.receipt }),
    },
  });
  const run = worker.run();
  defer(t, async () => {
    worker.stop();
    await deadline(run, WAIT_MS, 'the worker to stop');
  });
  await deadline(Promise.race([worker.ready, run]), WAIT_MS, 'the worker to be ready');
}

/** Resolves once `stepId` of the process is in INCIDENT. */
async function untilIncident(mgmt, processId, stepId) {
  await until(
    async () => (await mgmt.workflow.get(processId)).steps.some((s) => s.stepId === stepId && s.state === 'STEP_STATE_INCIDENT'),
    WAIT_MS,
    `${stepId} to open an incident`,
  );
}

test('an incident is listed, found by the filters and repaired by retryStep with a new input', async (t) => {
  const mgmt = await setup(t);
  await mgmt.workflow.apply(INCIDENT);
  const payment = { broken: true, inputs: [] };
  await opsWorker(t, mgmt, payment);
  const id = await mgmt.workflow.start('permit_ops', { cost: 120, region: 'north' }, { businessKey: 'permit-7' });
  const other = await mgmt.workflow.start('permit_ops', { cost: 1, region: 'south' }, { businessKey: 'other-1' });

  await untilIncident(mgmt, id, 'charge');
  await untilIncident(mgmt, other, 'charge');
  const open = await mgmt.workflow.incidents({ processId: id });
  const ids = async (filters) => (await mgmt.workflow.list({ definition: 'permit_ops', ...filters })).map((p) => p.id).sort();
  const withIncidents = await ids({ incidents: IncidentFilter.INCIDENT_FILTER_WITH });
  const withoutIncidents = await ids({ incidents: IncidentFilter.INCIDENT_FILTER_WITHOUT });
  const byPrefix = await ids({ businessKeyPrefix: 'permit-' });
  const byStep = await ids({ currentStepId: 'charge' });
  const byAttribute = await ids({ searchAttributes: { region: 'north' } });
  payment.broken = false;
  const retried = await mgmt.workflow.retryStep(id, 'charge', 'provider is back', { input: { amount: 99 } });
  const done = await deadline(mgmt.workflow.wait(id), WAIT_MS, 'the process to end');
  const resolved = await mgmt.workflow.incidents({ processId: id, includeResolved: true });
  const again = await mgmt.workflow.retryStep(id, 'charge', 'twice').catch((e) => e);

  assert.deepEqual(
    open.map((i) => [i.processId, i.stepId, i.error.code]),
    [[id, 'charge', 'PAYMENT_DOWN']],
  );
  assert.deepEqual(withIncidents, [id, other].sort());
  assert.deepEqual(withoutIncidents, []);
  assert.deepEqual(byPrefix, [id]);
  assert.deepEqual(byStep, [id, other].sort());
  assert.deepEqual(byAttribute, [id]);
  assert.equal(retried.id, id);
  assert.equal(done.state, 'PROCESS_STATE_COMPLETED');
  assert.deepEqual(done.output, { receipt: 'r-99' });
  // Two failed attempts with the mapped input, then a fresh set with the replaced one.
  assert.deepEqual(
    payment.inputs.filter((i) => i.amount !== 1),
    [{ amount: 120 }, { amount: 120 }, { amount: 99 }],
  );
  assert.deepEqual(
    resolved.map((i) => [i.resolution, i.resolvedAt instanceof Date]),
    [['retried', true]],
  );
  assert.ok(again instanceof FailedPrecondition, String(again));
});

test('skipStep completes a step with its output; failProcess fails a process and retryProcess resumes it', async (t) => {
  const mgmt = await setup(t);
  await mgmt.workflow.apply(INCIDENT);
  const payment = { broken: true, inputs: [] };
  await opsWorker(t, mgmt, payment);
  const skipped = await mgmt.workflow.start('permit_ops', { cost: 5, region: 'east' });
  const failed = await mgmt.workflow.start('permit_ops', { cost: 6, region: 'west' });
  await untilIncident(mgmt, skipped, 'charge');
  await untilIncident(mgmt, failed, 'charge');

  await mgmt.workflow.skipStep(skipped, 'charge', 'paid at the desk', { output: { receipt: 'desk-1' } });
  const skippedDone = await deadline(mgmt.workflow.wait(skipped), WAIT_MS, 'the skipped process to end');
  const gaveUp = await mgmt.workflow.failProcess(failed, 'customer gone');
  const failedDone = await deadline(mgmt.workflow.wait(failed), WAIT_MS, 'the failed process to end');
  payment.broken = false;
  const resumed = await mgmt.workflow.retryProcess(failed, 'customer back');
  const resumedDone = await deadline(mgmt.workflow.wait(failed), WAIT_MS, 'the resumed process to end');
  const missing = await mgmt.workflow.skipStep(skipped, 'nope', 'no such step').catch((e) => e);

  assert.equal(skippedDone.state, 'PROCESS_STATE_COMPLETED');
  assert.deepEqual(skippedDone.output, { receipt: 'desk-1' });
  assert.equal(gaveUp.id, failed);
  assert.equal(failedDone.state, 'PROCESS_STATE_FAILED');
  assert.equal(resumed.state, 'PROCESS_STATE_RUNNING');
  assert.equal(resumedDone.state, 'PROCESS_STATE_COMPLETED');
  assert.deepEqual(resumedDone.output, { receipt: 'r-6' });
  assert.ok(missing instanceof InvalidArgument || missing instanceof FailedPrecondition || missing instanceof NotFound, String(missing));
});

const TICKS = `
name: ticks
steps:
  - {id: nap, sleep: 10ms}
`;

test('a schedule through mgmt.schedules: create, fire, pause, trigger once per request id, unpause, list, delete', async (t) => {
  const mgmt = await setup(t);
  await mgmt.workflow.apply(TICKS);

  const created = await mgmt.schedules.create('ticker', 'ticks', { n: 1 }, { everyMs: 1000, overlap: 'allow_all', note: 'by the test' });
  await until(async () => (await mgmt.schedules.get('ticker')).started >= 1, WAIT_MS, 'the schedule to fire');
  const paused = await mgmt.schedules.pause('ticker', { note: 'maintenance' });
  const triggered = await mgmt.schedules.trigger('ticker', { requestId: 'once' });
  const again = await mgmt.schedules.trigger('ticker', { requestId: 'once' });
  const process = await mgmt.workflow.get(triggered.processId);
  const resumed = await mgmt.schedules.unpause('ticker');
  const cron = await mgmt.schedules.create('nightly', 'ticks', {}, { cron: '0 2 * * *', timeZone: 'Europe/Paris', paused: true });
  const listed = await mgmt.schedules.list();
  await mgmt.schedules.delete('ticker');
  const gone = await mgmt.schedules.get('ticker').catch((e) => e);
  const badCron = await mgmt.schedules.create('bad', 'ticks', {}, { cron: '0 25 * * *' }).catch((e) => e);
  const badOverlap = await mgmt.schedules.create('bad', 'ticks', {}, { everyMs: 1000, overlap: 'sometimes' }).catch((e) => e);

  assert.equal(created.id, 'ticker');
  assert.equal(created.overlap, OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL);
  assert.deepEqual(created.spec.interval, { seconds: 1, nanos: 0 });
  assert.equal(created.note, 'by the test');
  assert.ok(created.nextNominalTime instanceof Date);
  assert.deepEqual([paused.paused, paused.note], [true, 'maintenance']);
  assert.equal(triggered.outcome, TriggerOutcome.TRIGGER_OUTCOME_STARTED);
  assert.equal(again.processId, triggered.processId);
  assert.equal(process.businessKey, 'schedule:ticker:trigger:once');
  assert.deepEqual(process.input, { n: 1 });
  assert.equal(resumed.paused, false);
  assert.deepEqual([cron.spec.cron, cron.spec.timeZone, cron.paused], ['0 2 * * *', 'Europe/Paris', true]);
  assert.deepEqual(
    listed.map((s) => s.id),
    ['nightly', 'ticker'],
  );
  assert.ok(gone instanceof NotFound, String(gone));
  assert.ok(badCron instanceof InvalidArgument, String(badCron));
  assert.ok(badOverlap instanceof TypeError, String(badOverlap));
});
