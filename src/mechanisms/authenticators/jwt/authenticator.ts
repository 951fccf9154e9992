import { routeDpop } from '../../../config/dpop.js';
import type { IssuerConfig } from '../../../config/types.js';
import type { Logger } from '../../../observability/log.js';
import type { Metrics } from '../../../observability/metrics.js';
import { buildIdentity, compileClaimsValidator, type ClaimsFailure, type ClaimsValidator } from './claims.js';
import { claimsFailureDetail, quote, unknownIssuerDetail } from './diagnose.js';
import { DEFAULT_FETCH_LIMITS, type FetchLimits } from '../../../http/json-request.js';
import { parseCompactJws, secondDot, type JoseHeader, type JwsFailure } from './jws.js';
import { isKeyed, IssuerKeySet, keySetIdentity, UNKNOWN_KID, type KeyedIssuer, type KeyLookup, type VerificationKey } from './key-set.js';
import { estimateEntryBytes, TokenCache, tokenDigest } from './token-cache.js';
import type { Identity } from '../../../identity/identity.js';
import { InvalidTokenDescription } from '../../../http/responses.js';
import type { VerifyResult } from './types.js';
import type { Authentication, Authenticator, Compiled, ErrorRenderer, IssuerStatus, MechanismType } from '../../../chain/kinds.js';
import type { RouteConfig } from '../../../config/types.js';
import { isThenable, type Refusal } from '../../../chain/verdict.js';

export interface AuthenticatorDeps {
  logger: Logger;
  metrics: Metrics;
  /** Epoch ms; defaults to Date.now. */
  now?: () => number;
  /** JWKS/discovery fetch limits; defaults to 5 s and 1 MiB. */
  fetchLimits?: FetchLimits;
  /** Verified-token cache budget in estimated bytes; defaults to 64 MiB, 0 disables the cache. */
  tokenCacheBytes?: number;
  /**
   * Attach to every refusal the values that were compared (`authgate explain`). Off in the gateway, where a
   * refusal allocates nothing, except an unknown issuer's detail (the access log names it).
   */
  explain?: boolean;
}

export type DenyReason =
  | JwsFailure
  | ClaimsFailure
  | 'unknown_issuer'
  | 'issuer_not_allowed'
  | 'alg_not_allowed'
  | 'unknown_kid'
  | 'bad_signature'
  | 'keys_unavailable';

const DESCRIPTIONS: Readonly<Record<Exclude<DenyReason, 'keys_unavailable'>, InvalidTokenDescription>> = {
  too_long: InvalidTokenDescription.tooLong,
  malformed: InvalidTokenDescription.malformed,
  non_canonical: InvalidTokenDescription.malformed,
  invalid_utf8: InvalidTokenDescription.malformed,
  unsupported_header: InvalidTokenDescription.malformed,
  embedded_key: InvalidTokenDescription.malformed,
  bad_kid: InvalidTokenDescription.malformed,
  duplicate_claims: InvalidTokenDescription.malformed,
  too_complex: InvalidTokenDescription.malformed,
  alg_none: InvalidTokenDescription.algorithm,
  alg_not_allowed: InvalidTokenDescription.algorithm,
  unknown_issuer: InvalidTokenDescription.issuer,
  issuer_not_allowed: InvalidTokenDescription.issuer,
  unknown_kid: InvalidTokenDescription.signature,
  bad_signature: InvalidTokenDescription.signature,
  expired: InvalidTokenDescription.expired,
  not_yet_valid: InvalidTokenDescription.notYetValid,
  audience: InvalidTokenDescription.audience,
  type: InvalidTokenDescription.type,
  claims: InvalidTokenDescription.claims,
  too_old: InvalidTokenDescription.tooOld,
};

/** One frozen result per reason: denying allocates nothing. */
const DENIALS = new Map<DenyReason, VerifyResult>([
  ...Object.entries(DESCRIPTIONS).map(
    ([reason, description]) => [reason as DenyReason, Object.freeze({ ok: false, status: 401, description, reason })] as const,
  ),
  ['keys_unavailable', Object.freeze({ ok: false, status: 503, description: 'The token issuer keys are unavailable', reason: 'keys_unavailable' })],
]);

