#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err) => {
    console.error(`authgate: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
