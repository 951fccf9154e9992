import type { Step, RequestContext } from './kinds.js';
import { enter, type Head } from './head.js';
import { isThenable, PASS, passes, type Trace, type Verdict } from './verdict.js';

/**
 * Walks `steps` from `from` and stops at the first refusal or answer. Synchronous until a step returns a promise,
 * so a plan whose steps never wait (a public route) costs no promise at all.
 */
function run(steps: readonly Step[], ctx: RequestContext, trace: Trace | undefined, from = 0): Verdict | Promise<Verdict> {
  for (let index = from; index < steps.length; index++) {
    const verdict = (steps[index] as Step).run(ctx, trace);
    if (isThenable(verdict)) return verdict.then((settled) => (passes(settled) ? run(steps, ctx, trace, index + 1) : settled));
    if (!passes(verdict)) return verdict;
  }
  return PASS;
}

/**
 * The whole chain for one request, whatever carried it (a proxied request, an upgrade, a forward-auth check,
 * `authgate explain`): the head picks the plan, then its steps run. On a pass the request may be forwarded.
 */
export function decide(head: Head, ctx: RequestContext, trace?: Trace): Verdict | Promise<Verdict> {
  const entered = enter(head, ctx, trace);
  if (!passes(entered) || ctx.plan === undefined) return entered;
  return run(ctx.plan.steps, ctx, trace);
}
