import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { GatewayConfig, IdentityConfig, TokenSource } from '../../config/types.js';
import { canonicalName } from '../../http/headers.js';
import { connectionListed, HOP_BY_HOP } from '../../http/hop-by-hop.js';
import type { Finalizer, MechanismType } from '../../chain/kinds.js';
import { PASS } from '../../chain/verdict.js';
import { compileTokenQueryStripper } from '../credentials/query.js';

/**
 * Header hygiene (SPEC §1 step 3): the headers an upstream gets, built fresh from the client's. Runs on every
 * route, `auth: none` included, so an upstream can trust that identity and forwarding headers come from authgate.
 *
 * Names are compared lower-case and with `_` read as `-`: CGI/WSGI upstreams fold `X_User_Id` into `X-User-Id`,
 * so a client must not be able to smuggle an identity header past the gateway by spelling it with underscores.
 * Node already merges repeated lines of one name into one `req.headers` entry, so dropping the entry drops them all.
 */
export interface HeaderPolicy {
  /** Cookie names that carry the token, removed from Cookie unless the token is forwarded. */
  readonly tokenCookies: readonly string[];
  /** The session cookie: kept from the upstream even with forward_token (which forwards the access token instead). */
  readonly sessionCookies: readonly string[];
  /** Cookies named with one of these prefixes are always kept from the upstream (sign-in flow cookies). */
  readonly sessionCookiePrefixes: readonly string[];
  /**
   * How a header name as Node gives it is treated, by its canonical name: an `identity.strip` pattern first, then
   * the disposition of the name; a name with neither is kept.
   */
  classify(name: string): NameClass;
}

/** A header name's canonical form and its treatment; `strip` (an `identity.strip` pattern) outranks the rest. */
export interface NameClass {
  readonly canonical: string;
  readonly treatment: Disposition | 'strip' | undefined;
}

export interface UpstreamHeaderContext {
  /** The TCP peer is in trusted_proxies. */
  readonly trustedPeer: boolean;
  readonly clientIp: string;
  readonly peerIp: string;
  /** Of the connection to authgate. */
  readonly proto: 'http' | 'https';
  /** The Host the client sent. */
  readonly host: string;
  readonly requestId: string;
  /** WebSocket upgrade: keep Connection: upgrade / Upgrade. */
  readonly upgrade: boolean;
  /** Keep Authorization / the token header / the token cookie. */
  readonly forwardToken: boolean;
}

type Disposition = 'drop' | 'trusted-only' | 'token' | 'cookie' | 'upgrade';

/**
 * Always dropped besides the hop-by-hop headers: method overrides, URL rewrites and the original-request
 * headers authgate consumes itself for forward-auth, and the forwarding headers rebuilt below.
 */
const ALWAYS_DROPPED = [
  'proxy-authorization',
  // httpoxy (CVE-2016-5385): CGI upstreams turn it into HTTP_PROXY.
  'proxy',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-original-method',
  'x-forwarded-uri',
  'x-forwarded-method',
  'x-forwarded-prefix',
  'x-request-id',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
];

/** Believed only from a trusted proxy: each names the client or the scheme it used, which only a proxy can know. */
const TRUSTED_ONLY = [
  'forwarded',
  'x-real-ip',
  'x-forwarded-port',
  'x-forwarded-scheme',
  'x-forwarded-ssl',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'client-ip',
  'x-cluster-client-ip',
  'fastly-client-ip',
  'x-original-host',
  'x-host',
  'front-end-https',
];

/**
 * Dropped headers a proxy in front rebuilds itself (hop-by-hop, request id, X-Forwarded-*): when that proxy keeps
 * the data path (Envoy ext_authz), asking it to remove them would break its own forwarding.
 */
