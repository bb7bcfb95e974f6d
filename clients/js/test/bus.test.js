// mgmt.bus against a real control plane: publish, publishMany, subscribe (an async iterator of
// messages settled with ack, nack, inProgress and term).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AckResult, connect, InvalidArgument } from '../dist/index.js';
import { deadline, defer, startControlPlane } from './support.js';

async function client(t) {
  const plane = await startControlPlane(t);
  const mgmt = connect({ addresses: [plane.address] });
  defer(t, () => mgmt.close());
  return mgmt;
}

/** The next `count` messages of a subscription, with a deadline. */
async function take(iterator, count) {
  const messages = [];
  while (messages.length < count) {
    const next = await deadline(iterator.next(), 10_000, `message ${messages.length + 1} of ${count}`);
    assert.equal(next.done, false, 'the subscription ended');
    messages.push(next.value);
  }
  return messages;
}

test('published objects, text and bytes arrive with their metadata and are acked once', async (t) => {
  const mgmt = await client(t);
  const subscription = await mgmt.bus.subscribe('orders.>', { durable: 'audit', explicitAck: true });
  defer(t, () => subscription.close());
  const messages = subscription[Symbol.asyncIterator]();

  const first = await mgmt.bus.publish('orders.eu.new', { id: 17, total: 12.5 }, { headers: { tenant: 'acme' } });
  const again = await mgmt.bus.publish('orders.eu.new', 'second', { messageId: 'o-2' });
  const duplicate = await mgmt.bus.publish('orders.eu.new', 'second', { messageId: 'o-2' });
  await mgmt.bus.publish('orders.us.new', new Uint8Array([0, 255]), { contentType: 'application/octet-stream' });
  const [json, text, bytes] = await take(messages, 3);
  const acks = await Promise.all([json.ack(), text.ack(), bytes.ack()]); // settled together, in one Ack request
  const twice = await json.ack();

  assert.deepEqual(json.json(), { id: 17, total: 12.5 });
  assert.deepEqual([json.contentType, json.headers, json.subject], ['application/json', { tenant: 'acme' }, 'orders.eu.new']);
  assert.deepEqual([json.sequence, json.subjectSequence, json.attempt, json.consumer], [first.sequence, 1, 1, 'audit']);
  assert.deepEqual([text.text(), text.messageId, text.sequence], ['second', 'o-2', again.sequence]);
  assert.deepEqual([duplicate.duplicate, duplicate.sequence], [true, again.sequence]);
  assert.deepEqual([...bytes.data], [0, 255]);
  assert.ok(json.publishedAt instanceof Date);
  assert.deepEqual(acks, [AckResult.ACK_RESULT_ACCEPTED, AckResult.ACK_RESULT_ACCEPTED, AckResult.ACK_RESULT_ACCEPTED]);
  assert.equal(twice, AckResult.ACK_RESULT_ALREADY_ACKED);
  assert.equal((await mgmt.bus.consumerInfo('audit')).numAckPending, 0);
});

test('nack redelivers, inProgress keeps a delivery, term sends it to the dead letters', async (t) => {
  const mgmt = await client(t);
  const subscription = await mgmt.bus.subscribe('jobs.*', { explicitAck: true, ackWaitMs: 60_000 });
  defer(t, () => subscription.close());
  const dead = await mgmt.bus.subscribe(`$DLQ.${subscription.consumer}`);
  defer(t, () => dead.close());
  const messages = subscription[Symbol.asyncIterator]();

  await mgmt.bus.publishMany([
    { subject: 'jobs.retry', data: 'r' },
    { subject: 'jobs.slow', data: 's' },
    { subject: 'jobs.poison', data: 'p' },
  ]);
  const [retry, slow, poison] = await take(messages, 3);
  const results = [await retry.nack({ delayMs: 0 }), await slow.inProgress(), await poison.term('cannot parse')];
  const [redelivered] = await take(messages, 1);
  const [letter] = await take(dead[Symbol.asyncIterator](), 1);

  assert.deepEqual(results, ['ACK_RESULT_ACCEPTED', 'ACK_RESULT_ACCEPTED', 'ACK_RESULT_ACCEPTED']);
  assert.deepEqual([redelivered.subject, redelivered.attempt, redelivered.sequence], ['jobs.retry', 2, retry.sequence]);
  assert.equal(letter.text(), 'p');
  assert.equal(letter.headers['hms-dlq-reason'], 'terminated: cannot parse');
  assert.equal(letter.headers['hms-dlq-subject'], 'jobs.poison');
  assert.equal(await slow.ack(), 'ACK_RESULT_ACCEPTED');
});

test('publishMany stores batch by batch; a refused batch names the message at fault and stops there', async (t) => {
  const mgmt = await client(t);
  const good = Array.from({ length: 5 }, (_, i) => ({ subject: 'metrics.cpu', data: { i } }));

  const sequences = await mgmt.bus.publishMany(good, { batchSize: 2 });
  const refused = await mgmt.bus
    .publishMany([...good, { subject: 'metrics..bad', data: 'x' }, ...good], { batchSize: 2 })
    .catch((e) => e);
  const [subject] = await mgmt.bus.subjects('metrics.>');

  assert.deepEqual(sequences, [1, 2, 3, 4, 5]);
  assert.ok(refused instanceof InvalidArgument, String(refused));
  assert.deepEqual(
    refused.violations.map((v) => v.field),
    ['messages[5].subject'],
  );
  // The first run, and the two batches before the refused one (messages 4 and 5 shared it).
  assert.equal(subject.messages, 9);
});
