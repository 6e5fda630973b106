'use strict';
// Request building and result conversion, without a server: what goes on the wire is
// checked by encoding with the service's own serializer and decoding the bytes again.

const assert = require('node:assert/strict');
const { test } = require('node:test');

const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const { InvalidArgument, LOADER_OPTIONS } = require('..');
const { SERVICE_FILE, servemeshV1 } = require('../lib/protos');
const { buildRequest } = require('../lib/requests');
const types = require('../lib/types');

const { Predict } = servemeshV1().PredictionService.service;

/** The request as the server will read it: encoded to bytes, then decoded. */
function onTheWire(request) {
  return Predict.requestDeserialize(Predict.requestSerialize(request));
}

test('named inputs travel as a map<string, InferenceValue>, one entry per name', () => {
  const image = Buffer.from([0xff, 0xd8, 0xff]);
  const wire = onTheWire(buildRequest('m', { inputs: { text: 'hello', image, top_k: '3' } }));
  assert.equal(wire.input, 'inference');
  const { inputs } = wire.inference;
  assert.deepEqual(Object.keys(inputs).sort(), ['image', 'text', 'top_k']);
  assert.equal(inputs.text.kind, 'text');
  assert.equal(inputs.text.text, 'hello');
  assert.equal(inputs.image.kind, 'data');
  assert.deepEqual(inputs.image.data, image);
  assert.equal(inputs.top_k.text, '3');
});

test('why the package loads .proto files: from descriptors a map is a list of entries', () => {
  // Reflection-based clients load the descriptors a server sends; proto-loader then reads
  // InferenceInput.inputs as a repeated InputsEntry, and the same bytes need {key, value}
  // pairs there, while loading the .proto files keeps the map an object keyed by name.
  const files = protoLoader.loadSync(SERVICE_FILE, LOADER_OPTIONS);
  const protos = new Set(Object.values(files).flatMap((d) => d.fileDescriptorProtos ?? []));
  const writer = protobuf.Writer.create();
  for (const file of protos) writer.uint32(10).bytes(file); // FileDescriptorSet.file = 1
  const fromDescriptors = protoLoader.loadFileDescriptorSetFromBuffer(
    Buffer.from(writer.finish()), LOADER_OPTIONS,
  )['servemesh.v1.PredictionService'].Predict;
  const asMap = { model: 'm', inference: { inputs: { text: { text: 'hello' } } } };
  const asEntries = { model: 'm', inference: { inputs: [{ key: 'text', value: { text: 'hello' } }] } };
  assert.throws(() => fromDescriptors.requestSerialize(asMap), /inputs: array expected/);
  const wire = Predict.requestSerialize(asMap);
  assert.deepEqual(fromDescriptors.requestSerialize(asEntries), wire);
  assert.ok(Array.isArray(fromDescriptors.requestDeserialize(wire).inference.inputs));
  assert.equal(Predict.requestDeserialize(wire).inference.inputs.text.text, 'hello');
});

test('a Map and a tensor work as inputs too', () => {
  const rawData = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
  const inputs = new Map([['x', { dtype: 'fp32', shape: [2, 2], rawData }]]);
  const { tensor } = onTheWire(buildRequest('m', { inputs })).inference.inputs.x;
  assert.equal(tensor.dtype, 'DATA_TYPE_FP32');
  assert.deepEqual(tensor.shape, ['2', '2']);
  assert.deepEqual(tensor.rawData, rawData);
});

test('temperature 0 is sent (greedy), and unset parameters are not', () => {
  const wire = onTheWire(buildRequest('m', { prompt: 'hi', temperature: 0, maxTokens: 8 }));
  const { parameters } = wire.textGeneration;
  assert.equal(parameters.temperature, 0);
  assert.equal(parameters._temperature, 'temperature'); // present, not the default
  assert.equal(parameters.maxTokens, 8);
  assert.equal(parameters._topP, undefined);
  assert.equal(parameters._seed, undefined);
});

test('a seed keeps every digit, from a number, a string or a BigInt', () => {
  for (const seed of [7, '18446744073709551615', 2n ** 63n]) {
    const wire = onTheWire(buildRequest('m', { prompt: 'hi', seed }));
    assert.equal(wire.textGeneration.parameters.seed, String(seed));
  }
});

test('a string is a user message; system goes before it', () => {
  const plain = onTheWire(buildRequest('m', 'Name a river.'));
  assert.deepEqual(plain.textGeneration.chat.messages, [
    { role: 'CHAT_ROLE_USER', content: 'Name a river.' },
  ]);
  const framed = onTheWire(buildRequest('m', { message: 'Hi', system: 'Be brief.' }));
  assert.deepEqual(
    framed.textGeneration.chat.messages.map((m) => m.role),
    ['CHAT_ROLE_SYSTEM', 'CHAT_ROLE_USER'],
  );
});

test('messages take objects or [role, content] pairs; a raw prompt has no chat', () => {
  const wire = onTheWire(buildRequest('m', {
    messages: [{ role: 'system', content: 'S' }, ['user', 'U'], ['assistant', 'A']],
  }));
  assert.deepEqual(
    wire.textGeneration.chat.messages.map((m) => [m.role, m.content]),
    [['CHAT_ROLE_SYSTEM', 'S'], ['CHAT_ROLE_USER', 'U'], ['CHAT_ROLE_ASSISTANT', 'A']],
  );
  const raw = onTheWire(buildRequest('m', { prompt: 'Once upon a time', stop: ['\n'] }));
  assert.equal(raw.textGeneration.source, 'prompt');
  assert.deepEqual(raw.textGeneration.parameters.stop, ['\n']);
});

test('exactly one input, a known role, no generation parameters with inputs', () => {
  assert.throws(() => buildRequest('m', {}), InvalidArgument);
  assert.throws(() => buildRequest('m', { prompt: 'a', message: 'b' }), /got message, prompt/);
  assert.throws(() => buildRequest('m', { prompt: 'a', system: 'b' }), /system goes with/);
  assert.throws(() => buildRequest('m', { messages: [['robot', 'x']] }), /unknown chat role/);
  assert.throws(
    () => buildRequest('m', { inputs: { text: 'x' }, temperature: 0 }),
    /temperature: generation parameters go with/,
  );
  assert.throws(() => buildRequest('m', { inputs: { n: 42 } }), /input "n": give a string/);
});

test('results: finish reasons and kinds as labels, outputs by name', () => {
  assert.equal(types.enumLabel('FINISH_REASON_', 'FINISH_REASON_EOS_TOKEN'), 'eos_token');
  assert.equal(types.enumLabel('FINISH_REASON_', 'FINISH_REASON_UNSPECIFIED'), '');
  assert.deepEqual(types.outputValue({ kind: 'vector', vector: { values: [0.5, 0.25] } }), [
    0.5, 0.25,
  ]);
  assert.deepEqual(
    types.outputValue({
      kind: 'classification',
      classification: { classes: [{ label: 'tabby', score: 0.5, index: 281 }] },
    }),
    [{ label: 'tabby', score: 0.5, index: 281 }],
  );
});
