#!/usr/bin/env node
'use strict';
// Copies the repository's protos/servemesh/v1/*.proto into the package's protos/, so the
// package carries its contract wherever it is installed. `--check` only compares, and exits
// with 1 when the copy differs. Outside the repository (an unpacked tarball) there is nothing
// to copy from, and the copy the package holds is the one it ships.

const fs = require('node:fs');
const path = require('node:path');

const PACKAGE_DIR = path.join(__dirname, '..');
const SOURCE = path.join(PACKAGE_DIR, '..', '..', 'protos', 'servemesh', 'v1');
const COPY = path.join(PACKAGE_DIR, 'protos', 'servemesh', 'v1');

function protoFiles(dir) {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.proto')).sort() : [];
}

/** The names of the files that differ between the repository's protos and the copy. */
function differences() {
  const names = new Set([...protoFiles(SOURCE), ...protoFiles(COPY)]);
  return [...names].sort().filter((name) => {
    const a = path.join(SOURCE, name);
    const b = path.join(COPY, name);
    return !fs.existsSync(a) || !fs.existsSync(b) || !fs.readFileSync(a).equals(fs.readFileSync(b));
  });
}

function sync() {
  fs.mkdirSync(COPY, { recursive: true });
  for (const name of protoFiles(COPY)) {
    if (!fs.existsSync(path.join(SOURCE, name))) fs.rmSync(path.join(COPY, name));
  }
  for (const name of protoFiles(SOURCE)) {
    fs.copyFileSync(path.join(SOURCE, name), path.join(COPY, name));
  }
}

function main() {
  if (!fs.existsSync(SOURCE)) {
    console.log(`sync-protos: no ${SOURCE}; keeping the package's own copy`);
    return 0;
  }
  const changed = differences();
  if (process.argv.includes('--check')) {
    if (changed.length) {
      console.error(
        `clients/node/protos/servemesh/v1 differs from protos/servemesh/v1 (${changed.join(', ')}):` +
          ' run `npm --prefix clients/node run sync-protos` and commit the result',
      );
      return 1;
    }
    return 0;
  }
  sync();
  console.log(`sync-protos: ${changed.length ? `updated ${changed.join(', ')}` : 'up to date'}`);
  return 0;
}

if (require.main === module) process.exitCode = main();

module.exports = { SOURCE, COPY, differences };
