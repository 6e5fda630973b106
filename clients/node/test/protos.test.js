'use strict';
// The package's copy of the contract is the repository's, byte for byte, and everything the
// package needs loads from the package's own protos/ folder.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const { PROTOS_DIR } = require('..');
const { googleRpc, servemeshV1 } = require('../lib/protos');
const { SOURCE, differences } = require('../scripts/sync-protos');

test('protos/servemesh/v1 matches the repository (npm run sync-protos refreshes it)', {
  skip: !fs.existsSync(SOURCE) && 'not inside the servemesh repository',
}, () => {
  assert.deepEqual(
    differences(),
    [],
    'clients/node/protos/servemesh/v1 is stale: run `npm --prefix clients/node run sync-protos`',
  );
});

test('the package ships the google/rpc protos with their license headers', () => {
  for (const name of ['status.proto', 'error_details.proto']) {
    const text = fs.readFileSync(path.join(PROTOS_DIR, 'google', 'rpc', name), 'utf8');
    assert.match(text, /Licensed under the Apache License, Version 2\.0/);
  }
  const { Status, ErrorInfo } = googleRpc();
  assert.equal(Status.fullName, '.google.rpc.Status');
  assert.ok(ErrorInfo.fields.metadata.map, 'ErrorInfo.metadata is a map');
});

test('the service loads with its four methods', () => {
  const methods = Object.keys(servemeshV1().PredictionService.service).sort();
  assert.deepEqual(methods, ['GetModel', 'ListModels', 'Predict', 'PredictStream']);
});
