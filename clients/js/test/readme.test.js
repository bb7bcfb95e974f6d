// The README's block with the design's two snippets (applyForPermit, getStatus) runs as written,
// as a user's module importing 'hms-mgmt', against a control plane with services/building_permit.yaml.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { connect } from '../dist/index.js';
import { defer, ROOT, startControlPlane, temporaryFolder } from './support.js';

const PACKAGE = fileURLToPath(new URL('..', import.meta.url));
const DOCUMENTED_ADDRESS = '127.0.0.1:50051';

function snippet() {
  const readme = readFileSync(join(PACKAGE, 'README.md'), 'utf8');
  const section = readme.split("## The design's two snippets")[1];
  const [, code] = /```js\n([\s\S]*?)```/.exec(section);
  return code;
}

test("the README's applyForPermit and getStatus start a building permit and report where it stands", async (t) => {
  const plane = await startControlPlane(t);
  const mgmt = connect({ addresses: [plane.address] });
  defer(t, () => mgmt.close());
  await mgmt.workflow.apply(readFileSync(join(ROOT, 'services', 'building_permit.yaml'), 'utf8'));
  const app = temporaryFolder(t);
  mkdirSync(join(app, 'node_modules'));
  symlinkSync(PACKAGE, join(app, 'node_modules', 'hms-mgmt')); // as `npm install` would link it
  const code = snippet();
  assert.ok(code.includes(`addresses: ['${DOCUMENTED_ADDRESS}']`));
  writeFileSync(join(app, 'permit.mjs'), code.replaceAll(DOCUMENTED_ADDRESS, plane.address));

  const { stdout } = await promisify(execFile)(process.execPath, ['permit.mjs'], { cwd: app, timeout: 20_000 });

  const [, processId] = /^([0-9a-f-]{36}) PROCESS_STATE_RUNNING \[ 'validate' \]\n$/.exec(stdout) ?? [];
  assert.ok(processId, stdout);
  const started = await mgmt.workflow.get(processId);
  assert.deepEqual([started.definition, started.input.applicant], ['building_permit', 'Ada Lovelace']);
});
