/**
 * The only file that names every mechanism. It is a plain object: importing it runs nothing, and a mechanism is
 * in the gateway exactly when it has a line here (no self-registration by import side effects).
 */
import type { Authenticator, Authorizer, ErrorsType, Finalizer, Limiter, MechanismType, SenderConstraint } from '../chain/kinds.js';
import { introspection } from '../mechanisms/authenticators/introspection.js';
import { session } from '../login/mechanism.js';
import { jwt } from '../mechanisms/authenticators/jwt/authenticator.js';
import { cookie } from '../mechanisms/credentials/cookie.js';
import { header } from '../mechanisms/credentials/header.js';
import { query } from '../mechanisms/credentials/query.js';
import type { CredentialFinders } from '../mechanisms/credentials/search.js';
import { expressionRules } from '../mechanisms/authorizers/expression.js';
import { requireRules } from '../mechanisms/authorizers/require.js';
import { bearer } from '../mechanisms/errors/bearer.js';
import { dpop } from '../mechanisms/errors/dpop.js';
import { assertion } from '../mechanisms/finalizers/assertion.js';
import { headerHygiene } from '../mechanisms/finalizers/header-hygiene.js';
import { identityHeaders } from '../mechanisms/finalizers/identity-headers.js';
import { rateLimits } from '../mechanisms/limiters/rate-limit.js';
import { certificateBound } from '../mechanisms/mtls/certificate-bound.js';
import { dpopBoundAsBearer } from '../mechanisms/dpop/bearer-bound.js';
import { dpopProof } from '../mechanisms/dpop/constraint.js';

export interface Registry {
  /** One per kind of `tokens:` entry; the search refuses a request that carries more than one credential. */
  readonly credentials: CredentialFinders;
  /** Asked in this order; the first "mine" decides. */
  readonly authenticators: Readonly<Record<string, MechanismType<Authenticator>>>;
  /** Checked after authentication, in this order: the presenter holds what the token is bound to. */
  readonly constraints: Readonly<Record<string, MechanismType<SenderConstraint>>>;
  /** All must hold, in this order. */
  readonly authorizers: Readonly<Record<string, MechanismType<Authorizer>>>;
  readonly limiters: Readonly<Record<string, MechanismType<readonly Limiter[]>>>;
  /** Run in this order on the way to the upstream. */
  readonly finalizers: Readonly<Record<string, MechanismType<Finalizer>>>;
  /** The first that applies to a route renders its refusals. */
  readonly errors: Readonly<Record<string, ErrorsType>>;
}

export const registry = {
  credentials: { header, cookie, query },
  // Introspection first: it claims only what is not a JWS (and the JWTs of an issuer that introspects them too).
  authenticators: { introspection, jwt, session },
  constraints: { dpop_bearer: dpopBoundAsBearer, dpop: dpopProof, certificate_bound: certificateBound },
  authorizers: { require: requireRules, expr: expressionRules },
  limiters: { rate_limit: rateLimits },
  finalizers: { hygiene: headerHygiene, identity_headers: identityHeaders, assertion },
  // DPoP first: it renders only the routes that accept an issuer with `dpop`, Bearer all the others.
  errors: { dpop, bearer },
} as const satisfies Registry;
