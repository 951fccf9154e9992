/**
 * `authgate`: the gateway as a library, without the CLI. Load a config, start a gateway, reload or close it.
 *
 * Entry points (package.json `exports`):
 * - `authgate`         this module
 * - `authgate/config`  config loading and checking only
 * Planned: the assertion verifier for upstreams and the dev issuer for tests get their own entry points here.
 */
export { startGateway, type GatewayOptions, type RunningGateway } from './gateway/gateway.js';
export * from './config/index.js';
