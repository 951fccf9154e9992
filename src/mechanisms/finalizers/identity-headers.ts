/**
 * Identity headers for the upstream (SPEC §3 `identity.headers`, §5). Compiled once per config into one
 * reader per header, so a request only reads its identity and writes strings.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Identity } from '../../identity/identity.js';
import type { IdentityConfig } from '../../config/types.js';
import { Errors } from '../../http/responses.js';
import { compileField, readsRequest, type FieldSource } from '../../identity/fields.js';
import type { Finalizer, MechanismType } from '../../chain/kinds.js';
import { PASS, refusal, type Refusal, type Verdict } from '../../chain/verdict.js';

export interface IdentityHeaderWriter {
  /**
   * Sets each configured header that has a value (keys lower-cased); absent or empty values set nothing. Refuses
   * when an item of a list holds the list separator: joined, `admin,ops` would reach the upstream as two roles.
   */
  write(identity: Identity, into: OutgoingHttpHeaders, request: FieldSource): Verdict;
}

const NOT_EXPRESSIBLE = refusal('inject', Errors.identityNotExpressible, 'identity_list_separator');

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
  const separator = config.listSeparator;
  const headers = config.headers.map((header) => ({ name: header.name.toLowerCase(), read: compileField(header.field) }));
  /** Flat name/value pairs of the headers that have a value, or the refusal. */
  const written = (identity: Identity, request: FieldSource): readonly string[] | Refusal => {
    const pairs: string[] = [];
    for (const header of headers) {
      const value = header.read(identity, request);
      if (value === undefined) continue;
      if (typeof value !== 'string' && !joinable(value, separator)) return NOT_EXPRESSIBLE;
      const text = typeof value === 'string' ? value : value.join(separator);
      if (text !== '') pairs.push(header.name, headerSafeValue(text));
    }
    return pairs;
  };
  // Headers read from the identity alone are worked out once per identity: a cached one comes back request after
  // request, and its headers with it.
  const perIdentity = config.headers.some((header) => readsRequest(header.field)) ? undefined : new WeakMap<Identity, readonly string[] | Refusal>();
  return {
    write(identity, into, request) {
      let pairs = perIdentity?.get(identity);
      if (pairs === undefined) {
        pairs = written(identity, request);
        perIdentity?.set(identity, pairs);
      }
      if (!Array.isArray(pairs)) return pairs as Refusal;
      for (let index = 0; index < pairs.length; index += 2) into[pairs[index] as string] = pairs[index + 1];
      return PASS;
    },
  };
}

/** No item holds the separator, which would make one value read as two once the list is joined. */
function joinable(list: readonly string[], separator: string): boolean {
  for (const item of list) if (item.includes(separator)) return false;
  return true;
}

/** The registry's `identity_headers`: what the upstream is told about the caller (`identity.headers`). */
export const identityHeaders: MechanismType<Finalizer> = {
  create({ config }) {
    const writer = compileIdentityHeaders(config.identity);
    const finalizer: Finalizer = {
      finalize(ctx) {
        return ctx.identity !== undefined && ctx.upstreamHeaders !== undefined ? writer.write(ctx.identity, ctx.upstreamHeaders, ctx) : PASS;
      },
    };
    return { forRoute: () => finalizer };
  },
};
