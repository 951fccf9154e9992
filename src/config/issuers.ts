import { ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, HMAC_MIN_BYTES } from './algorithms.js';
import { readDpop } from './dpop.js';
import { HOUR, MINUTE, SECOND } from './duration.js';
import { keySlot, type Named, type Reader, type Section, type Slot } from './reader.js';
import { existingFile } from './files.js';
import { readIntrospection } from './introspection.js';
import { readCertificateBound } from './mtls.js';
import { didYouMean } from './suggest.js';
import type { ClaimValue, IssuerClaimPaths, IssuerConfig, IssuerKeySource, JwksCacheConfig } from './types.js';
import { parseKeyServerUrl } from './values.js';

const ALGORITHMS = [...ASYMMETRIC_ALGORITHMS, ...HMAC_ALGORITHMS];
const HTTP_URL = /^https?:\/\//i;
const KEY_SOURCES = ['discovery', 'jwks_uri', 'jwks_file', 'secret'] as const;

const DEFAULT_CLAIMS: IssuerClaimPaths = {
  subject: 'sub',
  email: 'email',
  roles: 'roles',
  permissions: 'permissions',
  scopes: 'scope',
  clientId: 'client_id',
};

/**
 * Revocations (SPEC §8) bear a jti until exp plus this grace, so an allowed skew may not outlast it: a revoked
 * token would pass again in the gap.
 */
const MAX_CLOCK_SKEW_MS = 5 * MINUTE;

export function readIssuers(r: Reader, slot: Slot, baseDir: string): Named<IssuerConfig> {
  const issuerNames = new Map<string, string>();
  return r.named(slot, (name, entry) => readIssuer(r, name, entry, baseDir, issuerNames));
}

/** `issuerNames`: `iss` value → the issuer entry that claimed it first. */
function readIssuer(r: Reader, name: string, slot: Slot, baseDir: string, issuerNames: Map<string, string>): IssuerConfig | undefined {
  const s = r.section(slot, [
    'issuer', 'discovery', 'jwks_uri', 'jwks_file', 'secret', 'audiences', 'algorithms', 'clock_skew',
    'max_token_age', 'token_types', 'require_claims', 'claims', 'jwks_cache', 'introspection', 'certificate_bound', 'dpop',
  ]);
  const introspection = readIntrospection(r, s.slot('introspection'), { baseDir, discovery: r.boolean(s.slot('discovery')) === true });
  const keys = readKeySource(r, s, slot, baseDir, s.has('introspection'));
  const issuerSlot = s.slot('issuer');
  const issuer = r.required(issuerSlot) ? readIssuerIdentifier(r, issuerSlot, s.has('discovery')) : undefined;
  // One `iss` must mean one set of keys, rules and revocations; a second entry would make the outcome depend on
  // which entry verified a token first. Several audiences belong in one entry's `audiences`.
  const claimedBy = issuer === undefined ? undefined : issuerNames.get(issuer);
  if (claimedBy !== undefined) {
    r.problem(issuerSlot, `"${issuer}" is already the issuer of "${claimedBy}"; list every audience under that one entry`);
  } else if (issuer !== undefined) {
    issuerNames.set(issuer, name);
  }
  const clockSkewSlot = s.slot('clock_skew');
  const clockSkewMs = r.duration(clockSkewSlot) ?? 30 * SECOND;
  if (clockSkewMs > MAX_CLOCK_SKEW_MS) r.problem(clockSkewSlot, 'must be at most 5m');
  const algorithms = readAlgorithms(r, s.slot('algorithms'), keys ?? undefined);
  if (keys?.kind === 'secret' && algorithms !== undefined) checkSecretLength(r, s.slot('secret'), keys.secret, algorithms);
  const audiencesSlot = s.slot('audiences');
  const audiences = r.required(audiencesSlot) ? r.stringList(audiencesSlot, { nonEmpty: true }) : undefined;
  const config: Omit<IssuerConfig, 'issuer' | 'keys' | 'audiences' | 'algorithms'> = {
    name,
    clockSkewMs,
    maxTokenAgeMs: r.duration(s.slot('max_token_age'), { positive: true }),
    tokenTypes: r.stringList(s.slot('token_types'), { nonEmpty: true }),
    requireClaims: s.has('require_claims') ? readClaimValues(r, s.slot('require_claims')) : undefined,
    claims: readClaimPaths(r, s.slot('claims')),
    jwksCache: readJwksCache(r, s.slot('jwks_cache')),
    introspection,
    certificateBound: readCertificateBound(r, s.slot('certificate_bound')),
    dpop: readDpop(r, s.slot('dpop')),
  };
  if (issuer === undefined || keys === null || audiences === undefined || algorithms === undefined) return undefined;
  if (s.has('introspection') && introspection === undefined) return undefined;
  if (s.has('dpop') && config.dpop === undefined) return undefined;
  return { ...config, issuer, keys, audiences, algorithms };
}

/**
 * At most one of `discovery: true`, `jwks_uri`, `jwks_file`, `secret`; none only beside `introspection` (then
 * undefined: every token is introspected). Null: a problem was recorded.
 */
