/**
 * For upstream services: verify the assertion authgate attached, against its published keys. Only the
 * asymmetric algorithms authgate signs with are accepted, and `iss`, `aud` and `exp` are always checked, so an
 * assertion made for another upstream, by another key, or long ago is refused.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';

const ASSERTION_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'];
export const DEFAULT_ASSERTION_HEADER = 'x-authgate-assertion';

export interface AssertionVerifierOptions {
  /** The gateway's `{reserved_prefix}/jwks.json` (or the admin listener's `/jwks.json`)… */
  readonly jwksUri?: string | URL;
  /** …or the public keys themselves. */
  readonly keys?: JSONWebKeySet;
  /** The gateway's assertion issuer. */
  readonly issuer: string;
  /** This service's origin, as the gateway's upstream URL names it (`https://orders.internal:8443`). */
  readonly audience: string;
  /** Seconds of clock difference tolerated on `exp`/`iat`; default 5. */
  readonly clockTolerance?: number;
}

export interface AssertionClaims extends JWTPayload {
  readonly sub: string;
  readonly route: string;
  readonly [field: string]: unknown;
}

export interface AssertionVerifier {
  /** The verified claims; rejects on a forged, expired or misdirected assertion. */
  verify(assertion: string): Promise<AssertionClaims>;
}

export function createAssertionVerifier(options: AssertionVerifierOptions): AssertionVerifier {
  if ((options.jwksUri === undefined) === (options.keys === undefined)) throw new Error('give exactly one of jwksUri or keys');
  const keySet = options.keys === undefined ? createRemoteJWKSet(new URL(options.jwksUri!)) : createLocalJWKSet(options.keys);
  const checks = {
    issuer: options.issuer,
    audience: options.audience,
    algorithms: ASSERTION_ALGORITHMS,
    clockTolerance: options.clockTolerance ?? 5,
    requiredClaims: ['iss', 'aud', 'sub', 'exp', 'iat', 'route'],
  };
  return {
    async verify(assertion) {
      const { payload } = await jwtVerify(assertion, keySet, checks);
      return payload as AssertionClaims;
    },
  };
}

type AuthgateRequest = IncomingMessage & { authgate?: AssertionClaims };

/**
 * `(req, res, next)` for node:http and Express: 401 without a valid assertion (one header, verified), otherwise
 * `req.authgate` holds the claims and `next()` runs.
 */
export function assertionMiddleware(verifier: AssertionVerifier, options: { header?: string } = {}) {
  const header = (options.header ?? DEFAULT_ASSERTION_HEADER).toLowerCase();
  return (req: AuthgateRequest, res: ServerResponse, next: (error?: unknown) => void): void => {
    const value = req.headers[header];
    if (typeof value !== 'string' || value === '') {
      refuse(res, `missing ${header}`);
      return;
    }
    verifier.verify(value).then(
      (claims) => {
        req.authgate = claims;
        next();
      },
      (error: unknown) => refuse(res, `invalid ${header}: ${(error as Error).message}`),
    );
  };
}

function refuse(res: ServerResponse, description: string): void {
  const body = JSON.stringify({ error: 'invalid_assertion', error_description: description });
  res.writeHead(401, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${body}\n`);
}
