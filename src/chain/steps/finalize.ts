import type { Finalizer, RequestContext, SyncStep } from '../kinds.js';
import { PASS, type Trace, type Verdict } from '../verdict.js';

/** The route's finalizers in order (header hygiene, then identity headers), traced once as `inject`. */
export function finalizeStep(finalizers: readonly Finalizer[]): SyncStep {
  return {
    stage: 'inject',
    run(ctx: RequestContext, trace: Trace | undefined): Verdict {
      for (const finalizer of finalizers) {
        const verdict = finalizer.finalize(ctx);
        if (!verdict.ok) {
          trace?.('inject', false, verdict.reason);
          return verdict;
        }
      }
      trace?.('inject', true, ctx.identity ? 'identity headers set' : 'anonymous: no identity headers');
      return PASS;
    },
  };
}
