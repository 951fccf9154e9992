import type { CompileContext, ErrorRenderer, MechanismType, RequestContext, SenderConstraint } from '../../chain/kinds.js';
import { refusal, type Refusal, type Trace } from '../../chain/verdict.js';
import { routeDpop } from '../../config/dpop.js';
import type { IssuerConfig } from '../../config/types.js';
import { DpopProofDescription, InvalidTokenDescription, type GatewayError } from '../../http/responses.js';
import type { Identity } from '../../identity/identity.js';
import { boundKey } from './bearer-bound.js';
import { requestHtu } from './htu.js';
import { DpopNonces } from './nonce.js';
import { DpopVerifier, type DpopCheck, type DpopFailure, type DpopRefusal } from './proof.js';

/** What one issuer with `dpop` needs at request time. */
interface IssuerProofs {
  readonly verifier: DpopVerifier;
  readonly nonces: DpopNonces | undefined;
  /** `mode: required`: a Bearer token of this issuer is refused, bound or not. */
  readonly required: boolean;
}

function issuerProofs(issuer: IssuerConfig, ctx: CompileContext): IssuerProofs | undefined {
  const dpop = issuer.dpop;
  if (dpop === undefined) return undefined;
  // A nonce lives one to two windows: as long as a proof made with it may be.
  const nonces = dpop.nonceSecret === undefined ? undefined : new DpopNonces(dpop.nonceSecret.reveal(), dpop.maxAgeMs);
  const verifier = new DpopVerifier({
    algorithms: dpop.algorithms,
    maxAgeMs: dpop.maxAgeMs,
    clockSkewMs: issuer.clockSkewMs,
    nonces,
    replay: ctx.store.replay,
  });
  return { verifier, nonces, required: dpop.mode === 'required' };
}

/** Why a DPoP route refuses: a proof check failed, the issuer takes no DPoP, or it takes nothing else. */
type DpopDenial = DpopFailure | 'dpop_not_accepted' | 'dpop_required';

/**
 * One route's refusals, each built on first use and shared after: the error depends only on the reason, the nonce
 * refusal on the nonce of the current window.
 */
class RouteRefusals {
  private readonly byReason = new Map<DpopDenial, Refusal>();
  private nonceRefusal: Refusal | undefined;

  constructor(private readonly errors: ErrorRenderer) {}

  of(check: DpopRefusal, nonces: DpopNonces | undefined): Refusal {
    const known = check.error === 'use_dpop_nonce' && nonces !== undefined ? this.forNonce(nonces.current()) : this.fixed(check.reason);
    return { ...known, detail: check.detail };
  }

  fixed(reason: DpopDenial): Refusal {
    let known = this.byReason.get(reason);
    if (known === undefined) this.byReason.set(reason, (known = refusal('authenticate', this.errorOf(reason), reason)));
    return known;
  }

  private forNonce(nonce: string): Refusal {
    if (this.nonceRefusal?.error.headers?.['dpop-nonce'] !== nonce) {
      this.nonceRefusal = refusal('authenticate', this.errors.useNonce(nonce), 'dpop_nonce');
    }
    return this.nonceRefusal;
  }

  private errorOf(reason: DpopDenial): GatewayError {
    switch (reason) {
      case 'dpop_not_accepted': return this.errors.invalidCredentials(DpopProofDescription.notAccepted);
      case 'dpop_required': return this.errors.invalidCredentials(DpopProofDescription.required);
      case 'dpop_token_unbound': case 'dpop_key_mismatch': return this.errors.invalidCredentials(InvalidTokenDescription.unbound);
      case 'dpop_replay_store_unavailable': return this.errors.unavailable(DpopProofDescription.unavailable);
      case 'dpop_proof_missing': return this.errors.invalidProof(DpopProofDescription.missing);
      default: return this.errors.invalidProof(DpopProofDescription.invalid);
    }
  }
}

/**
 * The proof check of one route. A DPoP credential needs an issuer that takes DPoP and a proof that holds for this
 * request; a Bearer token of an issuer with `mode: required` is refused. The token was verified (or found in the
 * cache) already: only the proof is checked on every request.
 */
function routeCheck(byIssuer: ReadonlyMap<string, IssuerProofs>, errors: ErrorRenderer): SenderConstraint {
  const refusals = new RouteRefusals(errors);
  return {
    check(identity: Identity, ctx: RequestContext, trace: Trace | undefined) {
      const credential = ctx.credential;
      const issuer = byIssuer.get(identity.issuer.name);
      if (credential?.scheme === 'bearer') return issuer?.required === true ? refusals.fixed('dpop_required') : undefined;
      if (credential?.scheme !== 'dpop') return undefined;
      if (issuer === undefined) return refusals.fixed('dpop_not_accepted');
      const htu = requestHtu(ctx);
      if (htu === undefined) return { ...refusals.fixed('dpop_proof_htu'), detail: 'the forwarded URI (X-Forwarded-Uri) is no valid request target' };
      const notes = trace === undefined ? undefined : [];
      const request = { proof: credential.proof, method: ctx.method, htu, accessToken: credential.value, jkt: boundKey(identity.claims.cnf) };
      return issuer.verifier.verify(request, notes).then((check) => settle(check, ctx, refusals, issuer, notes, trace));
    },
  };
}

function settle(
  check: DpopCheck,
  ctx: RequestContext,
  refusals: RouteRefusals,
  issuer: IssuerProofs,
  notes: string[] | undefined,
  trace: Trace | undefined,
): Refusal | undefined {
  if (check.ok) {
    trace?.('authenticate', true, `DPoP proof holds: ${notes?.join('; ') ?? ''}`);
    if (check.nonce !== undefined) ctx.answerHeaders = [...(ctx.answerHeaders ?? []), 'dpop-nonce', check.nonce];
    return undefined;
  }
  const refused = refusals.of(check, issuer.nonces);
  // For explain, the checks that held before the one that failed.
  return notes === undefined || notes.length === 0 ? refused : { ...refused, detail: `${notes.join('; ')}; then ${check.detail}` };
}

/**
 * The registry's `dpop`: on every protected route that accepts an issuer with `dpop`, a token presented in the
 * DPoP scheme comes with a proof of possession of the key it is bound to (RFC 9449 §4.3, §7.1).
 */
export const dpopProof: MechanismType<SenderConstraint> = {
  create(ctx) {
    const byIssuer = new Map<string, IssuerProofs>();
    for (const issuer of ctx.config.issuers.values()) {
      const proofs = issuerProofs(issuer, ctx);
      if (proofs !== undefined) byIssuer.set(issuer.name, proofs);
    }
    if (byIssuer.size === 0) return undefined;
    return {
      forRoute(route, errors) {
        if (route.auth === 'none' || routeDpop(route, ctx.config.issuers) === undefined) return undefined;
        return routeCheck(byIssuer, errors);
      },
    };
  },
};
