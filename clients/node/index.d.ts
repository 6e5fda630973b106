// Types of the servemesh Node.js client (index.js). Hand-written: the package loads the
// .proto files at run time, so there is no generated code to take them from.

import type { ChannelCredentials, ChannelOptions, Metadata, ServiceError } from '@grpc/grpc-js';

export const DEFAULT_ADDRESS: string;
export const DEFAULT_TIMEOUT_MS: number;
/** The folder with servemesh/v1/*.proto and google/rpc/*.proto that the package loads. */
export const PROTOS_DIR: string;
/** The @grpc/proto-loader options the package loads the protos with. */
export const LOADER_OPTIONS: Readonly<Record<string, unknown>>;

export type ChatRole = 'system' | 'user' | 'assistant';
export type ChatMessage = { role: ChatRole; content: string } | [ChatRole, string];
export type DataType = 'bool' | 'int8' | 'uint8' | 'int32' | 'int64' | 'fp16' | 'fp32' | 'fp64';

/** A dense tensor in row-major order; rawData holds little-endian elements. */
export interface Tensor {
  dtype: DataType;
  shape: number[];
  rawData: Uint8Array;
}

/** A named input: bytes (an encoded image), text, or a tensor. */
export type InputValue = string | Uint8Array | Tensor;

/** Generation parameters; unset ones take the server's defaults (see docs/api.md). */
export interface GenerationParameters {
  maxTokens?: number;
  /** 0 is greedy decoding. */
  temperature?: number;
  topP?: number;
  topK?: number;
  stop?: string[];
  seed?: number | bigint | string;
  repeatPenalty?: number;
}

/** Exactly one of message, prompt, messages or inputs. */
export interface PredictInput extends GenerationParameters {
  /** A user's chat message, rendered with the model's chat template. */
  message?: string;
  /** A system message before `message`. */
  system?: string;
  /** Raw text the model continues as it is, without a chat template. */
  prompt?: string;
  /** A whole conversation. */
  messages?: ChatMessage[];
  /** Named inputs for models that are not text generators (no generation parameters). */
  inputs?: Record<string, InputValue> | Map<string, InputValue>;
  /** Echoed in the result; the server makes one up when empty. */
  requestId?: string;
}

export interface CallOptions {
  /** The call's deadline in milliseconds; null for none; default: the client's. */
  timeoutMs?: number | null;
  /** Aborting it cancels the call, which then rejects (or the stream throws) with Cancelled. */
  signal?: AbortSignal;
}

export interface TlsOptions {
  /** PEM of the CA that signed the server's certificate (default: the system's CAs). */
  ca?: string | Uint8Array;
  /** PEM client certificate and key, for servers that require one (mTLS). */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** The name to expect in the server's certificate when it is not the address's host. */
  serverName?: string;
}

