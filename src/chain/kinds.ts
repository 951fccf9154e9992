/**
 * The mechanism kinds the chain is composed of. Each kind is an interface; its implementations live in
 * `mechanisms/`, one file each, and `plan/registry.ts` lists them. A route's plan is compiled once per config
 * into an ordered list of steps, so a request only walks an array.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { GatewayConfig, RouteConfig, TokenSource } from '../config/types.js';
import type { ClientCertificate } from '../http/client-certificate.js';
import type { GatewayError } from '../http/responses.js';
import type { Identity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import type { RouteMatch } from '../routing/match.js';
import type { RateLimitDecision, Store } from '../store/types.js';
import type { Refusal, Stage, Trace, Verdict } from './verdict.js';

/** How the request reached the chain: proxied, a WebSocket handshake, or described by a forward-auth check. */
export type Transport = 'request' | 'upgrade' | 'forward_auth';

/** A credential found in the request, not yet verified. */
export type Credential = TokenCredential | DpopCredential;

export interface TokenCredential {
  /** Authenticators look at it to say "mine" or "not mine". */
  readonly scheme: 'bearer' | 'session';
  readonly value: string;
  /** Where it was found: trace text, logout's same-origin rule, query stripping. */
  readonly source: TokenSource;
}

/** `Authorization: DPoP <token>` (RFC 9449 §7.1): the token and the proof of possession of its key. */
export interface DpopCredential {
  readonly scheme: 'dpop';
  readonly value: string;
  readonly source: TokenSource;
  /** The one `DPoP` header's value; '' when the request has none (the proof check refuses it). */
  readonly proof: string;
}

/** The facts a transport knows of a request before the chain runs. */
export interface RequestFacts {
  readonly method: string;
  /** The raw request target, before normalization. */
  readonly target: string;
  readonly host: string;
  readonly headers: IncomingHttpHeaders;
  readonly headersDistinct: NodeJS.Dict<string[]>;
  readonly peerIp: string;
  readonly trustedPeer: boolean;
  readonly proto: 'http' | 'https';
  readonly transport: Transport;
  readonly requestId: string;
}

/** One request as every step sees it: its facts, then what the head and the steps found out. */
export interface RequestContext extends RequestFacts {
  /** A WebSocket handshake: unlocks query-string tokens. */
  readonly upgrade: boolean;
  /** The body as text, read once by the endpoint that needs it; undefined without one or past `maxBytes`. */
  readBody(maxBytes: number): Promise<string | undefined>;
  /** The client's TLS certificate, if it chains to `client_ca_file`; read once per connection, on first ask. */
  peerCertificate(): ClientCertificate | undefined;
  /** Set by the head: the matched plan, the normalized path and query, the client IP. */
  plan: Plan | undefined;
  path: string;
  query: string;
  clientIp: string;
  /** Set by the steps. */
  credential: Credential | undefined;
  identity: Identity | undefined;
  /** The tightest rate-limit decision, for RateLimit-* on the answer. */
  limit: RateLimitDecision | undefined;
  /** Other headers a step adds to the answer of a request that passes: lower-case name/value pairs. */
  answerHeaders: readonly string[] | undefined;
  upstreamHeaders: OutgoingHttpHeaders | undefined;
  /** A forward-auth check: the original request, which the access log and metrics report. */
  reportAs: RequestContext | undefined;
}

/**
 * What one credential source holds: nothing (`value` undefined), one token, or a reason to refuse the request.
 * `proof` is set when the token came in the DPoP scheme: the `DPoP` header's value, '' without one.
 */
export type Found =
  | { readonly ok: true; readonly value: string | undefined; readonly proof?: string }
  | { readonly ok: false; readonly reason: string };

/** One `tokens:` entry, compiled; pure. */
export interface SourceFinder {
  readonly source: TokenSource;
  find(headersDistinct: NodeJS.Dict<string[]>, query: string, isUpgrade: boolean): Found;
}

/** A kind of credential source (`header`, `cookie`, `query`), compiled once per `tokens:` entry of its kind. */
export interface FinderType {
  compile(source: TokenSource): SourceFinder;
}

/** At most one credential per request, or why the request is refused (two credentials, bad syntax). */
export type CredentialSearch =
  | { readonly ok: true; readonly credential: Credential | undefined }
  /** 'token_too_long' → 401; anything else → 400 invalid_request. */
  | { readonly ok: false; readonly reason: string };

export type CredentialFinder = (headersDistinct: NodeJS.Dict<string[]>, query: string, isUpgrade: boolean) => CredentialSearch;

export type Authentication =
  /** Mine: this is who. */
  | { readonly ok: true; readonly identity: Identity }
  /** Mine, refused (expired, bad signature…). */
  | { readonly ok: false; readonly refusal: Refusal }
  /** Not mine: the next authenticator is asked. */
  | { readonly ok: false; readonly refusal: undefined };

export interface Authenticator {
  /** Sees the whole request: method, normalized URI (ctx.path + ctx.query), headers, ctx.peerCertificate(). */
  authenticate(credential: Credential, ctx: RequestContext): Authentication | Promise<Authentication>;
}

/**
 * Whether the client that presented the credential may use the identity it stands for: a sender-constrained token
 * is good only with the certificate or key it is bound to. Runs right after authentication; undefined: it may.
 */
