import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { isPlainObject } from '../../lib/json.js';

/**
 * Certificate-bound access tokens (RFC 8705 §3): a token whose `cnf["x5t#S256"]` names a certificate is good only
 * on a TLS connection where the client presented that very certificate.
 */
export interface ClientCertificate {
  /** base64url(SHA-256(DER)): the token's `x5t#S256` (RFC 8705 §3.1), and the `client_cert_fingerprint` field. */
  readonly fingerprint: string;
  /** The subject distinguished name, e.g. `O=Acme, CN=alice`: the `client_cert_subject` field. */
  readonly subject: string;
}

export type CertificateBinding = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const BOUND: CertificateBinding = Object.freeze({ ok: true });

export function clientCertificate(der: Buffer): ClientCertificate {
  const subject = new X509Certificate(der).subject.split('\n').join(', ');
  return Object.freeze({ fingerprint: createHash('sha256').update(der).digest('base64url'), subject });
}

/** The identity fields a certificate adds (`client_cert_subject`, `client_cert_fingerprint`). */
export function certificateIdentityFields(certificate: ClientCertificate): Readonly<Record<string, string>> {
  return Object.freeze({ client_cert_subject: certificate.subject, client_cert_fingerprint: certificate.fingerprint });
}

/** Pure: the token's `cnf` claim and the connection's certificate (undefined without one). Unbound tokens pass. */
export function checkCertificateBinding(cnf: unknown, certificate: ClientCertificate | undefined): CertificateBinding {
  const thumbprint = isPlainObject(cnf) ? cnf['x5t#S256'] : undefined;
  if (thumbprint === undefined) return BOUND;
  if (typeof thumbprint !== 'string') return { ok: false, reason: 'cnf x5t#S256 is not a string' };
  if (certificate === undefined) return { ok: false, reason: 'the token is bound to a client certificate and the connection has none' };
  if (certificate.fingerprint !== thumbprint) return { ok: false, reason: 'the token is bound to another client certificate' };
  return BOUND;
}

const seen = new WeakMap<TLSSocket, ClientCertificate | null>();

/**
 * The client certificate of a TLS connection, read once per connection: `getPeerCertificate` allocates a fresh
 * object tree on every call, and every request on a kept-alive connection has the same certificate. Only a
 * certificate that chains to `client_ca_file` counts: with `client_auth: optional` the handshake also admits
 * certificates nobody vouches for, whose subject anyone could have written.
 */
export function connectionCertificate(socket: TLSSocket): ClientCertificate | undefined {
  let certificate = seen.get(socket);
  if (certificate === undefined) {
    const raw = socket.authorized ? (socket.getPeerCertificate().raw as Buffer | undefined) : undefined;
    certificate = raw === undefined ? null : clientCertificate(raw);
    seen.set(socket, certificate);
  }
  return certificate ?? undefined;
}
