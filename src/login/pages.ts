import type { OutgoingHttpHeaders } from 'node:http';
import { SECURITY_HEADERS } from '../http/responses.js';

/**
 * The few HTML pages a browser may get from the gateway itself: the provider chooser and the error page. No
 * scripts, no styles, no frames (CSP `default-src 'none'`, X-Frame-Options DENY); every value is escaped.
 */
export interface HtmlPage {
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  readonly body: string;
}

const HTML_HEADERS: Readonly<OutgoingHttpHeaders> = Object.freeze({
  ...SECURITY_HEADERS,
  'content-type': 'text/html; charset=utf-8',
});

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

function page(status: number, title: string, content: string, head = ''): HtmlPage {
  const body = `<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><meta name="viewport" content="width=device-width">`
    + `<meta name="referrer" content="no-referrer">${head}<title>${escapeHtml(title)}</title></head>\n`
    + `<body>\n<h1>${escapeHtml(title)}</h1>\n${content}</body>\n</html>\n`;
  return { status, headers: { ...HTML_HEADERS, 'content-length': Buffer.byteLength(body) }, body };
}

export interface ProviderChoice {
  /** The provider's display name (its key under `login.providers`). */
  readonly name: string;
  /** Where its link starts the sign-in: `{reserved_prefix}/sign_in?provider=…&rd=…`, built by the caller. */
  readonly href: string;
}

/** `{reserved_prefix}/sign_in` when a route names several providers: one link per provider. */
export function chooserPage(choices: readonly ProviderChoice[]): HtmlPage {
  const items = choices.map((choice) => `<li><a href="${escapeHtml(choice.href)}">${escapeHtml(choice.name)}</a></li>\n`);
  return page(200, 'Sign in', `<p>Choose how to sign in:</p>\n<ul>\n${items.join('')}</ul>\n`);
}

export interface ErrorPageContent {
  readonly status: number;
  readonly title: string;
  /** From a fixed list; never text from the request or a token. */
  readonly message: string;
  /** Who the session belongs to (email, else subject) and through which provider, when there is a session. */
  readonly signedInAs?: { readonly who: string; readonly provider: string } | undefined;
  /** `{reserved_prefix}/sign_out`, shown with `signedInAs`. */
  readonly signOutHref?: string | undefined;
  /** Where a link signs in again (`{reserved_prefix}/sign_in?…`). */
  readonly signInHref?: string | undefined;
}

/**
 * After a sign-in with a `SameSite=Strict` session cookie: a redirect would continue the navigation the provider's
 * site started, which never carries a Strict cookie, so the browser would be sent to sign in again, and again. A
 * page of the gateway's own that moves on makes the next navigation start on the gateway's site.
 */
export function continuePage(href: string): HtmlPage {
  const target = escapeHtml(href);
  return page(200, 'Signed in', `<p><a href="${target}">Continue</a></p>\n`, `<meta http-equiv="refresh" content="0;url=${target}">`);
}

/** A navigation refused after sign-in (403: the rules), or a sign-in that cannot go on (the IdP down: 503). */
export function errorPage(content: ErrorPageContent): HtmlPage {
  let html = `<p>${escapeHtml(content.message)}</p>\n`;
  if (content.signedInAs !== undefined) {
    html += `<p>You are signed in as <strong>${escapeHtml(content.signedInAs.who)}</strong>`
      + ` (${escapeHtml(content.signedInAs.provider)}).</p>\n`;
  }
  if (content.signOutHref !== undefined) html += `<p><a href="${escapeHtml(content.signOutHref)}">Sign out</a></p>\n`;
  if (content.signInHref !== undefined) html += `<p><a href="${escapeHtml(content.signInHref)}">Sign in</a></p>\n`;
  return page(content.status, content.title, html);
}
