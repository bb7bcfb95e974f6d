// Several control-plane addresses, as tests/test_sdk_failover.py checks them for the Python SDK: the
// replicas are real `mgmt serve` child processes; a replica "goes away" by SIGKILL and the next one is
// the same store served again on the second address of the list (or on the same one).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connect, MgmtError, Unavailable, Worker } from '../dist/index.js';
import { CLOSED, deadline, defer, event, freeAddress, recordingLogger, startControlPlane, temporaryFolder } from './support.js';

const WAIT_MS = 30_000;

const THREE_STEPS = `
name: failover
steps:
${[1, 2, 3].map((n) => `  - {id: s${n}, task: {service: Failover, type: step}}`).join('\n')}
`;

test('a client whose first address refuses uses the next; a call not safe to repeat is not repeated', async (t) => {
  const live = await startControlPlane(t);
  const logger = recordingLogger();
  const mgmt = connect({ addresses: `${CLOSED}, ${live.address}`, logger });
  defer(t, () => mgmt.close());

  const services = await mgmt.registry.services(); // a read: retried on the live address
  const moved = mgmt.address;
  const other = connect({ addresses: [CLOSED, live.address], logger });
  defer(t, () => other.close());
  const refused = await other.bus.publish('orders.new', 'no id').catch((e) => e); // not retried
  const then = await other.bus.publish('orders.new', 'no id'); // the client moved on meanwhile
  const deduplicated = await other.bus.publish('orders.new', 'with id', { messageId: 'o-1' });
  const third = connect({ addresses: [CLOSED, live.address], logger });
  defer(t, () => third.close());
  const watch = await third.registry.watch(); // a stream opened on the live address
  watch.close();

  assert.deepEqual(services, []);
  assert.equal(moved, live.address);
  assert.ok(refused instanceof Unavailable && refused instanceof MgmtError, String(refused));
  assert.equal(refused.code, 14); // UNAVAILABLE, as a grpc-js ServiceError's code
  assert.deepEqual([then.sequence, deduplicated.sequence], [1, 2]);
  assert.equal(watch.revision, 0);
  const switches = logger.lines.filter((l) => l.includes('switching to'));
  assert.equal(switches.length, 3, logger.lines.join('\n')); // once per client, however many calls saw it
  assert.ok(switches.every((l) => l.startsWith(`WARN control plane ${CLOSED} unavailable`) && l.endsWith(`switching to ${live.address}`)));
});

test('a watch resumes on the next replica without missing a change', async (t) => {
  const data = temporaryFolder(t);
  const first = await startControlPlane(t, { dataDir: data });
  const addresses = [first.address, await freeAddress()];
  const mgmt = connect({ addresses, logger: recordingLogger() });
  defer(t, () => mgmt.close());

  await mgmt.registry.register({ service: 'svc', address: '127.0.0.1:7001', instanceId: 'a', ttlMs: 60_000, keepAlive: false });
  const watch = await mgmt.registry.watch('svc');
  const changes = watch[Symbol.asyncIterator]();
  await first.stop('SIGKILL');
  await startControlPlane(t, { dataDir: data, listen: addresses[1] });
  const b = await mgmt.registry.register({ service: 'svc', address: '127.0.0.1:7002', instanceId: 'b', ttlMs: 60_000, keepAlive: false });
  let change;
  while (!change) [change] = (await deadline(changes.next(), WAIT_MS, 'the change on the next replica')).value.changes;
  watch.close();

  assert.deepEqual(
    watch.snapshot.map((i) => i.instanceId),
    ['a'],
  );
  assert.deepEqual([change.instance.instanceId, change.revision], ['b', b.revision]);
  assert.equal(mgmt.address, addresses[1]);
});

/**
 * A Worker runs s1, then s2 while its control plane is killed; s2 finishes with no control plane
 * up, the next one starts on `next(addresses)`, and the Worker must deliver s2's report there
 * rather than run s2 again.
 */