function deny(reason: DenyReason): VerifyResult {
  return DENIALS.get(reason) as VerifyResult;
}

/** A refusal with the operator-facing detail (never shown to the client). */
function denyWith(reason: DenyReason, detail: string): VerifyResult {
  return { ...(DENIALS.get(reason) as VerifyResult & { ok: false }), detail };
}

interface IssuerRuntime {
  /** The previous config's object when the issuer's settings did not change: cached identities point at it. */
  readonly config: KeyedIssuer;
  readonly algorithms: ReadonlySet<string>;
  readonly keys: IssuerKeySet;
  readonly validateClaims: ClaimsValidator;
}

type IssuerFound = { readonly ok: true; readonly runtime: IssuerRuntime };
/** The issuer a token's `iss` names, if this route may use it with the token's `alg`. */
type IssuerLookup = IssuerFound | { readonly ok: false; readonly reason: DenyReason };

const UNKNOWN_ISSUER: IssuerLookup = Object.freeze({ ok: false, reason: 'unknown_issuer' });
const ISSUER_NOT_ALLOWED: IssuerLookup = Object.freeze({ ok: false, reason: 'issuer_not_allowed' });
const ALG_NOT_ALLOWED: IssuerLookup = Object.freeze({ ok: false, reason: 'alg_not_allowed' });

/**
 * Token verification (SPEC §4): canonical-JWS and header checks, issuer by exact `iss`, then that issuer's keys
 * alone (imported with jose, checked with node:crypto), then the claims. Successful results are cached until the
 * token lapses.
 */
export class JwtAuthenticator {
  private readonly runtimes = new Map<string, IssuerRuntime>();
  /** Exact `iss` value → its issuer (the config refuses two entries with one `iss`). */
  private readonly byIss = new Map<string, IssuerFound>();
  /**
   * Shared with the Authenticators before and after a reload, so the tokens of unchanged issuers stay verified.
   * An entry counts only while its identity's issuer config is this Authenticator's (see `owns`).
   */
  private readonly cache: TokenCache<Identity>;
  /** Verifications under way, by token digest: requests that bring the same new token together wait for one. */
  private readonly inflight = new Map<string, Promise<VerifyResult>>();
  private readonly now: () => number;
  private readonly logger: Logger;
  private readonly explain: boolean;
  private readonly cacheHits;
  private readonly cacheMisses;
  private readonly cacheShared;

  constructor(issuers: ReadonlyMap<string, IssuerConfig>, deps: AuthenticatorDeps, reuse?: JwtAuthenticator) {
    this.now = deps.now ?? Date.now;
    this.logger = deps.logger;
    this.explain = deps.explain ?? false;
    this.cacheHits = deps.metrics.tokenCache.labels('hit');
    this.cacheMisses = deps.metrics.tokenCache.labels('miss');
    this.cacheShared = deps.metrics.tokenCache.labels('shared');
    const keySetDeps = { logger: deps.logger, metrics: deps.metrics, now: this.now, fetchLimits: deps.fetchLimits ?? DEFAULT_FETCH_LIMITS };
    for (const [name, fresh] of issuers) {
      // An issuer without keys has every token introspected.
      if (!isKeyed(fresh)) continue;
      const previous = reuse?.runtimes.get(name);
      const config = previous !== undefined && sameSettings(previous.config, fresh) ? previous.config : fresh;
      // A key file is read again at every reload, as certificates are; a remote key set is shared while unchanged.
      const keys = previous !== undefined && previous.keys.identity === keySetIdentity(config) && config.keys.kind !== 'jwks_file'
        ? previous.keys.retain()
        : new IssuerKeySet(config, keySetDeps, previous?.keys);
      const runtime: IssuerRuntime = {
        config,
        algorithms: new Set(config.algorithms),
        keys,
        validateClaims: compileClaimsValidator(config),
      };
      this.runtimes.set(name, runtime);
      this.byIss.set(config.issuer, Object.freeze({ ok: true, runtime }));
    }
    this.cache = reuse?.cache ?? new TokenCache(deps.tokenCacheBytes);
    // Tokens of removed or changed issuers go now rather than when the LRU reaches them.
    this.cache.retainOnly((identity) => this.owns(identity));
  }

