import type { Authentication, Authenticator, Compiled, CompileContext, ErrorRenderer, MechanismType } from '../../chain/kinds.js';
import type { Refusal } from '../../chain/verdict.js';
import type { IntrospectionConfig } from '../../config/introspection.js';
import type { IssuerConfig, RouteConfig } from '../../config/types.js';
import { InvalidTokenDescription } from '../../http/responses.js';
import { Introspector, type Introspection } from './introspection/introspector.js';
import type { IntrospectionFailure } from './introspection/response.js';
import { parseCompactJws } from './jwt/jws.js';

const NOT_MINE: Authentication = Object.freeze({ ok: false, refusal: undefined });

const DESCRIPTIONS: Readonly<Record<Exclude<IntrospectionFailure, 'unavailable'>, string>> = {
  inactive: InvalidTokenDescription.inactive,
  expired: InvalidTokenDescription.expired,
  issuer: InvalidTokenDescription.issuer,
  audience: InvalidTokenDescription.audience,
  type: InvalidTokenDescription.type,
  claims: InvalidTokenDescription.claims,
};

/** What the endpoint's answer said, for the access log and `authgate explain`. */
const DETAILS: Readonly<Record<IntrospectionFailure, string>> = {
  inactive: 'answered active: false',
  expired: 'answered active, but its exp has passed',
  issuer: 'answered active, with an iss naming another issuer',
  audience: 'answered active, with an aud matching none of the audiences',
  type: 'answered active, for a refresh token',
  claims: 'answered active, with claims that do not meet require_claims',
  unavailable: 'gave no usable answer, and nothing is cached for this token',
};

/**
 * A compact JWS has exactly two dots; opaque tokens (random strings, Hydra's `ory_at_…`) have at most one. Only the
 * shape is looked at: whether it is a valid JWS is the JWT authenticator's question.
 */
function isCompactJwsShaped(token: string): boolean {
  const first = token.indexOf('.');
  if (first < 0) return false;
  const second = token.indexOf('.', first + 1);
  return second > 0 && token.indexOf('.', second + 1) < 0;
}

/** One introspecting issuer as a route sees it. */
interface Introspecting {
  readonly issuer: IssuerConfig;
  readonly config: IntrospectionConfig;
  /** Its JWTs go to the endpoint too: `jwt: true`, or it has no keys of its own. */
  readonly takesJwts: boolean;
  /** Filled by `start()`: a `private_key_jwt` client reads its key file first. */
  introspector: Introspector | undefined;
}

/**
 * Opaque tokens (RFC 7662). Asked before the JWT authenticator: a token that is not JWS-shaped is opaque, and is
 * mine when the route accepts an issuer with `introspection` (the config allows at most one per route). A JWS is
 * mine only for an issuer that introspects its JWTs too, and only when its `iss` names that issuer, so no other
 * issuer's token is ever sent to this identity provider.
 */
class IntrospectionMechanism implements Compiled<Authenticator> {
  private readonly byName = new Map<string, Introspecting>();

  constructor(
    issuers: readonly (readonly [IssuerConfig, IntrospectionConfig])[],
    private readonly ctx: CompileContext,
    previous: IntrospectionMechanism | undefined,
  ) {
    for (const [issuer, config] of issuers) {
      const kept = previous?.byName.get(issuer.name);
      // An unchanged issuer keeps its introspector, and so its cache, across a reload.
      const reused = kept !== undefined && sameIntrospection(kept.issuer, issuer) ? kept : undefined;
      const takesJwts = issuer.keys === undefined || config.jwt;
      this.byName.set(issuer.name, reused ?? { issuer, config, takesJwts, introspector: undefined });
    }
  }

  async start(): Promise<void> {
    const { logger, metrics } = this.ctx;
    await Promise.all([...this.byName.values()].map(async (entry) => {
      entry.introspector ??= await Introspector.create(entry.issuer, entry.config, { logger, metrics, nowMs: Date.now });
    }));
  }

  forRoute(route: RouteConfig, errors: ErrorRenderer): Authenticator | undefined {
    if (route.auth === 'none') return undefined;
    const names = route.issuers ?? [...this.byName.keys()];
    const entry = names.map((name) => this.byName.get(name)).find((found) => found !== undefined);
    if (entry === undefined) return undefined;
    const settle = settler(entry.issuer.name, errors);
    // A DPoP token goes to the endpoint only for an issuer that takes DPoP; its sender constraint checks the proof.
    const takesDpop = entry.issuer.dpop !== undefined;
    return {
      authenticate(credential) {
        if (credential.scheme !== 'bearer' && !(credential.scheme === 'dpop' && takesDpop)) return NOT_MINE;
        if (isCompactJwsShaped(credential.value) && !(entry.takesJwts && namesIssuer(credential.value, entry.issuer.issuer))) return NOT_MINE;
        const result = entry.introspector?.introspect(credential.value) ?? UNSTARTED;
        return result instanceof Promise ? result.then(settle) : settle(result);
      },
    };
  }
}

const UNSTARTED: Introspection = Object.freeze({ ok: false, reason: 'unavailable' });

/** The unverified `iss` of a JWS: it only decides where the token is sent, the endpoint then judges it. */
function namesIssuer(token: string, iss: string): boolean {
  const parsed = parseCompactJws(token);
  return parsed.ok && parsed.payload.iss === iss;
}

/** One frozen refusal per reason, built on first use; the detail names the issuer for the access log and explain. */
function settler(issuer: string, errors: ErrorRenderer): (result: Introspection) => Authentication {
  const refusals = new Map<IntrospectionFailure, Authentication>();
  return (result) => {
    if (result.ok) return result;
    let known = refusals.get(result.reason);
    if (known === undefined) {
      const error = result.reason === 'unavailable'
        ? errors.unavailable('The token introspection endpoint is unavailable')
        : errors.invalidCredentials(DESCRIPTIONS[result.reason]);
      const detail = `the introspection endpoint of issuer ${issuer} ${DETAILS[result.reason]}`;
      const refusal: Refusal = Object.freeze({ ok: false, stage: 'authenticate', error, reason: `introspection_${result.reason}`, detail });
      known = Object.freeze({ ok: false, refusal });
      refusals.set(result.reason, known);
    }
    return known;
  };
}

/** Settings are plain data in a fixed order; a client secret prints redacted, so it is compared by value. */
function sameIntrospection(a: IssuerConfig, b: IssuerConfig): boolean {
  const secret = (issuer: IssuerConfig): string | undefined => {
    const auth = issuer.introspection?.auth;
    return auth !== undefined && 'secret' in auth ? auth.secret.reveal() : undefined;
  };
  return JSON.stringify(a) === JSON.stringify(b) && secret(a) === secret(b);
}

/** The registry's `introspection`: present when an issuer has `introspection`. */
export const introspection: MechanismType<Authenticator> = {
  create(ctx, previous) {
    const issuers = [...ctx.config.issuers.values()].flatMap((issuer) => (issuer.introspection === undefined ? [] : [[issuer, issuer.introspection] as const]));
    if (issuers.length === 0) return undefined;
    return new IntrospectionMechanism(issuers, ctx, previous instanceof IntrospectionMechanism ? previous : undefined);
  },
};
