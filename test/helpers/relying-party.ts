import { DEFAULT_FETCH_LIMITS } from '../../src/http/json-request.js';
import { IssuerKeySet, type KeyedIssuer } from '../../src/mechanisms/authenticators/jwt/key-set.js';
import type { LoginProviderConfig } from '../../src/config/login.js';
import { Secret } from '../../src/config/secret.js';
import { randomId } from '../../src/login/cookies.js';
import { RelyingParty } from '../../src/login/oidc.js';
import type { PreLogin, Session } from '../../src/login/sessions/types.js';
import { IssuerSignatures } from '../../src/login/signatures.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import type { TestProvider } from './oidc-login-provider.js';

/** The `issuers:` entry (named corp) trusting the test provider through discovery. */
export function issuerOf(provider: TestProvider): KeyedIssuer {
  return {
    name: 'corp', issuer: provider.issuer, keys: { kind: 'discovery' }, audiences: [provider.clientId], algorithms: ['RS256'],
    clockSkewMs: 30_000, maxTokenAgeMs: undefined, tokenTypes: undefined, requireClaims: undefined,
    claims: { subject: 'sub', email: 'email', roles: 'roles', permissions: 'permissions', scopes: 'scope', clientId: 'client_id' },
    jwksCache: { maxAgeMs: 600_000, minRefetchIntervalMs: 0, staleIfErrorMs: 86_400_000 },
    introspection: undefined,
    certificateBound: false,
    dpop: undefined,
  };
}

/** The `login.providers.corp` entry for the test provider's client (client_secret_basic). */
export function providerConfig(provider: TestProvider, overrides: Partial<LoginProviderConfig> = {}): LoginProviderConfig {
  return {
    name: 'corp', issuer: 'corp', clientId: provider.clientId,
    clientAuth: { method: 'client_secret_basic', secret: new Secret(provider.clientSecret) },
    scopes: ['openid', 'email', 'offline_access'], params: {}, identityFrom: 'id_token', ...overrides,
  };
}

const keySets: IssuerKeySet[] = [];

/** The issuer's key set as the gateway would hold it (loaded through discovery); stopped by `releaseKeySets`. */
export async function signaturesOf(issuer: KeyedIssuer): Promise<IssuerSignatures> {
  const keys = new IssuerKeySet(issuer, { logger: createLogger('silent'), metrics: new Metrics(), now: Date.now, fetchLimits: DEFAULT_FETCH_LIMITS });
  keySets.push(keys);
  await keys.start();
  return new IssuerSignatures(keys, issuer.algorithms);
}

export function releaseKeySets(): void {
  for (const keys of keySets.splice(0)) keys.release();
}

export async function relyingParty(provider: TestProvider, redirectUri: string, overrides: Partial<LoginProviderConfig> = {}): Promise<RelyingParty> {
  const issuer = issuerOf(provider);
  return RelyingParty.discover({ provider: providerConfig(provider, overrides), issuer, redirectUri, signatures: await signaturesOf(issuer) });
}

/** One full flow through the provider's pages as `user`: the callback's query and the flow's record. */
export async function authorize(provider: TestProvider, rp: RelyingParty, user = 'alice'): Promise<{ query: string; preLogin: PreLogin }> {
  const { url, preLogin } = await rp.begin('/app');
  const callback = await provider.signIn(url, user);
  return { query: callback.search, preLogin };
}

/** A session for `user` made from a real sign-in. */
export async function signedInSession(provider: TestProvider, rp: RelyingParty, user = 'alice', now = Date.now()): Promise<Session> {
  const { query, preLogin } = await authorize(provider, rp, user);
  const result = await rp.complete(query, preLogin);
  if (!result.ok) throw new Error(`sign-in failed: ${result.reason} ${result.detail}`);
  return { id: randomId(), provider: rp.name, subject: result.subject, idpSid: result.idpSid, claims: result.claims, tokens: result.tokens, createdAt: now, lastSeenAt: now };
}
