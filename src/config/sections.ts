import { readClientCertificates } from './mtls.js';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { METHODS } from 'node:http';
import { isScalar } from 'yaml';
import { isB64token } from '../http/bearer.js';
import { parseCidr } from '../http/client-ip.js';
import { readAssertion } from './assertion.js';
import { existingFile } from './files.js';
import { readRedis } from './redis.js';
import { HOUR, MINUTE, SECOND } from './duration.js';
import { keySlot, type Named, type Reader, type Slot } from './reader.js';
import { didYouMean } from './suggest.js';
import type {
  AdminConfig,
  CorsConfig,
  IdentityConfig,
  IdentityField,
  IdentityHeader,
  ListenAddress,
  LoggingConfig,
  RateLimitConfig,
  RateLimitKey,
  ServerConfig,
  StoreConfig,
  TokenSource,
  UpstreamConfig,
} from './types.js';
import { FORWARD_AUTH_FAMILIES } from './types.js';
import { isHostname, isOrigin, isToken, parseHostPattern, parseListen } from './values.js';

const DEFAULT_IDENTITY_HEADERS: readonly IdentityHeader[] = [
  { name: 'X-User-Id', field: { kind: 'subject' } },
  { name: 'X-User-Email', field: { kind: 'email' } },
  { name: 'X-User-Roles', field: { kind: 'roles' } },
  { name: 'X-User-Permissions', field: { kind: 'permissions' } },
  { name: 'X-User-Scopes', field: { kind: 'scopes' } },
  { name: 'X-Auth-Issuer', field: { kind: 'issuer' } },
];

const DEFAULT_TOKENS: readonly TokenSource[] = [
  { kind: 'header', name: 'Authorization' },
  { kind: 'cookie', name: 'access_token' },
];

