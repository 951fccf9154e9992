import { headerValue } from './headers.js';
import { requestJson, type FetchLimits } from './json-request.js';

export interface FetchedJson {
  readonly body: unknown;
  /** `Cache-Control: max-age` in ms, when the server sent one. */
  readonly maxAgeMs: number | undefined;
}

const MAX_AGE = /(?:^|[\s,])max-age\s*=\s*"?(\d+)"?/i;

/** A guarded GET for discovery documents and JWKS, with the freshness the server announced. */
export async function fetchJson(url: string, limits: FetchLimits): Promise<FetchedJson> {
  const { body, headers } = await requestJson(url, { method: 'GET', headers: { accept: 'application/json' } }, limits);
  const maxAge = MAX_AGE.exec(headerValue(headers['cache-control']) ?? '');
  return { body, maxAgeMs: maxAge ? Number(maxAge[1]) * 1000 : undefined };
}
