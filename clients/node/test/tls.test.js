'use strict';
// TLS and mTLS settings against an in-process grpc-js server with a throwaway self-signed
// certificate made by the openssl command (skipped where there is none).

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const grpc = require('@grpc/grpc-js');

const { Client, Unavailable } = require('..');
const { servemeshV1 } = require('../lib/protos');

const NAME = 'servemesh.test'; // not the address's host: the client must be told to expect it

function hasOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A self-signed certificate for NAME, good for server and client alike, and its key. */
function selfSigned(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '1', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`,
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { cert: fs.readFileSync(cert), key: fs.readFileSync(key) };
}

async function serve(credentials) {
  const server = new grpc.Server();
  server.addService(servemeshV1().PredictionService.service, {
    predict: (_call, callback) => callback({ code: grpc.status.UNIMPLEMENTED }),
    predictStream: (call) => call.end(),
    listModels: (_call, callback) => callback(null, { models: [{ name: 'tls-model' }] }),
    getModel: (_call, callback) => callback({ code: grpc.status.UNIMPLEMENTED }),
  });
  const port = await new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (error, p) => (error ? reject(error) : resolve(p)));
  });
  return { server, address: `127.0.0.1:${port}` };
}

/** The names listModels returns, or the error class's name when the call fails. */
async function attempt(address, options) {
  const client = new Client(address, { maxAttempts: 1, defaultTimeoutMs: 5000, ...options });
  try {
    return (await client.listModels()).map((m) => m.name);
  } catch (error) {
    return error.constructor.name;
  } finally {
    client.close();
  }
}

describe('TLS', { skip: !hasOpenssl() && 'no openssl command to make a certificate' }, () => {
  let dir;
  let pem;
  let tls;
  let mtls;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'servemesh-tls-'));
    pem = selfSigned(dir);
    const pair = [{ cert_chain: pem.cert, private_key: pem.key }];
    tls = await serve(grpc.ServerCredentials.createSsl(null, pair));
    mtls = await serve(grpc.ServerCredentials.createSsl(pem.cert, pair, true));
  });
  after(() => {
    tls?.server.forceShutdown();
    mtls?.server.forceShutdown();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a CA and the name to expect connect; a wrong name or plaintext does not', async () => {
    const ca = pem.cert.toString(); // PEM text works as well as a Buffer
    assert.deepEqual(await attempt(tls.address, { tls: { ca, serverName: NAME } }), ['tls-model']);
    assert.equal(await attempt(tls.address, { tls: { ca } }), Unavailable.name);
    assert.equal(await attempt(tls.address, { tls: true }), Unavailable.name); // system CAs
    assert.equal(await attempt(tls.address, {}), Unavailable.name);
  });

  test('mTLS: the client certificate and key get in; without them the server refuses', async () => {
    const settings = { ca: pem.cert, serverName: NAME };
    const withCert = { tls: { ...settings, cert: pem.cert, key: pem.key } };
    assert.deepEqual(await attempt(mtls.address, withCert), ['tls-model']);
    assert.equal(await attempt(mtls.address, { tls: settings }), Unavailable.name);
  });

  test('credentials are given one way; a certificate goes with its key', () => {
    const credentials = grpc.credentials.createInsecure();
    assert.throws(() => new Client(tls.address, { credentials, tls: true }), /not both/);
    assert.throws(() => new Client(tls.address, { tls: { cert: pem.cert } }), /needs its key/);
  });
});