  /** First load of every issuer's keys; resolves when all settled, whether they worked or not. */
  async start(): Promise<void> {
    await Promise.all([...this.runtimes.values()].map((runtime) => runtime.keys.start()));
  }

  /** The key set of issuer `name`, if it has keys: anything else that checks this issuer's signatures shares it. */
  keySet(name: string): IssuerKeySet | undefined {
    return this.runtimes.get(name)?.keys;
  }

  issuerStatus(): ReadonlyMap<string, IssuerStatus> {
    const status = new Map<string, IssuerStatus>();
    for (const [name, runtime] of this.runtimes) status.set(name, runtime.keys.status());
    return status;
  }

  /** Stops background refreshes of key sets no newer Authenticator shares. */
  close(): void {
    for (const runtime of this.runtimes.values()) runtime.keys.release();
  }

  /** `allowedIssuers`: issuer names the route accepts; undefined = every configured issuer. */
  async verify(token: string, allowedIssuers: readonly string[] | undefined): Promise<VerifyResult> {
    return this.check(token, allowedIssuers);
  }

  /**
   * `verify` without waiting when nothing needs to: a cached token, and a new one whose issuer's keys are at hand
   * (verified on the spot), are answered synchronously, so the chain stays synchronous. Only a refetch of the
   * issuer's keys for an unknown kid, or joining such a verification under way, returns a promise.
   */
  check(token: string, allowedIssuers: readonly string[] | undefined): VerifyResult | Promise<VerifyResult> {
    // One digest per request: the cache key and the single-flight key.
    const digest = tokenDigest(token);
    const hit = this.hit(digest, allowedIssuers);
    if (hit !== undefined) return hit;

    const parsed = parseCompactJws(token);
    if (!parsed.ok) return this.missed(deny(parsed.reason));
    const { header, payload } = parsed;
    const found = this.runtimeFor(header.alg, payload.iss, allowedIssuers);
    if (!found.ok) return this.missed(this.routeRefusal(found.reason, header.alg, payload.iss, allowedIssuers));
    const runtime = found.runtime;
    // The checks above depend on the route; what follows depends on the token alone, so it can be shared.
    const underway = this.inflight.get(digest);
    if (underway !== undefined) {
      this.cacheShared.inc();
      return underway;
    }
    this.cacheMisses.inc();
    const keys = runtime.keys.lookup(header.alg, header.kid, this.now());
    if (keys.ok || keys.reason !== 'unknown_kid') return this.verifyWith(runtime, token, digest, header, payload, keys);
    // Only a refetch of the issuer's keys waits; requests that bring the same token meanwhile wait for this one.
    const verification = this.verifyAfterRefetch(runtime, token, digest, header, payload).finally(() => this.inflight.delete(digest));
    this.inflight.set(digest, verification);
    return verification;
  }

  private hit(digest: string, allowedIssuers: readonly string[] | undefined): VerifyResult | undefined {
    const cached = this.cache.get(digest, this.now());
    if (cached === undefined || !this.owns(cached)) return undefined;
    this.cacheHits.inc();
    if (allowedIssuers !== undefined && !allowedIssuers.includes(cached.issuer.name)) return deny('issuer_not_allowed');
    return { ok: true, identity: cached };
  }

  /** A token refused before any key was needed: counted as a cache miss, as every lookup is counted once. */
  private missed(refusal: VerifyResult): VerifyResult {
    this.cacheMisses.inc();
    return refusal;
  }

