/** Shared state: revocations, rate-limit counters and single-use ids. Redis for many replicas, memory for one. */

import type { RateLimitConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import type { ReplayStore } from './replay.js';

export interface StoreDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly nowMs: () => number;
  /** How often a Redis store reads the revocations again while connected (default a minute). */
  readonly revocationRereadMs?: number | undefined;
}

export interface RevocationSubject {
  /**
   * The issuer's identifier (its `iss`), not its name under `issuers:`: renaming the entry, or two instances naming
   * it differently during a rollout, keeps its revocations.
   */
  readonly issuer: string;
  readonly jti: string | undefined;
  readonly subject: string | undefined;
  readonly iat: number | undefined;
}

export interface RevocationStore {
  /**
   * Whether the mirror holds every revocation made before this instance started: false until the first read
   * of the shared store succeeds, and then for good (an outage later serves the last known revocations).
   */
  synced(): boolean;
  /** Synchronous: answered from the local mirror, never a round trip. */
  isRevoked(token: RevocationSubject): boolean;
  /** `issuer` undefined = that jti under every issuer. Held until `exp` (epoch seconds). */
  revokeJti(jti: string, exp: number, issuer?: string): Promise<void>;
  /** Every token of `subject` with `iat <= before` (epoch seconds); `issuer` undefined = every issuer. */
  revokeSubject(subject: string, before: number, issuer?: string): Promise<void>;
  isJtiRevoked(jti: string, issuer?: string): boolean;
  /** Hears of every revocation applied to this instance's mirror, wherever it was made; returns the unsubscriber. */
  onRevocation(listener: RevocationListener): () => void;
}

export interface RateLimitDecision {
  readonly allowed: boolean;
  readonly limit: number;
  readonly remaining: number;
  /** Milliseconds until the window resets. */
  readonly resetMs: number;
}

export interface RateLimitStore {
  /** Consume one point of the named `rate_limits` entry for `key`: at once when the answer needs no I/O. */
  consume(limitName: string, key: string): RateLimitDecision | Promise<RateLimitDecision>;
  /**
   * Applies a reloaded `rate_limits`: new and changed entries get fresh limiters (Redis counters carry on
   * under the same keys), unchanged ones keep theirs.
   */
  update(rateLimits: ReadonlyMap<string, RateLimitConfig>): void;
}

export type StoreHealth =
  | { readonly status: 'memory' }
  | { readonly status: 'ok' }
  | { readonly status: 'degraded'; readonly error: string };

export interface Store {
  readonly revocations: RevocationStore;
  readonly rateLimits: RateLimitStore;
  /** Single-use ids (DPoP proofs): a round trip per claim with Redis, shared by every instance. */
  readonly replay: ReplayStore;
  health(): StoreHealth;
  /** Resolves when the first sync is done (or failed and fell back); never rejects. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** One revocation, as stored in Redis and published to other instances. Times in epoch seconds. */
export type RevocationEntry =
  | { readonly kind: 'jti'; readonly issuer: string | null; readonly jti: string; readonly expiresAt: number }
  | {
      readonly kind: 'subject';
      readonly issuer: string | null;
      readonly subject: string;
      readonly before: number;
      readonly expiresAt: number;
    };

/** Told of each revocation once it holds: `isRevoked` already answers accordingly. */
export type RevocationListener = (entry: RevocationEntry) => void;
