// mgmt.registry against a real control plane: register keeps the lease alive and deregisters on
// close, lookup, watch (an async iterator that resumes by revision).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connect, HealthStatus } from '../dist/index.js';
import { deadline, defer, recordingLogger, startControlPlane, until } from './support.js';

async function client(t, options = {}) {
  const plane = await startControlPlane(t);
  const mgmt = connect({ addresses: [plane.address], ...options });
  defer(t, () => mgmt.close());
  return mgmt;
}

/** The next frame of a watch that has changes, with a deadline. */
async function nextChanges(iterator) {
  for (;;) {
    const next = await deadline(iterator.next(), 10_000, 'a registry change');
    assert.equal(next.done, false, 'the watch ended');
    if (next.value.changes.length) return next.value.changes;
  }
}

test('a registration renews its lease until closed, then the instance is deregistered', async (t) => {
  const mgmt = await client(t);
  const watch = await mgmt.registry.watch('billing');
  const changes = watch[Symbol.asyncIterator]();

  const registration = await mgmt.registry.register({
    service: 'billing',
    address: '127.0.0.1:7001',
    instanceId: 'billing-1',
    version: '2.1.0',
    tags: ['zone-a'],
    metadata: { owner: 'payments' },
    ttlMs: 1000,
    renewEveryMs: 50,
  });
  const granted = registration.lease.expiresAt.getTime();
  const [up] = await nextChanges(changes);
  // A renewal pushes the expiry on.
  await until(() => registration.lease.expiresAt.getTime() > granted, 10_000, 'the lease to be renewed');
  const [instance] = await mgmt.registry.lookup('billing', { tags: ['zone-a'], version: '>=2.0,<3' });
  await registration.close();
  const [down] = await nextChanges(changes);
  const after = await mgmt.registry.lookup('billing', { includeUnhealthy: true });
  watch.close();

  assert.deepEqual([up.type, up.instance.instanceId], ['CHANGE_TYPE_UP', 'billing-1']);
  assert.deepEqual(
    [instance.instanceId, instance.version, instance.tags, instance.metadata, instance.health],
    ['billing-1', '2.1.0', ['zone-a'], { owner: 'payments' }, HealthStatus.HEALTH_STATUS_PASSING],
  );
  assert.deepEqual([down.type, down.reason], ['CHANGE_TYPE_DOWN', 'deregistered']);
  assert.deepEqual(after, []);
  assert.ok(Number.isSafeInteger(down.revision) && down.revision > up.revision);
});

test('a registration whose lease lapsed registers again under the same instance id', async (t) => {
  const logger = recordingLogger();
  const mgmt = await client(t, { logger });
  const registration = await mgmt.registry.register({
    service: 'billing',
    address: '127.0.0.1:7001',
    instanceId: 'billing-1',
    ttlMs: 5000,
    renewEveryMs: 50,
  });
  defer(t, () => registration.close({ deregister: false }));
  const watch = await mgmt.registry.watch('billing');
  const changes = watch[Symbol.asyncIterator]();

  const first = registration.lease.leaseId;
  await mgmt.registry.deregister('billing', 'billing-1'); // behind its back: its next renewal finds no lease
  const [down] = await nextChanges(changes);
  const [up] = await nextChanges(changes);
  watch.close();
  await until(() => registration.lease.leaseId !== first, 10_000, 'the registration to take its new lease');

  assert.deepEqual([down.type, down.instance.instanceId], ['CHANGE_TYPE_DOWN', 'billing-1']);
  assert.deepEqual([up.type, up.instance.instanceId], ['CHANGE_TYPE_UP', 'billing-1']);
  assert.equal(registration.lease.leaseId, up.instance.leaseId);
  assert.ok(logger.lines.some((l) => l.includes('the lease of billing/billing-1 lapsed; registering again')), logger.lines.join('\n'));
});

test('a watch gives a snapshot, then changes; one resumed after a revision gives what followed it, no snapshot', async (t) => {
  const mgmt = await client(t);
  const a = await mgmt.registry.register({ service: 'svc', address: '127.0.0.1:7001', instanceId: 'a', keepAlive: false });
  const watch = await mgmt.registry.watch('svc');
  const b = await mgmt.registry.register({ service: 'svc', address: '127.0.0.1:7002', instanceId: 'b', keepAlive: false });
  const [live] = await nextChanges(watch[Symbol.asyncIterator]());

  const resumed = await mgmt.registry.watch('svc', { afterRevision: a.revision });
  const [replayed] = await nextChanges(resumed[Symbol.asyncIterator]());
  resumed.close();
  const controller = new AbortController();
  const aborted = await mgmt.registry.watch('svc', { signal: controller.signal });
  const iterating = (async () => {
    for await (const frame of aborted) void frame;
  })();
  controller.abort();

  assert.deepEqual(
    watch.snapshot.map((i) => i.instanceId),
    ['a'],
  );
  assert.equal(live.instance.instanceId, 'b');
  assert.equal(live.revision, b.revision);
  assert.deepEqual(resumed.snapshot, []);
  assert.deepEqual([replayed.instance.instanceId, replayed.revision], ['b', b.revision]);
  assert.ok(resumed.revision >= b.revision);
  await assert.rejects(deadline(iterating, 5000, 'the aborted watch to end'), { name: 'AbortError' });
  assert.deepEqual(
    (await mgmt.registry.services()).map((s) => [s.name, s.instances]),
    [['svc', 2]],
  );
});
