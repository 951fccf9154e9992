import type { Identity } from '../../identity/identity.js';
import type { RequestContext, SenderConstraint, Step } from '../kinds.js';
import { isThenable, PASS, type Refusal, type Trace, type Verdict } from '../verdict.js';

/**
 * The route's sender constraints, in order, on the identity just authenticated: the first that refuses answers.
 * An anonymous request (allowed through without a credential) has nothing to constrain.
 */
export function constrainStep(constraints: readonly SenderConstraint[]): Step {
  return {
    stage: 'authenticate',
    run(ctx: RequestContext, trace: Trace | undefined): Verdict | Promise<Verdict> {
      const identity = ctx.identity;
      return identity === undefined ? PASS : checkFrom(constraints, 0, identity, ctx, trace);
    },
  };
}

function checkFrom(
  constraints: readonly SenderConstraint[],
  from: number,
  identity: Identity,
  ctx: RequestContext,
  trace: Trace | undefined,
): Verdict | Promise<Verdict> {
  for (let index = from; index < constraints.length; index++) {
    const refused = (constraints[index] as SenderConstraint).check(identity, ctx, trace);
    if (refused === undefined) continue;
    if (!isThenable(refused)) return report(refused, trace);
    return refused.then((settled) => (settled !== undefined ? report(settled, trace) : checkFrom(constraints, index + 1, identity, ctx, trace)));
  }
  return PASS;
}

function report(refused: Refusal, trace: Trace | undefined): Verdict {
  trace?.('authenticate', false, `${refused.reason}${refused.detail === undefined ? '' : `: ${refused.detail}`}`);
  return refused;
}
