// A replica that hangs rather than goes away, as tests/test_sdk_hung_replica.py checks it for the Python
// SDK: a real `mgmt serve` child process stopped with SIGSTOP keeps its socket open and answers nothing.
// Unary calls end at their deadline, streams once keepalive pings go unanswered; a read that finds
// its addresses refusing tries every one of them in turn.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connect, DEFAULT_CALL_TIMEOUT_MS, MgmtError, Unavailable, Worker } from '../dist/index.js';
import { deadline, defer, freeAddress, recordingLogger, sharedControlPlane } from './support.js';

const WAIT_MS = 20_000; // without a deadline (or keepalive) the call would never end

// One control plane for the file: a test hangs it and lets it go on (SIGCONT) when it ends, and none
// registers anything, so the next one finds it as it was.
const shared = sharedControlPlane();

/** Stop `plane` (SIGSTOP) until the test ends. */
function hang(t, plane) {
  plane.child.kill('SIGSTOP');
  defer(t, () => plane.child.kill('SIGCONT'));
}

test('a unary call to a hung replica ends at the default deadline', async (t) => {
  const plane = shared();
  const mgmt = connect({ addresses: plane.address, callTimeoutMs: 1000 });
  defer(t, () => mgmt.close());
  await mgmt.registry.services(); // connected

  hang(t, plane);
  const started = Date.now();
  const failed = await deadline(
    mgmt.registry.services().catch((e) => e),
    WAIT_MS,
    'the call to end',
  );

  assert.ok(failed instanceof MgmtError, String(failed));
  assert.equal(failed.code, 4); // DEADLINE_EXCEEDED
  assert.ok(Date.now() - started >= 900, `ended after ${Date.now() - started} ms, before its deadline`);
  assert.equal(DEFAULT_CALL_TIMEOUT_MS, 30_000);
});

test("a Worker made from addresses gives its client the call timeout it was given", async (t) => {
  const plane = shared();
  const worker = new Worker({ addresses: plane.address, service: 'Hung', handlers: {}, stopSignals: [], callTimeoutMs: 1000 });
  defer(t, () => worker.client.close());
  await worker.client.registry.services(); // connected

  hang(t, plane);
  const failed = await deadline(
    worker.client.registry.services().catch((e) => e),
    WAIT_MS,
    'the call to end',
  );

  assert.ok(failed instanceof MgmtError, String(failed));
  assert.equal(failed.code, 4); // DEADLINE_EXCEEDED
});

test('a watch on a hung replica ends once keepalive pings go unanswered', async (t) => {
  const plane = shared();
  const mgmt = connect({ addresses: plane.address, keepaliveTimeMs: 1000, keepaliveTimeoutMs: 1000, logger: recordingLogger() });
  defer(t, () => mgmt.close());
  const watch = await mgmt.registry.watch();
  defer(t, () => watch.close());
  const changes = watch[Symbol.asyncIterator]();

  hang(t, plane);
  const failed = await deadline(
    changes.next().catch((e) => e),
    WAIT_MS,
    'the watch to end',
  );

  assert.ok(failed instanceof Unavailable, String(failed));
});

test('a read tries every address until one answers', async (t) => {
  const live = shared();
  const addresses = [await freeAddress(), await freeAddress(), live.address]; // the first two refuse
  assert.equal(new Set(addresses).size, 3);
  const logger = recordingLogger();
  const mgmt = connect({ addresses, logger });
  defer(t, () => mgmt.close());

  const services = await mgmt.registry.services();

  assert.deepEqual(services, []);
  assert.equal(mgmt.address, live.address);
  assert.equal(logger.lines.filter((l) => l.includes('switching to')).length, 2, logger.lines.join('\n'));
});