async function reportAcrossARestart(t, { twoAddresses }) {
  const data = temporaryFolder(t);
  const first = await startControlPlane(t, { dataDir: data });
  const addresses = twoAddresses ? [first.address, await freeAddress()] : [first.address];
  const logger = recordingLogger();
  const runs = { s1: 0, s2: 0, s3: 0 };
  const inS2 = event();
  const release = event();
  const returning = event();
  const worker = new Worker({
    addresses,
    service: 'Failover',
    instanceId: 'failover-1',
    ttlMs: 5000,
    drainTimeoutMs: 1000,
    stopSignals: [],
    logger,
    handlers: {
      step: async (task) => {
        runs[task.stepId] += 1;
        if (task.stepId === 's2') {
          inS2.set();
          await release.happened;
          returning.set();
        }
        return { step: task.stepId };
      },
    },
  });
  const run = worker.run();
  defer(t, async () => {
    worker.stop();
    await deadline(run, WAIT_MS, 'the worker to stop');
  });
  const mgmt = connect({ addresses, logger: recordingLogger() });
  defer(t, () => mgmt.close());
  await mgmt.workflow.apply(THREE_STEPS);
  await deadline(worker.ready, WAIT_MS, 'the worker to be ready');
  const id = await mgmt.workflow.start('failover', {}, { businessKey: 'permit-1' });
  await deadline(inS2.happened, WAIT_MS, 's2 to start');

  await first.stop('SIGKILL');
  release.set(); // s2 finishes while no control plane runs: its report must wait
  await deadline(returning.happened, WAIT_MS, 's2 to return');
  const second = await startControlPlane(t, { dataDir: data, listen: addresses.at(-1) });
  await mgmt.waitReady({ timeoutMs: WAIT_MS }); // with one address, calls fail at once while it reconnects
  const final = await deadline(mgmt.workflow.wait(id), WAIT_MS, 'the process to end');
  const history = await mgmt.workflow.history(id);
  const instances = await mgmt.registry.lookup('Failover', { includeUnhealthy: true });

  assert.equal(second.address, addresses.at(-1));
  assert.equal(final.state, 'PROCESS_STATE_COMPLETED');
  const completed = history.filter((e) => e.type === 'HISTORY_EVENT_TYPE_STEP_COMPLETED').map((e) => e.stepId);
  assert.deepEqual(completed, ['s1', 's2', 's3']);
  assert.deepEqual(runs, { s1: 1, s2: 1, s3: 1 }); // s2's report was delivered, not its task run again
  assert.deepEqual(
    instances.map((i) => i.instanceId),
    ['failover-1'],
  ); // updated, not duplicated
  // s2's completion waited for the next control plane (with s1's, if its answer was lost with the first).
  const resent = /^INFO worker failover-1: sending [12] reports kept since the last stream broke$/;
  assert.ok(logger.lines.some((l) => resent.test(l)), logger.lines.join('\n'));
  return logger;
}

test('a worker moves to the next replica and sends the report its lost session could not have answered', async (t) => {
  const logger = await reportAcrossARestart(t, { twoAddresses: true });
  assert.ok(logger.lines.some((l) => l.includes('switching to')), logger.lines.join('\n'));
});

test('a worker with one address reconnects, with backoff, to its restarted control plane and resends its report', async (t) => {
  await reportAcrossARestart(t, { twoAddresses: false });
});

test('calls sent while a replica shuts down gracefully are answered by the next', async (t) => {
  // gRPC's core answers CANCELLED to calls that reach a server after its shutdown began but before a
  // handler took them (grpc/grpc#41785); such a call never ran, so the SDK takes it as UNAVAILABLE.
  const stopping = await startControlPlane(t);
  const standby = await startControlPlane(t);
  const mgmt = connect({ addresses: [stopping.address, standby.address], logger: recordingLogger() });
  defer(t, () => mgmt.close());
  const outcomes = new Map();
  const count = (key) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  const flowing = event();
  let movedToStandby = false;

  const readUntilMoved = async () => {
    // Reads are safe to repeat: the SDK sends them again on the next address.
    while (!movedToStandby) {
      try {
        await mgmt.registry.services();
      } catch (err) {
        count(`${err?.constructor?.name} ${err?.code}: ${err?.details ?? err}`); // every failure is a finding
        flowing.set();
        return;
      }
      count('answered');
      if (outcomes.get('answered') >= 100) flowing.set();
      if (mgmt.address === standby.address) movedToStandby = true;
    }
  };
  const readers = Array.from({ length: 50 }, readUntilMoved);
  await deadline(flowing.happened, WAIT_MS, 'calls flowing');
  await stopping.stop('SIGTERM');
  await deadline(Promise.all(readers), WAIT_MS, 'every reader on the standby');

  assert.deepEqual([...outcomes.keys()], ['answered'], JSON.stringify([...outcomes]));
  assert.ok(movedToStandby);
});
