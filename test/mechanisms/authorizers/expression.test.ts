import { describe, expect, it } from 'vitest';
import { Context } from '../../../src/chain/context.js';
import { parseConfig, formatProblem } from '../../../src/config/load.js';
import { buildInputs, compileInputs } from '../../../src/mechanisms/authorizers/expression.js';
import type { Identity } from '../../../src/identity/identity.js';

const CONFIG = `version: 1
issuers:
  corp: { issuer: https://idp.example.com/, discovery: true, audiences: [api] }
upstreams:
  app: { url: http://127.0.0.1:3000 }
login:
  external_url: https://app.example.com
  providers: { corp: { issuer: corp, client_id: authgate, client_secret: s } }
  cookie: { name: __Host-authgate }
  keys: ['a-session-key-of-at-least-32-bytes!!']
tokens: [{ cookie: access_token }]
routes:
  - name: app
    match: { path: /app/** }
    upstream: app
    login: corp
    require: { expr: 'request.headers.cookie.contains("theme=")' }
`;

describe('what an expression reads of the request', () => {
  it('sees the Cookie header the upstream gets: without the session, sign-in flow and token cookies', () => {
    const { config, problems } = parseConfig(CONFIG, 'gw.yaml');
    expect(problems.map(formatProblem)).toEqual([]);
    const rule = config?.routes[0]?.require?.expr;
    if (config === undefined || rule === undefined) throw new Error('the config did not load');
    const cookie = '__Host-authgate=session.sig; __Host-authgate-login-abc=flow.sig; access_token=t; theme=dark';
    const ctx = new Context({
      method: 'GET', target: '/app/x', host: 'app.example.com', headers: { host: 'app.example.com', cookie },
      headersDistinct: { host: ['app.example.com'], cookie: [cookie] }, peerIp: '192.0.2.7', trustedPeer: false,
      proto: 'https', transport: 'request', requestId: 'expression-inputs',
    });
    const built = buildInputs(compileInputs(rule.reads, '/app/**', config), { claims: {} } as unknown as Identity, ctx);
    expect(built.ok && built.input.request.headers.get('cookie')).toBe('theme=dark');
  });
});
