// gRPC's Node xDS client (@grpc/grpc-js with @grpc/grpc-js-xds) against the control plane's xDS.
// Same protocol as tests/xds_client.py: JSON commands on stdin, JSON answers on stdout.
//   {"calls": N, "concurrency": C}  -> {"results": [[t, who_or_error], ...]}
//   {"run_s": S}                    -> {"started": true}, later {"results": [...]}
// t is seconds on the monotonic clock (process.hrtime), comparable with Python's time.monotonic().
'use strict';
const grpc = require('@grpc/grpc-js');
const xds = require('@grpc/grpc-js-xds');
const readline = require('node:readline');

xds.register();
const target = process.argv[2] || 'xds:///EchoService';
const identity = (b) => b;
const Echo = grpc.makeGenericClientConstructor({
  Echo: {
    path: '/hms.test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
}, 'Echo');
const client = new Echo(target, grpc.credentials.createInsecure());
const now = () => Number(process.hrtime.bigint()) / 1e9;
const emit = (message) => process.stdout.write(JSON.stringify(message) + '\n');

function call(options = {}) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    client.Echo(Buffer.alloc(0), { deadline, ...options }, (error, answer) => {
      if (error) resolve([now(), '!' + grpc.status[error.code], error.details]);
      else resolve([now(), answer.toString()]);
    });
  });
}

async function batch(total, width) {
  const results = [];
  for (let start = 0; start < total; start += width) {
    const n = Math.min(width, total - start);
    results.push(...(await Promise.all(Array.from({ length: n }, () => call()))));
  }
  return results;
}

async function main() {
  const ready = await call({ waitForReady: true, deadline: new Date(Date.now() + 30000) });
  if (ready[1].startsWith("!")) throw new Error(`not ready: ${ready[1]} ${ready[2]}`);
  emit({ ready: true });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line);
    if (command.run_s !== undefined) {
      emit({ started: true });
      const results = [];
      const end = now() + command.run_s;
      while (now() < end) results.push(...(await batch(4, 4)));
      emit({ results });
    } else {
      emit({ results: await batch(command.calls, command.concurrency || 16) });
    }
  }
  client.close();
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack || error) + '\n');
  process.exit(1);
});