  /** An unknown `iss` always names itself and its nearest configured issuer: the classic slip is a trailing slash. */
  private routeRefusal(reason: DenyReason, alg: string, iss: unknown, allowedIssuers: readonly string[] | undefined): VerifyResult {
    if (reason === 'unknown_issuer') return denyWith(reason, unknownIssuerDetail(iss, this.byIss.keys()));
    if (!this.explain) return deny(reason);
    if (reason === 'alg_not_allowed') {
      const algorithms = this.byIss.get(iss as string)?.runtime.config.algorithms ?? [];
      return denyWith(reason, `alg ${quote(alg)} is not in algorithms [${algorithms.join(', ')}]`);
    }
    return denyWith(reason, `iss ${quote(iss)} belongs to an issuer this route does not accept (route issuers [${allowedIssuers?.join(', ') ?? ''}])`);
  }

  private keyRefusal(lookup: 'unknown_kid' | 'unavailable', runtime: IssuerRuntime, alg: string, kid: string | undefined): VerifyResult {
    const reason = lookup === 'unavailable' ? 'keys_unavailable' : 'unknown_kid';
    if (!this.explain) return deny(reason);
    if (lookup === 'unavailable') {
      return denyWith(reason, `issuer ${runtime.config.name} has no usable keys (${runtime.keys.status().error ?? 'not loaded'})`);
    }
    const named = kid === undefined ? 'the token names no kid;' : `kid ${quote(kid)} is not in the key set:`;
    return denyWith(reason, `${named} issuer ${runtime.config.name} has ${alg} keys with kids [${runtime.keys.kids(alg).join(', ')}]`);
  }

  /** A token naming a kid the issuer's keys lack: refetched once (rate-limited), then verified with what came. */
  private async verifyAfterRefetch(
    runtime: IssuerRuntime,
    token: string,
    digest: string,
    header: JoseHeader,
    payload: Record<string, unknown>,
  ): Promise<VerifyResult> {
    const keys = (await runtime.keys.refetchForUnknownKid()) ? runtime.keys.lookup(header.alg, header.kid, this.now()) : UNKNOWN_KID;
    return this.verifyWith(runtime, token, digest, header, payload, keys);
  }

  /**
   * The token's signature with its issuer's keys, then its claims; a success is cached. Synchronous from the key
   * lookup to the cache insert, so no key change can slip in between the keys that vouched and the entry made.
   */
  private verifyWith(
    runtime: IssuerRuntime,
    token: string,
    digest: string,
    header: JoseHeader,
    payload: Record<string, unknown>,
    keys: KeyLookup,
  ): VerifyResult {
    if (!keys.ok) return this.keyRefusal(keys.reason, runtime, header.alg, header.kid);
    if (!this.signatureHolds(token, keys.keys, runtime.config.name)) {
      if (!this.explain) return deny('bad_signature');
      return denyWith('bad_signature', `the signature does not verify with the ${keys.keys.length} ${header.alg} key(s) of issuer ${runtime.config.name}`);
    }

    const now = this.now();
    const claims = runtime.validateClaims(payload, header.typ, now);
    if (!claims.ok) {
      if (!this.explain) return deny(claims.reason);
      return denyWith(claims.reason, claimsFailureDetail(runtime.config, claims.reason, payload, header.typ, now));
    }

    const identity = buildIdentity(runtime.config, payload);
    this.cache.set(digest, identity, claims.validUntilMs, runtime.keys, estimateEntryBytes(token.length));
    return { ok: true, identity };
  }

  /** A cached identity counts only if its issuer, with the very settings it was verified under, is configured here. */
  private owns(identity: Identity): boolean {
    return this.runtimes.get(identity.issuer.name)?.config === identity.issuer;
  }

  /** The issuer that must verify a token, if the route accepts it and its `alg`. */
  private runtimeFor(alg: string, iss: unknown, allowedIssuers: readonly string[] | undefined): IssuerLookup {
    const found = typeof iss === 'string' ? this.byIss.get(iss) : undefined;
    if (found === undefined) return UNKNOWN_ISSUER;
    if (allowedIssuers !== undefined && !allowedIssuers.includes(found.runtime.config.name)) return ISSUER_NOT_ALLOWED;
    return found.runtime.algorithms.has(alg) ? found : ALG_NOT_ALLOWED;
  }

