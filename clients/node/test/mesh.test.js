'use strict';
// The client against a live mesh (the gateway in front of the llama predictor and TorchServe)
// at SERVEMESH_ADDRESS; skipped without it. tests/test_node_client.py runs these from
// `make test` with the session's mesh.

const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');

const {
  Cancelled, Client, DeadlineExceeded, InvalidArgument, NotFound, ServemeshError,
} = require('..');

const ADDRESS = process.env.SERVEMESH_ADDRESS;
const LLM = 'smollm2-135m-instruct';
const EMBEDDER = 'all-minilm-l6-v2';
const CLASSIFIER = 'efficientnet-lite0';
const GREEDY = { temperature: 0, maxTokens: 24 };
// A raw prompt the model continues for all of its 400 tokens (a chat question may end early).
const LONG = { prompt: 'Once upon a time', temperature: 0, maxTokens: 400 };
// The llama predictor's Prometheus metrics, when the caller knows where they are.
const METRICS_URL = process.env.SERVEMESH_LLAMA_METRICS_URL;

/** One sample of the predictor's metrics, or 0 when it has none yet. */
async function metric(pattern) {
  const text = await (await fetch(METRICS_URL)).text();
  const line = text.split('\n').find((l) => pattern.test(l));
  return line ? Number(line.trim().split(/\s+/).at(-1)) : 0;
}

/**
 * The predictor's count of cancelled generations once none runs (null without metrics):
 * a cancel reaches the predictor through the gateway a moment after the client's.
 */
