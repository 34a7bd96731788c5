#!/usr/bin/env node
'use strict';
// The compiled CLI lives in dist/ (built by `npm install` through the `prepare` script).
const { main } = require('../dist/src/cli/main.js');
main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() })
  .then((code) => { process.exitCode = code; })
  .catch((err) => {
    process.stderr.write(`pdp: internal error: ${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 2;
  });
