// Test support: real control planes as child processes (`python -m control_plane serve`), as
// tests/conftest.py's ServerProcess starts them, and deadlines for waiting on events.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
const PYTHON = process.env.MGMT_PYTHON || join(ROOT, '.venv', 'bin', 'python');
const READY = /mgmt listening on (\S+)/;
// A deadline, not a wait: a start takes ~1 s alone, but the first of a fresh clone (cold page cache) beside
// lint and the PostgreSQL pass on a loaded 2-core CI machine once took more than 20 s.
const START_TIMEOUT_MS = 60_000;

/** `python -m control_plane serve` on `listen` with `dataDir`; resolves once it logs where it listens. */
export class ControlPlane {
  constructor(dataDir, listen = '127.0.0.1:0', extra = []) {
    this.dataDir = dataDir;
    this.listen = listen;
    this.extra = extra;
    this.address = '';
    this.log = [];
    this.child = undefined;
  }

  start() {
    this.child = spawn(PYTHON, ['-m', 'control_plane', 'serve', '--listen', this.listen, '--http-listen', '127.0.0.1:0', '--data-dir', this.dataDir, ...this.extra], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
    });
    this.exited = new Promise((done) => this.child.once('exit', (code, signal) => done(signal ?? code)));
    return deadline(
      new Promise((ready, failed) => {
        let buffered = '';
        this.child.stderr.setEncoding('utf8');
        this.child.stderr.on('data', (text) => {
          this.log.push(text);
          buffered += text;
          const match = READY.exec(buffered);
          if (match && !this.address) {
            this.address = match[1];
            ready(this.address);
          }
        });
        this.exited.then((status) => failed(new Error(`control plane exited (${status}) before it was ready:\n${this.log.join('')}`)));
      }),
      START_TIMEOUT_MS,
      'the control plane to start',
    );
  }

  /** Send `signal` and wait for the exit. */
  async stop(signal = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return deadline(this.exited, 10_000, 'the control plane to stop');
  }
}

const cleanups = new WeakMap();

/** Run `action` when the test ends, after whatever was deferred later (last in, first out). */
export function defer(t, action) {
  let stack = cleanups.get(t);
  if (!stack) {
    stack = [];
    cleanups.set(t, stack);
    t.after(async () => {
      while (stack.length) await stack.pop()();
    });
  }
  stack.push(action);
}

/**
 * A control plane for one test, stopped (SIGKILL) when the test ends. Options: `listen` (default
 * 127.0.0.1:0), `dataDir` (default a fresh temporary folder), `extra` flags.
 */
export async function startControlPlane(t, { listen, dataDir, extra } = {}) {
  const plane = new ControlPlane(dataDir ?? temporaryFolder(t), listen, extra);
  defer(t, () => plane.stop('SIGKILL'));
  await plane.start();
  return plane;
}

/**
 * One control plane for every test of a file, started before the first and stopped (SIGKILL) after the
 * last; returns a function that gives it. For files whose tests keep to what they made themselves (their
 * own processes, keys, registrations), so none needs a fresh one: a start costs about 2.5 s of CPU
 * (`mgmt serve`'s imports), most of what such a test costs.
 */
export function sharedControlPlane() {
  let plane;
  let folder;
  before(async () => {
    folder = mkdtempSync(join(tmpdir(), 'hms-mgmt-js-'));
    plane = new ControlPlane(folder);
    await plane.start();
  });
  after(async () => {
    if (plane?.child) await plane.stop('SIGKILL');
    if (folder) rmSync(folder, { recursive: true, force: true });
  });
  return () => plane;
}

/** A temporary folder removed when the test ends. */
export function temporaryFolder(t) {
  const folder = mkdtempSync(join(tmpdir(), 'hms-mgmt-js-'));
  defer(t, () => rmSync(folder, { recursive: true, force: true }));
  return folder;
}

/**
 * A loopback address nothing listens on now (a control plane is started there later). Chosen below
 * the kernel's ephemeral range (32768-60999 on Linux), as tests/ports.py does: servers that bind
 * port 0 in tests running beside these cannot take it before the control plane binds it.
 */
export async function freeAddress() {
  for (let tries = 0; tries < 200; tries += 1) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const free = await new Promise((done) => {
      const probe = createServer();
      probe.once('error', () => done(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => done(true)));
    });
    if (free) return `127.0.0.1:${port}`;
  }
  throw new Error('no free port between 20000 and 32000');
}

/** Nothing listens there: connections are refused at once. */
export const CLOSED = '127.0.0.1:1';

/** `promise`, or a rejection naming `what` after `ms`. */
export function deadline(promise, ms, what = 'the event') {
  let timer;
  const late = new Promise((_, failed) => {
    timer = setTimeout(() => failed(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A promise with its resolve function, for one event. */
export function event() {
  let set;
  const happened = new Promise((resolve) => (set = resolve));
  return { happened, set };
}

/** A logger that keeps every line, for assertions. */
export function recordingLogger() {
  const lines = [];
  return { lines, warn: (m) => lines.push(`WARN ${m}`), info: (m) => lines.push(`INFO ${m}`) };
}

/**
 * Resolve once `predicate()` holds (checked every 10 ms), or reject after `ms`. Polls on purpose, for
 * state only known by asking (a lookup, a lease the SDK renews behind the test's back); where an
 * event marks the moment (a handler reached, a message), wait on it with `deadline` instead.
 */
export function until(predicate, ms, what) {
  return deadline(
    (async () => {
      while (!(await predicate())) await new Promise((r) => setTimeout(r, 10));
    })(),
    ms,
    what,
  );
}
