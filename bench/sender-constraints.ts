/**
 * Per-request cost of the opaque-token and sender-constraint checks, in one process (no HTTP load):
 *
 *   node --import tsx bench/sender-constraints.ts [--iterations N]
 *
 * - a DPoP proof check (ES256 proof, memory replay store), proofs signed beforehand, each used once;
 * - an introspection cache hit (the token introspected once against a loopback endpoint first);
 * - a certificate-binding check, and reading a client certificate (done once per TLS connection).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Secret } from '../src/config/secret.js';
import { dpopHtu } from '../src/mechanisms/dpop/htu.js';
import { DpopVerifier } from '../src/mechanisms/dpop/proof.js';
import { MemoryReplayStore } from '../src/store/replay.js';
import { createDpopSigner } from './lib/tokens.js';
import { Introspector } from '../src/mechanisms/authenticators/introspection/introspector.js';
import { clientCertificate } from '../src/http/client-certificate.js';
import { checkCertificateBinding } from '../src/mechanisms/mtls/certificate-bound.js';
import { createLogger } from '../src/observability/log.js';
import { Metrics } from '../src/observability/metrics.js';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '20000' } } });
const N = Number(values.iterations);

async function timeAsync(label: string, count: number, run: (i: number) => unknown): Promise<void> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) await run(i);
  const us = Number(process.hrtime.bigint() - start) / 1000 / count;
  console.log(`${label.padEnd(44)} ${us.toFixed(2).padStart(9)} µs/op  (${count} ops)`);
}

async function benchDpop(): Promise<void> {
  const count = Math.min(N, 5000);
  const signer = createDpopSigner();
  const token = 'an-access-token-'.repeat(40);
  const htu = dpopHtu('https', 'api.example.com', '/orders/42');
  const proofs = Array.from({ length: count }, () => signer.proof('GET', htu, token));
  const verifier = new DpopVerifier({ algorithms: ['ES256'], maxAgeMs: 600_000, clockSkewMs: 5000, nonces: undefined, replay: new MemoryReplayStore(count) });
  await timeAsync('DPoP proof check (ES256, memory replay)', count, async (i) => {
    const result = await verifier.verify({ proof: proofs[i] as string, method: 'GET', htu, accessToken: token, jkt: signer.jkt });
    if (!result.ok) throw new Error(result.detail);
  });
}

async function benchIntrospectionHit(): Promise<void> {
  const endpoint = createServer((_req, res) => res.setHeader('content-type', 'application/json')
    .end(JSON.stringify({ active: true, iss: 'https://idp.example', aud: 'api', exp: Math.floor(Date.now() / 1000) + 3600, sub: 'alice', scope: 'a b' })));
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  const issuer = {
    name: 'idp', issuer: 'https://idp.example', keys: { kind: 'discovery' }, audiences: ['api'], algorithms: ['RS256'], clockSkewMs: 0,
    maxTokenAgeMs: undefined, tokenTypes: undefined, requireClaims: undefined,
    claims: { subject: 'sub', email: 'email', roles: 'roles', permissions: 'permissions', scopes: 'scope', clientId: 'client_id' },
    jwksCache: { maxAgeMs: 1, minRefetchIntervalMs: 1, staleIfErrorMs: 1 }, introspection: undefined, certificateBound: false, dpop: undefined,
  } as const;
  const introspector = await Introspector.create(issuer, {
    endpoint: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/`, clientId: 'gw', jwt: false,
    auth: { method: 'client_secret_basic', secret: new Secret('s') }, cache: { maxTtlMs: 3_600_000, negativeTtlMs: 0, maxEntries: 10 }, maxConcurrent: 1,
  }, { logger: createLogger('silent'), metrics: new Metrics(), nowMs: Date.now });
  const token = 'an-opaque-token-'.repeat(4);
  await introspector.introspect(token);
  await timeAsync('introspection cache hit', N, () => {
    if (!(introspector.introspect(token) as { ok: boolean }).ok) throw new Error('miss');
  });
  endpoint.close();
}

async function benchCertificates(): Promise<void> {
  const { execFileSync } = await import('node:child_process');
  const pem = execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-subj', '/O=Acme/CN=alice', '-days', '1'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const der = Buffer.from(pem.toString().replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const certificate = clientCertificate(der);
  const cnf = { 'x5t#S256': certificate.fingerprint };
  await timeAsync('certificate binding check', N, () => checkCertificateBinding(cnf, certificate));
  await timeAsync('client certificate read (once per connection)', Math.min(N, 5000), () => clientCertificate(der));
}

await benchDpop();
await benchIntrospectionHit();
await benchCertificates();