function readKeySource(r: Reader, s: Section, slot: Slot, baseDir: string, introspection: boolean): IssuerKeySource | undefined | null {
  const given = KEY_SOURCES.filter((key) => s.has(key) && (key !== 'discovery' || r.boolean(s.slot(key)) === true));
  const [source, second] = given;
  if (source === undefined) {
    if (introspection) return undefined;
    r.problem(keySlot(slot), 'needs a key source: one of discovery: true, jwks_uri, jwks_file, secret or introspection');
    return null;
  }
  if (second !== undefined) {
    r.problem(s.slot(second), `only one key source is allowed, "${source}" is already set`);
    return null;
  }
  return readOneKeySource(r, s.slot(source), source, baseDir) ?? null;
}

function readOneKeySource(r: Reader, sourceSlot: Slot, source: (typeof KEY_SOURCES)[number], baseDir: string): IssuerKeySource | undefined {
  switch (source) {
    case 'discovery':
      return { kind: 'discovery' };
    case 'jwks_uri': {
      const text = r.string(sourceSlot);
      if (text === undefined) return undefined;
      const url = parseKeyServerUrl(text);
      return typeof url === 'string' ? r.problem(sourceSlot, url) : { kind: 'jwks_uri', url: url.href };
    }
    case 'jwks_file': {
      const path = existingFile(r, sourceSlot, baseDir);
      return path === undefined ? undefined : { kind: 'jwks_file', path };
    }
    case 'secret': {
      const secret = r.string(sourceSlot);
      return secret === undefined ? undefined : { kind: 'secret', secret };
    }
  }
}

/**
 * The expected `iss`. Discovery needs a URL; any issuer written as an http(s) URL must be https (or loopback
 * http, for development). Other strings (`urn:…`, a service name) are fine for static keys and secrets.
 */
function readIssuerIdentifier(r: Reader, slot: Slot, discovery: boolean): string | undefined {
  const text = r.string(slot);
  if (text === undefined) return undefined;
  if (!discovery && !HTTP_URL.test(text)) return text;
  const url = parseKeyServerUrl(text);
  return typeof url === 'string' ? r.problem(slot, url) : text;
}

function readAlgorithms(r: Reader, slot: Slot, keys: IssuerKeySource | undefined): string[] | undefined {
  const secret = keys?.kind === 'secret';
  if (slot.node === undefined) return [secret ? 'HS256' : 'RS256'];
  return r.items(slot, (item) => {
    const algorithm = r.string(item);
    if (algorithm === undefined) return undefined;
    if (algorithm.toLowerCase() === 'none') return r.problem(item, '"none" is never accepted (unsigned tokens)');
    if (!ALGORITHMS.includes(algorithm)) {
      return r.problem(item, `unknown algorithm "${algorithm}"${didYouMean(algorithm, ALGORITHMS)}`);
    }
    const hmac = HMAC_ALGORITHMS.includes(algorithm);
    if (secret && !hmac) {
      return r.problem(item, `"${algorithm}" needs a public key; an issuer with a secret allows only ${HMAC_ALGORITHMS.join(', ')}`);
    }
    if (keys !== undefined && !secret && hmac) {
      return r.problem(item, `"${algorithm}" cannot be used with ${keys.kind} (HS* may not be mixed with asymmetric keys: key confusion)`);
    }
    return algorithm;
  }, { nonEmpty: true });
}

function checkSecretLength(r: Reader, slot: Slot, secret: string, algorithms: readonly string[]): void {
  const bytes = Buffer.byteLength(secret, 'utf8');
  for (const algorithm of algorithms) {
    const needed = HMAC_MIN_BYTES[algorithm] ?? 0;
    if (bytes < needed) {
      r.problem(slot, `must be at least ${needed} bytes for ${algorithm} (RFC 7518 §3.2), got ${bytes}`);
      return;
    }
  }
}

export function readClaimValues(r: Reader, slot: Slot): Record<string, ClaimValue> | undefined {
  const values: Array<[string, ClaimValue]> = [];
  let valid = true;
  for (const { name, slot: entry } of r.entries(slot)) {
    const value = r.claimValue(entry);
    if (value === undefined) valid = false;
    else values.push([name, value]);
  }
  return valid && values.length > 0 ? Object.fromEntries(values) : undefined;
}

function readClaimPaths(r: Reader, slot: Slot): IssuerClaimPaths {
  const s = r.section(slot, ['subject', 'email', 'roles', 'permissions', 'scopes', 'client_id']);
  return {
    subject: r.string(s.slot('subject')) ?? DEFAULT_CLAIMS.subject,
    email: r.string(s.slot('email')) ?? DEFAULT_CLAIMS.email,
    roles: r.string(s.slot('roles')) ?? DEFAULT_CLAIMS.roles,
    permissions: r.string(s.slot('permissions')) ?? DEFAULT_CLAIMS.permissions,
    scopes: r.string(s.slot('scopes')) ?? DEFAULT_CLAIMS.scopes,
    clientId: r.string(s.slot('client_id')) ?? DEFAULT_CLAIMS.clientId,
  };
}

function readJwksCache(r: Reader, slot: Slot): JwksCacheConfig {
  const s = r.section(slot, ['max_age', 'min_refetch_interval', 'stale_if_error']);
  return {
    maxAgeMs: r.duration(s.slot('max_age'), { positive: true }) ?? 10 * MINUTE,
    minRefetchIntervalMs: r.duration(s.slot('min_refetch_interval')) ?? 30 * SECOND,
    staleIfErrorMs: r.duration(s.slot('stale_if_error')) ?? 24 * HOUR,
  };
}