export interface ClientOptions {
  /** Sent with every call as `authorization: Bearer KEY`. */
  apiKey?: string;
  /** true: TLS with the system's CAs; an object: TLS with these settings. */
  tls?: boolean | TlsOptions;
  /** Ready-made channel credentials instead of `tls`. */
  credentials?: ChannelCredentials;
  /** Every call's deadline unless the call gives one: 60000 by default; null for none. */
  defaultTimeoutMs?: number | null;
  /** Tries of Predict, ListModels and GetModel on UNAVAILABLE (default 4; 1: no retries). */
  maxAttempts?: number;
  /** The largest message sent or received (default 64 MiB). */
  maxMessageBytes?: number;
  /** More grpc-js channel options; they win over the ones above. */
  channelOptions?: ChannelOptions;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface ClassScore {
  label: string;
  score: number;
  index: number;
}

/** Buffer, text, a tensor, a classification (best first) or a vector (an embedding). */
export type OutputValue = Buffer | string | Tensor | ClassScore[] | number[];

/** 'eos_token' | 'length' | 'stop_sequence', or '' when not finished. */
export type FinishReason = '' | 'eos_token' | 'length' | 'stop_sequence';

export interface Prediction {
  requestId: string;
  model: string;
  text: string;
  finishReason: FinishReason;
  usage: Usage | null;
  outputs: Record<string, OutputValue>;
}

export interface StreamChunk {
  requestId: string;
  model: string;
  text: string;
  tokenCount: number;
  /** Set on the last chunk of a text generation. */
  finishReason: FinishReason;
  /** Set on the last chunk of a text generation. */
  usage: Usage | null;
  outputs: Record<string, OutputValue>;
}

export interface Model {
  name: string;
  /** 'llama_cpp' | 'torchserve' */
  backendKind: string;
  backend: string;
  ready: boolean;
  streaming: boolean;
  /** 'prompt' | 'chat' | 'named_values' */
  inputKinds: string[];
  /** 'text' | 'named_values' */
  outputKinds: string[];
  contextLength: number;
  maxTokens: number;
  maxQueuedRequests: number;
  description: string;
}

export class Client {
  constructor(address?: string, options?: ClientOptions);
  /** Runs a model once; a string input is a user chat message. */
  predict(model: string, input: string | PredictInput, options?: CallOptions): Promise<Prediction>;
  /** Streams a model's output; leaving the loop early or aborting the signal cancels it. */
  predictStream(
    model: string,
    input: string | PredictInput,
    options?: CallOptions,
  ): AsyncGenerator<StreamChunk, void, undefined>;
  /** The models the server can run, sorted by name. */
  listModels(options?: CallOptions): Promise<Model[]>;
  /** One model's description; rejects with NotFound when there is no such model. */
  getModel(name: string, options?: CallOptions): Promise<Model>;
  /** Closes the channel. */
  close(): void;
}

/** The google.rpc.ErrorInfo a servemesh server attaches to an error status. */
export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

/** A failed call: a gRPC status code, the server's message and its ErrorInfo. */
export class ServemeshError extends Error {
  /** The class's status code (subclasses); UNKNOWN on ServemeshError itself. */
  static readonly code: number;
  constructor(
    details: string,
    extra?: {
      code?: number;
      reason?: string;
      domain?: string;
      metadata?: Record<string, string>;
      errorInfo?: ErrorInfo | null;
      cause?: unknown;
      trailers?: Metadata | null;
    },
  );
  /** The numeric gRPC status code (grpc.status). */
  readonly code: number;
  /** Its name: 'NOT_FOUND', 'INVALID_ARGUMENT', ... */
  readonly codeName: string;
  /** The server's message, which says what to change. */
  readonly details: string;
  /** ErrorInfo.reason ('MODEL_NOT_FOUND', ...; docs/api.md), or codeName without one. */
  readonly reason: string;
  /** ErrorInfo.domain ('servemesh'), or '' without one. */
  readonly domain: string;
  /** ErrorInfo.metadata ({field: 'temperature'}, ...), or {}. */
  readonly metadata: Record<string, string>;
  /** The decoded ErrorInfo, or null when the server sent none. */
  readonly errorInfo: ErrorInfo | null;
  /** The call's trailing metadata, or null for an error raised before any call. */
  readonly trailers: Metadata | null;
}

export class Cancelled extends ServemeshError {}
export class InvalidArgument extends ServemeshError {}
export class DeadlineExceeded extends ServemeshError {}
export class NotFound extends ServemeshError {}
export class AlreadyExists extends ServemeshError {}
export class PermissionDenied extends ServemeshError {}
export class ResourceExhausted extends ServemeshError {}
export class FailedPrecondition extends ServemeshError {}
export class Aborted extends ServemeshError {}
export class OutOfRange extends ServemeshError {}
export class Unimplemented extends ServemeshError {}
export class Internal extends ServemeshError {}
export class Unavailable extends ServemeshError {}
export class DataLoss extends ServemeshError {}
export class Unauthenticated extends ServemeshError {}

export const ERROR_DOMAIN: 'servemesh';
/** The error class for a gRPC status code; ServemeshError for UNKNOWN and unknown codes. */
export function errorClassFor(code: number): typeof ServemeshError;
/** The ErrorInfo in a grpc-status-details-bin trailer whose status has this code, or null. */
export function decodeErrorInfo(trailer: Uint8Array | undefined, code: number): ErrorInfo | null;
/** The typed error for a failed grpc-js call; anything else is returned as it is. */
export function fromGrpcError(error: ServiceError): ServemeshError;
export function fromGrpcError(error: unknown): unknown;