const REBUILT_BY_PROXY = new Set([...HOP_BY_HOP, 'x-request-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);


function stripRegex(patterns: readonly string[]): RegExp | undefined {
  if (patterns.length === 0) return undefined;
  const alternatives = patterns.map((pattern) =>
    canonicalName(pattern)
      .split('*')
      .map((literal) => literal.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*'),
  );
  return new RegExp(`^(?:${alternatives.join('|')})$`);
}

/** The one header policy of a config: what the proxy strips, what forward-auth names, what expressions see. */
export function headerPolicyOf(config: Pick<GatewayConfig, 'identity' | 'tokens' | 'login'>): HeaderPolicy {
  return compileHeaderPolicy({ identity: config.identity, tokenSources: config.tokens, loginCookie: config.login?.cookie.name });
}

export function compileHeaderPolicy(options: {
  identity: IdentityConfig;
  tokenSources: readonly TokenSource[];
  /** `login.cookie.name`: the session cookie and its flows' `{name}-login-*` cookies never reach an upstream. */
  loginCookie?: string | undefined;
}): HeaderPolicy {
  const dispositions = new Map<string, Disposition>();
  dispositions.set('authorization', 'token');
  // The DPoP proof goes with the token: an upstream that does not check proofs has no use for it.
  dispositions.set('dpop', 'token');
  dispositions.set('cookie', 'cookie');
  const tokenCookies: string[] = [];
  for (const source of options.tokenSources) {
    if (source.kind === 'header') dispositions.set(canonicalName(source.name), 'token');
    if (source.kind === 'cookie') tokenCookies.push(source.name);
  }
  const sessionCookies = options.loginCookie === undefined ? [] : [options.loginCookie];
  const sessionCookiePrefixes = options.loginCookie === undefined ? [] : [`${options.loginCookie}-login-`];
  tokenCookies.push(...sessionCookies);
  for (const name of TRUSTED_ONLY) dispositions.set(name, 'trusted-only');
  // Set last: authgate's own headers win over any other treatment of the same name.
  for (const name of HOP_BY_HOP) dispositions.set(name, 'drop');
  for (const name of ALWAYS_DROPPED) dispositions.set(name, 'drop');
  // Hop-by-hop as well, but a WebSocket handshake passes it on: set after the drops, or every upgrade would break.
  dispositions.set('upgrade', 'upgrade');
  for (const header of options.identity.headers) dispositions.set(canonicalName(header.name), 'drop');
  // A client's own assertion must never reach an upstream that trusts the header: on every route, signed or not.
  if (options.identity.assertion) dispositions.set(canonicalName(options.identity.assertion.header), 'drop');
  const strip = stripRegex(options.identity.strip);
  const classify = memoized((name: string): NameClass => {
    const canonical = canonicalName(name);
    return { canonical, treatment: strip?.test(canonical) === true ? 'strip' : dispositions.get(canonical) };
  });
  return { tokenCookies, sessionCookies, sessionCookiePrefixes, classify };
}

/** Header names classified so far, per policy: clients send a handful of names again and again. */
const CLASSIFIED_NAMES = 1024;

/** `classify` remembered for the first CLASSIFIED_NAMES names, so a client sending random names cannot grow it. */
function memoized(classify: (name: string) => NameClass): (name: string) => NameClass {
  const known = new Map<string, NameClass>();
  return (name) => {
    let found = known.get(name);
    if (found === undefined) {
      found = classify(name);
      if (known.size < CLASSIFIED_NAMES) known.set(name, found);
    }
    return found;
  };
}

export function buildUpstreamHeaders(
  incoming: IncomingHttpHeaders,
  policy: HeaderPolicy,
  ctx: UpstreamHeaderContext,
): OutgoingHttpHeaders {
  const connectionListed = connectionListedNames(incoming.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    const { canonical, treatment } = policy.classify(name);
    if (connectionListed?.has(canonical)) continue;
    switch (treatment) {
      case undefined:
        out[name] = value;
        break;
      case 'drop':
      case 'strip':
        break;
      case 'trusted-only':
        if (ctx.trustedPeer) out[name] = value;
        break;
      case 'token':
        // Only the spelling the token was read from: an `X_Token` beside `X-Token` could be the one a CGI upstream reads.
        if (ctx.forwardToken && name === canonical) out[name] = value;
        break;
      case 'cookie': {
        const kept = upstreamCookie(value as string, policy, ctx.forwardToken);
        if (kept !== '') out[name] = kept;
        break;
      }
      case 'upgrade':
        if (ctx.upgrade) {
          out.connection = 'upgrade';
          out[name] = value;
        }
        break;
    }
  }

  out['x-request-id'] = ctx.requestId;
  const forwardedFor = incoming['x-forwarded-for'];
  out['x-forwarded-for'] = !ctx.trustedPeer
    ? ctx.clientIp
    : forwardedFor
      ? `${forwardedFor}, ${ctx.peerIp}`
      : ctx.peerIp;
  out['x-forwarded-proto'] = (ctx.trustedPeer && incoming['x-forwarded-proto']) || ctx.proto;
  const forwardedHost = (ctx.trustedPeer && incoming['x-forwarded-host']) || ctx.host;
  if (forwardedHost) out['x-forwarded-host'] = forwardedHost;
  return out;
}

/**
 * The names, as the client spelt them, of the incoming headers the gateway would keep from an upstream and that a
 * proxy keeping the data path must therefore remove: identity and `identity.strip` headers in any spelling, method
 * overrides and URL rewrites, and the token unless it is forwarded.
 */
export function headersForProxyToRemove(incoming: IncomingHttpHeaders, policy: HeaderPolicy, forwardToken: boolean): string[] {
  const names: string[] = [];
  for (const name in incoming) {
    const { canonical, treatment } = policy.classify(name);
    const removed =
      treatment === 'strip' || (treatment === 'drop' && !REBUILT_BY_PROXY.has(canonical)) || (treatment === 'token' && !forwardToken);
    if (removed) names.push(name);
  }
  return names;
}

/** Canonical names a Connection header lists as hop-by-hop (RFC 9110 §7.6.1); undefined for the usual values. */
function connectionListedNames(connection: string | undefined): ReadonlySet<string> | undefined {
  const names = connection === undefined ? undefined : connectionListed(connection, canonicalName);
  // Host is what the route was matched on: Connection may not take it away and let the upstream pick a site.
  names?.delete('host');
  return names;
}

/**
 * What the upstream may see of a Cookie header: never the session or sign-in flow cookies, and the token cookies only
 * with `identity.forward_token`; '' when nothing is left.
 */
export function upstreamCookie(cookie: string, policy: HeaderPolicy, forwardToken: boolean): string {
  return withoutCookies(cookie, forwardToken ? policy.sessionCookies : policy.tokenCookies, policy.sessionCookiePrefixes);
}

/** The Cookie header without the named cookies (other cookies keep their order and text). */
function withoutCookies(cookie: string, names: readonly string[], prefixes: readonly string[]): string {
  if (!names.some((name) => cookie.includes(name)) && !prefixes.some((prefix) => cookie.includes(prefix))) return cookie;
  const kept: string[] = [];
  for (const pair of cookie.split(';')) {
    const equals = pair.indexOf('=');
    const name = (equals < 0 ? pair : pair.slice(0, equals)).trim();
    if (name !== '' && !names.includes(name) && !prefixes.some((prefix) => name.startsWith(prefix))) kept.push(pair.trim());
  }
  return kept.join('; ');
}

/**
 * The registry's `hygiene`: the upstream's header set, built fresh on every route, `auth: none` included. Like the
 * token header and cookie, a token in the query is kept from the upstream on every route, whether or not this
 * request's credentials came from there.
 */
export const headerHygiene: MechanismType<Finalizer> = {
  create({ config }) {
    const policy = headerPolicyOf(config);
    const forwardToken = config.identity.forwardToken;
    const stripTokenQuery = compileTokenQueryStripper(config.tokens, forwardToken);
    const finalizer: Finalizer = {
      finalize(ctx) {
        ctx.query = stripTokenQuery(ctx.query);
        ctx.upstreamHeaders = buildUpstreamHeaders(ctx.headers, policy, {
          trustedPeer: ctx.trustedPeer,
          clientIp: ctx.clientIp,
          peerIp: ctx.peerIp,
          proto: ctx.proto,
          host: ctx.host,
          requestId: ctx.requestId,
          upgrade: ctx.upgrade,
          forwardToken,
        });
        return PASS;
      },
    };
    return { forRoute: () => finalizer };
  },
};
