import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { IdentityConfig } from '../../../src/config/types.js';
import { buildUpstreamHeaders, compileHeaderPolicy, type UpstreamHeaderContext } from '../../../src/mechanisms/finalizers/header-hygiene.js';

const identity: IdentityConfig = {
  headers: [
    { name: 'X-User-Id', field: { kind: 'subject' } },
    { name: 'X-User-Roles', field: { kind: 'roles' } },
    { name: 'X-Auth-Issuer', field: { kind: 'issuer' } },
    { name: 'X-Tenant', field: { kind: 'claim', path: 'tenant' } },
  ],
  listSeparator: ',',
  strip: ['X-User-*', 'X-Auth-*'],
  forwardToken: false,
  assertion: undefined,
};

const policy = compileHeaderPolicy({
  identity,
  tokenSources: [
    { kind: 'header', name: 'Authorization' },
    { kind: 'header', name: 'X-Access-Token' },
    { kind: 'cookie', name: 'access_token' },
  ],
});

const direct: UpstreamHeaderContext = {
  trustedPeer: false,
  clientIp: '203.0.113.9',
  peerIp: '203.0.113.9',
  proto: 'https',
  host: 'api.example.com',
  requestId: 'req-1',
  upgrade: false,
  forwardToken: false,
};

const viaProxy: UpstreamHeaderContext = { ...direct, trustedPeer: true, clientIp: '198.51.100.4', peerIp: '10.0.0.1' };

/** What authgate sets on every request from an untrusted peer. */
const directForwarding = {
  'x-request-id': 'req-1',
  'x-forwarded-for': '203.0.113.9',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'api.example.com',
};

const cases: ReadonlyArray<
  readonly [why: string, incoming: IncomingHttpHeaders, ctx: UpstreamHeaderContext, expected: Record<string, string>]
