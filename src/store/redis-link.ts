import type { Redis } from 'ioredis';
import type { RedisConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { connect, reconnectDelayMs, shutDown, type RedisClient } from './connect.js';
import type { StoreHealth } from './types.js';

/** A command failure is followed by at most one probe of the link in this long. */
const PROBE_INTERVAL_MS = 1000;

/** What the link asks of the state that rides on it. */
export interface LinkListener {
  /**
   * Read (and write back) the shared state now: the connections came (back) up, the subscription was confirmed, or
   * a retry is due while degraded. A successful run calls `up()`, a failed one `failed()`.
   */
  resync(): void;
  /** One message on the link's channel. */
  message(text: string): void;
}

/**
 * A Redis store's command connection and subscriber connection, and their health as `/readyz` and the logs see
 * it: starting until the first resync, ok once one succeeds, degraded from the first error until one succeeds
 * again. The subscription is confirmed before the listener is asked to resync, which closes the window between
 * subscribing and reading.
 */
export class RedisLink {
  readonly commands: RedisClient;
  readonly ready: Promise<void>;
  private readonly closeSubscriber: () => Promise<void>;
  private state: StoreHealth | { readonly status: 'starting' } = { status: 'starting' };
  private subscribed = false;
  private closing = false;
  private recovery: NodeJS.Timeout | undefined;
  private recoveryAttempt = 0;
  private probing = false;
  private lastProbeMs = Number.NEGATIVE_INFINITY;
  private settleReady: () => void = () => {};

  constructor(
    config: RedisConfig,
    private readonly channel: string,
    private readonly deps: { readonly logger: Logger; readonly metrics: Metrics },
    private readonly listener: LinkListener,
  ) {
    this.ready = new Promise<void>((resolve) => (this.settleReady = resolve));
    const { commands, closeSubscriber } = connect(config, (subscriber) => this.follow(subscriber));
    this.commands = commands;
    this.closeSubscriber = closeSubscriber;
    commands.on('error', (error: Error) => this.failed(error));
    // One Cluster node failing says nothing of the rest: a probe of the revocation set's slot decides.
    commands.on('node error', () => this.commandFailed());
    // The error that came with the drop says more than the drop itself, so it is kept.
    commands.on('close', () => this.state.status !== 'degraded' && this.down(new Error('connection to Redis lost')));
    commands.on('ready', () => listener.resync());
  }

  /** Whether a resync can run now: commands ready and the subscription confirmed. */
  get usable(): boolean {
    return this.commands.status === 'ready' && this.subscribed;
  }

  get isOk(): boolean {
    return this.state.status === 'ok';
  }

  get isClosing(): boolean {
    return this.closing;
  }

  health(): StoreHealth {
    return this.state.status === 'starting' ? { status: 'degraded', error: 'connecting to Redis' } : this.state;
  }

  up(): void {
    if (this.state.status !== 'ok') {
      this.deps.logger.info(this.state.status === 'starting' ? 'store: Redis connected' : 'store: Redis reachable again, resynced');
    }
    this.state = { status: 'ok' };
    this.recoveryAttempt = 0;
    this.settleReady();
  }

  /**
   * A command failed while the connections stayed up (a Redis that hangs, a Cluster node that is gone): counted,
   * and the link probed on the revocation set's own key, at most once a second. Only a failed probe degrades it:
   * a node whose slots hold some rate-limit keys says nothing of the revocations, and must not flap readiness.
   */
  commandFailed(): void {
    this.deps.metrics.storeErrors.inc();
    const now = Date.now();
    if (this.state.status !== 'ok' || this.probing || now - this.lastProbeMs < PROBE_INTERVAL_MS) return;
    this.probing = true;
    this.lastProbeMs = now;
    this.commands
      .exists(this.channel)
      .then(
        () => undefined,
        (error: Error) => this.failed(error),
      )
      .finally(() => (this.probing = false));
  }

  /** A connection, a probe or a resync failed: counted, and the link is degraded until a resync succeeds. */
  failed(error: Error): void {
    this.deps.metrics.storeErrors.inc();
    this.down(error);
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.recovery);
    this.settleReady();
    await Promise.all([shutDown(this.commands), this.closeSubscriber()]);
  }

  private down(error: Error): void {
    if (this.closing) return;
    if (this.state.status !== 'degraded') {
      this.deps.logger.warn({ err: error }, 'store: Redis unreachable; serving the last known revocations, rate limits per instance');
    }
    this.state = { status: 'degraded', error: error.message };
    this.settleReady();
    this.scheduleRecovery();
  }

  /**
   * On a Cluster a primary can fail while the client stays `ready` (its slots move to a replica), so no `ready`
   * event announces the recovery: while degraded, a resync is retried with the reconnect backoff until one works.
   */
  private scheduleRecovery(): void {
    if (this.recovery !== undefined || this.closing) return;
    this.recovery = setTimeout(() => {
      this.recovery = undefined;
      if (this.state.status === 'degraded') this.listener.resync();
    }, reconnectDelayMs(this.recoveryAttempt++));
  }

  private follow(subscriber: Redis): void {
    subscriber.on('error', (error: Error) => this.failed(error));
    subscriber.on('close', () => {
      this.subscribed = false;
      if (this.state.status !== 'degraded') this.down(new Error('subscriber connection to Redis lost'));
    });
    subscriber.on('ready', () => {
      subscriber
        .subscribe(this.channel)
        .then(() => {
          this.subscribed = true;
          this.listener.resync();
        })
        .catch((error: Error) => this.failed(error));
    });
    subscriber.on('message', (_channel: string, message: string) => this.listener.message(message));
  }
}
