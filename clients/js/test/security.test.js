// TLS and bearer tokens through a real control plane (`mgmt serve --tls-cert ... --tokens ...`): the
// certificates come from tests/certs.py, the tokens file is tests/test_security.py's shape.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { connect, PermissionDenied, Unauthenticated, Unavailable, Worker } from '../dist/index.js';
import { deadline, defer, recordingLogger, ROOT, startControlPlane, temporaryFolder } from './support.js';

const ADMIN = 'admin-7f3c2a';
const CLIENT = 'client-91bd04';
const WORKER = 'worker-c55e18';
const PYTHON = process.env.MGMT_PYTHON || join(ROOT, '.venv', 'bin', 'python');

async function securePlane(t) {
  const folder = temporaryFolder(t);
  execFileSync(PYTHON, ['-c', 'import sys, pathlib; from tests.certs import make_certs; make_certs(pathlib.Path(sys.argv[1]))', folder], {
    cwd: ROOT,
  });
  const tokens = join(folder, 'tokens.yaml');
  writeFileSync(
    tokens,
    `tokens:\n  - {token: "${ADMIN}", role: admin, name: ops}\n  - {token: "${CLIENT}", role: client, name: web}\n` +
      `  - {token: "${WORKER}", role: worker, name: payments, services: [payments]}\n`,
  );
  chmodSync(tokens, 0o600);
  const extra = ['--tls-cert', join(folder, 'server.pem'), '--tls-key', join(folder, 'server-key.pem'), '--tokens', tokens];
  const plane = await startControlPlane(t, { extra });
  return { plane, ca: readFileSync(join(folder, 'ca.pem')) };
}

function client(t, options) {
  const mgmt = connect({ logger: recordingLogger(), ...options });
  defer(t, () => mgmt.close());
  return mgmt;
}

test('over TLS each token may do what its role allows, and a worker token serves its own service', async (t) => {
  const { plane, ca } = await securePlane(t);
  const addresses = [plane.address];
  const admin = client(t, { addresses, tls: { ca }, token: ADMIN });
  const web = client(t, { addresses, tls: { ca }, token: CLIENT });
  const anonymous = client(t, { addresses, tls: { ca } });
  const plaintext = client(t, { addresses, token: ADMIN });

  await admin.workflow.apply('name: pay\nsteps:\n  - {id: charge, task: {service: payments, type: charge}}\n');
  const worker = new Worker({
    addresses,
    tls: { ca },
    token: WORKER,
    service: 'payments',
    stopSignals: [],
    logger: recordingLogger(),
    handlers: { charge: () => ({ receipt: 'r-1' }) },
  });
  const run = worker.run();
  defer(t, async () => {
    worker.stop();
    await deadline(run, 10_000, 'the worker to stop');
  });
  await deadline(worker.ready, 10_000, 'the worker to be ready');
  const id = await web.workflow.start('pay', {});
  const final = await deadline(web.workflow.wait(id), 10_000, 'the process to end');
  const refused = await web.workflow.apply('name: other\nsteps: []\n').catch((e) => e);
  const outside = await client(t, { addresses, tls: { ca }, token: WORKER })
    .registry.register({ service: 'billing', address: '127.0.0.1:7000', keepAlive: false })
    .catch((e) => e);
  const unauthenticated = await anonymous.registry.services().catch((e) => e);
  const notTls = await plaintext.registry.services().catch((e) => e);

  assert.deepEqual([final.state, final.output], ['PROCESS_STATE_COMPLETED', { receipt: 'r-1' }]);
  assert.ok(refused instanceof PermissionDenied, String(refused));
  assert.ok(outside instanceof PermissionDenied, String(outside));
  assert.ok(unauthenticated instanceof Unauthenticated, String(unauthenticated));
  assert.ok(notTls instanceof Unavailable, String(notTls));
});
