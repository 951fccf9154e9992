import type { MechanismType, SenderConstraint } from '../../chain/kinds.js';
import { refusal } from '../../chain/verdict.js';
import type { ClientCertificate } from '../../http/client-certificate.js';
import { InvalidTokenDescription } from '../../http/responses.js';
import { isPlainObject } from '../../lib/json.js';

/**
 * Certificate-bound access tokens (RFC 8705 §3): a token whose `cnf["x5t#S256"]` names a certificate is good only
 * on a TLS connection where the client presented that very certificate.
 */
export type CertificateBinding = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const BOUND: CertificateBinding = Object.freeze({ ok: true });

/** Pure: the token's `cnf` claim and the connection's certificate (undefined without one). Unbound tokens pass. */
export function checkCertificateBinding(cnf: unknown, certificate: ClientCertificate | undefined): CertificateBinding {
  // Not a JSON object (RFC 7800 §3.1 requires one): whatever it binds to cannot be read, so nothing can satisfy it.
  if (cnf !== undefined && !isPlainObject(cnf)) return { ok: false, reason: 'cnf is not a JSON object' };
  const thumbprint = isPlainObject(cnf) ? cnf['x5t#S256'] : undefined;
  if (thumbprint === undefined) return BOUND;
  if (typeof thumbprint !== 'string') return { ok: false, reason: 'cnf x5t#S256 is not a string' };
  if (certificate === undefined) return { ok: false, reason: 'the token is bound to a client certificate and the connection has none' };
  if (certificate.fingerprint !== thumbprint) return { ok: false, reason: 'the token is bound to another client certificate' };
  return BOUND;
}

/**
 * The registry's `certificate_bound`: on routes that accept an issuer with `certificate_bound: true`, a token of
 * that issuer carrying `cnf["x5t#S256"]` needs that very certificate on the connection (401 otherwise).
 */
export const certificateBound: MechanismType<SenderConstraint> = {
  create({ config }) {
    const bound = new Set([...config.issuers.values()].filter((issuer) => issuer.certificateBound).map((issuer) => issuer.name));
    if (bound.size === 0) return undefined;
    return {
      forRoute(route, errors) {
        if (route.auth === 'none' || !(route.issuers ?? [...bound]).some((name) => bound.has(name))) return undefined;
        const refused = refusal('authenticate', errors.invalidCredentials(InvalidTokenDescription.unbound), 'certificate_binding');
        return {
          check(identity, ctx) {
            if (!bound.has(identity.issuer.name)) return undefined;
            const binding = checkCertificateBinding(identity.claims.cnf, ctx.peerCertificate());
            return binding.ok ? undefined : { ...refused, detail: binding.reason };
          },
        };
      },
    };
  },
};
