import type { OutgoingHttpHeaders } from 'node:http';
import type { GatewayError } from '../http/responses.js';

/** Where in the chain a verdict was reached: the access log's and `authgate explain`'s vocabulary. */
export type Stage =
  | 'host'
  | 'normalize'
  | 'route'
  | 'cors'
  | 'endpoint'
  | 'rate_limit'
  | 'authenticate'
  | 'revocation'
  | 'authorize'
  | 'inject';

/**
 * Receives every step's verdict, for `authgate explain`. Steps call it as `trace?.(…)`, so on the proxy path,
 * where no trace is given, not even the detail strings are built.
 */
export type Trace = (stage: Stage, ok: boolean, detail: string) => void;

/** The chain stops and the client gets `error`. */
export interface Refusal {
  readonly ok: false;
  readonly stage: Stage;
  /** Short machine reason for the access log and `authgate_auth_denied_total`. */
  readonly reason: string;
  readonly error: GatewayError;
  /** For the operator (access log, explain), never the client: what was compared. */
  readonly detail?: string | undefined;
  /**
   * What a browser navigating to a sign-in route gets instead of `error` (a redirect to sign in, a small page). It
   * stays a refusal: logged and counted as one, and never a pass where a caller only asks whether it passed.
   */
  readonly page?: Answer | undefined;
}

/** The gateway answers itself (a preflight, logout, a forward-auth check); the listener adds X-Request-Id. */
export interface Answer {
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  /** A document or small page the gateway serves itself (the public keys, the sign-in pages); most answers have none. */
  readonly body?: string | undefined;
}

export type Verdict = { readonly ok: true; readonly answer: undefined } | { readonly ok: true; readonly answer: Answer } | Refusal;

/** Go on with the next step: one frozen object, so passing allocates nothing. */
export const PASS: Verdict = Object.freeze({ ok: true, answer: undefined });

/** A refusal fixed at compile time (frozen, shared by every request it refuses). */
export function refusal(stage: Stage, error: GatewayError, reason: string): Refusal {
  return Object.freeze({ ok: false, stage, error, reason });
}

export function answered(status: number, headers: OutgoingHttpHeaders, body?: string): Verdict {
  return { ok: true, answer: body === undefined ? { status, headers } : { status, headers, body } };
}

/** The chain goes on after this verdict (neither a refusal nor an answer). */
export function passes(verdict: Verdict): boolean {
  return verdict.ok && verdict.answer === undefined;
}

export function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown }).then === 'function';
}
