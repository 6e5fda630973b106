'use strict';
// Loads the servemesh.v1 contract and the google.rpc error protos from the package's own
// protos/ folder, so the package works outside the repository it was built in.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

// protos/servemesh/v1 is a copy of the repository's protos/servemesh/v1 (scripts/sync-protos.js
// refreshes it; a test fails when it drifts). protos/google/rpc is googleapis' own files.
const PROTOS_DIR = path.join(__dirname, '..', 'protos');

const SERVICE_FILE = 'servemesh/v1/prediction_service.proto';

// proto-loader options, each chosen for a reason:
// - includeDirs: the imports in the .proto files ("servemesh/v1/generation.proto") are
//   relative to the proto root, not to the importing file; without it loading fails.
// - keepCase false: JavaScript spelling (maxTokens), mapped back to the wire names by protobufjs.
// - longs String: uint64/int64 values (a seed, a tensor's shape) keep every digit.
// - enums String: enum values as their names, which is what lib/types.js turns into labels.
// - defaults true + oneofs true: absent fields read as their zero value, maps as {} and
//   repeated fields as [], and each oneof gets a virtual field naming its set member
//   (`output: 'textGeneration'`), so "which one is set" needs no guessing. Map fields
//   (InferenceInput.inputs) are plain objects keyed by name in both directions.
const LOADER_OPTIONS = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS_DIR],
});

let servicePackage;

/** The servemesh.v1 package as grpc-js sees it: `.PredictionService` is a client class. */
function servemeshV1() {
  if (!servicePackage) {
    const definition = protoLoader.loadSync(SERVICE_FILE, LOADER_OPTIONS);
    servicePackage = grpc.loadPackageDefinition(definition).servemesh.v1;
  }
  return servicePackage;
}

let rpcTypes;

/** google.rpc.Status and google.rpc.ErrorInfo as protobufjs types, for the status trailer. */
function googleRpc() {
  if (!rpcTypes) {
    const root = new protobuf.Root();
    // Resolve imports against protos/; google/protobuf/any.proto and duration.proto come
    // bundled with protobufjs itself.
    root.resolvePath = (_origin, target) => path.join(PROTOS_DIR, target);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], {
      keepCase: true,
    });
    rpcTypes = {
      Status: root.lookupType('google.rpc.Status'),
      ErrorInfo: root.lookupType('google.rpc.ErrorInfo'),
    };
  }
  return rpcTypes;
}

module.exports = { PROTOS_DIR, SERVICE_FILE, LOADER_OPTIONS, servemeshV1, googleRpc };
