import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { rawRequest, startTestGateway, type RawResponse, type TestGateway } from './gateway.js';
import { issuerYaml, type Idp } from './idp.js';
import type { RecordingUpstream } from './upstream.js';

/**
 * Gateway replicas sharing one store, for the topology tests: the config they run, and requests that each carry a
 * unique `X-Probe` header, so "the upstream never saw it" holds even when requests run concurrently.
 */

export const ADMIN_TOKEN = 'replicas-admin-token-0123456789';
/** A revocation made on one instance holds on all within this. */
export const PROPAGATION_DEADLINE_MS = 1_000;
/** Limits of the routes /exact/** and /leased/** (key: subject, window 1 m). */
export const EXACT_LIMIT = 6;
export const LEASED_LIMIT = 200;

/** `redisYaml` is the value of `store.redis`, already indented to sit under it. */
export function replicaYaml(idp: Idp, upstream: RecordingUpstream, redisYaml: string, prefix: string): string {
  return `
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 200ms }
admin: { listen: 127.0.0.1:0, token: ${ADMIN_TOKEN} }
store:
  redis:
${redisYaml}
  prefix: "${prefix}"
logging: { level: info, access_log: false }
issuers:
${issuerYaml(idp, ['dpop: { algorithms: [ES256] }'])}
upstreams:
  api: { url: ${upstream.url}, timeout: 5s }
rate_limits:
  exact: { key: subject, limit: ${EXACT_LIMIT}, window: 1m, mode: exact }
  leased: { key: subject, limit: ${LEASED_LIMIT}, window: 1m, mode: leased }
  load-exact: { key: subject, limit: 100000000, window: 1m, mode: exact }
  load-leased: { key: subject, limit: 100000000, window: 1m, mode: leased }
routes:
  - { name: api, match: { path: /api/** }, upstream: api }
  - { name: exact, match: { path: /exact/** }, upstream: api, rate_limit: [exact] }
  - { name: leased, match: { path: /leased/** }, upstream: api, rate_limit: [leased] }
  - { name: load, match: { path: /load/** }, upstream: api, rate_limit: [load-exact, load-leased] }
`;
}

export async function startReplicas(count: number, yaml: string): Promise<TestGateway[]> {
  const started: TestGateway[] = [];
  for (let i = 0; i < count; i++) started.push(await startTestGateway(yaml));
  return started;
}

export interface Sent {
  readonly res: RawResponse;
  /** Whether the upstream received this very request. */
  readonly reached: boolean;
}

export async function send(upstream: RecordingUpstream, gateway: TestGateway, token: string, target: string): Promise<Sent> {
  const probe = randomUUID();
  const headers = [['X-Probe', probe], ['Authorization', `Bearer ${token}`]] as const;
  const res = await rawRequest(gateway.port, { target, headers });
  // The upstream records a request before it answers, so by now it has it if it ever got it.
  return { res, reached: upstream.seen.some((seen) => seen.headers['x-probe'] === probe) };
}

export function expectForwarded(sent: Sent): void {
  expect(sent.res.status).toBe(200);
  expect(sent.reached).toBe(true);
}

export function expectRefused(sent: Sent, status: number, code: string): void {
  expect(sent.res.status).toBe(status);
  expect(sent.res.json<{ error: string }>().error).toBe(code);
  expect(sent.reached).toBe(false);
}

export function adminRevoke(gateway: TestGateway, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${gateway.adminUrl}/revocations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

export async function readiness(gateway: TestGateway): Promise<{ status: number; store: string }> {
  const res = await fetch(`${gateway.adminUrl}/readyz`);
  const report = (await res.json()) as { checks: { store: { status: string } } };
  return { status: res.status, store: report.checks.store.status };
}
