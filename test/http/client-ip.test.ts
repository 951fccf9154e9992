import { BlockList, isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { canonicalIp, compileTrustedProxies, parseCidr, rateLimitAddress, resolveClientIp } from '../../src/http/client-ip.js';

const trusted = compileTrustedProxies(['127.0.0.1/32', '10.0.0.0/8', 'fd00::/8', '192.0.2.7']);

/** The one CIDR parser: `check` (config/sections.ts) accepts exactly what the gateway compiles. */
describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', '10.255.0.1'],
    ['127.0.0.1', '127.0.0.1'],
    ['0.0.0.0/0', '8.8.8.8'],
    ['192.168.1.0/32', '192.168.1.0'],
    ['::1', '::1'],
    ['fd00::/8', 'fdff::1'],
    ['2001:db8::/128', '2001:db8::'],
  ])('accepts %j (a range holding %s)', (cidr, inside) => {
    expect(parseCidr(cidr)).toBeDefined();
    expect(compileTrustedProxies([cidr]).isTrusted(inside)).toBe(true);
  });

  it.each([
    '10.0.0.0/33',
    'fd00::/129',
    '10.0.0.0/',
    '10.0.0.0/08',
    '10.0.0.0/-1',
    '10.0.0.256',
    '10.0.0',
    'fe80::1%eth0',
    'fe80::%eth0/64',
    'localhost',
    '10.0.0.0/8/8',
  ])('refuses %j', (cidr) => {
    expect(parseCidr(cidr)).toBeUndefined();
  });
});

describe('compileTrustedProxies', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.0.0.2', false],
    ['10.1.2.3', true],
    ['11.0.0.1', false],
    ['192.0.2.7', true],
    ['192.0.2.8', false],
    ['::ffff:10.9.9.9', true],
    ['::FFFF:10.9.9.9', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:8.8.8.8', false],
    ['fd12:3456::1', true],
    ['fe80::1', false],
    ['::1', false],
    ['', false],
    ['unknown', false],
    ['10.0.0.1:80', false],
    ['[fd00::1]', false],
  ])('%j → %s', (ip, expected) => {
    expect(trusted.isTrusted(ip)).toBe(expected);
  });

  const ranges = compileTrustedProxies(['2001:db8::/33', '172.16.0.0/12', '::ffff:192.168.0.0/112', 'fe80::1:2:3:4/127']);
  it.each([
    ['2001:db8::1', true],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', true],
    ['2001:db8:7fff:ffff:ffff:ffff:ffff:ffff', true],
    ['2001:db8:8000::', false],
    ['2001:db9::', false],
    ['2001:db8::1%eth0', true],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['172.32.0.0', false],
    ['172.15.255.255', false],
    ['::ffff:172.20.1.1', true],
    ['192.168.5.5', true],
    ['::ffff:192.168.5.5', true],
    ['::ffff:c0a8:505', true],
    ['192.169.0.0', false],
    ['fe80::1:2:3:4', true],
    ['fe80::1:2:3:5', true],
    ['fe80::1:2:3:6', false],
    ['fe80:0:0:0:1:2:3:4', true],
    ['::1', false],
    ['::', false],
  ])('ranges off word boundaries: %j → %s', (ip, expected) => {
    expect(ranges.isTrusted(ip)).toBe(expected);
  });

  it('keeps families apart except for IPv4-mapped addresses', () => {
    const allIpv4 = compileTrustedProxies(['0.0.0.0/0']);
    expect([allIpv4.isTrusted('8.8.8.8'), allIpv4.isTrusted('::ffff:8.8.8.8'), allIpv4.isTrusted('2001:db8::1')]).toEqual([
      true,
      true,
      false,
    ]);
    const allIpv6 = compileTrustedProxies(['::/0']);
    expect([allIpv6.isTrusted('2001:db8::1'), allIpv6.isTrusted('8.8.8.8')]).toEqual([true, true]);
  });

  it.each(['intranet', '10.0.0.0/33', '10.0.0.0/x', '10.0.0.0/', '::/129', '10.0.0.0/-1', '10.0.0.0/8/9'])('refuses %j', (cidr) => {
    expect(() => compileTrustedProxies(['10.0.0.0/8', cidr])).toThrow(`trusted proxy "${cidr}"`);
  });

  it('trusts IPv4 peers of a v4-mapped range', () => {
    expect(compileTrustedProxies(['::ffff:10.0.0.0/104']).isTrusted('10.3.2.1')).toBe(true);
  });

  it('trusts nobody when the list is empty', () => {
    expect(compileTrustedProxies([]).isTrusted('127.0.0.1')).toBe(false);
  });
});

describe('canonicalIp', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::FFFF:1.2.3.4', '1.2.3.4'],
    ['2001:DB8::1', '2001:db8::1'],
    ['::ffff:abcd', '::ffff:abcd'],
  ])('%j → %j', (ip, expected) => {
    expect(canonicalIp(ip)).toBe(expected);
  });
});

