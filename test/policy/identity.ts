import type { Identity } from '../../src/auth/types.js';
import type { IssuerConfig, RequireRules } from '../../src/config/types.js';

export const testIssuer: IssuerConfig = {
  name: 'test',
  issuer: 'https://idp.example.com/',
  keys: { kind: 'discovery' },
  audiences: ['https://api.example.com'],
  algorithms: ['RS256'],
  clockSkewMs: 30_000,
  maxTokenAgeMs: undefined,
  tokenTypes: undefined,
  requireClaims: undefined,
  claims: { subject: 'sub', email: 'email', roles: 'roles', permissions: 'permissions', scopes: 'scope', clientId: 'client_id' },
  jwksCache: { maxAgeMs: 600_000, minRefetchIntervalMs: 30_000, staleIfErrorMs: 86_400_000 },
};

/** An Identity as the authenticator would build it; tests override only what they look at. */
export function identity(overrides: Partial<Identity> = {}): Identity {
  return {
    issuer: testIssuer,
    subject: 'alice',
    email: undefined,
    roles: [],
    permissions: [],
    scopes: [],
    clientId: undefined,
    jti: 'jti-1',
    iat: 1_700_000_000,
    exp: 1_700_003_600,
    claims: {},
    ...overrides,
  };
}

export function rules(overrides: Partial<RequireRules>): RequireRules {
  return { roles: undefined, permissions: undefined, scopes: undefined, claims: undefined, ...overrides };
}
