import type { Finalizer, RequestContext, Step } from '../kinds.js';
import { isThenable, PASS, type Trace, type Verdict } from '../verdict.js';

/**
 * The route's finalizers in order (header hygiene, identity headers, the signed assertion), traced once as
 * `inject`. Synchronous until a finalizer has to wait (a signature not yet made).
 */
export function finalizeStep(finalizers: readonly Finalizer[]): Step {
  const finalizeFrom = (ctx: RequestContext, trace: Trace | undefined, from: number): Verdict | Promise<Verdict> => {
    for (let index = from; index < finalizers.length; index++) {
      const verdict = (finalizers[index] as Finalizer).finalize(ctx);
      if (isThenable(verdict)) return verdict.then((settled) => (settled.ok ? finalizeFrom(ctx, trace, index + 1) : refused(settled, trace)));
      if (!verdict.ok) return refused(verdict, trace);
    }
    trace?.('inject', true, ctx.identity ? 'identity headers set' : 'anonymous: no identity headers');
    return PASS;
  };
  return { stage: 'inject', run: (ctx, trace) => finalizeFrom(ctx, trace, 0) };
}

function refused(verdict: Verdict, trace: Trace | undefined): Verdict {
  if (!verdict.ok) trace?.('inject', false, verdict.reason);
  return verdict;
}
