/** `bin/authgate.js` run from the TypeScript sources (under `node --import tsx`), so process tests need no build. */
import { main } from '../../src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`authgate: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
