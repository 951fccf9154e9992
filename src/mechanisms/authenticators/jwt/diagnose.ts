import type { IssuerConfig } from '../../../config/types.js';
import { readClaim } from '../../../identity/claim-path.js';
import { normalizeTokenType, type ClaimsFailure } from './claims.js';

/**
 * Operator-facing explanations of why a token was refused: the values that were compared. They go to the access
 * log and `authgate explain`, never to the client (whose error description comes from a fixed list). Token
 * values quoted here are bounded, as the token is unverified input.
 */

const MAX_QUOTED = 120;

/** A value from the token, JSON-quoted and cut to a sane length. */
export function quote(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED)}…` : text;
}

export interface NearIssuer {
  readonly issuer: string;
  /** What sets it apart from the token's `iss`, e.g. `a trailing slash`. */
  readonly difference: string;
}

/** Only http(s) issuers have parts worth comparing; `urn:` and plain names are compared as text. */
function parseUrl(text: string): URL | undefined {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url : undefined;
  } catch {
    return undefined;
  }
}

/** For issuers that are not URLs: the same text but for letter case or a trailing slash. */
function textDifference(iss: string, configured: string): string | undefined {
  const bare = (text: string): string => text.replace(/\/+$/, '');
  if (bare(iss).toLowerCase() !== bare(configured).toLowerCase()) return undefined;
  return bare(iss) === bare(configured) ? 'a trailing slash' : 'letter case';
}

/** How `configured` differs from `iss`, when both name the same host (the usual copy-paste slips). */
function difference(iss: string, issUrl: URL, configured: string): string | undefined {
  const url = parseUrl(configured);
  if (url === undefined || url.host !== issUrl.host) return undefined;
  const differences: string[] = [];
  if (url.protocol !== issUrl.protocol) differences.push(`the scheme (${issUrl.protocol.slice(0, -1)} vs ${url.protocol.slice(0, -1)})`);
  const path = url.pathname + url.search;
  const issPath = issUrl.pathname + issUrl.search;
  if (path.replace(/\/+$/, '') === issPath.replace(/\/+$/, '')) {
    if (path !== issPath || configured.endsWith('/') !== iss.endsWith('/')) differences.push('a trailing slash');
  } else if (path.toLowerCase() === issPath.toLowerCase()) {
    differences.push('letter case in the path');
  } else {
    differences.push('the path');
  }
  if (differences.length === 0 && configured !== iss) differences.push('letter case');
  return differences.join(' and ');
}

/** The configured issuer a mistyped `iss` most likely meant: same host, differing in scheme, slash, case or path. */
export function nearestIssuer(iss: string, configured: Iterable<string>): NearIssuer | undefined {
  const issUrl = parseUrl(iss);
  let best: NearIssuer | undefined;
  for (const candidate of configured) {
    const diff = issUrl === undefined ? textDifference(iss, candidate) : difference(iss, issUrl, candidate);
    // Fewer differences first; a path difference is the weakest resemblance.
    if (diff !== undefined && (best === undefined || rank(diff) < rank(best.difference))) best = { issuer: candidate, difference: diff };
  }
  return best;
}

function rank(diff: string): number {
  return diff.split(' and ').length + (diff.includes('the path') ? 1 : 0);
}

/** `iss "https://x.auth0.com" is not a configured issuer; nearest "https://x.auth0.com/" (differs by a trailing slash)`. */
export function unknownIssuerDetail(iss: unknown, configured: Iterable<string>): string {
  if (iss === undefined) return 'the token has no iss claim';
  if (typeof iss !== 'string') return `iss ${quote(iss)} is not a string`;
  const near = nearestIssuer(iss, configured);
  const base = `iss ${quote(iss)} is not a configured issuer`;
  return near === undefined ? base : `${base}; nearest ${quote(near.issuer)} (differs by ${near.difference})`;
}

function instant(seconds: number): string {
  return Number.isFinite(seconds) && Math.abs(seconds) < 1e11 ? new Date(seconds * 1000).toISOString() : String(seconds);
}

function timeClaim(name: string, value: unknown, nowMs: number, skewMs: number, laterThanNow: boolean): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) return `${name} ${quote(value)} is not a number`;
  const byS = Math.round(Math.abs(value * 1000 - nowMs) / 1000);
  const side = laterThanNow ? 'in the future' : 'in the past';
  return `${name} ${value} (${instant(value)}) is ${byS} s ${side} of now ${Math.floor(nowMs / 1000)} (clock_skew ${skewMs / 1000} s)`;
}

function list(values: Iterable<string>): string {
  return `[${[...values].join(', ')}]`;
}

function failedRequirement(issuer: IssuerConfig, payload: Readonly<Record<string, unknown>>): string | undefined {
  for (const [path, expected] of Object.entries(issuer.requireClaims ?? {})) {
    const actual = readClaim(payload, path);
    if (actual !== expected) return `require_claims: ${path} is ${quote(actual)}, required ${quote(expected)}`;
  }
  return undefined;
}

function claimsDetail(issuer: IssuerConfig, payload: Readonly<Record<string, unknown>>): string {
  for (const name of ['nbf', 'iat'] as const) {
    const value = payload[name];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) return `${name} ${quote(value)} is not a number`;
  }
  const requirement = failedRequirement(issuer, payload);
  if (requirement !== undefined) return requirement;
  for (const path of ['sub', issuer.claims.subject, 'jti']) {
    const value = readClaim(payload, path);
    if (value !== undefined && typeof value !== 'string') return `${path} ${quote(value)} is not a string`;
  }
  return 'claims not accepted';
}

function notYetValidDetail(issuer: IssuerConfig, payload: Readonly<Record<string, unknown>>, nowMs: number): string {
  const late = (value: unknown): boolean => typeof value === 'number' && value * 1000 > nowMs + issuer.clockSkewMs;
  const name = late(payload.nbf) ? 'nbf' : 'iat';
  return timeClaim(name, payload[name], nowMs, issuer.clockSkewMs, true);
}

function tooOldDetail(issuer: IssuerConfig, payload: Readonly<Record<string, unknown>>): string {
  const maxAgeS = (issuer.maxTokenAgeMs ?? 0) / 1000;
  const { iat, exp } = payload;
  if (typeof iat !== 'number') return `no iat, and exp is more than max_token_age ${maxAgeS} s away`;
  return `issued at ${iat} (${instant(iat)}), exp - iat = ${Number(exp) - iat} s; max_token_age ${maxAgeS} s`;
}

/** Which claim check failed, with the values compared. Recomputed from the payload: only ever on a refusal. */
export function claimsFailureDetail(
  issuer: IssuerConfig,
  reason: ClaimsFailure,
  payload: Readonly<Record<string, unknown>>,
  typ: string | undefined,
  nowMs: number,
): string {
  switch (reason) {
    case 'expired':
      return payload.exp === undefined ? 'the token has no exp claim' : timeClaim('exp', payload.exp, nowMs, issuer.clockSkewMs, false);
    case 'not_yet_valid':
      return notYetValidDetail(issuer, payload, nowMs);
    case 'audience':
      return `aud ${quote(payload.aud)} matches none of audiences ${list(issuer.audiences)}`;
    case 'type':
      return `typ ${quote(typ)} is not in token_types ${list(issuer.tokenTypes ?? [])} (compared as ${quote(typ === undefined ? undefined : normalizeTokenType(typ))})`;
    case 'too_old':
      return tooOldDetail(issuer, payload);
    case 'claims':
      return claimsDetail(issuer, payload);
  }
}
