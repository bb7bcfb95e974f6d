// The committed TypeScript (src/gen) is exactly what protos/ generate, and the committed JavaScript
// (dist/) exactly what the sources compile to: nothing stale, nothing edited by hand (`make proto`
// regenerates both).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { temporaryFolder } from './support.js';

const PACKAGE = fileURLToPath(new URL('..', import.meta.url));

function files(folder) {
  return readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(folder, join(entry.parentPath ?? entry.path, entry.name)))
    .sort();
}

function assertSameTree(fresh, committed, fix) {
  assert.deepEqual(files(committed), files(fresh), `files differ from a fresh build: ${fix}`);
  const stale = files(fresh).filter((name) => !readFileSync(join(fresh, name)).equals(readFileSync(join(committed, name))));
  assert.deepEqual(stale, [], `stale or edited by hand: ${fix}`);
}

test('src/gen is what ts-proto generates from protos/, and dist/ is what tsc makes of src/', (t) => {
  const fresh = temporaryFolder(t);

  execFileSync(process.execPath, [join(PACKAGE, 'scripts', 'generate.js'), fresh], { cwd: PACKAGE, stdio: 'inherit' });
  assertSameTree(join(fresh, 'src', 'gen'), join(PACKAGE, 'src', 'gen'), 'run `make proto`');
  const tsc = join(PACKAGE, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json', '--outDir', join(fresh, 'dist')], { cwd: PACKAGE, stdio: 'inherit' });
  assertSameTree(join(fresh, 'dist'), join(PACKAGE, 'dist'), 'run `make proto` (or npm run build in clients/js)');
});
