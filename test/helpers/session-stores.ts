import { Redis } from 'ioredis';
import { RedisSessionStore } from '../../src/login/sessions/redis.js';
import type { SessionTimeouts } from '../../src/login/sessions/types.js';

/**
 * Redis session stores on one real redis-server, as separate gateway instances would hold them: each with its own
 * command and subscriber connections. Commands fail at once while Redis is down (no retry queue), as on the hot path.
 */
export class RedisSessionStores {
  private readonly clients: Redis[] = [];

  constructor(private readonly url: string) {}

  async open(prefix: string, timeouts: SessionTimeouts, now?: () => number): Promise<RedisSessionStore> {
    const store = this.unstarted(prefix, timeouts, now);
    await store.start();
    return store;
  }

  /** A store that has not subscribed: an instance that never heard of anything, reading Redis only. */
  unstarted(prefix: string, timeouts: SessionTimeouts, now?: () => number): RedisSessionStore {
    const [commands, subscriber] = [this.client(), this.client()];
    return new RedisSessionStore({ commands, subscriber, prefix, timeouts, now, copies: 100 });
  }

  close(): void {
    for (const client of this.clients.splice(0)) client.disconnect();
  }

  private client(): Redis {
    const client = new Redis(this.url, { maxRetriesPerRequest: 0 });
    client.on('error', () => undefined);
    this.clients.push(client);
    return client;
  }
}
