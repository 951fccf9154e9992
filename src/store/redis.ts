import type { ChainableCommander, Redis } from 'ioredis';
import type { RateLimitConfig, RedisConfig } from '../config/types.js';
import { connect, reconnectDelayMs, shutDown } from './connect.js';
import { PRUNE_INTERVAL_MS } from './memory.js';
import { createRateLimitStore } from './rate-limits.js';
import { RedisReplayStore } from './replay.js';
import { jtiEntry, parseRevocationEntry, RevocationMirror, subjectEntry } from './revocation-mirror.js';
import type { RevocationEntry, Store, StoreDeps, StoreHealth } from './types.js';

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
 * Revocations live in one sorted set (member = the JSON entry, score = when it may be forgotten) and
 * travel on one pub/sub channel. Each instance applies its own writes at once, applies what others
 * publish, and whenever its connections come (back) up first writes back what it holds and Redis lacks
 * (a Redis restarted without persistence comes back empty; writes made while it was down never reached
 * it), then re-reads the whole set, so nothing published while it was away is missed. The subscription is
 * confirmed before the re-read starts, which closes the window between the two. It reads the set again once a
 * minute too, for a publish lost while every connection stayed up.
 */
export function createRedisStore(
  config: RedisConfig,
  prefix: string,
  rateLimits: ReadonlyMap<string, RateLimitConfig>,
  deps: StoreDeps,
): Store {
  const { logger, metrics } = deps;
  const nowS = (): number => Math.floor(deps.nowMs() / 1000);
  const revocationsKey = `${prefix}revocations`;
  const channel = `${prefix}revocations`;
  const mirror = new RevocationMirror(nowS);
  /** Until the first resync the mirror may lack revocations made before this instance started. */
  let synced = false;

  let health: StoreHealth | { status: 'starting' } = { status: 'starting' };
  let closing = false;
  let subscribed = false;
  let settleReady: () => void = () => {};
  const readiness = new Promise<void>((resolve) => (settleReady = resolve));

  function markDown(err: Error): void {
    if (closing) return;
    if (health.status !== 'degraded') {
      logger.warn({ err }, 'store: Redis unreachable; serving the last known revocations, rate limits per instance');
    }
    health = { status: 'degraded', error: err.message };
    settleReady();
    scheduleRecovery();
  }

  function markUp(): void {
    if (health.status !== 'ok') {
      logger.info(health.status === 'starting' ? 'store: Redis connected' : 'store: Redis reachable again, resynced');
    }
    health = { status: 'ok' };
    recoveryAttempt = 0;
    settleReady();
  }

  function onError(error: Error): void {
    metrics.storeErrors.inc();
    markDown(error);
  }

  /** The mirror keeps the entry whatever happens: a revocation made while Redis is down is written back on reconnect. */
  async function replicate(entry: RevocationEntry): Promise<void> {
    mirror.apply(entry);
    const member = JSON.stringify(entry);
    try {
      await execute(commands.multi().zadd(revocationsKey, entry.expiresAt, member).publish(channel, member));
    } catch (error) {
      metrics.storeErrors.inc();
      throw new Error(`revocation holds on this instance only until Redis is back: ${(error as Error).message}`);
    }
  }

  /**
   * Writes every live entry of the mirror that Redis lacks (ZADD NX leaves existing ones alone, so N instances
   * doing this at once write each entry once) and publishes only those, to instances that started meanwhile.
   */
  async function republish(): Promise<void> {
    const members = mirror.liveEntries().map((entry) => [entry.expiresAt, JSON.stringify(entry)] as const);
    for (let start = 0; start < members.length; start += REPUBLISH_BATCH) {
      const batch = members.slice(start, start + REPUBLISH_BATCH);
      const writes = commands.pipeline();
      for (const [score, member] of batch) writes.zadd(revocationsKey, 'NX', score, member);
      const added = await execute(writes);
      const missing = batch.filter((_, index) => added[index] === 1);
      if (missing.length > 0) await execute(commands.pipeline(missing.map(([, member]) => ['publish', channel, member])));
    }
  }

  /** `writeBack`: first write back what Redis lacks (after a reconnect); else only read the set again. */
  async function resync(writeBack: boolean): Promise<void> {
    if (commands.status !== 'ready' || !subscribed) return;
    if (writeBack) await republish();
    const now = nowS();
    const [, members] = await execute(
      commands.multi().zremrangebyscore(revocationsKey, '-inf', now).zrangebyscore(revocationsKey, `(${now}`, '+inf'),
    );
    if (!Array.isArray(members)) throw new Error('unexpected reply to the revocation resync');
    for (const member of members) applyReceived(String(member));
    synced = true;
    markUp();
  }

  let resyncRunning = false;
  /** A run asked for while one was running: undefined for none, else whether it writes back. */
  let resyncQueued: boolean | undefined;
  /** Single flight: a request during a running resync makes one more run after it (writing back if any asked to). */
  function requestResync(writeBack = true): void {
    if (resyncRunning) {
      resyncQueued = resyncQueued === true || writeBack;
      return;
    }
    resyncRunning = true;
    resync(writeBack)
      .catch((error: Error) => onError(error))
      .finally(() => {
        resyncRunning = false;
        const queued = resyncQueued;
        resyncQueued = undefined;
        if (queued !== undefined && !closing) requestResync(queued);
      });
  }

  function applyReceived(text: string): void {
    const entry = parseRevocationEntry(text);
    if (entry === undefined) logger.warn('store: ignoring a malformed revocation entry from Redis');
    else mirror.apply(entry);
  }

  /**
   * On a Cluster a primary can fail while the client stays `ready` (its slots move to a replica), so no `ready`
   * event announces the recovery: while degraded, a resync is retried with the reconnect backoff until one works.
   */
  let recovery: NodeJS.Timeout | undefined;
  let recoveryAttempt = 0;
  function scheduleRecovery(): void {
    if (recovery !== undefined || closing) return;
    recovery = setTimeout(() => {
      recovery = undefined;
      if (health.status === 'degraded') requestResync();
    }, reconnectDelayMs(recoveryAttempt++));
  }

  function watchSubscriber(subscriber: Redis): void {
    subscriber.on('error', onError);
    subscriber.on('close', () => {
      subscribed = false;
      if (health.status !== 'degraded') markDown(new Error('subscriber connection to Redis lost'));
    });
    subscriber.on('ready', () => {
      subscriber
        .subscribe(channel)
        .then(() => {
          subscribed = true;
          requestResync();
        })
        .catch(onError);
    });
    subscriber.on('message', (_channel: string, message: string) => applyReceived(message));
  }

  const { commands, closeSubscriber } = connect(config, watchSubscriber);
  commands.on('error', onError);
  commands.on('node error', onError);
  // The error that came with the drop says more than the drop itself, so it is kept.
  commands.on('close', () => health.status !== 'degraded' && markDown(new Error('connection to Redis lost')));
  commands.on('ready', () => requestResync());

  const pruner = setInterval(() => mirror.prune(), PRUNE_INTERVAL_MS).unref();
  // While degraded, recovery already retries the resync on its own schedule.
  const rereader = setInterval(() => {
    if (health.status === 'ok') requestResync(false);
  }, deps.revocationRereadMs ?? REVOCATION_REREAD_MS).unref();

  return {
    revocations: {
      synced: () => synced,
      isRevoked: (token) => mirror.isRevoked(token),
      isJtiRevoked: (jti, issuer) => mirror.isJtiRevoked(jti, issuer),
      onRevocation: (listener) => mirror.onApply(listener),
      revokeJti: (jti, exp, issuer) => replicate(jtiEntry(jti, exp, issuer)),
      revokeSubject: (subject, before, issuer) => replicate(subjectEntry(subject, before, issuer, nowS())),
    },
    rateLimits: createRateLimitStore(rateLimits, prefix, commands, deps),
    replay: new RedisReplayStore(commands, prefix, () => metrics.storeErrors.inc()),
    health: () => (health.status === 'starting' ? { status: 'degraded', error: 'connecting to Redis' } : health),
    ready: () => readiness,
    async close(): Promise<void> {
      closing = true;
      clearInterval(pruner);
      clearInterval(rereader);
      clearTimeout(recovery);
      settleReady();
      await Promise.all([shutDown(commands), closeSubscriber()]);
    },
  };
}

/** Runs a MULTI or a pipeline and returns its results; ioredis reports a failed command in it as a value, not a rejection. */
export async function execute(multi: ChainableCommander): Promise<unknown[]> {
  const replies = await multi.exec();
  if (replies === null) throw new Error('Redis transaction aborted');
  return replies.map(([error, result]) => {
    if (error) throw error;
    return result;
  });
}
