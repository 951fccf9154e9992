import type { Authentication, Authenticator, Credential, RequestContext, Step } from '../kinds.js';
import { isThenable, PASS, type Refusal, type Trace, type Verdict } from '../verdict.js';

/**
 * Asks the route's authenticators in order about the credential found: the first "mine" decides (an identity or
 * a refusal); when every one says "not mine", `unclaimed` refuses. No credential (an anonymous request that was
 * allowed through) passes untouched.
 */
export function authenticateStep(authenticators: readonly Authenticator[], unclaimed: (credential: Credential) => Refusal): Step {
  return {
    stage: 'authenticate',
    run(ctx: RequestContext, trace: Trace | undefined): Verdict | Promise<Verdict> {
      const credential = ctx.credential;
      return credential === undefined ? PASS : attempt(authenticators, 0, credential, ctx, trace, unclaimed);
    },
  };
}

function attempt(
  authenticators: readonly Authenticator[],
  from: number,
  credential: Credential,
  ctx: RequestContext,
  trace: Trace | undefined,
  unclaimed: (credential: Credential) => Refusal,
): Verdict | Promise<Verdict> {
  for (let index = from; index < authenticators.length; index++) {
    const result = (authenticators[index] as Authenticator).authenticate(credential, ctx);
    if (isThenable(result)) {
      return result.then((settled) =>
        claimed(settled) ? conclude(settled, credential, ctx, trace) : attempt(authenticators, index + 1, credential, ctx, trace, unclaimed),
      );
    }
    if (claimed(result)) return conclude(result, credential, ctx, trace);
  }
  trace?.('authenticate', false, `no authenticator accepts a ${credential.scheme} credential`);
  return unclaimed(credential);
}

function claimed(result: Authentication): boolean {
  return result.ok || result.refusal !== undefined;
}

function conclude(result: Authentication, credential: Credential, ctx: RequestContext, trace: Trace | undefined): Verdict {
  if (result.ok) {
    ctx.identity = result.identity;
    trace?.('authenticate', true, `issuer ${result.identity.issuer.name}, subject ${result.identity.subject ?? '(none)'}`);
    return PASS;
  }
  const refused = result.refusal as Refusal;
  const detail = refused.detail === undefined ? '' : `: ${refused.detail}`;
  trace?.('authenticate', false, `${refused.reason} (${credential.source.kind} ${credential.source.name})${detail}`);
  return refused;
}
