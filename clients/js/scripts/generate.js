#!/usr/bin/env node
// Regenerate src/gen from the contract (../../protos) and protos/ with ts-proto, run by the buf locked
// in tools/buf (buf.gen.yaml says how). `node scripts/generate.js [BASE]` writes BASE/src/gen instead,
// which is how the drift test compares a fresh generation with the committed one.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const base = resolve(process.argv[2] ?? root);
const buf = resolve(root, '..', '..', 'tools', 'buf', 'node_modules', '.bin', 'buf');
if (!existsSync(buf)) {
  console.error(`${buf} is missing: run \`make install\` (or npm ci --prefix tools/buf) first`);
  process.exit(1);
}
rmSync(join(base, 'src', 'gen'), { recursive: true, force: true }); // files of removed protos go too
execFileSync(buf, ['generate', '--template', 'buf.gen.yaml', '-o', base], { cwd: root, stdio: 'inherit' });
