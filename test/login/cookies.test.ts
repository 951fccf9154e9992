import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CookieJar, cookieReader, isRandomId, randomId, type CookieSettings } from '../../src/login/cookies.js';

const KEY_A = 'a'.repeat(32);
const KEY_B = 'b-key-that-is-at-least-32-bytes-long';
const settings: CookieSettings = { name: '__Host-authgate', sameSite: 'lax', secure: true, keys: [KEY_A] };

/** The cookie value from a Set-Cookie line. */
function valueOf(setCookie: string): string {
  return setCookie.slice(setCookie.indexOf('=') + 1, setCookie.indexOf(';'));
}

describe('randomId', () => {
  it('is 256 random bits in base64url, never repeated', () => {
    const ids = new Set(Array.from({ length: 1000 }, randomId));
    expect(ids.size).toBe(1000);
    for (const id of ids) {
      expect(isRandomId(id)).toBe(true);
      expect(Buffer.from(id, 'base64url')).toHaveLength(32);
    }
  });
});

describe('CookieJar', () => {
  const jar = new CookieJar(settings);
  const id = randomId();
  const issued = jar.issue(jar.sessionName, id, 43200);

  it('writes the session cookie Secure, HttpOnly, Path=/, SameSite, with no Domain (the __Host- rules)', () => {
    expect(issued).toBe(`__Host-authgate=${valueOf(issued)}; Max-Age=43200; Path=/; Secure; HttpOnly; SameSite=Lax`);
    expect(issued).not.toContain('Domain');
  });

  it('leaves Secure out only when told (loopback http) and follows same_site', () => {
    const dev = new CookieJar({ ...settings, name: 'authgate', secure: false, sameSite: 'strict' });
    const line = dev.issue('authgate', id, 60);
    expect(line).toBe(`authgate=${valueOf(line)}; Max-Age=60; Path=/; HttpOnly; SameSite=Strict`);
    expect(new CookieJar({ ...settings, sameSite: 'none' }).issue('n', id, 1)).toContain('; SameSite=None');
  });

  it('keeps a flow cookie Lax under same_site: strict, or it would not come back from the provider', () => {
    const strict = new CookieJar({ ...settings, sameSite: 'strict' });
    const flow = strict.flowCookieName(randomId());
    expect(strict.issue(flow, id, 600)).toContain('; Secure; HttpOnly; SameSite=Lax');
    expect(strict.clear(flow)).toBe(`${flow}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax`);
    expect(strict.issue(strict.sessionName, id, 600)).toContain('; SameSite=Strict');
    const none = new CookieJar({ ...settings, sameSite: 'none' });
    expect(none.issue(none.flowCookieName(randomId()), id, 600)).toContain('; SameSite=None');
  });

  it('clears with the same attributes and Max-Age=0', () => {
    expect(jar.clear('__Host-authgate')).toBe('__Host-authgate=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax');
  });

  it('names a per-flow pre-login cookie from the state, so tabs signing in at once keep their own', () => {
    const a = jar.flowCookieName(randomId());
    const b = jar.flowCookieName(randomId());
    expect(a).toMatch(/^__Host-authgate-login-[A-Za-z0-9_-]{12}$/);
    expect(a).not.toBe(b);
  });

  it('knows its own cookies (to keep them from upstreams), and only those', () => {
    expect(jar.isOwnCookie('__Host-authgate')).toBe(true);
    expect(jar.isOwnCookie(jar.flowCookieName(randomId()))).toBe(true);
    expect(jar.isOwnCookie('__Host-authgate2')).toBe(false);
    expect(jar.isOwnCookie('authgate')).toBe(false);
    expect(jar.isOwnCookie('session')).toBe(false);
  });

  it('verifies what it issued and returns the ID', () => {
    expect(jar.verify('__Host-authgate', valueOf(issued))).toBe(id);
  });

  const value = valueOf(issued);
  const mac = value.slice(44);
  const foreignMac = createHmac('sha256', 'attacker-key-of-32-bytes-or-more!!').update(`__Host-authgate=${id}`).digest('base64url');
  const lastChar = mac.at(-1) as string;
  const sameBitsOtherSpelling = mac.slice(0, -1) + String.fromCharCode(lastChar.charCodeAt(0) ^ 1);
  it.each([
    ['empty', ''],
    ['the bare ID, unsigned', id],
    ['truncated signature', value.slice(0, -1)],
    ['truncated ID', value.slice(1)],
    ['signature only', mac],
    ['another ID with this signature', `${randomId()}.${mac}`],
    ['re-signed with a key the gateway does not hold', `${id}.${foreignMac}`],
    ['last character flipped', `${id}.${sameBitsOtherSpelling}`],
    ['base64 padding added', `${value}=`],
    ['a guessed or fixed short ID', 'session123.' + mac],
    ['non-base64url characters', `${id.slice(0, -1)}+.${mac}`],
    ['non-ASCII of the same length', `${id.slice(0, -1)}é.${mac}`],
    ['separator replaced', `${id}:${mac}`],
  ])('refuses a forged cookie: %s', (_label, forged) => {
    expect(jar.verify('__Host-authgate', forged)).toBeUndefined();
  });

  it('refuses a valid value moved to another cookie name (a pre-login cookie is not a session)', () => {
    const flow = jar.flowCookieName(randomId());
    const flowValue = valueOf(jar.issue(flow, id, 600));
    expect(jar.verify(flow, flowValue)).toBe(id);
    expect(jar.verify('__Host-authgate', flowValue)).toBeUndefined();
  });

  it('rotates keys: the first signs, every listed key verifies, a dropped key no longer does', () => {
    const old = new CookieJar({ ...settings, keys: [KEY_A] });
    const rotated = new CookieJar({ ...settings, keys: [KEY_B, KEY_A] });
    const afterRotation = new CookieJar({ ...settings, keys: [KEY_B] });
    const oldCookie = valueOf(old.issue('__Host-authgate', id, 60));
    const newCookie = valueOf(rotated.issue('__Host-authgate', id, 60));
    expect(newCookie).not.toBe(oldCookie);
    expect(rotated.verify('__Host-authgate', oldCookie)).toBe(id);
    expect(rotated.verify('__Host-authgate', newCookie)).toBe(id);
    expect(afterRotation.verify('__Host-authgate', newCookie)).toBe(id);
    expect(afterRotation.verify('__Host-authgate', oldCookie)).toBeUndefined();
    expect(old.verify('__Host-authgate', newCookie)).toBeUndefined();
  });
});

describe('cookieReader', () => {
  const read = cookieReader('b');
  it.each([
    [undefined, { ok: true, value: undefined }],
    [['a=1; b=2'], { ok: true, value: '2' }],
    [['a=1', ' b = 3 '], { ok: true, value: '3' }],
    [['bb=1; xb=2'], { ok: true, value: undefined }],
    [['b='], { ok: true, value: undefined }],
    [['b=1; b=2'], { ok: false }],
    [['b=1', 'b=2'], { ok: false }],
    [[`b=${'x'.repeat(9000)}`], { ok: false }],
  ])('%j', (lines, expected) => {
    expect(read({ cookie: lines })).toEqual(expected);
  });
});