describe('resolveClientIp', () => {
  const cases: ReadonlyArray<readonly [peer: string, xff: string | undefined, client: string, why: string]> = [
    ['203.0.113.9', undefined, '203.0.113.9', 'untrusted peer, no header'],
    ['203.0.113.9', '1.1.1.1', '203.0.113.9', 'untrusted peer: a spoofed header is ignored'],
    ['203.0.113.9', '1.1.1.1, 10.0.0.1', '203.0.113.9', 'untrusted peer claiming a trusted chain'],
    ['::ffff:203.0.113.9', '1.1.1.1', '203.0.113.9', 'untrusted v4-mapped peer, canonical form'],
    ['2001:db8::9', '1.1.1.1', '2001:db8::9', 'untrusted IPv6 peer'],
    ['10.0.0.1', undefined, '10.0.0.1', 'trusted peer without a header is the client'],
    ['10.0.0.1', '198.51.100.4', '198.51.100.4', 'one trusted hop'],
    ['::ffff:10.0.0.1', '198.51.100.4', '198.51.100.4', 'trusted v4-mapped peer'],
    ['10.0.0.1', '6.6.6.6, 198.51.100.4', '198.51.100.4', 'client-supplied entries left of the real client are ignored'],
    ['10.0.0.1', '6.6.6.6, 198.51.100.4, 10.0.0.2, 127.0.0.1', '198.51.100.4', 'several trusted hops'],
    ['10.0.0.1', '6.6.6.6,198.51.100.4,10.0.0.2', '198.51.100.4', 'no spaces after commas'],
    ['10.0.0.1', '  198.51.100.4  ,\t10.0.0.2 ', '198.51.100.4', 'whitespace around entries'],
    ['10.0.0.1', '10.0.0.3, 10.0.0.2', '10.0.0.3', 'all trusted: the leftmost'],
    ['10.0.0.1', '2001:db8::7', '2001:db8::7', 'IPv6 client'],
    ['fd00::1', '2001:DB8::7, fd00::2', '2001:db8::7', 'IPv6 chain, lower-cased'],
    ['10.0.0.1', '::ffff:198.51.100.4', '198.51.100.4', 'v4-mapped client'],
    ['10.0.0.1', '[2001:db8::7]:4711', '2001:db8::7', 'bracketed IPv6 with port'],
    ['10.0.0.1', '198.51.100.4:4711', '198.51.100.4', 'IPv4 with port'],
    ['10.0.0.1', '6.6.6.6, unknown', '10.0.0.1', 'a hop that did not know its client ends the walk'],
    ['10.0.0.1', '6.6.6.6, garbage, 10.0.0.2', '10.0.0.2', 'garbage ends the walk at the trusted hop that wrote it'],
    ['10.0.0.1', '6.6.6.6, , 10.0.0.2', '10.0.0.2', 'empty entry'],
    ['10.0.0.1', '', '10.0.0.1', 'empty header'],
    ['10.0.0.1', ',', '10.0.0.1', 'only a comma'],
    ['10.0.0.1', '198.51.100.4,', '10.0.0.1', 'trailing comma'],
    ['10.0.0.1', '<script>, 1.1.1.1', '1.1.1.1', 'garbage left of the client is never reached'],
    ['10.0.0.1', '[2001:db8::7', '10.0.0.1', 'unclosed bracket'],
    ['10.0.0.1', '999.1.1.1', '10.0.0.1', 'not an address'],
  ];
  it.each(cases)('peer %j, X-Forwarded-For %j → %j (%s)', (peer, xff, client) => {
    expect(resolveClientIp(peer, xff, trusted)).toBe(client);
  });
});

describe('compileTrustedProxies agrees with node:net BlockList', () => {
  /** Deterministic xorshift, so a failure names a reproducible address. */
  function random(seed: number): () => number {
    let state = seed;
    return () => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return state >>> 0;
    };
  }
  const next = random(0x9e3779b9);
  const ipv4 = (): string => [24, 16, 8, 0].map((shift) => (next() >>> shift) & 0xff).join('.');
  const ipv6 = (): string => Array.from({ length: 8 }, () => (next() & 0xffff).toString(16)).join(':');
  /** Addresses near a range share its leading bits, so prefixes are exercised on both sides of the boundary. */
  const near = (ip: string): string => (ip.includes(':') ? `${ip.split(':').slice(0, 3).join(':')}::${(next() & 0xffff).toString(16)}` : `${ip.split('.').slice(0, 2).join('.')}.${next() & 0xff}.${next() & 0xff}`);

  it('on random ranges and addresses of both families', () => {
    for (let round = 0; round < 200; round++) {
      const v4 = ipv4();
      const v6 = ipv6();
      const v4Prefix = next() % 33;
      const v6Prefix = next() % 129;
      const ours = compileTrustedProxies([`${v4}/${v4Prefix}`, `${v6}/${v6Prefix}`]);
      const reference = new BlockList();
      reference.addSubnet(v4, v4Prefix, 'ipv4');
      reference.addSubnet(v6, v6Prefix, 'ipv6');
      for (const ip of [v4, v6, near(v4), near(v6), ipv4(), ipv6(), `::ffff:${near(v4)}`]) {
        const family = isIP(ip) === 4 ? 'ipv4' : 'ipv6';
        expect(ours.isTrusted(ip), `${ip} in ${v4}/${v4Prefix} or ${v6}/${v6Prefix}`).toBe(reference.check(ip, family));
      }
    }
  });
});

describe('rateLimitAddress', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:db8:0:0:ffff::3', '2001:db8:0:0::/64'],
    ['2001:0DB8:0000:0000:1:2:3:4', '2001:db8:0:0::/64'],
    ['2001:db8:0:1::1', '2001:db8:0:1::/64'],
    ['::1', '0:0:0:0::/64'],
    ['64:ff9b::203.0.113.7', '203.0.113.7'],
    ['0:0:0:0:0:ffff:198.51.100.9', '198.51.100.9'],
  ])('counts %s as %s: IPv6 by the /64 its client holds, in one spelling', (ip, expected) => {
    expect(rateLimitAddress(ip)).toBe(expected);
  });
});