> = [
  [
    'ordinary headers pass unchanged',
    { host: 'api.example.com', accept: '*/*', 'user-agent': 'curl/8', 'content-type': 'text/plain', 'content-length': '3' },
    direct,
    { host: 'api.example.com', accept: '*/*', 'user-agent': 'curl/8', 'content-type': 'text/plain', 'content-length': '3', ...directForwarding },
  ],
  [
    'spoofed identity headers vanish in every spelling (Node merged the repeated lines already)',
    {
      accept: '*/*',
      'x-user-id': 'alice, bob',
      x_user_id: 'eve',
      'x-user-roles': 'admin',
      'x-user-email': 'a@example.com',
      'x-user-anything-else': '1',
      'x-auth-issuer': 'evil',
      x_auth_whatever: 'x',
      'x-tenant': 'acme',
      x_tenant: 'other',
      'x-userid': 'kept: not an identity header and no pattern matches',
    },
    direct,
    { accept: '*/*', 'x-userid': 'kept: not an identity header and no pattern matches', ...directForwarding },
  ],
  [
    'spoofed identity headers vanish from a trusted peer too',
    { 'x-user-id': 'alice', x_user_roles: 'admin' },
    viaProxy,
    { 'x-request-id': 'req-1', 'x-forwarded-for': '10.0.0.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' },
  ],
  [
    'method overrides are dropped',
    {
      'x-http-method-override': 'DELETE',
      'x-http-method': 'PUT',
      'x-method-override': 'PATCH',
      x_http_method_override: 'DELETE',
    },
    direct,
    directForwarding,
  ],
  [
    'original-URL and forward-auth headers never reach the upstream, even from a trusted peer',
    {
      'x-original-url': '/admin',
      'x-rewrite-url': '/admin',
      'x-original-uri': '/admin',
      'x-original-method': 'DELETE',
      'x-forwarded-uri': '/admin',
      'x-forwarded-method': 'DELETE',
      'x-forwarded-prefix': '/admin',
      x_original_url: '/admin',
    },
    viaProxy,
    { 'x-request-id': 'req-1', 'x-forwarded-for': '10.0.0.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' },
  ],
  [
    'forwarding headers from an untrusted peer are replaced or dropped',
    {
      host: 'api.example.com',
      'x-forwarded-for': '1.1.1.1',
      x_forwarded_for: '2.2.2.2',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'evil.example',
      forwarded: 'for=1.1.1.1;host=evil.example;proto=http',
      'x-real-ip': '1.1.1.1',
      x_real_ip: '1.1.1.1',
      'x-forwarded-port': '443',
      'x-forwarded-scheme': 'https',
      'x-forwarded-ssl': 'on',
      'x-client-ip': '1.1.1.1',
      'true-client-ip': '1.1.1.1',
      'cf-connecting-ip': '1.1.1.1',
      'client-ip': '1.1.1.1',
      'x-cluster-client-ip': '1.1.1.1',
      x_cluster_client_ip: '1.1.1.1',
      'fastly-client-ip': '1.1.1.1',
      'x-original-host': 'evil.example',
      'x-host': 'evil.example',
      'front-end-https': 'on',
      proxy: 'http://evil.example:3128',
      'x-request-id': 'chosen-by-client',
    },
    direct,
    { host: 'api.example.com', ...directForwarding },
  ],
  [
    'forwarding headers from a trusted peer are believed and extended',
    {
      'x-forwarded-for': '198.51.100.4, 10.0.0.9',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'public.example.com',
      forwarded: 'for=198.51.100.4;proto=http',
      'x-real-ip': '198.51.100.4',
      'x-forwarded-port': '443',
      'x-cluster-client-ip': '198.51.100.4',
      'front-end-https': 'on',
      proxy: 'http://evil.example:3128',
      'x-request-id': 'from-lb',
    },
    viaProxy,
    {
      forwarded: 'for=198.51.100.4;proto=http',
      'x-real-ip': '198.51.100.4',
      'x-forwarded-port': '443',
      'x-cluster-client-ip': '198.51.100.4',
      'front-end-https': 'on',
      'x-request-id': 'req-1',
      'x-forwarded-for': '198.51.100.4, 10.0.0.9, 10.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'public.example.com',
    },
  ],
  [
    'a trusted peer that sent no forwarding headers gets them from the connection',
    { accept: '*/*' },
    { ...viaProxy, proto: 'http', host: 'internal:8080' },
    { accept: '*/*', 'x-request-id': 'req-1', 'x-forwarded-for': '10.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'internal:8080' },
  ],
  [
    'no Host from the client: no X-Forwarded-Host',
    {},
    { ...direct, host: '' },
    { 'x-request-id': 'req-1', 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https' },
  ],
  [
    'hop-by-hop headers, and those Connection names, are dropped',
    {
      accept: '*/*',
      connection: 'keep-alive, X-Secret, x_other',
      'x-secret': 's',
      'x-other': 'o',
      'keep-alive': 'timeout=5',
      'proxy-connection': 'keep-alive',
      te: 'trailers',
      trailer: 'X-Checksum',
      'transfer-encoding': 'chunked',
      upgrade: 'websocket',
      'proxy-authorization': 'Basic dXNlcjpwYXNz',
    },
    direct,
    { accept: '*/*', ...directForwarding },
  ],
  [
    'Connection cannot remove the headers authgate sets',
    { connection: 'x-request-id, x-forwarded-for, X-Forwarded-Proto, x-forwarded-host' },
    direct,
    directForwarding,
  ],
  [
    'Connection cannot remove the Host the route was matched on',
    { host: 'api.example.com', connection: 'host, Host' },
    direct,
    { host: 'api.example.com', ...directForwarding },
  ],
  [
    'a WebSocket upgrade keeps Connection: upgrade and Upgrade',
    {
      connection: 'keep-alive, Upgrade',
      upgrade: 'websocket',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      'sec-websocket-version': '13',
      'keep-alive': 'timeout=5',
    },
    { ...direct, upgrade: true },
    {
      connection: 'upgrade',
      upgrade: 'websocket',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      'sec-websocket-version': '13',
      ...directForwarding,
    },
  ],
  [
    'the token and its cookie are removed; other cookies stay in order',
    {
      authorization: 'Bearer eyJ.token.sig',
      'x-access-token': 'eyJ.token.sig',
      x_access_token: 'eyJ.token.sig',
      cookie: 'theme=dark; access_token=eyJ.token.sig; session=s1',
    },
    direct,
    { cookie: 'theme=dark; session=s1', ...directForwarding },
  ],
  [
    'DPoP credentials and their proof are removed',
    { authorization: 'DPoP eyJ.token.sig', dpop: 'eyJ.proof.sig' },
    direct,
    directForwarding,
  ],
  [
    'a Cookie header holding only the token is dropped',
    { cookie: 'access_token=eyJ.token.sig' },
    direct,
    directForwarding,
  ],
  [
    'cookie surgery matches the whole name, spaces around it allowed',
    { cookie: 'my_access_token=1; access_token_old=2;  access_token = eyJ ;x=3; access_token=' },
    direct,
    { cookie: 'my_access_token=1; access_token_old=2; x=3', ...directForwarding },
  ],
  [
    'a Cookie header without the token cookie is kept byte for byte',
    { cookie: 'a=1;b=2;  c=3' },
    direct,
    { cookie: 'a=1;b=2;  c=3', ...directForwarding },
  ],
  [
    'Authorization with another scheme is dropped too',
    { authorization: 'Basic dXNlcjpwYXNz' },
    direct,
    directForwarding,
  ],
  [
    'forward_token keeps Authorization, the token header and the whole Cookie',
    {
      authorization: 'Bearer eyJ.token.sig',
      'x-access-token': 'eyJ.token.sig',
      cookie: 'theme=dark; access_token=eyJ.token.sig',
      'x-user-id': 'still-stripped',
    },
    { ...direct, forwardToken: true },
    {
      authorization: 'Bearer eyJ.token.sig',
      'x-access-token': 'eyJ.token.sig',
      cookie: 'theme=dark; access_token=eyJ.token.sig',
      ...directForwarding,
    },
  ],
  [
    'forward_token keeps DPoP credentials and their proof',
    { authorization: 'DPoP eyJ.token.sig', dpop: 'eyJ.proof.sig' },
    { ...direct, forwardToken: true },
    { authorization: 'DPoP eyJ.token.sig', dpop: 'eyJ.proof.sig', ...directForwarding },
  ],
];

describe('buildUpstreamHeaders', () => {
  it.each(cases)('%s', (_why, incoming, ctx, expected) => {
    expect(buildUpstreamHeaders(incoming, policy, ctx)).toStrictEqual(expected);
  });

  it('returns a new object and leaves the request headers alone', () => {
    const incoming: IncomingHttpHeaders = { 'x-user-id': 'alice', accept: '*/*' };
    const out = buildUpstreamHeaders(incoming, policy, direct);
    expect(out).not.toBe(incoming);
    expect(incoming).toStrictEqual({ 'x-user-id': 'alice', accept: '*/*' });
  });

  it('strips only the configured identity headers when there are no strip patterns', () => {
    const bare = compileHeaderPolicy({ identity: { ...identity, strip: [] }, tokenSources: [] });
    const out = buildUpstreamHeaders({ 'x-user-id': 'a', 'x-user-plan': 'gold', authorization: 'Bearer t' }, bare, direct);
    expect(out).toStrictEqual({ 'x-user-plan': 'gold', ...directForwarding });
  });

  it('classifies names past the 1,024 it remembers as it does the first ones', () => {
    const fresh = compileHeaderPolicy({ identity, tokenSources: [] });
    const many: IncomingHttpHeaders = {};
    for (let index = 0; index < 1100; index++) many[`x-custom-${index}`] = String(index);
    const expected = { ...many, ...directForwarding };
    many['x-user-late'] = 'forged';
    many.x_auth_late = 'forged';
    many['x-http-method-override'] = 'DELETE';
    expect(buildUpstreamHeaders(many, fresh, direct)).toStrictEqual(expected);
    expect(buildUpstreamHeaders(many, fresh, direct)).toStrictEqual(expected);
  });

  it('reads strip patterns literally apart from *', () => {
    const dotted = compileHeaderPolicy({ identity: { ...identity, headers: [], strip: ['X-Corp.Id', '*-Internal'] }, tokenSources: [] });
    const out = buildUpstreamHeaders({ 'x-corp.id': '1', 'x-corpxid': '2', xinternal: '3', 'a-internal': '4' }, dotted, direct);
    expect(out).toStrictEqual({ 'x-corpxid': '2', xinternal: '3', ...directForwarding });
  });
});

/** The raw request as a client would send it; Node parses it exactly as the gateway's listener does. */
async function headersAsNodeParsesThem(rawHeaderLines: readonly string[]): Promise<IncomingHttpHeaders> {
  const server = createServer((_req, res) => res.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const received = once(server, 'request') as Promise<[IncomingMessage]>;
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.write(`GET / HTTP/1.1\r\n${rawHeaderLines.join('\r\n')}\r\nConnection: close\r\n\r\n`);
    const [req] = await received;
    socket.destroy();
    return req.headers;
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

describe('buildUpstreamHeaders on headers parsed by Node', () => {
  it('removes every spelling and repetition of a spoofed identity header', async () => {
    const incoming = await headersAsNodeParsesThem([
      'Host: api.example.com',
      'X-User-Id: alice',
      'X-User-Id: bob',
      'x-user-id: carol',
      'X-USER-ID: dave',
      'X_User_Id: eve',
      'x_user_id: mallory',
      'X-User-Roles: admin',
      'X_Auth_Issuer: evil',
      'X-Tenant: acme',
      'X-HTTP-Method-Override: DELETE',
      'Authorization: Bearer eyJ.token.sig',
      'Cookie: theme=dark; access_token=eyJ.token.sig',
      'Cookie: session=s1',
      'Accept: */*',
    ]);
    // The premise: Node merges the dash spellings into one entry and keeps the underscore spelling apart.
    expect(incoming['x-user-id']).toBe('alice, bob, carol, dave');
    expect(incoming['x_user_id']).toBe('eve, mallory');
    expect(buildUpstreamHeaders(incoming, policy, direct)).toStrictEqual({
      host: 'api.example.com',
      cookie: 'theme=dark; session=s1',
      accept: '*/*',
      ...directForwarding,
    });
  });
});
