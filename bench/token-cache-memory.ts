/**
 * Memory and hit-path cost of the verified-token cache: verifies N distinct large HS256 tokens (default 10,000
 * of about 7.5 KB, the size of an access token carrying a hundred-odd group ids) through one Authenticator,
 * then reports the RSS growth after a full GC, what the cache kept, and the per-request cost of a cache hit and of
 * the token digest alone. `--budget` (MiB) overrides the cache's default byte budget.
 *
 *   node --expose-gc --import tsx bench/token-cache-memory.ts [--tokens 10000] [--size 7500] [--budget 256]
 */
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { JwtAuthenticator as Authenticator } from '../src/mechanisms/authenticators/jwt/authenticator.js';
import { tokenDigest, type TokenCache } from '../src/mechanisms/authenticators/jwt/token-cache.js';
import { loadConfig } from '../src/config/load.js';
import { createLogger } from '../src/observability/log.js';
import { Metrics } from '../src/observability/metrics.js';
import { AUDIENCE, HS_ISSUER, HS_SECRET } from './lib/tokens.js';

const { values } = parseArgs({
  options: { tokens: { type: 'string', default: '10000' }, size: { type: 'string', default: '7500' }, budget: { type: 'string' } },
});
const count = Number(values.tokens);
const targetSize = Number(values.size);
const MiB = 1024 * 1024;
const budget = values.budget === undefined ? undefined : Number(values.budget) * MiB;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const segment = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const HEADER = segment({ alg: 'HS256', typ: 'JWT' });

/** A token of about `targetSize` characters: distinct group ids fill the payload, as in a large enterprise token. */
function mint(index: number): string {
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: HS_ISSUER, aud: AUDIENCE, sub: `user-${index}`, jti: `jti-${index}`, iat: now, exp: now + 3600, groups: [] as string[] };
  while (HEADER.length + 44 + Math.ceil((JSON.stringify(claims).length * 4) / 3) < targetSize) claims.groups.push(randomUUID());
  const input = `${HEADER}.${segment(claims)}`;
  return `${input}.${createHmac('sha256', HS_SECRET).update(input).digest('base64url')}`;
}

function settledRss(): number {
  for (let i = 0; i < 3; i++) gc?.();
  return process.memoryUsage().rss;
}

const dir = await mkdtemp(join(tmpdir(), 'authgate-bench-cache-'));
const file = join(dir, 'gateway.yaml');
await writeFile(file, `version: 1
issuers:
  hs: { issuer: "${HS_ISSUER}", secret: "${HS_SECRET}", audiences: [${AUDIENCE}], algorithms: [HS256] }
upstreams: { api: { url: "http://127.0.0.1:1" } }
routes: [{ name: api, match: { path: /** }, upstream: api }]
`);
const loaded = await loadConfig(file);
if (!loaded.config) throw new Error('bench config invalid');
const authenticator = new Authenticator(loaded.config.issuers, {
  logger: createLogger('silent'),
  metrics: new Metrics(),
  ...(budget === undefined ? {} : { tokenCacheBytes: budget }),
});
await authenticator.start();

// Each token is dropped after use, so the only thing that keeps anything of it alive is the cache.
const before = settledRss();
let sampleLength = 0;
for (let index = 0; index < count; index++) {
  const token = mint(index);
  sampleLength = token.length;
  const result = await authenticator.verify(token, undefined);
  if (!result.ok) throw new Error(`token ${index} refused: ${result.reason}`);
}
const after = settledRss();

const hot = mint(count);
await authenticator.verify(hot, undefined);
/** Median µs per call over 15 batches: the machine's other load shows up in some batches, rarely in most. */
async function medianMicros(call: () => unknown): Promise<number> {
  const batch = 20_000;
  const samples: number[] = [];
  for (let round = 0; round < 15; round++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) await call();
    samples.push(Number(process.hrtime.bigint() - started) / 1000 / batch);
  }
  return samples.sort((a, b) => a - b)[7] as number;
}
const hitMicros = await medianMicros(() => authenticator.verify(hot, undefined));
const digestMicros = await medianMicros(() => tokenDigest(hot));
// The bench looks inside: how many entries the byte budget kept, and what it estimates they take.
const cache = (authenticator as unknown as { cache: TokenCache<unknown> }).cache;

console.log(JSON.stringify({
  tokens: count,
  tokenChars: sampleLength,
  rssBeforeMiB: +(before / MiB).toFixed(1),
  rssAfterMiB: +(after / MiB).toFixed(1),
  growthMiB: +((after - before) / MiB).toFixed(1),
  cachedEntries: cache.size,
  estimatedMiB: +(cache.bytes / MiB).toFixed(1),
  growthPerEntryKiB: +((after - before) / cache.size / 1024).toFixed(2),
  hitMicros: +hitMicros.toFixed(2),
  digestMicros: +digestMicros.toFixed(2),
}));
authenticator.close();
