import type { OutgoingHttpHeaders } from 'node:http';
import type { Limiter, MechanismType, RequestContext, ErrorRenderer } from '../../chain/kinds.js';
import { PASS, refusal, type Trace, type Verdict } from '../../chain/verdict.js';
import type { RateLimitConfig, RateLimitKey } from '../../config/types.js';
import { headerValue } from '../../http/headers.js';
import { rateLimitAddress } from '../../http/client-ip.js';
import { claimAsString, readClaim } from '../../identity/claim-path.js';
import type { Identity } from '../../identity/identity.js';
import type { Metrics } from '../../observability/metrics.js';
import type { RateLimitDecision, RateLimitStore } from '../../store/types.js';

/**
 * The route's `rate_limit` entries as two limiters: those keyed by the client (IP, a header) run before
 * authentication, so brute force is cheap to refuse; those keyed by the identity run after authorization.
 */
export const rateLimits: MechanismType<readonly Limiter[]> = {
  create({ config, store, metrics }) {
    // One per limit, shared by the routes that use it.
    const buckets = new Map<string, IdentityBuckets>();
    const keyed = (limit: RateLimitConfig): KeyedLimit => {
      let identityBuckets = buckets.get(limit.name);
      if (identityBuckets === undefined) buckets.set(limit.name, (identityBuckets = new WeakMap()));
      return { config: limit, identityBuckets };
    };
    return {
      forRoute(route, errors) {
        const client: KeyedLimit[] = [];
        const identity: KeyedLimit[] = [];
        for (const name of route.rateLimit) {
          const limit = config.rateLimits.get(name);
          if (!limit) continue; // validated by config; a dangling name cannot get here
          if (limit.key.kind === 'ip' || limit.key.kind === 'header') client.push(keyed(limit));
          else identity.push(keyed(limit));
        }
        const deps: LimiterDeps = { store: store.rateLimits, metrics, errors };
        const limiters: Limiter[] = [];
        if (client.length > 0) limiters.push(limiter('client', client, deps));
        if (identity.length > 0) limiters.push(limiter('identity', identity, deps));
        return limiters;
      },
    };
  },
};

/**
 * The bucket of each identity an identity-keyed limit has seen (null: the identity lacks the value it is keyed by).
 * Identities come from the token cache, so a token's requests find the very string of its first one, whose hash
 * the store's lookup has already computed, instead of building and hashing a new one each time.
 */
type IdentityBuckets = WeakMap<Identity, string | null>;

interface KeyedLimit {
  readonly config: RateLimitConfig;
  readonly identityBuckets: IdentityBuckets;
}

interface LimiterDeps {
  readonly store: RateLimitStore;
  readonly metrics: Metrics;
  readonly errors: ErrorRenderer;
}

function limiter(phase: 'client' | 'identity', limits: readonly KeyedLimit[], deps: LimiterDeps): Limiter {
  const names = `${phase} limits [${limits.map((limit) => limit.config.name).join(', ')}] have room`;
  /** Consumes from `limits[from]` on; synchronous while the store answers at once, as leased limits usually do. */
  function check(ctx: RequestContext, trace: Trace | undefined, from: number): Verdict | Promise<Verdict> {
    for (let index = from; index < limits.length; index++) {
      const keyed = limits[index] as KeyedLimit;
      const limit = keyed.config;
      const decision = deps.store.consume(limit.name, limitKey(keyed, ctx));
      if (decision instanceof Promise) {
        return decision.then((settled) => refusalFor(limit, settled, ctx, trace, deps) ?? check(ctx, trace, index + 1));
      }
      const refused = refusalFor(limit, decision, ctx, trace, deps);
      if (refused !== undefined) return refused;
    }
    trace?.('rate_limit', true, names);
    return PASS;
  }
  return { stage: 'rate_limit', phase, run: (ctx, trace) => check(ctx, trace, 0) };
}