const RESERVED_PREFIX = /^(\/[A-Za-z0-9._~-]+)+$/;
const VISIBLE_ASCII = /^[\x20-\x7e]+$/;
const HEADER_PATTERN = /^[!#$%&'+.^_`|~0-9A-Za-z*-]+$/;
const OBSOLETE_TLS = new Set(['TLSv1', 'TLSv1.0', 'TLSv1.1']);
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
const LOG_FORMATS = ['json', 'pretty'] as const;
const IDENTITY_KINDS = [
  'subject', 'email', 'roles', 'permissions', 'scopes', 'issuer', 'issuer_name', 'client_id', 'client_cert_subject', 'client_cert_fingerprint',
] as const;
const RATE_LIMIT_KINDS = ['ip', 'subject', 'client_id'] as const;
const RATE_LIMIT_MODES = ['leased', 'exact'] as const;
/** Headers an identity header must not overwrite: transport, credentials and what the gateway sets itself. */
const PROTECTED_HEADERS = new Set([
  'authorization', 'connection', 'content-length', 'content-type', 'cookie', 'forwarded', 'host', 'keep-alive',
  'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'x-forwarded-for', 'x-forwarded-host',
  'x-forwarded-proto', 'x-request-id',
]);

function readListen(r: Reader, slot: Slot, fallback: string): ListenAddress {
  const parsed = parseListen(r.text(slot) ?? fallback);
  if (typeof parsed !== 'string') return parsed;
  r.problem(slot, parsed);
  return { host: '0.0.0.0', port: 0 };
}

/** The server section, and where `workers` is written (checked against the store once that is read). */
export function readServer(r: Reader, slot: Slot, baseDir: string): { server: ServerConfig; workersSlot: Slot } {
  const s = r.section(slot, [
    'listen', 'tls', 'trusted_proxies', 'allowed_hosts', 'path_case', 'workers', 'shutdown_grace', 'reserved_prefix',
    'forward_auth', 'header_timeout',
  ]);
  const server: ServerConfig = {
    listen: readListen(r, s.slot('listen'), '0.0.0.0:8080'),
    tls: s.has('tls') ? readServerTls(r, s.slot('tls'), baseDir) : undefined,
    trustedProxies: r.items(s.slot('trusted_proxies'), (item) => {
      const text = r.string(item);
      if (text === undefined) return undefined;
      return parseCidr(text) === undefined ? r.problem(item, `"${text}" is not an IP address or CIDR range`) : text;
    }) ?? [],
    allowedHosts: r.items(s.slot('allowed_hosts'), (item) => readHostPattern(r, item)),
    pathCase: r.oneOf(s.slot('path_case'), ['sensitive', 'insensitive'] as const) ?? 'sensitive',
    workers: readWorkers(r, s.slot('workers')),
    shutdownGraceMs: r.duration(s.slot('shutdown_grace')) ?? 10 * SECOND,
    headerTimeoutMs: r.duration(s.slot('header_timeout'), { positive: true }) ?? 20 * SECOND,
    reservedPrefix: readReservedPrefix(r, s.slot('reserved_prefix')),
    forwardAuth: r.oneOf(s.slot('forward_auth'), FORWARD_AUTH_FAMILIES) ?? 'off',
  };
  if (server.forwardAuth !== 'off' && server.trustedProxies.length === 0) {
    r.problem(s.slot('forward_auth'), `${server.forwardAuth} is asked only by peers in server.trusted_proxies, and none is listed: add the proxy's addresses`);
  }
  return { server, workersSlot: s.slot('workers') };
}

export function readHostPattern(r: Reader, slot: Slot): string | undefined {
  const text = r.string(slot);
  if (text === undefined) return undefined;
  const host = parseHostPattern(text);
  return typeof host === 'string' ? host : r.problem(slot, host.error);
}

function readServerTls(r: Reader, slot: Slot, baseDir: string): ServerConfig['tls'] {
  const s = r.section(slot, ['cert_file', 'key_file', 'min_version', 'client_auth', 'client_ca_file']);
  const certSlot = s.slot('cert_file');
  const keyFileSlot = s.slot('key_file');
  const certFile = r.required(certSlot) ? existingFile(r, certSlot, baseDir) : undefined;
  const keyFile = r.required(keyFileSlot) ? existingFile(r, keyFileSlot, baseDir) : undefined;
  if (certFile !== undefined && keyFile !== undefined) checkKeyPair(r, { certSlot, keyFileSlot }, certFile, keyFile);
  const versionSlot = s.slot('min_version');
  const version = r.string(versionSlot);
  if (version !== undefined && OBSOLETE_TLS.has(version)) {
    r.problem(versionSlot, `${version} is obsolete (RFC 8996), use "TLSv1.2" or "TLSv1.3"`);
  }
  const minVersion = version === undefined || OBSOLETE_TLS.has(version)
    ? 'TLSv1.2'
    : r.oneOf(versionSlot, ['TLSv1.2', 'TLSv1.3'] as const) ?? 'TLSv1.2';
  const clientCertificates = readClientCertificates(r, s.slot('client_auth'), s.slot('client_ca_file'), baseDir);
  return { certFile: certFile ?? '', keyFile: keyFile ?? '', minVersion, clientCertificates };
}

/** The certificate and key files read as the listener will read them, so `check` finds what `start` would trip on. */
function checkKeyPair(r: Reader, slots: { certSlot: Slot; keyFileSlot: Slot }, certFile: string, keyFile: string): void {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(keyFile));
  } catch {
    r.problem(slots.keyFileSlot, `${keyFile} holds no private key (PEM)`);
    return;
  }
  let certificate: X509Certificate;
  try {
    // The first certificate of the file is the server's; the rest is its chain.
    certificate = new X509Certificate(readFileSync(certFile));
  } catch {
    r.problem(slots.certSlot, `${certFile} holds no certificate (PEM)`);
    return;
  }
  if (!certificate.checkPrivateKey(key)) r.problem(slots.keyFileSlot, `${keyFile} is not the key of the certificate in ${certFile}`);
}

function readWorkers(r: Reader, slot: Slot): number | 'auto' {
  const { node } = slot;
  if (isScalar(node) && node.value === 'auto') return 'auto';
  if (isScalar(node) && typeof node.value === 'string') {
    r.problem(slot, `expected a number of workers or "auto", got "${node.value}"`);
    return 1;
  }
  return r.integer(slot, 1) ?? 1;
}

function readReservedPrefix(r: Reader, slot: Slot): string {
  const text = r.string(slot);
  if (text === undefined) return '/_authgate';
  if (RESERVED_PREFIX.test(text)) return text;
  r.problem(slot, 'expected a path like /_authgate (leading "/", no trailing "/", no wildcards)');
  return '/_authgate';
}

