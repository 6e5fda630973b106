'use strict';
// The settings of a client's channel: retry policy, message sizes, TLS credentials and the
// API key. Parallel to the Python SDK's servemesh/channel.py, with the same defaults.

const grpc = require('@grpc/grpc-js');

const DEFAULT_ADDRESS = 'localhost:50051';
const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_ATTEMPTS = 4;
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

// Calls that are safe to repeat when the server was unavailable. PredictStream is left out:
// once a token has reached the caller, a silent retry would deliver it twice.
const RETRYABLE_METHODS = [
  { service: 'servemesh.v1.PredictionService', method: 'Predict' },
  { service: 'servemesh.v1.PredictionService', method: 'ListModels' },
  { service: 'servemesh.v1.PredictionService', method: 'GetModel' },
];

/** gRPC's own retry policy: exponential backoff on UNAVAILABLE, within the deadline. */
function retryServiceConfig(maxAttempts) {
  return {
    methodConfig: [
      {
        name: RETRYABLE_METHODS,
        retryPolicy: {
          maxAttempts,
          initialBackoff: '0.1s',
          maxBackoff: '2s',
          backoffMultiplier: 2,
          retryableStatusCodes: ['UNAVAILABLE'],
        },
      },
    ],
  };
}

/** grpc-js channel options; maxAttempts 1 turns retries off. */
function channelOptions({ maxAttempts = DEFAULT_MAX_ATTEMPTS, maxMessageBytes = MAX_MESSAGE_BYTES,
  serverName } = {}) {
  const options = {
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.max_receive_message_length': maxMessageBytes,
  };
  if (maxAttempts > 1) {
    options['grpc.enable_retries'] = 1;
    options['grpc.service_config'] = JSON.stringify(retryServiceConfig(maxAttempts));
  } else {
    options['grpc.enable_retries'] = 0;
  }
  // The name to expect in the server's certificate when it is not the address's host.
  if (serverName) options['grpc.ssl_target_name_override'] = serverName;
  return options;
}

function pem(value, what) {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || value instanceof Uint8Array) return Buffer.from(value);
  throw new TypeError(`tls.${what} must be PEM text or a Buffer (read the file yourself)`);
}

/**
 * The channel credentials: `credentials` as given, or TLS from `tls` (true: the system's CAs;
 * {ca, cert, key}: PEM contents, cert and key for servers that require a client
 * certificate), or plaintext.
 */
function clientCredentials({ credentials, tls } = {}) {
  if (credentials) {
    if (tls) throw new TypeError('give credentials or tls, not both');
    return credentials;
  }
  if (!tls) return grpc.credentials.createInsecure();
  const settings = tls === true ? {} : tls;
  const cert = pem(settings.cert, 'cert');
  const key = pem(settings.key, 'key');
  if (Boolean(cert) !== Boolean(key)) {
    throw new TypeError('a client certificate needs its key and a key its certificate');
  }
  return grpc.credentials.createSsl(pem(settings.ca, 'ca'), key, cert);
}

/** The metadata that carries an API key (`authorization: Bearer KEY`), or an empty one. */
function authMetadata(apiKey) {
  const metadata = new grpc.Metadata();
  if (apiKey === undefined || apiKey === null) return metadata;
  const key = String(apiKey).trim();
  // gRPC refuses metadata values outside printable ASCII; saying so here names the cause.
  if (!/^[\x21-\x7e]+$/.test(key)) {
    throw new TypeError('apiKey must be one word of printable ASCII characters');
  }
  metadata.set('authorization', `Bearer ${key}`);
  return metadata;
}

module.exports = {
  DEFAULT_ADDRESS,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_MAX_ATTEMPTS,
  MAX_MESSAGE_BYTES,
  retryServiceConfig,
  channelOptions,
  clientCredentials,
  authMetadata,
};
