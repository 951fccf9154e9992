import { isMap, isScalar } from 'yaml';
import { didYouMean } from './suggest.js';
import { readClientKey, type ClientKey } from './client-key.js';
import { keySlot, type Reader, type Slot } from './reader.js';
import { Secret } from './secret.js';
import type { IssuerConfig } from './types.js';
import { isLoopbackUrl, isToken } from './values.js';

export type SameSite = 'strict' | 'lax' | 'none';

/** One `allowed_redirects` entry: an exact origin, or `scheme://*.domain[:port]` for any subdomain of it. */
export type AllowedRedirect =
  | { readonly kind: 'origin'; readonly origin: string }
  | { readonly kind: 'subdomains'; readonly protocol: string; readonly suffix: string; readonly port: string };

/** The `login:` section: browser sign-in through OpenID providers, and the sessions it creates. */
export interface LoginConfig {
  /** How browsers reach the gateway (an origin); the callback is `{origin}{reserved_prefix}/callback`. */
  readonly externalUrl: URL;
  readonly providers: ReadonlyMap<string, LoginProviderConfig>;
  readonly cookie: { readonly name: string; readonly sameSite: SameSite; readonly secure: boolean };
  readonly session: { readonly idleTimeoutMs: number; readonly absoluteTimeoutMs: number; readonly refreshBeforeMs: number };
  /** Empty: one instance on the memory store, which signs with a random key of its own (sessions die with it anyway). */
  readonly keys: readonly string[];
  readonly allowedRedirects: readonly AllowedRedirect[];
}

export type ClientAuthConfig =
  | { readonly method: 'client_secret_basic'; readonly secret: Secret }
  | ({ readonly method: 'private_key_jwt' } & ClientKey)
  /** A public client: PKCE alone. */
  | { readonly method: 'none' };

export type IdentitySource = 'id_token' | 'access_token' | 'userinfo';

export interface LoginProviderConfig {
  readonly name: string;
  /** The name of its entry under `issuers:` (which has `discovery: true`). */
  readonly issuer: string;
  readonly clientId: string;
  readonly clientAuth: ClientAuthConfig;
  readonly scopes: readonly string[];
  readonly params: Readonly<Record<string, string>>;
  readonly identityFrom: IdentitySource;
}

/** What the login reader needs from the rest of the config. */
export interface LoginContext {
  readonly issuers: ReadonlyMap<string, IssuerConfig>;
  /** Every name under `issuers:`, also those with problems (so they are not reported again as unknown). */
  readonly issuerNames: readonly string[];
  readonly workers: number | 'auto';
  readonly redis: boolean;
  readonly baseDir: string;
}

const LOGIN_KEYS = ['external_url', 'providers', 'cookie', 'session', 'keys', 'allowed_redirects'];
const PROVIDER_KEYS = ['issuer', 'client_id', 'client_secret', 'client_auth', 'scopes', 'params', 'identity_from'];
const IDENTITY_SOURCES: readonly IdentitySource[] = ['id_token', 'access_token', 'userinfo'];
const SAME_SITE: readonly SameSite[] = ['lax', 'strict', 'none'];
/** HMAC-SHA-256 keys shorter than its block's half add no strength an attacker cannot brute-force offline. */
const MIN_KEY_BYTES = 32;
const DEFAULT_SCOPES = ['openid', 'email', 'profile'];

export function readLogin(r: Reader, slot: Slot, context: LoginContext): LoginConfig | undefined {
  const s = r.section(slot, LOGIN_KEYS);
  const urlSlot = s.slot('external_url');
  const externalUrl = r.required(urlSlot) ? readExternalUrl(r, urlSlot) : undefined;
  const secure = externalUrl?.protocol !== 'http:';
  const providers = readProviders(r, s.slot('providers'), context);
  const cookie = readCookie(r, s.slot('cookie'), secure, externalUrl !== undefined);
  const session = readSession(r, s.slot('session'));
  const keys = readKeys(r, s.slot('keys'), context);
  const redirectsSlot = s.slot('allowed_redirects');
  const allowedRedirects = redirectsSlot.node === undefined ? [] : r.items(redirectsSlot, (item) => readAllowedRedirect(r, item));
  if (externalUrl === undefined || providers === undefined || cookie === undefined || session === undefined) return undefined;
  if (keys === undefined || allowedRedirects === undefined) return undefined;
  return { externalUrl, providers, cookie, session, keys, allowedRedirects };
}

/** An origin browsers use: https, or plain http on loopback (development), nothing after the host and port. */
function readExternalUrl(r: Reader, slot: Slot): URL | undefined {
  const text = r.string(slot);
  if (text === undefined) return undefined;
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (url === undefined || (url.protocol !== 'https:' && url.protocol !== 'http:')) return r.problem(slot, `"${text}" is not an http(s) URL`);
  if (url.protocol === 'http:' && !isLoopbackUrl(url)) return r.problem(slot, 'must be https (plain http only on 127.0.0.1, [::1] or localhost): session cookies must not cross the network in clear');
  if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    return r.problem(slot, 'expected an origin only, like https://app.example.com (no path, query or user info)');
  }
  return url;
}