export interface SenderConstraint {
  /** `trace` (`authgate explain`): a constraint that passes may say what it checked. */
  check(identity: Identity, ctx: RequestContext, trace: Trace | undefined): Refusal | undefined | Promise<Refusal | undefined>;
}

export type Authorization =
  | { readonly ok: true }
  | { readonly ok: false; readonly rule: string; readonly reason: string; readonly requiredScopes?: readonly string[] };

/** Synchronous: authorization decides on what the request and its identity say, with no I/O. */
export interface Authorizer {
  authorize(identity: Identity, ctx: RequestContext): Authorization;
}

export interface Step {
  readonly stage: Stage;
  run(ctx: RequestContext, trace: Trace | undefined): Verdict | Promise<Verdict>;
}

/** A step that never waits (a CORS preflight, a finalizer): its verdict is there at once. */
export interface SyncStep extends Step {
  run(ctx: RequestContext, trace: Trace | undefined): Verdict;
}

/** `client`: keyed by the client (IP, a header), before authentication; `identity`: after authorization. */
export interface Limiter extends Step {
  readonly phase: 'client' | 'identity';
}

/**
 * Writes into ctx.upstreamHeaders; may refuse when the identity cannot be passed on. Waits only when it must
 * (a signature not yet made): the usual verdict is there at once.
 */
export interface Finalizer {
  finalize(ctx: RequestContext): Verdict | Promise<Verdict>;
}

/** The answers of a route's refusals; the steps ask it once, at compile time where they can. */
export interface ErrorRenderer {
  noCredentials(): GatewayError;
  invalidRequest(description: string): GatewayError;
  invalidCredentials(description: string): GatewayError;
  /** A DPoP proof that fails its checks (RFC 9449 §7.1, `invalid_dpop_proof`). */
  invalidProof(description: string): GatewayError;
  /** A DPoP proof without the current server nonce (RFC 9449 §8, `use_dpop_nonce`): the answer hands out `nonce`. */
  useNonce(nonce: string): GatewayError;
  insufficientScope(requiredScopes: readonly string[] | undefined): GatewayError;
  unavailable(description: string): GatewayError;
  rateLimited(headers: OutgoingHttpHeaders): GatewayError;
}

export interface CorsPolicy {
  /**
   * Headers for the answer to an actual (non-preflight) request carrying `origin`. An origin that is not
   * allowed gets only `Vary: Origin`: the browser then withholds the response from the page.
   */
  responseHeaders(origin: string): OutgoingHttpHeaders;
  /** The 204 preflight answer's headers, or undefined when origin, method or a requested header is not allowed. */
  preflightHeaders(origin: string, method: string, requestedHeaders: string | undefined): OutgoingHttpHeaders | undefined;
}

/** A route compiled: what the head matches and the steps a request then walks. */
export interface Plan {
  /** Metric and log label; '-' for the gateway's own endpoints. */
  readonly name: string;
  readonly match: RouteMatch;
  /** Undefined for the gateway's own endpoints. */
  readonly route: RouteConfig | undefined;
  /** Undefined: the gateway answers itself. */
  readonly upstream: string | undefined;
  readonly steps: readonly Step[];
  /** Answers a CORS preflight for this route; undefined without CORS. */
  readonly preflight: SyncStep | undefined;
  readonly cors: CorsPolicy | undefined;
}

export type IssuerKeyState = 'ok' | 'stale' | 'unavailable' | 'loading';

export interface IssuerStatus {
  readonly state: IssuerKeyState;
  /** Epoch ms of the last successful key load, if any. */
  readonly lastRefresh: number | undefined;
  readonly error: string | undefined;
}

/** What a mechanism may need to do besides answering requests: load keys, stop timers, report readiness. */
export interface Lifecycle {
  start(): Promise<void>;
  close(): void;
  status(): ReadonlyMap<string, IssuerStatus>;
}

/** What every mechanism is compiled from. */
export interface CompileContext {
  readonly config: GatewayConfig;
  readonly store: Store;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/**
 * A mechanism compiled for one config: keys, caches, compiled policy. `forRoute` narrows it to one route
 * (undefined when it does not apply there), with the route's error renderer for its refusals.
 */
export interface Compiled<I> extends Partial<Lifecycle> {
  forRoute(route: RouteConfig, errors: ErrorRenderer): I | undefined;
  /** The JWKS document of the keys this mechanism signs with (serialized once), for `jwks.json`. */
  publishedKeys?(): string | undefined;
}

/** The mechanisms created for the same config before this one (registry order), by `kind.name`. */
export type EarlierMechanisms = (name: string) => Compiled<unknown> | undefined;

/**
 * One entry of the registry. `create` runs once per config and may adopt what the previous config's instance
 * built (cached keys of unchanged issuers) and use what an earlier mechanism of the same config holds (the issuer
 * keys sign-in shares with bearer tokens); undefined when the config does not use the mechanism.
 */
export interface MechanismType<I> {
  create(ctx: CompileContext, previous: Compiled<I> | undefined, earlier: EarlierMechanisms): Compiled<I> | undefined;
}

/** Error renderers are chosen per route before the other mechanisms, which build their refusals with them. */
export interface ErrorsType {
  create(ctx: CompileContext): { forRoute(route: RouteConfig): ErrorRenderer | undefined } | undefined;
}
