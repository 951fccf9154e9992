import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

/** The client certificate a TLS connection presented, as the gateway uses it (RFC 8705 binding, identity fields). */
export interface ClientCertificate {
  /** base64url(SHA-256(DER)): the token's `x5t#S256` (RFC 8705 §3.1), and the `client_cert_fingerprint` field. */
  readonly fingerprint: string;
  /** The subject distinguished name, e.g. `O=Acme, CN=alice`: the `client_cert_subject` field. */
  readonly subject: string;
}

export function clientCertificate(der: Buffer): ClientCertificate {
  const subject = new X509Certificate(der).subject.split('\n').join(', ');
  return Object.freeze({ fingerprint: createHash('sha256').update(der).digest('base64url'), subject });
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