export function readAdmin(r: Reader, slot: Slot, server: ServerConfig): AdminConfig {
  const s = r.section(slot, ['listen', 'token']);
  const listen = readListen(r, s.slot('listen'), '127.0.0.1:9090');
  const overlaps =
    listen.port !== 0 &&
    listen.port === server.listen.port &&
    (listen.host === server.listen.host || [listen.host, server.listen.host].some(isWildcardAddress));
  if (overlaps) r.problem(s.slot('listen'), 'must not share the address of server.listen');
  const token = r.optionalString(s.slot('token')) ?? '';
  // The admin API reads it from `Authorization: Bearer …`, which carries only b64token characters (RFC 6750 §2.1).
  if (token !== '' && !isB64token(token)) {
    r.problem(s.slot('token'), 'must consist of letters, digits and - . _ ~ + / (then =), as a Bearer token does');
  }
  return { listen, token };
}

function isWildcardAddress(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

export function readStore(r: Reader, slot: Slot, baseDir: string): StoreConfig {
  const s = r.section(slot, ['redis', 'prefix']);
  return { redis: readRedis(r, s.slot('redis'), baseDir), prefix: readKeyPrefix(r, s.slot('prefix')) ?? 'authgate:' };
}

/** Keys that must share a Cluster hash slot carry their own `{…}` tag: a brace in the prefix would become the tag. */
function readKeyPrefix(r: Reader, slot: Slot): string | undefined {
  const prefix = r.string(slot);
  if (prefix === undefined || !/[{}]/.test(prefix)) return prefix;
  return r.problem(slot, 'must not contain "{" or "}": authgate sets the hash tags of its keys itself');
}

export function readLogging(r: Reader, slot: Slot): LoggingConfig {
  const s = r.section(slot, ['level', 'format', 'access_log']);
  return {
    level: r.oneOf(s.slot('level'), LOG_LEVELS) ?? 'info',
    format: r.oneOf(s.slot('format'), LOG_FORMATS) ?? 'json',
    accessLog: r.boolean(s.slot('access_log')) ?? true,
  };
}

export function readTokens(r: Reader, slot: Slot): readonly TokenSource[] {
  const items = r.list(slot);
  if (items === undefined) return DEFAULT_TOKENS;
  if (items.length === 0) r.problem(slot, 'must list at least one place to look for the token');
  const seen = new Set<string>();
  const sources: TokenSource[] = [];
  for (const item of items) {
    const s = r.section(item, ['header', 'cookie', 'query']);
    const kinds = (['header', 'cookie', 'query'] as const).filter((kind) => s.has(kind));
    const [kind, extra] = kinds;
    if (kind === undefined || extra !== undefined) {
      r.problem(item, 'expected exactly one of header, cookie or query');
      continue;
    }
    const nameSlot = s.slot(kind);
    const name = r.string(nameSlot);
    if (name === undefined) continue;
    if (!isToken(name)) {
      r.problem(nameSlot, `"${name}" is not a valid ${kind} name`);
      continue;
    }
    const identity = `${kind}:${kind === 'header' ? name.toLowerCase() : name}`;
    if (seen.has(identity)) r.problem(nameSlot, `${kind} "${name}" is listed twice`);
    seen.add(identity);
    sources.push({ kind, name });
  }
  return sources;
}

export function readUpstreams(r: Reader, slot: Slot, baseDir: string): Named<UpstreamConfig> {
  return r.named(slot, (name, entry) => {
    const s = r.section(entry, [
      'url', 'timeout', 'tls', 'max_connections', 'queue_timeout', 'client_body_timeout', 'client_read_timeout',
      'websocket_idle_timeout',
    ]);
    const urlSlot = s.slot('url');
    const url = r.required(urlSlot) ? readUpstreamUrl(r, urlSlot) : undefined;
    const timeoutMs = r.duration(s.slot('timeout'), { positive: true }) ?? 30 * SECOND;
    const maxConnections = r.integer(s.slot('max_connections'), 1);
    const queueSlot = s.slot('queue_timeout');
    if (s.has('queue_timeout') && !s.has('max_connections')) r.problem(queueSlot, 'has no effect without max_connections');
    const queueTimeoutMs = r.duration(queueSlot, { positive: true }) ?? 5 * SECOND;
    const clientBodyTimeoutMs = r.duration(s.slot('client_body_timeout'), { positive: true }) ?? 30 * SECOND;
    const clientReadTimeoutMs = r.duration(s.slot('client_read_timeout'), { positive: true }) ?? 30 * SECOND;
    const websocketIdleTimeoutMs = r.duration(s.slot('websocket_idle_timeout'), { positive: true }) ?? HOUR;
    const tls = s.has('tls') ? readUpstreamTls(r, s.slot('tls'), baseDir) : undefined;
    if (url === undefined) return undefined;
    return { name, url, timeoutMs, maxConnections, queueTimeoutMs, clientBodyTimeoutMs, clientReadTimeoutMs, websocketIdleTimeoutMs, tls };
  });
}

function readUpstreamUrl(r: Reader, slot: Slot): URL | undefined {
  const text = r.string(slot);
  if (text === undefined) return undefined;
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    return r.problem(slot, `"${text}" is not an http:// or https:// URL`);
  }
  if (url.username !== '' || url.password !== '') return r.problem(slot, 'must not contain credentials');
  if (url.search !== '' || url.hash !== '') return r.problem(slot, 'must not have a query or fragment');
  return url;
}

