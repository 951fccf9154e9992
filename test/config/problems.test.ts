import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/load.js';

/** A valid config; cases append or replace lines so each expected position is easy to check by eye. */
const ISSUER = `issuers:
  idp:
    issuer: https://idp.example.com/
    jwks_uri: https://idp.example.com/jwks.json
    audiences: [api]
`;
const UPSTREAM = `upstreams:
  api: { url: http://127.0.0.1:3000 }
`;
const ROUTE = `routes:
  - { name: all, match: { path: /** }, upstream: api }
`;

function lines(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  const result = parseConfig(text, 'gw.yaml', env);
  expect(result.config === undefined).toBe(result.problems.length > 0);
  return result.problems.map(formatProblem);
}

describe('invalid configs', () => {
  it.each([
    {
      case: 'misspelt upstream reference, with a suggestion',
      yaml: `version: 1\n${ISSUER}${UPSTREAM}routes:\n  - name: all\n    match: { path: /** }\n    upstream: apii\n`,
      expected: ['gw.yaml:12:15: routes[0].upstream: unknown upstream "apii", did you mean "api"?'],
    },
    {
      case: 'misspelt key, with a suggestion',
      yaml: `version: 1\nserver:\n  trusted_proxy: [10.0.0.0/8]\n${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:3:3: server.trusted_proxy: unknown key "trusted_proxy", did you mean "trusted_proxies"?'],
    },
    {
      case: 'misspelt forward-auth proxy, with a suggestion',
      yaml: `version: 1\nserver:\n  forward_auth: ingress_nginx\n${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: [
        'gw.yaml:3:17: server.forward_auth: "ingress_nginx" is not one of "off", "nginx", "ingress-nginx", "traefik", "envoy", did you mean "ingress-nginx"?',
      ],
    },
    {
      case: 'one mistake in an issuer a login provider uses: said once, and the routes naming the provider say nothing',
      yaml: [
        'version: 1',
        'issuers:',
        '  demo: { issuer: https://idp.example.com/, discovery: yes, audiences: [x] }',
        'upstreams:',
        '  app: { url: "http://127.0.0.1:3000" }',
        'login:',
        '  external_url: https://app.example.com',
        '  providers:',
        '    demo: { issuer: demo, client_id: x }',
        'routes:',
        '  - { name: a, match: { path: /a/** }, upstream: app, login: demo }',
        '  - { name: b, match: { path: /b/** }, upstream: app, login: demo }',
      ].join('\n'),
      expected: [
        'gw.yaml:3:3: issuers.demo: needs a key source: one of discovery: true, jwks_uri, jwks_file, secret or introspection',
        'gw.yaml:3:56: issuers.demo.discovery: expected true or false, got the string "yes"',
      ],
    },
    {
      case: 'forward-auth that no peer may ask',
      yaml: `version: 1\nserver:\n  forward_auth: nginx\n${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: [
        "gw.yaml:3:17: server.forward_auth: nginx is asked only by peers in server.trusted_proxies, and none is listed: add the proxy's addresses",
      ],
    },
    {
      case: 'unknown key with nothing close',
      yaml: `version: 1\nfrobnicate: true\n${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:2:1: frobnicate: unknown key "frobnicate"'],
    },
    {
      case: 'bad duration',
      yaml: `version: 1\n${ISSUER}    clock_skew: 30 seconds\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:7:17: issuers.idp.clock_skew: expected a duration like 500ms, 30s, 10m, 1h or 7d, got "30 seconds"'],
    },
    {
      case: 'several workers on the in-memory store while routes authenticate',
      yaml: `version: 1\nserver:\n  workers: 2\n${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:3:12: server.workers: more than one worker needs store.redis when routes authenticate or rate-limit: each worker would keep its own revocations and counters'],
    },
    {
      case: 'a clock skew longer than revocations are kept past exp',
      yaml: `version: 1\n${ISSUER}    clock_skew: 10m\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:7:17: issuers.idp.clock_skew: must be at most 5m'],
    },
    {
      case: 'two issuer entries with one iss',
      yaml: `version: 1\n${ISSUER}  other:\n    issuer: https://idp.example.com/\n    discovery: true\n    audiences: [billing]\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:8:13: issuers.other.issuer: "https://idp.example.com/" is already the issuer of "idp"; list every audience under that one entry'],
    },
    {
      case: 'HS secret too short',
      yaml: `version: 1\nissuers:\n  svc:\n    issuer: billing\n    secret: short-secret\n    audiences: [api]\n    algorithms: [HS256]\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:5:13: issuers.svc.secret: must be at least 32 bytes for HS256 (RFC 7518 §3.2), got 12'],
    },
    {
      case: 'HS512 secret shorter than the hash',
      yaml: `version: 1\nissuers:\n  svc:\n    issuer: billing\n    secret: "${'x'.repeat(40)}"\n    audiences: [api]\n    algorithms: [HS512]\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:5:13: issuers.svc.secret: must be at least 64 bytes for HS512 (RFC 7518 §3.2), got 40'],
    },
    {
      case: 'HS algorithm beside published keys (key confusion)',
      yaml: `version: 1\n${ISSUER}    algorithms: [RS256, HS256]\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:7:25: issuers.idp.algorithms[1]: "HS256" cannot be used with jwks_uri (HS* may not be mixed with asymmetric keys: key confusion)'],
    },
    {
      case: 'asymmetric algorithm beside a secret',
      yaml: `version: 1\nissuers:\n  svc:\n    issuer: billing\n    secret: "${'x'.repeat(32)}"\n    audiences: [api]\n    algorithms: [HS256, ES256]\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:7:25: issuers.svc.algorithms[1]: "ES256" needs a public key; an issuer with a secret allows only HS256, HS384, HS512'],
    },
    {
      case: 'alg none in any capitalisation, and a misspelt algorithm',
      yaml: `version: 1\n${ISSUER}    algorithms: [none, NoNe, rs256]\n${UPSTREAM}${ROUTE}`,
      expected: [
        'gw.yaml:7:18: issuers.idp.algorithms[0]: "none" is never accepted (unsigned tokens)',
        'gw.yaml:7:24: issuers.idp.algorithms[1]: "none" is never accepted (unsigned tokens)',
        'gw.yaml:7:30: issuers.idp.algorithms[2]: unknown algorithm "rs256", did you mean "RS256"?',
      ],
    },
    {
      case: 'missing and empty audiences',
      yaml: `version: 1\nissuers:\n  a:\n    issuer: https://a.example.com/\n    discovery: true\n  b:\n    issuer: https://b.example.com/\n    discovery: true\n    audiences: []\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:4:5: issuers.a.audiences: required', 'gw.yaml:9:16: issuers.b.audiences: must not be empty'],
    },
    {
      case: 'key sources: none, two, plain http off loopback',
      yaml: `version: 1\nissuers:\n  a:\n    issuer: https://a.example.com/\n    audiences: [api]\n  b:\n    issuer: https://b.example.com/\n    discovery: true\n    jwks_uri: https://b.example.com/jwks\n    audiences: [api]\n  c:\n    issuer: http://c.example.com/\n    discovery: true\n    audiences: [api]\n${UPSTREAM}${ROUTE}`,
      expected: [
        'gw.yaml:3:3: issuers.a: needs a key source: one of discovery: true, jwks_uri, jwks_file, secret or introspection',
        'gw.yaml:9:15: issuers.b.jwks_uri: only one key source is allowed, "discovery" is already set',
        'gw.yaml:12:13: issuers.c.issuer: must be an https URL (plain http only to 127.0.0.1, [::1] or localhost)',
      ],
    },
    {
      case: 'unset environment variable',
      yaml: `version: 1\n${ISSUER}upstreams:\n  api: { url: \${API_URL} }\n${ROUTE}`,
      expected: ['gw.yaml:8:15: upstreams.api.url: environment variable API_URL is not set (write ${API_URL:-default} to give a default)'],
    },
    {
      case: 'YAML syntax error',
      yaml: `version: 1\nserver:\n  listen: [127.0.0.1:8080\nadmin: {}\n`,
      expected: ['gw.yaml:4:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    },
    {
      case: 'a file that is not a mapping',
      yaml: `# settings\n- version: 1\n`,
      expected: ['gw.yaml:2:1: expected a mapping of settings starting with version: 1'],
    },
    {
      case: 'duplicate key',
      yaml: `version: 1\n${ISSUER}${UPSTREAM}${ROUTE}upstreams: {}\n`,
      expected: ['gw.yaml:11:1: upstreams: duplicate key'],
    },
    {
      case: 'version missing, wrong type, unsupported',
      yaml: `${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:1:1: version: required'],
    },
    {
      case: 'unsupported version',
      yaml: `version: 2\n${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:1:10: version: unsupported version (this authgate reads version 1)'],
    },
    {
      case: 'route rules: auth none with require and issuers, reserved prefix, bad pattern, method typo, duplicates',
      yaml: `version: 1\n${ISSUER}${UPSTREAM}routes:
  - name: open
    match: { path: /_authgate/verify }
    upstream: api
    auth: none
    issuers: [idp]
    require: { roles: [admin] }
  - name: open
    match: { path: /a/**/b, methods: [GTE] }
    upstream: api
    auth: maybe
`,
      expected: [
        'gw.yaml:11:20: routes[0].match.path: is under the reserved prefix /_authgate (see server.reserved_prefix)',
        'gw.yaml:14:14: routes[0].issuers: not allowed with auth: none (nothing is verified on this route)',
        'gw.yaml:15:14: routes[0].require: not allowed with auth: none (nothing is verified on this route)',
        'gw.yaml:16:11: routes[1].name: duplicate route name "open" (first at routes[0])',
        'gw.yaml:17:20: routes[1].match.path: path pattern "/a/**/b": "**" must be the last segment',
        'gw.yaml:17:39: routes[1].match.methods[0]: unknown method "GTE", did you mean "GET"?',
        'gw.yaml:19:11: routes[1].auth: "maybe" is not one of "none", "optional", "required"',
      ],
    },
    {
      case: 'references to issuers and rate limits, identity-keyed limit on a public route',
      yaml: `version: 1\n${ISSUER}${UPSTREAM}rate_limits:
  per-user: { key: subject, limit: 10, window: 1s }
routes:
  - name: a
    match: { path: /a }
    upstream: api
    issuers: [ipd]
    rate_limit: per-usr
  - name: b
    match: { path: /b }
    upstream: api
    auth: none
    rate_limit: [per-user]
`,
      expected: [
        'gw.yaml:15:15: routes[0].issuers[0]: unknown issuer "ipd", did you mean "idp"?',
        'gw.yaml:16:17: routes[0].rate_limit: unknown rate limit "per-usr", did you mean "per-user"?',
        'gw.yaml:21:18: routes[1].rate_limit[0]: rate limit "per-user" is keyed by subject, which a route with auth: none never has',
      ],
    },
    {
      case: 'server values: listen, CIDR, workers, TLS version and files, CORS wildcard with credentials',
      yaml: `version: 1
server:
  listen: 8080
  trusted_proxies: [10.0.0.0/33]
  workers: many
  tls: { cert_file: missing.crt, key_file: missing.key, min_version: TLSv1.1 }
admin: { listen: "[::1]:99999" }
cors: { origins: ["*"], credentials: true }
${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: [
        'gw.yaml:3:11: server.listen: expected host:port, got "8080"',
        'gw.yaml:4:21: server.trusted_proxies[0]: "10.0.0.0/33" is not an IP address or CIDR range',
        'gw.yaml:5:12: server.workers: expected a number of workers or "auto", got "many"',
        `gw.yaml:6:21: server.tls.cert_file: file not found: ${process.cwd()}/missing.crt`,
        `gw.yaml:6:44: server.tls.key_file: file not found: ${process.cwd()}/missing.key`,
        'gw.yaml:6:70: server.tls.min_version: TLSv1.1 is obsolete (RFC 8996), use "TLSv1.2" or "TLSv1.3"',
        'gw.yaml:7:18: admin.listen: "99999" is not a port number',
        'gw.yaml:8:19: cors.origins[0]: "*" cannot be combined with credentials: true',
      ],
    },
    {
      case: 'host patterns with a :port, which could never match a request (its port is ignored)',
      yaml: `version: 1
server:
  allowed_hosts: [api.example.com:8443]
${ISSUER}${UPSTREAM}routes:
  - { name: all, match: { host: "*.example.com:443", path: /** }, upstream: api }
`,
      expected: [
        'gw.yaml:3:19: server.allowed_hosts[0]: "api.example.com:8443" must not have a :port (hosts are matched without the request\'s port)',
        'gw.yaml:12:33: routes[0].match.host: "*.example.com:443" must not have a :port (hosts are matched without the request\'s port)',
      ],
    },
    {
      case: 'an admin token that cannot travel in a Bearer header',
      yaml: `version: 1\nadmin: { token: "pass word!" }\n${ISSUER}${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:2:17: admin.token: must consist of letters, digits and - . _ ~ + / (then =), as a Bearer token does'],
    },
    {
      case: 'identity and rate limit values',
      yaml: `version: 1\n${ISSUER}${UPSTREAM}${ROUTE}identity:
  headers:
    X-User-Id: subjekt
    Authorization: subject
    x-user-id: email
rate_limits:
  burst: { key: header.Bad Name, limit: 0, window: 0s, max_keys: 0 }
`,
      expected: [
        'gw.yaml:13:16: identity.headers.X-User-Id: "subjekt" is not one of "subject", "email", "roles", "permissions", "scopes", "issuer", "issuer_name", "client_id", "client_cert_subject", "client_cert_fingerprint", "claims.<path>", did you mean "subject"?',
        'gw.yaml:14:5: identity.headers.Authorization: "Authorization" cannot be an identity header',
        'gw.yaml:15:5: identity.headers.x-user-id: header "x-user-id" is listed twice (names are case-insensitive)',
        'gw.yaml:17:17: rate_limits.burst.key: "Bad Name" is not a valid header name',
        'gw.yaml:17:41: rate_limits.burst.limit: must be at least 1',
        'gw.yaml:17:52: rate_limits.burst.window: must be longer than 0',
        'gw.yaml:17:66: rate_limits.burst.max_keys: must be at least 1',
      ],
    },
    {
      case: 'a protected route without any issuer',
      yaml: `version: 1\n${UPSTREAM}${ROUTE}`,
      expected: ['gw.yaml:5:5: routes[0]: route "all" has auth: required, but no issuers are configured'],
    },
  ])('$case', ({ yaml, expected }) => {
    expect(lines(yaml)).toEqual(expected);
  });

  it('reports every problem of a file at once, in file order', () => {
    const yaml = `version: 1
server: { listen: "0.0.0.0:80", shutdown_grace: soon }
admin: { listen: 127.0.0.1:80 }
issuers:
  idp:
    issuer: https://idp.example.com/
    discovery: true
    algorithms: [none]
upstreams:
  api: { url: "ftp://files", timeot: 5s }
routes:
  - name: all
    match: { path: /** }
    upstream: apx
`;
    expect(lines(yaml)).toEqual([
      'gw.yaml:2:49: server.shutdown_grace: expected a duration like 500ms, 30s, 10m, 1h or 7d, got "soon"',
      'gw.yaml:3:18: admin.listen: must not share the address of server.listen',
      'gw.yaml:6:5: issuers.idp.audiences: required',
      'gw.yaml:8:18: issuers.idp.algorithms[0]: "none" is never accepted (unsigned tokens)',
      'gw.yaml:10:15: upstreams.api.url: "ftp://files" is not an http:// or https:// URL',
      'gw.yaml:10:30: upstreams.api.timeot: unknown key "timeot", did you mean "timeout"?',
      'gw.yaml:14:15: routes[0].upstream: unknown upstream "apx", did you mean "api"?',
    ]);
  });
});
