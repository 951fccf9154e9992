/**
 * What `authgate explain` adds on a login route: what a browser navigation without a session gets (sent to sign in),
 * what any other request without credentials gets (the chain's own answer to the request without one), and where a
 * session's identity comes from. Nothing is fetched: the provider is named, not asked, so explain stays usable
 * offline and in CI.
 */
import type { Verdict } from '../chain/verdict.js';
import type { GatewayConfig, RouteConfig } from '../config/types.js';
import { chooserLocation } from '../login/endpoints.js';

/** One kind of request without credentials, and what it gets. */
export interface CredentialFreeOutcome {
  /** null: forwarded. */
  readonly status: number | null;
  readonly location: string | null;
  readonly detail: string;
}

export interface LoginExplanation {
  readonly providers: readonly string[];
  /** GET or HEAD with `Sec-Fetch-Mode: navigate` (or an Accept preferring text/html), no `X-Requested-With`. */
  readonly navigation: CredentialFreeOutcome;
  /** Scripts (fetch, XHR) and API clients. */
  readonly apiClient: CredentialFreeOutcome;
  /** Whose claims a session's identity is read from. */
  readonly session: string;
}

/**
 * `withoutCredentials`: the chain's verdict on the same request without a token. Only a refusal for want of one
 * sends a navigation to sign in; anything else (a rate limit, say) it gets as well.
 */
export function explainLogin(config: GatewayConfig, route: RouteConfig, target: string, withoutCredentials: Verdict): LoginExplanation | undefined {
  const { login } = config;
  if (login === undefined || route.login === undefined) return undefined;
  const providers = route.login;
  const apiClient = outcomeOf(withoutCredentials);
  const signIn = !withoutCredentials.ok && withoutCredentials.reason === 'no_token';
  const callback = new URL(`${config.server.reservedPrefix}/callback`, login.externalUrl).href;
  const [only] = providers;
  let navigation = apiClient;
  if (signIn && providers.length > 1) {
    navigation = { status: 302, location: chooserLocation(config.server.reservedPrefix, providers, target), detail: `(the chooser of providers ${providers.join(', ')})` };
  } else if (signIn && only !== undefined) {
    const issuer = config.issuers.get(login.providers.get(only)?.issuer ?? '')?.issuer ?? '?';
    navigation = {
      status: 302,
      location: null,
      detail: `to provider ${only}'s authorization endpoint (in the discovery document of ${issuer}; code flow with PKCE S256), then back to ${callback}`,
    };
  }
  const sources = providers.map((name) => `${name}'s ${login.providers.get(name)?.identityFrom ?? 'id_token'} claims`);
  return { providers, navigation, apiClient, session: `identity from ${sources.join(', ')}; the same rules apply` };
}

function outcomeOf(verdict: Verdict): CredentialFreeOutcome {
  if (verdict.ok) return { status: verdict.answer?.status ?? null, location: null, detail: verdict.answer === undefined ? '' : '(answered by the gateway)' };
  const challenge = verdict.error.headers?.['www-authenticate'];
  const detail = challenge === undefined ? `(${verdict.error.code}: ${verdict.reason})` : `(WWW-Authenticate: ${String(challenge)})`;
  return { status: verdict.error.status, location: null, detail };
}
