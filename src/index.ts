/**
 * `authgate`: the gateway as a library, without the CLI. Load a config, start a gateway, reload or close it.
 *
 * Entry points (package.json `exports`):
 * - `authgate`         this module
 * - `authgate/config`  config loading and checking only
 * - `authgate/testing` a dev issuer for users' own test suites
 * - `authgate/assertion` verifying the signed identity in an upstream
 */
export { startGateway, type GatewayOptions, type RunningGateway } from './server/listener.js';
export * from './config/index.js';
