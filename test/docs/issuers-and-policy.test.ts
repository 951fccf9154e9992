/**
 * docs/issuers-and-policy.md must not lie: every ```yaml block is loaded by the real config parser, and the
 * recipes' example tokens go through the real identity builder, issuer claim checks and rule evaluator.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { OutgoingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { buildIdentity, compileClaimsValidator } from '../../src/mechanisms/authenticators/jwt/claims.js';
import { formatProblem, parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { compileIdentityHeaders } from '../../src/mechanisms/finalizers/identity-headers.js';
import { evaluateRules, type RuleName } from '../../src/mechanisms/authorizers/require.js';

const DOC = resolve(import.meta.dirname, '../../docs/issuers-and-policy.md');
const PREAMBLE = 'version: 1\nupstreams:\n  api: { url: http://127.0.0.1:3000 }\n';
const ENV = {
  LEGACY_JWT_SECRET: 'a-legacy-secret-that-is-long-enough-for-hs256',
  INTROSPECTION_SECRET: 's',
  HYDRA_CLIENT_SECRET: 's',
  KEYCLOAK_CLIENT_SECRET: 's',
  OKTA_CLIENT_SECRET: 's',
  DPOP_NONCE_SECRET: 'a-nonce-secret-of-at-least-32-bytes-long',
};

const blocks = [...readFileSync(DOC, 'utf8').matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((match) => match[1] ?? '');

function load(block: string): GatewayConfig {
  const { config, problems } = parseConfig(PREAMBLE + block, DOC, ENV);
  expect(problems.map(formatProblem)).toEqual([]);
  return config as GatewayConfig;
}

/** The recipe that declares `issuerName`. */
function recipe(issuerName: string): GatewayConfig {
  const block = blocks.find((text) => text.includes(`\n  ${issuerName}:\n`));
  if (block === undefined) throw new Error(`no recipe declares issuer ${issuerName}`);
  return load(block);
}

describe('docs/issuers-and-policy.md', () => {
  it('has the recipes', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5);
  });

  it.each(blocks.map((block, index) => [index, block] as const))('yaml block %i is a valid config', (_index, block) => {
    load(block);
  });

  const now = Math.floor(Date.now() / 1000);
  const fresh = { iat: now - 60, exp: now + 3000 };

  /** [issuer, route, payload, failing rule or undefined when allowed] */
  const cases: Array<[string, string, Record<string, unknown>, RuleName | undefined]> = [
    ['auth0', 'admin', { sub: 'auth0|1', 'https://example.com/roles': ['admin'] }, undefined],
    ['auth0', 'admin', { sub: 'auth0|2', 'https://example.com/roles': ['user'] }, 'roles'],
    ['auth0', 'orders-write', { sub: 'auth0|1', permissions: ['read:orders', 'write:orders'] }, undefined],
    ['auth0', 'orders-write', { sub: 'auth0|1', permissions: ['write:orders:draft'] }, 'permissions'],
    ['auth0', 'orders-read', { sub: 'auth0|1', scope: 'openid read:orders' }, undefined],
    ['keycloak', 'admin', { sub: 'u1', typ: 'Bearer', realm_access: { roles: ['shop-admin'] } }, undefined],
    ['keycloak', 'catalogue-edit', { sub: 'u1', typ: 'Bearer', email_verified: true, resource_access: { 'shop-api': { roles: ['catalogue-editor'] } } }, undefined],
    ['keycloak', 'catalogue-edit', { sub: 'u1', typ: 'Bearer', email_verified: false, resource_access: { 'shop-api': { roles: ['catalogue-editor'] } } }, 'claims'],
    ['keycloak', 'catalogue-edit', { sub: 'u1', typ: 'Bearer', email_verified: true, realm_access: { roles: ['catalogue-editor'] } }, 'permissions'],
    ['keycloak', 'reports', { sub: 'u1', typ: 'Bearer', resource_access: { reporting: { roles: ['viewer'] } } }, undefined],
    ['keycloak', 'reports', { sub: 'u1', typ: 'Bearer', resource_access: { reporting: { roles: ['viewers'] } } }, 'claims'],
    ['okta', 'admin', { sub: 'a@example.com', groups: ['Everyone', 'Admins'] }, undefined],
    ['okta', 'api', { sub: 'a@example.com', scp: ['openid', 'api.read'] }, undefined],
    ['okta', 'api', { sub: 'a@example.com', scp: ['api.readwrite'] }, 'scopes'],
    ['entra', 'admin', { oid: 'o1', roles: ['Orders.Admin'] }, undefined],
    ['entra', 'orders-write', { oid: 'o1', scp: 'Orders.Read Orders.ReadWrite' }, undefined],
    ['entra', 'orders-write', { oid: 'o1', scp: 'Orders.Read' }, 'scopes'],
    ['entra', 'orders-read', { oid: 'o1', scp: 'Orders.Read' }, undefined],
    ['entra-v1', 'orders-read', { oid: 'o1', scp: 'Orders.ReadWrite', appid: 'c1' }, undefined],
    ['legacy', 'admin', { user_id: '42', type: 'access', role: 'admin' }, undefined],
    ['legacy', 'admin', { user_id: '42', type: 'access', role: 'administrator' }, 'roles'],
  ];

  it.each(cases)('%s recipe, route %s: %j', (issuerName, routeName, claims, failing) => {
    const config = recipe(issuerName);
    const issuer = config.issuers.get(issuerName);
    const route = config.routes.find((r) => r.name === routeName);
    expect(issuer && route).toBeTruthy();
    if (!issuer || !route) return;
    const payload = { iss: issuer.issuer, aud: issuer.audiences[0], ...fresh, ...claims };
    expect(compileClaimsValidator(issuer)(payload, 'JWT', Date.now())).toMatchObject({ ok: true });
    const outcome = route.require ? evaluateRules(route.require, buildIdentity(issuer, payload)) : { ok: true };
    if (failing === undefined) expect(outcome).toEqual({ ok: true });
    else expect(outcome).toMatchObject({ ok: false, rule: failing });
  });

  it.each([
    ['keycloak', { typ: 'ID' }],
    ['keycloak', { typ: 'Refresh' }],
    ['keycloak', {}],
    ['legacy', { type: 'refresh' }],
    ['legacy', {}],
  ])('the %s recipe refuses %j at verification', (issuerName, claims) => {
    const issuer = recipe(issuerName).issuers.get(issuerName);
    if (!issuer) throw new Error(`no issuer ${issuerName}`);
    const payload = { iss: issuer.issuer, aud: issuer.audiences[0], sub: 'x', ...fresh, ...claims };
    expect(compileClaimsValidator(issuer)(payload, 'JWT', Date.now())).toEqual({ ok: false, reason: 'claims' });
  });

  it('the Auth0 recipe tells the upstream the namespaced roles and the iss URL', () => {
    const config = recipe('auth0');
    const issuer = config.issuers.get('auth0');
    if (!issuer) throw new Error('no issuer auth0');
    const payload = { iss: issuer.issuer, sub: 'auth0|1', 'https://example.com/roles': ['admin', 'billing'], azp: 'spa', ...fresh };
    const headers: OutgoingHttpHeaders = {};
    compileIdentityHeaders(config.identity).write(buildIdentity(issuer, payload), headers, { peerCertificate: () => undefined });
    expect(headers).toMatchObject({ 'x-user-id': 'auth0|1', 'x-user-roles': 'admin,billing', 'x-auth-issuer': 'https://example.eu.auth0.com/' });
  });
});
