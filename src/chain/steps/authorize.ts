import type { Authorizer, ErrorRenderer, RequestContext, Step } from '../kinds.js';
import { PASS, refusal, type Refusal, type Trace, type Verdict } from '../verdict.js';

/**
 * Every authorizer of the route must hold. They need a verified identity: an anonymous request on an
 * `auth: optional` route with rules is refused as if it had no token.
 */
export function authorizeStep(authorizers: readonly Authorizer[], errors: ErrorRenderer): Step {
  const anonymous = refusal('authenticate', errors.noCredentials(), 'no_token');
  // One refusal per failing rule, built on first use: the rule and its required scopes are fixed per route.
  const refusals = new Map<string, Refusal>();
  return {
    stage: 'authorize',
    run(ctx: RequestContext, trace: Trace | undefined): Verdict {
      const identity = ctx.identity;
      if (identity === undefined) {
        trace?.('authorize', false, 'rules need a token');
        return anonymous;
      }
      for (const authorizer of authorizers) {
        const outcome = authorizer.authorize(identity, ctx);
        if (outcome.ok) continue;
        trace?.('authorize', false, outcome.reason);
        let refused = refusals.get(outcome.rule);
        if (refused === undefined) {
          refused = refusal('authorize', errors.insufficientScope(outcome.requiredScopes), `rule_${outcome.rule}`);
          refusals.set(outcome.rule, refused);
        }
        // The failing comparison or the expression's evaluation error, for the access log; never for the client.
        return { ...refused, detail: outcome.reason };
      }
      trace?.('authorize', true, 'every rule holds');
      return PASS;
    },
  };
}
