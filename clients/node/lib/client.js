'use strict';
// The client for servemesh.v1.PredictionService: promises for unary calls, an async iterator
// for streams, a deadline on every call, and AbortSignal cancellation. Parallel to the Python
// SDK's servemesh/client.py.

const channel = require('./channel');
const { Cancelled, fromGrpcError } = require('./errors');
const { servemeshV1 } = require('./protos');
const { buildRequest } = require('./requests');
const types = require('./types');

function abortedError(signal) {
  const reason = signal.reason;
  const why = reason instanceof Error ? reason.message : String(reason ?? 'aborted');
  return new Cancelled(`cancelled by the caller's AbortSignal: ${why}`, { cause: reason });
}

class Client {
  /**
   * @param {string} [address] host:port of a gateway or predictor (default localhost:50051)
   * @param {object} [options] apiKey, tls, credentials, defaultTimeoutMs (60000; null for no
   *   deadline), maxAttempts (4; 1 turns retries off), maxMessageBytes, channelOptions
   */
  constructor(address = channel.DEFAULT_ADDRESS, options = {}) {
    const tlsSettings = options.tls && options.tls !== true ? options.tls : {};
    this._metadata = channel.authMetadata(options.apiKey);
    this._defaultTimeoutMs = options.defaultTimeoutMs === undefined
      ? channel.DEFAULT_TIMEOUT_MS
      : options.defaultTimeoutMs;
    const { PredictionService } = servemeshV1();
    this._stub = new PredictionService(
      address,
      channel.clientCredentials(options),
      {
        ...channel.channelOptions({
          maxAttempts: options.maxAttempts,
          maxMessageBytes: options.maxMessageBytes,
          serverName: tlsSettings.serverName,
        }),
        ...options.channelOptions,
      },
    );
  }

  /** grpc-js call options: the deadline (the client's default unless given; null: none). */
  _callOptions(timeoutMs) {
    const ms = timeoutMs === undefined ? this._defaultTimeoutMs : timeoutMs;
    return ms === null ? {} : { deadline: new Date(Date.now() + ms) };
  }

  /** A unary call as a promise that rejects with a ServemeshError; a signal cancels it. */
  _unary(method, request, { timeoutMs, signal } = {}) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortedError(signal));
        return;
      }
      const onAbort = () => call.cancel();
      const call = this._stub[method](
        request,
        this._metadata.clone(),
        this._callOptions(timeoutMs),
        (error, response) => {
          signal?.removeEventListener('abort', onAbort);
          if (!error) resolve(response);
          else if (signal?.aborted) reject(abortedError(signal));
          else reject(fromGrpcError(error));
        },
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Runs a model once. `input` is a user message (a string) or an object with one of
   * message, prompt, messages, inputs, and the generation parameters.
   */
  async predict(model, input, options = {}) {
    const request = buildRequest(model, input);
    return types.prediction(await this._unary('Predict', request, options));
  }

  /**
   * Streams a model's output as an async iterator of chunks. Leaving the `for await` loop
   * early, or aborting `options.signal`, cancels the call and the predictor stops generating.
   */
  async *predictStream(model, input, options = {}) {
    const request = buildRequest(model, input);
    const { signal } = options;
    if (signal?.aborted) throw abortedError(signal);
    const call = this._stub.PredictStream(
      request,
      this._metadata.clone(),
      this._callOptions(options.timeoutMs),
    );
    // grpc-js emits an 'error' (CANCELLED) when the call is cancelled after the loop below has
    // let go of the stream; without a listener that event would crash the process.
    call.on('error', () => {});
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const response of call) {
        yield types.streamChunk(response);
      }
    } catch (error) {
      throw signal?.aborted ? abortedError(signal) : fromGrpcError(error);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel(); // a no-op once the stream has ended; otherwise it stops the generation
    }
  }

  /** The models the server can run, sorted by name. */
  async listModels(options = {}) {
    const response = await this._unary('ListModels', {}, options);
    return response.models.map(types.model);
  }

  /** One model's description; rejects with NotFound when there is no such model. */
  async getModel(name, options = {}) {
    const response = await this._unary('GetModel', { name }, options);
    return types.model(response.model);
  }

  /** Closes the channel; calls in flight are cancelled. */
  close() {
    this._stub.close();
  }
}

module.exports = { Client };
