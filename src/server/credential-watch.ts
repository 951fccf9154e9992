import type { Identity } from '../identity/identity.js';
import type { RevocationEntry, RevocationStore } from '../store/types.js';
import { revocationKey } from '../chain/steps/revocation.js';

/** Why a watched credential stopped holding. */
export type CredentialEnd = 'expired' | 'revoked';

interface Watched {
  readonly identity: Identity;
  readonly end: (why: CredentialEnd) => void;
  timer: NodeJS.Timeout | undefined;
}

/** setTimeout's longest delay; a later deadline is reached in several steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Watches the credentials of long-lived connections (proxied WebSockets), which outlive the single check a
 * request gets: each one is ended when its token expires or is revoked, on this instance or, through the
 * store's mirror, on another. Connections are indexed by jti and subject, so a revocation looks at the few it
 * may concern rather than at every open one.
 */
export class CredentialWatch {
  private readonly byJti = new Map<string, Set<Watched>>();
  private readonly bySubject = new Map<string, Set<Watched>>();

  constructor(private readonly revocations: RevocationStore) {
    revocations.onRevocation((entry) => this.revoked(entry));
  }

  /**
   * Calls `end` once, when `identity` stops holding (at once if it already has). Returns the function to call
   * when the connection closes for another reason.
   */
  watch(identity: Identity, end: (why: CredentialEnd) => void): () => void {
    const watched: Watched = { identity, end, timer: undefined };
    if (this.revocations.isRevoked(revocationKey(identity))) {
      end('revoked');
      return () => undefined;
    }
    add(this.byJti, identity.jti, watched);
    add(this.bySubject, identity.subject, watched);
    this.armExpiry(watched);
    return () => this.forget(watched);
  }

  /**
   * The gateway refuses a token from `exp` plus its issuer's clock skew on (a `max_token_age` never ends one
   * sooner: a token living longer than it is refused outright), so a connection ends at that same moment.
   */
  private armExpiry(watched: Watched): void {
    const deadlineMs = watched.identity.exp * 1000 + watched.identity.issuer.clockSkewMs;
    const delayMs = deadlineMs - Date.now();
    if (delayMs <= 0) {
      this.ended(watched, 'expired');
      return;
    }
    watched.timer = setTimeout(() => this.armExpiry(watched), Math.min(delayMs, MAX_TIMER_MS)).unref();
  }

  private revoked(entry: RevocationEntry): void {
    const candidates = entry.kind === 'jti' ? this.byJti.get(entry.jti) : this.bySubject.get(entry.subject);
    if (candidates === undefined) return;
    // The mirror decides (issuer, iat cut-off): the entry only says which connections may be concerned.
    for (const watched of [...candidates]) {
      if (this.revocations.isRevoked(revocationKey(watched.identity))) this.ended(watched, 'revoked');
    }
  }

  private ended(watched: Watched, why: CredentialEnd): void {
    this.forget(watched);
    watched.end(why);
  }

  private forget(watched: Watched): void {
    clearTimeout(watched.timer);
    remove(this.byJti, watched.identity.jti, watched);
    remove(this.bySubject, watched.identity.subject, watched);
  }
}

function add(index: Map<string, Set<Watched>>, key: string | undefined, watched: Watched): void {
  if (key === undefined) return;
  let set = index.get(key);
  if (set === undefined) {
    set = new Set();
    index.set(key, set);
  }
  set.add(watched);
}

function remove(index: Map<string, Set<Watched>>, key: string | undefined, watched: Watched): void {
  if (key === undefined) return;
  const set = index.get(key);
  if (set?.delete(watched) && set.size === 0) index.delete(key);
}
