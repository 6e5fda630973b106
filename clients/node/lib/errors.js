'use strict';
// Typed errors, one class per gRPC status code, with the google.rpc.ErrorInfo that servemesh
// servers put in the grpc-status-details-bin trailer (AIP-193). Parallel to the Python SDK's
// servemesh/errors.py.

const { status: Status } = require('@grpc/grpc-js');
const { googleRpc } = require('./protos');

const ERROR_DOMAIN = 'servemesh';
const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';

/** The name of a status code: 5 -> 'NOT_FOUND'. */
function codeName(code) {
  return Status[code] ?? 'UNKNOWN';
}

/** A failed call: a status code, a message a person can act on, and a machine reason. */
class ServemeshError extends Error {
  static code = Status.UNKNOWN;

  /**
   * @param {string} details the server's message (Python's `error.message`)
   * @param {{reason?: string, domain?: string, metadata?: object, errorInfo?: object|null,
   *          code?: number, cause?: unknown, trailers?: object}} [extra]
   */
  constructor(details, extra = {}) {
    // A class per code fixes the code; only the base class takes one given (an unknown code).
    const code = new.target === ServemeshError && extra.code !== undefined
      ? extra.code
      : new.target.code;
    super(`${codeName(code)}: ${details}`, extra.cause === undefined ? {} : { cause: extra.cause });
    this.name = new.target.name;
    this.code = code;
    this.codeName = codeName(code);
    this.details = details;
    this.errorInfo = extra.errorInfo ?? null;
    // Like the Python SDK: without an ErrorInfo the reason is the code's name.
    this.reason = extra.reason || this.errorInfo?.reason || this.codeName;
    this.domain = extra.domain ?? this.errorInfo?.domain ?? '';
    this.metadata = { ...(extra.metadata ?? this.errorInfo?.metadata ?? {}) };
    // The call's trailing metadata (a grpc.Metadata), for anything else a server sent.
    this.trailers = extra.trailers ?? null;
  }
}

function errorClass(name, code) {
  // A named class (not an anonymous one) so stack traces and `error.name` read well.
  const cls = { [name]: class extends ServemeshError {} }[name];
  cls.code = code;
  return cls;
}

const Cancelled = errorClass('Cancelled', Status.CANCELLED);
const InvalidArgument = errorClass('InvalidArgument', Status.INVALID_ARGUMENT);
const DeadlineExceeded = errorClass('DeadlineExceeded', Status.DEADLINE_EXCEEDED);
const NotFound = errorClass('NotFound', Status.NOT_FOUND);
const AlreadyExists = errorClass('AlreadyExists', Status.ALREADY_EXISTS);
const PermissionDenied = errorClass('PermissionDenied', Status.PERMISSION_DENIED);
const ResourceExhausted = errorClass('ResourceExhausted', Status.RESOURCE_EXHAUSTED);
const FailedPrecondition = errorClass('FailedPrecondition', Status.FAILED_PRECONDITION);
const Aborted = errorClass('Aborted', Status.ABORTED);
const OutOfRange = errorClass('OutOfRange', Status.OUT_OF_RANGE);
const Unimplemented = errorClass('Unimplemented', Status.UNIMPLEMENTED);
const Internal = errorClass('Internal', Status.INTERNAL);
const Unavailable = errorClass('Unavailable', Status.UNAVAILABLE);
const DataLoss = errorClass('DataLoss', Status.DATA_LOSS);
const Unauthenticated = errorClass('Unauthenticated', Status.UNAUTHENTICATED);

const CLASSES = [
  Cancelled, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied,
  ResourceExhausted, FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal,
  Unavailable, DataLoss, Unauthenticated,
];
const BY_CODE = new Map(CLASSES.map((cls) => [cls.code, cls]));

/** The error class for a status code; ServemeshError itself for UNKNOWN and unknown codes. */
function errorClassFor(code) {
  return BY_CODE.get(code) ?? ServemeshError;
}

/**
 * The ErrorInfo in a grpc-status-details-bin trailer, as {reason, domain, metadata}, or null.
 * A trailer whose status code contradicts the call's is ignored, as grpcio-status does.
 */
function decodeErrorInfo(trailer, code) {
  if (!trailer) return null;
  let status;
  try {
    const { Status: StatusType } = googleRpc();
    status = StatusType.decode(trailer);
  } catch {
    return null; // a broken trailer must not hide the status line, which is still good
  }
  if (status.code !== code) return null;
  const { ErrorInfo } = googleRpc();
  for (const detail of status.details ?? []) {
    if (detail.type_url === ERROR_INFO_TYPE) {
      try {
        const info = ErrorInfo.decode(detail.value);
        return { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } };
      } catch {
        return null;
      }
    }
  }
  return null;
}

/** The typed error for a failed grpc-js call (its `code`, `details` and `metadata`). */
function fromGrpcError(error) {
  if (error instanceof ServemeshError) return error;
  if (typeof error?.code !== 'number') return error; // not a gRPC status: a bug to see as it is
  const trailer = error.metadata?.get?.('grpc-status-details-bin')?.[0];
  const errorInfo = decodeErrorInfo(trailer, error.code);
  const cls = errorClassFor(error.code);
  return new cls(error.details ?? '', {
    code: error.code,
    errorInfo,
    cause: error,
    trailers: error.metadata ?? null,
  });
}

module.exports = {
  ERROR_DOMAIN,
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
  errorClassFor,
  decodeErrorInfo,
  fromGrpcError,
};
