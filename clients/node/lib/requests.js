'use strict';
// Builds servemesh.v1 PredictRequest / PredictStreamRequest objects (proto-loader's plain
// object form) from JavaScript arguments. Parallel to the Python SDK's servemesh/requests.py.

const { InvalidArgument } = require('./errors');

const ROLES = {
  system: 'CHAT_ROLE_SYSTEM',
  user: 'CHAT_ROLE_USER',
  assistant: 'CHAT_ROLE_ASSISTANT',
};

const DATA_TYPES = ['bool', 'int8', 'uint8', 'int32', 'int64', 'fp16', 'fp32', 'fp64'];

// JavaScript name -> GenerationParameters field; only the ones given are sent, since an unset
// field means "the server's default" and 0 is a meaningful value (temperature 0 is greedy).
const PARAMETERS = ['maxTokens', 'temperature', 'topP', 'topK', 'stop', 'seed', 'repeatPenalty'];

/** A chat turn from `{role, content}` or `[role, content]`. */
function chatMessage(message) {
  const [role, content] = Array.isArray(message) ? message : [message?.role, message?.content];
  if (!Object.hasOwn(ROLES, role)) {
    throw new InvalidArgument(
      `unknown chat role ${JSON.stringify(role)}; use one of ${Object.keys(ROLES).join(', ')}`,
    );
  }
  if (typeof content !== 'string') {
    throw new InvalidArgument(`a ${role} message's content must be a string`);
  }
  return { role: ROLES[role], content };
}

function tensorDataType(dtype) {
  const label = String(dtype ?? '').toLowerCase().replace(/^data_type_/, '');
  if (!DATA_TYPES.includes(label)) {
    throw new InvalidArgument(
      `unknown tensor dtype ${JSON.stringify(dtype)}; use one of ${DATA_TYPES.join(', ')}`,
    );
  }
  return `DATA_TYPE_${label.toUpperCase()}`;
}

/** A named input value: bytes (Buffer or Uint8Array), text, or a `{dtype, shape, rawData}`. */
function inferenceValue(name, value) {
  if (typeof value === 'string') return { text: value };
  if (value instanceof Uint8Array) return { data: Buffer.from(value) };
  if (value && typeof value === 'object' && 'rawData' in value) {
    return {
      tensor: {
        dtype: tensorDataType(value.dtype),
        shape: (value.shape ?? []).map((n) => String(n)),
        rawData: Buffer.from(value.rawData),
      },
    };
  }
  throw new InvalidArgument(
    `input ${JSON.stringify(name)}: give a string, a Buffer or Uint8Array, or a tensor ` +
      '{dtype, shape, rawData}',
  );
}

function generationParameters(options) {
  const parameters = {};
  for (const name of PARAMETERS) {
    const value = options[name];
    if (value === undefined || value === null) continue;
    if (name === 'stop') parameters.stop = [...value];
    // uint64 goes as a decimal string so that seeds above 2**53 (or BigInts) keep every digit.
    else if (name === 'seed') parameters.seed = String(value);
    else parameters[name] = value;
  }
  return parameters;
}

/**
 * The request object for Predict or PredictStream from exactly one input: `message` (a user's
 * chat message after an optional `system` message; the model's chat template applies),
 * `prompt` (raw text the model continues as it is), `messages` (a whole conversation) or
 * `inputs` (named values for models that are not text generators). A string `input` is a
 * `message`.
 */
function buildRequest(model, input) {
  const options = typeof input === 'string' ? { message: input } : { ...(input ?? {}) };
  const candidates = ['message', 'prompt', 'messages', 'inputs'];
  const given = candidates.filter((name) => options[name] !== undefined && options[name] !== null);
  if (given.length !== 1) {
    throw new InvalidArgument(
      'give exactly one of message (or a string), prompt, messages or inputs ' +
        `(got ${given.join(', ') || 'none'})`,
    );
  }
  if (options.system != null && options.message == null) {
    throw new InvalidArgument('system goes with a message; put it in messages otherwise');
  }
  const request = { model, requestId: options.requestId ?? '' };
  if (options.inputs != null) {
    const extra = PARAMETERS.filter((name) => options[name] != null);
    if (extra.length) {
      throw new InvalidArgument(
        `${extra.join(', ')}: generation parameters go with a message, prompt or messages, ` +
          'not with inputs',
      );
    }
    const entries = options.inputs instanceof Map
      ? [...options.inputs]
      : Object.entries(options.inputs);
    // A map<string, InferenceValue> is a plain object keyed by input name in proto-loader's
    // object form; protobufjs writes one map entry per key.
    request.inference = {
      inputs: Object.fromEntries(entries.map(([name, value]) => [name, inferenceValue(name, value)])),
    };
    return request;
  }
  const generation = { parameters: generationParameters(options) };
  let messages = options.messages;
  if (options.message != null) {
    messages = options.system != null
      ? [['system', options.system], ['user', options.message]]
      : [['user', options.message]];
  }
  if (messages != null) {
    // An empty conversation is still a conversation: the server names what is wrong with it.
    generation.chat = { messages: [...messages].map(chatMessage) };
  } else {
    generation.prompt = options.prompt;
  }
  request.textGeneration = generation;
  return request;
}

module.exports = { buildRequest, chatMessage, inferenceValue };
