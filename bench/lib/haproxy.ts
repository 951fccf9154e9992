/**
 * HAProxy with `jwt_verify` as the native yardstick: it checks alg, iss, aud and exp and verifies the RS256
 * signature on every request (it has no cache), sets X-User-Id from `sub` after dropping the client's copy, and
 * forwards over kept-alive connections. One thread, pinned like the gateway. Used only when `haproxy` (Debian's
 * package, 2.5 or later) is installed.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnPinned, commandExists, type Spawned } from './proc.js';
import { AUDIENCE, RS_ISSUER } from './tokens.js';

export const hasHaproxy = commandExists('haproxy');

export interface HaproxySetup {
  readonly dir: string;
  readonly port: number;
  readonly upstreamPort: number;
  readonly publicKeyPem: string;
}

function haproxyConfig(setup: HaproxySetup, keyFile: string): string {
  const deny = `http-request deny deny_status 401 content-type application/json string '{"error":"invalid_token"}'`;
  return `global
  nbthread 1
  log stderr format raw local0 emerg
defaults
  mode http
  timeout connect 5s
  timeout client 65s
  timeout server 30s
  timeout http-keep-alive 65s
frontend gateway
  bind 127.0.0.1:${setup.port}
  http-request del-header X-User-Id
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  ${deny} unless { var(txn.alg) -m str RS256 }
  ${deny} unless { var(txn.iss) -m str ${RS_ISSUER} }
  ${deny} unless { var(txn.aud) -m str ${AUDIENCE} }
  ${deny} if { var(txn.exp),sub(txn.now) -m int lt 0 }
  ${deny} unless { var(txn.bearer),jwt_verify(txn.alg,"${keyFile}") -m int 1 }
  http-request set-header X-User-Id %[var(txn.bearer),jwt_payload_query('$.sub')]
  default_backend upstream
backend upstream
  http-reuse always
  server app 127.0.0.1:${setup.upstreamPort}
`;
}

/** Writes the key and config into `setup.dir` and starts HAProxy in the foreground, pinned to `cpu`. */
export async function startHaproxy(setup: HaproxySetup, cpu: number | undefined): Promise<Spawned> {
  const keyFile = join(setup.dir, 'haproxy-jwt.pem');
  const configFile = join(setup.dir, 'haproxy.cfg');
  await writeFile(keyFile, setup.publicKeyPem);
  await writeFile(configFile, haproxyConfig(setup, keyFile));
  return spawnPinned(cpu, 'haproxy', ['-db', '-f', configFile]);
}
