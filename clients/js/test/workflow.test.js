// mgmt.workflow against a real control plane: start, status, get, watch, wait, signal, cancel,
// history, apply; typed errors; payloads as plain objects with their integers intact.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connect, FINAL_STATES, InvalidArgument, NotFound, ProcessState } from '../dist/index.js';
import { deadline, defer, event, sharedControlPlane } from './support.js';

const APPROVAL = `
name: approval
input_schema:
  type: object
  required: [amount]
  properties: {amount: {type: integer}}
steps:
  - id: decide
    wait_signal: {name: decision, timeout: 1h}
output: {approved: "steps.decide.output.approved", amount: "input.amount", biggest: "input.biggest"}
`;

// Each test keeps to its own processes (and business key): one control plane serves them all.
const plane = sharedControlPlane();

async function client(t) {
  const mgmt = connect({ addresses: [plane().address] });
  defer(t, () => mgmt.close());
  await mgmt.workflow.apply(APPROVAL);
  return mgmt;
}

test('a process started with a plain object runs, takes a signal and ends with its integers intact', async (t) => {
  const mgmt = await client(t);

  const id = await mgmt.workflow.start('approval', { amount: 12, biggest: Number.MAX_SAFE_INTEGER, nested: { at: new Date(0) } });
  const running = await mgmt.workflow.status(id);
  const first = await mgmt.workflow.signal(id, 'decision', { approved: true }, { signalId: 'decision-1' });
  const again = await mgmt.workflow.signal(id, 'decision', { approved: false }, { signalId: 'decision-1' });
  const final = await deadline(mgmt.workflow.wait(id), 10_000, 'the process to end');
  const process = await mgmt.workflow.get(id);
  const history = await mgmt.workflow.history(id);

  assert.equal(typeof id, 'string');
  assert.deepEqual(
    [running.state, running.final, running.currentStepIds],
    [ProcessState.PROCESS_STATE_RUNNING, false, ['decide']],
  );
  assert.deepEqual([first.buffered, first.duplicate, again.duplicate], [false, false, true]);
  assert.equal(final.state, 'PROCESS_STATE_COMPLETED');
  assert.deepEqual(final.output, { approved: true, amount: 12, biggest: 9007199254740991 });
  assert.ok(Number.isSafeInteger(final.output.biggest));
  assert.deepEqual(process.input, { amount: 12, biggest: 9007199254740991, nested: { at: '1970-01-01T00:00:00.000Z' } });
  assert.deepEqual(
    process.steps.map((s) => [s.stepId, s.state, s.output]),
    [['decide', 'STEP_STATE_COMPLETED', { approved: true }]],
  );
  // int64 sequences come out as numbers, 1, 2, 3, ... without gaps.
  assert.deepEqual(
    history.map((e) => e.sequence),
    history.map((_, i) => i + 1),
  );
  assert.equal(history.at(-1).type, 'HISTORY_EVENT_TYPE_PROCESS_COMPLETED');
  assert.equal(process.lastEventSequence, history.length);
});

test('watch gives the history, then live events, then the final process; it resumes after a sequence', async (t) => {
  const mgmt = await client(t);
  const id = await mgmt.workflow.start('approval', { amount: 1 });

  const frames = [];
  const first = event();
  const watching = (async () => {
    for await (const frame of mgmt.workflow.watch(id)) {
      frames.push(frame);
      first.set();
    }
  })();
  // Signalled once the watch has answered: sent earlier, it may end the process before the watch
  // starts (its first frame is then already final).
  await deadline(Promise.race([first.happened, watching]), 10_000, 'the first frame of the watch');
  await mgmt.workflow.signal(id, 'decision', { approved: false });
  await deadline(watching, 10_000, 'the watch to end');
  const events = frames.flatMap((f) => f.events);
  const resumed = [];
  for await (const frame of mgmt.workflow.watch(id, { afterSequence: events.length - 1 })) resumed.push(...frame.events);

  assert.equal(frames[0].process.state, 'PROCESS_STATE_RUNNING');
  assert.ok(FINAL_STATES.has(frames.at(-1).process.state));
  assert.deepEqual(
    events.map((e) => e.sequence),
    events.map((_, i) => i + 1),
  );
  assert.ok(events.some((e) => e.type === 'HISTORY_EVENT_TYPE_SIGNAL_RECEIVED' && e.details.name === 'decision'));
  assert.deepEqual(
    resumed.map((e) => e.sequence),
    [events.length],
  );
});

test('a business key names one process; cancel ends it with its reason', async (t) => {
  const mgmt = await client(t);

  const id = await mgmt.workflow.start('approval', { amount: 3 }, { businessKey: 'permit-7' });
  const same = await mgmt.workflow.start('approval', { amount: 4 }, { businessKey: 'permit-7' });
  const cancelled = await mgmt.workflow.cancel(id, { reason: 'withdrawn' });
  const listed = await mgmt.workflow.list({ businessKey: 'permit-7' });

  assert.equal(same, id);
  assert.deepEqual([cancelled.state, cancelled.cancelReason], ['PROCESS_STATE_CANCELLED', 'withdrawn']);
  assert.deepEqual(
    listed.map((p) => p.id),
    [id],
  );
  assert.equal((await mgmt.workflow.wait(id)).state, 'PROCESS_STATE_CANCELLED');
});

test('errors are typed and carry the field violations', async (t) => {
  const mgmt = await client(t);

  const missing = await mgmt.workflow.start('approval', { amount: 'twelve' }).catch((e) => e);
  const unknown = await mgmt.workflow.get('no-such-process').catch((e) => e);
  const badDefinition = await mgmt.workflow
    .apply('name: broken\nsteps:\n  - id: a\n    task: {service: S, type: t}\n    retry: {backoff: -1}\n')
    .catch((e) => e);

  assert.ok(missing instanceof InvalidArgument, String(missing));
  assert.equal(missing.code, 3); // grpc status INVALID_ARGUMENT, as on a grpc-js ServiceError
  assert.equal(missing.codeName, 'INVALID_ARGUMENT');
  assert.deepEqual(
    missing.violations.map((v) => v.field),
    ['input.amount'],
  );
  assert.ok(unknown instanceof NotFound, String(unknown));
  assert.ok(badDefinition instanceof InvalidArgument, String(badDefinition));
  assert.ok(badDefinition.violations.some((v) => v.field.startsWith('steps[0].retry.backoff')), JSON.stringify(badDefinition.violations));
});

test('payloads refuse what JSON cannot carry exactly, before any call', async (t) => {
  const mgmt = await client(t);

  await assert.rejects(mgmt.workflow.start('approval', { amount: 2n ** 60n }), RangeError);
  await assert.rejects(mgmt.workflow.start('approval', { amount: Number.NaN }), RangeError);
  await assert.rejects(mgmt.workflow.start('approval', [1, 2]), TypeError);
  const id = await mgmt.workflow.start('approval', { amount: 5n, dropped: undefined });
  assert.deepEqual((await mgmt.workflow.get(id)).input, { amount: 5 });
});