  /** Whether one of `keys` (all bound to the token's alg) signed the token; the token was checked canonical already. */
  private signatureHolds(token: string, keys: readonly VerificationKey[], issuer: string): boolean {
    const signed = secondDot(token);
    const signingInput = Buffer.from(token.slice(0, signed), 'latin1');
    const signature = Buffer.from(token.slice(signed + 1), 'base64url');
    for (const key of keys) {
      try {
        if (key.verifies(signingInput, signature)) return true;
      } catch (error) {
        // Not a plain mismatch (OpenSSL refused the input): worth a log line, never the token.
        this.logger.debug({ issuer, alg: key.alg, err: error }, 'signature check error');
      }
    }
    return false;
  }
}

/** Settings are plain data read from YAML in a fixed order: equal JSON means the issuer did not change. */
function sameSettings(a: IssuerConfig, b: IssuerConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What the JWT mechanism needs of verification; `authgate explain --claims` substitutes a dry run (no cache). */
export type TokenVerifier = Pick<JwtAuthenticator, 'start' | 'verify' | 'issuerStatus' | 'close'> & Partial<Pick<JwtAuthenticator, 'check' | 'keySet'>>;

const NOT_MINE: Authentication = Object.freeze({ ok: false, refusal: undefined });

/**
 * The JWT authenticator of one config; narrowed per route to the issuers the route accepts. It takes Bearer tokens,
 * and DPoP ones on routes that accept an issuer with `dpop` (whose sender constraint then checks the proof).
 */
export class JwtMechanism implements Compiled<Authenticator> {
  constructor(
    readonly verifier: TokenVerifier,
    private readonly issuers: ReadonlyMap<string, IssuerConfig>,
  ) {}

  start(): Promise<void> {
    return this.verifier.start();
  }

  close(): void {
    this.verifier.close();
  }

  status(): ReadonlyMap<string, IssuerStatus> {
    return this.verifier.issuerStatus();
  }

  /** Issuer `name`'s keys as this config holds them (one fetch and one cache per issuer, whoever verifies). */
  issuerKeys(name: string): IssuerKeySet | undefined {
    return this.verifier.keySet?.(name);
  }

  forRoute(route: RouteConfig, errors: ErrorRenderer): Authenticator | undefined {
    if (route.auth === 'none') return undefined;
    const { verifier } = this;
    const issuers = route.issuers;
    const settle = settler(errors);
    const takesDpop = routeDpop(route, this.issuers) !== undefined;
    return {
      authenticate(credential) {
        if (credential.scheme !== 'bearer' && !(credential.scheme === 'dpop' && takesDpop)) return NOT_MINE;
        const checked = verifier.check !== undefined ? verifier.check(credential.value, issuers) : verifier.verify(credential.value, issuers);
        return isThenable(checked) ? checked.then(settle) : settle(checked);
      },
    };
  }
}

/** Maps verify()'s result: a success is already an Authentication; a failure becomes one frozen Refusal per reason. */
function settler(errors: ErrorRenderer): (verified: VerifyResult) => Authentication {
  const refusals = new Map<string, { readonly ok: false; readonly refusal: Refusal }>();
  return (verified) => {
    if (verified.ok) return verified;
    let known = refusals.get(verified.reason);
    if (known === undefined) {
      const error = verified.status === 503 ? errors.unavailable(verified.description) : errors.invalidCredentials(verified.description);
      known = Object.freeze({ ok: false, refusal: Object.freeze({ ok: false, stage: 'authenticate', error, reason: verified.reason }) });
      refusals.set(verified.reason, known);
    }
    if (verified.detail === undefined) return known;
    return { ok: false, refusal: { ...known.refusal, detail: verified.detail } };
  };
}

/** The registry's `jwt`: unchanged issuers keep the previous config's key sets and cache. */
export const jwt: MechanismType<Authenticator> = {
  create({ config, logger, metrics }, previous) {
    const reusable = previous instanceof JwtMechanism && previous.verifier instanceof JwtAuthenticator ? previous.verifier : undefined;
    return new JwtMechanism(new JwtAuthenticator(config.issuers, { logger, metrics }, reusable), config.issuers);
  },
};
