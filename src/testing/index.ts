/**
 * What a team needs to test its own service behind authgate: a dev token issuer, and the gateway itself to run
 * in-process in front of the service under test.
 */
export { startDevIssuer, type DevAlgorithm, type DevIssuer, type DevIssuerOptions, type MintOptions } from './dev-issuer.js';
export { formatProblem, loadConfig, parseConfig, type LoadResult } from '../config/load.js';
export { startGateway, type GatewayOptions, type RunningGateway } from '../server/listener.js';
