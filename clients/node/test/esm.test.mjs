// The package imports from ES modules by name, as index.d.ts declares, not only via `default`.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import * as servemesh from '../index.js';

const require = createRequire(import.meta.url);

test('every CommonJS export is a named ES module export', () => {
  const names = Object.keys(require('../index.js')).sort();
  const named = Object.keys(servemesh).filter((name) => name !== 'default').sort();
  assert.deepEqual(named, names);
  assert.equal(typeof servemesh.Client, 'function');
  assert.ok(new servemesh.NotFound('x') instanceof servemesh.ServemeshError);
});

test('index.d.ts declares every export, and nothing that is not exported', async () => {
  const { readFile } = await import('node:fs/promises');
  const types = await readFile(new URL('../index.d.ts', import.meta.url), 'utf8');
  const declared = [...types.matchAll(/^export (?:class|const|function) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual([...new Set(declared)].sort(), Object.keys(require('../index.js')).sort());
});
