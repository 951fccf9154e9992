import { request } from 'undici';
import { headerValue } from './headers.js';

/**
 * A guarded GET for discovery documents and JWKS: one overall deadline, a size cap, no redirects (a redirect is an
 * error: the configured URL is the trust anchor), status 200 and a JSON content type only.
 */
export interface FetchLimits {
  /** Deadline for headers and body together. */
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

export const DEFAULT_FETCH_LIMITS: FetchLimits = { timeoutMs: 5000, maxBytes: 1024 * 1024 };

export interface FetchedJson {
  readonly body: unknown;
  /** `Cache-Control: max-age` in ms, when the server sent one. */
  readonly maxAgeMs: number | undefined;
}

/**
 * An expected failure of a key source (unreachable, bad status, wrong shape, a discovery document naming another
 * issuer): logged as a one-line reason, never with a stack trace.
 */
export class FetchError extends Error {
  override readonly name = 'FetchError';
}

const JSON_CONTENT_TYPE = /^application\/(?:[\w.+-]+\+)?json(?:\s*;|$)/i;
const MAX_AGE = /(?:^|[\s,])max-age\s*=\s*"?(\d+)"?/i;


export async function fetchJson(url: string, limits: FetchLimits): Promise<FetchedJson> {
  const signal = AbortSignal.timeout(limits.timeoutMs);
  let response: Awaited<ReturnType<typeof request>>;
  try {
    response = await request(url, { method: 'GET', signal, headers: { accept: 'application/json' } });
  } catch (error) {
    throw new FetchError(signal.aborted ? `timed out after ${limits.timeoutMs} ms` : `request failed: ${(error as Error).message}`);
  }
  const { statusCode, headers, body } = response;
  try {
    if (statusCode >= 300 && statusCode < 400) throw new FetchError(`redirect (${statusCode}) not followed`);
    if (statusCode !== 200) throw new FetchError(`status ${statusCode}`);
    const contentType = headerValue(headers['content-type']) ?? '';
    if (!JSON_CONTENT_TYPE.test(contentType)) throw new FetchError('content-type is not JSON');
    const declaredLength = Number(headerValue(headers['content-length']));
    if (declaredLength > limits.maxBytes) throw new FetchError(`body larger than ${limits.maxBytes} bytes`);

    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limits.maxBytes) throw new FetchError(`body larger than ${limits.maxBytes} bytes`);
      chunks.push(chunk);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    } catch {
      throw new FetchError('body is not valid JSON');
    }
    const maxAge = MAX_AGE.exec(headerValue(headers['cache-control']) ?? '');
    return { body: parsed, maxAgeMs: maxAge ? Number(maxAge[1]) * 1000 : undefined };
  } catch (error) {
    // Destroying an unfinished undici body emits an abort error; nobody else is listening for it.
    body.on('error', () => undefined);
    body.destroy();
    if (error instanceof FetchError) throw error;
    throw new FetchError(signal.aborted ? `timed out after ${limits.timeoutMs} ms` : `read failed: ${(error as Error).message}`);
  }
}
