'use strict';
// servemesh: a Node.js client for the servemesh.v1 PredictionService (see README.md).

const { Client } = require('./lib/client');
const {
  ServemeshError,
  Cancelled,
  InvalidArgument,
  DeadlineExceeded,
  NotFound,
  AlreadyExists,
  PermissionDenied,
  ResourceExhausted,
  FailedPrecondition,
  Aborted,
  OutOfRange,
  Unimplemented,
  Internal,
  Unavailable,
  DataLoss,
  Unauthenticated,
  ERROR_DOMAIN,
  errorClassFor,
  decodeErrorInfo,
  fromGrpcError,
} = require('./lib/errors');
const { DEFAULT_ADDRESS, DEFAULT_TIMEOUT_MS } = require('./lib/channel');
const { PROTOS_DIR, LOADER_OPTIONS } = require('./lib/protos');

// Every name spelled out as a plain identifier: Node finds the named exports of a CommonJS
// module (for `import { Client } from 'servemesh'`) by reading this literal, and stops at a
// spread or a member expression.
module.exports = {
  Client,
  ServemeshError,
  Cancelled,
  InvalidArgument,
  DeadlineExceeded,
  NotFound,
  AlreadyExists,
  PermissionDenied,
  ResourceExhausted,
  FailedPrecondition,
  Aborted,
  OutOfRange,
  Unimplemented,
  Internal,
  Unavailable,
  DataLoss,
  Unauthenticated,
  ERROR_DOMAIN,
  errorClassFor,
  decodeErrorInfo,
  fromGrpcError,
  DEFAULT_ADDRESS,
  DEFAULT_TIMEOUT_MS,
  // For callers who load the contract themselves (a server of their own, another stub).
  PROTOS_DIR,
  LOADER_OPTIONS,
};
