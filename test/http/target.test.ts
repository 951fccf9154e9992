import { describe, expect, it } from 'vitest';
import { normalizeTarget } from '../../src/http/target.js';

const accepted: ReadonlyArray<readonly [target: string, path: string, query: string]> = [
  // Already normal: returned as is.
  ['/', '/', ''],
  ['/admin', '/admin', ''],
  ['/admin/', '/admin/', ''],
  ['/api/v1/users/42', '/api/v1/users/42', ''],
  ['/a.b/c..d/...', '/a.b/c..d/...', ''],
  ['/.well-known/jwks.json', '/.well-known/jwks.json', ''],
  ["/a-b_c~d!$&'()*+,=:@", "/a-b_c~d!$&'()*+,=:@", ''],
  ['/search?q=a;b&x=%2F..%2f\\', '/search', '?q=a;b&x=%2F..%2f\\'],
  ['/search?', '/search', '?'],
  ['/?a=b', '/', '?a=b'],
  // Dot-segments resolve; the policy checks (and the upstream gets) the resolved path.
  ['/public/../admin', '/admin', ''],
  ['/public/./admin', '/public/admin', ''],
  ['/public/%2e%2e/admin', '/admin', ''],
  ['/public/%2E%2E/admin', '/admin', ''],
  ['/public/.%2e/admin', '/admin', ''],
  ['/a/b/../../admin', '/admin', ''],
  ['/a/..', '/', ''],
  ['/a/.', '/a/', ''],
  ['/a/b/..', '/a/', ''],
  ['/a/b/../', '/a/', ''],
  ['/..a/b', '/..a/b', ''],
  // Empty segments collapse.
  ['//admin', '/admin', ''],
  ['/admin//users', '/admin/users', ''],
  ['///', '/', ''],
  ['/a//', '/a/', ''],
  ['//admin?x=1', '/admin', '?x=1'],
  // Escaped unreserved characters decode; other escapes stay, with upper-case hex.
  ['/%61dmin', '/admin', ''],
  ['/%41%44%4d%49%4e', '/ADMIN', ''],
  ['/a%2Db%5fc%7Ed%2e', '/a-b_c~d.', ''],
  ['/caf%c3%a9', '/caf%C3%A9', ''],
  ['/caf%C3%A9', '/caf%C3%A9', ''],
  ['/a%20b', '/a%20b', ''],
  ['/a%3fb', '/a%3Fb', ''],
  ['/a%23b', '/a%23b', ''],
  ['/%7b%7d', '/%7B%7D', ''],
  // Decoded once only: a double-encoded dot is the text `%2e`, not a dot-segment, and cannot match `/admin`.
  ['/%252e%252e/admin', '/%252e%252e/admin', ''],
  ['/public/%252e%252e/admin', '/public/%252e%252e/admin', ''],
  ['/%25', '/%25', ''],
  ['/%2561dmin', '/%2561dmin', ''],
];

const rejected: ReadonlyArray<readonly [target: string, reason: string]> = [
  // Not origin-form.
  ['', 'not origin-form'],
  ['*', 'not origin-form'],
  ['http://evil.example/admin', 'not origin-form'],
  ['HTTP://evil.example/admin', 'not origin-form'],
  ['evil.example:443', 'not origin-form'],
  ['admin', 'not origin-form'],
  ['\\admin', 'not origin-form'],
  // Dot-segments above the root.
  ['/..', 'dot-segment above root'],
  ['/../admin', 'dot-segment above root'],
  ['/public/../../admin', 'dot-segment above root'],
  ['/%2e%2e/admin', 'dot-segment above root'],
  ['/a/%2E%2E/..', 'dot-segment above root'],
  ['/./..', 'dot-segment above root'],
  // Encoded separators.
  ['/admin%2fusers', 'encoded slash'],
  ['/admin%2Fusers', 'encoded slash'],
  ['/public/..%2fadmin', 'encoded slash'],
  ['/public/..%2Fadmin', 'encoded slash'],
  ['/admin%5cusers', 'encoded backslash'],
  ['/admin%5Cusers', 'encoded backslash'],
  // Raw backslashes (some servers read them as `/`).
  ['/public\\..\\admin', 'backslash'],
  ['/admin\\', 'backslash'],
  // Matrix parameters.
  ['/admin;jsessionid=x', 'matrix parameter'],
  ['/admin;', 'matrix parameter'],
  ['/public/..;/admin', 'matrix parameter'],
  ['/admin%3bjsessionid=x', 'encoded matrix parameter'],
  ['/admin%3Bx', 'encoded matrix parameter'],
  // Fragments: browsers never send one.
  ['/admin#x', 'fragment'],
  ['/public#/../admin', 'fragment'],
  ['/a?b#c', 'fragment'],
  ['/#', 'fragment'],
  // Invalid percent-encoding.
  ['/%', 'invalid percent-encoding'],
  ['/%2', 'invalid percent-encoding'],
  ['/%zz', 'invalid percent-encoding'],
  ['/%2g', 'invalid percent-encoding'],
  ['/%%32%65', 'invalid percent-encoding'],
  ['/%2?x', 'invalid percent-encoding'],
  ['/a%u002e', 'invalid percent-encoding'],
  // Control characters, raw or encoded in the path; raw in the query.
  ['/admin\u0000', 'control character'],
  ['/ad\tmin', 'control character'],
  ['/admin\r\nX-Injected: 1', 'control character'],
  ['/admin\u007f', 'control character'],
  ['/admin%00', 'encoded control character'],
  ['/admin%00.json', 'encoded control character'],
  ['/admin%0a', 'encoded control character'],
  ['/admin%1F', 'encoded control character'],
  ['/admin%7f', 'encoded control character'],
  ['/a?b=\u0000', 'control character'],
  ['/a?b=\u007f', 'control character'],
  ['/a?b=c\nd', 'control character'],
  ['/a b', 'space'],
  ['/a?b c', 'space'],
  // Non-ASCII raw bytes (Node hands them over as latin1 characters).
  ['/caf\u00e9', 'non-ASCII character'],
  ['/\u00ff', 'non-ASCII character'],
  ['/a?\u00e9', 'non-ASCII character'],
  ['/\u2215admin', 'non-ASCII character'],
];

describe('normalizeTarget', () => {
  it.each(accepted)('%j → path %j, query %j', (target, path, query) => {
    expect(normalizeTarget(target)).toEqual({ ok: true, path, query });
  });

  it.each(rejected)('%j is rejected: %s', (target, reason) => {
    expect(normalizeTarget(target)).toEqual({ ok: false, reason });
  });

  it('is idempotent on everything it accepts', () => {
    for (const [target] of accepted) {
      const once = normalizeTarget(target);
      if (!once.ok) throw new Error(`expected ${target} to be accepted`);
      expect(normalizeTarget(once.path + once.query)).toEqual(once);
    }
  });
});
