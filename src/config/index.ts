/**
 * `authgate/config`: load and check a gateway.yaml from code, with the same problems `authgate check` prints
 * (`FILE:LINE:COL: key: message`).
 */
export { formatProblem, loadConfig, parseConfig, type ConfigProblem, type LoadResult } from './load.js';
export type * from './types.js';
