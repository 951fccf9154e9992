import type { IncomingHttpHeaders } from 'node:http';
import { isNavigation } from './browser.js';
import type { LoginAnswer } from './endpoints.js';
import { errorPage } from './pages.js';
import type { Session } from './sessions/types.js';

/**
 * What a person's browser gets instead of the JSON error, on a login route: sent to sign in when it has no
 * (usable) credentials, a small page when it is signed in but may not pass, or when sign-in cannot work right
 * now. Everything else (scripts, API clients, other problems) keeps the JSON answer: `undefined` here.
 */
export type BrowserProblem =
  | 'no_credentials'        // no token, and no session (or one that ended)
  | 'revoked'               // the session's subject was revoked: a page, never a sign-in that could loop
  | 'insufficient_scope'    // signed in, the rules say no
  | 'unavailable'           // the store or the provider is down
  | 'other';

export interface BrowserRequest {
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  /** The normalized target, to come back to after signing in. */
  readonly target: string;
}

export interface BrowserErrorContext {
  /** The session of the refused request, when it had one. */
  readonly session: Session | undefined;
  readonly signOutHref: string;
  /** The sign-in redirect for this route (BrowserSignIn.redirectToSignIn with the route's providers). */
  signIn(returnTo: string): Promise<LoginAnswer>;
  /** Where a link starts this route's sign-in, coming back to `returnTo`. */
  signInHref(returnTo: string): string;
}

export async function renderForBrowser(problem: BrowserProblem, request: BrowserRequest, context: BrowserErrorContext): Promise<LoginAnswer | undefined> {
  if (!isNavigation(request.method, request.headers)) return undefined;
  switch (problem) {
    case 'no_credentials':
      return context.signIn(request.target);
    case 'revoked':
      // A link, not a redirect: a revocation that also covers the next sign-in would send the browser round for good.
      return html(errorPage({
        status: 401, title: 'Signed out', message: 'Your session has ended. Sign in again to continue.',
        signInHref: context.signInHref(request.target),
      }));
    case 'insufficient_scope':
      return html(errorPage({
        status: 403, title: 'Access denied', message: 'Your account may not use this page.',
        signedInAs: context.session === undefined ? undefined : { who: whoIs(context.session), provider: context.session.provider },
        signOutHref: context.session === undefined ? undefined : context.signOutHref,
      }));
    case 'unavailable':
      return SIGN_IN_UNAVAILABLE;
    case 'other':
      return undefined;
  }
}

/** The provider or the session store down: worth a retry, and says so. */
export const SIGN_IN_UNAVAILABLE: LoginAnswer = html(
  errorPage({ status: 503, title: 'Temporarily unavailable', message: 'Signing in is not possible right now. Please try again shortly.' }),
  { 'retry-after': '5' },
);

/** The email when the session's claims have one, else the subject. */
function whoIs(session: Session): string {
  const email = session.claims.email;
  return typeof email === 'string' && email !== '' ? email : session.subject;
}

function html(page: LoginAnswer, extra: Record<string, string> = {}): LoginAnswer {
  return { status: page.status, headers: { ...page.headers, ...extra }, body: page.body };
}
