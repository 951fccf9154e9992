import type { IdentityField } from '../config/types.js';
import type { ClientCertificate } from '../http/client-certificate.js';
import { claimAsList, claimAsString, readClaim } from './claim-path.js';
import type { Identity } from './identity.js';

/** A field of an identity: one value, a list (never joined here, so each user chooses how), or nothing. */
export type FieldValue = string | readonly string[] | undefined;

/** What a field may read of the request besides its identity: the connection's client certificate. */
export interface FieldSource {
  peerCertificate(): ClientCertificate | undefined;
}

export type FieldReader = (identity: Identity, request: FieldSource) => FieldValue;

/** Whether the field reads the request (its connection) rather than the identity alone. */
export function readsRequest(field: IdentityField): boolean {
  return field.kind === 'client_cert_subject' || field.kind === 'client_cert_fingerprint';
}

/** Compiled once per config: the reader of one identity field (`identity.headers`, later assertions and rules). */
export function compileField(field: IdentityField): FieldReader {
  switch (field.kind) {
    case 'subject':
      return (identity) => identity.subject;
    case 'email':
      return (identity) => identity.email;
    case 'roles':
      return (identity) => identity.roles;
    case 'permissions':
      return (identity) => identity.permissions;
    case 'scopes':
      return (identity) => identity.scopes;
    // The `iss` URL, not the config name: it is what the token said and what the upstream can check.
    case 'issuer':
      return (identity) => identity.issuer.issuer;
    // The name under `issuers:`: stable across an issuer's URL changes, and what the access log shows.
    case 'issuer_name':
      return (identity) => identity.issuer.name;
    case 'client_id':
      return (identity) => identity.clientId;
    // The connection's certificate, not the token's: what the client proved it holds.
    case 'client_cert_subject':
      return (_identity, request) => request.peerCertificate()?.subject;
    case 'client_cert_fingerprint':
      return (_identity, request) => request.peerCertificate()?.fingerprint;
    case 'claim': {
      const { path } = field;
      return (identity) => {
        const value = readClaim(identity.claims, path);
        return Array.isArray(value) ? claimAsList(value) : claimAsString(value);
      };
    }
  }
}