function readUpstreamTls(r: Reader, slot: Slot, baseDir: string): UpstreamConfig['tls'] {
  const s = r.section(slot, ['ca_file', 'server_name']);
  const caFile = s.has('ca_file') ? existingFile(r, s.slot('ca_file'), baseDir) : undefined;
  const serverNameSlot = s.slot('server_name');
  const serverName = r.string(serverNameSlot);
  if (serverName !== undefined && !isHostname(serverName.toLowerCase())) {
    r.problem(serverNameSlot, `"${serverName}" is not a host name`);
  }
  return { caFile, serverName };
}

export function readIdentity(r: Reader, slot: Slot, baseDir: string): IdentityConfig {
  const s = r.section(slot, ['headers', 'list_separator', 'strip', 'forward_token', 'assertion']);
  const separatorSlot = s.slot('list_separator');
  const listSeparator = r.string(separatorSlot) ?? ',';
  if (!VISIBLE_ASCII.test(listSeparator)) r.problem(separatorSlot, 'must be visible ASCII characters');
  const headers = s.has('headers') ? readIdentityHeaders(r, s.slot('headers')) : DEFAULT_IDENTITY_HEADERS;
  const takenHeaders = new Set([...PROTECTED_HEADERS, ...headers.map((header) => header.name.toLowerCase())]);
  return {
    headers,
    listSeparator,
    strip: r.items(s.slot('strip'), (item) => {
      const pattern = r.string(item);
      if (pattern === undefined || HEADER_PATTERN.test(pattern)) return pattern;
      return r.problem(item, `"${pattern}" is not a header name pattern (header characters and "*")`);
    }) ?? [],
    forwardToken: r.boolean(s.slot('forward_token')) ?? false,
    assertion: s.has('assertion')
      ? readAssertion(r, s.slot('assertion'), { baseDir, readField: (item) => readIdentityField(r, item), takenHeaders })
      : undefined,
  };
}

function readIdentityHeaders(r: Reader, slot: Slot): IdentityHeader[] {
  const headers: IdentityHeader[] = [];
  const seen = new Set<string>();
  for (const { name, slot: entry } of r.entries(slot)) {
    const nameSlot = keySlot(entry);
    const lower = name.toLowerCase();
    if (!isToken(name)) r.problem(nameSlot, `"${name}" is not a valid header name`);
    else if (PROTECTED_HEADERS.has(lower)) r.problem(nameSlot, `"${name}" cannot be an identity header`);
    else if (seen.has(lower)) r.problem(nameSlot, `header "${name}" is listed twice (names are case-insensitive)`);
    seen.add(lower);
    const field = readIdentityField(r, entry);
    if (field !== undefined) headers.push({ name, field });
  }
  return headers;
}

function readIdentityField(r: Reader, slot: Slot): IdentityField | undefined {
  const text = r.required(slot) ? r.string(slot) : undefined;
  if (text === undefined) return undefined;
  const claimPath = afterPrefix(text, 'claims.');
  if (claimPath !== undefined) return { kind: 'claim', path: claimPath };
  const kind = r.oneOf(slot, [...IDENTITY_KINDS, 'claims.<path>']);
  return kind === undefined || kind === 'claims.<path>' ? undefined : { kind };
}

