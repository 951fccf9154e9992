import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { MAX_TOKEN_LENGTH } from '../http/bearer.js';
import { cookie } from '../mechanisms/credentials/cookie.js';
import type { SameSite } from '../config/login.js';

/**
 * The browser's cookies for sign-in. Each carries only a random ID (the session, or one sign-in flow) and an
 * HMAC-SHA-256 over the cookie's name and that ID, so a value cannot be forged, truncated, moved from one cookie
 * to another, or re-signed with a key the gateway does not hold. The first key signs; every key verifies, so
 * keys rotate by prepending a new one and dropping the oldest later.
 */

export interface CookieSettings {
  /** The session cookie's name; each flow's pre-login cookie is `{name}-login-{tag}`. */
  readonly name: string;
  readonly sameSite: SameSite;
  /** False only when browsers reach the gateway over plain http on loopback (development). */
  readonly secure: boolean;
  /** `login.keys`, each >= 32 bytes: the first signs, all verify. */
  readonly keys: readonly string[];
}

/** 256 random bits, base64url without padding. */
const ID_BYTES = 32;
const ID_LENGTH = 43;
const MAC_LENGTH = 43;
/** Characters of the flow's state that name its pre-login cookie: enough to keep parallel tabs apart. */
const FLOW_TAG_LENGTH = 12;
const BASE64URL_CHAR = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') BASE64URL_CHAR[c.charCodeAt(0)] = 1;

/** A fresh random ID for a session, a flow's state or nonce (never derived from anything the client sent). */
export function randomId(): string {
  return randomBytes(ID_BYTES).toString('base64url');
}

export function isRandomId(text: string): boolean {
  if (text.length !== ID_LENGTH) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 128 || BASE64URL_CHAR[code] !== 1) return false;
  }
  return true;
}

export class CookieJar {
  private readonly keys: readonly KeyObject[];
  private readonly sessionAttributes: string;
  /**
   * The browser comes back to the callback from the provider's site: a Strict flow cookie would not be sent, and
   * every sign-in would fail. Flow cookies are at least Lax; they name a one-time record, nothing more.
   */
  private readonly flowAttributes: string;
  private readonly flowPrefix: string;

  constructor(private readonly settings: CookieSettings) {
    if (settings.keys.length === 0) throw new Error('at least one cookie key is needed');
    this.keys = settings.keys.map((key) => createSecretKey(Buffer.from(key, 'utf8')));
    this.sessionAttributes = attributes(settings.secure, settings.sameSite);
    this.flowAttributes = attributes(settings.secure, settings.sameSite === 'strict' ? 'lax' : settings.sameSite);
    this.flowPrefix = `${settings.name}-login-`;
  }

  get sessionName(): string {
    return this.settings.name;
  }

  /** Whether the session cookie is `SameSite=Strict`: a browser sends it only on navigations started on this site. */
  get strict(): boolean {
    return this.settings.sameSite === 'strict';
  }

  /** The pre-login cookie of the flow whose `state` is given (the callback finds it from the state it receives). */
  flowCookieName(state: string): string {
    return `${this.flowPrefix}${state.slice(0, FLOW_TAG_LENGTH)}`;
  }

  /** The session cookie or a flow's pre-login cookie: never forwarded to an upstream. */
  isOwnCookie(name: string): boolean {
    return name === this.settings.name || name.startsWith(this.flowPrefix);
  }

  /** `Set-Cookie` value for `name` carrying `id`, kept for `maxAgeS` seconds. */
  issue(name: string, id: string, maxAgeS: number): string {
    return `${name}=${id}.${this.mac(this.keys[0] as KeyObject, name, id)}; Max-Age=${Math.max(0, Math.floor(maxAgeS))}${this.attributesOf(name)}`;
  }

  /** `Set-Cookie` value removing `name` (same attributes, or a `__Host-` cookie would not be replaced). */
  clear(name: string): string {
    return `${name}=; Max-Age=0${this.attributesOf(name)}`;
  }

  /** The ID a cookie value carries when its signature holds under one of the keys; undefined otherwise. */
  verify(name: string, value: string): string | undefined {
    if (value.length !== ID_LENGTH + 1 + MAC_LENGTH || value.charCodeAt(ID_LENGTH) !== 0x2e) return undefined;
    const id = value.slice(0, ID_LENGTH);
    if (!isRandomId(id)) return undefined;
    const presented = Buffer.from(value.slice(ID_LENGTH + 1), 'latin1');
    // Compared as text: base64url has several spellings of the last character's spare bits, and only ours counts.
    for (const key of this.keys) {
      if (timingSafeEqual(presented, Buffer.from(this.mac(key, name, id), 'latin1'))) return id;
    }
    return undefined;
  }

  private attributesOf(name: string): string {
    return name.startsWith(this.flowPrefix) ? this.flowAttributes : this.sessionAttributes;
  }

  private mac(key: KeyObject, name: string, id: string): string {
    return createHmac('sha256', key).update(name).update('=').update(id).digest('base64url');
  }
}

function attributes(secure: boolean, sameSite: SameSite): string {
  const spelled = sameSite === 'strict' ? 'Strict' : sameSite === 'lax' ? 'Lax' : 'None';
  return `; Path=/${secure ? '; Secure' : ''}; HttpOnly; SameSite=${spelled}`;
}

export type CookieRead = { readonly ok: true; readonly value: string | undefined } | { readonly ok: false };
export type CookieReader = (headersDistinct: NodeJS.Dict<string[]>) => CookieRead;

/**
 * Reads cookie `name` the way bearer-token cookies are read: two cookies of one name (a sibling subdomain tossing
 * its own) are refused rather than guessed between, and an empty value is a deleted cookie (absent). Compile the
 * session cookie's reader once; a flow cookie's name is only known at its callback.
 */
export function cookieReader(name: string): CookieReader {
  const finder = cookie.compile({ kind: 'cookie', name });
  return (headersDistinct) => {
    // No query is passed, so only the cookie is looked at.
    const found = finder.find(headersDistinct, '', false);
    return found.ok && (found.value === undefined || found.value.length <= MAX_TOKEN_LENGTH) ? found : REFUSED;
  };
}

const REFUSED: CookieRead = Object.freeze({ ok: false });