/** The 429 for a refused decision; an admitted one becomes the answer's RateLimit-* if it is the tightest so far. */
function refusalFor(limit: RateLimitConfig, decision: RateLimitDecision, ctx: RequestContext, trace: Trace | undefined, deps: LimiterDeps): Verdict | undefined {
  if (!decision.allowed) {
    deps.metrics.rateLimited.inc({ limit: limit.name });
    trace?.('rate_limit', false, `limit ${limit.name} exhausted`);
    const headers = rateLimitHeaders(decision);
    headers['retry-after'] = String(Math.max(1, Math.ceil(decision.resetMs / 1000)));
    return refusal('rate_limit', deps.errors.rateLimited(headers), `rate_limit_${limit.name}`);
  }
  // The answer carries the tightest decision so the client sees the binding limit.
  if (!ctx.limit || decision.remaining < ctx.limit.remaining) ctx.limit = decision;
  return undefined;
}

/**
 * The bucket a request counts against. Identity keys come only from the verified identity; a request
 * without one (anonymous on an `auth: optional` route) counts against its client IP instead, so it is
 * still limited.
 */
function limitKey(limit: KeyedLimit, ctx: RequestContext): string {
  const { clientIp, identity } = ctx;
  const key = limit.config.key;
  if (key.kind === 'ip') return `ip:${rateLimitAddress(clientIp)}`;
  if (key.kind === 'header') {
    // A request without the header counts against its client IP, never against one bucket shared by all.
    const value = headerValue(ctx.headers[key.name]);
    return value !== undefined ? `h:${headerBucket(key.name, value)}` : `anon:${rateLimitAddress(clientIp)}`;
  }
  if (identity === undefined) return `anon:${rateLimitAddress(clientIp)}`;
  let bucket = limit.identityBuckets.get(identity);
  if (bucket === undefined) {
    bucket = identityBucket(key, identity);
    limit.identityBuckets.set(identity, bucket);
  }
  return bucket ?? `anon:${rateLimitAddress(clientIp)}`;
}

/**
 * One spelling per value a server reads alike: surrounding and repeated whitespace, and in Authorization the scheme's
 * case (`Bearer`, `bearer`, `BEARER`, RFC 9110 §11.1), do not make a new bucket for the same credential.
 */
function headerBucket(name: string, value: string): string {
  const spaced = value.trim().replace(/[ \t]+/g, ' ');
  if (name !== 'authorization') return spaced;
  const space = spaced.indexOf(' ');
  return space < 0 ? spaced.toLowerCase() : spaced.slice(0, space).toLowerCase() + spaced.slice(space);
}

/** The bucket of an identity-keyed limit, or null when the identity lacks the value the limit is keyed by. */
function identityBucket(key: RateLimitKey, identity: Identity): string | null {
  const issuer = identity.issuer.name;
  switch (key.kind) {
    case 'subject':
      return identity.subject !== undefined ? `sub:${issuer}:${identity.subject}` : null;
    case 'client_id':
      return identity.clientId !== undefined ? `cid:${issuer}:${identity.clientId}` : null;
    case 'claim': {
      const value = claimAsString(readClaim(identity.claims, key.path));
      return value !== undefined ? `claim:${issuer}:${value}` : null;
    }
    default:
      return null; // ip and header keys are the client's, never read from an identity
  }
}

/** RateLimit-* (IETF draft) for a decision, as name/value pairs: on every answer of a limited route. */
export function rateLimitHeaderPairs(decision: RateLimitDecision): string[] {
  return [
    'ratelimit-limit', String(decision.limit),
    'ratelimit-remaining', String(Math.max(0, decision.remaining)),
    'ratelimit-reset', String(Math.max(0, Math.ceil(decision.resetMs / 1000))),
  ];
}

/** The same headers as an object, for the gateway's own answers (with Retry-After on a 429). */
export function rateLimitHeaders(decision: RateLimitDecision): OutgoingHttpHeaders {
  const pairs = rateLimitHeaderPairs(decision);
  const headers: OutgoingHttpHeaders = {};
  for (let i = 0; i < pairs.length; i += 2) headers[pairs[i] as string] = pairs[i + 1];
  return headers;
}
