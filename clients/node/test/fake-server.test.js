'use strict';
// The client against an in-process grpc-js server of the same contract: the API key on the
// wire, ErrorInfo decoding, cancellation reaching the server, retries and deadlines. These
// need no mesh, so they run anywhere `npm test` does.

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const grpc = require('@grpc/grpc-js');

const {
  Cancelled, Client, DeadlineExceeded, NotFound, ServemeshError, Unauthenticated, decodeErrorInfo,
} = require('..');
const { googleRpc, servemeshV1 } = require('../lib/protos');

const KEY = 'test-key';

/** A status trailer with one ErrorInfo, as servemesh servers send it (AIP-193). */
function statusWithErrorInfo(code, message, reason, metadata) {
  const { Status, ErrorInfo } = googleRpc();
  const info = ErrorInfo.encode({ reason, domain: 'servemesh', metadata }).finish();
  const status = Status.encode({
    code,
    message,
    details: [{ type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: info }],
  }).finish();
  const trailers = new grpc.Metadata();
  trailers.set('grpc-status-details-bin', Buffer.from(status));
  return { code, details: message, metadata: trailers };
}

const seen = { streamsCancelled: 0, predictAttempts: 0 };
let server;
let address;

function predict(call, callback) {
  const auth = call.metadata.get('authorization')[0];
  if (auth !== `Bearer ${KEY}`) {
    callback(statusWithErrorInfo(grpc.status.UNAUTHENTICATED, 'no key', 'API_KEY_MISSING', {}));
    return;
  }
  const { model } = call.request;
  if (model === 'flaky') {
    // UNAVAILABLE twice, then an answer: gRPC's retry policy should hide the first two.
    seen.predictAttempts += 1;
    if (seen.predictAttempts < 3) {
      callback({ code: grpc.status.UNAVAILABLE, details: 'not yet' });
      return;
    }
  }
  if (model === 'slow') return; // never answers: only a deadline or a cancel ends the call
  if (model === 'contradicts') {
    // A trailer whose code differs from the status line's: the status line wins.
    const error = statusWithErrorInfo(grpc.status.NOT_FOUND, 'x', 'MODEL_NOT_FOUND', {});
    callback({ ...error, code: grpc.status.INTERNAL });
    return;
  }
  if (model !== 'echo' && model !== 'flaky') {
    callback(statusWithErrorInfo(grpc.status.NOT_FOUND, `no model ${model}`, 'MODEL_NOT_FOUND', {
      model,
    }));
    return;
  }
  callback(null, {
    requestId: 'r1',
    model,
    textGeneration: {
      text: call.request.textGeneration.prompt,
      finishReason: 'FINISH_REASON_LENGTH',
      usage: { promptTokens: 1, completionTokens: 2 },
    },
  });
}

function predictStream(call) {
  // Endless tokens until the client goes away: what a cancel has to stop.
  let n = 0;
  const timer = setInterval(() => {
    call.write({ requestId: 'r', model: 'm', textDelta: { text: `t${n++} `, tokenCount: 1 } });
  }, 5);
  call.on('cancelled', () => {
    clearInterval(timer);
    seen.streamsCancelled += 1;
  });
}

before(async () => {
  server = new grpc.Server();
  server.addService(servemeshV1().PredictionService.service, {
    predict,
    predictStream,
    listModels: (_call, callback) => callback(null, { models: [] }),
    getModel: (_call, callback) => callback(null, { model: { name: 'm' } }),
  });
  const port = await new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p));
  });
  address = `127.0.0.1:${port}`;
});

after(() => server.forceShutdown());

test('the API key goes as authorization: Bearer, and a missing one is Unauthenticated', async () => {
  const withKey = new Client(address, { apiKey: KEY });
  const withoutKey = new Client(address);
  try {
    const answer = await withKey.predict('echo', { prompt: 'hello', maxTokens: 2 });
    assert.equal(answer.text, 'hello');
    assert.equal(answer.finishReason, 'length');
    assert.deepEqual(answer.usage, { promptTokens: 1, completionTokens: 2 });
    await assert.rejects(withoutKey.predict('echo', { prompt: 'x' }), (error) => {
      assert.ok(error instanceof Unauthenticated && error instanceof ServemeshError);
      assert.equal(error.code, grpc.status.UNAUTHENTICATED);
      assert.equal(error.reason, 'API_KEY_MISSING');
      return true;
    });
  } finally {
    withKey.close();
    withoutKey.close();
  }
  assert.throws(() => new Client(address, { apiKey: 'two words' }), /printable ASCII/);
});

