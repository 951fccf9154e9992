import { describe, expect, it } from 'vitest';
import { chooserPage, errorPage, escapeHtml } from '../../src/login/pages.js';

function expectSafeHtml(page: { headers: Record<string, unknown>; body: string }): void {
  expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
  expect(page.headers['content-security-policy']).toMatch(/^default-src 'none'/);
  expect(page.headers['x-frame-options']).toBe('DENY');
  expect(page.headers['cache-control']).toBe('no-store');
  expect(page.headers['content-length']).toBe(Buffer.byteLength(page.body));
  // Markup is only the page's own few elements; anything from a value shows up as text.
  const tags = [...page.body.matchAll(/<\/?([!a-z0-9]+)[^>]*>/gi)];
  for (const [tag, name] of tags) {
    expect(ALLOWED_TAGS).toContain(name?.toLowerCase());
    expect(tag).not.toMatch(/\son\w+=|javascript:|style=/i);
  }
}

const ALLOWED_TAGS = ['!doctype', 'html', 'head', 'meta', 'title', 'body', 'h1', 'p', 'ul', 'li', 'a', 'strong'];

describe('escapeHtml', () => {
  it('escapes the five characters that can leave text or an attribute', () => {
    expect(escapeHtml(`<a href="x" title='y'>&`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;');
  });
});

describe('chooserPage', () => {
  it('links every provider, escaped, without scripts', () => {
    const page = chooserPage([
      { name: 'corp', href: '/.authgate/sign_in?provider=corp&rd=%2Fapp' },
      { name: '<img src=x onerror=alert(1)>', href: '/.authgate/sign_in?provider=x&rd="><script>' },
    ]);
    expect(page.status).toBe(200);
    expectSafeHtml(page);
    expect(page.body).toContain('<a href="/.authgate/sign_in?provider=corp&amp;rd=%2Fapp">corp</a>');
    expect(page.body).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(page.body).toContain('rd=&quot;&gt;&lt;script&gt;');
  });
});

describe('errorPage', () => {
  it('says who is signed in and links sign-out', () => {
    const page = errorPage({
      status: 403,
      title: 'Access denied',
      message: 'Your account may not use this page.',
      signedInAs: { who: 'alice@example.com', provider: 'corp' },
      signOutHref: '/.authgate/sign_out',
    });
    expect(page.status).toBe(403);
    expectSafeHtml(page);
    expect(page.body).toContain('You are signed in as <strong>alice@example.com</strong> (corp).');
    expect(page.body).toContain('<a href="/.authgate/sign_out">Sign out</a>');
  });

  it('escapes a hostile identity', () => {
    const page = errorPage({
      status: 403, title: 'Access denied', message: 'No.',
      signedInAs: { who: '"><script>alert(1)</script>', provider: 'corp' },
    });
    expectSafeHtml(page);
    expect(page.body).toContain('&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
  });

  it('without a session it has neither identity nor sign-out link', () => {
    const page = errorPage({ status: 503, title: 'Sign-in unavailable', message: 'Try again shortly.' });
    expectSafeHtml(page);
    expect(page.body).not.toContain('signed in as');
    expect(page.body).not.toContain('Sign out');
  });
});
