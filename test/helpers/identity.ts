import type { Identity } from '../../src/identity/identity.js';
import type { IssuerConfig, RequireRules } from '../../src/config/types.js';
import { issuerConfigFor } from './idp.js';

export const testIssuer: IssuerConfig = issuerConfigFor(
  { issuer: 'https://idp.example.com/', audience: 'https://api.example.com', jwksUri: 'https://idp.example.com/jwks.json' },
  { name: 'test', keys: { kind: 'discovery' }, algorithms: ['RS256'] },
);

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
  return { roles: undefined, permissions: undefined, scopes: undefined, claims: undefined, expr: undefined, ...overrides };
}
