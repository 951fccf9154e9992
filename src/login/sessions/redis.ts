import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { LocalCopies } from './local-copies.js';
import {
  PRE_LOGIN_TTL_MS, isLive, remainingMs, touchIntervalMs, type PreLogin, type RefreshLock, type Session, type SessionEndListener,
  type SessionStore, type SessionTimeouts, type SessionTokens,
} from './types.js';

export interface RedisSessionStoreOptions {
  /** For commands; shared with the rest of the store. */
  readonly commands: Redis;
  /** A connection of its own for the subscription (a subscribed connection runs no other commands). */
  readonly subscriber: Redis;
  readonly prefix: string;
  readonly timeouts: SessionTimeouts;
  /** Sessions this instance keeps a copy of, at most. */
  readonly copies?: number;
  readonly now?: () => number;
}

/** Writes the rotated tokens only while this refresher still holds the lock and the session still exists. */
const COMMIT_SCRIPT = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'data', ARGV[2])
return 1`;
const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;
const DEFAULT_COPIES = 10_000;

type StoredSession = Omit<Session, 'lastSeenAt'>;

/**
 * Sessions shared by every instance through Redis: a hash per session (`data`: the record, `seen`: last use), an
 * index set per subject and per provider session for back-channel logout, a sorted set of every session by the
 * time it lapses (to count the live ones), and one pub/sub channel on which an ending or refreshed session is
 * announced, so every instance drops its copy (within milliseconds; the contract is one second).
 */
export class RedisSessionStore implements SessionStore {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly timeouts: SessionTimeouts;
  private readonly now: () => number;
  private readonly copies: LocalCopies;
  private readonly channel: string;
  /** Tells this instance's own announcements apart from the others'. */
  private readonly instance = randomBytes(8).toString('hex');
  private readonly touchIntervalMs: number;
  private readonly expiriesKey: string;

  constructor(private readonly options: RedisSessionStoreOptions) {
    this.redis = options.commands;
    this.prefix = options.prefix;
    this.timeouts = options.timeouts;
    this.now = options.now ?? Date.now;
    this.copies = new LocalCopies(options.copies ?? DEFAULT_COPIES, options.timeouts, this.now);
    this.channel = `${options.prefix}sessions`;
    this.touchIntervalMs = touchIntervalMs(options.timeouts);
    this.expiriesKey = `${options.prefix}session-expiries`;
  }

  /** Subscribes to the announcements; resolves once Redis confirmed the subscription. */
  async start(): Promise<void> {
    this.options.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.heard(message);
    });
    await this.options.subscriber.subscribe(this.channel);
  }

  async savePreLogin(flowId: string, record: PreLogin): Promise<void> {
    await this.redis.set(this.flowKey(flowId), JSON.stringify(record), 'PX', PRE_LOGIN_TTL_MS);
  }

  async takePreLogin(flowId: string): Promise<PreLogin | undefined> {
    const text = await this.redis.getdel(this.flowKey(flowId));
    return text === null ? undefined : (JSON.parse(text) as PreLogin);
  }

  async create(session: Session): Promise<void> {
    const { lastSeenAt, ...stored } = session;
    const now = this.now();
    const remaining = remainingMs(session, this.timeouts, now);
    const multi = this.redis.multi()
      .hset(this.sessionKey(session.id), 'data', JSON.stringify(stored), 'seen', String(lastSeenAt))
      .pexpire(this.sessionKey(session.id), remaining)
      // Lapsed entries go as new ones come, so the set stays as large as the live sessions are many.
      .zremrangebyscore(this.expiriesKey, '-inf', now)
      .zadd(this.expiriesKey, now + remaining, session.id);
    for (const key of this.indexKeys(session)) multi.sadd(key, session.id).pexpire(key, this.timeouts.absoluteMs);
    await multi.exec();
    this.copies.put(session);
  }

  cached(id: string): Session | undefined {
    return this.copies.get(id);
  }

  async get(id: string): Promise<Session | undefined> {
    const held = this.copies.get(id);
    if (held !== undefined) return held;
    const epoch = this.copies.epoch;
    const session = await this.read(id);
    if (session !== undefined) this.copies.put(session, epoch);
    return session;
  }

  touch(session: Session): void {
    const now = this.now();
    if (now - session.lastSeenAt < this.touchIntervalMs) return;
    const touched = { ...session, lastSeenAt: now };
    this.copies.put(touched);
    const key = this.sessionKey(session.id);
    const remaining = remainingMs(touched, this.timeouts, now);
    // Best effort: a lost touch only shortens the idle window by one interval.
    this.redis.multi().hset(key, 'seen', String(now)).pexpire(key, remaining).zadd(this.expiriesKey, now + remaining, session.id).exec()
      .catch(() => undefined);
  }

  async end(id: string): Promise<void> {
    await this.endAll([id]);
  }

  async endBySubject(provider: string, subject: string): Promise<number> {
    return this.endAll(await this.redis.smembers(this.indexKey('sub', provider, subject)));
  }

  async endByIdpSession(provider: string, idpSid: string): Promise<number> {
    return this.endAll(await this.redis.smembers(this.indexKey('sid', provider, idpSid)));
  }

  async lockRefresh(id: string, ttlMs: number): Promise<RefreshLock | undefined> {
    const lockKey = `${this.prefix}session-lock:${id}`;
    const token = randomBytes(16).toString('hex');
    if ((await this.redis.set(lockKey, token, 'PX', ttlMs, 'NX')) === null) return undefined;
    return {
      current: await this.read(id),
      commit: async (tokens: SessionTokens, claims: Readonly<Record<string, unknown>>) => {
        const stored = await this.read(id);
        if (stored === undefined) return false;
        const { lastSeenAt: _seen, ...record } = { ...stored, tokens, claims };
        const written = await this.redis.eval(COMMIT_SCRIPT, 2, lockKey, this.sessionKey(id), token, JSON.stringify(record));
        if (written !== 1) return false;
        this.copies.invalidate(id);
        await this.redis.publish(this.channel, `update ${this.instance} ${id}`);
        return true;
      },
      release: async () => {
        await this.redis.eval(RELEASE_SCRIPT, 1, lockKey, token);
      },
    };
  }

  async firstUseOfJti(issuer: string, jti: string, ttlMs: number): Promise<boolean> {
    const key = `${this.prefix}logout-jti:${JSON.stringify([issuer, jti])}`;
    return (await this.redis.set(key, '1', 'PX', ttlMs, 'NX')) !== null;
  }

  async countLive(): Promise<number> {
    const results = await this.redis.multi().zremrangebyscore(this.expiriesKey, '-inf', this.now()).zcard(this.expiriesKey).exec();
    const [error, counted] = results?.[1] ?? [new Error('the session count was not answered')];
    if (error) throw error;
    return Number(counted);
  }

  onEnd(listener: SessionEndListener): () => void {
    return this.copies.ends.onEnd(listener);
  }

  async close(): Promise<void> {
    await this.options.subscriber.unsubscribe(this.channel).catch(() => undefined);
  }

  private async read(id: string): Promise<Session | undefined> {
    const fields = await this.redis.hgetall(this.sessionKey(id));
    if (fields.data === undefined || fields.seen === undefined) return undefined;
    const session: Session = { ...(JSON.parse(fields.data) as StoredSession), lastSeenAt: Number(fields.seen) };
    return isLive(session, this.timeouts, this.now()) ? session : undefined;
  }

  /** Deletes the sessions and their index entries, drops the copies here and announces it to the others. */
  private async endAll(ids: readonly string[]): Promise<number> {
    let ended = 0;
    for (const id of ids) {
      const fields = await this.redis.hgetall(this.sessionKey(id));
      const multi = this.redis.multi().del(this.sessionKey(id)).zrem(this.expiriesKey, id);
      if (fields.data !== undefined) {
        for (const key of this.indexKeys(JSON.parse(fields.data) as StoredSession)) multi.srem(key, id);
      }
      const results = await multi.publish(this.channel, `end ${this.instance} ${id}`).exec();
      if (results?.[0]?.[1] === 1) ended++;
      this.copies.ended(id);
    }
    return ended;
  }

  private heard(message: string): void {
    const [kind, instance, id] = message.split(' ');
    if (instance === this.instance || id === undefined) return;
    if (kind === 'end') this.copies.ended(id);
    else if (kind === 'update') this.copies.invalidate(id);
  }

  private flowKey(flowId: string): string {
    return `${this.prefix}login-flow:${flowId}`;
  }

  private sessionKey(id: string): string {
    return `${this.prefix}session:${id}`;
  }

  private indexKey(kind: 'sub' | 'sid', provider: string, value: string): string {
    return `${this.prefix}session-${kind}:${JSON.stringify([provider, value])}`;
  }

  private indexKeys(session: Pick<Session, 'provider' | 'subject' | 'idpSid'>): string[] {
    const keys = [this.indexKey('sub', session.provider, session.subject)];
    if (session.idpSid !== undefined) keys.push(this.indexKey('sid', session.provider, session.idpSid));
    return keys;
  }
}
