import { createHmac } from 'node:crypto';

/**
 * Server-provided DPoP nonces (RFC 9449 §8) without shared state: a nonce is the number of the current time window
 * and an HMAC of it under a secret every instance is given, so any instance accepts what any other handed out.
 * The previous window's nonce is accepted too (a nonce lives between one and two windows), and so is the next
 * one's: an instance whose clock runs a little behind still takes what a faster one handed out at a boundary.
 */
export class DpopNonces {
  private window = Number.NaN;
  private previousNonce = '';
  private currentNonce = '';
  private nextNonce = '';

  constructor(
    private readonly secret: string,
    private readonly rotationMs: number,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** The nonce to hand out now (`DPoP-Nonce`); computed once per window. */
  current(): string {
    this.roll();
    return this.currentNonce;
  }

  accepts(nonce: string): boolean {
    this.roll();
    return nonce === this.currentNonce || nonce === this.previousNonce || nonce === this.nextNonce;
  }

  /** The previous window's: still accepted, but a client holding it is better off with the current one. */
  isPrevious(nonce: unknown): boolean {
    this.roll();
    return nonce === this.previousNonce;
  }

  private roll(): void {
    const window = Math.floor(this.nowMs() / this.rotationMs);
    if (window === this.window) return;
    const advancedOne = window === this.window + 1;
    this.previousNonce = advancedOne ? this.currentNonce : this.nonceOf(window - 1);
    this.currentNonce = advancedOne ? this.nextNonce : this.nonceOf(window);
    this.nextNonce = this.nonceOf(window + 1);
    this.window = window;
  }

  private nonceOf(window: number): string {
    const mac = createHmac('sha256', this.secret).update(`authgate dpop nonce ${window}`).digest('base64url');
    return `${window.toString(36)}.${mac}`;
  }
}