/** The rest of `text` after `prefix` when it starts with it and something follows. */
function afterPrefix(text: string, prefix: string): string | undefined {
  return text.startsWith(prefix) && text.length > prefix.length ? text.slice(prefix.length) : undefined;
}

/** About 0.4 KB a key (more for keys near 200 characters): some 45 MB per limit at most. */
const DEFAULT_RATE_LIMIT_MAX_KEYS = 100_000;

/**
 * Below this many points per window a limit defaults to `exact`: a lease there would be a point or two, saving
 * little, while every point matters (5 logins a minute).
 */
const LEASED_DEFAULT_MIN_LIMIT = 100;

export function readRateLimits(r: Reader, slot: Slot): Named<RateLimitConfig> {
  return r.named(slot, (name, entry) => {
    const s = r.section(entry, ['key', 'limit', 'window', 'max_keys', 'mode']);
    const limitKeySlot = s.slot('key');
    const limitSlot = s.slot('limit');
    const windowSlot = s.slot('window');
    const key = r.required(limitKeySlot) ? readRateLimitKey(r, limitKeySlot) : undefined;
    const limit = r.required(limitSlot) ? r.integer(limitSlot, 1) : undefined;
    const windowMs = r.required(windowSlot) ? r.duration(windowSlot, { positive: true }) : undefined;
    const maxKeys = r.integer(s.slot('max_keys'), 1) ?? DEFAULT_RATE_LIMIT_MAX_KEYS;
    const mode = r.oneOf(s.slot('mode'), RATE_LIMIT_MODES);
    if (key === undefined || limit === undefined || windowMs === undefined) return undefined;
    return { name, key, limit, windowMs, maxKeys, mode: mode ?? (limit >= LEASED_DEFAULT_MIN_LIMIT ? 'leased' : 'exact') };
  });
}

function readRateLimitKey(r: Reader, slot: Slot): RateLimitKey | undefined {
  const text = r.string(slot);
  if (text === undefined) return undefined;
  const claimPath = afterPrefix(text, 'claims.');
  if (claimPath !== undefined) return { kind: 'claim', path: claimPath };
  const header = afterPrefix(text, 'header.');
  if (header !== undefined) {
    // Lower-cased once here: Node's request headers are keyed in lower case.
    return isToken(header) ? { kind: 'header', name: header.toLowerCase() } : r.problem(slot, `"${header}" is not a valid header name`);
  }
  const kind = r.oneOf(slot, [...RATE_LIMIT_KINDS, 'claims.<path>', 'header.<Name>']);
  return kind === 'ip' || kind === 'subject' || kind === 'client_id' ? { kind } : undefined;
}

export function readCors(r: Reader, slot: Slot): CorsConfig {
  const s = r.section(slot, ['origins', 'methods', 'headers', 'credentials', 'max_age']);
  const originsSlot = s.slot('origins');
  const credentials = r.boolean(s.slot('credentials')) ?? false;
  const origins = r.required(originsSlot)
    ? r.items(originsSlot, (item) => {
        const origin = r.string(item);
        if (origin === undefined) return undefined;
        if (!isOrigin(origin)) return r.problem(item, `"${origin}" is not an origin like https://app.example.com`);
        if (origin === '*' && credentials) return r.problem(item, '"*" cannot be combined with credentials: true');
        return origin.toLowerCase();
      }, { nonEmpty: true })
    : undefined;
  return {
    origins: origins ?? [],
    methods: r.items(s.slot('methods'), (item) => readMethod(r, item)) ?? ['GET', 'HEAD', 'POST'],
    headers: r.items(s.slot('headers'), (item) => readHeaderName(r, item)) ?? ['Authorization', 'Content-Type'],
    credentials,
    maxAgeMs: r.duration(s.slot('max_age')) ?? 10 * MINUTE,
  };
}

/** Upper-cased and checked against the methods Node's HTTP parser accepts (nothing else can arrive). */
export function readMethod(r: Reader, slot: Slot): string | undefined {
  const text = r.string(slot);
  if (text === undefined) return undefined;
  const method = text.toUpperCase();
  return METHODS.includes(method) ? method : r.problem(slot, `unknown method "${text}"${didYouMean(method, METHODS)}`);
}

function readHeaderName(r: Reader, slot: Slot): string | undefined {
  const name = r.string(slot);
  if (name === undefined || isToken(name)) return name;
  return r.problem(slot, `"${name}" is not a valid header name`);
}
