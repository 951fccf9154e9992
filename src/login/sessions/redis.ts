import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { execute, shutDown, type Connections, type RedisClient } from '../../store/connect.js';
import { LocalCopies } from './local-copies.js';
import {
  isLive, remainingMs, touchIntervalMs, type PreLogin, type RefreshLock, type Session, type SessionEndListener,
  type SessionStore, type SessionTimeouts, type SessionTokens,
} from './types.js';

export interface RedisSessionStoreOptions {
  /**
   * Opens the store's own connections: one for commands, and a subscriber handed to `onSubscriber` (on a Cluster,
   * again for every replacement on another node). A subscribed connection runs no other commands.
   */
  readonly connect: (onSubscriber: (subscriber: Redis) => void) => Connections;
  readonly prefix: string;
  readonly timeouts: SessionTimeouts;
  /** Sessions this instance keeps a copy of, at most. */
  readonly copies?: number;
  readonly now?: () => number;
  /** Told of every error on the store's connections, which reconnect by themselves. */
  readonly onError: (error: Error) => void;
}

/**
 * Writes the rotated tokens only while this refresher still holds the lock and the session still exists. The lock
 * carries the session's hash tag, so both keys are in one slot of a Cluster.
 */
const COMMIT_SCRIPT = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'data', ARGV[2])
return 1`;
const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;
/** Notes a use of the session, unless it ended meanwhile (a bare HSET would leave a husk of it behind). */
const TOUCH_SCRIPT = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'seen', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;
const DEFAULT_COPIES = 10_000;

type StoredSession = Omit<Session, 'lastSeenAt'>;

/**
 * Sessions shared by every instance through Redis, one node, Sentinel or Cluster alike. Keys (under `prefix`):
 *
 * - `session:{ID}`, a hash (`data`: the record, `seen`: last use), and `session:{ID}:refresh-lock`: one hash tag,
 *   so the refresh commit checks the lock and writes the session in one script, in one slot of a Cluster;
 * - `session-sub:…` and `session-sid:…`, the session IDs of a subject and of a provider session (back-channel
 *   logout), and `session-expiries`, every session by the time it lapses (to count the live ones).
 *
 * Every transaction or script touches one key or one hash tag. The index sets and the expiries are written with
 * commands of their own: before the session when it is made, after it is deleted when it ends. A step lost in
 * between leaves an index naming a session that is gone (ending it again finds nothing), never a session no index
 * names. One pub/sub channel announces an ending or refreshed session, so every instance drops its copy (within
 * milliseconds; the contract is one second); each time the subscription is (re)made, announcements may have been
 * missed, so every copy is read again, and stands in only while that read fails (Redis failing over).
 */
export class RedisSessionStore implements SessionStore {
  private readonly redis: RedisClient;
  private readonly connections: Connections;
  private readonly prefix: string;
  private readonly timeouts: SessionTimeouts;
  private readonly now: () => number;
  private readonly copies: LocalCopies;
  private readonly channel: string;
  /** Tells this instance's own announcements apart from the others'. */
  private readonly instance = randomBytes(8).toString('hex');
  private readonly touchIntervalMs: number;
  private readonly expiriesKey: string;
  private readonly onError: (error: Error) => void;
  private markListening: () => void = () => undefined;
  /** Resolves once the first subscription to the announcements is confirmed. */
  readonly listening: Promise<void>;

  constructor(options: RedisSessionStoreOptions) {
    this.prefix = options.prefix;
    this.timeouts = options.timeouts;
    this.now = options.now ?? Date.now;
    this.copies = new LocalCopies(options.copies ?? DEFAULT_COPIES, options.timeouts, this.now);
    this.channel = `${options.prefix}sessions`;
    this.touchIntervalMs = touchIntervalMs(options.timeouts);
    this.expiriesKey = `${options.prefix}session-expiries`;
    this.onError = options.onError;
    this.listening = new Promise((resolve) => (this.markListening = resolve));
    this.connections = options.connect((subscriber) => this.follow(subscriber));
    this.redis = this.connections.commands;
    this.redis.on('error', this.onError);
    this.redis.on('node error', this.onError);
  }

  async savePreLogin(flowId: string, record: PreLogin, ttlMs: number): Promise<void> {
    await this.redis.set(this.flowKey(flowId), JSON.stringify(record), 'PX', ttlMs);
  }

  async takePreLogin(flowId: string): Promise<PreLogin | undefined> {
    const text = await this.redis.getdel(this.flowKey(flowId));
    return text === null ? undefined : (JSON.parse(text) as PreLogin);
  }

  async create(session: Session): Promise<void> {
    const { lastSeenAt, ...stored } = session;
    const now = this.now();
    const remaining = remainingMs(session, this.timeouts, now);
    await Promise.all([
      ...this.indexKeys(session).map((key) => execute(this.redis.multi().sadd(key, session.id).pexpire(key, this.timeouts.absoluteMs))),
      // Lapsed entries go as new ones come, so the set stays as large as the live sessions are many.
      execute(this.redis.multi().zremrangebyscore(this.expiriesKey, '-inf', now).zadd(this.expiriesKey, now + remaining, session.id)),
    ]);
    const key = this.sessionKey(session.id);
    await execute(this.redis.multi().hset(key, 'data', JSON.stringify(stored), 'seen', String(lastSeenAt)).pexpire(key, remaining));
    this.copies.put(session);
  }

  cached(id: string): Session | undefined {
    return this.copies.get(id);
  }

  async get(id: string): Promise<Session | undefined> {
    const held = this.copies.get(id);
    if (held !== undefined) return held;
    const epoch = this.copies.epoch;
    let session: Session | undefined;
    try {
      session = await this.read(id);
    } catch (error) {
      // The subscription was remade while commands still fail (a failover under way): the copy held before stands
      // in, and the store is asked again at the next request, so an end announced in the gap holds once it answers.
      const unconfirmed = this.copies.unconfirmedCopy(id);
      if (unconfirmed === undefined) throw error;
      return unconfirmed;
    }
    if (session === undefined) this.copies.gone(id);
    else this.copies.put(session, epoch);
    return session;
  }

  touch(session: Session): void {
    const now = this.now();
    if (now - session.lastSeenAt < this.touchIntervalMs) return;
    const touched = { ...session, lastSeenAt: now };
    this.copies.replace(session, touched);
    const remaining = remainingMs(touched, this.timeouts, now);
    // Best effort: a lost touch only shortens the idle window by one interval. `XX`: an ended session is not counted again.
    Promise.all([
      this.redis.eval(TOUCH_SCRIPT, 1, this.sessionKey(session.id), String(now), String(remaining)),
      this.redis.zadd(this.expiriesKey, 'XX', now + remaining, session.id),
    ]).then(([touched]) => {
      // Gone from Redis: it ended and its announcement never came (pub/sub drops messages, on a Cluster even with
      // the connection up). Ending the copy here bounds that to one touch interval of a session in use.
      if (touched === 0) this.copies.ended(session.id);
    }, () => undefined);
  }

  async end(id: string): Promise<void> {
    await this.endOne(id);
  }

  async endBySubject(provider: string, subject: string): Promise<number> {
    return this.endAll(await this.redis.smembers(this.indexKey('sub', provider, subject)));
  }

  async endByIdpSession(provider: string, idpSid: string): Promise<number> {
    return this.endAll(await this.redis.smembers(this.indexKey('sid', provider, idpSid)));
  }

  async lockRefresh(id: string, ttlMs: number): Promise<RefreshLock | undefined> {
    const lockKey = `${this.sessionKey(id)}:refresh-lock`;
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
    const [, counted] = await execute(this.redis.multi().zremrangebyscore(this.expiriesKey, '-inf', this.now()).zcard(this.expiriesKey));
    return Number(counted);
  }

  onEnd(listener: SessionEndListener): () => void {
    return this.copies.ends.onEnd(listener);
  }

  async close(): Promise<void> {
    await Promise.all([this.connections.closeSubscriber(), shutDown(this.redis)]);
  }

  /** Subscribes on this connection now if it is up, and again each time it comes back (nothing resubscribes by itself). */
  private follow(subscriber: Redis): void {
    subscriber.on('error', this.onError);
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.heard(message);
    });
    const subscribe = (): void => {
      subscriber.subscribe(this.channel).then(() => {
        this.copies.forgetAll();
        this.markListening();
      }, this.onError);
    };
    subscriber.on('ready', subscribe);
    if (subscriber.status === 'ready') subscribe();
  }

  private async read(id: string): Promise<Session | undefined> {
    const fields = await this.redis.hgetall(this.sessionKey(id));
    if (fields.data === undefined || fields.seen === undefined) return undefined;
    const session: Session = { ...(JSON.parse(fields.data) as StoredSession), lastSeenAt: Number(fields.seen) };
    return isLive(session, this.timeouts, this.now()) ? session : undefined;
  }

  private async endAll(ids: readonly string[]): Promise<number> {
    const ended = await Promise.all(ids.map((id) => this.endOne(id)));
    return ended.filter(Boolean).length;
  }

  /**
   * Deletes the session, reading its record in the same step (for its index entries), drops the copy here, announces
   * the end to the others and removes the index entries; true when the session was still there.
   */
  private async endOne(id: string): Promise<boolean> {
    const key = this.sessionKey(id);
    const [data, deleted] = await execute(this.redis.multi().hget(key, 'data').del(key));
    this.copies.ended(id);
    const indexKeys = typeof data === 'string' ? this.indexKeys(JSON.parse(data) as StoredSession) : [];
    await Promise.all([
      this.redis.publish(this.channel, `end ${this.instance} ${id}`),
      this.redis.zrem(this.expiriesKey, id),
      ...indexKeys.map((indexKey) => this.redis.srem(indexKey, id)),
    ]);
    return deleted === 1;
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

  /** The ID is the hash tag: a random base64url text, which never holds a brace. */
  private sessionKey(id: string): string {
    return `${this.prefix}session:{${id}}`;
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