async function settledCancels() {
  if (!METRICS_URL) return null;
  const deadline = Date.now() + 10_000;
  while ((await metric(/^servemesh_llama_active_sequences /)) !== 0) {
    if (Date.now() > deadline) throw new Error('the predictor still runs a generation');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return metric(/^servemesh_llama_generations_finished_total\{[^}]*outcome="cancelled"/);
}

describe('against a live mesh', { skip: !ADDRESS && 'SERVEMESH_ADDRESS is not set' }, () => {
  let client;
  before(() => {
    client = new Client(ADDRESS, { defaultTimeoutMs: 60_000 });
  });
  after(() => client?.close());

  test('predict: a chat and a raw prompt, greedy, give the same text twice', async () => {
    const chat = { messages: [['user', 'Name three rivers.']], ...GREEDY };
    const first = await client.predict(LLM, chat);
    const second = await client.predict(LLM, chat);
    assert.ok(first.text.length > 0);
    assert.equal(second.text, first.text);
    assert.equal(first.model, LLM);
    assert.ok(['length', 'eos_token'].includes(first.finishReason), first.finishReason);
    assert.ok(first.usage.promptTokens > 0 && first.usage.completionTokens > 0);
    assert.ok(first.usage.completionTokens <= GREEDY.maxTokens);
    const raw = { prompt: 'Once upon a time', ...GREEDY };
    const a = await client.predict(LLM, raw);
    assert.equal((await client.predict(LLM, raw)).text, a.text);
    // A user message as a plain string is the same chat as messages with one user turn.
    assert.equal((await client.predict(LLM, { message: 'Name three rivers.', ...GREEDY })).text,
      first.text);
  });

  test('predictStream: chunks add up to the unary greedy text; the last has the finish', async () => {
    const input = { messages: [{ role: 'user', content: 'Write a haiku about rivers.' }], ...GREEDY };
    const unary = await client.predict(LLM, input);
    const chunks = [];
    for await (const chunk of client.predictStream(LLM, input)) chunks.push(chunk);
    const last = chunks.at(-1);
    assert.equal(chunks.map((c) => c.text).join(''), unary.text);
    assert.equal(last.finishReason, unary.finishReason);
    assert.deepEqual(last.usage, unary.usage);
    assert.equal(chunks.reduce((n, c) => n + c.tokenCount, 0), last.usage.completionTokens);
    assert.ok(chunks.slice(0, -1).every((c) => c.finishReason === '' && c.usage === null));
  });

  test('listModels and getModel describe the mesh', async () => {
    const models = await client.listModels();
    const names = models.map((m) => m.name);
    for (const name of [LLM, EMBEDDER, CLASSIFIER]) assert.ok(names.includes(name), name);
    assert.deepEqual(names, [...names].sort());
    const llm = await client.getModel(LLM);
    assert.equal(llm.backendKind, 'llama_cpp');
    assert.equal(llm.ready, true);
    assert.equal(llm.streaming, true);
    assert.ok(llm.inputKinds.includes('chat') && llm.inputKinds.includes('prompt'));
    assert.ok(llm.contextLength > 0 && llm.maxTokens > 0);
    const embedder = await client.getModel(EMBEDDER);
    assert.equal(embedder.backendKind, 'torchserve');
    assert.deepEqual(embedder.inputKinds, ['named_values']);
  });

  test('an embedding through the inputs map: 384 floats of unit length', async () => {
    const result = await client.predict(EMBEDDER, { inputs: { text: 'A cat sleeps on the sofa.' } });
    const vector = result.outputs.embedding;
    assert.equal(vector.length, 384);
    assert.ok(vector.every((x) => typeof x === 'number' && Number.isFinite(x)));
    const norm = Math.sqrt(vector.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
    assert.equal(result.text, '');
  });

  test('an unknown model is NotFound with reason MODEL_NOT_FOUND, unary and streaming', async () => {
    const check = (error) => {
      assert.ok(error instanceof NotFound && error instanceof ServemeshError);
      assert.equal(error.codeName, 'NOT_FOUND');
      assert.equal(error.reason, 'MODEL_NOT_FOUND');
      assert.equal(error.domain, 'servemesh');
      assert.deepEqual(error.metadata, { model: 'gpt-9' });
      assert.match(error.details, /gpt-9/);
      assert.ok(error.details.includes(LLM), 'the message lists the models');
      return true;
    };
    await assert.rejects(client.predict('gpt-9', { prompt: 'hi' }), check);
    await assert.rejects(async () => {
      for await (const _ of client.predictStream('gpt-9', { prompt: 'hi' })) { /* none */ }
    }, check);
    await assert.rejects(client.getModel('gpt-9'), NotFound);
  });

  test('a bad parameter is InvalidArgument with reason INVALID_PARAMETER and its field', async () => {
    await assert.rejects(client.predict(LLM, { prompt: 'hi', temperature: -1 }), (error) => {
      assert.ok(error instanceof InvalidArgument);
      assert.equal(error.reason, 'INVALID_PARAMETER');
      assert.equal(error.metadata.field, 'text_generation.parameters.temperature');
      assert.match(error.details, /temperature is -1/);
      return true;
    });
    await assert.rejects(client.predict(LLM, { inputs: { x: 'y' } }), { reason: 'UNSUPPORTED_INPUT' });
  });

  test('a tiny deadline is DeadlineExceeded, unary and streaming', async () => {
    await assert.rejects(client.predict(LLM, LONG, { timeoutMs: 1 }), DeadlineExceeded);
    await assert.rejects(async () => {
      for await (const _ of client.predictStream(LLM, LONG, { timeoutMs: 1 })) { /* none */ }
    }, DeadlineExceeded);
  });

  test('cancellation: abort or break mid-stream stops the generation; the mesh keeps serving',
    async () => {
      const before = await settledCancels();
      const controller = new AbortController();
      const received = [];
      await assert.rejects(async () => {
        for await (const chunk of client.predictStream(LLM, LONG, { signal: controller.signal })) {
          received.push(chunk);
          if (received.length === 3) controller.abort();
        }
      }, Cancelled);
      assert.equal(received.length, 3);
      assert.ok(received.every((c) => c.finishReason === ''), 'cut before the end');
      let chunks = 0;
      for await (const _ of client.predictStream(LLM, LONG)) {
        if (++chunks === 3) break; // no error: leaving the loop cancels quietly
      }
      // A unary call in flight, aborted.
      await assert.rejects(client.predict(LLM, LONG, { signal: AbortSignal.timeout(200) }), Cancelled);
      if (before !== null) {
        // The predictor stopped both streams, which were generating, and runs nothing now. (The
        // unary call may have been cancelled before it left the queue on a busy machine.)
        assert.ok((await settledCancels()) >= before + 2);
      }
      const answer = await client.predict(LLM, { prompt: 'Hello', maxTokens: 4, temperature: 0 });
      assert.ok(answer.usage.completionTokens >= 1);
    });
});
