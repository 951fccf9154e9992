import { Redis } from 'ioredis';
import { RedisSessionStore } from '../../src/login/sessions/redis.js';
import type { SessionTimeouts } from '../../src/login/sessions/types.js';

/**
 * Redis session stores on one real redis-server, as separate gateway instances would hold them: each with its own
 * command and subscriber connections. Commands fail at once while Redis is down (no retry queue), as on the hot path;
 * a subscriber does not resubscribe by itself after a reconnect, as in the gateway.
 */
export class RedisSessionStores {
  private readonly clients: Redis[] = [];

  constructor(private readonly url: string) {}

  async open(prefix: string, timeouts: SessionTimeouts, now?: () => number): Promise<RedisSessionStore> {
    return (await this.openFollowing(prefix, timeouts, now)).store;
  }

  /** A store subscribed to the announcements, with its subscriber and command connections (to cut and restore). */
  async openFollowing(prefix: string, timeouts: SessionTimeouts, now?: () => number): Promise<{ store: RedisSessionStore; subscriber: Redis; commands: Redis }> {
    const subscriber = this.client({ autoResubscribe: false });
    const commands = this.client();
    const store = this.store(prefix, timeouts, now, subscriber, commands);
    await store.listening;
    return { store, subscriber, commands };
  }

  /** A store that has not subscribed: an instance that never heard of anything, reading Redis only. */
  unstarted(prefix: string, timeouts: SessionTimeouts, now?: () => number): RedisSessionStore {
    return this.store(prefix, timeouts, now, undefined);
  }

  close(): void {
    for (const client of this.clients.splice(0)) client.disconnect();
  }

  private store(prefix: string, timeouts: SessionTimeouts, now: (() => number) | undefined, subscriber: Redis | undefined, commands = this.client()): RedisSessionStore {
    const connect = (onSubscriber: (subscriber: Redis) => void) => {
      if (subscriber !== undefined) onSubscriber(subscriber);
      return { commands, closeSubscriber: async () => subscriber?.disconnect() };
    };
    return new RedisSessionStore({ connect, prefix, timeouts, now, copies: 100, onError: () => undefined });
  }

  private client(options: { autoResubscribe?: boolean } = {}): Redis {
    const client = new Redis(this.url, { maxRetriesPerRequest: 0, ...options });
    client.on('error', () => undefined);
    this.clients.push(client);
    return client;
  }
}