function readProviders(r: Reader, slot: Slot, context: LoginContext): Map<string, LoginProviderConfig> | undefined {
  if (!r.required(slot)) return undefined;
  const entries = r.named(slot, (name, entry) => readProvider(r, name, entry, context));
  if (entries.names.length === 0) return r.problem(slot, 'must name at least one provider');
  return entries.values.size === entries.names.length ? entries.values : undefined;
}

function readProvider(r: Reader, name: string, slot: Slot, context: LoginContext): LoginProviderConfig | undefined {
  const s = r.section(slot, PROVIDER_KEYS);
  const issuerSlot = s.slot('issuer');
  const issuer = r.required(issuerSlot) ? readProviderIssuer(r, issuerSlot, context) : undefined;
  const idSlot = s.slot('client_id');
  const clientId = r.required(idSlot) ? r.string(idSlot) : undefined;
  const clientAuth = readClientAuth(r, s.slot('client_secret'), s.slot('client_auth'), context.baseDir);
  const scopes = readScopes(r, s.slot('scopes'));
  const params = readParams(r, s.slot('params'));
  const identityFrom = r.oneOf(s.slot('identity_from'), IDENTITY_SOURCES) ?? (s.has('identity_from') ? undefined : 'id_token');
  if (issuer === undefined || clientId === undefined || clientAuth === undefined || scopes === undefined || params === undefined || identityFrom === undefined) return undefined;
  return { name, issuer, clientId, clientAuth, scopes, params, identityFrom };
}

/** The provider is an `issuers:` entry whose keys come from discovery: the flow needs its endpoints too. */
function readProviderIssuer(r: Reader, slot: Slot, context: LoginContext): string | undefined {
  const name = r.string(slot);
  if (name === undefined) return undefined;
  if (!context.issuerNames.includes(name)) return r.problem(slot, `unknown issuer "${name}"${didYouMean(name, context.issuerNames)}`);
  const issuer = context.issuers.get(name);
  if (issuer === undefined) return undefined; // its own problems are reported under issuers
  if (issuer.keys?.kind !== 'discovery') return r.problem(slot, `issuer "${name}" needs discovery: true (sign-in reads the provider's endpoints from its discovery document)`);
  return name;
}

function readClientAuth(r: Reader, secretSlot: Slot, authSlot: Slot, baseDir: string): ClientAuthConfig | undefined {
  if (authSlot.node === undefined) {
    if (secretSlot.node === undefined) return { method: 'none' };
    const secret = r.string(secretSlot);
    return secret === undefined ? undefined : { method: 'client_secret_basic', secret: new Secret(secret) };
  }
  const s = r.section(authSlot, ['method', 'key_file']);
  const methodSlot = s.slot('method');
  const method = r.required(methodSlot) ? r.oneOf(methodSlot, ['private_key_jwt'] as const) : undefined;
  if (secretSlot.node !== undefined) return r.problem(keySlot(secretSlot), 'give either client_secret or client_auth, not both');
  if (method === undefined) return undefined;
  const fileSlot = s.slot('key_file');
  const key = r.required(fileSlot) ? readClientKey(r, fileSlot, baseDir) : undefined;
  return key === undefined ? undefined : { method, ...key };
}

function readScopes(r: Reader, slot: Slot): string[] | undefined {
  const scopes = r.stringList(slot, { nonEmpty: true });
  if (slot.node === undefined) return DEFAULT_SCOPES;
  if (scopes === undefined) return undefined;
  if (!scopes.includes('openid')) return r.problem(slot, 'must include openid (sign-in needs an ID token)');
  const spaced = scopes.find((scope) => scope.includes(' '));
  return spaced === undefined ? scopes : r.problem(slot, `"${spaced}": one scope per list item`);
}

/** Extra authorization parameters; the ones the flow sets itself cannot be overridden. */
const RESERVED_PARAMS = ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'nonce', 'code_challenge', 'code_challenge_method'];

function readParams(r: Reader, slot: Slot): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  let valid = true;
  for (const { name, slot: entry } of r.entries(slot)) {
    const value = r.text(entry);
    if (RESERVED_PARAMS.includes(name)) valid = r.problem(keySlot(entry), `"${name}" is set by the sign-in flow itself`) ?? false;
    else if (value === undefined) valid = false;
    else params[name] = value;
  }
  return valid ? params : undefined;
}