test('an error carries its code, details and the decoded ErrorInfo', async () => {
  const client = new Client(address, { apiKey: KEY });
  try {
    await assert.rejects(client.predict('gpt-9', { prompt: 'x' }), (error) => {
      assert.ok(error instanceof NotFound);
      assert.equal(error.name, 'NotFound');
      assert.equal(error.codeName, 'NOT_FOUND');
      assert.equal(error.details, 'no model gpt-9');
      assert.equal(error.message, 'NOT_FOUND: no model gpt-9');
      assert.deepEqual(error.errorInfo, {
        reason: 'MODEL_NOT_FOUND', domain: 'servemesh', metadata: { model: 'gpt-9' },
      });
      assert.equal(error.reason, 'MODEL_NOT_FOUND');
      assert.equal(error.domain, 'servemesh');
      assert.deepEqual(error.metadata, { model: 'gpt-9' });
      return true;
    });
    await assert.rejects(client.predict('contradicts', { prompt: 'x' }), (error) => {
      assert.equal(error.codeName, 'INTERNAL');
      assert.equal(error.errorInfo, null);
      assert.equal(error.reason, 'INTERNAL');
      return true;
    });
  } finally {
    client.close();
  }
  assert.equal(decodeErrorInfo(Buffer.from([0xff, 0xff]), 5), null, 'a broken trailer is ignored');
});

test('leaving a for-await loop early cancels the stream on the server', async () => {
  const client = new Client(address);
  const before = seen.streamsCancelled;
  let chunks = 0;
  for await (const chunk of client.predictStream('m', { prompt: 'x' })) {
    assert.match(chunk.text, /^t\d+ $/);
    if (++chunks === 3) break;
  }
  await waitFor(() => seen.streamsCancelled > before, 'the server to see the cancel');
  client.close();
});

test('aborting a signal mid-stream ends the loop with Cancelled and stops the server', async () => {
  const client = new Client(address);
  const before = seen.streamsCancelled;
  const controller = new AbortController();
  const received = [];
  await assert.rejects(
    (async () => {
      for await (const chunk of client.predictStream('m', { prompt: 'x' }, {
        signal: controller.signal,
      })) {
        received.push(chunk);
        if (received.length === 2) controller.abort();
      }
    })(),
    Cancelled,
  );
  assert.equal(received.length, 2);
  await waitFor(() => seen.streamsCancelled > before, 'the server to see the cancel');
  // A signal aborted before the call starts no call at all.
  await assert.rejects(client.predict('echo', 'x', { signal: controller.signal }), Cancelled);
  client.close();
});

test('Predict is retried on UNAVAILABLE; maxAttempts 1 turns that off', async () => {
  const client = new Client(address, { apiKey: KEY });
  seen.predictAttempts = 0;
  const answer = await client.predict('flaky', { prompt: 'third time' });
  assert.equal(answer.text, 'third time');
  assert.equal(seen.predictAttempts, 3);
  client.close();
  const once = new Client(address, { apiKey: KEY, maxAttempts: 1 });
  seen.predictAttempts = 0;
  await assert.rejects(once.predict('flaky', { prompt: 'x' }), { codeName: 'UNAVAILABLE' });
  assert.equal(seen.predictAttempts, 1);
  once.close();
});

test('a call that outlives its deadline is DeadlineExceeded; an aborted one Cancelled', async () => {
  const client = new Client(address, { apiKey: KEY, defaultTimeoutMs: 100 });
  await assert.rejects(client.predict('slow', 'x'), DeadlineExceeded);
  await assert.rejects(client.predict('slow', 'x', { timeoutMs: 20 }), DeadlineExceeded);
  await assert.rejects(
    client.predict('slow', 'x', { timeoutMs: null, signal: AbortSignal.timeout(50) }),
    Cancelled,
  );
  client.close();
});

async function waitFor(predicate, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
