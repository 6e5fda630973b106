'use strict';
// Plain JavaScript results of servemesh calls, converted from proto-loader's objects.
// Parallel to the Python SDK's servemesh/types.py: the same fields, in camelCase.

/** 'FINISH_REASON_EOS_TOKEN' -> 'eos_token'; the zero (UNSPECIFIED) value gives ''. */
function enumLabel(prefix, name) {
  if (!name || name.endsWith('_UNSPECIFIED')) return '';
  return name.startsWith(prefix) ? name.slice(prefix.length).toLowerCase() : name.toLowerCase();
}

function usage(message) {
  if (!message) return null;
  return { promptTokens: message.promptTokens, completionTokens: message.completionTokens };
}

/** Buffer, string, a tensor, a list of {label, score, index} (best first) or a list of numbers. */
function outputValue(value) {
  switch (value.kind) {
    case 'classification':
      return value.classification.classes.map((c) => ({
        label: c.label,
        score: c.score,
        index: c.index,
      }));
    case 'vector':
      return [...value.vector.values];
    case 'tensor':
      return {
        dtype: enumLabel('DATA_TYPE_', value.tensor.dtype),
        shape: value.tensor.shape.map(Number),
        rawData: value.tensor.rawData,
      };
    case 'text':
      return value.text;
    case 'data':
      return value.data;
    default:
      return Buffer.alloc(0);
  }
}

function outputs(inference) {
  const result = {};
  for (const [name, value] of Object.entries(inference?.outputs ?? {})) {
    result[name] = outputValue(value);
  }
  return result;
}

/** The complete result of `predict`. */
function prediction(response) {
  const base = { requestId: response.requestId, model: response.model };
  if (response.output === 'textGeneration') {
    const out = response.textGeneration;
    return {
      ...base,
      text: out.text,
      finishReason: enumLabel('FINISH_REASON_', out.finishReason),
      usage: usage(out.usage),
      outputs: {},
    };
  }
  return { ...base, text: '', finishReason: '', usage: null, outputs: outputs(response.inference) };
}

/** One message of `predictStream`; the last one of a generation has finishReason and usage. */
function streamChunk(response) {
  const delta = response.chunk === 'textDelta' ? response.textDelta : null;
  return {
    requestId: response.requestId,
    model: response.model,
    text: delta?.text ?? '',
    tokenCount: delta?.tokenCount ?? 0,
    finishReason: enumLabel('FINISH_REASON_', response.finishReason),
    // `defaults` fills absent messages with null, so a usage is there only when it was sent.
    usage: usage(response.usage),
    outputs: response.chunk === 'inference' ? outputs(response.inference) : {},
  };
}

/** A model the mesh serves, with what it can do and the limits requests must respect. */
function model(info) {
  const caps = info.capabilities ?? {};
  const limits = info.limits ?? {};
  return {
    name: info.name,
    backendKind: enumLabel('BACKEND_KIND_', info.backendKind),
    backend: info.backend,
    ready: info.ready,
    streaming: Boolean(caps.streaming),
    inputKinds: (caps.inputKinds ?? []).map((k) => enumLabel('INPUT_KIND_', k)),
    outputKinds: (caps.outputKinds ?? []).map((k) => enumLabel('OUTPUT_KIND_', k)),
    contextLength: limits.contextLength ?? 0,
    maxTokens: limits.maxTokens ?? 0,
    maxQueuedRequests: limits.maxQueuedRequests ?? 0,
    description: info.description,
  };
}

module.exports = { enumLabel, outputValue, prediction, streamChunk, model };