function readCookie(r: Reader, slot: Slot, secure: boolean, urlKnown: boolean): LoginConfig['cookie'] | undefined {
  const s = r.section(slot, ['name', 'same_site']);
  const nameSlot = s.slot('name');
  const name = r.string(nameSlot) ?? (s.has('name') ? undefined : secure ? '__Host-authgate' : 'authgate');
  const sameSite = r.oneOf(s.slot('same_site'), SAME_SITE) ?? (s.has('same_site') ? undefined : 'lax');
  if (name === undefined || sameSite === undefined) return undefined;
  if (!isToken(name)) return r.problem(nameSlot, `"${name}" is not a valid cookie name`);
  if (!secure && urlKnown && (name.startsWith('__Host-') || name.startsWith('__Secure-'))) {
    return r.problem(nameSlot, `a ${name.startsWith('__Host-') ? '__Host-' : '__Secure-'} cookie is only set over https: external_url is http`);
  }
  if (!secure && urlKnown && sameSite === 'none') return r.problem(s.slot('same_site'), 'SameSite=None needs a Secure cookie: external_url is http');
  if (secure && !name.startsWith('__Host-')) {
    r.warning(nameSlot, `without the __Host- prefix another site under the same domain can set "${name}" for this one (cookie tossing): name it __Host-${name}`);
  }
  return { name, sameSite, secure };
}

function readSession(r: Reader, slot: Slot): LoginConfig['session'] | undefined {
  const s = r.section(slot, ['idle_timeout', 'absolute_timeout', 'refresh_before']);
  const idle = r.duration(s.slot('idle_timeout'), { positive: true }) ?? (s.has('idle_timeout') ? undefined : 30 * 60_000);
  const absolute = r.duration(s.slot('absolute_timeout'), { positive: true }) ?? (s.has('absolute_timeout') ? undefined : 12 * 3_600_000);
  const refreshBefore = r.duration(s.slot('refresh_before')) ?? (s.has('refresh_before') ? undefined : 60_000);
  if (idle === undefined || absolute === undefined || refreshBefore === undefined) return undefined;
  if (idle > absolute) return r.problem(s.slot('idle_timeout'), 'must not be longer than absolute_timeout');
  return { idleTimeoutMs: idle, absoluteTimeoutMs: absolute, refreshBeforeMs: refreshBefore };
}

/**
 * Every instance must verify every other's cookies: with workers or a shared store the keys cannot be random. Empty
 * items are left out, so `[${SESSION_KEY:-}, ${PREVIOUS_SESSION_KEY:-}]` works before, during and after a rotation;
 * none left is as if no keys were given.
 */
function readKeys(r: Reader, slot: Slot, context: LoginContext): string[] | undefined {
  const items = r.list(slot);
  if (items === undefined && slot.node !== undefined) return undefined;
  const keys: string[] = [];
  let valid = true;
  for (const item of items ?? []) {
    if (item.node === undefined) continue;
    const key = readKey(r, item);
    if (key === undefined) valid = false;
    else keys.push(key);
  }
  if (!valid) return undefined;
  if (keys.length > 0 || (context.workers === 1 && !context.redis)) return keys;
  const why = context.redis ? 'store.redis is set' : 'server.workers is more than 1';
  return r.problem(keySlot(slot), `required when ${why}: every instance must verify the cookies the others sign`);
}

function readKey(r: Reader, item: Slot): string | undefined {
  const key = r.string(item);
  if (key === undefined) return undefined;
  const bytes = Buffer.byteLength(key, 'utf8');
  return bytes >= MIN_KEY_BYTES ? key : r.problem(item, `must be at least ${MIN_KEY_BYTES} bytes (got ${bytes})`);
}

function readAllowedRedirect(r: Reader, slot: Slot): AllowedRedirect | undefined {
  const text = r.string(slot);
  if (text === undefined) return undefined;
  const entry = parseAllowedRedirect(text);
  return typeof entry === 'string' ? r.problem(slot, entry) : entry;
}

/**
 * Reads one `allowed_redirects` entry as written in the config; a string is the problem. Only an origin is
 * accepted (no path, query, fragment or credentials), and `*` only as the whole first label.
 */
export function parseAllowedRedirect(text: string): AllowedRedirect | string {
  const wildcard = /^(https?):\/\/\*\./.exec(text);
  const candidate = wildcard === null ? text : `${wildcard[1]}://wildcard.${text.slice(wildcard[0].length)}`;
  let url: URL;
  try {
    url = new URL(candidate);
  } catch {
    return 'expected an origin like https://app.example.com or https://*.example.com';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'expected an http or https origin';
  if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    return 'expected an origin only (no path, query, fragment or user info)';
  }
  if (candidate.includes('*')) return '"*" may only be the whole first label, as in https://*.example.com';
  if (wildcard === null) return { kind: 'origin', origin: url.origin };
  return { kind: 'subdomains', protocol: url.protocol, suffix: url.hostname.slice('wildcard'.length), port: url.port };
}

/**
 * Every provider name `login.providers` declares, with its issuer when the provider read well: a route naming a
 * provider whose entry has a mistake is not also told the provider is unknown.
 */
export function declaredProviders(loginSlot: Slot, login: LoginConfig | undefined): Map<string, string | undefined> {
  const providers = isMap(loginSlot.node) ? loginSlot.node.get('providers', true) : undefined;
  const names = isMap(providers) ? providers.items.flatMap((pair) => (isScalar(pair.key) ? [String(pair.key.value)] : [])) : [];
  return new Map(names.map((name) => [name, login?.providers.get(name)?.issuer]));
}
