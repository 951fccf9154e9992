/**
 * Identity headers for the upstream (SPEC §3 `identity.headers`, §5). Compiled once per config into one
 * reader per header, so a request only reads its identity and writes strings.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Identity } from '../../identity/identity.js';
import type { IdentityConfig, IdentityField } from '../../config/types.js';
import { claimAsList, claimAsString, readClaim } from '../../identity/claim-path.js';
import type { Finalizer, MechanismType } from '../../chain/kinds.js';
import { PASS } from '../../chain/verdict.js';

export interface IdentityHeaderWriter {
  /** Sets each configured header that has a value (keys lower-cased); absent or empty values set nothing. */
  write(identity: Identity, into: OutgoingHttpHeaders): void;
}

type FieldReader = (identity: Identity) => string | undefined;

function fieldReader(field: IdentityField, separator: string): FieldReader {
  const joined = (list: readonly string[]): string | undefined => (list.length === 0 ? undefined : list.join(separator));
  switch (field.kind) {
    case 'subject':
      return (identity) => identity.subject;
    case 'email':
      return (identity) => identity.email;
    case 'roles':
      return (identity) => joined(identity.roles);
    case 'permissions':
      return (identity) => joined(identity.permissions);
    case 'scopes':
      return (identity) => joined(identity.scopes);
    // The `iss` URL, not the config name: it is what the token said and what the upstream can check.
    case 'issuer':
      return (identity) => identity.issuer.issuer;
    case 'client_id':
      return (identity) => identity.clientId;
    case 'claim': {
      const { path } = field;
      return (identity) => {
        const value = readClaim(identity.claims, path);
        return Array.isArray(value) ? joined(claimAsList(value)) : claimAsString(value);
      };
    }
  }
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, byte) => byte.toString(16).toUpperCase().padStart(2, '0'));

const OUTSIDE_PLAIN = /[^\x20-\x7e]/;

function isPlainByte(byte: number): boolean {
  return byte >= 0x20 && byte <= 0x7e;
}

/**
 * The value unchanged when every character is visible ASCII or space; otherwise its UTF-8 bytes with every
 * byte outside that range, and `%` itself, written as `%XX`, so `decodeURIComponent` restores it exactly.
 * CR, LF and NUL therefore can never reach a header. Lone surrogates become U+FFFD.
 */
export function headerSafeValue(value: string): string {
  if (!OUTSIDE_PLAIN.test(value)) return value;
  let encoded = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    encoded += isPlainByte(byte) && byte !== 0x25 ? String.fromCharCode(byte) : `%${HEX[byte]}`;
  }
  return encoded;
}

export function compileIdentityHeaders(config: IdentityConfig): IdentityHeaderWriter {
  const headers = config.headers.map((header) => ({
    name: header.name.toLowerCase(),
    read: fieldReader(header.field, config.listSeparator),
  }));
  return {
    write(identity, into) {
      for (const header of headers) {
        const value = header.read(identity);
        if (value !== undefined && value !== '') into[header.name] = headerSafeValue(value);
      }
    },
  };
}

/** The registry's `identity_headers`: what the upstream is told about the caller (`identity.headers`). */
export const identityHeaders: MechanismType<Finalizer> = {
  create({ config }) {
    const writer = compileIdentityHeaders(config.identity);
    const finalizer: Finalizer = {
      finalize(ctx) {
        if (ctx.identity !== undefined && ctx.upstreamHeaders !== undefined) writer.write(ctx.identity, ctx.upstreamHeaders);
        return PASS;
      },
    };
    return { forRoute: () => finalizer };
  },
};
