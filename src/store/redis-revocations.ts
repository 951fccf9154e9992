import type { RedisConfig } from '../config/types.js';
import { execute } from './connect.js';
import { PRUNE_INTERVAL_MS } from './memory.js';
import { RedisLink } from './redis-link.js';
import { jtiEntry, parseRevocationEntry, RevocationMirror, subjectEntry } from './revocation-mirror.js';
import type { RevocationEntry, RevocationListener, RevocationStore, RevocationSubject, StoreDeps } from './types.js';

/** Revocations written back per round trip on reconnect, so a large mirror never makes one huge command. */
const REPUBLISH_BATCH = 1_000;

/**
 * Pub/sub delivers at most once: a Cluster node whose bus links are still coming up after a restart takes a
 * subscription and drops what other nodes publish meanwhile, without any disconnect to trigger a resync. Reading
 * the set again on this interval bounds how long such a lost revocation stays unknown to an instance. Only a read:
 * the write-back is for a Redis that lost data, which comes with a reconnect or a failed command.
 */
const REVOCATION_REREAD_MS = 60_000;

/**
 * Revocations live in one sorted set (member = the JSON entry, score = when it may be forgotten) and travel on one
 * pub/sub channel of the same name. Each instance applies its own writes at once, applies what others publish, and
 * whenever its connections come (back) up first writes back what it holds and Redis lacks (a Redis restarted
 * without persistence comes back empty; writes made while it was down never reached it), then re-reads the whole
 * set, so nothing published while it was away is missed. It reads the set again once a minute too, for a publish
 * lost while every connection stayed up.
 */
export class RedisRevocations implements RevocationStore {
  readonly link: RedisLink;
  private readonly key: string;
  private readonly mirror: RevocationMirror;
  private readonly timers: readonly NodeJS.Timeout[];
  /** Until the first resync the mirror may lack revocations made before this instance started. */
  private hasSynced = false;
  private resyncRunning = false;
  /** A resync asked for while one was running: undefined for none, else whether it writes back. */
  private resyncQueued: boolean | undefined;

  constructor(
    config: RedisConfig,
    prefix: string,
    private readonly deps: StoreDeps,
  ) {
    this.key = `${prefix}revocations`;
    this.mirror = new RevocationMirror(() => this.nowS());
    this.link = new RedisLink(config, this.key, deps, {
      resync: () => this.requestResync(true),
      message: (text) => this.applyReceived(text),
    });
    this.timers = [
      setInterval(() => this.mirror.prune(), PRUNE_INTERVAL_MS).unref(),
      // While degraded, the link already retries the resync on its own schedule.
      setInterval(() => this.link.isOk && this.requestResync(false), deps.revocationRereadMs ?? REVOCATION_REREAD_MS).unref(),
    ];
  }

  synced(): boolean {
    return this.hasSynced;
  }

  isRevoked(token: RevocationSubject): boolean {
    return this.mirror.isRevoked(token);
  }

  isJtiRevoked(jti: string, issuer?: string): boolean {
    return this.mirror.isJtiRevoked(jti, issuer);
  }

  onRevocation(listener: RevocationListener): () => void {
    return this.mirror.onApply(listener);
  }

  revokeJti(jti: string, exp: number, issuer?: string): Promise<void> {
    return this.replicate(jtiEntry(jti, exp, issuer));
  }

  revokeSubject(subject: string, before: number, issuer?: string): Promise<void> {
    return this.replicate(subjectEntry(subject, before, issuer, this.nowS()));
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    await this.link.close();
  }

  private nowS(): number {
    return Math.floor(this.deps.nowMs() / 1000);
  }

  /** The mirror keeps the entry whatever happens: a revocation made while Redis is down is written back on reconnect. */
  private async replicate(entry: RevocationEntry): Promise<void> {
    this.mirror.apply(entry);
    const member = JSON.stringify(entry);
    try {
      await execute(this.link.commands.multi().zadd(this.key, entry.expiresAt, member).publish(this.key, member));
    } catch (error) {
      // The revocation set's own write: degraded, so the recovery resync writes the entry back once Redis takes it.
      this.link.failed(error as Error);
      throw new Error(`revocation holds on this instance only until Redis is back: ${(error as Error).message}`);
    }
  }

  /**
   * Writes every live entry of the mirror that Redis lacks (ZADD NX leaves existing ones alone, so N instances
   * doing this at once write each entry once) and publishes only those, to instances that started meanwhile.
   */
  private async republish(): Promise<void> {
    const { commands } = this.link;
    const members = this.mirror.liveEntries().map((entry) => [entry.expiresAt, JSON.stringify(entry)] as const);
    for (let start = 0; start < members.length; start += REPUBLISH_BATCH) {
      const batch = members.slice(start, start + REPUBLISH_BATCH);
      const writes = commands.pipeline();
      for (const [score, member] of batch) writes.zadd(this.key, 'NX', score, member);
      const added = await execute(writes);
      const missing = batch.filter((_, index) => added[index] === 1);
      if (missing.length > 0) await execute(commands.pipeline(missing.map(([, member]) => ['publish', this.key, member])));
    }
  }

  /** `writeBack`: first write back what Redis lacks (after a reconnect); else only read the set again. */
  private async resync(writeBack: boolean): Promise<void> {
    if (!this.link.usable) return;
    if (writeBack) await this.republish();
    const now = this.nowS();
    const [, members] = await execute(
      this.link.commands.multi().zremrangebyscore(this.key, '-inf', now).zrangebyscore(this.key, `(${now}`, '+inf'),
    );
    if (!Array.isArray(members)) throw new Error('unexpected reply to the revocation resync');
    for (const member of members) this.applyReceived(String(member));
    this.hasSynced = true;
    this.link.up();
  }

  /** Single flight: a request during a running resync makes one more run after it (writing back if any asked to). */
  private requestResync(writeBack: boolean): void {
    if (this.resyncRunning) {
      this.resyncQueued = this.resyncQueued === true || writeBack;
      return;
    }
    this.resyncRunning = true;
    this.resync(writeBack)
      .catch((error: Error) => this.link.failed(error))
      .finally(() => {
        this.resyncRunning = false;
        const queued = this.resyncQueued;
        this.resyncQueued = undefined;
        if (queued !== undefined && !this.link.isClosing) this.requestResync(queued);
      });
  }

  private applyReceived(text: string): void {
    const entry = parseRevocationEntry(text);
    if (entry === undefined) this.deps.logger.warn('store: ignoring a malformed revocation entry from Redis');
    else this.mirror.apply(entry);
  }
}
