import { describe, expect, it } from 'vitest';
import { renderForBrowser, type BrowserErrorContext, type BrowserProblem } from '../../src/login/error-renderer.js';
import type { Session } from '../../src/login/sessions/types.js';

const NAVIGATION = { 'sec-fetch-mode': 'navigate', accept: 'text/html,*/*;q=0.8' };
const FETCH = { 'sec-fetch-mode': 'cors', accept: '*/*' };
const session: Session = {
  id: 'id', provider: 'corp', subject: 'u-123', idpSid: undefined, claims: { email: 'alice@example.com' },
  tokens: { idToken: 'i', accessToken: 'a', accessTokenExpiresAt: 0, refreshToken: undefined }, createdAt: 0, lastSeenAt: 0,
};

function context(withSession: Session | undefined): BrowserErrorContext & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    session: withSession,
    signOutHref: '/.authgate/sign_out',
    signIn: async (returnTo) => {
      asked.push(returnTo);
      return { status: 302, headers: { location: 'https://idp.example/auth' }, body: '' };
    },
    signInHref: (returnTo) => `/.authgate/sign_in?provider=corp&rd=${encodeURIComponent(returnTo)}`,
  };
}

describe('renderForBrowser', () => {
  it('sends a navigation without credentials to sign in, coming back to the page it asked for', async () => {
    const ctx = context(undefined);
    const answer = await renderForBrowser('no_credentials', { method: 'GET', headers: NAVIGATION, target: '/app/x?y=1' }, ctx);
    expect(answer).toMatchObject({ status: 302, headers: { location: 'https://idp.example/auth' } });
    expect(ctx.asked).toEqual(['/app/x?y=1']);
  });

  it.each<[BrowserProblem, string, Record<string, string>]>([
    ['no_credentials', 'GET', FETCH],
    ['no_credentials', 'GET', { ...NAVIGATION, 'x-requested-with': 'XMLHttpRequest' }],
    ['no_credentials', 'POST', NAVIGATION],
    ['insufficient_scope', 'GET', FETCH],
    ['unavailable', 'GET', { accept: 'application/json' }],
    ['other', 'GET', NAVIGATION],
  ])('leaves %s for %s %j to the JSON answer (never a redirect a script could follow)', async (problem, method, headers) => {
    const ctx = context(session);
    expect(await renderForBrowser(problem, { method, headers, target: '/app' }, ctx)).toBeUndefined();
    expect(ctx.asked).toEqual([]);
  });

  it('shows a signed-in user who fails the rules who they are and a sign-out link', async () => {
    const answer = await renderForBrowser('insufficient_scope', { method: 'GET', headers: NAVIGATION, target: '/app' }, context(session));
    expect(answer?.status).toBe(403);
    expect(answer?.headers['content-security-policy']).toMatch(/^default-src 'none'/);
    expect(answer?.headers['x-frame-options']).toBe('DENY');
    expect(answer?.body).toContain('signed in as <strong>alice@example.com</strong> (corp)');
    expect(answer?.body).toContain('<a href="/.authgate/sign_out">Sign out</a>');
  });

  it('shows a revoked session a page with a link to sign in again, never a redirect that could go round for good', async () => {
    const ctx = context(session);
    const answer = await renderForBrowser('revoked', { method: 'GET', headers: NAVIGATION, target: '/app/x?y=1' }, ctx);
    expect(answer?.status).toBe(401);
    expect(answer?.headers.location).toBeUndefined();
    expect(answer?.body).toContain('<a href="/.authgate/sign_in?provider=corp&amp;rd=%2Fapp%2Fx%3Fy%3D1">Sign in</a>');
    expect(ctx.asked).toEqual([]);
  });

  it('names the subject when the claims carry no email', async () => {
    const answer = await renderForBrowser('insufficient_scope', { method: 'HEAD', headers: NAVIGATION, target: '/app' }, context({ ...session, claims: {} }));
    expect(answer?.body).toContain('signed in as <strong>u-123</strong>');
  });

  it('answers an outage with a 503 page and Retry-After', async () => {
    const answer = await renderForBrowser('unavailable', { method: 'GET', headers: NAVIGATION, target: '/app' }, context(undefined));
    expect(answer?.status).toBe(503);
    expect(answer?.headers['retry-after']).toBe('5');
    expect(answer?.body).not.toContain('Sign out');
  });
});
