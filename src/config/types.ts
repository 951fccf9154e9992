import type { ExpressionRule } from '../expressions/cel.js';
import type { DpopConfig } from './dpop.js';
import type { IntrospectionConfig } from './introspection.js';
import type { ClientCertificateConfig } from './mtls.js';
import type { LoginConfig } from './login.js';
import type { RouteMatch } from '../routing/match.js';

/**
 * The validated, normalized configuration. Everything downstream of `config/` consumes these types and
 * never the raw YAML: durations are milliseconds, listen addresses are split, references are checked.
 */

export interface GatewayConfig {
  /** Absolute path of the file this config was loaded from (used for reload and messages). */
  readonly file: string;
  readonly server: ServerConfig;
  readonly admin: AdminConfig;
  readonly store: StoreConfig;
  readonly logging: LoggingConfig;
  /** Where the access token is looked for, in order. */
  readonly tokens: readonly TokenSource[];
  /** Keyed by issuer name, in file order. */
  readonly issuers: ReadonlyMap<string, IssuerConfig>;
  readonly upstreams: ReadonlyMap<string, UpstreamConfig>;
  readonly identity: IdentityConfig;
  readonly rateLimits: ReadonlyMap<string, RateLimitConfig>;
  readonly cors: CorsConfig | undefined;
  /** In file order; first match wins. */
  readonly routes: readonly RouteConfig[];
  /** Browser sign-in; undefined when no route sends browsers to sign in. */
  readonly login: LoginConfig | undefined;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface ServerConfig {
  readonly listen: ListenAddress;
  readonly tls: ServerTlsConfig | undefined;
  /** CIDR strings, already validated (IPv4 and IPv6). */
  readonly trustedProxies: readonly string[];
  /** Exact hosts or `*.suffix` wildcards, lower-cased. Undefined = any Host. */
  readonly allowedHosts: readonly string[] | undefined;
  readonly pathCase: 'sensitive' | 'insensitive';
  readonly workers: number | 'auto';
  readonly shutdownGraceMs: number;
  /** How long a client may take to send a request's headers. */
  readonly headerTimeoutMs: number;
  /** Starts with `/`, no trailing slash, e.g. `/_authgate`. */
  readonly reservedPrefix: string;
  /** The proxy that calls `{reservedPrefix}/verify`; only its headers describe the original request. */
  readonly forwardAuth: ForwardAuthFamily;
}

export const FORWARD_AUTH_FAMILIES = ['off', 'nginx', 'ingress-nginx', 'traefik', 'envoy'] as const;
export type ForwardAuthFamily = (typeof FORWARD_AUTH_FAMILIES)[number];

export interface ServerTlsConfig {
  /** Absolute paths (resolved against the config file's directory). */
  readonly certFile: string;
  readonly keyFile: string;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** Undefined: no client certificate is asked for. */
  readonly clientCertificates: ClientCertificateConfig | undefined;
}

export interface AdminConfig {
  readonly listen: ListenAddress;
  /** Empty string = write endpoints answer 403. */
  readonly token: string;
}

export interface StoreConfig {
  /** undefined = in-memory store. */
  readonly redis: RedisConfig | undefined;
  readonly prefix: string;
}

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** How the primary is found: a URL (one node, or a provider's failover endpoint), Sentinel, or a Cluster. */
export type RedisTopology =
  | { readonly kind: 'url'; readonly url: string }
  | {
      readonly kind: 'sentinel';
      /** The monitored primary group. */
      readonly name: string;
      readonly nodes: readonly RedisNode[];
      /** For the sentinels themselves; the data nodes use RedisConfig.password. */
      readonly password: string | undefined;
    }
  | { readonly kind: 'cluster'; readonly nodes: readonly RedisNode[] };

export interface RedisConfig {
  readonly topology: RedisTopology;
  /** Data nodes' password (a URL carries its own). */
  readonly password: string | undefined;
  /** TLS to every node (and sentinel); `caFile` undefined = the system's CAs. A `rediss://` URL implies it. */
  readonly tls: { readonly caFile: string | undefined } | undefined;
}

export interface LoggingConfig {
  readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** `json` for log pipelines; `pretty` (colour, one readable line per entry) for a terminal. */
  readonly format: 'json' | 'pretty';
  readonly accessLog: boolean;
}

export type TokenSource =
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'cookie'; readonly name: string }
  /** Only honoured on WebSocket upgrade requests. */
  | { readonly kind: 'query'; readonly name: string };

export type IssuerKeySource =
  | { readonly kind: 'discovery' }
  | { readonly kind: 'jwks_uri'; readonly url: string }
  /** Absolute path. */
  | { readonly kind: 'jwks_file'; readonly path: string }
  /** HS256/384/512 shared secret (UTF-8): at least the hash size of every allowed algorithm, 32/48/64 bytes. */
  | { readonly kind: 'secret'; readonly secret: string };

/** Claim value as written in `require_claims` or `require.claims`. */
export type ClaimValue = string | number | boolean;

export interface IssuerClaimPaths {
  readonly subject: string;
  readonly email: string;
  readonly roles: string;
  readonly permissions: string;
  readonly scopes: string;
  readonly clientId: string;
}

export interface JwksCacheConfig {
  readonly maxAgeMs: number;
  readonly minRefetchIntervalMs: number;
  readonly staleIfErrorMs: number;
}

export interface IssuerConfig {
  /** The key under `issuers:`. */
  readonly name: string;
  /** Expected `iss`, compared exactly. */
  readonly issuer: string;
  /** Undefined: the issuer has `introspection` alone, and every token of it is introspected. */
  readonly keys: IssuerKeySource | undefined;
  /** Opaque tokens (and with `jwt: true` this issuer's JWTs) are checked at the identity provider. */
  readonly introspection: IntrospectionConfig | undefined;
  /** Tokens with `cnf["x5t#S256"]` are good only with that client certificate on the connection. */
  readonly certificateBound: boolean;
  /** DPoP-bound tokens (`cnf.jkt`) come with a proof of the key; undefined: the DPoP scheme is not accepted. */
  readonly dpop: DpopConfig | undefined;
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  readonly clockSkewMs: number;
  readonly maxTokenAgeMs: number | undefined;
  readonly tokenTypes: readonly string[] | undefined;
  readonly requireClaims: Readonly<Record<string, ClaimValue>> | undefined;
  readonly claims: IssuerClaimPaths;
  readonly jwksCache: JwksCacheConfig;
}

export interface UpstreamConfig {
  readonly name: string;
  readonly url: URL;
  readonly timeoutMs: number;
  /** Connections open to the upstream at most; undefined = no limit. Requests beyond it wait for a free one. */
  readonly maxConnections: number | undefined;
  /** How long a request may wait for a free connection (with `maxConnections`) before it is answered 503. */
  readonly queueTimeoutMs: number;
  /** How long a client may pause while sending a request body to this upstream. */
  readonly clientBodyTimeoutMs: number;
  /** How long a client may leave this upstream's response unread. */
  readonly clientReadTimeoutMs: number;
  /** How long a proxied WebSocket may carry nothing either way before both sides are closed (1001). */
  readonly websocketIdleTimeoutMs: number;
  readonly tls: { readonly caFile: string | undefined; readonly serverName: string | undefined } | undefined;
}

export type IdentityField =
  | {
      readonly kind: 'subject' | 'email' | 'roles' | 'permissions' | 'scopes' | 'issuer' | 'issuer_name' | 'client_id'
        | 'client_cert_subject' | 'client_cert_fingerprint';
    }
  | { readonly kind: 'claim'; readonly path: string };

export interface IdentityHeader {
  /** As written in the config (canonical case for the upstream). */
  readonly name: string;
  readonly field: IdentityField;
}

export interface IdentityConfig {
  readonly headers: readonly IdentityHeader[];
  readonly listSeparator: string;
  /** Header-name patterns; `*` matches any run of characters. */
  readonly strip: readonly string[];
  readonly forwardToken: boolean;
  /** The signed identity attached for upstreams; undefined when not configured. */
  readonly assertion: AssertionConfig | undefined;
}

export interface AssertionConfig {
  /** As written; compared case-insensitively. */
  readonly header: string;
  /** Absolute paths of PEM private keys: the first signs, all are published. */
  readonly keyFiles: readonly string[];
  readonly issuer: string;
  readonly ttlMs: number;
  /** Identity field names as written (`subject`, `claims.tenant`…), with their readers' kinds. */
  readonly fields: readonly { readonly name: string; readonly field: IdentityField }[];
}

export type RateLimitKey =
  | { readonly kind: 'ip' | 'subject' | 'client_id' }
  | { readonly kind: 'claim'; readonly path: string }
  /** `name` is lower-case. */
  | { readonly kind: 'header'; readonly name: string };

export interface RateLimitConfig {
  readonly name: string;
  readonly key: RateLimitKey;
  readonly limit: number;
  readonly windowMs: number;
  /** Most keys the in-memory limiter holds (the memory store, or the fallback while Redis is down). */
  readonly maxKeys: number;
  /**
   * With Redis: `exact` asks Redis on every request; `leased` takes part of the remaining budget at a time
   * and counts it down in memory (see store/leases.ts).
   */
  readonly mode: RateLimitMode;
}

export type RateLimitMode = 'leased' | 'exact';

export interface CorsConfig {
  /** Exact origins; `*` allowed only without credentials. */
  readonly origins: readonly string[];
  readonly methods: readonly string[];
  readonly headers: readonly string[];
  readonly credentials: boolean;
  readonly maxAgeMs: number;
}

/** `{ any: [...] }` or `{ all: [...] }`; plain lists are normalized to the key's default mode. */
export interface ListRule {
  readonly mode: 'any' | 'all';
  readonly values: readonly string[];
}

export interface RequireRules {
  readonly roles: ListRule | undefined;
  readonly permissions: ListRule | undefined;
  readonly scopes: ListRule | undefined;
  /** Claim path → required value (equal, or contained when the claim is an array). */
  readonly claims: Readonly<Record<string, ClaimValue>> | undefined;
  /** A CEL expression, compiled when the config loads: it must yield true. */
  readonly expr: ExpressionRule | undefined;
}

export type AuthMode = 'none' | 'optional' | 'required';

export type RouteMatchConfig = RouteMatch;

export interface RouteConfig {
  readonly name: string;
  readonly match: RouteMatchConfig;
  readonly upstream: string;
  readonly auth: AuthMode;
  /** Issuer names allowed on this route; undefined = all configured issuers. */
  readonly issuers: readonly string[] | undefined;
  readonly require: RequireRules | undefined;
  /** Names of `rate_limits` entries, in order. */
  readonly rateLimit: readonly string[];
  /** Route-level CORS; undefined = the global `cors` (if any), false = CORS off for this route. */
  readonly cors: CorsConfig | false | undefined;
  /** `login.providers` a browser without credentials is sent to; undefined: not a login route. */
  readonly login: readonly string[] | undefined;
}
